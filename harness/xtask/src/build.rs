//! Kernel configuration and builds, out of tree under target/kernels.
//!
//! A build directory belongs to one variant (version, role, patched or
//! not) and is reused, so builds are incremental; a stamp holding the
//! digest of every input lets a warm run skip make altogether.

use fs_err::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::kconfig;
use crate::layout;
use crate::patches::hex;
use crate::stage::Progress;
use crate::stamp::Stamp;

/// Which kernel of the nested pair a configuration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// L1: the KVM host with the series' hypercall handler.
    Host,
    /// L2: the guest whose syscall issues the hypercall.
    Guest,
    /// One kernel for both levels, the E2E's: the host's options and the
    /// guest's together. Built once, it costs about a third less than the
    /// pair, the guest's tinyconfig build being some 100 s of a 315 s
    /// pair here; L2 skips KVM's vendor modules (see images.rs).
    Both,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Guest => "guest",
            Role::Both => "kernel",
        }
    }

    /// What make builds. A guest also runs `modules`, which writes the
    /// Module.symvers and linker script that out-of-tree modules (the
    /// guest module) build against.
    fn targets(self) -> &'static [&'static str] {
        match self {
            Role::Host => &["bzImage"],
            Role::Guest | Role::Both => &["bzImage", "modules"],
        }
    }
}

/// Everything that decides one kernel build.
pub struct Plan {
    pub role: Role,
    /// Names its logs and checks: the role's name, "-sanitize" added for
    /// the sanitized build.
    pub name: String,
    /// The source tree to build (a patched worktree or the base).
    pub src: PathBuf,
    /// The out-of-tree build directory.
    pub dir: PathBuf,
    pub fragments: Vec<PathBuf>,
    /// Digest of the inputs; equal digests build equal kernels.
    pub key: String,
}

/// The build directory of `variant` ("6.12-hello") for `role`.
pub fn dir(variant: &str, role: Role) -> PathBuf {
    layout::kernels().join(format!("{variant}-{}", role.name()))
}

/// The Kconfig fragments of `role`, for a tree whose arch/x86/kvm/Kconfig
/// reads `kvm_kconfig`: the E2E and `patches --each` configure alike.
pub fn fragments(role: Role, patched: bool, kvm_kconfig: &str) -> Vec<PathBuf> {
    let configs = layout::configs();
    let mut fragments = match role {
        Role::Host | Role::Guest => vec![configs.join(format!("{}.config", role.name()))],
        Role::Both => vec![configs.join("host.config"), configs.join("guest.config")],
    };
    if patched && role != Role::Guest {
        fragments.push(configs.join("host-hello.config"));
        // Requested only where the option exists: the config check would
        // otherwise report it dropped on 6.1.
        if kconfig::defines(kvm_kconfig, "KVM_SW_PROTECTED_VM") {
            fragments.push(configs.join("host-protected.config"));
        }
    }
    fragments
}

impl Plan {
    /// `variant` names the tree ("6.12-hello", "6.12-base"), `tree_id` is a
    /// digest of its content (base commit and series digest).
    pub fn new(
        sh: &Shell,
        role: Role,
        src: &Path,
        variant: &str,
        tree_id: &str,
        patched: bool,
    ) -> Result<Plan> {
        let kvm_kconfig = fs_err::read_to_string(src.join("arch/x86/kvm/Kconfig")).unwrap_or_default();
        let fragments = fragments(role, patched, &kvm_kconfig);
        let compiler = cmd!(sh, "gcc --version")
            .quiet()
            .read()
            .context("run gcc --version")?;
        let mut h = Sha256::new();
        h.update(tree_id);
        h.update(compiler.lines().next().unwrap_or_default());
        h.update(role.targets().join(" "));
        for f in &fragments {
            h.update(fs_err::read(f).with_context(|| format!("read {}", f.display()))?);
        }
        Ok(Plan {
            role,
            name: role.name().into(),
            src: src.to_path_buf(),
            dir: dir(variant, role),
            fragments,
            key: hex(&h.finalize()),
        })
    }

    /// The same build with the sanitizers (host-sanitize.config): a
    /// directory and key of its own, so the plain build stays cached.
    pub fn sanitized(mut self) -> Result<Plan> {
        let fragment = layout::configs().join("host-sanitize.config");
        let mut h = Sha256::new();
        h.update(&self.key);
        h.update(fs_err::read(&fragment).with_context(|| format!("read {}", fragment.display()))?);
        self.key = hex(&h.finalize());
        self.fragments.push(fragment);
        let name = self
            .dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        self.dir = self.dir.with_file_name(format!("{name}-sanitize"));
        self.name = format!("{}-sanitize", self.role.name());
        Ok(self)
    }

    /// What names this build in logs (config-<name>.log) and checks.
    pub fn check_name(&self, what: &str) -> String {
        format!("{what}_{}", self.name.replace('-', "_"))
    }

    /// A directory beside the build directory, e.g. "6.12-hello-host.kconfig".
    /// (Not `with_extension`: the version's dot would make every variant share it.)
    pub fn sibling(&self, suffix: &str) -> PathBuf {
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        self.dir.with_file_name(format!("{name}.{suffix}"))
    }

    pub fn bzimage(&self) -> PathBuf {
        self.dir.join("arch/x86/boot/bzImage")
    }

    fn stamp(&self) -> Stamp {
        Stamp::in_dir(&self.dir)
    }

    /// True when this exact build is already done.
    pub fn is_fresh(&self) -> bool {
        self.bzimage().exists() && self.stamp().holds(&self.key)
    }
}

