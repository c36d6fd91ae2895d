//! The host's switch for in-kernel handling: `kvm.hello_hypercall`.

use std::sync::{Mutex, MutexGuard};

use anyhow::{Context, Result};

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
/// hcall toggles it at will. A [`Lease`] is the right to set it; the
/// switch is on whenever nobody holds one.
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
    /// Waits for the switch, then sets it; a host without the parameter
    /// (unpatched) has nothing to set, and the verdict reads that from the
    /// parameter fact.
    pub fn lease(&self, on: bool) -> Result<Lease<'_>> {
        // A holder that panicked left the switch in an unknown state;
        // setting it below puts that right.
        let held = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
