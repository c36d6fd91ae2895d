//! Debian's stock 6.12 cloud kernel, booted as a second L2 guest with only
//! guest-module loaded: proof that the host patch alone is enough for a
//! guest whose kernel cannot be rebuilt.
//!
//! The newest installed image/headers pair is used; when none is
//! installed, the newest pair the archive offers is installed (as root).
//! Versions are never hard-coded: the archive replaces them over time.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::stage::{Progress, Scenario};

/// One installed cloud kernel and its headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Stock {
    /// "6.12.117+deb12-cloud-amd64"
    pub release: String,
    pub kernel: PathBuf,
    pub headers: PathBuf,
}

/// Finds (or, as root, installs) the stock guest; a skip carries the reason,
/// with the command that would enable it.
pub fn ensure(sh: &Shell, progress: &Progress) -> Result<Scenario<Stock>> {
    if let Some(stock) = newest(&installed(Path::new("/boot"), Path::new("/usr/src"))) {
        progress.cached();
        return Ok(Scenario::Runs(stock));
    }
    let listing = cmd!(
        sh,
        "apt-cache search --names-only ^linux-image-6\\.12\\..*-cloud-amd64-unsigned$"
    )
    .quiet()
    .read()
    .unwrap_or_default();
    let offered: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| {
            p.strip_prefix("linux-image-")?
                .strip_suffix("-unsigned")
                .map(String::from)
        })
        .collect();
    let Some(release) = offered.iter().max_by_key(|r| sublevel(r)) else {
        return Ok(Scenario::Skipped(
            "no linux-image-6.12.*-cloud-amd64-unsigned in the apt lists (run apt-get update)".into(),
        ));
    };
    let pkgs = [
        format!("linux-image-{release}-unsigned"),
        format!("linux-headers-{release}"),
    ];
    if !cmd!(sh, "id -u").quiet().read().is_ok_and(|u| u.trim() == "0") {
        return Ok(Scenario::Skipped(format!(
            "install the stock guest with: sudo apt-get install {}",
            pkgs.join(" ")
        )));
    }
    progress.say(format!("apt-get install {}", pkgs.join(" ")));
    cmd!(sh, "apt-get install -y -q --no-install-recommends {pkgs...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .quiet()
        .ignore_stdout()
        .run()
        .context("install Debian's cloud kernel")?;
    Ok(
        match newest(&installed(Path::new("/boot"), Path::new("/usr/src"))) {
            Some(stock) => Scenario::Runs(stock),
            None => Scenario::Skipped(
                "the cloud kernel was installed but is not found in /boot and /usr/src".into(),
            ),
        },
    )
}

/// Installed 6.12 cloud kernels that have their headers.
fn installed(boot: &Path, src: &Path) -> Vec<Stock> {
    let Ok(entries) = fs_err::read_dir(boot) else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_prefix("vmlinuz-").map(String::from))
        .filter(|release| release.starts_with("6.12.") && release.ends_with("-cloud-amd64"))
        .map(|release| Stock {
            kernel: boot.join(format!("vmlinuz-{release}")),
            headers: src.join(format!("linux-headers-{release}")),
            release,
        })
        .filter(|s| s.headers.join("Makefile").exists())
        .collect()
}

fn newest(found: &[Stock]) -> Option<Stock> {
    found.iter().max_by_key(|s| sublevel(&s.release)).cloned()
}

/// 117 in "6.12.117+deb12-cloud-amd64".
fn sublevel(release: &str) -> u32 {
    release
        .split(['.', '+', '-'])
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_by_sublevel_not_by_text() {
        assert_eq!(sublevel("6.12.117+deb12-cloud-amd64"), 117);
        let s = |r: &str| Stock {
            release: r.into(),
            kernel: PathBuf::new(),
            headers: PathBuf::new(),
        };
        let found = [s("6.12.99+deb12-cloud-amd64"), s("6.12.117+deb12-cloud-amd64")];
        assert_eq!(newest(&found).unwrap().release, "6.12.117+deb12-cloud-amd64");
    }

    #[test]
    fn only_pairs_with_headers_count() {
        let dir = std::env::temp_dir().join(format!("hh-stock-{}", std::process::id()));
        let (boot, src) = (dir.join("boot"), dir.join("src"));
        fs_err::create_dir_all(&boot).unwrap();
        fs_err::create_dir_all(src.join("linux-headers-6.12.5+deb12-cloud-amd64")).unwrap();
        fs_err::write(src.join("linux-headers-6.12.5+deb12-cloud-amd64/Makefile"), "").unwrap();
        for r in [
            "6.12.5+deb12-cloud-amd64",
            "6.12.9+deb12-cloud-amd64",
            "6.1.0-56-cloud-amd64",
        ] {
            fs_err::write(boot.join(format!("vmlinuz-{r}")), "").unwrap();
        }
        let found = installed(&boot, &src);
        fs_err::remove_dir_all(&dir).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].release, "6.12.5+deb12-cloud-amd64");
    }
}
