//! `cargo xtask e2e`: from Debian's kernel source to the "Hello World"
//! line in the host's trace buffer.
//!
//! Stages: deps, source, patch, config, build, images, boot, verdict. Every
//! stage failure still ends in a report (report.json, report.xml) that
//! names it, and every log stays in the run directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::build::{self, Plan, Role};
use crate::flags::{self, E2eArgs};
use crate::patches::{self, Series};
use crate::qemu::{self, Accel, L1};
use crate::report::Report;
use crate::stage::{Scenario, Stages};
use crate::verdict::{self, Check, Evidence, Verdict};
use crate::{deps, images, kselftest, layout, module, sanitize, selftests, source, stock};

/// Guest memory: L1 holds two L2s side by side (2 x 256 MiB, touched
/// only as far as they boot) plus its own kernel, QEMU and the tests.
pub const L1_MEMORY_MIB: u32 = 1024;

pub fn run(args: &E2eArgs) -> Result<ExitCode> {
    let report = execute(args)?;
    report.print();
    Ok(ExitCode::from(exit_status(&report)))
}

/// The exit status of a run (README, `--help`).
fn exit_status(report: &Report) -> u8 {
    // Interrupted, or stopped at a stage (a package missing, a patch that
    // does not apply, a kernel that did not build, a full disk): nothing
    // was judged to its end, so a harness error, not a FAIL.
    let stopped_at_stage = report
        .checks
        .iter()
        .any(|c| c.verdict == Verdict::Fail && c.name.starts_with("stage_"));
    if report.interrupted.is_some() || stopped_at_stage {
        return crate::EXIT_HARNESS_ERROR;
    }
    match report.verdict {
        Verdict::Pass => 0,
        Verdict::Fail => 1,
        // kselftest's KSFT_SKIP: distinct from failure and from clap's 2
        // for a usage error, so CI can tell "could not run" apart.
        Verdict::Skip => crate::EXIT_SKIP,
    }
}

/// Runs every stage and returns the written report.
pub fn execute(args: &E2eArgs) -> Result<Report> {
    // Refused before anything starts: nothing to clean up, nothing lost.
    if let Some(why) = layout::unusable_root(&layout::root()) {
        bail!("{why}");
    }
    let _lock = layout::lock()?;
    let sh = Shell::new()?;
    let run_dir = new_run_dir(&sh, args)?;
    println!("run directory: {}", run_dir.display());
    let mut stages = Stages::default();
    let mut accel = None;
    let mut host_kernel = None;
    let mut ran = None;
    let result = match args.cpu {
        flags::Cpu::Default => pipeline(&sh, args, &run_dir, &mut stages, &mut accel, &mut host_kernel),
        flags::Cpu::Intel => {
            crate::intel::pipeline(&sh, args, &run_dir, &mut stages, &mut host_kernel, &mut ran)
        }
    };
    let mut checks = match result {
        Ok(checks) => checks,
        Err(err) => {
            let stage = stages.timings.last().map_or("setup", |t| t.name.as_str());
            vec![Check::new(
                &format!("stage_{stage}"),
                Verdict::Fail,
                format!("{err:#}"),
            )]
        }
    };
    verdict::evidence::require(&mut checks, |f| run_dir.join(f).is_file());
    let interrupted = crate::interrupt::caught();
    if let Some(signal) = interrupted {
        let stage = stages.timings.last().map_or("setup", |t| t.name.as_str());
        checks.push(Check::new(
            "interrupted",
            Verdict::Fail,
            format!(
                "INTERRUPTED by {signal} during the {stage} stage; no emulator left running, logs kept in {}",
                run_dir.display()
            ),
        ));
    }
    let report = Report {
        verdict: verdict::overall(&checks),
        kernel: args
            .kernel
            .tree
            .as_ref()
            .map_or(args.kernel.kernel.name().to_string(), |t| t.display().to_string()),
        patched: !args.kernel.unpatched,
        accel: accel.map(|a: Accel| a.name().to_string()),
        run_dir: run_dir.display().to_string(),
        host_kernel: host_kernel.map(|k: PathBuf| k.display().to_string()),
        interrupted: interrupted.map(String::from),
        cpu: ran.as_ref().map(|r: &crate::intel::Ran| r.cpu.clone()),
        exit_reasons: ran.map(|r| r.exit_reasons).unwrap_or_default(),
        checks,
        stages: stages.timings,
    };
    report.write(&[&layout::xtask(), &run_dir])?;
    Ok(report)
}

