//! `cargo xtask patches`: apply a series to its base and checkpatch it.
//!
//! The series lives in patches/v<version>/ as `git format-patch` output with
//! a `series` file naming the apply order. It is applied with `git am
//! --3way` in a worktree of its own, so the base checkout is never touched.
//! Two more verbs live in submodules: `--export` (the series for `git
//! send-email`, signed off by its sender) and `--each` (every prefix of the
//! series builds and passes checkpatch).

mod each;
mod export;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::flags::PatchesArgs;
use crate::source::{self, Source};
use crate::stage::{Progress, Stages};
use crate::stamp::Stamp;
use crate::{deps, layout};

/// A series: the patches of one kernel version in apply order.
pub struct Series {
    pub dir: PathBuf,
    /// The series file's first line: "# base: Debian linux-source-6.12 6.12.117 <sha>".
    pub base_line: String,
    pub patches: Vec<String>,
}

impl Series {
    pub fn load(dir: &Path) -> Result<Series> {
        let text = fs_err::read_to_string(dir.join("series"))
            .with_context(|| format!("read {}/series", dir.display()))?;
        let (base_line, patches) = parse_series(&text);
        if patches.is_empty() {
            bail!("{}/series names no patch", dir.display());
        }
        for p in &patches {
            if !dir.join(p).exists() {
                bail!("{}/series names {p}, which does not exist", dir.display());
            }
        }
        Ok(Series {
            dir: dir.to_path_buf(),
            base_line,
            patches,
        })
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.patches.iter().map(|p| self.dir.join(p)).collect()
    }

