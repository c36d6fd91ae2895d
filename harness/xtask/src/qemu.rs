//! L1's QEMU: the command line from small pure functions (one comment per
//! flag on why it is there), the KVM probe, and a run with a deadline that
//! never leaves QEMU behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::kvm_host;

/// The accelerator L1 actually runs on, after `--accel auto` was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
    /// TCG with every vCPU on one host thread (see flags::Accel).
    TcgSingle,
}

impl Accel {
    /// L1's vCPUs. Two under KVM: the stock guest boots on one while the
    /// main guest and the tests run on the other. One under multi-threaded
    /// TCG, where a second vCPU made about one run in eight fail, L1 or an
    /// L2 resetting or a guest hanging, and was slower too: side by side,
    /// the same warm run booted 30 times with each passed 30 of 30 with one
    /// vCPU (median 15.6 s) and 29 of 30 with two (20.2 s; L1 reset once).
    /// tcg-single keeps two vCPUs, on one thread, for the soak's vCPUs
    /// that call at once.
    pub fn cpus(self) -> u32 {
        match self {
            Accel::Kvm | Accel::TcgSingle => 2,
            Accel::Tcg => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::TcgSingle => "tcg-single",
        }
    }
}

/// What L1 boots and where its output goes.
pub struct L1 {
    pub accel: Accel,
    pub kernel: PathBuf,
    /// The agent binary, run as init from the host root.
    pub agent: PathBuf,
    /// The run directory, L1's only writable share.
    pub run_dir: PathBuf,
    pub memory_mib: u32,
    pub bios: Option<PathBuf>,
    /// Extra kernel parameters, e.g. `kvm.hello_hypercall=1`.
    pub params: Vec<String>,
}

pub fn accel_args(accel: Accel) -> Vec<String> {
    match accel {
        // The host's CPU as is, nested virtualisation included.
        Accel::Kvm => strings(&["-accel", "kvm", "-cpu", "host"]),
        // TCG's "max" CPU emulates AMD SVM, so KVM works inside L1.
        // thread=multi: a host thread per vCPU, the default on x86 hosts,
        // spelled out because the runs that chose one vCPU (Accel::cpus)
        // were measured with it.
        Accel::Tcg => strings(&["-accel", "tcg,thread=multi", "-cpu", "max"]),
        Accel::TcgSingle => strings(&["-accel", "tcg,thread=single", "-cpu", "max"]),
    }
}

/// Devices and board: as little as possible, since under TCG every
/// emulated device costs boot time.
pub fn machine_args(memory_mib: u32, cpus: u32, bios: Option<&Path>) -> Vec<String> {
    // One socket per vCPU, not cores: SeaBIOS's MP table lists one CPU per
    // socket, and L1 has no ACPI to find more.
    let smp = format!("{cpus},sockets={cpus},cores=1,threads=1");
    let mut args = strings(&[
        "-m",
        &memory_mib.to_string(),
        // See Accel::cpus for how many, and why.
        "-smp",
        &smp,
        // No default NIC, VGA, monitor or serial: only what is asked below.
        "-nodefaults",
        "-display",
        "none",
        // The agent ends with a reboot (no ACPI needed), which ends QEMU.
        "-no-reboot",
    ]);
    if let Some(bios) = bios {
        // qboot boots a -kernel faster than SeaBIOS.
        args.extend(["-bios".into(), bios.display().to_string()]);
    }
    args
}

/// The host's root, read-only, as L1's root; and the run directory, writable.
pub fn share_args(run_dir: &Path) -> Vec<String> {
    let share = |id: &str, path: &Path, tag: &str, extra: &str| {
        [
            "-fsdev".to_string(),
            format!("local,id={id},path={},security_model=none{extra}", path.display()),
            "-device".to_string(),
            format!("virtio-9p-pci,fsdev={id},mount_tag={tag}"),
        ]
    };
    let mut args = Vec::new();
    // L1 runs the host's own QEMU (and its libraries) for L2 from here.
    // remap: the host's / spans several file systems, whose inode numbers
    // would otherwise collide inside L1.
    args.extend(share(
        "root",
        Path::new("/"),
        "root",
        ",readonly=on,multidevs=remap",
    ));
    args.extend(share("out", run_dir, proto::OUT_TAG, ""));
    args
}

/// L1's kernel command line.
pub fn append(l1: &L1) -> String {
    let mut params = vec![
        "console=ttyS0".to_string(),
        // A 9p root, found by its mount tag: without a block layer the
        // kernel hands root= to 9p as the tag. "root" rather than
        // "/dev/root", because 6.1 strips a "/dev/" prefix and 6.12 does not.
        "root=root".into(),
        "rootfstype=9p".into(),
        // loose caching: the root is read-only, so nothing can go stale, and
        // QEMU's binary and libraries load much faster.
        "rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose".into(),
        "ro".into(),
        format!("init={}", l1.agent.display()),
        // A panic reboots at once, and -no-reboot turns that into an exit.
        "panic=-1".into(),
    ];
    params.extend(l1.params.iter().cloned());
    params.join(" ")
}

