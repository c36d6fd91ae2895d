//! `cargo xtask patches --export DIR --signoff "Name <addr>"`: the series as
//! its sender mails it.
//!
//! The repository's patches carry a placeholder author, which is nobody and
//! so cannot certify the Developer's Certificate of Origin. The export
//! applies the series to its base, re-creates each commit with the sender as
//! author (where the placeholder was) and as the last Signed-off-by (the
//! placeholder's is dropped), lets `git format-patch` write the mails, and
//! carries the cover letter's subject and text over from the repository's.
//! Before it reports success, the written patches are applied to the base
//! with plain `git am` and must give the same tree, authors and sign-offs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

mod mail;

use super::{am, checkout, scratch, Series};
use crate::flags::PatchesArgs;
use crate::source::{self, Source};
use crate::stage::{Progress, Stages};
use crate::{deps, layout};
use mail::{author_for, cover_text, fill_cover, last_signoff, leftovers, sign_off, Identity};

/// A commit as the export reads it from git.
struct Commit {
    author: Identity,
    /// "<seconds> <zone>", git's raw date, kept so the export is reproducible.
    date: String,
    message: String,
}

/// The format that `read_commit` parses: fields separated by NUL.
const COMMIT_FORMAT: &str = "--format=%an%x00%ae%x00%ad%x00%B";

fn parse_commit(raw: &str) -> Option<Commit> {
    let mut fields = raw.splitn(4, '\0');
    let name = fields.next()?.to_string();
    let email = fields.next()?.to_string();
    let date = fields.next()?.to_string();
    let message = fields.next()?.to_string();
    Some(Commit {
        author: Identity { name, email },
        date,
        message,
    })
}

fn read_commit(sh: &Shell, repo: &Path, commit: &str) -> Result<Commit> {
    let raw = cmd!(sh, "git -C {repo} show -s --date=raw {COMMIT_FORMAT} {commit}")
        .quiet()
        .read()
        .context("read a commit")?;
    parse_commit(&raw).with_context(|| format!("unexpected git show output for {commit}"))
}

/// Keeps the user's global git configuration (diff prefixes, signature,
/// sign-off and thread settings) out of the mails and commits.
fn neutral_git(sh: &Shell) -> [xshell::PushEnv<'_>; 2] {
    [
        sh.push_env("GIT_CONFIG_NOSYSTEM", "1"),
        sh.push_env("GIT_CONFIG_GLOBAL", "/dev/null"),
    ]
}

