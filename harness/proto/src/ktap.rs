//! KTAP (Documentation/dev-tools/ktap.rst), written and read.
//!
//! hcall writes it: a version line, the plan, one result line per case,
//! diagnostics as "# " lines before the result they explain. Formatting is
//! pure; [`Writer`] only adds numbering. xtask reads it, and TAP 13 as the
//! KVM selftests (kselftest) print it: the plan and the top-level results.

use std::io::Write;

/// How a case ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip(String),
}

/// kselftest's exit code for "nothing could run here" (KSFT_SKIP).
pub const EXIT_SKIP: i32 = 4;

pub fn header(plan: usize) -> String {
    format!("KTAP version 1\n1..{plan}\n")
}

/// The whole output when nothing can run: an empty plan with the reason,
/// as kselftest prints it for a missing prerequisite.
pub fn skip_all(reason: &str) -> String {
    format!("KTAP version 1\n1..0 # SKIP {}\n", one_line(reason))
}

pub fn diagnostic(text: &str) -> String {
    text.lines().map(|l| format!("# {l}\n")).collect()
}

pub fn result(number: usize, name: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Pass => format!("ok {number} {name}\n"),
        Outcome::Fail => format!("not ok {number} {name}\n"),
        Outcome::Skip(why) => format!("ok {number} {name} # SKIP {}\n", one_line(why)),
    }
}

/// A '#' or a newline in a name or reason would break the line's syntax.
fn one_line(text: &str) -> String {
    text.replace(['\n', '#'], " ")
}

/// Numbers results and counts failures while writing to a stream.
pub struct Writer<W: Write> {
    out: W,
    next: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl<W: Write> Writer<W> {
    pub fn start(mut out: W, plan: usize) -> Writer<W> {
        let _ = out.write_all(header(plan).as_bytes());
        Writer {
            out,
            next: 1,
            failed: 0,
            skipped: 0,
        }
    }

    pub fn diag(&mut self, text: &str) {
        let _ = self.out.write_all(diagnostic(text).as_bytes());
        let _ = self.out.flush();
    }

    pub fn result(&mut self, name: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Fail => self.failed += 1,
            Outcome::Skip(_) => self.skipped += 1,
            Outcome::Pass => {}
        }
        let _ = self.out.write_all(result(self.next, name, outcome).as_bytes());
        let _ = self.out.flush();
        self.next += 1;
    }

    /// kselftest's closing totals line.
    pub fn totals(&mut self) {
        let run = self.next - 1;
        let passed = run - self.failed - self.skipped;
        let line = format!(
            "# Totals: pass:{passed} fail:{} xfail:0 xpass:0 skip:{} error:0\n",
            self.failed, self.skipped
        );
        let _ = self.out.write_all(line.as_bytes());
        let _ = self.out.flush();
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub name: String,
    pub outcome: Outcome,
}

#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// The number of cases the plan line ("1..N") announced.
    pub plan: Option<usize>,
    pub cases: Vec<CaseResult>,
    /// The reason of a "Bail out!" line.
    pub bailed: Option<String>,
}

impl Parsed {
    /// Cases the plan announced that never reported: a crash or a hang.
    pub fn missing(&self) -> usize {
        self.plan.map_or(0, |p| p.saturating_sub(self.cases.len()))
    }
}

