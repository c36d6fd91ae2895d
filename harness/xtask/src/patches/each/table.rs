//! The table `--each` prints: one row per prefix, one column per check.

use serde::{Deserialize, Serialize};

/// How one check of one prefix came out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    /// Nothing to check: no goal of this config or kind exists yet.
    NotApplicable,
    /// The base's own build fails (a newer compiler, say): shown, never
    /// held against the series, whose prefixes are judged against it.
    BaseBroken,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "FAIL",
            Outcome::NotApplicable => "n/a",
            Outcome::BaseBroken => "broken",
        }
    }
}

pub const COLUMNS: [&str; 4] = ["host build", "guest build", "selftests", "checkpatch"];

/// One row: "1", "KVM: x86: Add KVM_HC_HELLO_HYPERCALL" and its outcomes.
pub struct Row {
    pub number: String,
    pub title: String,
    pub cells: [Outcome; 4],
}

/// The patch's title from its Subject, without "[PATCH 1/5] ", unfolded.
pub fn title(patch: &str) -> String {
    let mut lines = patch.lines().skip_while(|l| !l.starts_with("Subject: "));
    let mut subject = lines
        .next()
        .and_then(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_string();
    for l in lines.take_while(|l| l.starts_with([' ', '\t'])) {
        subject.push_str(l);
    }
    match subject.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((_, t)) => t.trim().to_string(),
        None => subject.trim().to_string(),
    }
}

const TITLE_WIDTH: usize = 58;

/// Renders the rows as aligned text, titles cut to fit a terminal.
pub fn render(rows: &[Row]) -> String {
    let mut out = format!("    {:>2}  {:<TITLE_WIDTH$}", "#", "patch");
    for c in COLUMNS {
        out.push_str(&format!("  {c:<11}"));
    }
    let mut out = vec![out.trim_end().to_string()];
    for row in rows {
        let title: String = if row.title.chars().count() > TITLE_WIDTH {
            let cut: String = row.title.chars().take(TITLE_WIDTH - 3).collect();
            format!("{cut}...")
        } else {
            row.title.clone()
        };
        let mut line = format!("    {:>2}  {title:<TITLE_WIDTH$}", row.number);
        for cell in row.cells {
            line.push_str(&format!("  {:<11}", cell.label()));
        }
        out.push(line.trim_end().to_string());
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_lose_the_patch_prefix() {
        let patch = "From x\nSubject: [PATCH 5/5] KVM: selftests: Check KVM_HC_HELLO_HYPERCALL in\n kvm_pv_test\n\nBody\n";
        assert_eq!(
            title(patch),
            "KVM: selftests: Check KVM_HC_HELLO_HYPERCALL in kvm_pv_test"
        );
        assert_eq!(title("Subject: KVM: x86: a\n"), "KVM: x86: a");
    }

    #[test]
    fn table_lines_up() {
        let rows = [
            Row {
                number: "0".into(),
                title: "base 6.12.117".into(),
                cells: [Outcome::Ok, Outcome::Ok, Outcome::Ok, Outcome::NotApplicable],
            },
            Row {
                number: "5".into(),
                title: "KVM: selftests: Check KVM_HC_HELLO_HYPERCALL in kvm_pv_test, a title far too long"
                    .into(),
                cells: [Outcome::Ok, Outcome::Fail, Outcome::BaseBroken, Outcome::Ok],
            },
        ];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "     #  patch                                                       host build   guest build  selftests    checkpatch"
        );
        assert_eq!(
            lines[1],
            "     0  base 6.12.117                                               ok           ok           ok           n/a"
        );
        assert_eq!(
            lines[2],
            "     5  KVM: selftests: Check KVM_HC_HELLO_HYPERCALL in kvm_pv_...  ok           FAIL         broken       ok"
        );
    }
}
