//! Runs L2 under L1's KVM and relays its report port.
//!
//! L2's second serial port is QEMU's stdio: the probe's reports arrive on
//! QEMU's stdout, and answers to its requests go to QEMU's stdin.

use fs_err::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proto::{AgentConfig, Event, FactName, Guest, Request};

use crate::param::{self, Creating};
use crate::report::Report;

/// How often L2's QEMU is checked for its VM until it has one.
const VM_POLL: Duration = Duration::from_millis(10);

/// Runs L2 to its end or deadline, relays every report line, and answers
/// the probe's requests with `on_ask`, which gets L2's deadline. Returns
/// how L2's QEMU ended. `creating` is released once QEMU has created its
/// VM (or its guest reports, or it ends), and the value kvm.hello_hypercall
/// had then becomes the fact `l2_<guest>_vm_created`.
pub fn run(
    cfg: &AgentConfig,
    guest: &Guest,
    out: &Path,
    report: &Report,
    creating: Creating<'_>,
    mut on_ask: impl FnMut(Request, Instant) -> Result<()>,
) -> Result<Event> {
    let cpuinfo = fs_err::read_to_string("/proc/cpuinfo").unwrap_or_default();
    // Some kernels (6.1) print "cpu MHz: 0.000" when they could not sample
    // the frequency; then use the one xtask measured on the host, which is
    // L1's own under TCG.
    let khz = proto::tsc_khz(&cpuinfo).or(cfg.fallback_tsc_khz);
    let args = proto::l2_qemu_args(cfg, guest, out, khz);
    report.send(&Event::Fact {
        name: FactName::L2Command(guest.name),
        value: format!("{} {}", cfg.qemu, args.join(" ")),
    });
    let stderr = File::create(out.join(guest.file("qemu-stderr"))).context("create QEMU's log")?;
    let started = Instant::now();
    let mut child = Command::new(&cfg.qemu)
        .args(&args)
        // The host's /tmp is read-only in L1; scratch files go to L1's own.
        .env("TMPDIR", proto::L1_SCRATCH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr.into_file())
        .spawn()
        .with_context(|| format!("start {}", cfg.qemu))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().context("QEMU's stdin")?;
    let lines = spawn_reader(child.stdout.take().context("QEMU's stdout")?);
    let mut log = File::create(out.join(guest.file("report"))).context("create the L2 report log")?;

    let deadline = started + Duration::from_secs(cfg.l2_timeout_secs);
    let mut timed_out = false;
    let (mut init_seconds, mut done_seconds) = (None, None);
    let mut creating = Some(creating);
    let vm_created = |creating: &mut Option<Creating<'_>>, how: &str| {
        if creating.take().is_some() {
            report.send(&Event::Fact {
                name: FactName::L2VmCreated(guest.name),
                value: format!(
                    "{how} after {:.2}s, with kvm.hello_hypercall {}",
                    started.elapsed().as_secs_f64(),
                    param::describe()
                ),
            });
        }
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Until the VM exists, wake up often to look for it.
        let wait = if creating.is_some() {
            left.min(VM_POLL)
        } else {
            left
        };
        match lines.recv_timeout(wait) {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                let Some(event) = Event::from_line(&line) else {
                    continue;
                };
                // A guest that reports runs, so its VM exists.
                vm_created(&mut creating, "seen when the guest first reported");
                report.send(&event);
                match &event {
                    Event::Hello { .. } if kills_this(cfg, guest) => {
                        init_seconds = Some(started.elapsed().as_secs_f64());
                        let _ = child.kill();
                    }
                    Event::Hello { .. } => init_seconds = Some(started.elapsed().as_secs_f64()),
                    Event::Done { .. } => done_seconds = Some(started.elapsed().as_secs_f64()),
                    _ => {}
                }
                if let Event::Ask { what } = &event {
                    let answer = match on_ask(*what, deadline) {
                        Ok(()) => proto::ANSWER_OK.to_string(),
                        Err(e) => format!("error: {e:#}"),
                    };
                    let _ = writeln!(stdin, "{answer}");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                if has_vm(pid) {
                    vm_created(&mut creating, "created");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
        }
    }
    // A QEMU that ended without a VM holds nobody up any longer.
    drop(creating);
    let (status, signal) = finish(&mut child, deadline, timed_out)?;
    Ok(Event::L2Exit {
        guest: guest.name,
        status,
        signal,
        timed_out,
        seconds: started.elapsed().as_secs_f64(),
        init_seconds,
        done_seconds,
        pid: Some(pid),
    })
}

/// Whether process `pid` holds a KVM VM: KVM_CREATE_VM returns a file
/// descriptor on the anonymous inode "kvm-vm".
/// Whether the injected fault is to kill this guest's QEMU.
fn kills_this(cfg: &AgentConfig, guest: &Guest) -> bool {
    cfg.fault.as_deref() == Some("kill-l2-main") && guest.name == proto::GuestName::Main
}

fn has_vm(pid: u32) -> bool {
    let Ok(fds) = fs_err::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs_err::read_link(fd.path()).is_ok_and(|target| is_vm_fd(&target)))
}

fn is_vm_fd(target: &Path) -> bool {
    target.as_os_str() == "anon_inode:kvm-vm"
}

/// Reads QEMU's stdout on a thread, so the main loop can wait with a
/// deadline; the channel closes when QEMU closes its stdout.
fn spawn_reader(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for QEMU until the deadline and kills it after (at once when it
/// already timed out); QEMU is never left running. Returns its exit code,
/// or the signal that ended it; both `None` when it was killed here.
fn finish(child: &mut Child, deadline: Instant, timed_out: bool) -> Result<(Option<i32>, Option<i32>)> {
    use std::os::unix::process::ExitStatusExt;
    if timed_out {
        proto::reap::kill(child);
        return Ok((None, None));
    }
    let status = proto::reap::wait_or_kill(child, deadline).context("wait for QEMU")?;
    Ok(status.map_or((None, None), |s| (s.code(), s.signal())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_fds_are_told_by_their_inode() {
        assert!(is_vm_fd(Path::new("anon_inode:kvm-vm")));
        assert!(!is_vm_fd(Path::new("anon_inode:kvm-vcpu:0")));
        assert!(!is_vm_fd(Path::new("/dev/kvm")));
        // This test process has no VM.
        assert!(!has_vm(std::process::id()));
        assert!(!has_vm(u32::MAX));
    }
}
