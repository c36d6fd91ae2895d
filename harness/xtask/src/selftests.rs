//! The series' KVM selftests, built on the host against the patched tree's
//! exported headers and run by the agent inside L1, where /dev/kvm is the
//! patched KVM.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::build::Plan;
use crate::stage::Progress;

/// The tests the series adds or extends, relative to the kvm selftests dir.
const TESTS: &[&str] = &["x86_64/hello_hypercall_test", "x86_64/kvm_pv_test"];

/// Builds the tests and returns their paths. Cached by the host build's
/// key, since the tests come from the same tree.
pub fn build(sh: &Shell, host: &Plan, log: &Path, progress: &Progress) -> Result<Vec<PathBuf>> {
    let out = host.sibling("selftests");
    let bins: Vec<PathBuf> = TESTS.iter().map(|t| out.join(t)).collect();
    let stamp = out.join("hh-stamp");
    if bins.iter().all(|b| b.exists()) && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&host.key) {
        progress.cached();
        return Ok(bins);
    }
    let (src, dir) = (&host.src, &host.dir);
    progress.say("make headers");
    // The tests include the new KVM_HC_* and KVM_FEATURE_* from uapi.
    let headers = cmd!(sh, "make -s -C {src} O={dir} headers")
        .quiet()
        .ignore_status()
        .output()?;
    append(log, &headers)?;
    if !headers.status.success() {
        anyhow::bail!("make headers failed; see {}", log.display());
    }
    progress.say("make the KVM selftests");
    let kvm = src.join("tools/testing/selftests/kvm");
    let include = format!("-isystem {}", dir.join("usr/include").display());
    let targets = bins.clone();
    let jobs = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .to_string();
    let made = cmd!(
        sh,
        "make -j{jobs} -C {kvm} OUTPUT={out} KHDR_INCLUDES={include} {targets...}"
    )
    .quiet()
    .ignore_status()
    .output()?;
    append(log, &made)?;
    if !made.status.success() {
        anyhow::bail!(
            "building the KVM selftests failed; last lines of {}:\n{}",
            log.display(),
            crate::build::tail(log, 20)
        );
    }
    std::fs::write(&stamp, &host.key).context("stamp the selftests")?;
    Ok(bins)
}

fn append(log: &Path, out: &std::process::Output) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::options().create(true).append(true).open(log)?;
    f.write_all(&out.stdout)?;
    f.write_all(&out.stderr)?;
    Ok(())
}
