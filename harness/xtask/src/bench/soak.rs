//! `cargo xtask bench --soak`: a million fuzzed hypercalls on a sanitized
//! host. The E2E runs on 6.12 with --sanitize (KASAN, UBSAN, KFENCE,
//! lockdep, DEBUG_ATOMIC_SLEEP, DEBUG_LIST) and hcall's soak as an extra
//! L1 test: two workers, each with its own VM and vCPU, calling at once
//! in every mode and CPL, with memslot edits between calls, while the
//! parameter flips. Its figures (calls, failures, splats) and the E2E's
//! verdict go into bench.json's "soak".
//!
//! L1 runs on single-threaded TCG: with one host thread per vCPU (QEMU
//! 7.2, nested SVM), about one guest in 150,000 calls stops without
//! reporting (a triple fault, a hang, a stray MMIO read) and a sanitized L1
//! once oopsed in the maple tree of a process that made threads; on one
//! thread, the same seeds ran 600,000 calls clean. The soak must judge the
//! series, not QEMU's multi-threaded TCG. The stock guest, whose boot on
//! one thread takes minutes, is left out (--skip-stock).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;
use xshell::{cmd, Shell};

use crate::layout;

/// Workers: with the default 500,000 calls each, a million in all.
const WORKERS: u64 = 2;

pub fn run(calls_per_worker: u64) -> Result<ExitCode> {
    let sh = Shell::new()?;
    let _dir = sh.push_dir(layout::root());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let hcall = layout::target().join("x86_64-unknown-linux-gnu/release/hcall");
    let soak = format!(
        "{} soak --json --calls {calls_per_worker} --workers {WORKERS} --seed 1",
        hcall.display()
    );
    println!(
        "bench: `cargo xtask e2e --sanitize` with hcall's soak in L1 ({WORKERS} x {calls_per_worker} calls)"
    );
    let t = Instant::now();
    let status = cmd!(
        sh,
        "{cargo} xtask e2e --kernel 6.12 --sanitize --accel tcg-single --skip-stock --l1-test {soak} --l1-test-timeout 5400 --timeout 7200"
    )
    .ignore_status()
    .quiet()
    .output()?
    .status;
    let seconds = t.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(layout::xtask().join("report.json")).context("read report.json")?,
    )?;
    let run_dir = PathBuf::from(report["run_dir"].as_str().context("report.json has no run_dir")?);
    let config: proto::AgentConfig = serde_json::from_str(
        &fs_err::read_to_string(run_dir.join(proto::AGENT_CONFIG)).context("read agent.json")?,
    )?;
    let name = &config
        .l1_extra_tests
        .first()
        .context("agent.json lists no extra test")?
        .name;
    let log = fs_err::read_to_string(run_dir.join(format!("l1test-{name}.log")))
        .with_context(|| format!("read l1test-{name}.log"))?;
    // No JSON is no evidence: the section says so rather than hold zeros.
    let figures = super::json_object(&log).unwrap_or_else(|| json!({"error": "the soak printed no JSON"}));
    let console_clean = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "l1_console_clean"))
        .map(|c| c["verdict"].clone());
    let section = json!({
        "e2e_verdict": report["verdict"],
        "e2e_seconds": (seconds * 10.0).round() / 10.0,
        "run_dir": run_dir.display().to_string(),
        "sanitizers": ["KASAN", "UBSAN", "KFENCE", "PROVE_LOCKING", "DEBUG_ATOMIC_SLEEP", "DEBUG_LIST"],
        "l1_console_clean": console_clean,
        "calls": figures["calls"],
        "complete": figures["complete"],
        "failures": figures["failures"],
        "stopped_without_report": figures["stopped"],
        "splats": figures["splats"],
        "calls_per_sec": figures["calls_per_sec"],
        "workers": figures["workers"],
        "param_flips": figures["param_flips"],
        "slot_edits": figures["slot_edits"],
        "by_mode": figures["by_mode"],
        "first_failures": figures["first_failures"],
        "kernel_log_problems": figures["kernel_log_problems"],
    });
    let path = super::write_section("soak", section.clone())?;
    println!(
        "bench: soak {} calls, {} failures, {} splats, E2E {}; written to {}",
        section["calls"],
        section["failures"],
        section["splats"],
        section["e2e_verdict"],
        path.display()
    );
    let passed = status.success()
        && section["failures"] == json!(0)
        && section["splats"] == json!(0)
        && section["calls"]
            .as_u64()
            .is_some_and(|c| c >= calls_per_worker * WORKERS);
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
