//! KTAP output (Documentation/dev-tools/ktap.rst): a version line, the
//! plan, one result line per case, diagnostics as "# " lines before the
//! result they explain. Formatting is pure; `Ktap` only adds numbering.

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
pub struct Ktap<W: Write> {
    out: W,
    next: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl<W: Write> Ktap<W> {
    pub fn start(mut out: W, plan: usize) -> Ktap<W> {
        let _ = out.write_all(header(plan).as_bytes());
        Ktap {
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
        let mut k = Ktap::start(Vec::new(), 3);
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
}
