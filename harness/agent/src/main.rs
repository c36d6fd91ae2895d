//! L1's init: the patched host's side of the end-to-end test.
//!
//! It mounts what it needs, turns on tracing, runs the L2 guests under L1's
//! KVM with QEMU from the host root (shared read-only over 9p) beside the
//! L1 tests, disables the hypercall when the main guest's probe asks, saves
//! the trace into the run directory and powers off. Every fact goes to
//! L1's second serial port; xtask draws the verdict.

mod floor;
mod l2;
mod mounts;
mod param;
mod report;
mod tests;
mod trace;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use param::{Creating, Lease, Leases};
use proto::{AgentConfig, Event, FactName, Guest, L1Test, Request, TracePhase, Who};
use report::Report;

/// Where the run directory is mounted inside L1.
const OUT: &str = proto::L1_OUT;

fn main() {
    let share = mounts::Share::from_env();
    let mounted = mounts::mount_all(OUT, share);
    if proto::AgentMode::parse(std::env::var(proto::names::AGENT_MODE_ENV).ok().as_deref())
        == proto::AgentMode::Floor
    {
        // No report port in this mode: the console says what went wrong,
        // and bench finds no exit file.
        if let Err(err) = mounted.and_then(|()| floor::run(Path::new(OUT))) {
            eprintln!("agent (floor): {err:#}");
        }
        proto::guest::power_off();
    }
    let report = report::Report::open();
    report.send(&Event::Hello {
        who: Who::Agent,
        kernel: proto::guest::kernel_release(),
    });
    let result = mounted.and_then(|()| run(&report, share));
    if let Err(err) = result {
        report.send(&Event::Error {
            what: format!("{err:#}"),
        });
    }
    if share == mounts::Share::Serial {
        if let Err(err) = report::send_files(&report, Path::new(OUT)) {
            report.send(&Event::Error {
                what: format!("{err:#}"),
            });
        }
    }
    report.send(&Event::Done { who: Who::Agent });
    // The emulated UART sends at its own pace: what is still queued when
    // the machine stops is lost, the report's last lines first.
    report.drain();
    proto::guest::power_off();
}

fn run(report: &Report, share: mounts::Share) -> Result<()> {
    let out = Path::new(OUT);
    let config = match share {
        mounts::Share::NineP => out.join(proto::AGENT_CONFIG),
        mounts::Share::Serial => proto::INITRAMFS_AGENT_CONFIG.into(),
    };
    let text = fs_err::read_to_string(&config).context("read agent.json")?;
    let cfg: AgentConfig = serde_json::from_str(&text).context("parse agent.json")?;

    report.send(&Event::Fact {
        name: FactName::HelloHypercallParam,
        value: param::describe(),
    });
    if !Path::new("/dev/kvm").exists() {
        report.send(&Event::Skip {
            reason: "L1 has no /dev/kvm: its CPU exposes no SVM/VMX, or KVM is not built in".into(),
        });
        return Ok(());
    }

    let vendor = trace::Vendor::detect();
    trace::start(cfg.trace_buffer_kb, vendor, cfg.guests.is_empty()).context("set up tracing")?;
    let switch = Leases::default();
    // Every VM is registered before any guest starts, so that none can be
    // created after somebody turned the parameter off.
    let mut creating: Vec<Creating> = cfg.guests.iter().map(|_| switch.creating_vm()).collect();
    std::thread::scope(|s| {
        // Every guest after the first boots on a thread of its own (the
        // stock kernel's boot is the longest part of a run), while this
        // thread runs the first guest; the trace tells their lines apart
        // by the process that made each call.
        let first = (!creating.is_empty()).then(|| creating.remove(0));
        let others: Vec<_> = cfg
            .guests
            .iter()
            .skip(1)
            .zip(creating)
            .map(|(guest, vm)| {
                let switch = &switch;
                let cfg = &cfg;
                s.spawn(move || run_guest(cfg, guest, out, report, vm, switch))
            })
            .collect();
        let mut result = match (cfg.guests.first(), first) {
            (Some(guest), Some(vm)) => run_guest(&cfg, guest, out, report, vm, &switch),
            _ => Ok(()),
        };
        // The tests follow the first guest on a thread of their own, so
        // that a hung test cannot keep the trace from being saved once the
        // guests are done.
        let mut tests = result
            .is_ok()
            .then(|| s.spawn(|| run_tests(&cfg.l1_tests, &cfg, out, report, &switch)));
        for other in others {
            result = result.and(joined(other.join()));
        }
        // Without guests (the Intel run), the tests are what the trace is
        // for: it is saved once they are done.
        if cfg.guests.is_empty() {
            if let Some(tests) = tests.take() {
                result = result.and(joined(tests.join()));
            }
        }
        let saved = trace::stop_and_save(&out.join("trace.txt")).context("save the trace");
        if let Some(tests) = tests {
            result = result.and(joined(tests.join()));
        }
        result.and(saved)
    })?;
    // Extra tests (--l1-test) run alone and after the trace is saved: a
    // benchmark may toggle tracing, and its calls would flood the buffer.
    run_tests(&cfg.l1_extra_tests, &cfg, out, report, &switch)
}

fn joined(r: std::thread::Result<Result<()>>) -> Result<()> {
    r.unwrap_or_else(|_| Err(anyhow!("a thread of the agent panicked")))
}

/// Runs one L2 guest; what it holds of the switch is released once its
/// QEMU has ended.
fn run_guest(
    cfg: &AgentConfig,
    guest: &Guest,
    out: &Path,
    report: &Report,
    creating: Creating,
    switch: &Leases,
) -> Result<()> {
    let mut lease = None;
    let exit = l2::run(cfg, guest, out, report, creating, |what, deadline| {
        on_ask(what, deadline, switch, &mut lease)
    })
    .with_context(|| format!("run L2 {}", guest.name))?;
    drop(lease);
    report.send(&exit);
    Ok(())
}

/// Does what a probe asked for, waiting for the switch no longer than the
/// guest's deadline; the answer goes back to the probe.
fn on_ask<'a>(
    what: Request,
    deadline: Instant,
    switch: &'a Leases,
    lease: &mut Option<Lease<'a>>,
) -> Result<()> {
    match what {
        // The main guest, half-way: the parameter off until it ends. Its
        // own VM keeps the hypercall (KVM read the parameter when it
        // created the VM), which is what its later calls prove. The probe
        // waits for the answer, so none of its calls can fall between the
        // switch and the marker.
        Request::Disable => {
            // A second request replaces the first; release before
            // waiting, or the guest would wait for itself.
            *lease = None;
            *lease = Some(switch.lease(false, deadline)?);
            trace::mark(&TracePhase::Disabled.marker())
        }
        // The main guest, before it runs the series' kselftest: its calls
        // go into a phase of their own, apart from the probe's.
        Request::Kselftest => trace::mark(&TracePhase::Kselftest.marker()),
    }
}

/// Runs test programs one by one, each holding the switch (they expect
/// the hypercall on, and hcall toggles it) but only for its own run, so a
/// guest that asks in between waits for one test at most.
fn run_tests(
    tests: &[L1Test],
    cfg: &AgentConfig,
    out: &Path,
    report: &Report,
    switch: &Leases,
) -> Result<()> {
    let timeout = Duration::from_secs(cfg.l1_test_timeout_secs);
    for test in tests {
        let _lease = switch.lease(true, Instant::now() + timeout)?;
        report.send(&tests::run(test, out, cfg.l1_test_timeout_secs)?);
    }
    Ok(())
}
