//! The host's switch for in-kernel handling: `kvm.hello_hypercall`.

use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
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
    proto::ParamState::from_value(value).to_string()
}

/// The parameter is one switch shared by everything running in L1 at once:
/// the main guest turns it off half-way, and hcall toggles it at will. A
/// [`Lease`] is the right to set it; once a lease is dropped the switch is
/// on again.
///
/// KVM reads the parameter once per VM, when it creates it: every L2 VM
/// must be created while it is on. So each L2 QEMU is registered as
/// [`Creating`] before any guest starts, and no lease is granted (nobody
/// may turn the switch off) until every registered VM exists.
#[derive(Default)]
pub struct Switch {
    lock: Mutex<()>,
    /// L2 VMs registered and not created yet.
    creating: Mutex<usize>,
    created: Condvar,
}

/// One L2 VM that does not exist yet; dropped once it does (or once its
/// QEMU is gone).
pub struct Creating<'a> {
    switch: &'a Switch,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        let mut n = self.switch.creating.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.switch.created.notify_all();
    }
}

/// Held while one user needs the parameter at a value; turns it back on
/// when dropped.
pub struct Lease<'a> {
    _held: MutexGuard<'a, ()>,
}

impl Switch {
    /// Registers an L2 VM about to be created.
    pub fn creating_vm(&self) -> Creating<'_> {
        *self.creating.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Creating { switch: self }
    }

    /// Waits until every registered VM exists, or fails at `deadline`.
    fn wait_created(&self, deadline: Instant) -> Result<()> {
        let mut n = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{} L2 VM(s) still being created at the deadline: kvm.hello_hypercall must stay on until they exist", *n);
            }
            n = self
                .created
                .wait_timeout(n, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

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
        self.wait_created(deadline)?;
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

    #[test]
    fn no_lease_while_a_vm_is_being_created() {
        let switch = Switch::default();
        let creating = switch.creating_vm();
        let early = switch.lease(false, Instant::now() + Duration::from_millis(30));
        assert!(early.err().unwrap().to_string().contains("being created"));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                switch
                    .lease(false, Instant::now() + Duration::from_secs(10))
                    .is_ok()
            });
            std::thread::sleep(Duration::from_millis(30));
            drop(creating);
            assert!(waiter.join().unwrap(), "the lease comes once the VM exists");
        });
    }
}
