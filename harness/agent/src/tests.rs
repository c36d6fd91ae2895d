//! Runs test programs inside L1, where /dev/kvm is the patched KVM: the
//! KVM selftests and the hcall VMM. They are host binaries, reached
//! through the read-only host root.

use fs_err::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proto::{Event, L1Test};

/// Runs one test program with a deadline; its output goes to
/// l1test-<name>.log in the run directory.
pub fn run(test: &L1Test, out: &Path, timeout_secs: u64) -> Result<Event> {
    let name = test.name.clone();
    let (program, args) = test.argv.split_first().context("an empty test command")?;
    let log = File::create(out.join(format!("l1test-{name}.log"))).context("create the test log")?;
    let mut child = Command::new(program)
        .args(args)
        // The host's /tmp is read-only in L1; scratch files go to L1's own.
        .env("TMPDIR", proto::L1_SCRATCH)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?.into_file())
        .stderr(log.into_file())
        .spawn()
        .with_context(|| format!("start {}", test.argv.join(" ")))?;
    let start = Instant::now();
    let status = proto::reap::wait_or_kill(&mut child, start + Duration::from_secs(timeout_secs))
        .context("wait for the test")?;
    Ok(Event::L1Test {
        name,
        status: status.and_then(|s| s.code()),
        timed_out: status.is_none(),
        seconds: start.elapsed().as_secs_f64(),
    })
}
