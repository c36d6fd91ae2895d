//! The images stage of `cargo xtask e2e`: the static guest programs, L2's
//! initramfs for each guest and the agent's config, all in the run
//! directory.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::build::{self, Plan};
use crate::patches::Series;
use crate::{initramfs, layout, qemu, stock};

const L2_MEMORY_MIB: u32 = 256;
/// hcall's fuzz calls in every run (the benchmark runs many more).
const FUZZ_ITERATIONS: u32 = 2000;
/// Per-CPU trace buffer in L1: room for every hypercall of a run, the
/// tests' (about 2,000 from the fuzz) included, as they run while the
/// stock guest is traced.
const TRACE_BUFFER_KB: u32 = 4096;
/// L2 boots the kernel L1 does (see build::Role::Both), KVM built in: skip
/// its vendor modules' init, which L2 has no use for and which would set
/// up nested KVM, or say at KERN_ERR that the CPU lacks SVM or VMX, where
/// the L2 log check reads. (vt_init is kvm_intel's on 7.3, vmx_init before.)
pub(crate) const L2_SKIP_KVM: &str = "initcall_blacklist=svm_init,vmx_init,vt_init";
/// The target the static guest programs are built for (see images()).
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Where the static guest programs (agent, probe, hcall) are built.
pub(crate) fn guest_bin() -> std::path::PathBuf {
    layout::target().join(GUEST_TARGET).join("release")
}

/// Builds the guest programs (agent, probe, hcall) static, and returns
/// the directory that holds them.
pub(crate) fn guest_programs(sh: &Shell, p: &crate::stage::Progress) -> Result<std::path::PathBuf> {
    p.say("cargo build --release (agent, probe, hcall: static)");
    guest_build(sh)
        .quiet()
        .run()
        .context("build the static guest programs")?;
    Ok(guest_bin())
}

fn guest_build(sh: &Shell) -> xshell::Cmd<'_> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // crt-static on the gnu target gives self-contained binaries without
    // installing another Rust target; --target keeps the flag away from
    // build scripts and proc macros.
    cmd!(
        sh,
        "{cargo} build --quiet --release --target {GUEST_TARGET} -p agent -p probe -p hcall"
    )
    .env("RUSTFLAGS", "-C target-feature=+crt-static")
}

/// The guest programs' build, started on a thread of its own when a run
/// begins: extracting and committing the source keep one core busy and
/// leave the other idle, and a cold run is that much shorter. Dropping it
/// waits for the build, so that no cargo outlives the run.
pub(crate) struct GuestPrograms {
    job: Option<std::thread::JoinHandle<Result<()>>>,
    log: std::path::PathBuf,
}

impl GuestPrograms {
    /// Starts the build; its output goes to `log`.
    pub(crate) fn start(log: std::path::PathBuf) -> GuestPrograms {
        let path = log.clone();
        let job = std::thread::spawn(move || -> Result<()> {
            let sh = Shell::new()?;
            let out = guest_build(&sh).quiet().ignore_status().output()?;
            let text = [out.stdout, out.stderr].concat();
            fs_err::write(&path, &text)?;
            if !out.status.success() {
                bail!(
                    "cargo build exited with {}:\n{}",
                    out.status,
                    build::tail(&path, 20)
                );
            }
            Ok(())
        });
        GuestPrograms { job: Some(job), log }
    }

    /// Waits for the build, and returns the directory that holds them.
    pub(crate) fn wait(mut self, p: &crate::stage::Progress) -> Result<std::path::PathBuf> {
        p.say("wait for the guest programs (agent, probe, hcall: static)");
        let job = self
            .job
            .take()
            .context("the guest programs were waited for twice")?;
        match job.join() {
            Ok(result) => result
                .with_context(|| format!("build the static guest programs (log: {})", self.log.display()))?,
            Err(_) => bail!("the thread that builds the guest programs panicked"),
        }
        Ok(guest_bin())
    }
}

impl Drop for GuestPrograms {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let _ = job.join();
        }
    }
}

