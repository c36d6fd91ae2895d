//! A deadline for KVM_RUN: a hung guest is a failed case, not a hung run.
//!
//! A one-shot ITIMER_REAL raises SIGALRM when the deadline passes. Its
//! handler sets `kvm_run.immediate_exit` of the vCPU being run, so KVM_RUN
//! returns EINTR whether the signal lands inside KVM_RUN (the signal
//! interrupts it) or just before it (immediate_exit makes it return at
//! once): the classic race of kicking a vCPU is closed. hcall is
//! single-threaded, so the process-directed SIGALRM always reaches the
//! thread that runs the vCPU.

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Once;
use std::time::Duration;

use anyhow::{bail, Result};
use kvm_bindings::kvm_run;

/// The kvm_run of the vCPU under a deadline, or null.
static TARGET: AtomicPtr<kvm_run> = AtomicPtr::new(std::ptr::null_mut());
static EXPIRED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

extern "C" fn on_alarm(_sig: libc::c_int) {
    // Only atomics and a volatile byte store: async-signal-safe.
    EXPIRED.store(true, Ordering::SeqCst);
    let run = TARGET.load(Ordering::SeqCst);
    if !run.is_null() {
        // SAFETY: `TARGET` is non-null only while an `Armed` guard lives,
        // and the guard's owner keeps the vCPU (and so its kvm_run mapping)
        // alive for that long; the handler runs on the same thread.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}

fn install() -> Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; the handler is an `extern "C" fn(c_int)` as SA_SIGINFO is
        // not set. No SA_RESTART: KVM_RUN must come back with EINTR.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_alarm as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            result = Err(std::io::Error::last_os_error());
        }
    });
    if let Err(e) = result {
        bail!("sigaction(SIGALRM): {e}");
    }
    Ok(())
}

fn set_timer(after: Duration) -> Result<()> {
    let value = libc::timeval {
        tv_sec: after.as_secs() as libc::time_t,
        tv_usec: after.subsec_micros() as libc::suseconds_t,
    };
    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: value,
    };
    // SAFETY: plain syscall with a valid itimerval; the old value is not wanted.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) } != 0 {
        bail!("setitimer: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// A running deadline for the vCPU whose kvm_run is given. Dropping it
/// stops the timer and forgets the vCPU.
pub struct Armed {
    _private: (),
}

/// Arms the deadline.
///
/// # Safety
///
/// `run` must point to the vCPU's mapped kvm_run and stay mapped until
/// the returned guard is dropped.
pub unsafe fn arm(run: *mut kvm_run, after: Duration) -> Result<Armed> {
    install()?;
    EXPIRED.store(false, Ordering::SeqCst);
    TARGET.store(run, Ordering::SeqCst);
    let armed = Armed { _private: () };
    // A zero it_value would disarm instead of firing at once.
    set_timer(after.max(Duration::from_micros(1)))?;
    Ok(armed)
}

impl Armed {
    pub fn expired(&self) -> bool {
        EXPIRED.load(Ordering::SeqCst)
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        let _ = set_timer(Duration::ZERO);
        TARGET.store(std::ptr::null_mut(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_sets_immediate_exit() {
        // A plain kvm_run in host memory stands in for the vCPU's mapping.
        let mut run: kvm_run = kvm_run::default();
        // SAFETY: `run` outlives the guard.
        let armed = unsafe { arm(&mut run, Duration::from_millis(10)) }.unwrap();
        let start = std::time::Instant::now();
        while !armed.expired() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(armed.expired());
        drop(armed);
        // SAFETY: the guard is gone, nothing else writes `run`.
        let flag = unsafe { std::ptr::addr_of!(run.immediate_exit).read_volatile() };
        assert_eq!(flag, 1);
    }
}