/// target/xtask/runs/<UTC time>-<kernel>-<variant>, plus a `latest` link.
fn new_run_dir(sh: &Shell, args: &E2eArgs) -> Result<PathBuf> {
    let stamp = cmd!(sh, "date -u +%Y%m%d-%H%M%S").quiet().read()?;
    let variant = if args.kernel.unpatched {
        "unpatched"
    } else {
        "patched"
    };
    let cpu = match args.cpu {
        flags::Cpu::Default => "",
        flags::Cpu::Intel => "-intel",
    };
    let sanitize = if args.sanitize { "-sanitize" } else { "" };
    let base = format!("{stamp}-{}-{variant}{cpu}{sanitize}", args.kernel.kernel.name());
    fs_err::create_dir_all(layout::runs()).context("create target/xtask/runs")?;
    // Two runs started in the same second must not share a directory: the
    // first to create a name owns it, the next one numbers its own.
    let mut n = 1;
    let (name, dir) = loop {
        let name = run_dir_name(&base, n);
        let dir = layout::runs().join(&name);
        match fs_err::create_dir(&dir) {
            Ok(()) => break (name, dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(e).with_context(|| format!("create the run directory {}", dir.display())),
        }
    };
    let latest = layout::runs().join("latest");
    let _ = fs_err::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(&name, &latest);
    Ok(dir)
}

/// The `n`th candidate name of a run directory: the base, then "-2", "-3"...
fn run_dir_name(base: &str, n: u32) -> String {
    if n == 1 {
        base.to_string()
    } else {
        format!("{base}-{n}")
    }
}

fn pipeline(
    sh: &Shell,
    args: &E2eArgs,
    run_dir: &Path,
    stages: &mut Stages,
    accel: &mut Option<Accel>,
    host_kernel: &mut Option<PathBuf>,
) -> Result<Vec<Check>> {
    // Needs nothing from the kernel: starts now, is waited for by the
    // images stage, and is joined whatever happens in between.
    let programs = images::GuestPrograms::start(run_dir.join("build-guest-programs.log"));
    let Tree {
        tree,
        variant,
        tree_id,
        series,
    } = prepare_tree(sh, &args.kernel, stages)?;
    let patched = !args.kernel.unpatched;
    let host = host_plan(sh, args, &tree, &variant, &tree_id)?;
    let guest = Plan::new(sh, Role::Both, &tree, &variant, &tree_id, patched)?;
    // L1 and L2 boot one kernel, unless L1's is the sanitized build.
    let builds: Vec<&Plan> = if host.dir == guest.dir {
        vec![&host]
    } else {
        vec![&host, &guest]
    };

    let mut checks = Vec::new();
    stages.run("config", |p| {
        if builds.iter().all(|plan| plan.is_fresh()) {
            p.cached();
            return Ok(());
        }
        // Each configuration is a make that runs mostly on one core (it
        // first compiles kconfig's own tools): two run side by side.
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let jobs: Vec<_> = builds
                .iter()
                .map(|plan| {
                    s.spawn(move || -> Result<()> {
                        let log = run_dir.join(format!("config-{}.log", plan.name));
                        build::configure(&Shell::new()?, plan, &log, p)
                    })
                })
                .collect();
            jobs.into_iter()
                .map(|job| job.join().expect("a config thread panicked"))
                .collect()
        });
        for (plan, result) in builds.iter().zip(results) {
            if let Err(err) = result {
                if !args.keep_going {
                    return Err(err);
                }
                checks.push(Check::new(
                    &plan.check_name("config"),
                    Verdict::Fail,
                    format!("{err:#}"),
                ));
            }
        }
        Ok(())
    })?;
    stages.run("build", |p| {
        if builds.iter().all(|plan| plan.is_fresh()) {
            p.cached();
        }
        for plan in &builds {
            if !plan.is_fresh() {
                build::build(plan, &run_dir.join(format!("build-{}.log", plan.name)), p)
                    .with_context(|| format!("build the kernel in {}", plan.dir.display()))?;
            }
        }
        Ok(())
    })?;

    *host_kernel = Some(host.bzimage());
    // An unpatched tree has no such tests: the negative control runs none.
    let l1_tests: Vec<Vec<String>> = if patched {
        let built = stages.run("selftests", |p| {
            selftests::build(sh, &host, &run_dir.join("build-selftests.log"), p)
        })?;
        built.iter().map(|t| vec![t.display().to_string()]).collect()
    } else {
        Vec::new()
    };
    let mut l1_extra_tests = Vec::new();
    for extra in &args.l1_test {
        // --l1-test takes a program and its arguments as one word.
        let mut words = extra.split_whitespace().map(String::from);
        let program = PathBuf::from(words.next().context("--l1-test needs a program")?);
        let path = program
            .canonicalize()
            .with_context(|| format!("--l1-test {}: no such file", program.display()))?;
        l1_extra_tests.push(std::iter::once(path.display().to_string()).chain(words).collect());
    }
    let module = stages.run("module", |p| {
        let log = run_dir.join("build-guest-module.log");
        module::build(
            sh,
            &guest.dir,
            &guest.key,
            &guest.sibling("guest-module"),
            &log,
            p,
        )
    })?;
    // The series' syscall kselftest runs in the main guest; the base of an
    // --unpatched run has none.
    let kselftest = if patched {
        stages.run("kselftest", |p| {
            kselftest::build(sh, &guest, &run_dir.join("build-kselftest.log"), p)
        })?
    } else {
        kselftest::Built {
            binary: None,
            status: verdict::Kselftest::NotBuilt(format!(
                "--unpatched builds the base, which has no {}",
                kselftest::SOURCE
            )),
        }
    };
    let stock = stages.run("stock", |p| match args.skip_stock {
        true => {
            p.cached();
            Ok(Scenario::Skipped("--skip-stock".into()))
        }
        false => stock_guest(sh, run_dir, p),
    })?;
    // The images stage adds hcall to the tests L1 runs, and returns them
    // all in the order they run.
    let l1_tests = stages.run("images", |p| {
        let inputs = images::Images {
            guest: &guest,
            series: series.as_ref(),
            l1_tests: &l1_tests,
            l1_extra_tests: &l1_extra_tests,
            module: &module.ko,
            kselftest: kselftest.binary.as_deref(),
            stock: stock.runs().map(|(s, m)| (s, m.ko.as_path())),
            l1_test_timeout: args.l1_test_timeout,
            fault: args.fault.as_deref(),
            l2_timeout: args.l2_timeout,
        };
        images::images(&inputs, programs, run_dir, p)
    })?;
    let qemu = qemu::which("qemu-system-x86_64").context("qemu-system-x86_64 is not on PATH")?;
    let agent = images::guest_bin().join("agent");
    let outcome = stages.run("boot", |p| {
        let chosen = resolve_accel(args.accel, &qemu, &host.bzimage(), run_dir)?;
        *accel = Some(chosen);
        p.say(format!("L1 on {}, L2 on L1's KVM", chosen.name()));
        let l1 = L1 {
            accel: chosen,
            kernel: host.bzimage(),
            agent: agent.clone(),
            run_dir: run_dir.to_path_buf(),
            memory_mib: L1_MEMORY_MIB,
            // SeaBIOS, not qboot: qboot writes no MP table, and without ACPI
            // or one, L1's virtio-pci devices get no interrupt and 9p hangs.
            bios: None,
            params: {
                let mut params = l1_params(chosen);
                if args.sanitize {
                    // Every KASAN report, not only the first: a run may
                    // hold more than one bug.
                    params.push("kasan_multi_shot".into());
                }
                params
            },
        };
        let argv = qemu::l1_args(&l1);
        fs_err::write(
            run_dir.join("l1-command.txt"),
            format!("{} {}\n", qemu.display(), argv.join(" ")),
        )?;
        qemu::run(
            &qemu,
            &argv,
            &run_dir.join("l1-qemu-stderr.log"),
            Duration::from_secs(args.timeout),
        )
    })?;

    let evidence = stages.run("verdict", |_| {
        let read = |name: &str| fs_err::read_to_string(run_dir.join(name)).unwrap_or_default();
        save_l2_tests(&read("l1-report.log"), run_dir)?;
        Ok(Evidence {
            l1_code: outcome.code,
            l1_timed_out: outcome.timed_out,
            l1_console: read("l1-console.log"),
            l1_qemu_stderr: read("l1-qemu-stderr.log"),
            report: read("l1-report.log"),
            l2_console: read("l2-main-console.log"),
            trace: fs_err::read_to_string(run_dir.join("trace.txt")).ok(),
            hc_nr: hypercall_nr(&tree),
            module_warnings: module.warnings.clone(),
            stock: match &stock {
                Scenario::Runs((s, m)) => verdict::Stock::Ran {
                    release: s.release.clone(),
                    console: read("l2-stock-console.log"),
                    module_warnings: m.warnings.clone(),
                },
                Scenario::Skipped(why) => verdict::Stock::Skipped(why.clone()),
            },
            l1_tests: l1_tests
                .into_iter()
                .map(|test| {
                    let log = read(&format!("l1test-{}.log", test.name));
                    (test.name, log)
                })
                .collect(),
            kselftest: kselftest.status.clone(),
        })
    })?;
    checks.extend(verdict::judge(&evidence));
    if args.sanitize {
        checks.push(sanitize::check(&evidence.l1_console));
    }
    Ok(checks)
}

