//! The checks of a prefix besides its kernel builds: the KVM selftests it
//! touches, and checkpatch on its last patch.

use super::*;

impl Walk<'_> {
    /// The KVM selftests the series touches, built against the headers of
    /// prefix `k` (exported in the host build directory) in a fresh output
    /// directory, so that everything they print is seen.
    pub(super) fn selftests(&mut self, k: usize, progress: &Progress) -> Result<Record> {
        self.goto(k, progress)?;
        let kvm = self.worktree.join("tools/testing/selftests/kvm");
        let bins: Vec<&String> = self
            .targets
            .selftests
            .iter()
            .filter(|b| kvm.join(format!("{b}.c")).exists())
            .collect();
        if bins.is_empty() {
            return Ok(Record::not_applicable(
                "no KVM selftest the series touches exists yet".into(),
            ));
        }
        let host = &self.configs[HOST].plan;
        if !host.dir.join(".config").exists() {
            fs_err::create_dir_all(&host.dir)?;
            build::configure_keeping(self.sh, host, self.log()?, progress)
                .context("configure the host kernel")?;
        }
        let hostdir = host.dir.clone();
        progress.say("make headers");
        let (headers_ok, out) = self.make(&hostdir, &["-s", "headers"], progress)?;
        if !headers_ok {
            let diags = attribute(&out, &[&self.worktree, &hostdir]);
            return Ok(self.judge(k, SELFTESTS, diags, false, &out, vec![], vec![]));
        }
        let output = self.cache.join("selftests");
        if output.exists() {
            fs_err::remove_dir_all(&output).context("remove the old selftests output")?;
        }
        fs_err::create_dir_all(&output)?;
        progress.say("make the KVM selftests");
        let include = format!("KHDR_INCLUDES=-isystem {}", hostdir.join("usr/include").display());
        let mut args = vec![
            format!("-j{}", jobs()),
            "-C".into(),
            kvm.display().to_string(),
            format!("OUTPUT={}", output.display()),
            include,
        ];
        args.extend(bins.iter().map(|b| output.join(b).display().to_string()));
        let (ok, text) = self.run_make(&args, progress)?;
        let diags = attribute(&text, &[&self.worktree, &hostdir, &output]);
        Ok(self.judge(k, SELFTESTS, diags, ok, &text, vec![], vec![]))
    }

    /// checkpatch --strict on patch `k`, with `cargo xtask patches`' rule:
    /// no error, and every warning or check type justified in the cover letter.
    pub(super) fn checkpatch(&self, k: usize, progress: &Progress) -> Result<Record> {
        if k == 0 {
            return Ok(Record::not_applicable("the base is not a patch".into()));
        }
        progress.say(format!("checkpatch {}", self.series.patches[k - 1]));
        let path = &self.series.paths()[k - 1];
        let (verdict, unjustified, out) = checkpatch_one(self.sh, &self.source.repo, path, &self.cover)?;
        let line_of = |kind: &str| out.lines().find(|l| l.starts_with(kind)).map(String::from);
        let first = if verdict.errors > 0 {
            line_of("ERROR:")
        } else {
            unjustified.first().map(|t| {
                format!(
                    "{} (not justified in the cover letter)",
                    line_of(t).unwrap_or(t.clone())
                )
            })
        };
        let notes = verdict
            .types
            .iter()
            .filter(|t| !unjustified.contains(t))
            .map(|t| format!("{t}, justified in the cover letter"))
            .collect();
        Ok(Record {
            outcome: if first.is_some() {
                Outcome::Fail
            } else {
                Outcome::Ok
            },
            first,
            new: 0,
            notes,
            diags: ByStep::new(),
            make_ok: true,
            seconds: 0.0,
        })
    }
}