/// What the images stage packs for the guests.
#[derive(Clone, Copy)]
pub(crate) struct Images<'a> {
    pub(crate) guest: &'a Plan,
    pub(crate) series: Option<&'a Series>,
    /// Command lines of the test programs L1 runs beside the guests.
    pub(crate) l1_tests: &'a [Vec<String>],
    /// The user's --l1-test programs, run after the guests.
    pub(crate) l1_extra_tests: &'a [Vec<String>],
    pub(crate) module: &'a Path,
    /// The series' syscall kselftest, for the main guest.
    pub(crate) kselftest: Option<&'a Path>,
    pub(crate) l1_test_timeout: u64,
    /// Debian's stock kernel and the module built for it, when it runs.
    pub(crate) stock: Option<(&'a stock::Stock, &'a Path)>,
    /// The fault the agent injects (--fault).
    pub(crate) fault: Option<&'a str>,
    /// Each L2's deadline inside L1 (--l2-timeout), in seconds.
    pub(crate) l2_timeout: u64,
}

/// Waits for the static guest programs, and builds L2's initramfs and the
/// agent's config. Returns every test L1 runs, in order, as named for the agent.
pub(crate) fn images(
    inputs: &Images,
    programs: GuestPrograms,
    run_dir: &Path,
    p: &crate::stage::Progress,
) -> Result<Vec<proto::L1Test>> {
    let Images {
        guest,
        series,
        l1_tests,
        module,
        kselftest,
        stock,
        ..
    } = *inputs;
    let bin = programs.wait(p)?;
    // hcall's cases, then a short fuzz whose seed makes a failure
    // reproducible; on an unpatched host both must fail.
    let hcall = bin.join("hcall").display().to_string();
    let mut l1_tests = l1_tests.to_vec();
    l1_tests.push(vec![hcall.clone()]);
    l1_tests.push(
        [
            &hcall,
            "fuzz",
            "--iterations",
            &FUZZ_ITERATIONS.to_string(),
            "--seed",
            "1",
        ]
        .map(String::from)
        .to_vec(),
    );
    // Named over both lists at once, so that no two logs share a name.
    let beside = l1_tests.len();
    let mut l1_tests = proto::L1Test::name_all([l1_tests, inputs.l1_extra_tests.to_vec()].concat());
    let l1_extra_tests = l1_tests.split_off(beside);

    let nr = match build::syscall_nr(&guest.dir)? {
        Some(nr) => nr,
        // An unpatched guest has no number; use the series' own, so the
        // probe still makes the call and the guest's answer is on record.
        None => match series.map(nr_from_series).transpose()?.flatten() {
            Some(nr) => nr,
            // No series for this base yet: the number it will take.
            None => {
                let table = guest.src.join(SYSCALL_TABLE);
                let text =
                    fs_err::read_to_string(&table).with_context(|| format!("read {}", table.display()))?;
                let nr = lowest_free_nr(&text)
                    .with_context(|| format!("no syscall numbers in {}", table.display()))?;
                println!("    no series: the probe calls {nr}, the lowest free number in {SYSCALL_TABLE}");
                nr
            }
        },
    };
    let probe = fs_err::read(bin.join("probe")).context("read the probe binary")?;
    let initrd = run_dir.join("l2-initramfs.cpio");
    let ko = fs_err::read(module).context("read the guest module")?;
    let test = kselftest
        .map(fs_err::read)
        .transpose()
        .context("read the kselftest")?;
    fs_err::write(&initrd, initramfs::l2(&probe, Some(&ko), test.as_deref()))?;
    // quiet: every console byte of a nested guest is an exit through two
    // hypervisors; errors still print.
    // noxsave: with L1 under TCG, the XSAVE leaf L2 sees gives a buffer
    // size that disagrees with its features, so the guest turns XSAVE off
    // during boot; 7.3 crashes doing that (a NULL pointer in the first
    // fork), 6.1 and 6.12 go on without it. Off from the start, every base
    // boots; nothing the guest runs needs extended FPU state.
    let mut guests = vec![proto::Guest {
        name: proto::GuestName::Main,
        kernel: guest.bzimage().display().to_string(),
        initrd: initrd.display().to_string(),
        append: format!(
            "console=ttyS0 panic=-1 quiet noxsave {L2_SKIP_KVM} {}={nr}",
            proto::NR_ENV
        ),
    }];
    if let Some((stock, ko)) = stock {
        let initrd = run_dir.join("l2-stock-initramfs.cpio");
        let ko = fs_err::read(ko).context("read the stock guest's module")?;
        fs_err::write(&initrd, initramfs::l2(&probe, Some(&ko), None))?;
        guests.push(proto::Guest {
            name: proto::GuestName::Stock,
            kernel: stock.kernel.display().to_string(),
            initrd: initrd.display().to_string(),
            append: format!(
                "console=ttyS0 panic=-1 quiet {}={}",
                proto::MODE_ENV,
                proto::ProbeMode::Guest(proto::GuestName::Stock).as_str()
            ),
        });
    }

    let qemu = qemu::which("qemu-system-x86_64").context("qemu-system-x86_64 is not on PATH")?;
    let config = proto::AgentConfig {
        qemu: qemu.display().to_string(),
        bios: qemu::qboot().map(|b| b.display().to_string()).unwrap_or_default(),
        guests,
        l2_memory_mib: L2_MEMORY_MIB,
        l2_timeout_secs: inputs.l2_timeout,
        trace_buffer_kb: TRACE_BUFFER_KB,
        fallback_tsc_khz: host_tsc_khz(),
        l1_tests,
        l1_extra_tests,
        l1_test_timeout_secs: inputs.l1_test_timeout,
        fault: inputs.fault.map(String::from),
    };
    fs_err::write(
        run_dir.join(proto::AGENT_CONFIG),
        serde_json::to_string_pretty(&config)?,
    )?;
    Ok(config.all_l1_tests())
}

