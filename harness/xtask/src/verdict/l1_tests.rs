//! The test programs run in L1: the KVM selftests and hcall.

use proto::ktap::{self, Outcome};
use proto::Event;

use super::{Check, Verdict};

/// Test programs that print no KTAP, each with the line of its output that
/// shows it exercised the series: without it, exit 0 is no evidence.
pub(super) const PLAIN_EVIDENCE: &[(&str, &str)] =
    &[("kvm_pv_test", "testing hcall: KVM_HC_HELLO_HYPERCALL")];

/// A check per KTAP case of test program `prog`, whose output is `log`; a
/// failed case points the reader at the program's log (`see`), and says
/// [`STOPPED`] when hcall reported that one of its guests stopped.
pub(super) fn case_checks(prog: &str, ktap: &ktap::Parsed, log: &str, see: &str) -> Vec<Check> {
    ktap.cases
        .iter()
        .map(|c| {
            let name = format!("{prog}: {}", c.name);
            match &c.outcome {
                Outcome::Pass => Check::new(&name, Verdict::Pass, "ok"),
                Outcome::Skip(why) => Check::new(&name, Verdict::Skip, format!("SKIP: {why}")),
                Outcome::Fail => match stopped_guest(log, &c.name) {
                    Some(line) => Check::new(&name, Verdict::Fail, format!("{STOPPED} {line}; {see}")),
                    None => Check::new(&name, Verdict::Fail, format!("not ok; {see}")),
                },
            }
        })
        .collect()
}

/// The prefix of a failed case whose guest stopped without reporting.
pub(crate) const STOPPED: &str = "STOPPED:";

/// The line of `log` in which failed case `case` says one of its guests
/// stopped: among the diagnostics between the result line before it and
/// its own "not ok" line, which are the case's.
fn stopped_guest<'a>(log: &'a str, case: &str) -> Option<&'a str> {
    let mut since_last_result = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("not ok ") {
            let name = rest.split_once(' ').map_or("", |(_, n)| n);
            if name.split(" # ").next() == Some(case) {
                return since_last_result
                    .into_iter()
                    .find(|l: &&str| proto::stopped::stopped_for_good(l))
                    .map(|l| l.trim_start_matches("# "));
            }
            since_last_result.clear();
        } else if line.starts_with("ok ") {
            since_last_result.clear();
        } else if line.starts_with('#') {
            since_last_result.push(line);
        }
    }
    None
}

/// A program's last line of output, which says most about how it ended.
pub(super) fn last_line(output: &str) -> &str {
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
}

