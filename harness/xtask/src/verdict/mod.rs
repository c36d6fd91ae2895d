//! The verdict: named checks drawn from what the guests reported, the
//! host's trace and the consoles. Pure: the inputs are texts and facts, so
//! every rule is tested on captured logs.
//!
//! A run that crashed, hung or reported nothing never passes: those end in
//! a failing `l1_boot` or `l2_run` check that says CRASH, TIMEOUT or
//! NO RESULT.

mod boot;
mod calls;
pub(crate) mod evidence;
mod host_trace;
mod l1_tests;
mod l2_tests;
mod logs;
mod stock_guest;

use proto::{Call, Event, FactName, GuestName, Who};
use serde::Serialize;

use crate::trace;
pub(crate) use boot::agent_checks;
use boot::l1_reset;
use boot::{l2_check, module_check};
pub(crate) use boot::{no_report, param_check, tail, RESET};
use calls::{promised_checks, PARAM_OFF_CASES, SYSCALL_CHECKS};
use host_trace::{owners, trace_checks, unattributable};
pub(crate) use l1_tests::l1_test_checks;
pub(crate) use l1_tests::STOPPED;
use l2_tests::kselftest_checks;
pub(crate) use logs::console_check;
use logs::dmesg_check;
use stock_guest::stock_checks;

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    /// The files of the run directory it was judged from.
    pub evidence: Vec<String>,
}

impl Check {
    pub fn new(name: &str, verdict: Verdict, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict,
            detail: detail.into(),
            evidence: evidence::of(name),
        }
    }
}

/// The stock-kernel guest: skipped with a reason, or run.
pub enum Stock {
    Skipped(String),
    Ran {
        release: String,
        console: String,
        /// W=1 warnings of the module built against its headers.
        module_warnings: Vec<String>,
    },
}

/// How the series' syscall kselftest got (or did not get) into the main
/// L2 guest.
#[derive(Debug, Clone, PartialEq)]
pub enum Kselftest {
    /// Not built, and why: an --unpatched run has no series.
    NotBuilt(String),
    /// The patched tree lacks the file (the path), which the series adds.
    Missing(String),
    /// It did not compile: what failed and the log's last lines.
    BuildFailed(String),
    /// Built (with these -Wall warnings) and packed into the initramfs.
    Built { warnings: Vec<String> },
}

/// Everything a finished boot left behind.
pub struct Evidence {
    /// L1's QEMU exit code, `None` when it was killed.
    pub l1_code: Option<i32>,
    pub l1_timed_out: bool,
    pub l1_console: String,
    /// What QEMU itself printed, e.g. why it refused to start.
    pub l1_qemu_stderr: String,
    /// The agent's report (L1's second serial port).
    pub report: String,
    pub l2_console: String,
    /// The text of the saved trace, when the agent got that far.
    pub trace: Option<String>,
    /// KVM_HC_HELLO_HYPERCALL from the host tree's kvm_para.h; `None` when
    /// the tree does not define it.
    pub hc_nr: Option<u64>,
    /// Compiler warnings of the guest module's W=1 build.
    pub module_warnings: Vec<String>,
    /// The second L2 guest, Debian's stock kernel with the module only.
    pub stock: Stock,
    /// The test programs the agent was asked to run in L1, with their output.
    pub l1_tests: Vec<(String, String)>,
    /// The series' syscall kselftest, run by the probe in the main guest.
    pub kselftest: Kselftest,
}