    /// The base commit the series was made on, from its first line.
    pub fn base_sha(&self) -> Option<&str> {
        self.base_line
            .split_whitespace()
            .find(|w| w.len() == 40 && w.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// A digest of everything that decides the patched tree.
    pub fn digest(&self) -> Result<String> {
        let mut h = Sha256::new();
        h.update(fs_err::read(self.dir.join("series"))?);
        for p in self.paths() {
            h.update(fs_err::read(&p).with_context(|| format!("read {}", p.display()))?);
        }
        Ok(hex(&h.finalize()))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a series file into its base line and the patch names. Blank
/// lines and other comments are skipped.
pub fn parse_series(text: &str) -> (String, Vec<String>) {
    let base = text
        .lines()
        .find(|l| l.starts_with("# base:"))
        .unwrap_or_default()
        .to_string();
    let patches = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    (base, patches)
}

/// Applies `series` to `source` and returns the worktree holding the
/// result. Cached: nothing is done when it already holds this series on
/// this base.
///
/// `git am` runs in a scratch worktree that is reset to the base first; the
/// build worktree then moves to the resulting commit, which rewrites only
/// the files whose content changed. Re-applying in place would give every
/// file the series touches a new mtime, and headers such as syscalls.h and
/// kvm_para.h would make an edit to one changelog rebuild most of a kernel.
pub fn apply(sh: &Shell, source: &Source, series: &Series, progress: &Progress) -> Result<PathBuf> {
    let variant = variant(source, series)?;
    let worktree = layout::sources().join(&variant);
    let stamp = Stamp::at(layout::sources().join(format!("{variant}.stamp")));
    let key = format!("{} {}", source.base, series.digest()?);
    if worktree.exists() && stamp.holds(&key) {
        progress.cached();
        return Ok(worktree);
    }
    if let Some(want) = series.base_sha() {
        if want != source.base {
            println!(
                "    note: the series was made on {want}, this base is {}; applying with --3way",
                source.base
            );
        }
    }
    stamp.clear();
    if worktree.exists() {
        // The tree holds a build's sources: apply in the scratch worktree,
        // then rewrite only the files that differ, so the build stays
        // incremental.
        let commits = am(sh, source, series, &scratch(source), progress)?;
        let patched = commits.last().cloned().unwrap_or_else(|| source.base.clone());
        progress.say("check out the patched tree");
        checkout(sh, source, &worktree, &patched, progress)?;
    } else {
        // A first run: apply in the new tree itself, one checkout of some
        // 80,000 files instead of two. If am fails, the next run finds the
        // tree without its stamp and takes the path above.
        am(sh, source, series, &worktree, progress)?;
    }
    stamp.write(&key)?;
    Ok(worktree)
}

/// What names a patched tree and its builds: "6.12-hello" for the
/// project's own series of that base, "6.12-series-<digest>" for another
/// (--series), so that trying a revision leaves the project's cached.
pub fn variant(source: &Source, series: &Series) -> Result<String> {
    let own = ["v6.1", "v6.12", "v7.3"]
        .iter()
        .map(|v| layout::root().join("patches").join(v))
        .any(|d| same_dir(&d, &series.dir));
    Ok(if own {
        format!("{}-hello", source.name)
    } else {
        format!("{}-series-{}", source.name, &series.digest()?[..12])
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The worktree in which series are applied: put at the base before every
/// use, and shared by the verbs, which the run lock keeps apart.
pub fn scratch(source: &Source) -> PathBuf {
    layout::sources().join(format!("{}-am", source.name))
}

/// Applies the series with `git am --3way` in `scratch`, put at the base
/// first, and returns the commits it made, in order.
pub fn am(
    sh: &Shell,
    source: &Source,
    series: &Series,
    scratch: &Path,
    progress: &Progress,
) -> Result<Vec<String>> {
    checkout(sh, source, scratch, &source.base, progress)?;
    progress.say("git am --3way");
    let patches = series.paths();
    let out = cmd!(
        sh,
        "git -C {scratch} -c user.name=hello-hypercall -c user.email=xtask@hello-hypercall.invalid am -q --3way {patches...}"
    )
    .quiet()
    .ignore_status()
    .output()?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = cmd!(sh, "git -C {scratch} am --abort")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .run();
        bail!("{}", am_failure(&text, series));
    }
    let base = &source.base;
    let commits = cmd!(sh, "git -C {scratch} rev-list --reverse {base}..HEAD")
        .quiet()
        .read()?;
    Ok(commits.lines().map(String::from).collect())
}

/// Puts a worktree of `source`'s repository at `commit`, creating it if
/// needed. Only files that differ are rewritten, so builds from the
/// worktree stay incremental.
pub fn checkout(
    sh: &Shell,
    source: &Source,
    worktree: &Path,
    commit: &str,
    progress: &Progress,
) -> Result<()> {
    let repo = &source.repo;
    if !worktree.exists() {
        progress.say("create a worktree");
        cmd!(sh, "git -C {repo} worktree add -q --detach {worktree} {commit}")
            .quiet()
            .run()
            .context("create a worktree")?;
    } else {
        let _ = cmd!(sh, "git -C {worktree} am --abort")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .run();
        cmd!(sh, "git -C {worktree} checkout -q --detach --force {commit}")
            .quiet()
            .run()?;
    }
    Ok(())
}

/// Names the patch and the files that did not apply, from git am's output.
pub fn am_failure(output: &str, series: &Series) -> String {
    let failed = output
        .lines()
        .find_map(|l| l.strip_prefix("Patch failed at "))
        .unwrap_or("an unknown patch");
    // "0002 KVM: x86: ..." → the second patch of the series.
    let file = failed
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| series.patches.get(n.checked_sub(1)?))
        .map(|p| series.dir.join(p).display().to_string())
        .unwrap_or_else(|| failed.to_string());
    let mut files: Vec<&str> = output
        .lines()
        .filter_map(|l| {
            l.strip_prefix("CONFLICT (content): Merge conflict in ")
                .or_else(|| {
                    l.strip_prefix("error: patch failed: ")
                        .and_then(|r| r.rsplit_once(':').map(|(f, _)| f))
                })
                .or_else(|| {
                    l.strip_prefix("error: ")
                        .and_then(|r| r.strip_suffix(": does not exist in index"))
                })
                // --3way without the blob the patch was made from.
                .or_else(|| {
                    l.strip_prefix("error: sha1 information is lacking or useless (")
                        .and_then(|r| r.strip_suffix(")."))
                })
        })
        .collect();
    files.dedup();
    let files = if files.is_empty() {
        "(see git am's output)".to_string()
    } else {
        files.join(", ")
    };
    format!(
        "{file} does not apply: {files}\n  git am said:\n{}\n  fix: rebase the patch on this base (or pick the matching --kernel)",
        output
            .lines()
            .filter(|l| !l.starts_with("hint: "))
            .map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
    )
}

/// What checkpatch said of one patch.
#[derive(Debug, Default, PartialEq)]
pub struct CheckpatchFindings {
    pub errors: u32,
    pub warnings: u32,
    pub checks: u32,
    /// Message types, e.g. "WARNING:TRACE_PRINTK".
    pub types: Vec<String>,
}

/// Reads checkpatch's `--show-types` output.
pub fn parse_checkpatch(output: &str) -> CheckpatchFindings {
    let mut v = CheckpatchFindings::default();
    for line in output.lines() {
        for level in ["ERROR:", "WARNING:", "CHECK:"] {
            if let Some(rest) = line.strip_prefix(level) {
                if let Some((kind, _)) = rest.split_once(':') {
                    v.types.push(format!("{level}{kind}"));
                }
            }
        }
        if let Some(rest) = line.strip_prefix("total: ") {
            let num = |label: &str| -> u32 {
                rest.split(',')
                    .find(|p| p.contains(label))
                    .and_then(|p| p.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            v.errors = num("error");
            v.warnings = num("warning");
            v.checks = num("check");
        }
    }
    v
}

/// Runs checkpatch --strict on every patch. Each warning or check type must
/// be named in the cover letter, which is where it is justified.
pub fn checkpatch(
    sh: &Shell,
    tree: &Path,
    series: &Series,
) -> Result<Vec<(String, CheckpatchFindings, Vec<String>)>> {
    let cover = fs_err::read_to_string(series.dir.join("0000-cover-letter.patch"))
        .context("read the cover letter")?;
    let mut results = Vec::new();
    for (name, path) in series.patches.iter().zip(series.paths()) {
        let (verdict, unjustified, _) = checkpatch_one(sh, tree, &path, &cover)?;
        results.push((name.clone(), verdict, unjustified));
    }
    Ok(results)
}

/// checkpatch --strict on one patch: its verdict, the message types the
/// cover letter does not justify, and checkpatch's output.
pub fn checkpatch_one(
    sh: &Shell,
    tree: &Path,
    patch: &Path,
    cover: &str,
) -> Result<(CheckpatchFindings, Vec<String>, String)> {
    let script = tree.join("scripts/checkpatch.pl");
    let _dir = sh.push_dir(tree);
    // spdxcheck.py needs Debian's python3 and its ply and git modules,
    // not whatever python3 comes first on PATH (pyenv, a venv).
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    let _path = sh.push_env("PATH", path);
    let out = cmd!(sh, "perl {script} --strict --show-types --color=never {patch}")
        .quiet()
        .ignore_status()
        .read()?;
    let verdict = parse_checkpatch(&out);
    let unjustified = verdict
        .types
        .iter()
        .filter(|t| !cover.contains(t.split(':').nth(1).unwrap_or(t)))
        .cloned()
        .collect();
    Ok((verdict, unjustified, out))
}

pub fn run(args: &PatchesArgs) -> Result<ExitCode> {
    if let (Some(dir), Some(signoff)) = (&args.export, &args.signoff) {
        return export::run(args, dir, signoff);
    }
    if args.each {
        return each::run(args);
    }
    let _lock = layout::lock()?;
    let sh = Shell::new()?;
    let mut stages = Stages::default();
    stages.run("deps", |p| deps::ensure_for(&sh, &args.kernel, p))?;
    let source = stages.run("source", |p| source::prepare(&sh, &args.kernel, p))?;
    let series = Series::load(&args.kernel.series_dir())?;
    stages.run("patch", |p| apply(&sh, &source, &series, p))?;
    let clean = stages.run("checkpatch", |_| report_checkpatch(&sh, &source, &series))?;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints checkpatch's counts per patch; true when nothing is unjustified.
pub fn report_checkpatch(sh: &Shell, source: &Source, series: &Series) -> Result<bool> {
    let results = checkpatch(sh, &source.repo, series)?;
    let mut clean = true;
    for (name, v, unjustified) in &results {
        println!(
            "    {name}: {} errors, {} warnings, {} checks {}",
            v.errors,
            v.warnings,
            v.checks,
            if v.types.is_empty() {
                String::new()
            } else {
                format!("[{}]", v.types.join(", "))
            }
        );
        if v.errors > 0 || !unjustified.is_empty() {
            clean = false;
            println!(
                "      not justified in the cover letter: {}",
                unjustified.join(", ")
            );
        }
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Series {
        Series {
            dir: PathBuf::from("patches/v6.12"),
            base_line: "# base: Debian linux-source-6.12 6.12.117 88e910dca3d30898d469ed7d3ce5dc90732b2849"
                .into(),
            patches: vec!["0001-a.patch".into(), "0002-b.patch".into()],
        }
    }

    #[test]
    fn series_file_reads_base_and_order() {
        let (base, patches) = parse_series("# base: x 1\n\n0001-a.patch\n# a comment\n0002-b.patch\n");
        assert_eq!(base, "# base: x 1");
        assert_eq!(patches, vec!["0001-a.patch", "0002-b.patch"]);
        assert_eq!(
            series().base_sha(),
            Some("88e910dca3d30898d469ed7d3ce5dc90732b2849")
        );
    }

    #[test]
    fn am_failure_names_patch_and_file() {
        let out = "Applying: KVM: x86: b\nerror: patch failed: arch/x86/kvm/x86.c:9600\n\
                   error: arch/x86/kvm/x86.c: patch does not apply\nPatch failed at 0002 KVM: x86: b\n";
        let msg = am_failure(out, &series());
        assert!(
            msg.starts_with("patches/v6.12/0002-b.patch does not apply: arch/x86/kvm/x86.c\n"),
            "{msg}"
        );
    }

    #[test]
    fn am_failure_without_the_base_blob() {
        let out = "Patch failed at 0001 KVM: x86: a\nerror: sha1 information is lacking or useless \
                   (Documentation/admin-guide/kernel-parameters.txt).\nhint: Use 'git am --show-current-patch'\n";
        let msg = am_failure(out, &series());
        assert!(
            msg.contains("does not apply: Documentation/admin-guide/kernel-parameters.txt"),
            "{msg}"
        );
        assert!(!msg.contains("hint:"), "{msg}");
    }

    #[test]
    fn am_failure_with_3way_conflict() {
        let out =
            "CONFLICT (content): Merge conflict in arch/x86/kvm/cpuid.c\nPatch failed at 0001 KVM: x86: a\n";
        assert!(am_failure(out, &series())
            .starts_with("patches/v6.12/0001-a.patch does not apply: arch/x86/kvm/cpuid.c"));
    }

    #[test]
    fn checkpatch_counts_and_types() {
        let out = "WARNING:TRACE_PRINTK: Do not use trace_printk() in production code\n\
                   #42: FILE: arch/x86/kvm/x86.c:9700:\n\ntotal: 0 errors, 1 warnings, 0 checks, 120 lines checked\n";
        assert_eq!(
            parse_checkpatch(out),
            CheckpatchFindings {
                errors: 0,
                warnings: 1,
                checks: 0,
                types: vec!["WARNING:TRACE_PRINTK".into()]
            }
        );
    }
}