/// One L1 test program (a KVM selftest or the hcall VMM): a check per
/// KTAP case, and one for the program itself. Exit 4 is kselftest's SKIP;
/// a crash (cases the plan announced but never reported) and "no tests
/// ran" are failures, never passes.
pub(crate) fn l1_test_checks(prog: &str, log: &str, events: &[Event]) -> Vec<Check> {
    let ktap = ktap::parse(log);
    let mut checks = case_checks(prog, &ktap, log, &format!("see l1test-{prog}.log"));
    let last = last_line(log);
    let result = events.iter().find_map(|ev| match ev {
        Event::L1Test {
            name,
            status,
            timed_out,
            seconds,
        } if name == prog => Some((*status, *timed_out, *seconds)),
        _ => None,
    });
    let (verdict, detail) = match result {
        None => (
            Verdict::Fail,
            "NO RESULT: the agent did not report this program".to_string(),
        ),
        Some((_, true, secs)) => (
            Verdict::Fail,
            format!("TIMEOUT: killed at its deadline ({secs:.0}s); last line: {last}"),
        ),
        Some((Some(4), _, _)) => (Verdict::Skip, format!("SKIP (exit 4): {last}")),
        Some((Some(0), _, _)) if ktap.missing() > 0 => (
            Verdict::Fail,
            format!(
                "CRASH: {} of {} planned cases never reported",
                ktap.missing(),
                ktap.plan.unwrap_or(0)
            ),
        ),
        Some((Some(0), _, _)) if ktap.plan == Some(0) => (Verdict::Fail, "no tests ran".to_string()),
        // Without KTAP, an exit status alone proves nothing ran: the
        // program must show in its own words that it tested the hypercall.
        Some((Some(0), _, secs)) if ktap.plan.is_none() && ktap.cases.is_empty() => {
            match PLAIN_EVIDENCE.iter().find(|(p, _)| *p == prog) {
                Some((_, line)) if log.contains(line) => (
                    Verdict::Pass,
                    format!("exit 0 after {secs:.1}s; its log shows \"{line}\""),
                ),
                Some((_, line)) => (
                    Verdict::Fail,
                    format!("NO RESULT: exit 0, but its log never shows \"{line}\"; last line: {last}"),
                ),
                None => (
                    Verdict::Fail,
                    format!("NO RESULT: exit 0 without KTAP output; last line: {last}"),
                ),
            }
        }
        Some((Some(0), _, secs)) => (Verdict::Pass, format!("exit 0 after {secs:.1}s: {last}")),
        Some((status, _, secs)) => (Verdict::Fail, format!("exit {status:?} after {secs:.1}s: {last}")),
    };
    checks.push(Check::new(prog, verdict, detail));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hcall's log from a 6.1 E2E in which one guest hung under nested
    /// multi-threaded TCG: that case says STOPPED, and only that one.
    #[test]
    fn a_case_whose_guest_hung_says_stopped() {
        let log = include_str!("../../tests/data/hcall-stopped.log");
        let checks = case_checks("hcall", &ktap::parse(log), log, "see l1test-hcall.log");
        let failed: Vec<&Check> = checks.iter().filter(|c| c.verdict == Verdict::Fail).collect();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].name, "hcall: param_off_existing_vm_keeps_abi");
        assert!(
            failed[0].detail.starts_with(STOPPED) && failed[0].detail.contains("(hung)"),
            "{}",
            failed[0].detail
        );
        // The fuzz's stops are its own lines, between its plan and result.
        let fuzz = include_str!("../../tests/data/hcall-fuzz-stopped.log");
        let checks = case_checks(
            "hcall-fuzz",
            &ktap::parse(fuzz),
            fuzz,
            "see l1test-hcall-fuzz.log",
        );
        let failed = checks.iter().find(|c| c.verdict == Verdict::Fail).unwrap();
        assert!(
            failed.detail.starts_with(STOPPED) && failed.detail.contains("triple fault"),
            "{}",
            failed.detail
        );
        // A stop that hcall ran again was absorbed: the case failed for
        // another reason, and says so as an ordinary failure.
        let absorbed = fuzz.replace(
            "# call 300:",
            "# (retried) in a fresh VM, as its guest stopped: call 300:",
        );
        let checks = case_checks(
            "hcall-fuzz",
            &ktap::parse(&absorbed),
            &absorbed,
            "see l1test-hcall-fuzz.log",
        );
        let failed = checks.iter().find(|c| c.verdict == Verdict::Fail).unwrap();
        assert_eq!(failed.detail, "not ok; see l1test-hcall-fuzz.log");
        // A wrong answer that the guest did report is an ordinary failure.
        let wrong = log.replace(
            "guest did not report before its deadline (hung)",
            "-22 (-KVM_EINVAL), want 12",
        );
        let checks = case_checks("hcall", &ktap::parse(&wrong), &wrong, "see l1test-hcall.log");
        let failed = checks.iter().find(|c| c.verdict == Verdict::Fail).unwrap();
        assert_eq!(failed.detail, "not ok; see l1test-hcall.log");
    }

    #[test]
    fn l1_tests_are_judged_by_case_and_exit() {
        let done = |status| Event::L1Test {
            name: "t".into(),
            status,
            timed_out: false,
            seconds: 1.0,
        };
        let log = "TAP version 13\n1..2\nok 1 a\nok 2 # SKIP b\n";
        let checks = l1_test_checks("t", log, &[done(Some(0))]);
        let names: Vec<_> = checks.iter().map(|c| (c.name.as_str(), c.verdict)).collect();
        assert_eq!(
            names,
            [
                ("t: a", Verdict::Pass),
                ("t: b", Verdict::Skip),
                ("t", Verdict::Pass)
            ]
        );
        let crashed = l1_test_checks("t", "1..3\nok 1 a\n", &[done(Some(0))]);
        assert!(crashed.last().unwrap().detail.starts_with("CRASH"));
        let none = l1_test_checks("t", "1..0\n", &[done(Some(0))]);
        assert_eq!(none.last().unwrap().detail, "no tests ran");
        let silent = l1_test_checks("t", "", &[]);
        assert!(silent.last().unwrap().detail.starts_with("NO RESULT"));
    }

    #[test]
    fn exit_0_without_ktap_is_evidence_only_with_the_programs_own_words() {
        let done = |name: &str| Event::L1Test {
            name: name.into(),
            status: Some(0),
            timed_out: false,
            seconds: 0.2,
        };
        let quiet = l1_test_checks("t", "all good\n", &[done("t")]);
        assert_eq!(quiet.last().unwrap().verdict, Verdict::Fail);
        assert!(quiet
            .last()
            .unwrap()
            .detail
            .starts_with("NO RESULT: exit 0 without KTAP"));

        let pv = "testing hcall: KVM_HC_SCHED_YIELD (11)\ntesting hcall: KVM_HC_HELLO_HYPERCALL (13)\n";
        let ran = l1_test_checks("kvm_pv_test", pv, &[done("kvm_pv_test")]);
        assert_eq!(ran.last().unwrap().verdict, Verdict::Pass);

        // An unpatched tree's kvm_pv_test does not test the hypercall.
        let old = l1_test_checks(
            "kvm_pv_test",
            "testing hcall: KVM_HC_SCHED_YIELD (11)\n",
            &[done("kvm_pv_test")],
        );
        assert_eq!(old.last().unwrap().verdict, Verdict::Fail);
        assert!(old.last().unwrap().detail.contains("never shows"));
    }
}
