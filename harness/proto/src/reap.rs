//! The one way every program here waits for a child that has a deadline
//! (L1's QEMU in xtask, L2's QEMU and the L1 tests in the agent): wait
//! until the deadline, then kill it and reap it, so that no child is ever
//! left running and none becomes a zombie.

use std::io;
use std::process::{Child, ExitStatus};
use std::time::Instant;

use wait_timeout::ChildExt;

/// Waits for `child` until `deadline`; past it, kills the child and reaps
/// it. Returns how it ended, or `None` when it was killed at the deadline.
pub fn wait_or_kill(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    let left = deadline.saturating_duration_since(Instant::now());
    match child.wait_timeout(left)? {
        Some(status) => Ok(Some(status)),
        None => {
            kill(child);
            Ok(None)
        }
    }
}

/// How [`wait_until`] ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Exited(ExitStatus),
    /// Killed at the deadline.
    Deadline,
    /// Killed because the caller's `stop` said so.
    Stopped,
}

/// Waits for `child` as [`wait_or_kill`] does, asking `stop` every `every`
/// whether to stop waiting (a signal to the caller, a guest that is done
/// but does not end its emulator); then it kills and reaps the child too.
pub fn wait_until(
    child: &mut Child,
    deadline: Instant,
    every: std::time::Duration,
    mut stop: impl FnMut() -> bool,
) -> io::Result<Ended> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(status) = child.wait_timeout(left.min(every))? {
            return Ok(Ended::Exited(status));
        }
        if Instant::now() >= deadline {
            kill(child);
            return Ok(Ended::Deadline);
        }
        if stop() {
            kill(child);
            return Ok(Ended::Stopped);
        }
    }
}

/// Kills the child, if it still runs, and reaps it.
pub fn kill(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    #[test]
    fn a_child_past_its_deadline_is_killed_and_one_before_it_is_not() {
        let mut slow = Command::new("sleep").arg("10").spawn().unwrap();
        let started = Instant::now();
        let status = wait_or_kill(&mut slow, started + Duration::from_millis(100)).unwrap();
        assert_eq!(status, None);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(slow.try_wait().unwrap().is_some(), "reaped");

        let mut quick = Command::new("true").spawn().unwrap();
        let status = wait_or_kill(&mut quick, Instant::now() + Duration::from_secs(10)).unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(0));
    }

    #[test]
    fn a_stopped_wait_kills_the_child() {
        let mut slow = Command::new("sleep").arg("10").spawn().unwrap();
        let started = Instant::now();
        let mut asked = 0;
        let ended = wait_until(
            &mut slow,
            started + Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                asked += 1;
                asked == 3
            },
        )
        .unwrap();
        assert_eq!(ended, Ended::Stopped);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(slow.try_wait().unwrap().is_some(), "reaped");
    }
}