/// L1's build: the sanitized variant with --sanitize.
pub fn host_plan(sh: &Shell, args: &E2eArgs, tree: &Path, variant: &str, tree_id: &str) -> Result<Plan> {
    let plan = Plan::new(sh, Role::Both, tree, variant, tree_id, !args.kernel.unpatched)?;
    if args.sanitize {
        plan.sanitized()
    } else {
        Ok(plan)
    }
}

/// The tree a run builds, and what names its builds.
pub struct Tree {
    pub tree: PathBuf,
    /// "6.12-hello" or "6.12-base": names the build directories.
    pub variant: String,
    /// The base commit, and the series' digest when patched.
    pub tree_id: String,
    pub series: Option<Series>,
}

/// The deps, source and patch stages: the tree to build, patched unless
/// --unpatched.
pub fn prepare_tree(sh: &Shell, kernel: &flags::KernelArgs, stages: &mut Stages) -> Result<Tree> {
    stages.run("deps", |p| deps::ensure_for(sh, kernel, p))?;
    let source = stages.run("source", |p| source::prepare(sh, kernel, p))?;
    // The negative control does not need the series, only its syscall
    // number when the series is there.
    let series = match Series::load(&kernel.series_dir()) {
        Ok(series) => Some(series),
        Err(_) if kernel.unpatched => None,
        Err(err) => return Err(err),
    };

    let (tree, variant, tree_id) = if kernel.unpatched {
        println!("==> patch\n    skipped: --unpatched builds the base as is");
        let variant = format!("{}-base", source.name);
        // The user's own checkout may hold an in-tree build, which breaks
        // out-of-tree builds, and must not be touched: use a worktree.
        let tree = match kernel.tree {
            Some(_) => {
                let worktree = layout::sources().join(&variant);
                stages.run("checkout", |p| {
                    patches::checkout(sh, &source, &worktree, &source.base, p)
                })?;
                worktree
            }
            None => source.repo.clone(),
        };
        (tree, variant, source.base.clone())
    } else {
        let series = series.as_ref().context("no series")?;
        let tree = stages.run("patch", |p| patches::apply(sh, &source, series, p))?;
        (
            tree,
            patches::variant(&source, series)?,
            format!("{} {}", source.base, series.digest()?),
        )
    };
    Ok(Tree {
        tree,
        variant,
        tree_id,
        series,
    })
}