pub fn judge(e: &Evidence) -> Vec<Check> {
    let events: Vec<Event> = e.report.lines().filter_map(Event::from_line).collect();
    let mut checks = Vec::new();

    let agent_started = events
        .iter()
        .any(|ev| matches!(ev, Event::Hello { who: Who::Agent, .. }));
    if !agent_started {
        let mut why = no_report("L1", e.l1_timed_out, &e.l1_console);
        if e.l1_code.is_some_and(|c| c != 0) {
            why.push_str(&format!(
                "\nQEMU exited with {:?}:\n{}",
                e.l1_code,
                tail(&e.l1_qemu_stderr, 10)
            ));
        }
        checks.push(Check::new("l1_boot", Verdict::Fail, why));
        return checks;
    }
    checks.push(Check::new("l1_boot", Verdict::Pass, "the agent started in L1"));

    let agent_done = events
        .iter()
        .any(|ev| matches!(ev, Event::Done { who: Who::Agent }));
    let (agent, skipped) = agent_checks(&events, |errors| {
        if !errors.is_empty() {
            Some(format!("a guest program failed: {}", errors.join("; ")))
        } else if !agent_done {
            l1_reset(e.l1_code, e.l1_timed_out, &e.l1_console)
                .or_else(|| Some(no_report("L1", e.l1_timed_out, &e.l1_console)))
        } else {
            None
        }
    });
    checks.extend(agent);
    if skipped {
        return checks;
    }

    checks.push(param_check(&events));
    checks.push(module_check(
        &events,
        "guest_module",
        GuestName::Main,
        &e.module_warnings,
    ));
    checks.push(l2_check(&events, "l2_run", GuestName::Main, &e.l2_console));

    checks.extend(promised_checks(&events, SYSCALL_CHECKS));
    let calls = calls(&events);
    let owners = owners(&events);
    let trace = e.trace.as_deref().map(|text| trace::parse(text, &owners));
    let blind = |guest: &str, pid: Option<u32>| trace.as_ref().and_then(|t| unattributable(t, guest, pid));
    let param_off_calls = calls
        .iter()
        .filter(|c| PARAM_OFF_CASES.contains(&c.case.as_str()))
        .count();
    checks.extend(trace_checks(
        trace.as_ref(),
        blind("main", owners.main),
        e.hc_nr,
        param_off_calls,
    ));
    checks.extend(kselftest_checks(&e.kselftest, &events, trace.as_ref()));
    for (name, log) in &e.l1_tests {
        checks.extend(l1_test_checks(name, log, &events));
    }
    checks.push(console_check("l1_console_clean", "L1", &e.l1_console));
    checks.push(console_check("l2_console_clean", "L2", &e.l2_console));
    checks.push(dmesg_check(&events, "l2_dmesg_clean", GuestName::Main));
    let stock_pid = owners
        .others
        .iter()
        .find(|(_, g)| *g == GuestName::Stock)
        .map(|(pid, _)| *pid);
    checks.extend(stock_checks(
        &e.stock,
        &events,
        trace.as_ref(),
        blind("stock", stock_pid),
        e.hc_nr,
    ));
    checks
}

/// The run's verdict: any failure fails it, and so does having no check at
/// all; a skip of the whole run (see [`RUN_SKIPS`]) without failures skips
/// it; otherwise it passes, whatever single scenarios were skipped.
pub fn overall(checks: &[Check]) -> Verdict {
    if checks.is_empty() || checks.iter().any(|c| c.verdict == Verdict::Fail) {
        // No check at all is no evidence: never a pass, never a skip.
        Verdict::Fail
    } else if checks
        .iter()
        .any(|c| c.verdict == Verdict::Skip && RUN_SKIPS.contains(&c.name.as_str()))
    {
        Verdict::Skip
    } else {
        Verdict::Pass
    }
}

/// The checks whose skip means the run as a whole could not take place
/// here. Any other skip is one scenario skipped (the stock guest, one test
/// program): it shows in the table, and the rest of the run still decides.
const RUN_SKIPS: &[&str] = &["nested_kvm"];

/// Every syscall or device call the probes reported.
pub(super) fn calls(events: &[Event]) -> Vec<&Call> {
    events
        .iter()
        .filter_map(|ev| match ev {
            Event::Call(c) => Some(c),
            _ => None,
        })
        .collect()
}

pub(super) fn fact_value(events: &[Event], fact: FactName) -> Option<&str> {
    events.iter().find_map(|ev| match ev {
        Event::Fact { name, value } if *name == fact => Some(value.as_str()),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
