//! `cargo xtask bench --repeat N` (the flake rate of warm E2Es) and
//! `cargo xtask bench --intel` (the Intel run's stage times), each into a
//! section of bench.json.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde_json::json;
use xshell::{cmd, Shell};

use crate::flags::Accel;
use crate::layout;

fn last_report() -> Result<serde_json::Value> {
    Ok(serde_json::from_str(
        &fs_err::read_to_string(layout::xtask().join("report.json")).context("read report.json")?,
    )?)
}

/// N warm `cargo xtask e2e` runs, one after the other: how many passed,
/// and for each that did not, its verdict and run directory.
pub fn repeat(n: usize, accel: Accel) -> Result<ExitCode> {
    let sh = Shell::new()?;
    let _dir = sh.push_dir(layout::root());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let accel = accel
        .to_possible_value()
        .context("an accelerator without a name")?
        .get_name()
        .to_string();
    println!("bench: a first e2e run builds whatever is missing (not counted)");
    cmd!(sh, "{cargo} xtask e2e --accel {accel}")
        .quiet()
        .ignore_status()
        .output()?;
    let mut passed = 0;
    let mut seconds = Vec::new();
    let mut failures = Vec::new();
    for i in 1..=n {
        let t = Instant::now();
        let out = cmd!(sh, "{cargo} xtask e2e --accel {accel}")
            .quiet()
            .ignore_status()
            .output()?;
        seconds.push((t.elapsed().as_secs_f64() * 10.0).round() / 10.0);
        if out.status.success() {
            passed += 1;
        } else {
            let report = last_report().unwrap_or_default();
            let failed: Vec<serde_json::Value> = report["checks"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter(|c| c["verdict"] != "pass")
                        .map(|c| c["name"].clone())
                        .collect()
                })
                .unwrap_or_default();
            failures.push(json!({
                "round": i,
                "exit": out.status.code(),
                "run_dir": report["run_dir"],
                "checks": failed,
            }));
        }
        println!("    round {i}/{n}: {passed} passed so far");
    }
    let section = json!({
        "accel": accel,
        "runs": n,
        "passed": passed,
        "seconds": seconds,
        "failures": failures,
    });
    let path = super::write_section("repeat", section)?;
    println!(
        "bench: {passed}/{n} warm E2Es passed; written to {}",
        path.display()
    );
    Ok(if passed == n {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One warm `cargo xtask e2e --cpu intel` (after one that builds what is
/// missing), its stages as report.json gives them.
pub fn intel() -> Result<ExitCode> {
    let sh = Shell::new()?;
    let _dir = sh.push_dir(layout::root());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    cmd!(sh, "{cargo} xtask e2e --cpu intel")
        .quiet()
        .ignore_status()
        .output()?;
    let t = Instant::now();
    let out = cmd!(sh, "{cargo} xtask e2e --cpu intel")
        .quiet()
        .ignore_status()
        .output()?;
    let seconds = t.elapsed().as_secs_f64();
    let report = last_report()?;
    let section = json!({
        "verdict": report["verdict"],
        "cpu": report["cpu"],
        "e2e_seconds": (seconds * 10.0).round() / 10.0,
        "stages": report["stages"],
        "exit_reasons": report["exit_reasons"],
    });
    let path = super::write_section("intel", section)?;
    println!(
        "bench: warm Intel run {seconds:.0}s; written to {}",
        path.display()
    );
    Ok(if out.status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