/// This machine's TSC frequency; under TCG it is L1's too.
pub(crate) fn host_tsc_khz() -> Option<u64> {
    proto::tsc_khz(&fs_err::read_to_string("/proc/cpuinfo").ok()?)
}

/// The syscall number the series assigns, from its syscall_64.tbl hunk.
fn nr_from_series(series: &Series) -> Result<Option<i64>> {
    for path in series.paths() {
        let text = fs_err::read_to_string(&path)?;
        if let Some(nr) = nr_from_patch(&text) {
            return Ok(Some(nr));
        }
    }
    Ok(None)
}

/// The x86-64 system call table, relative to a kernel tree.
const SYSCALL_TABLE: &str = "arch/x86/entry/syscalls/syscall_64.tbl";

/// The lowest number the table leaves free. Every series so far gave
/// hello_hypercall that number (335 on 6.1, 336 on 6.12, 337 on 7.3): the
/// end of x86-64's own block, below the numbers shared by all
/// architectures (424 on).
fn lowest_free_nr(table: &str) -> Option<i64> {
    let used: std::collections::BTreeSet<i64> = table
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    if used.is_empty() {
        return None;
    }
    (0..).find(|n| !used.contains(n))
}

fn nr_from_patch(text: &str) -> Option<i64> {
    text.lines().find_map(|l| {
        let mut w = l.strip_prefix('+')?.split_whitespace();
        let nr = w.next()?.parse().ok()?;
        (w.next().is_some() && w.next() == Some("hello_hypercall")).then_some(nr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_without_series_gets_its_lowest_free_number() {
        let table = "# comment 9\n0\tcommon\tread\t\tsys_read\n1\tcommon\twrite\t\tsys_write\n\n\
                     2\tcommon\topen\t\tsys_open\n424\tcommon\tpidfd_send_signal\tsys_pidfd_send_signal\n";
        assert_eq!(lowest_free_nr(table), Some(3));
        assert_eq!(lowest_free_nr("# only comments\n"), None);
    }

    #[test]
    fn syscall_number_from_the_table_hunk() {
        let patch =
            "+++ b/arch/x86/entry/syscalls/syscall_64.tbl\n 335\tcommon\turetprobe\t\tsys_uretprobe\n\
                     +336\tcommon\thello_hypercall\t\tsys_hello_hypercall\n";
        assert_eq!(nr_from_patch(patch), Some(336));
        assert_eq!(
            nr_from_patch("+asmlinkage long sys_hello_hypercall(void);\n"),
            None
        );
    }
}
