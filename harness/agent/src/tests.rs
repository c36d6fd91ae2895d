//! Runs test programs inside L1, where /dev/kvm is the patched KVM: the
//! KVM selftests and the hcall VMM. They are host binaries, reached
//! through the read-only host root.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proto::Event;

/// Runs one test command (a program and its arguments, split at white
/// space) with a deadline; its output goes to l1test-<name>.log in the run
/// directory.
pub fn run(test: &str, name: &str, out: &Path, timeout_secs: u64) -> Result<Event> {
    let name = name.to_string();
    let mut words = test.split_whitespace();
    let program = words.next().context("an empty test command")?;
    let log = File::create(out.join(format!("l1test-{name}.log"))).context("create the test log")?;
    let mut child = Command::new(program)
        .args(words)
        // The host's /tmp is read-only in L1; scratch files go to L1's own.
        .env("TMPDIR", proto::L1_SCRATCH)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {test}"))?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(timeout_secs);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Event::L1Test {
                name,
                status: status.code(),
                timed_out: false,
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Event::L1Test {
                name,
                status: None,
                timed_out: true,
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
