//! `cargo xtask faults`: the faults a run must survive, each caused for
//! real against warm 6.12 kernels, and what the run must say.
//!
//! | fault | what must happen |
//! |---|---|
//! | SIGINT or SIGTERM during the boot | exit 3, report INTERRUPTED, no QEMU left, the logs kept |
//! | L2's QEMU killed inside L1 | `l2_run` fails with CRASH and the signal |
//! | a corrupt patch (--series) | exit 3, the message names the patch file |
//! | a full disk during the kernel build | exit 3, the report names the build stage and ENOSPC |
//! | `--l1-test` arguments that are paths | the test runs and its log name is safe |
//!
//! Each scenario runs this same xtask binary as a child, as a user would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::layout;

/// The base every scenario runs on: the default, which CI has just built.
const KERNEL: &str = "6.12";

/// A scenario: what it is, and the function that causes it and returns
/// the message the run gave.
type Scenario = (&'static str, fn() -> Result<String>);

pub fn run() -> Result<ExitCode> {
    let scenarios: [Scenario; 6] = [
        ("SIGINT during the boot", || {
            interrupt_during_boot("INT", "SIGINT")
        }),
        ("SIGTERM during the boot", || {
            interrupt_during_boot("TERM", "SIGTERM")
        }),
        ("L2's QEMU killed", killed_l2),
        ("a corrupt patch", corrupt_patch),
        ("a full disk during the build", full_disk),
        ("--l1-test with paths in its arguments", l1_test_paths),
    ];
    let mut failed = 0;
    for (name, scenario) in scenarios {
        println!("faults: {name}");
        match scenario() {
            Ok(message) => println!("faults: {name}: ok\n    {}", message.replace('\n', "\n    ")),
            Err(e) => {
                failed += 1;
                println!("faults: {name}: FAILED: {e:#}");
            }
        }
    }
    println!("{} passed, {failed} failed", scenarios.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// This xtask, started as a child with `args`; its output goes to `log`.
fn xtask(args: &[&str], log: &Path) -> Result<Child> {
    let out = fs_err::File::create(log).with_context(|| format!("create {}", log.display()))?;
    Command::new(std::env::current_exe().context("find xtask's own path")?)
        .args(args)
        .current_dir(layout::root())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?.into_file())
        .stderr(out.into_file())
        .spawn()
        .context("start xtask")
}

/// Waits for `child`, killing it after `timeout`; its exit code.
fn wait(child: &mut Child, timeout: Duration) -> Result<Option<i32>> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("xtask did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dir() -> Result<PathBuf> {
    let dir = layout::xtask().join("faults");
    fs_err::create_dir_all(&dir).context("create target/xtask/faults")?;
    Ok(dir)
}

/// The run directory a child named in its output.
fn run_dir_of(log: &str) -> Option<PathBuf> {
    log.lines()
        .find_map(|l| l.strip_prefix("run directory: "))
        .map(PathBuf::from)
}

/// Processes whose command line mentions `needle`: what a run left behind.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs_err::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (pid != std::process::id() && text.contains(needle)).then(|| format!("{pid}: {text}"))
        })
        .collect()
}

