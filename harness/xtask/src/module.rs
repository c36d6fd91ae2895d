//! guest-module/, built out of tree against a guest kernel's build
//! directory (ours, or Debian's headers package), in a copy under target/
//! so the source directory stays clean.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::layout;
use crate::patches::hex;
use crate::stage::Progress;
use crate::stamp::Stamp;

const SOURCES: &[&str] = &["Kbuild", "Makefile", "hello_hypercall.c", "hello_hypercall.h"];

/// The built module and the compiler warnings of its W=1 build.
pub struct Module {
    pub ko: PathBuf,
    pub warnings: Vec<String>,
}

/// Builds into `dir` against `kdir`; `kernel_key` identifies that kernel
/// (a build key, a package release) for the cache.
pub fn build(
    sh: &Shell,
    kdir: &Path,
    kernel_key: &str,
    dir: &Path,
    log: &Path,
    progress: &Progress,
) -> Result<Module> {
    let src = layout::root().join("guest-module");
    let ko = dir.join("hello_hypercall.ko");
    let mut h = Sha256::new();
    h.update(kernel_key);
    for f in SOURCES {
        h.update(fs_err::read(src.join(f)).with_context(|| format!("read guest-module/{f}"))?);
    }
    let key = hex(&h.finalize());
    let stamp = Stamp::in_dir(dir);
    let warnings_file = dir.join("hh-warnings");
    if ko.exists() && stamp.holds(&key) {
        progress.cached();
        let warnings = fs_err::read_to_string(&warnings_file).unwrap_or_default();
        return Ok(Module {
            ko,
            warnings: warnings.lines().map(String::from).collect(),
        });
    }
    if dir.exists() {
        fs_err::remove_dir_all(dir)?;
    }
    sh.create_dir(dir)?;
    for f in SOURCES {
        fs_err::copy(src.join(f), dir.join(f))?;
    }
    progress.say("make M=guest-module W=1 modules");
    let out = cmd!(sh, "make -C {kdir} M={dir} W=1 modules")
        .quiet()
        .ignore_status()
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs_err::write(log, &text)?;
    if !out.status.success() {
        bail!(
            "building guest-module failed; last lines of {}:\n{}",
            log.display(),
            crate::build::tail(log, 20)
        );
    }
    let warnings: Vec<String> = text
        .lines()
        .filter(|l| l.contains("warning:"))
        .map(String::from)
        .collect();
    fs_err::write(&warnings_file, warnings.join("\n"))?;
    stamp.write(&key)?;
    Ok(Module { ko, warnings })
}
