//! What a walk found: whether anything failed, and the report.

use super::*;

impl Walk<'_> {
    pub(super) fn failed(&self) -> bool {
        self.results
            .iter()
            .flatten()
            .flatten()
            .any(|r| r.outcome == Outcome::Fail)
    }

    /// The table, then every failure with its first line, then the notes
    /// (each once, with the first prefix it came from).
    pub(super) fn report(&self) -> String {
        let mut rows = Vec::new();
        for (k, results) in self.results.iter().enumerate() {
            let title = if k == 0 {
                format!("base {}", &self.source.base[..12.min(self.source.base.len())])
            } else {
                fs_err::read_to_string(&self.series.paths()[k - 1])
                    .map(|t| table::title(&t))
                    .unwrap_or_else(|_| self.series.patches[k - 1].clone())
            };
            let cells = [HOST, GUEST, SELFTESTS, CHECKPATCH]
                .map(|c| results[c].as_ref().map_or(Outcome::NotApplicable, |r| r.outcome));
            rows.push(Row {
                number: k.to_string(),
                title,
                cells,
            });
        }
        let mut out = table::render(&rows);
        let name = |k: usize| {
            if k == 0 {
                "base".to_string()
            } else {
                format!("{k} {}", self.series.patches[k - 1])
            }
        };
        let mut failures = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        for (k, results) in self.results.iter().enumerate() {
            for (c, r) in results.iter().enumerate() {
                let Some(r) = r else { continue };
                if r.outcome == Outcome::Fail {
                    failures.push(format!(
                        "    {}: {}: {}",
                        name(k),
                        COLUMNS[c],
                        r.first.as_deref().map_or_else(
                            || format!("(no error line; see {})", self.log.display()),
                            // Paths relative to the tree read better; the
                            // line numbers are those of this prefix.
                            |l| {
                                let real = self.worktree.canonicalize().unwrap_or(self.worktree.clone());
                                l.replace(&format!("{}/", real.display()), "")
                                    .replace(&format!("{}/", self.worktree.display()), "")
                            }
                        )
                    ));
                }
                if k == 0 && r.outcome == Outcome::BaseBroken {
                    notes.push(format!(
                        "{}: the base itself fails; prefixes are judged against it: {}",
                        COLUMNS[c],
                        r.first.as_deref().unwrap_or("")
                    ));
                }
                if k == 0 && matches!(c, HOST | GUEST | SELFTESTS) {
                    let old = r.diags.values().map(Vec::len).sum::<usize>();
                    if old > 0 {
                        notes.push(format!(
                            "{}: the base prints {old} warning(s) or error(s) of its own, not held against the series",
                            COLUMNS[c]
                        ));
                    }
                }
                for n in &r.notes {
                    let note = format!("{}: {n}", COLUMNS[c]);
                    if !notes.iter().any(|x| x.starts_with(&note)) {
                        notes.push(format!(
                            "{note} (from {})",
                            if k == 0 {
                                "the base".into()
                            } else {
                                format!("prefix {k}")
                            }
                        ));
                    }
                }
            }
        }
        if !failures.is_empty() {
            out.push_str("failures:\n");
            out.push_str(&(failures.join("\n") + "\n"));
        }
        if !notes.is_empty() {
            out.push_str("notes:\n");
            for n in notes {
                out.push_str(&format!("    {n}\n"));
            }
        }
        out
    }
}
