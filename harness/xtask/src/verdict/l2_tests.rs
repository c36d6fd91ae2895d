//! The series' syscall kselftest, run by the probe in the main guest.

use proto::ktap::{self, Outcome};
use proto::{Event, TracePhase};

use super::l1_tests::{case_checks, last_line};
use super::{Check, Kselftest, Verdict};
use crate::trace::Trace;

/// The series' syscall kselftest in the main guest: a check per KTAP case,
/// and one for the program. It runs on KVM there, so it must pass: exit 4
/// (kselftest's SKIP, "not on KVM") is a failure, and so are exit 0 with
/// no KTAP, a crash, a hang, and a plan of cases that all skipped.
pub(super) fn kselftest_checks(k: &Kselftest, events: &[Event], trace: Option<&Trace>) -> Vec<Check> {
    const NAME: &str = "syscall_kselftest";
    let fail = |why: String| vec![Check::new(NAME, Verdict::Fail, why)];
    let warnings = match k {
        Kselftest::NotBuilt(why) => return fail(format!("not built: {why}")),
        Kselftest::Missing(path) => {
            return fail(format!("the patched tree has no {path}: the series must add it"))
        }
        Kselftest::BuildFailed(why) => return fail(format!("did not build: {why}")),
        Kselftest::Built { warnings } => warnings,
    };
    let ran = events.iter().find_map(|ev| match ev {
        Event::L2Test {
            name,
            status,
            signal,
            timed_out,
            seconds,
            output,
            truncated,
        } if name == proto::KSELFTEST_FILE => {
            Some((*status, *signal, *timed_out, *seconds, output, *truncated))
        }
        _ => None,
    });
    let Some((status, signal, timed_out, secs, output, truncated)) = ran else {
        return fail("NO RESULT: the probe did not report running it".into());
    };
    let see = format!("see l2test-{}.log", proto::KSELFTEST_FILE);
    let ktap = ktap::parse(output);
    let mut checks = case_checks(NAME, &ktap, output, &see);
    let last = last_line(output);
    let passed = ktap.cases.iter().filter(|c| c.outcome == Outcome::Pass).count();
    let failed = ktap.cases.iter().filter(|c| c.outcome == Outcome::Fail).count();
    let skipped = ktap.cases.len() - passed - failed;
    let cut = if truncated {
        " (its output was cut short in the report)"
    } else {
        ""
    };
    let (verdict, detail) = if timed_out {
        (
            Verdict::Fail,
            format!("TIMEOUT: killed at its deadline ({secs:.0}s); last line: {last}"),
        )
    } else if let Some(sig) = signal {
        (
            Verdict::Fail,
            format!("CRASH: killed by signal {sig}; last line: {last}"),
        )
    } else if status == Some(4) {
        (
            Verdict::Fail,
            format!("exit 4 (KSFT_SKIP) in the main guest, which runs on KVM: {last}"),
        )
    } else if status != Some(0) {
        (
            Verdict::Fail,
            format!("exit {status:?} after {secs:.1}s: {last}; {see}"),
        )
    } else if ktap.plan.is_none() && ktap.cases.is_empty() {
        (
            Verdict::Fail,
            format!("NO RESULT: exit 0 without KTAP output{cut}; last line: {last}"),
        )
    } else if let Some(why) = &ktap.bailed {
        (Verdict::Fail, format!("exit 0, yet it bailed out: {why}"))
    } else if ktap.missing() > 0 {
        (
            Verdict::Fail,
            format!(
                "CRASH: {} of {} planned cases never reported{cut}",
                ktap.missing(),
                ktap.plan.unwrap_or(0)
            ),
        )
    } else if failed > 0 {
        (
            Verdict::Fail,
            format!("exit 0, yet {failed} case(s) not ok; {see}"),
        )
    } else if passed == 0 {
        (
            Verdict::Fail,
            format!("no case passed ({skipped} skipped): nothing was checked; {see}"),
        )
    } else if !warnings.is_empty() {
        (
            Verdict::Fail,
            format!("passed, but built with -Wall warnings: {}", warnings.join(" | ")),
        )
    } else {
        let greetings = trace
            .and_then(|t| t.phase(TracePhase::Kselftest))
            .map_or(String::new(), |p| {
                format!(", {} \"Hello World\" lines in the host's trace", p.hello)
            });
        (
            Verdict::Pass,
            format!("exit 0 after {secs:.1}s: {passed} passed, {skipped} skipped{greetings}"),
        )
    };
    checks.push(Check::new(NAME, verdict, detail));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(status: Option<i32>, signal: Option<i32>, timed_out: bool, output: &str) -> Vec<Event> {
        vec![Event::L2Test {
            name: proto::KSELFTEST_FILE.into(),
            status,
            signal,
            timed_out,
            seconds: 0.5,
            output: output.into(),
            truncated: false,
        }]
    }

    fn kselftest_verdict(k: &Kselftest, events: &[Event]) -> (Verdict, String) {
        let checks = kselftest_checks(k, events, None);
        let c = checks.last().unwrap();
        assert_eq!(c.name, "syscall_kselftest");
        (c.verdict, c.detail.clone())
    }

    #[test]
    fn the_kselftest_passes_only_on_ktap_evidence() {
        let built = Kselftest::Built { warnings: vec![] };
        let good = "TAP version 13\n1..2\nok 1 greeting\nok 2 # SKIP no nobody user\n# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0\n";
        let checks = kselftest_checks(&built, &ran(Some(0), None, false, good), None);
        let got: Vec<(&str, Verdict)> = checks.iter().map(|c| (c.name.as_str(), c.verdict)).collect();
        assert_eq!(
            got,
            [
                ("syscall_kselftest: greeting", Verdict::Pass),
                ("syscall_kselftest: no nobody user", Verdict::Skip),
                ("syscall_kselftest", Verdict::Pass),
            ]
        );
        let cases = [
            (
                ran(Some(0), None, false, "hello\n"),
                "NO RESULT: exit 0 without KTAP",
            ),
            (ran(Some(0), None, false, ""), "NO RESULT: exit 0 without KTAP"),
            (
                ran(None, Some(11), false, "1..2\nok 1 a\n"),
                "CRASH: killed by signal 11",
            ),
            (
                ran(Some(0), None, false, "1..3\nok 1 a\n"),
                "CRASH: 2 of 3 planned",
            ),
            (ran(None, Some(9), true, "1..3\n"), "TIMEOUT"),
            (
                ran(Some(4), None, false, "1..0 # SKIP not on KVM\n"),
                "exit 4 (KSFT_SKIP)",
            ),
            (ran(Some(1), None, false, "1..1\nnot ok 1 a\n"), "exit Some(1)"),
            (
                ran(Some(0), None, false, "1..1\nnot ok 1 a\n"),
                "1 case(s) not ok",
            ),
            (
                ran(Some(0), None, false, "1..1\nok 1 # SKIP a\n"),
                "no case passed",
            ),
            (
                ran(Some(0), None, false, "1..1\nBail out! no syscall\n"),
                "bailed out",
            ),
            (vec![], "NO RESULT: the probe did not report"),
        ];
        for (events, want) in cases {
            let (v, detail) = kselftest_verdict(&built, &events);
            assert_eq!(v, Verdict::Fail, "{want}: {detail}");
            assert!(detail.contains(want), "want {want:?} in {detail:?}");
        }
        let warned = Kselftest::Built {
            warnings: vec!["x.c:1: warning: unused".into()],
        };
        let (v, detail) = kselftest_verdict(&warned, &ran(Some(0), None, false, good));
        assert!(
            v == Verdict::Fail && detail.contains("-Wall warnings"),
            "{detail}"
        );
    }

    #[test]
    fn a_kselftest_that_is_not_there_fails_by_name() {
        let missing = Kselftest::Missing("tools/testing/selftests/x86/hello_hypercall.c".into());
        let (v, detail) = kselftest_verdict(&missing, &[]);
        assert_eq!(v, Verdict::Fail);
        assert!(
            detail.contains("no tools/testing/selftests/x86/hello_hypercall.c"),
            "{detail}"
        );
        let (v, detail) = kselftest_verdict(&Kselftest::NotBuilt("--unpatched".into()), &[]);
        assert!(
            v == Verdict::Fail && detail.starts_with("not built: --unpatched"),
            "{detail}"
        );
        let (v, detail) = kselftest_verdict(&Kselftest::BuildFailed("gcc failed".into()), &[]);
        assert!(
            v == Verdict::Fail && detail.contains("did not build: gcc failed"),
            "{detail}"
        );
    }
}
