//! The Intel run's checks, from what came back over Bochs' serial ports.
//! The L1 tests and the console are judged as in the QEMU run; the trace
//! must show, on kvm_intel, the VMCALL exits, the hypercall's number and
//! the greeting.

use std::path::Path;

use anyhow::{Context, Result};
use proto::Event;

use crate::bochs::{End, Outcome};
use crate::trace::{self, Owners};
use crate::verdict::{self, Check, Verdict};

/// What the Intel run is judged from.
pub struct Evidence {
    pub outcome: Outcome,
    /// COM1: L1's console.
    pub console: String,
    /// COM2: the agent's report, the files it sent included.
    pub report: String,
    /// trace.txt, as the agent sent it; `None` when it never arrived.
    pub trace: Option<String>,
    /// Each L1 test's name and log.
    pub tests: Vec<(String, String)>,
}

/// Writes each file the agent sent into the run directory, where the
/// checks point and the QEMU run keeps the same files.
pub fn save_files(report: &str, run_dir: &Path) -> Result<()> {
    for event in report.lines().filter_map(Event::from_line) {
        if let Event::File { name, text } = event {
            // The agent names files in its own flat directory; refuse
            // anything else rather than write outside the run directory.
            if name.contains('/') || name.starts_with('.') {
                anyhow::bail!("the agent sent a file named {name:?}");
            }
            fs_err::write(run_dir.join(&name), text).with_context(|| format!("save {name}"))?;
        }
    }
    Ok(())
}

pub fn judge(e: &Evidence) -> Vec<Check> {
    let events: Vec<Event> = e.report.lines().filter_map(Event::from_line).collect();
    let mut checks = Vec::new();
    let started = events
        .iter()
        .any(|ev| matches!(ev, Event::Hello { who, .. } if *who == proto::Who::Agent));
    if !started {
        let why = verdict::no_report("L1", e.outcome.end == End::TimedOut, &e.console);
        checks.push(Check::new(
            "l1_boot",
            Verdict::Fail,
            format!("{}; {why}", e.outcome.end.describe()),
        ));
        return checks;
    }
    checks.push(Check::new(
        "l1_boot",
        Verdict::Pass,
        format!("the agent started in L1 under Bochs ({})", crate::bochs::MODEL),
    ));
    let (agent, skipped) = verdict::agent_checks(&events, |errors| {
        if !errors.is_empty() {
            Some(format!("the agent failed: {}", errors.join("; ")))
        } else if e.outcome.end != End::Done {
            Some(format!(
                "{} ({:.0}s)",
                e.outcome.end.describe(),
                e.outcome.seconds
            ))
        } else {
            None
        }
    });
    checks.extend(agent);
    if skipped {
        return checks;
    }
    checks.push(verdict::param_check(&events));
    for (name, log) in &e.tests {
        checks.extend(verdict::l1_test_checks(name, log, &events));
    }
    checks.extend(trace_checks(e.trace.as_deref()));
    checks.push(console_check(&e.console));
    checks
}

/// L1's console, judged as the QEMU run's but for the warnings Bochs'
/// CPUID makes every kernel print at boot (quirks.rs), which the check's
/// detail names.
fn console_check(console: &str) -> Check {
    let (rest, dropped) = super::quirks::strip(console);
    let mut check = verdict::console_check("l1_console_clean", "L1", &rest);
    if !dropped.is_empty() {
        check.detail = format!(
            "{}; not counted: {} boot warning(s) that Bochs' CPUID causes ({})",
            check.detail,
            dropped.len(),
            dropped.join("; ")
        );
    }
    check
}

