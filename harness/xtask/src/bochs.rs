//! L1 under Bochs, the one emulator here with Intel VMX: the bochsrc from
//! a small pure function (a comment per line on why), and a run that ends
//! when the agent is done, the kernel panics or the deadline passes, and
//! never leaves Bochs behind.
//!
//! QEMU's TCG emulates AMD SVM only, so this is how kvm_intel (and the
//! VMCALL exit) runs at all on a machine without VMX of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The Intel model L1 runs on: Skylake-X has VMX with EPT and unrestricted
/// guests, which kvm_intel needs for real-mode guests (hcall's cases).
pub const MODEL: &str = "corei7_skylake_x";

/// Instructions per emulated second. Near what Bochs runs here per real
/// second, so that the guest's timers (and its deadlines) keep pace with
/// the wall clock: too low and every timeout fires early in real terms,
/// too high and time crawls in the guest.
pub const IPS: u64 = 60_000_000;

/// What Bochs boots and where its output goes.
pub struct Machine {
    pub memory_mib: u32,
    /// The El Torito ISO with GRUB, L1's kernel and its initramfs.
    pub iso: PathBuf,
    /// COM1: L1's console.
    pub console: PathBuf,
    /// COM2: the agent's report port (ttyS1).
    pub report: PathBuf,
    /// Bochs' own log.
    pub log: PathBuf,
}

/// The bochsrc, one line per setting.
pub fn bochsrc(m: &Machine) -> String {
    let lines = [
        // One CPU: Bochs emulates every CPU on one host thread, so a second
        // would only halve the first's speed.
        format!("cpu: model={MODEL}, count=1, ips={IPS}"),
        format!("megs: {}", m.memory_mib),
        // Debian's builds of Bochs' BIOS and the LGPL VGA BIOS.
        "romimage: file=/usr/share/bochs/BIOS-bochs-latest".into(),
        "vgaromimage: file=/usr/share/vgabios/vgabios.bin".into(),
        // Bochs cannot boot a kernel directly: GRUB on a CD does.
        format!(
            "ata0-master: type=cdrom, path={}, status=inserted",
            m.iso.display()
        ),
        "boot: cdrom".into(),
        // The text display needs no X server; Bochs runs in a session of
        // its own (see run), so it never draws on the user's terminal.
        "display_library: term".into(),
        // As fast as it can go, from a fixed date, so runs are alike.
        "clock: sync=none, time0=1".into(),
        format!("com1: enabled=1, mode=file, dev={}", m.console.display()),
        format!("com2: enabled=1, mode=file, dev={}", m.report.display()),
        format!("log: {}", m.log.display()),
        // An emulator panic ends the run (it would otherwise ask on the
        // debugger's prompt); errors and notes stay in the log.
        "panic: action=fatal".into(),
        "error: action=report".into(),
        "info: action=report".into(),
        "debug: action=ignore".into(),
    ];
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Debian's Bochs is built with its debugger, which waits at a prompt
/// before the first instruction: this is the one command it is fed.
pub const DEBUGGER_COMMANDS: &str = "c\n";

/// Why a Bochs run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The agent sent its last report line.
    Done,
    /// L1's kernel panicked; with `panic=-1` it would boot again, since
    /// Bochs has no -no-reboot, so the run is stopped.
    Panic,
    /// L1 started a second time (a triple fault or a reboot resets Bochs).
    Reset,
    /// Bochs exited on its own, with this status.
    Exited(Option<i32>),
    TimedOut,
}

impl End {
    pub fn describe(self) -> String {
        match self {
            End::Done => "the agent finished".into(),
            End::Panic => "CRASH: L1's kernel panicked".into(),
            End::Reset => "CRASH: L1 reset and started booting again".into(),
            End::Exited(code) => format!("Bochs exited with {code:?} before the agent finished"),
            End::TimedOut => "TIMEOUT: killed at its deadline".into(),
        }
    }
}