/// Reads the top level of a KTAP or TAP stream; nested (indented) lines
/// and other output are ignored.
pub fn parse(text: &str) -> Parsed {
    let mut k = Parsed::default();
    for line in text.lines().map(|l| l.trim_end()) {
        if let Some(n) = line.strip_prefix("1..") {
            // "1..0 # SKIP why" plans nothing, for a reason.
            k.plan = n.split('#').next().unwrap_or(n).trim().parse().ok();
        } else if let Some(reason) = line.strip_prefix("Bail out!") {
            k.bailed = Some(reason.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("not ok ") {
            k.cases.push(case(rest, false));
        } else if let Some(rest) = line.strip_prefix("ok ") {
            k.cases.push(case(rest, true));
        }
    }
    k
}

/// "3 name # SKIP why" or kselftest's "3 # SKIP name" after ok/not ok.
fn case(rest: &str, ok: bool) -> CaseResult {
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit()).trim();
    let (name, directive) = match rest.split_once('#') {
        Some((n, d)) => (n.trim(), d.trim()),
        None => (rest, ""),
    };
    let skip = directive
        .get(..4)
        .is_some_and(|d| d.eq_ignore_ascii_case("skip"))
        .then(|| directive[4..].trim().to_string());
    let name = match (&skip, name.is_empty()) {
        // kselftest puts the name after the directive.
        (Some(reason), true) => reason.clone(),
        _ => name.to_string(),
    };
    let outcome = match skip {
        Some(reason) => Outcome::Skip(reason),
        None if ok => Outcome::Pass,
        None => Outcome::Fail,
    };
    CaseResult { name, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(header(3), "KTAP version 1\n1..3\n");
        assert_eq!(result(1, "real_mode", &Outcome::Pass), "ok 1 real_mode\n");
        assert_eq!(result(2, "cpl3", &Outcome::Fail), "not ok 2 cpl3\n");
        assert_eq!(
            result(3, "param_off", &Outcome::Skip("needs root\n# really".into())),
            "ok 3 param_off # SKIP needs root   really\n"
        );
        assert_eq!(diagnostic("a\nb"), "# a\n# b\n");
        assert_eq!(
            skip_all("no /dev/kvm"),
            "KTAP version 1\n1..0 # SKIP no /dev/kvm\n"
        );
    }

    #[test]
    fn counting() {
        let mut k = Writer::start(Vec::new(), 3);
        k.result("a", &Outcome::Pass);
        k.diag("got 1, want 2");
        k.result("b", &Outcome::Fail);
        k.result("c", &Outcome::Skip("x".into()));
        k.totals();
        assert_eq!((k.failed, k.skipped), (1, 1));
        let text = String::from_utf8(k.out).unwrap();
        assert!(text.contains("not ok 2 b\n"));
        assert!(text.ends_with("# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0\n"));
    }

    #[test]
    fn kselftest_output() {
        let text = "Random seed: 0x6b8b4567\nTAP version 13\n1..3\n# kvm.hello_hypercall is Y\n\
                    ok 1 in-kernel handler\nok 2 # SKIP disabled handler\nnot ok 3 userspace exit\n";
        let k = parse(text);
        assert_eq!(k.plan, Some(3));
        assert_eq!(k.missing(), 0);
        assert_eq!(
            k.cases[0],
            CaseResult {
                name: "in-kernel handler".into(),
                outcome: Outcome::Pass
            }
        );
        assert_eq!(
            k.cases[1],
            CaseResult {
                name: "disabled handler".into(),
                outcome: Outcome::Skip("disabled handler".into())
            }
        );
        assert_eq!(k.cases[2].outcome, Outcome::Fail);
    }

    #[test]
    fn ktap_skip_and_nesting() {
        let text = "KTAP version 1\n1..2\n    KTAP version 1\n    ok 1 nested\n\
                    ok 1 real_mode\nok 2 cpl3 # SKIP no user mode\n";
        let k = parse(text);
        assert_eq!(k.cases.len(), 2);
        assert_eq!(
            k.cases[1],
            CaseResult {
                name: "cpl3".into(),
                outcome: Outcome::Skip("no user mode".into())
            }
        );
    }

    #[test]
    fn a_crash_leaves_cases_missing() {
        let k = parse("1..5\nok 1 a\nok 2 b\n");
        assert_eq!(k.missing(), 3);
        assert_eq!(
            parse("Bail out! no /dev/kvm\n").bailed.as_deref(),
            Some("no /dev/kvm")
        );
    }

    #[test]
    fn what_is_written_reads_back() {
        let mut w = Writer::start(Vec::new(), 4);
        w.result("real_mode", &Outcome::Pass);
        w.diag("got -1000, want 12\n# twice");
        w.result("cpl3", &Outcome::Fail);
        w.result("param off", &Outcome::Skip("needs root # and a switch".into()));
        w.totals();
        let parsed = parse(&String::from_utf8(w.out).unwrap());
        assert_eq!(parsed.plan, Some(4));
        assert_eq!(parsed.missing(), 1);
        assert_eq!(parsed.bailed, None);
        let cases: Vec<(&str, &Outcome)> = parsed
            .cases
            .iter()
            .map(|c| (c.name.as_str(), &c.outcome))
            .collect();
        assert_eq!(
            cases,
            [
                ("real_mode", &Outcome::Pass),
                ("cpl3", &Outcome::Fail),
                ("param off", &Outcome::Skip("needs root   and a switch".into())),
            ]
        );
        assert_eq!(parse(&skip_all("no /dev/kvm")).plan, Some(0));
    }
}
