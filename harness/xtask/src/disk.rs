//! The disk a CI run needs, and giving back what a finished base used.
//!
//! A base costs about 8 GiB under target/: its extracted source with the
//! git history of one commit, three worktrees (git am's scratch, the
//! patched tree, `--each`'s tree) and the kernel builds. All three bases
//! at once need some 25 GiB, more than a CI machine may have free, so
//! `cargo xtask ci` runs base by base and reclaims each one's trees and
//! builds when its steps are done: the peak is one base, not three.
//! Reports, logs and the fetched tarballs stay.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::flags::KernelVersion;
use crate::layout;

const GIB: u64 = 1 << 30;

/// What one base's CI steps hold at their peak (measured on 7.3, the
/// largest: 9.1 GiB with target/'s Rust builds), with a margin for the
/// next base's tarball and the run logs.
pub const CI_NEEDS: u64 = 12 * GIB;

/// Bytes free to an unprivileged writer on the filesystem holding `path`.
pub fn free(path: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Refuses to start when target/'s filesystem has less than `need` free:
/// a full disk found after half an hour of kernel builds costs more than
/// a refusal now, and its error names only the file that failed.
pub fn require_free(need: u64, what: &str) -> Result<()> {
    let target = layout::target();
    fs_err::create_dir_all(&target).context("create target/")?;
    let have = free(&target)?;
    if have < need {
        bail!(
            "{what} needs about {} free under {}, and its filesystem has {}; \
             fix: free disk space there (an old target/ of another checkout is the usual culprit)",
            gib(need),
            target.display(),
            gib(have)
        );
    }
    Ok(())
}

/// The space `path` takes, counted in allocated blocks; symbolic links
/// are not followed.
pub fn usage(path: &Path) -> u64 {
    let Ok(meta) = fs_err::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    let Ok(entries) = fs_err::read_dir(path) else {
        return own;
    };
    own + entries.flatten().map(|e| usage(&e.path())).sum::<u64>()
}

/// Deletes `version`'s extracted source, its worktrees and stamps, and its
/// kernel build directories; returns the bytes they held. The worktrees
/// go with the repository that records them, so git keeps no stale entry.
pub fn reclaim(version: KernelVersion) -> Result<u64> {
    let mut freed = 0;
    for (dir, ours) in [
        (layout::sources(), is_source_of as Owner),
        (layout::kernels(), is_build_of),
    ] {
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !ours(version, &name) {
                continue;
            }
            let path = entry.path();
            freed += usage(&path);
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                fs_err::remove_dir_all(&path)
            } else {
                fs_err::remove_file(&path)
            }
            .with_context(|| format!("reclaim {}", path.display()))?;
        }
    }
    Ok(freed)
}

/// Whether an entry of target/src or target/kernels belongs to a base.
type Owner = fn(KernelVersion, &str) -> bool;

/// target/src: "linux-6.1", an interrupted ".extract-6.1", and every
/// "6.1-…" worktree or stamp (never "6.12-…").
fn is_source_of(version: KernelVersion, name: &str) -> bool {
    let v = version.name();
    name == format!("linux-{v}") || name == format!(".extract-{v}") || name.starts_with(&format!("{v}-"))
}

/// target/kernels: every "6.1-…" build directory.
fn is_build_of(version: KernelVersion, name: &str) -> bool {
    name.starts_with(&format!("{}-", version.name()))
}

pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_reclaims_only_its_own_trees() {
        let ours = |name| is_source_of(KernelVersion::V6_1, name);
        for name in [
            "linux-6.1",
            ".extract-6.1",
            "6.1-am",
            "6.1-hello",
            "6.1-hello.stamp",
            "6.1-series-0123456789ab",
        ] {
            assert!(ours(name), "{name}");
        }
        for name in [
            "linux-6.12",
            "6.12-hello",
            ".extract-6.12",
            "linux-7.3",
            "tree-0123456789ab-am",
        ] {
            assert!(!ours(name), "{name}");
        }
        let builds = |name| is_build_of(KernelVersion::V6_1, name);
        assert!(builds("6.1-hello-host"));
        assert!(!builds("6.12-hello-host"));
        assert!(!builds("stock-6.12.117+deb12-cloud-amd64.guest-module"));
    }

    #[test]
    fn usage_counts_files_below_a_directory() {
        let dir = std::env::temp_dir().join(format!("hh-disk-{}", std::process::id()));
        fs_err::create_dir_all(dir.join("a")).unwrap();
        fs_err::write(dir.join("a/f"), vec![1u8; 64 * 1024]).unwrap();
        let used = usage(&dir);
        fs_err::remove_dir_all(&dir).unwrap();
        assert!(used >= 64 * 1024, "{used}");
        assert_eq!(usage(&dir), 0);
    }
}