/// The hypercall as kvm_intel saw it: every call exits with VMCALL (KVM
/// rewrites a guest's vmmcall into vmcall first), reaches the dispatcher
/// as nr 13, and the handler greets.
fn trace_checks(text: Option<&str>) -> Vec<Check> {
    let names = ["trace_vmcall_exits", "trace_hypercall_nr", "trace_hello_world"];
    let Some(text) = text else {
        return names
            .iter()
            .map(|n| Check::new(n, Verdict::Fail, "NO RESULT: the agent sent no trace.txt"))
            .collect();
    };
    let t = trace::parse(text, &Owners::default());
    if t.lost_events {
        return names
            .iter()
            .map(|n| {
                Check::new(
                    n,
                    Verdict::Fail,
                    "NO RESULT: trace.txt lost events (its buffer overflowed)",
                )
            })
            .collect();
    }
    let l1 = t.phase(proto::TracePhase::L1);
    let exits = trace::exit_reasons(text).get("VMCALL").copied().unwrap_or(0);
    let all_calls: usize = l1.map_or(0, |p| p.hypercalls.values().sum());
    let hello_calls = l1
        .and_then(|p| p.hypercalls.get(&KVM_HC_HELLO_HYPERCALL).copied())
        .unwrap_or(0);
    let hello = l1.map_or(0, |p| p.hello);
    let vmcall = if exits > 0 && exits >= all_calls {
        Check::new(
            names[0],
            Verdict::Pass,
            format!("trace.txt: {exits} kvm_exit with reason VMCALL for {all_calls} kvm_hypercall events"),
        )
    } else {
        Check::new(
            names[0],
            Verdict::Fail,
            format!("trace.txt: {exits} kvm_exit with reason VMCALL for {all_calls} kvm_hypercall events; every call must exit with VMCALL on Intel"),
        )
    };
    let nr = if hello_calls > 0 {
        Check::new(
            names[1],
            Verdict::Pass,
            format!("trace.txt: {hello_calls} kvm_hypercall with nr 0xd"),
        )
    } else {
        Check::new(names[1], Verdict::Fail, "trace.txt: no kvm_hypercall with nr 0xd")
    };
    let greeting = if hello > 0 && hello <= hello_calls {
        Check::new(
            names[2],
            Verdict::Pass,
            format!("trace.txt: {hello} \"Hello World\" lines for {hello_calls} calls of nr 0xd"),
        )
    } else if hello == 0 {
        Check::new(
            names[2],
            Verdict::Fail,
            "trace.txt: no \"Hello World\" line: the host kernel lacks the series' handler (or it is off)",
        )
    } else {
        Check::new(
            names[2],
            Verdict::Fail,
            format!("trace.txt: {hello} \"Hello World\" lines but only {hello_calls} calls of nr 0xd"),
        )
    };
    vec![vmcall, nr, greeting]
}

/// KVM_HC_HELLO_HYPERCALL: the number the series gives it on every base,
/// so an unpatched host (which does not define it) is judged by it too.
const KVM_HC_HELLO_HYPERCALL: u64 = 13;

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "# tracer: nop\n\
        hcall-80 (80) [000] d..1. 9.1: kvm_exit: vcpu 0 reason VMCALL rip 0x1003 info1 0x0\n\
        hcall-80 (80) [000] ...1. 9.2: kvm_hypercall: nr 0xd a0 0x0 a1 0x0 a2 0x0 a3 0x0\n\
        hcall-80 (80) [000] ...1. 9.3: kvm_emulate_hypercall: Hello World\n";

    fn verdicts(checks: &[Check]) -> Vec<Verdict> {
        checks.iter().map(|c| c.verdict).collect()
    }

    #[test]
    fn a_vmcall_a_hypercall_and_a_greeting_pass() {
        assert_eq!(verdicts(&trace_checks(Some(TRACE))), [Verdict::Pass; 3]);
    }

    #[test]
    fn an_unpatched_host_fails_on_the_greeting_and_the_number() {
        let unpatched = "hcall-80 (80) [000] d..1. 9.1: kvm_exit: vcpu 0 reason VMCALL rip 0x1003\n\
            hcall-80 (80) [000] ...1. 9.2: kvm_hypercall: nr 0xd a0 0x0 a1 0x0 a2 0x0 a3 0x0\n";
        assert_eq!(
            verdicts(&trace_checks(Some(unpatched))),
            [Verdict::Pass, Verdict::Pass, Verdict::Fail]
        );
    }

    #[test]
    fn a_call_without_its_vmcall_exit_fails() {
        let amd = TRACE.replace("VMCALL", "hypercall");
        assert_eq!(verdicts(&trace_checks(Some(&amd)))[0], Verdict::Fail);
    }

    #[test]
    fn no_trace_is_no_result() {
        let checks = trace_checks(None);
        assert!(checks
            .iter()
            .all(|c| c.verdict == Verdict::Fail && c.detail.starts_with("NO RESULT")));
    }

    #[test]
    fn files_outside_the_run_directory_are_refused() {
        let dir = std::env::temp_dir().join(format!("hh-judge-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let ok = Event::File {
            name: "trace.txt".into(),
            text: "x".into(),
        }
        .to_line();
        save_files(&ok, &dir).unwrap();
        assert_eq!(fs_err::read_to_string(dir.join("trace.txt")).unwrap(), "x");
        let bad = Event::File {
            name: "../escape".into(),
            text: "x".into(),
        }
        .to_line();
        assert!(save_files(&bad, &dir).is_err());
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
