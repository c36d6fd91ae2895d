//! The run's report: a summary table on the terminal, report.json and a
//! JUnit XML file for CI systems, written to target/xtask and into the
//! run directory.

use std::path::Path;

use anyhow::{Context, Result};
use quick_junit::{NonSuccessKind, Report as Junit, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use crate::stage::Timing;
use crate::verdict::{Check, Verdict};

#[derive(Serialize, Debug)]
pub struct Report {
    pub verdict: Verdict,
    /// "6.12", or "tree-<hash>" for --tree.
    pub kernel: String,
    pub patched: bool,
    /// The accelerator L1 ran on, once decided.
    pub accel: Option<String>,
    pub run_dir: String,
    /// The L1 kernel that ran, once built.
    pub host_kernel: Option<String>,
    /// The signal that stopped the run ("SIGINT", "SIGTERM"), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// The CPU L1 ran on, when it is not QEMU's (`--cpu intel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// kvm_exit events in L1's trace by reason (`--cpu intel`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub exit_reasons: std::collections::BTreeMap<String, usize>,
    pub checks: Vec<Check>,
    pub stages: Vec<Timing>,
}

impl Report {
    /// A report with only a verdict and checks, for the tests of the code
    /// that reads reports.
    #[cfg(test)]
    pub fn of_checks(verdict: Verdict, checks: Vec<crate::verdict::Check>) -> Report {
        Report {
            verdict,
            kernel: "6.12".into(),
            patched: true,
            accel: None,
            run_dir: "target/xtask/runs/x".into(),
            host_kernel: None,
            interrupted: None,
            cpu: None,
            exit_reasons: Default::default(),
            checks,
            stages: vec![],
        }
    }

    /// Prints one line per check and the closing count.
    pub fn print(&self) {
        println!();
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.checks {
            let mark = match c.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "SKIP",
            };
            let mut lines = c.detail.lines();
            println!("  {mark}  {:width$}  {}", c.name, lines.next().unwrap_or(""));
            for more in lines {
                println!("  {:width$}        {more}", "");
            }
        }
        let count = |v| self.checks.iter().filter(|c| c.verdict == v).count();
        println!();
        println!(
            "e2e: {} passed, {} failed, {} skipped",
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Skip)
        );
        println!(
            "verdict: {} (kernel {}, {}, logs in {})",
            match (&self.interrupted, self.verdict) {
                (Some(_), _) => "INTERRUPTED",
                (None, Verdict::Pass) => "PASS",
                (None, Verdict::Fail) => "FAIL",
                (None, Verdict::Skip) => "SKIP",
            },
            self.kernel,
            if self.patched { "patched" } else { "unpatched" },
            self.run_dir
        );
    }

    /// Writes report.json and report.xml into each of `dirs`.
    pub fn write(&self, dirs: &[&Path]) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        let xml = self.junit().to_string().context("render JUnit XML")?;
        for dir in dirs {
            fs_err::create_dir_all(dir)?;
            fs_err::write(dir.join("report.json"), &json)?;
            fs_err::write(dir.join("report.xml"), &xml)?;
        }
        Ok(())
    }

    fn junit(&self) -> Junit {
        let variant = if self.patched { "patched" } else { "unpatched" };
        let mut suite = TestSuite::new(format!("e2e-{}-{variant}", self.kernel));
        for c in &self.checks {
            let status = match c.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                Verdict::Skip => TestCaseStatus::skipped(),
                Verdict::Fail => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(c.detail.lines().next().unwrap_or_default());
                    s.set_description(c.detail.clone());
                    s
                }
            };
            let mut case = TestCase::new(c.name.clone(), status);
            case.set_classname(format!("hello_hypercall.e2e.{variant}"));
            suite.add_test_case(case);
        }
        let mut report = Junit::new("hello-hypercall");
        report.add_test_suite(suite);
        report
    }
}
