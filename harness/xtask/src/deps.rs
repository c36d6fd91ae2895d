//! The deps stage: every program and package a run needs, checked at once.
//! As root the missing ones are installed with apt; otherwise the one
//! command that installs them is printed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::flags::KernelArgs;
use crate::qemu::which;
use crate::source;
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
];

/// Files that only a package provides: headers for the kernel's host
/// tools, the static C library for the guest programs, qboot.
const FILES: &[(&str, &str)] = &[
    ("/usr/include/libelf.h", "libelf-dev"),
    ("/usr/include/openssl/ssl.h", "libssl-dev"),
    ("/usr/lib/x86_64-linux-gnu/libc.a", "libc6-dev"),
    // checkpatch's SPDX check runs scripts/spdxcheck.py with Debian's python3.
    ("/usr/lib/python3/dist-packages/ply", "python3-ply"),
    ("/usr/lib/python3/dist-packages/git", "python3-git"),
];

/// The packages missing on this machine for the given source tarballs.
pub fn missing(tarballs: &[(&Path, String)]) -> Vec<String> {
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
    pkgs.extend(
        tarballs
            .iter()
            .filter(|(f, _)| !f.exists())
            .map(|(_, p)| p.clone()),
    );
    pkgs.dedup();
    pkgs
}

/// The deps stage of a run on `kernel`: Debian's source package too,
/// unless the user brings a tree.
pub fn ensure_for(sh: &Shell, kernel: &KernelArgs, progress: &Progress) -> Result<()> {
    let tarball = source::tarball(kernel.kernel);
    let tarballs = match kernel.tree {
        Some(_) => vec![],
        None => vec![(tarball.as_path(), source::package(kernel.kernel))],
    };
    ensure(sh, &tarballs, progress)
}

/// Installs what is missing (as root) or fails naming all of it.
pub fn ensure(sh: &Shell, tarballs: &[(&Path, String)], progress: &Progress) -> Result<()> {
    let pkgs = missing(tarballs);
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
    let still = missing(tarballs);
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

fn is_root(sh: &Shell) -> bool {
    cmd!(sh, "id -u").quiet().read().is_ok_and(|u| u.trim() == "0")
}
