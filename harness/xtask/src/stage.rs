//! Stages of a run: each prints its name, shows a spinner while it works and
//! ends with its time, so a user always sees where a run is and where it
//! failed. The timings feed report.json and the benchmark.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// A finished stage, as report.json lists it.
#[derive(Serialize, Debug, Clone)]
pub struct Timing {
    pub name: String,
    pub seconds: f64,
    pub cached: bool,
    pub ok: bool,
}

#[derive(Default)]
pub struct Stages {
    pub timings: Vec<Timing>,
}

/// Handed to a stage's body to report progress and whether it was cached.
pub struct Progress {
    bar: ProgressBar,
    // Atomic so that a stage may hand its progress to threads it starts.
    cached: AtomicBool,
}

impl Progress {
    /// Shows what the stage is doing now, e.g. the last line of make.
    pub fn say(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    /// Marks the stage as served from the cache.
    pub fn cached(&self) {
        self.cached.store(true, Ordering::Relaxed);
    }
}

impl Stages {
    /// Runs one stage. `name` is short and stable: "build", "boot".
    pub fn run<T>(&mut self, name: &str, body: impl FnOnce(&Progress) -> Result<T>) -> Result<T> {
        // An interrupted run starts nothing new; the last stage that ran
        // is the one the report names.
        if let Some(signal) = crate::interrupt::caught() {
            anyhow::bail!("interrupted by {signal}");
        }
        println!("==> {name}");
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("    {spinner} {elapsed:>4} {wide_msg}").expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let progress = Progress {
            bar,
            cached: AtomicBool::new(false),
        };
        let started = Instant::now();
        let result = body(&progress);
        progress.bar.finish_and_clear();
        let elapsed = started.elapsed();
        let cached = progress.cached.load(Ordering::Relaxed);
        let how = match (&result, cached) {
            (Err(_), _) => "FAILED after",
            (Ok(_), true) => "cached,",
            (Ok(_), false) => "done in",
        };
        println!("    {name}: {how} {}", human(elapsed));
        self.timings.push(Timing {
            name: name.into(),
            seconds: elapsed.as_secs_f64(),
            cached,
            ok: result.is_ok(),
        });
        result
    }
}

/// A scenario that needs something this machine may lack (Debian's stock
/// kernel, say): what it runs with, or why it is skipped here. A skip is
/// not an error: the stage goes on, and the verdict shows one skipped
/// check with the reason.
#[derive(Debug, Clone)]
pub enum Scenario<T> {
    Runs(T),
    Skipped(String),
}

impl<T> Scenario<T> {
    pub fn runs(&self) -> Option<&T> {
        match self {
            Scenario::Runs(t) => Some(t),
            Scenario::Skipped(_) => None,
        }
    }
}

/// "4m40s", "2.1s".
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{}m{:02}s", s as u64 / 60, s as u64 % 60)
    } else {
        format!("{s:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(2100)), "2.1s");
        assert_eq!(human(Duration::from_secs(280)), "4m40s");
    }
}
