//! `cargo xtask splats`: real kernel reports, captured as test data for
//! proto's list of kernel-trouble patterns (proto/src/trouble.rs).
//!
//! The sanitized host boots with harness/xtask/splats.sh as an extra L1
//! test; the script provokes one report of each kind through LKDTM, each
//! after a marker line, and xtask cuts L1's console at the markers into
//! harness/proto/tests/data/splats/<kind>.log. The console before the
//! first marker, a whole sanitized E2E with its guests and tests, is kept
//! as the clean sample (sanitized-e2e.log), which must match nothing.
//! The run itself must FAIL: its console is full of splats.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};

use crate::layout;

/// The marker splats.sh writes into the kernel log before each kind.
const MARKER: &str = "hh-splat: ";
/// Lines kept of each splat: the report and its stack, and for the soft
/// lockup the RCU stall that follows it a few reports later, but not all
/// that the lockup goes on printing.
const MAX_LINES: usize = 400;

pub fn run() -> Result<ExitCode> {
    let script = layout::root().join("harness/xtask/splats.sh");
    let log = layout::xtask().join("splats.log");
    let out = fs_err::File::create(&log)?;
    let status = Command::new(std::env::current_exe().context("find xtask's own path")?)
        .args([
            "e2e",
            "--kernel",
            "6.12",
            "--sanitize",
            "--l1-test-timeout",
            "120",
            "--l1-test",
        ])
        .arg(&script)
        .current_dir(layout::root())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?.into_file())
        .stderr(out.into_file())
        .status()
        .context("run the sanitized E2E")?;
    let text = fs_err::read_to_string(&log)?;
    let run_dir = text
        .lines()
        .find_map(|l| l.strip_prefix("run directory: "))
        .map(PathBuf::from)
        .context("the run named no run directory")?;
    if status.code() == Some(0) {
        bail!(
            "the run passed: no splat reached L1's console; see {}",
            run_dir.display()
        );
    }
    let console = fs_err::read_to_string(run_dir.join("l1-console.log"))?;
    let (clean, splats) = cut(&console);
    if splats.is_empty() {
        bail!("no marker on L1's console; see {}", run_dir.display());
    }
    let dir = layout::root().join("harness/proto/tests/data/splats");
    fs_err::create_dir_all(&dir)?;
    fs_err::write(dir.join("sanitized-e2e.log"), clean)?;
    for (kind, text) in &splats {
        fs_err::write(dir.join(format!("{}.log", kind.to_lowercase())), text)?;
        println!("splats: {kind}: {} lines", text.lines().count());
    }
    println!("splats: written to {} from {}", dir.display(), run_dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The console before the first marker, and each marked section (at most
/// [`MAX_LINES`] lines) by the kind its marker names. A marker END closes
/// the last section; without one (splats.sh ends in a panic), the
/// console's end does.
fn cut(console: &str) -> (String, Vec<(String, String)>) {
    let mut clean = String::new();
    let mut splats: Vec<(String, String)> = Vec::new();
    for line in console.lines() {
        if let Some(at) = line.find(MARKER) {
            let kind = line[at + MARKER.len()..].trim().to_string();
            if kind != "END" {
                splats.push((kind, String::new()));
            } else {
                break;
            }
            continue;
        }
        match splats.last_mut() {
            Some((_, text)) if text.lines().count() < MAX_LINES => {
                text.push_str(line);
                text.push('\n');
            }
            Some(_) => {}
            None => {
                clean.push_str(line);
                clean.push('\n');
            }
        }
    }
    (clean, splats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_is_cut_at_the_markers() {
        let console = "boot\n[ 9.0] hh-splat: WARNING\nWARNING: at x\n[ 9.5] hh-splat: BUG\n\
                       kernel BUG at y\n[ 10.0] hh-splat: END\nreboot\n";
        let (clean, splats) = cut(console);
        assert_eq!(clean, "boot\n");
        assert_eq!(
            splats,
            [
                ("WARNING".to_string(), "WARNING: at x\n".to_string()),
                ("BUG".to_string(), "kernel BUG at y\n".to_string())
            ]
        );
    }
}