/// Makes the .config: tinyconfig, plus the fragments, through olddefconfig,
/// then checks that every requested option survived. The work happens in a
/// scratch directory, and the build directory's .config is replaced only
/// when it differs, so an unchanged config triggers no rebuild.
pub fn configure(sh: &Shell, plan: &Plan, log: &Path, progress: &Progress) -> Result<()> {
    let (config, missing) = olddefconfig(sh, plan, log, progress)?;
    if !missing.is_empty() {
        bail!(
            "{} kernel config: olddefconfig dropped {} requested option(s), probably unmet dependencies:\n  {}\n  \
             fragments: {}\n  fix: add what they depend on to the fragment (see `make menuconfig` help for each)",
            plan.name,
            missing.len(),
            missing.join("\n  "),
            plan.fragments.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    install_config(sh, plan, &config)
}

/// Like [`configure`], but installs the result whatever olddefconfig
/// dropped and returns the dropped options for the caller to judge (a
/// prefix of the series may not define an option yet).
pub fn configure_keeping(sh: &Shell, plan: &Plan, log: &Path, progress: &Progress) -> Result<Vec<String>> {
    let (config, missing) = olddefconfig(sh, plan, log, progress)?;
    install_config(sh, plan, &config)?;
    Ok(missing)
}

/// tinyconfig plus the fragments through olddefconfig, in the scratch
/// directory: the resulting .config and the requested options it lacks.
fn olddefconfig(sh: &Shell, plan: &Plan, log: &Path, progress: &Progress) -> Result<(String, Vec<String>)> {
    let scratch = plan.sibling("kconfig");
    sh.create_dir(&scratch)?;
    progress.say(format!("{}: tinyconfig", plan.name));
    make(&plan.src, &scratch, &["tinyconfig"], log, progress)?;
    let mut config = fs_err::read_to_string(scratch.join(".config"))?;
    let mut wanted = Vec::new();
    for f in &plan.fragments {
        let text = fs_err::read_to_string(f)?;
        wanted.extend(kconfig::parse(&text));
        config.push_str(&text);
    }
    fs_err::write(scratch.join(".config"), config)?;
    progress.say(format!("{}: olddefconfig", plan.name));
    make(&plan.src, &scratch, &["olddefconfig"], log, progress)?;
    let result = fs_err::read_to_string(scratch.join(".config"))?;
    let missing = kconfig::missing(&wanted, &result);
    Ok((result, missing))
}

fn install_config(sh: &Shell, plan: &Plan, config: &str) -> Result<()> {
    let current = fs_err::read_to_string(plan.dir.join(".config")).unwrap_or_default();
    if current != config {
        sh.create_dir(&plan.dir)?;
        fs_err::write(plan.dir.join(".config"), config)?;
    }
    Ok(())
}

/// Builds the kernel and stamps the build directory.
pub fn build(plan: &Plan, log: &Path, progress: &Progress) -> Result<()> {
    plan.stamp().clear();
    let jobs = std::thread::available_parallelism()
        .map_or(2, |n| n.get() + 1)
        .to_string();
    let mut args = vec!["-j", &jobs];
    args.extend(plan.role.targets());
    make(&plan.src, &plan.dir, &args, log, progress)?;
    plan.stamp().write(&plan.key)?;
    Ok(())
}

/// Runs make out of tree, appending its output to `log` and showing the
/// latest line as progress. On failure the error carries the log's tail.
fn make(src: &Path, out: &Path, targets: &[&str], log: &Path, progress: &Progress) -> Result<()> {
    let file = File::options().create(true).append(true).open(log)?;
    let mut child = Command::new("make")
        .arg("-C")
        .arg(src)
        .arg(format!("O={}", out.display()))
        .args(targets)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(file.try_clone()?.into_file()))
        .spawn()
        .context("start make")?;
    let mut log_out = file;
    for line in BufReader::new(child.stdout.take().context("make's stdout")?).lines() {
        let line = line?;
        std::io::Write::write_all(&mut log_out, format!("{line}\n").as_bytes())?;
        progress.say(line.trim().to_string());
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "make {} failed ({status}); last lines of {}:\n{}",
            targets.join(" "),
            log.display(),
            tail(log, 25)
        );
    }
    Ok(())
}

/// The last `n` lines of a log, indented, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs_err::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `__NR_hello_hypercall` from the built kernel's generated unistd_64.h,
/// or `None` when the kernel has no such syscall.
pub fn syscall_nr(build_dir: &Path) -> Result<Option<i64>> {
    let header = build_dir.join("arch/x86/include/generated/uapi/asm/unistd_64.h");
    let text = fs_err::read_to_string(&header).with_context(|| format!("read {}", header.display()))?;
    Ok(nr_from_unistd(&text, "__NR_hello_hypercall"))
}

fn nr_from_unistd(text: &str, name: &str) -> Option<i64> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("#define") && words.next() == Some(name)).then(|| words.next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_has_its_own_siblings() {
        let plan = |dir: &str| Plan {
            role: Role::Host,
            name: "host".into(),
            src: PathBuf::new(),
            dir: PathBuf::from(dir),
            fragments: vec![],
            key: String::new(),
        };
        assert_eq!(
            plan("k/6.12-hello-host").sibling("kconfig"),
            PathBuf::from("k/6.12-hello-host.kconfig")
        );
        assert_ne!(
            plan("k/6.1-hello-host").sibling("x"),
            plan("k/6.12-hello-host").sibling("x")
        );
    }

    #[test]
    fn syscall_number_from_generated_header() {
        let h = "#define __NR_uretprobe 335\n#define __NR_hello_hypercall 336\n";
        assert_eq!(nr_from_unistd(h, "__NR_hello_hypercall"), Some(336));
        assert_eq!(nr_from_unistd(h, "__NR_hello"), None);
    }
}