fn report_of(run_dir: &Path) -> Result<serde_json::Value> {
    let text = fs_err::read_to_string(run_dir.join("report.json"))
        .with_context(|| format!("no report.json in {}", run_dir.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn check_detail(report: &serde_json::Value, name: &str) -> Option<String> {
    report["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["detail"].as_str().map(String::from))
}

fn interrupt_during_boot(signal: &str, name: &str) -> Result<String> {
    let log = dir()?.join(format!("interrupt-{signal}.log"));
    let mut child = xtask(&["e2e", "--kernel", KERNEL], &log)?;
    // Wait for the boot: L1's console has output.
    let start = Instant::now();
    let run_dir = loop {
        let text = fs_err::read_to_string(&log).unwrap_or_default();
        if let Some(dir) = run_dir_of(&text) {
            let console = fs_err::metadata(dir.join("l1-console.log")).map_or(0, |m| m.len());
            if console > 0 {
                break dir;
            }
        }
        if start.elapsed() > Duration::from_secs(300) || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("the run never reached the boot; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let pid = child.id().to_string();
    let sh = Shell::new()?;
    cmd!(sh, "kill -s {signal} {pid}").quiet().run()?;
    let code = wait(&mut child, Duration::from_secs(60))?;
    let run = run_dir.display().to_string();
    let left = processes_mentioning(&run);
    if !left.is_empty() {
        bail!("processes left running: {}", left.join("; "));
    }
    if code != Some(3) {
        bail!("exit {code:?}, not 3 (harness error: nothing judged)");
    }
    let report = report_of(&run_dir)?;
    if report["interrupted"] != name {
        bail!("report.json says interrupted = {}", report["interrupted"]);
    }
    let console = fs_err::metadata(run_dir.join("l1-console.log")).map_or(0, |m| m.len());
    if console == 0 {
        bail!("L1's console log is gone");
    }
    let detail = check_detail(&report, "interrupted").context("no check named interrupted")?;
    Ok(format!(
        "exit 3, no QEMU left, l1-console.log kept ({console} bytes); report: {detail}"
    ))
}

fn killed_l2() -> Result<String> {
    let log = dir()?.join("kill-l2.log");
    let mut child = xtask(&["e2e", "--kernel", KERNEL, "--fault", "kill-l2-main"], &log)?;
    let code = wait(&mut child, Duration::from_secs(900))?;
    let text = fs_err::read_to_string(&log)?;
    let run_dir = run_dir_of(&text).context("the run named no run directory")?;
    if code != Some(1) {
        bail!("exit {code:?}, not 1 (FAIL); see {}", log.display());
    }
    let detail = check_detail(&report_of(&run_dir)?, "l2_run").context("no check named l2_run")?;
    if !detail.starts_with("CRASH") || !detail.contains("signal 9") {
        bail!("l2_run says {detail:?}, not a CRASH by signal 9");
    }
    Ok(format!("exit 1; l2_run: {detail}"))
}

fn corrupt_patch() -> Result<String> {
    let dir = dir()?.join("corrupt-series");
    if dir.exists() {
        fs_err::remove_dir_all(&dir)?;
    }
    fs_err::create_dir_all(&dir)?;
    let own = layout::series_dir(crate::flags::KernelVersion::V6_12);
    let series = crate::patches::Series::load(&own)?;
    fs_err::copy(own.join("series"), dir.join("series"))?;
    for p in &series.patches {
        fs_err::copy(own.join(p), dir.join(p))?;
    }
    // Cut the third patch in the middle of its diff, as a bad download or
    // a mangling mailer would: git am must stop there.
    let victim = dir.join(&series.patches[2]);
    let text = fs_err::read_to_string(&victim)?;
    let at = text.find("\n@@").context("the third patch has no hunk")?;
    // Through the hunk header and the line after it, then a line that no
    // diff has.
    let keep: usize = text[at + 1..].split_inclusive('\n').take(2).map(str::len).sum();
    fs_err::write(
        &victim,
        format!("{}garbage that is no diff\n", &text[..at + 1 + keep]),
    )?;
    let log = dir.join("run.log");
    let series_arg = dir.display().to_string();
    let mut child = xtask(&["e2e", "--kernel", KERNEL, "--series", &series_arg], &log)?;
    let code = wait(&mut child, Duration::from_secs(600))?;
    let text = fs_err::read_to_string(&log)?;
    let run_dir = run_dir_of(&text).context("the run named no run directory")?;
    let detail = check_detail(&report_of(&run_dir)?, "stage_patch").context("no check named stage_patch")?;
    let name = series.patches[2].as_str();
    if code != Some(1) && code != Some(3) {
        bail!("exit {code:?}");
    }
    if !detail.contains(name) {
        bail!("the message does not name {name}: {detail}");
    }
    Ok(format!("exit {code:?}; stage_patch: {detail}"))
}

fn full_disk() -> Result<String> {
    let sh = Shell::new()?;
    let base = dir()?.join("disk-series");
    if base.exists() {
        fs_err::remove_dir_all(&base)?;
    }
    fs_err::create_dir_all(&base)?;
    let own = layout::series_dir(crate::flags::KernelVersion::V6_12);
    let series = crate::patches::Series::load(&own)?;
    // The project's series with one more comment line in its list: another
    // digest, so its tree and build directories are its own.
    let list = fs_err::read_to_string(own.join("series"))?;
    fs_err::write(base.join("series"), format!("{list}# faults: a full disk\n"))?;
    for p in &series.patches {
        fs_err::copy(own.join(p), base.join(p))?;
    }
    let copy = crate::patches::Series::load(&base)?;
    let variant = format!("{KERNEL}-series-{}", &copy.digest()?[..12]);
    let build = crate::build::dir(&variant, crate::build::Role::Both);
    fs_err::create_dir_all(&build)?;
    // 64 MiB: room for the config, none for the objects of a kernel.
    cmd!(sh, "mount -t tmpfs -o size=64m hh-faults {build}")
        .quiet()
        .run()
        .context("mount a small tmpfs (needs root)")?;
    let log = base.join("run.log");
    let series_arg = base.display().to_string();
    let result = (|| -> Result<String> {
        let mut child = xtask(&["e2e", "--kernel", KERNEL, "--series", &series_arg], &log)?;
        let code = wait(&mut child, Duration::from_secs(1800))?;
        let text = fs_err::read_to_string(&log)?;
        let run_dir = run_dir_of(&text).context("the run named no run directory")?;
        let report = report_of(&run_dir)?;
        let detail = check_detail(&report, "stage_build").context("no check named stage_build")?;
        if code != Some(1) && code != Some(3) {
            bail!("exit {code:?}");
        }
        if !detail.contains("No space left on device") && !detail.contains("ENOSPC") {
            bail!("stage_build does not say the disk is full: {detail}");
        }
        Ok(format!(
            "exit {code:?}; stage_build: {}",
            detail.lines().take(3).collect::<Vec<_>>().join(" | ")
        ))
    })();
    let _ = cmd!(sh, "umount {build}").quiet().ignore_status().run();
    // The series' own tree and builds: nothing else uses them.
    let _ = fs_err::remove_dir_all(&build);
    let _ = fs_err::remove_dir_all(layout::kernels().join(format!("{variant}-kernel.kconfig")));
    let worktree = layout::sources().join(&variant);
    let _ = cmd!(sh, "git -C {worktree} worktree remove --force {worktree}")
        .quiet()
        .ignore_status()
        .run();
    let _ = fs_err::remove_file(layout::sources().join(format!("{variant}.stamp")));
    result
}

fn l1_test_paths() -> Result<String> {
    let hcall = layout::target().join("x86_64-unknown-linux-gnu/release/hcall");
    let test = format!("{} --dev /dev/kvm run real_mode", hcall.display());
    let log = dir()?.join("l1-test-paths.log");
    let mut child = xtask(&["e2e", "--kernel", KERNEL, "--l1-test", &test], &log)?;
    let code = wait(&mut child, Duration::from_secs(900))?;
    let text = fs_err::read_to_string(&log)?;
    let run_dir = run_dir_of(&text).context("the run named no run directory")?;
    let config: proto::AgentConfig =
        serde_json::from_str(&fs_err::read_to_string(run_dir.join(proto::AGENT_CONFIG))?)?;
    let name = config
        .l1_extra_tests
        .first()
        .context("agent.json lists no extra test")?
        .name
        .clone();
    if name.contains('/') {
        bail!("the test's name {name:?} holds a path separator");
    }
    // The fault is the test's arguments, so the test's own check is the
    // verdict: the rest of the run may fail the way nested TCG fails
    // (README), which says nothing about them, and is only reported.
    let report = report_of(&run_dir)?;
    let check = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name.as_str()))
        .with_context(|| format!("no check named {name}; see {}", run_dir.display()))?;
    let detail = check["detail"].as_str().unwrap_or_default();
    if check["verdict"] != "pass" {
        bail!("{name}: {detail}; see {}", run_dir.display());
    }
    Ok(format!("exit {code:?}; {name}: {detail}"))
}
