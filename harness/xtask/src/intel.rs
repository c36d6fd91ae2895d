//! `cargo xtask e2e --cpu intel`: the patched host on an emulated Intel CPU.
//!
//! QEMU's TCG has no VMX, so L1 runs under Bochs (see bochs.rs) with an
//! Intel model that has it; there kvm_intel drives the guests and a
//! hypercall exits with EXIT_REASON_VMCALL. Bochs has no 9p and no direct
//! kernel boot: L1 boots from a GRUB ISO with an initramfs that holds the
//! agent, hcall and the series' KVM selftests, and the agent sends the
//! files it writes over its report port. No L2 Linux guest runs here: it
//! would need QEMU and its libraries in the initramfs, and a boot under
//! KVM under Bochs (see the README's results).
//!
//! Stages: deps, source, patch, config, build (the host kernel only),
//! selftests, images, iso, boot, verdict.

mod image;
mod judge;
mod quirks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::bochs;
use crate::build;
use crate::e2e::{self, Tree};
use crate::flags::E2eArgs;
use crate::stage::Stages;
use crate::verdict::Check;
use crate::{deps, selftests};

/// L1's memory: its kernel, the initramfs (unpacked into it) and the
/// tests' VMs.
const MEMORY_MIB: u32 = 768;
/// hcall's fuzz calls: a short run, since Bochs is slow.
const FUZZ_ITERATIONS: u32 = 200;

/// Files that only Bochs' and GRUB's packages provide.
fn needs() -> Vec<(PathBuf, String)> {
    [
        ("/usr/bin/bochs", "bochs"),
        ("/usr/share/bochs/BIOS-bochs-latest", "bochsbios"),
        ("/usr/share/vgabios/vgabios.bin", "vgabios"),
        // The text display: the only one without X or a VNC client.
        (
            "/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_term_gui.so",
            "bochs-term",
        ),
        ("/usr/bin/grub-mkrescue", "grub-common"),
        // GRUB's BIOS modules, which boot the ISO.
        ("/usr/lib/grub/i386-pc", "grub-pc-bin"),
        ("/usr/bin/xorriso", "xorriso"),
        // grub-mkrescue builds its EFI image with mformat.
        ("/usr/bin/mformat", "mtools"),
    ]
    .iter()
    .map(|(f, p)| (PathBuf::from(f), p.to_string()))
    .collect()
}

/// What the report says the run ran on, beside the checks.
pub struct Ran {
    pub cpu: String,
    pub exit_reasons: std::collections::BTreeMap<String, usize>,
}

pub fn pipeline(
    sh: &Shell,
    args: &E2eArgs,
    run_dir: &Path,
    stages: &mut Stages,
    host_kernel: &mut Option<PathBuf>,
    ran: &mut Option<Ran>,
) -> Result<Vec<Check>> {
    let Tree {
        tree,
        variant,
        tree_id,
        ..
    } = e2e::prepare_tree(sh, &args.kernel, stages)?;
    stages.run("deps-intel", |p| deps::ensure(sh, &needs(), p))?;
    let patched = !args.kernel.unpatched;
    // The same host kernel as the QEMU run's: one build serves both.
    let host = e2e::host_plan(sh, args, &tree, &variant, &tree_id)?;
    stages.run("config", |p| {
        if host.is_fresh() {
            p.cached();
            return Ok(());
        }
        build::configure(sh, &host, &run_dir.join(format!("config-{}.log", host.name)), p)
    })?;
    stages.run("build", |p| {
        if host.is_fresh() {
            p.cached();
            return Ok(());
        }
        build::build(&host, &run_dir.join(format!("build-{}.log", host.name)), p)
            .context("build the host kernel")
    })?;
    *host_kernel = Some(host.bzimage());
    let selftests = if patched {
        stages.run("selftests", |p| {
            selftests::build(sh, &host, &run_dir.join("build-selftests.log"), p)
        })?
    } else {
        Vec::new()
    };
    let tests = stages.run("images", |p| {
        let bin = crate::images::guest_programs(sh, p)?;
        image::initramfs(
            sh,
            &bin,
            &selftests,
            FUZZ_ITERATIONS,
            args.l1_test_timeout,
            run_dir,
        )
    })?;
    let iso = stages.run("iso", |p| {
        p.say("grub-mkrescue");
        image::iso(sh, &host.bzimage(), &run_dir.join(image::INITRD), run_dir)
    })?;
    let machine = bochs::Machine {
        memory_mib: MEMORY_MIB,
        iso,
        console: run_dir.join("l1-console.log"),
        report: run_dir.join("l1-report.log"),
        log: run_dir.join("bochs.log"),
    };
    let outcome = stages.run("boot", |p| {
        p.say(format!("L1 under Bochs, {} (VMX)", bochs::MODEL));
        let rc = run_dir.join("bochsrc");
        fs_err::write(&rc, bochs::bochsrc(&machine)).context("write the bochsrc")?;
        let commands = run_dir.join("bochs-debugger.rc");
        fs_err::write(&commands, bochs::DEBUGGER_COMMANDS).context("write the debugger commands")?;
        let outcome = bochs::run(
            &rc,
            &commands,
            &machine,
            &run_dir.join("bochs-output.log"),
            Duration::from_secs(args.timeout),
        )?;
        p.say(format!(
            "{} after {:.0}s",
            outcome.end.describe(),
            outcome.seconds
        ));
        Ok(outcome)
    })?;
    stages.run("verdict", |_| {
        let read = |name: &str| fs_err::read_to_string(run_dir.join(name)).unwrap_or_default();
        let report = read("l1-report.log");
        judge::save_files(&report, run_dir)?;
        let evidence = judge::Evidence {
            outcome,
            console: read("l1-console.log"),
            report,
            trace: fs_err::read_to_string(run_dir.join("trace.txt")).ok(),
            tests: tests
                .iter()
                .map(|name| (name.clone(), read(&format!("l1test-{name}.log"))))
                .collect(),
        };
        *ran = Some(Ran {
            cpu: format!("{} (Bochs, emulated VMX)", bochs::MODEL),
            exit_reasons: evidence
                .trace
                .as_deref()
                .map(crate::trace::exit_reasons)
                .unwrap_or_default(),
        });
        let mut checks = judge::judge(&evidence);
        if args.sanitize {
            checks.push(crate::sanitize::check(&evidence.console));
        }
        Ok(checks)
    })
}
