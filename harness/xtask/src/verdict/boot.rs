//! Did each VM boot and report to its end: L1's agent, the L2 guests and
//! their probes, the host's parameter and the guest module.

use proto::{Event, FactName, GuestName, ParamState};

use super::{fact_value, Check, Verdict};

/// Why a VM reported nothing: CRASH with the panic line, TIMEOUT, or
/// NO RESULT with the console's last line.
pub(crate) fn no_report(vm: &str, timed_out: bool, console: &str) -> String {
    if let Some(line) = console.lines().find(|l| l.contains("Kernel panic")) {
        return format!("CRASH: {vm} panicked: {}\n{}", line.trim(), tail(console, 15));
    }
    if timed_out {
        return format!(
            "TIMEOUT: {vm} did not finish before its deadline and was killed\n{}",
            tail(console, 15)
        );
    }
    format!(
        "NO RESULT: {vm}'s report is missing or incomplete\n{}",
        tail(console, 15)
    )
}

/// The prefix of an L2 check that ended in [`reset_before_console`].
pub(crate) const RESET: &str = "RESET:";

/// An L2 QEMU that exited 0 on its own before the guest's console printed
/// a byte or its probe said hello: with -no-reboot, that is the guest
/// resetting (a triple fault) early in its boot. Nothing of the series has
/// run in it yet (no probe, no call), so `cargo xtask ci` boots the run
/// once more when it sees this (ci.rs); a deterministic reset fails both.
fn reset_before_console(secs: f64) -> String {
    format!(
        "{RESET} L2 reset after {secs:.1}s, before its console printed anything or its probe started \
         (QEMU, with -no-reboot, exited 0): a triple fault early in its boot"
    )
}

/// L1's QEMU exited 0 on its own while the agent was still running, and
/// L1's console shows neither a panic nor the kernel's "reboot:" line that
/// the agent's power-off prints: with -no-reboot, that is L1 resetting (a
/// triple fault), as nested multi-threaded TCG was seen to do.
pub(crate) fn l1_reset(code: Option<i32>, timed_out: bool, console: &str) -> Option<String> {
    let quiet_end = !console.contains("Kernel panic") && !console.contains("reboot:");
    (code == Some(0) && !timed_out && quiet_end).then(|| {
        format!(
            "{RESET} L1 reset while the agent was running: QEMU, with -no-reboot, exited 0 \
             with neither a panic nor a power-off on L1's console (a triple fault)\n{}",
            tail(console, 15)
        )
    })
}

pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("    | {}", l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn param_check(events: &[Event]) -> Check {
    let value = fact_value(events, FactName::HelloHypercallParam);
    match value.map(|v| (v, ParamState::parse(v))) {
        Some((_, Some(ParamState::On))) => Check::new("host_param", Verdict::Pass, "kvm.hello_hypercall is on in L1"),
        Some((_, Some(ParamState::Absent))) => Check::new(
            "host_param",
            Verdict::Fail,
            "L1 has no kvm.hello_hypercall parameter: the host kernel lacks the series (or CONFIG_KVM_HELLO_HYPERCALL)",
        ),
        Some((other, _)) => Check::new("host_param", Verdict::Fail, format!("kvm.hello_hypercall is {other} in L1; the run enables it on the command line")),
        None => Check::new("host_param", Verdict::Fail, "the agent did not report kvm.hello_hypercall"),
    }
}

/// The guest module built without warnings at W=1 and loaded in L2.
pub(super) fn module_check(events: &[Event], check: &str, guest: GuestName, warnings: &[String]) -> Check {
    let load = fact_value(events, FactName::ModuleLoad(guest));
    match (load, warnings.is_empty()) {
        (_, false) => Check::new(
            check,
            Verdict::Fail,
            format!("W=1 warnings: {}", warnings.join(" | ")),
        ),
        (Some("ok"), true) => Check::new(check, Verdict::Pass, "built without W=1 warnings, loaded in L2"),
        (Some(err), true) => Check::new(check, Verdict::Fail, format!("did not load in L2: {err}")),
        (None, true) => Check::new(
            check,
            Verdict::Fail,
            "NO RESULT: the probe did not report loading it",
        ),
    }
}

/// One L2 guest booted, its probe reported to the end, and QEMU ended in
/// time.
pub(super) fn l2_check(events: &[Event], check: &str, guest: GuestName, console: &str) -> Check {
    let exit = events.iter().find_map(|ev| match ev {
        Event::L2Exit {
            guest: g,
            status,
            timed_out,
            seconds,
            init_seconds,
            signal,
            ..
        } if *g == guest => Some((*timed_out, *seconds, *init_seconds, *signal, *status)),
        _ => None,
    });
    let probe_done = events
        .iter()
        .any(|ev| matches!(ev, Event::Done { who } if *who == guest.probe()));
    match exit {
        Some((_, secs, _, Some(signal), _)) => Check::new(
            check,
            Verdict::Fail,
            format!(
                "CRASH: L2's QEMU ended by signal {signal}{} after {secs:.1}s{}",
                if signal == 9 { " (SIGKILL)" } else { "" },
                if probe_done {
                    ""
                } else {
                    ", before its probe finished"
                }
            ),
        ),
        Some((false, secs, init, None, _)) if probe_done => Check::new(
            check,
            Verdict::Pass,
            match init {
                Some(init) => {
                    format!("L2 reached init after {init:.1}s, the probe reported, L2 ended after {secs:.1}s")
                }
                None => format!("L2 booted, the probe reported, L2 ended after {secs:.1}s"),
            },
        ),
        Some((false, secs, None, None, Some(0))) if console.trim().is_empty() => {
            Check::new(check, Verdict::Fail, reset_before_console(secs))
        }
        Some((timed_out, _, _, None, _)) => {
            Check::new(check, Verdict::Fail, no_report("L2", timed_out, console))
        }
        None => Check::new(check, Verdict::Fail, "the agent did not report how L2 ended"),
    }
}

/// The agent's own checks: `agent` (it ran to its end without an error;
/// `failure` says why not, given the errors it reported) and, when L1 had
/// no nested KVM, the `nested_kvm` skip. The flag is true for that skip:
/// nothing else can be judged then.
pub(crate) fn agent_checks(
    events: &[Event],
    failure: impl FnOnce(&[&str]) -> Option<String>,
) -> (Vec<Check>, bool) {
    let errors: Vec<&str> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::Error { what } => Some(what.as_str()),
            _ => None,
        })
        .collect();
    let mut checks = vec![match failure(&errors) {
        Some(why) => Check::new("agent", Verdict::Fail, why),
        None => Check::new("agent", Verdict::Pass, "the agent reported to its end"),
    }];
    let skip = events.iter().find_map(|ev| match ev {
        Event::Skip { reason } => Some(reason.clone()),
        _ => None,
    });
    if let Some(reason) = &skip {
        checks.push(Check::new("nested_kvm", Verdict::Skip, format!("SKIP: {reason}")));
    }
    (checks, skip.is_some())
}
