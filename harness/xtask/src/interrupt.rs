//! SIGINT and SIGTERM during a run: the signal only sets a flag, and the
//! run's waits (QEMU, Bochs, the start of every stage) poll it, so that an
//! interrupted run stops its emulator, keeps every log and still writes a
//! report that says INTERRUPTED. A second signal exits at once, for a user
//! who does not want to wait even for that.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// The number of the first signal caught; 0 while none was.
static CAUGHT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Installs the handlers; call once, early.
pub fn install() -> Result<()> {
    let caught = CAUGHT.get_or_init(|| Arc::new(AtomicUsize::new(0))).clone();
    let once = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the last signal left
        // it: unset the first time, set from the second on. 130 is what a
        // shell reports for a process ended by SIGINT.
        flag::register_conditional_shutdown(sig, 130, once.clone()).context("install a signal handler")?;
        flag::register(sig, once.clone()).context("install a signal handler")?;
        flag::register_usize(sig, caught.clone(), sig as usize).context("install a signal handler")?;
    }
    Ok(())
}

/// The name of the signal that interrupted the run, if one did.
pub fn caught() -> Option<&'static str> {
    match CAUGHT.get()?.load(Ordering::SeqCst) as i32 {
        0 => None,
        SIGINT => Some("SIGINT"),
        SIGTERM => Some("SIGTERM"),
        _ => Some("a signal"),
    }
}
