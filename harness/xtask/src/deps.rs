//! The deps stage: every program and package a run needs, checked at once.
//! As root the missing ones are installed with apt; otherwise the one
//! command that installs them is printed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::debian::{self, Origin};
use crate::flags::{KernelArgs, KernelVersion};
use crate::qemu::which;
use crate::stage::Progress;

/// Programs, each with the Debian package that provides it.
const PROGRAMS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("gcc", "gcc"),
    ("make", "make"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("perl", "perl"),
    ("git", "git"),
    ("tar", "tar"),
    ("xz", "xz-utils"),
    // Unpacks a source package fetched from a suite the system does not use.
    ("dpkg-deb", "dpkg"),
];

/// Files that only a package provides: headers for the kernel's host
/// tools, the static C library for the guest programs, qboot.
const FILES: &[(&str, &str)] = &[
    ("/usr/include/libelf.h", "libelf-dev"),
    ("/usr/include/openssl/ssl.h", "libssl-dev"),
    ("/usr/lib/x86_64-linux-gnu/libc.a", "libc6-dev"),
    // 7.3's KVM selftests link the VFIO selftests' library, which uses libuuid.
    ("/usr/include/uuid/uuid.h", "uuid-dev"),
    // checkpatch's SPDX check runs scripts/spdxcheck.py with Debian's python3.
    ("/usr/lib/python3/dist-packages/ply", "python3-ply"),
    ("/usr/lib/python3/dist-packages/git", "python3-git"),
];

/// The packages missing on this machine, given the files a run needs
/// beyond the common ones (each with the package that provides it).
pub fn missing(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut pkgs: Vec<String> = PROGRAMS
        .iter()
        .filter(|(prog, _)| which(prog).is_none())
        .map(|(_, pkg)| pkg.to_string())
        .collect();
    pkgs.extend(
        FILES
            .iter()
            .filter(|(f, _)| !Path::new(f).exists())
            .map(|(_, p)| p.to_string()),
    );
    pkgs.extend(files.iter().filter(|(f, _)| !f.exists()).map(|(_, p)| p.clone()));
    pkgs.dedup();
    pkgs
}

/// The deps stage of a run on `kernel`.
pub fn ensure_for(sh: &Shell, kernel: &KernelArgs, progress: &Progress) -> Result<()> {
    ensure(sh, &source_needs(kernel.kernel, kernel.tree.is_some()), progress)
}

/// What Debian's source of `version` needs, unless the user brings a tree:
/// the source package itself when the system's archive has it, else what
/// fetching it from its suite takes (see debian.rs).
fn source_needs(version: KernelVersion, tree: bool) -> Vec<(PathBuf, String)> {
    match (tree, version.origin()) {
        (true, _) => vec![],
        (false, Origin::System) => vec![(debian::tarball(version), debian::package(version))],
        (false, Origin::Suite(_)) => vec![(PathBuf::from(debian::KEYRING), "debian-archive-keyring".into())],
    }
}

/// Installs what is missing (as root) or fails naming all of it.
pub fn ensure(sh: &Shell, files: &[(PathBuf, String)], progress: &Progress) -> Result<()> {
    let pkgs = missing(files);
    if pkgs.is_empty() {
        return Ok(());
    }
    let is_root = is_root(sh);
    if !is_root {
        bail!(
            "missing packages: {}\n  install them with:\n    sudo apt-get install --no-install-recommends {}",
            pkgs.join(", "),
            pkgs.join(" ")
        );
    }
    progress.say(format!("apt-get install {}", pkgs.join(" ")));
    let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    cmd!(sh, "apt-get update -q")
        .quiet()
        .ignore_stdout()
        .run()
        .context("apt-get update")?;
    cmd!(sh, "apt-get install -y -q --no-install-recommends {pkgs...}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("apt-get install")?;
    let still = missing(files);
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

fn is_root(sh: &Shell) -> bool {
    cmd!(sh, "id -u").quiet().read().is_ok_and(|u| u.trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_package_or_what_fetches_it() {
        assert_eq!(
            source_needs(KernelVersion::V6_12, false),
            [(
                PathBuf::from("/usr/src/linux-source-6.12.tar.xz"),
                "linux-source-6.12".to_string()
            )]
        );
        // Not installable from this system's archive: only the key that
        // verifies its suite is a package.
        assert_eq!(
            source_needs(KernelVersion::V7_3, false),
            [(
                PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg"),
                "debian-archive-keyring".to_string()
            )]
        );
        assert!(source_needs(KernelVersion::V7_3, true).is_empty());
    }
}
