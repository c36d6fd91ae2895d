//! L1's init: the patched host's side of the end-to-end test.
//!
//! It mounts what it needs, turns on tracing, runs L2 under L1's KVM with
//! QEMU from the host root (shared read-only over 9p), disables the
//! hypercall when the probe in L2 asks, saves the trace into the run
//! directory and powers off. Every fact goes to L1's second serial port;
//! xtask draws the verdict.

mod l2;
mod mounts;
mod param;
mod report;
mod tests;
mod trace;

use std::path::Path;

use anyhow::{Context, Result};
use proto::{AgentConfig, Event};

/// Where the run directory is mounted inside L1.
const OUT: &str = "/tmp/out";

fn main() {
    let mounted = mounts::mount_all(OUT);
    let mut report = report::Report::open();
    report.send(&Event::Hello {
        who: "agent".into(),
        kernel: kernel_release(),
    });
    let result = mounted.and_then(|()| run(&mut report));
    if let Err(err) = result {
        report.send(&Event::Error {
            what: format!("{err:#}"),
        });
    }
    report.send(&Event::Done { who: "agent".into() });
    power_off();
}

fn run(report: &mut report::Report) -> Result<()> {
    let out = Path::new(OUT);
    let text = std::fs::read_to_string(out.join(proto::AGENT_CONFIG)).context("read agent.json")?;
    let cfg: AgentConfig = serde_json::from_str(&text).context("parse agent.json")?;

    report.send(&Event::Fact {
        name: "hello_hypercall_param".into(),
        value: param::describe(param::read()),
    });
    if !Path::new("/dev/kvm").exists() {
        report.send(&Event::Skip {
            reason: "L1 has no /dev/kvm: its CPU exposes no SVM/VMX, or KVM is not built in".into(),
        });
        return Ok(());
    }

    let vendor = trace::Vendor::detect();
    trace::start(cfg.trace_buffer_kb, vendor).context("set up tracing")?;
    let result = run_guests(&cfg, out, report);
    trace::stop_and_save(&out.join("trace.txt")).context("save the trace")?;
    result?;
    if !cfg.l1_tests.is_empty() {
        // The probe had the hypercall disabled; the tests expect it on.
        if param::read().is_some() {
            param::write(true)?;
        }
        let names = proto::l1_test_names(&cfg.l1_tests);
        for (test, name) in cfg.l1_tests.iter().zip(&names) {
            report.send(&tests::run(test, name, out, cfg.l1_test_timeout_secs)?);
        }
    }
    Ok(())
}

/// Runs each L2 guest in turn. The first one has the hypercall disabled
/// half-way; every later one starts with it enabled again, in a trace
/// phase of its own.
fn run_guests(cfg: &AgentConfig, out: &Path, report: &mut report::Report) -> Result<()> {
    for (i, guest) in cfg.guests.iter().enumerate() {
        if i > 0 {
            if param::read().is_some() {
                param::write(true)?;
            }
            trace::mark(&format!("{}{}", proto::TRACE_MARK_PREFIX, guest.name))?;
        }
        let exit =
            l2::run(cfg, guest, out, report, on_ask).with_context(|| format!("run L2 {}", guest.name))?;
        report.send(&exit);
    }
    Ok(())
}

/// Does what the probe asked for; the answer goes back to the probe.
fn on_ask(what: &str) -> Result<()> {
    match what {
        "disable" => {
            trace::mark(&format!("{}disabled", proto::TRACE_MARK_PREFIX))?;
            // An unpatched host has no parameter; there is nothing to turn
            // off, and the verdict reads that from the parameter fact.
            if param::read().is_some() {
                param::write(false)?;
            }
            Ok(())
        }
        other => anyhow::bail!("unknown request {other:?}"),
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Ends L1: QEMU runs with `-no-reboot`, and a reboot needs no ACPI.
fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // PID 1 must never exit: that would panic the kernel.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
