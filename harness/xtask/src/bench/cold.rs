//! `cargo xtask bench --cold`: what a new user waits for. HEAD is cloned
//! into target/xtask/cold-clone and `cargo xtask e2e --kernel 6.12` runs
//! there with nothing built: no xtask, no guest programs, no extracted
//! source, no kernels. Each stage's time comes from the clone's
//! report.json; the time before the first stage is cargo building xtask.
//! The figures go into bench.json's "cold" section.
//!
//! What stays warm is outside the repository: the Debian packages (the
//! source tarball in /usr/src, Debian's cloud kernel) and cargo's download
//! cache, as for a user who already ran the deps stage once.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::layout;

/// The goal of issue 12: a fresh clone reaches PASS on 6.12 in 7 minutes.
const GOAL_SECONDS: f64 = 420.0;
const KERNEL: &str = "6.12";

/// bench.json's "cold" section.
#[derive(Serialize, Debug, PartialEq)]
pub struct Cold {
    pub kernel: String,
    /// The commit that was cloned (uncommitted changes are not in it).
    pub commit: String,
    /// "pass", "fail" or "skip": only a passing run meets the goal.
    pub verdict: String,
    pub clone_seconds: f64,
    /// The whole `cargo xtask e2e`, from cargo's first compile to the verdict.
    pub e2e_seconds: f64,
    /// Before the first stage: cargo building xtask and its dependencies.
    pub xtask_build_seconds: f64,
    pub stages: Vec<Stage>,
    /// Stages that said they were cached: in a cold run, a leak to look at.
    pub cached_stages: Vec<String>,
    pub goal_seconds: f64,
    pub within_goal: bool,
}

/// One stage, as report.json lists it.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Stage {
    pub name: String,
    pub seconds: f64,
    pub cached: bool,
    pub ok: bool,
}

