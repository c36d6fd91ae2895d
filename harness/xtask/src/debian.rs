//! Debian's linux-source packages: which archive ships each version, and how
//! a version that this system's archive lacks is fetched.
//!
//! Debian 12's own archive has 6.1 and 6.12, so `apt-get install` puts their
//! tarballs in /usr/src. 7.3 is only in trixie-backports. Adding that suite
//! to the system's sources would offer all of it to the machine's upgrades,
//! so it is fetched with a private apt configuration instead: its own
//! sources.list, package lists, cache and an empty dpkg status, all under
//! target/apt/<suite>. The package is downloaded and unpacked under
//! target/debian, never installed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::flags::KernelVersion;
use crate::layout;
use crate::stage::Progress;

/// The archive that every suite of [`Origin::Suite`] comes from.
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// Debian's archive keys, from the debian-archive-keyring package; Debian
/// 12's copy also holds the keys that sign trixie's suites.
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The only architecture the harness builds for. Fixed rather than asked
/// of dpkg, which would also name the system's foreign architectures.
const ARCH: &str = "amd64";

/// Where Debian ships the linux-source package of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A suite the system's apt sources already name: `apt-get install`
    /// puts the tarball in /usr/src.
    System,
    /// A suite the system does not use, fetched through a private apt
    /// configuration.
    Suite(&'static str),
}

impl KernelVersion {
    pub fn origin(self) -> Origin {
        match self {
            KernelVersion::V6_12 | KernelVersion::V6_1 => Origin::System,
            KernelVersion::V7_3 => Origin::Suite("trixie-backports"),
        }
    }
}

/// "linux-source-7.3".
pub fn package(version: KernelVersion) -> String {
    format!("linux-source-{}", version.name())
}

/// Where the source tarball of `version` is once its package is there.
pub fn tarball(version: KernelVersion) -> PathBuf {
    let name = format!("usr/src/{}.tar.xz", package(version));
    match version.origin() {
        Origin::System => Path::new("/").join(name),
        Origin::Suite(_) => unpacked(version).join(name),
    }
}

/// The directory a fetched package is unpacked into, as `dpkg -x` lays it out.
fn unpacked(version: KernelVersion) -> PathBuf {
    layout::debian().join(package(version))
}

/// Fetches the package of `version` from its suite and unpacks it, unless a
/// previous run did; returns the tarball. Only for [`Origin::Suite`].
pub fn fetch(sh: &Shell, version: KernelVersion, progress: &Progress) -> Result<PathBuf> {
    let Origin::Suite(suite) = version.origin() else {
        bail!(
            "{} comes from the system's archive, not from a suite",
            package(version)
        );
    };
    let tarball = tarball(version);
    if tarball.exists() {
        return Ok(tarball);
    }
    let package = package(version);
    let apt = PrivateApt {
        root: layout::apt().join(suite),
        suite,
    };
    apt.write()?;
    let conf = apt.conf_file();

    progress.say(format!("apt-get update ({suite}, private configuration)"));
    let update = cmd!(sh, "apt-get -c {conf} -q update")
        .quiet()
        .ignore_status()
        .output()
        .context("run apt-get")?;
    if !update.status.success() {
        bail!(
            "apt-get update of {suite} failed with the private configuration {}:\n{}\n  \
             fix: check that {MIRROR} is reachable (set a proxy in /etc/apt/apt.conf.d if this \
             machine needs one) and that {KEYRING} holds trixie's keys (apt-get install debian-archive-keyring)",
            conf.display(),
            indent(&String::from_utf8_lossy(&update.stderr))
        );
    }

    // Download into an empty directory, so the one .deb in it is this one.
    let download = apt.root.join("download");
    if download.exists() {
        fs_err::remove_dir_all(&download).context("remove an old download")?;
    }
    sh.create_dir(&download)?;
    progress.say(format!("apt-get download {package}"));
    let fetched = {
        let _dir = sh.push_dir(&download);
        cmd!(sh, "apt-get -c {conf} -q download {package}")
            .quiet()
            .ignore_status()
            .output()
            .context("run apt-get")?
    };
    if !fetched.status.success() {
        bail!(
            "apt-get download {package} from {suite} failed:\n{}\n  \
             fix: check that {suite} still ships {package} (apt-cache -c {} policy {package})",
            indent(&String::from_utf8_lossy(&fetched.stderr)),
            conf.display()
        );
    }
    let deb = single_deb(&download)?;
    let deb_version = cmd!(sh, "dpkg-deb --field {deb} Version")
        .quiet()
        .read()
        .context("read the version of the downloaded package")?;

    // Unpack next to the final place and rename, so an interrupted unpack
    // never looks like a finished one.
    progress.say(format!("dpkg -x {package} {deb_version}"));
    let dest = unpacked(version);
    let scratch = dest.with_file_name(format!(".unpack-{package}"));
    for dir in [&scratch, &dest] {
        if dir.exists() {
            fs_err::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
        }
    }
    sh.create_dir(&scratch)?;
    cmd!(sh, "dpkg -x {deb} {scratch}")
        .quiet()
        .run()
        .context("unpack the downloaded package")?;
    if !scratch.join(tarball.strip_prefix(&dest)?).exists() {
        bail!(
            "{} holds no {}: Debian changed the package's layout; fix debian::tarball",
            deb.display(),
            tarball.strip_prefix(&dest)?.display()
        );
    }
    // Which package version the tarball came from, for people reading target/.
    fs_err::write(scratch.join("debian-version"), format!("{deb_version}\n"))?;
    fs_err::rename(&scratch, &dest).context("move the unpacked package into place")?;
    // The tarball is all a later run needs; the .deb would only double the disk used.
    fs_err::remove_dir_all(&download).context("remove the downloaded package")?;
    println!("    {package} {deb_version} from {suite}");
    Ok(tarball)
}