/// Writes what each test program in L2 printed (relayed in the report) to
/// l2test-<name>.log, where the checks point.
fn save_l2_tests(report: &str, run_dir: &Path) -> Result<()> {
    for event in report.lines().filter_map(proto::Event::from_line) {
        if let proto::Event::L2Test { name, output, .. } = event {
            fs_err::write(run_dir.join(format!("l2test-{name}.log")), output)
                .context("save an L2 test's output")?;
        }
    }
    Ok(())
}

/// Debian's stock cloud kernel and the module built against its headers,
/// or why that guest cannot run here.
fn stock_guest(
    sh: &Shell,
    run_dir: &Path,
    p: &crate::stage::Progress,
) -> Result<Scenario<(stock::Stock, module::Module)>> {
    let stock = match stock::ensure(sh, p)? {
        Scenario::Runs(stock) => stock,
        Scenario::Skipped(why) => {
            println!("    SKIP the stock-kernel guest: {why}");
            return Ok(Scenario::Skipped(why));
        }
    };
    let dir = layout::kernels().join(format!("stock-{}.guest-module", stock.release));
    let log = run_dir.join("build-stock-guest-module.log");
    let module = module::build(sh, &stock.headers, &stock.release, &dir, &log, p)?;
    Ok(Scenario::Runs((stock, module)))
}

