//! The kernel source a series applies to: Debian's source tarball (from
//! /usr/src, or fetched under target/ for a suite the system does not use:
//! see debian.rs) extracted under target/src once and committed as the
//! base, or the user's own tree.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::debian::{self, Origin};
use crate::flags::{KernelArgs, KernelVersion};
use crate::layout;
use crate::stage::Progress;

/// A git repository holding the base the series applies to.
pub struct Source {
    /// The repository (for Debian's source: target/src/linux-6.12).
    pub repo: PathBuf,
    /// The base commit.
    pub base: String,
    /// A short name for build directories: "6.12" or "tree-<hash>".
    pub name: String,
}

/// Identity and date of the base commit: fixed, so that every machine
/// makes the same commit from the same tarball and the series'
/// `base-commit:` trailer names it.
const BASE_ENV: [(&str, &str); 6] = [
    ("GIT_AUTHOR_NAME", "hello-hypercall"),
    ("GIT_AUTHOR_EMAIL", "base@hello-hypercall.invalid"),
    ("GIT_AUTHOR_DATE", "@0 +0000"),
    ("GIT_COMMITTER_NAME", "hello-hypercall"),
    ("GIT_COMMITTER_EMAIL", "base@hello-hypercall.invalid"),
    ("GIT_COMMITTER_DATE", "@0 +0000"),
];

/// Finds or makes the source for `args`.
pub fn prepare(sh: &Shell, args: &KernelArgs, progress: &Progress) -> Result<Source> {
    match &args.tree {
        Some(tree) => user_tree(sh, tree),
        None => debian(sh, args.kernel, progress),
    }
}

fn user_tree(sh: &Shell, tree: &Path) -> Result<Source> {
    let tree = tree
        .canonicalize()
        .with_context(|| format!("--tree {}: no such directory", tree.display()))?;
    let base = cmd!(sh, "git -C {tree} rev-parse --verify HEAD")
        .quiet()
        .read()
        .with_context(|| {
            format!(
                "--tree {}: not a git repository with a commit; pass the top of a kernel git checkout",
                tree.display()
            )
        })?;
    if !tree.join("arch/x86/kvm/x86.c").exists() {
        bail!(
            "--tree {}: no arch/x86/kvm/x86.c; pass the top of a Linux kernel tree",
            tree.display()
        );
    }
    Ok(Source {
        repo: tree,
        name: format!("tree-{}", &base[..12]),
        base,
    })
}

fn debian(sh: &Shell, version: KernelVersion, progress: &Progress) -> Result<Source> {
    let repo = layout::sources().join(format!("linux-{}", version.name()));
    let stamp = repo.join(".git").join("hh-base");
    if let Ok(base) = fs_err::read_to_string(&stamp) {
        progress.cached();
        return Ok(Source {
            repo,
            base: base.trim().to_string(),
            name: version.name().into(),
        });
    }
    let tarball = match version.origin() {
        Origin::System => {
            let tarball = debian::tarball(version);
            if !tarball.exists() {
                bail!(
                    "{} not found: install it with `apt-get install {}`",
                    tarball.display(),
                    debian::package(version)
                );
            }
            tarball
        }
        Origin::Suite(_) => debian::fetch(sh, version, progress)?,
    };
    // Extract next to the final place and rename, so an interrupted
    // extraction never looks like a finished one.
    let scratch = layout::sources().join(format!(".extract-{}", version.name()));
    if scratch.exists() {
        fs_err::remove_dir_all(&scratch).context("remove an old extraction")?;
    }
    if repo.exists() {
        fs_err::remove_dir_all(&repo).context("remove an unfinished source")?;
    }
    sh.create_dir(&scratch)?;
    progress.say(format!("extract {}", tarball.display()));
    cmd!(sh, "tar -xf {tarball} -C {scratch}")
        .quiet()
        .run()
        .context("extract the kernel source")?;
    fs_err::rename(scratch.join(format!("linux-source-{}", version.name())), &repo)
        .context("move the extracted source into place")?;
    fs_err::remove_dir_all(&scratch)?;

    progress.say("commit the base");
    let version_line = kernel_version(&repo)?;
    let message = format!("Debian linux-source-{} {version_line}", version.name());
    // The user's git configuration must not change the commit.
    let _system = sh.push_env("GIT_CONFIG_NOSYSTEM", "1");
    let _global = sh.push_env("GIT_CONFIG_GLOBAL", "/dev/null");
    let g = ["-c", "core.autocrlf=false", "-c", "commit.gpgsign=false"];
    cmd!(sh, "git -C {repo} init -q").quiet().run()?;
    // The base is some 80,000 loose objects, and the first git command
    // after it (git am, a worktree) would stop to pack them all with
    // "gc --auto": minutes of CPU on a cold run for no later gain.
    cmd!(sh, "git -C {repo} config gc.auto 0").quiet().run()?;
    // Debian's tarball ignores everything from its top-level .gitignore:
    // only a forced add sees the files.
    cmd!(sh, "git -C {repo} {g...} add -f -A .")
        .quiet()
        .run()
        .context("git add the base")?;
    cmd!(sh, "git -C {repo} {g...} commit -q -m {message}")
        .envs(BASE_ENV)
        .quiet()
        .run()
        .context("commit the base")?;
    let base = cmd!(sh, "git -C {repo} rev-parse HEAD").quiet().read()?;
    fs_err::write(&stamp, &base)?;
    Ok(Source {
        repo,
        base,
        name: version.name().into(),
    })
}

/// "6.12.117", from the top-level Makefile.
pub fn kernel_version(repo: &Path) -> Result<String> {
    let makefile = fs_err::read_to_string(repo.join("Makefile")).context("read the kernel Makefile")?;
    version_from_makefile(&makefile).context("no VERSION/PATCHLEVEL/SUBLEVEL in the kernel Makefile")
}

fn version_from_makefile(makefile: &str) -> Option<String> {
    let field = |key: &str| {
        makefile.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    Some(format!(
        "{}.{}.{}",
        field("VERSION")?,
        field("PATCHLEVEL")?,
        field("SUBLEVEL")?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_the_makefile() {
        let mk = "# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\n";
        assert_eq!(version_from_makefile(mk).as_deref(), Some("6.12.117"));
        assert_eq!(version_from_makefile("VERSION = 6\n"), None);
    }
}