/// The one .deb that `apt-get download` left in `dir`.
fn single_deb(dir: &Path) -> Result<PathBuf> {
    let debs: Vec<PathBuf> = fs_err::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    match debs.as_slice() {
        [deb] => Ok(deb.clone()),
        _ => bail!(
            "apt-get download left {} .deb files in {}, expected one",
            debs.len(),
            dir.display()
        ),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An apt configuration of one suite, apart from the system's.
struct PrivateApt {
    /// target/apt/<suite>: everything apt reads or writes for this suite.
    root: PathBuf,
    suite: &'static str,
}

impl PrivateApt {
    fn conf_file(&self) -> PathBuf {
        self.root.join("apt.conf")
    }

    /// Makes the directories and files the configuration names.
    fn write(&self) -> Result<()> {
        let root = &self.root;
        for dir in [
            "sources.list.d",
            "preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            fs_err::create_dir_all(root.join(dir))
                .with_context(|| format!("create {}", root.join(dir).display()))?;
        }
        let write = |name: &str, text: &str| {
            fs_err::write(root.join(name), text)
                .with_context(|| format!("write {}", root.join(name).display()))
        };
        write("sources.list", &sources_list(self.suite))?;
        // No package counts as installed: the download must not depend on
        // what this machine has.
        write("state/status", "")?;
        write("apt.conf", &apt_conf(root)?)
    }
}

/// The sources.list of a private configuration: one suite, main only, and
/// the key that must sign it.
fn sources_list(suite: &str) -> String {
    format!("deb [signed-by={KEYRING}] {MIRROR} {suite} main\n")
}

/// The configuration file, given to apt with `-c`. Apt reads it after the
/// system's apt.conf.d, so it wins over anything there, while the system's
/// network settings (a proxy, say) still apply. It redirects everything apt
/// would read or write for sources, preferences, lists, cache and dpkg
/// status into `root`.
fn apt_conf(root: &Path) -> Result<String> {
    let root = root
        .to_str()
        .filter(|r| r.starts_with('/') && !r.contains(['"', '\n']))
        .with_context(|| {
            format!(
                "{}: apt cannot take this path in its configuration; move the checkout to a path \
                 that is absolute and has no quote or newline",
                root.display()
            )
        })?;
    let dirs = [
        ("Dir::Etc::SourceList", "sources.list"),
        ("Dir::Etc::SourceParts", "sources.list.d"),
        ("Dir::Etc::Preferences", "preferences"),
        ("Dir::Etc::PreferencesParts", "preferences.d"),
        ("Dir::State", "state"),
        ("Dir::State::Lists", "state/lists"),
        ("Dir::State::status", "state/status"),
        ("Dir::Cache", "cache"),
    ];
    let mut text =
        String::from("// Written by cargo xtask: a private apt configuration, apart from the system's.\n");
    for (key, path) in dirs {
        text.push_str(&format!("{key} \"{root}/{path}\";\n"));
    }
    text.push_str(&format!("APT::Architecture \"{ARCH}\";\n"));
    text.push_str(&format!("APT::Architectures {{ \"{ARCH}\"; }};\n"));
    // Root's downloads would otherwise run as _apt, which cannot write to
    // target/; apt warns and downloads as root anyway.
    text.push_str("APT::Sandbox::User \"root\";\n");
    text.push_str("Acquire::Languages \"none\";\n");
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_7_3_comes_from_a_suite() {
        assert_eq!(KernelVersion::V6_12.origin(), Origin::System);
        assert_eq!(KernelVersion::V6_1.origin(), Origin::System);
        assert_eq!(KernelVersion::V7_3.origin(), Origin::Suite("trixie-backports"));
    }

    #[test]
    fn tarballs_of_the_system_are_in_usr_src_the_others_under_target() {
        assert_eq!(
            tarball(KernelVersion::V6_12),
            PathBuf::from("/usr/src/linux-source-6.12.tar.xz")
        );
        assert_eq!(
            tarball(KernelVersion::V7_3),
            layout::target().join("debian/linux-source-7.3/usr/src/linux-source-7.3.tar.xz")
        );
    }

    #[test]
    fn sources_list_names_suite_and_key() {
        assert_eq!(
            sources_list("trixie-backports"),
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
             http://deb.debian.org/debian trixie-backports main\n"
        );
    }

    #[test]
    fn apt_conf_keeps_everything_under_its_root() {
        let text = apt_conf(Path::new("/t/apt/trixie-backports")).unwrap();
        for line in [
            "Dir::Etc::SourceList \"/t/apt/trixie-backports/sources.list\";",
            "Dir::Etc::SourceParts \"/t/apt/trixie-backports/sources.list.d\";",
            "Dir::Etc::Preferences \"/t/apt/trixie-backports/preferences\";",
            "Dir::Etc::PreferencesParts \"/t/apt/trixie-backports/preferences.d\";",
            "Dir::State::Lists \"/t/apt/trixie-backports/state/lists\";",
            "Dir::State::status \"/t/apt/trixie-backports/state/status\";",
            "Dir::Cache \"/t/apt/trixie-backports/cache\";",
            "APT::Architectures { \"amd64\"; };",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Every path it names is under the root.
        for line in text.lines().filter(|l| l.starts_with("Dir::")) {
            assert!(line.contains("\"/t/apt/trixie-backports/"), "{line}");
        }
    }

    #[test]
    fn apt_conf_refuses_paths_it_cannot_quote() {
        for bad in ["/t/a\"b", "/t/a\nb", "relative/apt"] {
            let err = apt_conf(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("move the checkout"), "{err}");
        }
    }
}
