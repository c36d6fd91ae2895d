//! Where things live: the repository's inputs and everything xtask writes
//! under target/. Nothing outside target/ is ever written.

use std::path::{Path, PathBuf};

use crate::flags::KernelVersion;

/// The repository root, found from this crate's manifest so that xtask
/// works from any directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("harness/xtask sits two levels below the root")
        .to_path_buf()
}

/// Why a run cannot start from a checkout at `root`, if it cannot: L1's
/// kernel command line names the agent by its path (`init=`), where white
/// space splits parameters, and QEMU's `-fsdev path=` takes a comma as
/// the end of the path.
pub fn unusable_root(root: &Path) -> Option<String> {
    let text = root.display().to_string();
    let bad = text.chars().find(|c| c.is_whitespace() || *c == ',')?;
    Some(format!(
        "the checkout {text} holds {bad:?}: L1's kernel command line (init=) and QEMU's -fsdev path= \
         cannot carry it; clone into a path without white space or commas"
    ))
}

pub fn target() -> PathBuf {
    root().join("target")
}

/// Extracted kernel sources and their patched worktrees.
pub fn sources() -> PathBuf {
    target().join("src")
}

/// Out-of-tree kernel build directories, one per kernel variant.
pub fn kernels() -> PathBuf {
    target().join("kernels")
}

/// Private apt configurations, one per Debian suite the system does not use.
pub fn apt() -> PathBuf {
    target().join("apt")
}

/// Debian packages unpacked (never installed), one directory each.
pub fn debian() -> PathBuf {
    target().join("debian")
}

/// Reports, runs and benchmark figures.
pub fn xtask() -> PathBuf {
    target().join("xtask")
}

pub fn runs() -> PathBuf {
    xtask().join("runs")
}

pub fn configs() -> PathBuf {
    root().join("harness").join("configs")
}

/// The series directory of a kernel version, e.g. patches/v6.12.
pub fn series_dir(version: KernelVersion) -> PathBuf {
    root().join("patches").join(format!("v{}", version.name()))
}

impl KernelVersion {
    /// The version as Debian names its source package: "6.12".
    pub fn name(self) -> &'static str {
        match self {
            KernelVersion::V6_12 => "6.12",
            KernelVersion::V6_1 => "6.1",
            KernelVersion::V7_3 => "7.3",
        }
    }
}

/// Holds target/xtask/lock for the life of a run: two runs would build in
/// the same kernel build directories and corrupt them.
pub struct RunLock {
    /// Never read: the lock lasts as long as the file stays open.
    _file: fs_err::File,
}

pub fn lock() -> anyhow::Result<RunLock> {
    use anyhow::Context;
    fs_err::create_dir_all(xtask())?;
    let file = fs_err::File::create(xtask().join("lock")).context("create target/xtask/lock")?;
    if file.try_lock().is_err() {
        println!("waiting for another cargo xtask run in this checkout to finish...");
        file.lock().context("lock target/xtask/lock")?;
    }
    Ok(RunLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_path_with_space_or_comma_is_refused() {
        assert_eq!(unusable_root(Path::new("/tmp/fresh")), None);
        let why = unusable_root(Path::new("/tmp/my clone")).unwrap();
        assert!(why.contains("' '") && why.contains("clone into a path"), "{why}");
        assert!(unusable_root(Path::new("/tmp/a,b")).is_some());
    }
}
