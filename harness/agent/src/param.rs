//! The host's switch for in-kernel handling: `kvm.hello_hypercall`.

use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const PARAM: &str = "/sys/module/kvm/parameters/hello_hypercall";

/// The parameter's value, or `None` when the kernel has no such parameter
/// (an unpatched host, or one built without CONFIG_KVM_HELLO_HYPERCALL).
pub fn read() -> Option<bool> {
    let text = std::fs::read_to_string(PARAM).ok()?;
    Some(matches!(text.trim(), "Y" | "y" | "1"))
}

pub fn write(on: bool) -> Result<()> {
    std::fs::write(PARAM, if on { "1" } else { "0" }).context("write kvm.hello_hypercall")
}

pub fn describe(value: Option<bool>) -> String {
    match value {
        Some(true) => "on".into(),
        Some(false) => "off".into(),
        None => "absent".into(),
    }
}

/// The parameter is one switch shared by everything running in L1 at once:
/// the main guest turns it off half-way, the stock guest needs it on, and
/// hcall toggles it at will. A [`Lease`] is the right to set it; once a
/// lease is dropped the switch is on again.
#[derive(Default)]
pub struct Switch {
    lock: Mutex<()>,
}

/// Held while one user needs the parameter at a value; turns it back on
/// when dropped.
pub struct Lease<'a> {
    _held: MutexGuard<'a, ()>,
}

impl Switch {
    /// Waits for the switch until `deadline`, then sets it; a host without
    /// the parameter (unpatched) has nothing to set, and the verdict reads
    /// that from the parameter fact. Waiting past the deadline is an error
    /// that names the cause, rather than a guest killed for a lateness
    /// that was not its own.
    pub fn lease(&self, on: bool, deadline: Instant) -> Result<Lease<'_>> {
        let held = loop {
            match self.lock.try_lock() {
                Ok(held) => break held,
                // A holder that panicked left the switch in an unknown
                // state; setting it below puts that right.
                Err(TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(TryLockError::WouldBlock) => {
                    bail!("kvm.hello_hypercall was held by another user past the deadline")
                }
            }
        };
        if read().is_some_and(|now| now != on) {
            write(on)?;
        }
        Ok(Lease { _held: held })
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if read() == Some(false) {
            let _ = write(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_waits_no_longer_than_its_deadline() {
        let switch = Switch::default();
        let first = switch.lease(true, Instant::now()).unwrap();
        let started = Instant::now();
        let late = switch.lease(true, Instant::now() + Duration::from_millis(50));
        assert!(late.is_err());
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(first);
        assert!(switch.lease(true, Instant::now()).is_ok());
    }
}
