//! A deadline for KVM_RUN: a hung guest is a failed case, not a hung run.
//!
//! A watchdog thread waits for the deadline. When it passes, the watchdog
//! sets `kvm_run.immediate_exit` of the vCPU being run and then kicks the
//! vCPU's own thread with a real-time signal (pthread_kill, through
//! vmm-sys-util), whose handler does nothing: KVM_RUN returns EINTR
//! whether the kick lands inside it (the signal interrupts it) or just
//! before it (immediate_exit makes it return at once), so the classic race
//! of kicking a vCPU is closed. The signal goes to that one thread, never
//! to the process: under `cargo test`, where other threads run tests of
//! their own, a process-directed signal could land on any of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kvm_bindings::kvm_run;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

static INSTALL: Once = Once::new();

/// The kick's signal: the first real-time one, which the C runtime leaves
/// alone (as rust-vmm's VMMs use it for the same purpose).
fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_num: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // Nothing to do: the signal's delivery is what interrupts KVM_RUN, and
    // the watchdog set immediate_exit before sending it.
}

/// Registers the kick's handler once. vmm-sys-util registers it without
/// SA_RESTART, so KVM_RUN comes back with EINTR rather than restarting.
fn install() -> Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| result = register_signal_handler(kick_signal(), on_kick));
    result.context("register the vCPU kick's signal handler")
}

/// The thread that runs the vCPU, as vmm-sys-util's `Killable` wants it.
struct VcpuThread(libc::pthread_t);

// SAFETY: the handle is the vCPU thread's own (from pthread_self), and
// that thread outlives every use: `Armed::drop`, on that thread, joins the
// watchdog, the only user, before it returns.
unsafe impl Killable for VcpuThread {
    fn pthread_handle(&self) -> libc::pthread_t {
        self.0
    }
}

/// The vCPU's kvm_run, handed to the watchdog thread.
struct RunPtr(*mut kvm_run);

// SAFETY: the watchdog only writes `immediate_exit` through the pointer,
// with a volatile store, as KVM expects a kick to; `arm`'s caller keeps the
// mapping alive until the guard, which joins the watchdog, is dropped.
unsafe impl Send for RunPtr {}

/// A running deadline for the vCPU whose kvm_run is given. Dropping it
/// stops the watchdog and forgets the vCPU.
pub struct Armed {
    /// Set to true when the guard is dropped, under the lock, so that the
    /// watchdog never fires after that.
    cancel: Arc<(Mutex<bool>, Condvar)>,
    expired: Arc<AtomicBool>,
    watchdog: Option<JoinHandle<()>>,
}

/// Arms the deadline for the vCPU run on the calling thread.
///
/// # Safety
///
/// `run` must point to the vCPU's mapped kvm_run and stay mapped until
/// the returned guard is dropped; the guard must be dropped on the thread
/// that called `arm`.
pub unsafe fn arm(run: *mut kvm_run, after: Duration) -> Result<Armed> {
    install()?;
    check_unblocked()?;
    // SAFETY: pthread_self has no preconditions.
    let vcpu = VcpuThread(unsafe { libc::pthread_self() });
    let run = RunPtr(run);
    let cancel = Arc::new((Mutex::new(false), Condvar::new()));
    let expired = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (cancel, expired) = (cancel.clone(), expired.clone());
        std::thread::Builder::new()
            .name("kvm-run-deadline".into())
            .spawn(move || {
                let run = run;
                let (lock, wake) = &*cancel;
                let cancelled = lock.lock().unwrap_or_else(|p| p.into_inner());
                let (cancelled, _) = wake
                    .wait_timeout_while(cancelled, after, |cancelled| !*cancelled)
                    .unwrap_or_else(|p| p.into_inner());
                if *cancelled {
                    return;
                }
                // The lock is still held: the guard cannot be dropped (and
                // the mapping unmapped) while the kick goes out.
                expired.store(true, Ordering::SeqCst);
                // SAFETY: see `RunPtr`; the guard is alive, since it
                // cancels under this lock before it goes.
                unsafe { std::ptr::addr_of_mut!((*run.0).immediate_exit).write_volatile(1) };
                if let Err(e) = vcpu.kill(kick_signal()) {
                    eprintln!("# could not kick the vCPU: {e}");
                }
            })
            .context("start the KVM_RUN watchdog")?
    };
    Ok(Armed {
        cancel,
        expired,
        watchdog: Some(watchdog),
    })
}

impl Armed {
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        let (lock, wake) = &*self.cancel;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(watchdog) = self.watchdog.take() {
            if watchdog.join().is_err() {
                eprintln!("# the KVM_RUN watchdog panicked");
            }
        }
    }
}

/// Fails unless kicks can be delivered to this thread: a blocked signal
/// would leave a hung KVM_RUN hung.
fn check_unblocked() -> Result<()> {
    let blocked = vmm_sys_util::signal::get_blocked_signals()
        .map_err(|e| anyhow::anyhow!("read the signal mask: {e:?}"))?;
    if blocked.contains(&kick_signal()) {
        bail!("the vCPU kick's signal is blocked on this thread");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_sets_immediate_exit_and_kicks_this_thread() {
        // A plain kvm_run in host memory stands in for the vCPU's mapping.
        let mut run: kvm_run = kvm_run::default();
        // SAFETY: `run` outlives the guard, dropped on this thread.
        let armed = unsafe { arm(&mut run, Duration::from_millis(10)) }.unwrap();
        let start = std::time::Instant::now();
        // The kick interrupts this sleep; std's sleep goes on after it.
        while !armed.expired() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(armed.expired());
        drop(armed);
        // SAFETY: the guard is gone, nothing else writes `run`.
        let flag = unsafe { std::ptr::addr_of!(run.immediate_exit).read_volatile() };
        assert_eq!(flag, 1);
    }

    #[test]
    fn a_dropped_deadline_never_fires() {
        let mut run: kvm_run = kvm_run::default();
        // SAFETY: `run` outlives the guard, dropped on this thread.
        let armed = unsafe { arm(&mut run, Duration::from_millis(20)) }.unwrap();
        drop(armed);
        std::thread::sleep(Duration::from_millis(60));
        // SAFETY: the guard is gone, and with it the watchdog.
        let flag = unsafe { std::ptr::addr_of!(run.immediate_exit).read_volatile() };
        assert_eq!(flag, 0);
    }
}
