//! `--sanitize`: proof that L1 really ran with its sanitizers. The config
//! stage already checked that every option of host-sanitize.config
//! survived olddefconfig; this check wants each run-time detector's own
//! boot line on L1's console, since a detector that never started finds
//! nothing, and a clean console would then prove nothing.

use crate::verdict::{Check, Verdict};

/// The detectors that announce themselves at boot, each with its line.
/// UBSAN, DEBUG_LIST and DEBUG_ATOMIC_SLEEP print nothing until they fire:
/// the config check is their evidence.
const BOOT_LINES: &[(&str, &str)] = &[
    ("KASAN", "KernelAddressSanitizer initialized"),
    ("KFENCE", "kfence: initialized"),
    ("lockdep", "Lock dependency validator"),
];

pub fn check(console: &str) -> Check {
    let missing: Vec<&str> = BOOT_LINES
        .iter()
        .filter(|(_, line)| !console.contains(line))
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        Check::new(
            "l1_sanitizers",
            Verdict::Pass,
            "l1-console.log shows KASAN, KFENCE and lockdep started; the config stage verified UBSAN, DEBUG_LIST and DEBUG_ATOMIC_SLEEP",
        )
    } else {
        Check::new(
            "l1_sanitizers",
            Verdict::Fail,
            format!(
                "NO RESULT: l1-console.log never shows {} starting; a clean console proves nothing without them",
                missing.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detector_must_announce_itself() {
        let console = "[    0.000000] kasan: KernelAddressSanitizer initialized (generic)\n\
                       [    0.000000] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar\n\
                       [    0.120000] kfence: initialized - using 2097152 bytes for 255 objects\n";
        assert_eq!(check(console).verdict, Verdict::Pass);
        let plain = "[    0.000000] Linux version 6.12.57\n";
        let c = check(plain);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.detail.contains("KASAN, KFENCE, lockdep"));
    }
}