pub fn run() -> Result<ExitCode> {
    let sh = Shell::new()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = layout::root();
    let clone = layout::xtask().join("cold-clone");
    if clone.exists() {
        fs_err::remove_dir_all(&clone).context("remove the last cold clone")?;
    }
    let commit = cmd!(sh, "git -C {root} rev-parse HEAD").quiet().read()?;
    if !cmd!(sh, "git -C {root} status --porcelain")
        .quiet()
        .read()?
        .is_empty()
    {
        println!("bench: uncommitted changes are not in the clone; it times HEAD ({commit})");
    }
    println!(
        "bench: a cold `cargo xtask e2e --kernel {KERNEL}` in {}",
        clone.display()
    );
    let t = Instant::now();
    cmd!(sh, "git clone --quiet --no-hardlinks {root} {clone}")
        .run()
        .context("clone the repository")?;
    let clone_seconds = t.elapsed().as_secs_f64();

    let _dir = sh.push_dir(&clone);
    let t = Instant::now();
    // The verdict comes from the clone's report.json, not the exit status;
    // the clone must build into its own target/, never a shared one.
    cmd!(sh, "{cargo} xtask e2e --kernel {KERNEL}")
        .env_remove("CARGO_TARGET_DIR")
        .ignore_status()
        .run()?;
    let e2e_seconds = t.elapsed().as_secs_f64();
    let report_path = clone.join("target/xtask/report.json");
    let report: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(&report_path).context("read the cold run's report.json")?,
    )?;
    let cold = figures(&report, &commit, clone_seconds, e2e_seconds)?;

    let path = layout::xtask().join("bench.json");
    let bench = with_cold(last(), &cold)?;
    fs_err::write(&path, serde_json::to_string_pretty(&bench)?)?;
    println!(
        "bench: cold e2e {:.0}s (xtask build {:.0}s), verdict {}, goal {GOAL_SECONDS:.0}s: {}; written to {}",
        cold.e2e_seconds,
        cold.xtask_build_seconds,
        cold.verdict,
        if cold.within_goal { "met" } else { "missed" },
        path.display()
    );
    if cold.verdict != "pass" {
        println!(
            "bench: the cold run did not pass; its clone stays in {}",
            clone.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    // Kernels and sources take gigabytes; the figures are all that is kept.
    fs_err::remove_dir_all(&clone).context("remove the cold clone")?;
    Ok(ExitCode::SUCCESS)
}

/// The cold figures from a run's report.json and the times around it.
pub fn figures(
    report: &serde_json::Value,
    commit: &str,
    clone_seconds: f64,
    e2e_seconds: f64,
) -> Result<Cold> {
    let stages: Vec<Stage> =
        serde_json::from_value(report["stages"].clone()).context("report.json's stages")?;
    let verdict = report["verdict"]
        .as_str()
        .context("report.json has no verdict")?
        .to_lowercase();
    let in_stages: f64 = stages.iter().map(|s| s.seconds).sum();
    let cached_stages = stages
        .iter()
        .filter(|s| s.cached)
        .map(|s| s.name.clone())
        .collect();
    Ok(Cold {
        kernel: report["kernel"].as_str().unwrap_or(KERNEL).to_string(),
        commit: commit.trim().to_string(),
        within_goal: verdict == "pass" && e2e_seconds <= GOAL_SECONDS,
        verdict,
        clone_seconds,
        e2e_seconds,
        xtask_build_seconds: (e2e_seconds - in_stages).max(0.0),
        stages,
        cached_stages,
        goal_seconds: GOAL_SECONDS,
    })
}

/// bench.json as it was (an empty object when there is none or it is unreadable).
pub fn last() -> serde_json::Value {
    fs_err::read_to_string(layout::xtask().join("bench.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}))
}

/// `bench` with its "cold" section replaced; the warm figures stay.
pub fn with_cold(mut bench: serde_json::Value, cold: &Cold) -> Result<serde_json::Value> {
    if !bench.is_object() {
        bench = serde_json::json!({});
    }
    bench["cold"] = serde_json::to_value(cold)?;
    Ok(bench)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(verdict: &str) -> serde_json::Value {
        serde_json::json!({
            "verdict": verdict,
            "kernel": "6.12",
            "stages": [
                {"name": "deps", "seconds": 0.5, "cached": false, "ok": true},
                {"name": "source", "seconds": 60.0, "cached": false, "ok": true},
                {"name": "build", "seconds": 300.0, "cached": false, "ok": true},
                {"name": "stock", "seconds": 1.5, "cached": true, "ok": true},
                {"name": "boot", "seconds": 10.0, "cached": false, "ok": true},
            ],
        })
    }

    #[test]
    fn the_time_before_the_first_stage_is_xtask_building() {
        let cold = figures(&report("PASS"), "abc\n", 2.0, 400.0).unwrap();
        assert_eq!(cold.commit, "abc");
        assert_eq!(cold.verdict, "pass");
        assert_eq!(cold.stages.len(), 5);
        assert!((cold.xtask_build_seconds - 28.0).abs() < 1e-9);
        assert_eq!(cold.cached_stages, ["stock"]);
        assert!(cold.within_goal);
    }

    #[test]
    fn only_a_passing_run_in_time_meets_the_goal() {
        assert!(!figures(&report("pass"), "c", 1.0, 421.0).unwrap().within_goal);
        assert!(!figures(&report("fail"), "c", 1.0, 100.0).unwrap().within_goal);
        assert!(figures(&serde_json::json!({"verdict": "pass"}), "c", 1.0, 1.0).is_err());
    }

    #[test]
    fn the_cold_section_joins_the_warm_figures() {
        let cold = figures(&report("pass"), "c", 1.0, 400.0).unwrap();
        let warm = serde_json::json!({"warm_e2e_median": 8.8, "cold": {"old": true}});
        let bench = with_cold(warm, &cold).unwrap();
        assert_eq!(bench["warm_e2e_median"], 8.8);
        assert_eq!(bench["cold"]["stages"][2]["name"], "build");
        assert!(bench["cold"].get("old").is_none());
        assert_eq!(
            with_cold(serde_json::Value::Null, &cold).unwrap()["cold"]["kernel"],
            "6.12"
        );
    }
}
