//! The benchmark's floor (`cargo xtask bench`): L1 starts every L2 guest
//! of agent.json side by side, exactly as a run does (the same argv
//! builder, the same TSC hand-over), with nothing else: no tracing, no
//! report relay, no tests. How each L2's QEMU ended goes to
//! [`EXIT_FILE`] in the run directory, for bench to check that every L2
//! really ran.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proto::AgentConfig;

/// One line per guest, in agent.json's order: QEMU's exit code, or
/// "killed" when it passed L2's deadline.
pub const EXIT_FILE: &str = "l2-exit";

pub fn run(out: &Path) -> Result<()> {
    let text = fs_err::read_to_string(out.join(proto::AGENT_CONFIG))?;
    let cfg: AgentConfig = serde_json::from_str(&text).context("parse agent.json")?;
    let cpuinfo = fs_err::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let khz = proto::tsc_khz(&cpuinfo).or(cfg.fallback_tsc_khz);
    let mut children = Vec::new();
    for guest in &cfg.guests {
        let child = Command::new(&cfg.qemu)
            .args(proto::l2_qemu_args(&cfg, guest, out, khz))
            .env("TMPDIR", proto::L1_SCRATCH)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", cfg.qemu))?;
        children.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(cfg.l2_timeout_secs);
    let mut codes = Vec::new();
    for mut child in children {
        let status = proto::reap::wait_or_kill(&mut child, deadline).context("wait for L2's QEMU")?;
        codes.push(status.map(|s| s.code()));
    }
    fs_err::write(out.join(EXIT_FILE), exit_lines(&codes))?;
    Ok(())
}

/// The exit file's text: `None` for a QEMU killed at the deadline,
/// `Some(None)` for one a signal ended.
fn exit_lines(codes: &[Option<Option<i32>>]) -> String {
    codes
        .iter()
        .map(|c| match c {
            Some(Some(code)) => format!("{code}\n"),
            Some(None) => "signal\n".to_string(),
            None => "killed\n".to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_guest() {
        assert_eq!(
            exit_lines(&[Some(Some(0)), Some(None), None]),
            "0\nsignal\nkilled\n"
        );
    }
}
