//! How hcall says that one of its guests stopped without reporting, read
//! by hcall itself (a case or a fuzz draw is retried once in a fresh VM)
//! and by xtask (a failed case says STOPPED:, and CI boots the run again).
//!
//! A guest that hangs, takes an exception or a triple fault in place of
//! its report, halts, or reads memory it never touches is how nested
//! multi-threaded TCG fails, about once in 150,000 calls, on QEMU 7.2 and
//! 10.0 alike. A wrong answer from the series is a result the guest does
//! report, and is never one of these.

/// Words of hcall's messages (exit.rs's `classify`, cases/call.rs's
/// `stop_problem`, the fuzz's judge) for a guest that stopped.
pub const GUEST_STOPPED: &[&str] = &[
    "did not report before its deadline",
    "guest did not report: TimedOut",
    "instead of reporting",
    "guest shut down (triple fault)",
    "guest halted without reporting",
    "unbacked memory at",
];

/// What hcall puts in every line about a stop it retried: the attempt
/// that stopped, and the note that it ran again. Such a stop was absorbed,
/// and the retry's own lines say how that went.
pub const RETRIED: &str = "(retried)";

/// True when `line` says a guest stopped without reporting.
pub fn guest_stopped(line: &str) -> bool {
    GUEST_STOPPED.iter().any(|p| line.contains(p))
}

/// True when `line` says a guest stopped and nothing ran it again.
pub fn stopped_for_good(line: &str) -> bool {
    guest_stopped(line) && !line.contains(RETRIED)
}

#[cfg(test)]
mod tests {
    use super::guest_stopped;

    #[test]
    fn stops_are_told_from_wrong_answers() {
        for stop in [
            "VM created with N (control): long64 cpl0 vmmcall: a0=0x10040 a1=0x40 a2=0x0 a3=0x0: guest did not report before its deadline (hung)",
            "call 300: long64 cpl0 VM CpuidCleared a0=0x3fffb: guest did not report: Failed(\"guest shut down (triple fault)\")",
            "call 1349: prot32 cpl0 VM On: guest did not report: Failed(\"guest read unbacked memory at 0xffffffff (MMIO exit)\")",
            "call 1658: long64 cpl0 VM ParamOff a0=0x35610: guest did not report: TimedOut",
            "guest took #GP instead of reporting",
        ] {
            assert!(guest_stopped(stop), "{stop}");
        }
        let absorbed = "fuzz: (retried) in a fresh VM: call 9: guest did not report: TimedOut";
        assert!(guest_stopped(absorbed) && !super::stopped_for_good(absorbed));
        for wrong in [
            "long64 cpl0 vmmcall: a0=0x10040 a1=0x40 a2=0x0 a3=0x0: -22 (-KVM_EINVAL), want 12",
            "wrote 3 bytes outside the buffer at 0x10100",
        ] {
            assert!(!guest_stopped(wrong), "{wrong}");
        }
    }
}
