//! The series' KVM selftests, built on the host against the patched tree's
//! exported headers and run by the agent inside L1, where /dev/kvm is the
//! patched KVM.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::build::Plan;
use crate::stage::Progress;
use crate::stamp::Stamp;

/// The tests the series adds or extends. Their file names name their logs
/// and checks, the same on every base.
const TESTS: &[&str] = &["hello_hypercall_test", "kvm_pv_test"];

/// A test the unpatched tree already lists, whose entry shows where the x86
/// tests live.
const LISTED: &str = "kvm_pv_test";

/// Builds the tests and returns their paths. Cached by the host build's
/// key, since the tests come from the same tree.
pub fn build(sh: &Shell, host: &Plan, log: &Path, progress: &Progress) -> Result<Vec<PathBuf>> {
    let out = host.sibling("selftests");
    let kvm = host.src.join("tools/testing/selftests/kvm");
    let x86 = x86_dir_of(&kvm)?;
    let bins: Vec<PathBuf> = TESTS.iter().map(|t| out.join(&x86).join(t)).collect();
    let stamp = Stamp::in_dir(&out);
    if bins.iter().all(|b| b.exists()) && stamp.holds(&host.key) {
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
    stamp.write(&host.key).context("stamp the selftests")?;
    Ok(bins)
}

/// The directory of the x86 tests under the kvm selftests: x86_64/ in 6.1
/// and 6.12, x86/ in 7.3. Read from the tree's own list of tests rather
/// than from the version, so that --tree works on any base.
fn x86_dir_of(kvm: &Path) -> Result<String> {
    // 7.3 lists the tests in Makefile.kvm, 6.1 and 6.12 in Makefile.
    let makefile = ["Makefile.kvm", "Makefile"]
        .iter()
        .map(|m| kvm.join(m))
        .find(|m| m.exists())
        .with_context(|| format!("{}: no Makefile; is this a kernel tree?", kvm.display()))?;
    let text = fs_err::read_to_string(&makefile).with_context(|| format!("read {}", makefile.display()))?;
    x86_dir(&text).with_context(|| {
        format!(
            "{} lists no x86 {LISTED}: the KVM selftests changed their layout; fix selftests::x86_dir",
            makefile.display()
        )
    })
}

/// The directory in the x86 entry of [`LISTED`], e.g. "x86" from
/// `TEST_GEN_PROGS_x86 += x86/kvm_pv_test`.
fn x86_dir(makefile: &str) -> Option<String> {
    makefile.lines().find_map(|line| {
        let (var, value) = line.split_once("+=")?;
        if !var.trim().starts_with("TEST_GEN_PROGS_x86") {
            return None;
        }
        let (dir, test) = value.trim().split_once('/')?;
        (test == LISTED).then(|| dir.to_string())
    })
}

fn append(log: &Path, out: &std::process::Output) -> Result<()> {
    use std::io::Write;
    let mut f = fs_err::File::options().create(true).append(true).open(log)?;
    f.write_all(&out.stdout)?;
    f.write_all(&out.stderr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_tests_moved_from_x86_64_to_x86() {
        let v6_12 = "TEST_GEN_PROGS_x86_64 += x86_64/hyperv_tlb_flush\n\
                     TEST_GEN_PROGS_x86_64 += x86_64/kvm_pv_test\n";
        let v7_3 = "TEST_GEN_PROGS_x86 += x86/kvm_clock_test\n\
                    TEST_GEN_PROGS_x86 += x86/kvm_pv_test\n\
                    TEST_GEN_PROGS_arm64 += arm64/kvm_pv_test\n";
        assert_eq!(x86_dir(v6_12).as_deref(), Some("x86_64"));
        assert_eq!(x86_dir(v7_3).as_deref(), Some("x86"));
        assert_eq!(x86_dir("TEST_GEN_PROGS_arm64 += arm64/kvm_pv_test\n"), None);
    }
}
