//! The series' syscall kselftest, tools/testing/selftests/x86/
//! hello_hypercall.c: built static from the patched tree against the guest
//! kernel's exported headers, packed into the main L2's initramfs and run
//! there by the probe, which is the only place the syscall exists.
//!
//! A compile failure or a missing file is not an error of the run: it is
//! the series' failure, and the verdict says so in its own check.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::build::Plan;
use crate::patches::hex;
use crate::stage::Progress;
use crate::stamp::Stamp;
use crate::verdict::Kselftest;

/// The test, relative to the kernel tree.
pub const SOURCE: &str = "tools/testing/selftests/x86/hello_hypercall.c";

/// How kselftests are built: static, so the initramfs needs no libc, and
/// -isystem first so that <sys/syscall.h> finds the series' syscall
/// number in the exported headers before the build machine's own.
fn gcc_args(tree: &Path, headers: &Path, out: &Path) -> Vec<String> {
    vec![
        "-static".into(),
        "-O2".into(),
        "-Wall".into(),
        format!("-I{}", tree.join("tools/testing/selftests").display()),
        "-isystem".into(),
        headers.display().to_string(),
        "-o".into(),
        out.display().to_string(),
        tree.join(SOURCE).display().to_string(),
    ]
}

/// The built program (when there is one) and what the verdict needs to
/// know about the build.
pub struct Built {
    pub binary: Option<PathBuf>,
    pub status: Kselftest,
}

/// Builds the test from `guest`'s tree, cached by the guest kernel's key
/// and the test's source.
pub fn build(sh: &Shell, guest: &Plan, log: &Path, progress: &Progress) -> Result<Built> {
    let source = guest.src.join(SOURCE);
    if !source.exists() {
        return Ok(Built {
            binary: None,
            status: Kselftest::Missing(SOURCE.into()),
        });
    }
    let dir = guest.sibling("kselftest");
    let binary = dir.join("hello_hypercall");
    let headers = guest.dir.join("usr/include");
    let args = gcc_args(&guest.src, &headers, &binary);
    let compiler = cmd!(sh, "gcc --version")
        .quiet()
        .read()
        .context("run gcc --version")?;
    let mut h = Sha256::new();
    h.update(&guest.key);
    h.update(fs_err::read(&source).with_context(|| format!("read {}", source.display()))?);
    h.update(compiler.lines().next().unwrap_or_default());
    h.update(args.join(" "));
    let key = hex(&h.finalize());
    let stamp = Stamp::in_dir(&dir);
    let warnings_file = dir.join("hh-warnings");
    if binary.exists() && stamp.holds(&key) {
        progress.cached();
        let warnings = fs_err::read_to_string(&warnings_file).unwrap_or_default();
        return Ok(Built {
            binary: Some(binary),
            status: Kselftest::Built {
                warnings: warnings.lines().map(String::from).collect(),
            },
        });
    }
    fs_err::create_dir_all(&dir).context("create the kselftest's directory")?;
    stamp.clear();
    let mut text = String::new();

    progress.say("make headers (guest)");
    let (src, out) = (&guest.src, &guest.dir);
    let made = cmd!(sh, "make -s -C {src} O={out} headers")
        .quiet()
        .ignore_status()
        .output()?;
    text.push_str(&String::from_utf8_lossy(&made.stdout));
    text.push_str(&String::from_utf8_lossy(&made.stderr));
    if !made.status.success() {
        fs_err::write(log, &text)?;
        return Ok(failed(log, "make headers failed"));
    }

    progress.say(format!("gcc {SOURCE}"));
    text.push_str(&format!("gcc {}\n", args.join(" ")));
    let compiled = cmd!(sh, "gcc {args...}").quiet().ignore_status().output()?;
    let diagnostics = format!(
        "{}{}",
        String::from_utf8_lossy(&compiled.stdout),
        String::from_utf8_lossy(&compiled.stderr)
    );
    text.push_str(&diagnostics);
    fs_err::write(log, &text)?;
    if !compiled.status.success() {
        return Ok(failed(log, "gcc failed"));
    }
    let warnings: Vec<String> = diagnostics
        .lines()
        .filter(|l| l.contains("warning:"))
        .map(String::from)
        .collect();
    fs_err::write(&warnings_file, warnings.join("\n"))?;
    stamp.write(&key)?;
    Ok(Built {
        binary: Some(binary),
        status: Kselftest::Built { warnings },
    })
}

fn failed(log: &Path, what: &str) -> Built {
    Built {
        binary: None,
        status: Kselftest::BuildFailed(format!(
            "{what}; last lines of {}:\n{}",
            log.display(),
            crate::build::tail(log, 15)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_static_against_the_exported_headers() {
        let args = gcc_args(Path::new("/t"), Path::new("/b/usr/include"), Path::new("/o/x"));
        let line = args.join(" ");
        assert!(line.starts_with("-static -O2 -Wall"), "{line}");
        assert!(line.contains("-I/t/tools/testing/selftests -isystem /b/usr/include"));
        assert!(line.ends_with("-o /o/x /t/tools/testing/selftests/x86/hello_hypercall.c"));
    }
}