/// The whole L1 argv (without the program).
pub fn l1_args(l1: &L1) -> Vec<String> {
    let mut args = accel_args(l1.accel);
    args.extend(machine_args(l1.memory_mib, l1.accel.cpus(), l1.bios.as_deref()));
    args.extend(share_args(&l1.run_dir));
    args.extend(["-kernel".into(), l1.kernel.display().to_string()]);
    args.extend(["-append".into(), append(l1)]);
    // ttyS0: the console; ttyS1: the agent's report, a channel of its own.
    for file in ["l1-console.log", "l1-report.log"] {
        args.extend([
            "-serial".into(),
            format!("file:{}", l1.run_dir.join(file).display()),
        ]);
    }
    args
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// Finds a program on PATH; L1 needs QEMU's absolute path.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// qboot, when QEMU ships it.
pub fn qboot() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/share/qemu/qboot.rom");
    p.exists().then_some(p)
}

/// How a QEMU run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: Option<i32>,
    pub timed_out: bool,
}

/// Kills QEMU when dropped, so no error path leaves it running.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        proto::reap::kill(&mut self.0);
    }
}

/// Runs QEMU until it exits or the deadline passes. QEMU's own stderr goes
/// to `stderr_log`.
pub fn run(qemu: &Path, args: &[String], stderr_log: &Path, timeout: Duration) -> Result<Outcome> {
    let stderr = fs_err::File::create(stderr_log)?;
    let started = Instant::now();
    let child = Command::new(qemu)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.into_file())
        .spawn()
        .with_context(|| format!("start {}", qemu.display()))?;
    let mut child = Reaper(child);
    // SIGINT or SIGTERM: QEMU goes now, and the run reports INTERRUPTED.
    let ended = proto::reap::wait_until(&mut child.0, started + timeout, Duration::from_millis(50), || {
        crate::interrupt::caught().is_some()
    })
    .context("wait for QEMU")?;
    match ended {
        proto::reap::Ended::Exited(status) => Ok(Outcome {
            code: status.code(),
            timed_out: false,
        }),
        proto::reap::Ended::Deadline => Ok(Outcome {
            code: None,
            timed_out: true,
        }),
        proto::reap::Ended::Stopped => anyhow::bail!(
            "interrupted by {}: QEMU stopped",
            crate::interrupt::caught().unwrap_or("a signal")
        ),
    }
}

/// Decides whether L1 can use KVM: nothing visible may block it (see
/// [`kvm_host::blocker`]: CPU support, /dev/kvm and its permissions,
/// nesting), and a short boot of `kernel` under KVM must get as far as the
/// kernel's own "no root" panic. `Err` carries the reason for TCG and, for
/// a visible blocker, the one command that fixes it.
pub fn probe_kvm(qemu: &Path, kernel: &Path, dir: &Path) -> Result<(), String> {
    if let Some(b) = kvm_host::blocker(&kvm_host::HostFacts::read()) {
        return Err(format!("{}; fix: {}", b.reason(), b.fix()));
    }
    let log = dir.join("kvm-probe-console.log");
    let mut args = accel_args(Accel::Kvm);
    args.extend(machine_args(256, 1, None));
    args.extend(strings(&["-kernel", &kernel.display().to_string()]));
    args.extend(strings(&["-append", "console=ttyS0 panic=-1"]));
    args.extend(["-serial".into(), format!("file:{}", log.display())]);
    let outcome = run(
        qemu,
        &args,
        &dir.join("kvm-probe-qemu.log"),
        Duration::from_secs(60),
    )
    .map_err(|e| format!("{e:#}"))?;
    let console = fs_err::read_to_string(&log).unwrap_or_default();
    if console.contains("Kernel panic - not syncing: VFS") {
        return Ok(());
    }
    let why = fs_err::read_to_string(dir.join("kvm-probe-qemu.log")).unwrap_or_default();
    let why = why.lines().last().unwrap_or("no output").to_string();
    Err(format!(
        "a test boot under KVM did not reach the kernel's root mount (QEMU exit {:?}: {why})",
        outcome.code
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l1() -> L1 {
        L1 {
            accel: Accel::Tcg,
            kernel: "/k/bzImage".into(),
            agent: "/t/agent".into(),
            run_dir: "/t/run".into(),
            memory_mib: 1024,
            bios: None,
            params: vec!["kvm.hello_hypercall=1".into()],
        }
    }

    #[test]
    fn tcg_uses_max_cpu_for_svm() {
        assert_eq!(
            accel_args(Accel::Tcg),
            ["-accel", "tcg,thread=multi", "-cpu", "max"]
        );
        assert_eq!(accel_args(Accel::Kvm), ["-accel", "kvm", "-cpu", "host"]);
    }

    #[test]
    fn l1_boots_the_agent_from_a_read_only_9p_root() {
        let a = append(&l1());
        assert!(a.contains("root=root rootfstype=9p"));
        assert!(a.contains(" ro init=/t/agent panic=-1 kvm.hello_hypercall=1"));
        let args = l1_args(&l1()).join(" ");
        assert!(args.contains("-fsdev local,id=root,path=/,security_model=none,readonly=on"));
        assert!(args.contains("-device virtio-9p-pci,fsdev=root,mount_tag=root"));
        assert!(args.contains("-fsdev local,id=out,path=/t/run,security_model=none"));
        assert!(args.ends_with("-serial file:/t/run/l1-console.log -serial file:/t/run/l1-report.log"));
        assert!(args.contains("-no-reboot"));
        assert!(args.contains("-smp 1,sockets=1,cores=1,threads=1"));
    }
}