/// How the run looks so far, from L1's console and its report port; `None`
/// while it goes on.
pub fn ended(console: &str, report: &str) -> Option<End> {
    let done = report
        .lines()
        .filter_map(proto::Event::from_line)
        .any(|ev| matches!(ev, proto::Event::Done { who } if who == proto::Who::Agent));
    if done {
        Some(End::Done)
    } else if console.contains("Kernel panic - not syncing") {
        Some(End::Panic)
    } else if console.matches("Linux version ").count() > 1 {
        Some(End::Reset)
    } else {
        None
    }
}

/// How a Bochs run ended, and after how long.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub end: End,
    pub seconds: f64,
}

/// Kills Bochs when dropped, so no error path leaves it running.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs Bochs on `bochsrc` until [`ended`] says so or `timeout` passes.
/// Bochs' stdout and stderr (its debugger's chatter) go to `output`.
pub fn run(
    bochsrc: &Path,
    rc: &Path,
    machine: &Machine,
    output: &Path,
    timeout: Duration,
) -> Result<Outcome> {
    let out = fs_err::File::create(output).with_context(|| format!("create {}", output.display()))?;
    let started = Instant::now();
    // setsid: a session without a controlling terminal, so the text
    // display cannot find (and draw over) the user's.
    let child = Command::new("setsid")
        .arg("bochs")
        .args(["-q", "-f"])
        .arg(bochsrc)
        .arg("-rc")
        .arg(rc)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?.into_file())
        .stderr(out.into_file())
        .spawn()
        .context("start bochs")?;
    let mut child = Reaper(child);
    let read = |p: &Path| fs_err::read_to_string(p).unwrap_or_default();
    loop {
        if let Some(status) = child.0.try_wait()? {
            // A last look: the agent may have finished just before.
            let end = ended(&read(&machine.console), &read(&machine.report));
            return Ok(Outcome {
                end: end.unwrap_or(End::Exited(status.code())),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        if let Some(end) = ended(&read(&machine.console), &read(&machine.report)) {
            drop(child);
            return Ok(Outcome {
                end,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        if started.elapsed() >= timeout {
            drop(child);
            return Ok(Outcome {
                end: End::TimedOut,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        // SIGINT or SIGTERM: Bochs goes now, the run reports INTERRUPTED.
        if let Some(signal) = crate::interrupt::caught() {
            drop(child);
            anyhow::bail!("interrupted by {signal}: Bochs stopped");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            memory_mib: 768,
            iso: "/r/l1.iso".into(),
            console: "/r/l1-console.log".into(),
            report: "/r/l1-report.log".into(),
            log: "/r/bochs.log".into(),
        }
    }

    #[test]
    fn bochsrc_boots_the_iso_on_an_intel_model_with_two_ports() {
        let rc = bochsrc(&machine());
        assert!(rc.contains("cpu: model=corei7_skylake_x, count=1"));
        assert!(rc.contains("ata0-master: type=cdrom, path=/r/l1.iso, status=inserted\nboot: cdrom\n"));
        assert!(rc.contains("com1: enabled=1, mode=file, dev=/r/l1-console.log\n"));
        assert!(rc.contains("com2: enabled=1, mode=file, dev=/r/l1-report.log\n"));
        assert!(rc.contains("display_library: term\n"));
    }

    #[test]
    fn a_run_ends_on_done_panic_or_second_boot() {
        let done = proto::Event::Done {
            who: proto::Who::Agent,
        }
        .to_line();
        assert_eq!(ended("Linux version 6.12", &done), Some(End::Done));
        assert_eq!(ended("Linux version 6.12\n", ""), None);
        // A probe's Done is not the agent's.
        let probe = proto::Event::Done {
            who: proto::Who::Probe,
        }
        .to_line();
        assert_eq!(ended("", &probe), None);
        assert_eq!(
            ended("Kernel panic - not syncing: Attempted to kill init!", ""),
            Some(End::Panic)
        );
        assert_eq!(
            ended("Linux version 6.12 ...\n...\nLinux version 6.12 ...\n", ""),
            Some(End::Reset)
        );
        // The agent's Done wins: the run finished before anything else.
        assert_eq!(ended("Kernel panic - not syncing", &done), Some(End::Done));
    }
}