pub fn run(args: &PatchesArgs, dir: &Path, signoff: &str) -> Result<ExitCode> {
    let sender = Identity::parse(signoff)?;
    let out = std::env::current_dir().context("current directory")?.join(dir);
    if out.exists()
        && fs_err::read_dir(&out)
            .context("read --export DIR")?
            .next()
            .is_some()
    {
        bail!(
            "--export {}: not empty; pass a new or empty directory (old mails there would be sent along)",
            out.display()
        );
    }
    let _lock = layout::lock()?;
    let sh = Shell::new()?;
    let _neutral = neutral_git(&sh);
    let mut stages = Stages::default();
    stages.run("deps", |p| deps::ensure_for(&sh, &args.kernel, p))?;
    let source = stages.run("source", |p| source::prepare(&sh, &args.kernel, p))?;
    let series = Series::load(&layout::series_dir(args.kernel.kernel))?;
    let (tip, files) = stages.run("export", |p| write(&sh, &source, &series, &sender, &out, p))?;
    stages.run("verify", |p| {
        verify(&sh, &source, &series, &sender, &tip, &files, p)
    })?;
    println!("{} mails for {sender} in {}:", files.len(), out.display());
    for f in &files {
        println!("    {}", f.file_name().unwrap_or_default().to_string_lossy());
    }
    println!(
        "check them, then send: git send-email --dry-run --from=\"{sender}\" --to=<list> {}/*.patch\n  \
         (scripts/get_maintainer.pl names the lists and maintainers; drop --dry-run to send)",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Applies the series, re-commits it for the sender and writes the mails.
/// Returns the sender's tip commit and the written files, cover first.
fn write(
    sh: &Shell,
    source: &Source,
    series: &Series,
    sender: &Identity,
    out: &Path,
    progress: &Progress,
) -> Result<(String, Vec<PathBuf>)> {
    let scratch = scratch(source);
    let base = &source.base;
    let commits = am(sh, source, series, &scratch, progress)?;
    // Each commit is made again with git commit-tree: same tree, the
    // sender as author and committer, the original author date (so the
    // same input gives the same mails) and the rewritten message.
    let mut parent = base.clone();
    for commit in &commits {
        progress.say(format!("sign off {commit}"));
        let c = read_commit(sh, &scratch, commit)?;
        let author = author_for(&c.author, sender);
        let message = sign_off(&c.message, sender);
        let tree = format!("{commit}^{{tree}}");
        parent = cmd!(sh, "git -C {scratch} commit-tree {tree} -p {parent}")
            .stdin(message)
            .env("GIT_AUTHOR_NAME", &author.name)
            .env("GIT_AUTHOR_EMAIL", &author.email)
            .env("GIT_AUTHOR_DATE", &c.date)
            .env("GIT_COMMITTER_NAME", &sender.name)
            .env("GIT_COMMITTER_EMAIL", &sender.email)
            .env("GIT_COMMITTER_DATE", &c.date)
            .quiet()
            .read()
            .context("git commit-tree")?;
    }
    let tip = parent;
    progress.say("git format-patch");
    fs_err::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let from = format!("--from={sender}");
    let base_arg = format!("--base={base}");
    let range = format!("{base}..{tip}");
    // Repository settings cannot be switched off like the global ones;
    // these are the ones that would change the diffs themselves.
    let diff = [
        "-c",
        "diff.noprefix=false",
        "-c",
        "diff.mnemonicPrefix=false",
        "-c",
        "format.signOff=false",
    ];
    // The cover letter's From: is the committer, whom the repository's
    // own configuration may name (the placeholder, for one).
    let listed = cmd!(
        sh,
        "git -C {scratch} {diff...} format-patch --cover-letter {base_arg} {from} -o {out} {range}"
    )
    .env("GIT_COMMITTER_NAME", &sender.name)
    .env("GIT_COMMITTER_EMAIL", &sender.email)
    .quiet()
    .read()
    .context("git format-patch")?;
    // `out` is absolute, so git names the files it wrote by full path.
    let files: Vec<PathBuf> = listed.lines().map(|l| PathBuf::from(l.trim())).collect();
    let cover_path = files.first().context("git format-patch wrote nothing")?;
    let repo_cover = fs_err::read_to_string(series.dir.join("0000-cover-letter.patch"))
        .context("read the repository's cover letter")?;
    let (subject, text) = cover_text(&repo_cover)?;
    let generated = fs_err::read_to_string(cover_path).context("read the written cover letter")?;
    fs_err::write(cover_path, fill_cover(&generated, &subject, &text)?).context("write the cover letter")?;
    Ok((tip, files))
}

/// Applies the written patches to the base with plain `git am` (no
/// --3way) and compares the result with what was exported.
fn verify(
    sh: &Shell,
    source: &Source,
    series: &Series,
    sender: &Identity,
    tip: &str,
    files: &[PathBuf],
    progress: &Progress,
) -> Result<()> {
    let texts = files
        .iter()
        .map(|f| {
            let text = fs_err::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
            Ok((
                f.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                text,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut problems = leftovers(&texts, sender);
    if files.len() != series.patches.len() + 1 {
        problems.push(format!(
            "{} files written for {} patches and a cover letter",
            files.len(),
            series.patches.len()
        ));
    }
    let scratch = scratch(source);
    let base = &source.base;
    checkout(sh, source, &scratch, base, progress)?;
    progress.say("git am the written patches");
    let patches = files.get(1..).unwrap_or_default();
    let who = [
        "-c",
        "user.name=hello-hypercall",
        "-c",
        "user.email=xtask@hello-hypercall.invalid",
    ];
    let applied = cmd!(sh, "git -C {scratch} {who...} am -q {patches...}")
        .quiet()
        .ignore_status()
        .output()?;
    if !applied.status.success() {
        let _ = cmd!(sh, "git -C {scratch} am --abort")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .run();
        bail!(
            "the written patches do not apply to the base with git am:\n{}",
            String::from_utf8_lossy(&applied.stderr)
        );
    }
    let (got_ref, want_ref) = ("HEAD^{tree}", format!("{tip}^{{tree}}"));
    let got = cmd!(sh, "git -C {scratch} rev-parse {got_ref}").quiet().read()?;
    let want = cmd!(sh, "git -C {scratch} rev-parse {want_ref}").quiet().read()?;
    if got != want {
        problems.push(format!("git am gives tree {got}, the series {want}"));
    }
    let applied = cmd!(sh, "git -C {scratch} rev-list --reverse {base}..HEAD")
        .quiet()
        .read()?;
    let exported = cmd!(sh, "git -C {scratch} rev-list --reverse {base}..{tip}")
        .quiet()
        .read()?;
    for (a, e) in applied.lines().zip(exported.lines()) {
        let (a, e) = (read_commit(sh, &scratch, a)?, read_commit(sh, &scratch, e)?);
        let subject = a.message.lines().next().unwrap_or_default().to_string();
        if a.author != e.author {
            problems.push(format!("{subject}: author {} instead of {}", a.author, e.author));
        }
        if last_signoff(&a.message) != Some(sender.to_string().as_str()) {
            problems.push(format!("{subject}: the last Signed-off-by is not {sender}"));
        }
    }
    if !problems.is_empty() {
        bail!("the export is wrong:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mail::PLACEHOLDER;
    use super::*;

    #[test]
    fn commits_parse_from_git_show() {
        let c =
            parse_commit("Ada Lovelace\0ada@lovelace.name\x001763729196 +0000\0KVM: x86: a\n\nb\n").unwrap();
        assert_eq!(
            c.author,
            Identity::parse("Ada Lovelace <ada@lovelace.name>").unwrap()
        );
        assert_eq!(c.date, "1763729196 +0000");
        assert_eq!(c.message, "KVM: x86: a\n\nb\n");
        assert!(parse_commit("Ada\0ada@x.y").is_none());
    }

    #[test]
    fn the_repository_uses_the_placeholder() {
        // The export recognises the placeholder by this constant, so it
        // must be what the repository's patches say.
        let series = Series::load(&layout::series_dir(crate::flags::KernelVersion::V6_12)).unwrap();
        for path in series.paths() {
            let text = fs_err::read_to_string(&path).unwrap();
            assert!(
                text.contains(&format!("\nFrom: {PLACEHOLDER}\n")),
                "{}",
                path.display()
            );
            assert!(
                text.contains(&format!("\nSigned-off-by: {PLACEHOLDER}\n")),
                "{}",
                path.display()
            );
        }
    }
}
