//! Who may set the host's switch for in-kernel handling,
//! `kvm.hello_hypercall`, while the guests and the tests run at once.

use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use proto::param::{hello_param as read, HELLO_PARAM};

fn write(on: bool) -> Result<()> {
    proto::param::write(Path::new(HELLO_PARAM), on)
}

/// The parameter as it is now, for a fact.
pub fn describe() -> String {
    proto::ParamState::from_value(read()).to_string()
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
pub struct Leases {
    lock: Mutex<()>,
    /// L2 VMs registered and not created yet.
    creating: Mutex<usize>,
    created: Condvar,
}

/// One L2 VM that does not exist yet; dropped once it does (or once its
/// QEMU is gone).
pub struct Creating<'a> {
    leases: &'a Leases,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        let mut n = self.leases.creating.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.leases.created.notify_all();
    }
}

/// Held while one user needs the parameter at a value; turns it back on
/// when dropped.
pub struct Lease<'a> {
    _held: MutexGuard<'a, ()>,
}

impl Leases {
    /// Registers an L2 VM about to be created.
    pub fn creating_vm(&self) -> Creating<'_> {
        *self.creating.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Creating { leases: self }
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
        let leases = Leases::default();
        let first = leases.lease(true, Instant::now()).unwrap();
        let started = Instant::now();
        let late = leases.lease(true, Instant::now() + Duration::from_millis(50));
        assert!(late.is_err());
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(first);
        assert!(leases.lease(true, Instant::now()).is_ok());
    }

    #[test]
    fn no_lease_while_a_vm_is_being_created() {
        let leases = Leases::default();
        let creating = leases.creating_vm();
        let early = leases.lease(false, Instant::now() + Duration::from_millis(30));
        assert!(early.err().unwrap().to_string().contains("being created"));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                leases
                    .lease(false, Instant::now() + Duration::from_secs(10))
                    .is_ok()
            });
            std::thread::sleep(Duration::from_millis(30));
            drop(creating);
            assert!(waiter.join().unwrap(), "the lease comes once the VM exists");
        });
    }
}