/// L1's extra kernel parameters.
pub fn l1_params(accel: Accel) -> Vec<String> {
    // In-kernel handling is off by default: the run opts in.
    let mut params = vec!["kvm.hello_hypercall=1".to_string()];
    if matches!(accel, Accel::Tcg | Accel::TcgSingle) {
        // Under TCG, without ACPI's HPET, some kernels (6.1) fail to
        // calibrate the TSC against the PIT and mark it unstable; TCG's TSC
        // runs at the host's rate, so hand that over.
        if let Some(khz) = images::host_tsc_khz() {
            params.push(format!("tsc_early_khz={khz}"));
            params.push("tsc=reliable".into());
        }
    }
    params
}

/// KVM_HC_HELLO_HYPERCALL as the host tree defines it.
fn hypercall_nr(tree: &Path) -> Option<u64> {
    let text = fs_err::read_to_string(tree.join("include/uapi/linux/kvm_para.h")).ok()?;
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("#define") && w.next() == Some("KVM_HC_HELLO_HYPERCALL"))
            .then(|| w.next()?.parse().ok())?
    })
}

/// Picks L1's accelerator and says which, loudly: a silent fall back to
/// TCG is a classic complaint about such tools.
fn resolve_accel(want: flags::Accel, qemu: &Path, kernel: &Path, run_dir: &Path) -> Result<Accel> {
    match want {
        flags::Accel::TcgSingle => {
            println!("    L1 accelerator: TCG on one host thread (--accel tcg-single)");
            Ok(Accel::TcgSingle)
        }
        flags::Accel::Tcg => {
            println!("    L1 accelerator: TCG (--accel tcg), -cpu max emulates SVM for L2, one vCPU");
            Ok(Accel::Tcg)
        }
        flags::Accel::Kvm => match qemu::probe_kvm(qemu, kernel, run_dir) {
            Ok(()) => Ok(Accel::Kvm),
            Err(why) => bail!("--accel kvm: KVM cannot run L1 here: {why}; use --accel tcg"),
        },
        flags::Accel::Auto => match qemu::probe_kvm(qemu, kernel, run_dir) {
            Ok(()) => {
                println!("    L1 accelerator: KVM (a probe boot worked, nesting allowed)");
                Ok(Accel::Kvm)
            }
            Err(why) => {
                println!("    L1 accelerator: TCG, because KVM is unusable here: {why}");
                Ok(Accel::Tcg)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(verdict: Verdict, checks: Vec<Check>) -> Report {
        Report::of_checks(verdict, checks)
    }

    #[test]
    fn a_run_stopped_at_a_stage_is_a_harness_error_not_a_fail() {
        let wrong = Check::new("syscall_greeting", Verdict::Fail, "got -1, ENOSYS");
        assert_eq!(exit_status(&report(Verdict::Fail, vec![wrong])), 1);
        let disk = Check::new(
            "stage_build",
            Verdict::Fail,
            "build the kernel in target/kernels/6.12-hello-kernel: … No space left on device",
        );
        assert_eq!(exit_status(&report(Verdict::Fail, vec![disk])), 3);
        let mut interrupted = report(Verdict::Fail, vec![]);
        interrupted.interrupted = Some("SIGINT".into());
        assert_eq!(exit_status(&interrupted), 3);
        assert_eq!(exit_status(&report(Verdict::Pass, vec![])), 0);
        assert_eq!(exit_status(&report(Verdict::Skip, vec![])), 4);
    }

    #[test]
    fn a_second_run_in_the_same_second_numbers_its_directory() {
        assert_eq!(
            super::run_dir_name("20261202-011003-7.3-patched", 1),
            "20261202-011003-7.3-patched"
        );
        assert_eq!(
            super::run_dir_name("20261202-011003-7.3-patched", 2),
            "20261202-011003-7.3-patched-2"
        );
    }
}
