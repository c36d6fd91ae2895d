//! What a KVM_RUN exit means for a hcall guest. `classify` is pure: the
//! vCPU loop in `vm` turns whatever KVM_RUN returned into an [`Exit`], asks
//! `classify`, and does what the [`Action`] says.

use crate::guest::{EXCEPTION_PORT, REPORT_PORT};

/// A KVM_EXIT_HYPERCALL as userspace sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UserHypercall {
    pub nr: u64,
    pub args: [u64; 6],
    /// `kvm_run.hypercall.flags` (kvm-ioctls exposes its low 32 bits as
    /// `longmode`; only bit 0 is defined).
    pub flags: u64,
}

/// An owned snapshot of one KVM_RUN outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum Exit {
    IoOut {
        port: u16,
        data: Vec<u8>,
    },
    IoIn {
        port: u16,
    },
    Mmio {
        addr: u64,
        write: bool,
    },
    Hlt,
    Shutdown,
    Hypercall(UserHypercall),
    FailEntry {
        reason: u64,
        cpu: u32,
    },
    InternalError,
    /// KVM_RUN failed with EINTR: a signal, or `immediate_exit`.
    Interrupted,
    /// KVM_RUN failed with another errno.
    RunError(i32),
    /// Any other exit reason, by name.
    Other(String),
}

/// What the VMM does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The guest reached its report: read its registers.
    Report,
    /// The guest took an exception; its stub reported the vector.
    Exception(u8),
    /// KVM forwarded a hypercall: answer it and run again.
    Answer(UserHypercall),
    /// Nothing happened that concerns the guest (a stray signal): run again.
    Resume,
    /// The deadline passed.
    TimedOut,
    /// Anything else ends the run as a failure.
    Fail(String),
}

/// Decides what an exit means. `deadline_passed` tells an EINTR of the
/// watchdog from a stray one.
pub fn classify(exit: &Exit, deadline_passed: bool) -> Action {
    match exit {
        Exit::IoOut { port, .. } if *port == REPORT_PORT => Action::Report,
        Exit::IoOut { port, data } if *port == EXCEPTION_PORT => match data.first() {
            Some(&v) => Action::Exception(v),
            None => Action::Fail("exception report without a vector".into()),
        },
        Exit::IoOut { port, data } => Action::Fail(format!("unexpected out to port {port:#x}: {data:x?}")),
        Exit::IoIn { port } => Action::Fail(format!("unexpected in from port {port:#x}")),
        Exit::Mmio { addr, write } => Action::Fail(format!(
            "guest {} unbacked memory at {addr:#x} (MMIO exit)",
            if *write { "wrote" } else { "read" }
        )),
        Exit::Hlt => Action::Fail("guest halted without reporting".into()),
        Exit::Shutdown => Action::Fail("guest shut down (triple fault)".into()),
        Exit::Hypercall(call) => Action::Answer(*call),
        Exit::FailEntry { reason, cpu } => Action::Fail(format!(
            "KVM_EXIT_FAIL_ENTRY: hardware reason {reason:#x} on cpu {cpu}"
        )),
        Exit::InternalError => Action::Fail("KVM_EXIT_INTERNAL_ERROR (emulation failed?)".into()),
        Exit::Interrupted if deadline_passed => Action::TimedOut,
        Exit::Interrupted => Action::Resume,
        Exit::RunError(errno) => {
            Action::Fail(format!("KVM_RUN: {}", std::io::Error::from_raw_os_error(*errno)))
        }
        Exit::Other(name) => Action::Fail(format!("unexpected exit {name}")),
    }
}

/// Human names of the exceptions a broken guest is likely to take.
pub fn vector_name(v: u8) -> String {
    let name = match v {
        0 => "#DE",
        6 => "#UD",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        _ => return format!("vector {v}"),
    };
    format!("{name} (vector {v})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(port: u16, data: &[u8]) -> Exit {
        Exit::IoOut {
            port,
            data: data.to_vec(),
        }
    }

    #[test]
    fn reports_and_exceptions() {
        assert_eq!(classify(&out(REPORT_PORT, &[12]), false), Action::Report);
        assert_eq!(classify(&out(EXCEPTION_PORT, &[6]), false), Action::Exception(6));
        assert!(matches!(
            classify(&out(EXCEPTION_PORT, &[]), false),
            Action::Fail(_)
        ));
        assert!(matches!(classify(&out(0x3f8, b"x"), false), Action::Fail(m) if m.contains("0x3f8")));
    }

    #[test]
    fn hypercall_exits_are_answered() {
        let call = UserHypercall {
            nr: 13,
            args: [1, 2, 3, 4, 0, 0],
            flags: 1,
        };
        assert_eq!(classify(&Exit::Hypercall(call), false), Action::Answer(call));
    }

    #[test]
    fn interruptions_and_deadlines() {
        assert_eq!(classify(&Exit::Interrupted, false), Action::Resume);
        assert_eq!(classify(&Exit::Interrupted, true), Action::TimedOut);
        // A real exit wins over a deadline that passed meanwhile.
        assert_eq!(classify(&out(REPORT_PORT, &[0]), true), Action::Report);
    }

    #[test]
    fn everything_else_fails() {
        for exit in [
            Exit::Hlt,
            Exit::Shutdown,
            Exit::InternalError,
            Exit::IoIn { port: 0x60 },
            Exit::Mmio {
                addr: 0xfee0_0000,
                write: true,
            },
            Exit::FailEntry { reason: 0x21, cpu: 0 },
            Exit::RunError(libc::EFAULT),
            Exit::Other("KVM_EXIT_DEBUG".into()),
        ] {
            assert!(matches!(classify(&exit, false), Action::Fail(_)), "{exit:?}");
        }
        assert!(matches!(classify(&Exit::Shutdown, false), Action::Fail(m) if m.contains("triple")));
    }

    #[test]
    fn vector_names() {
        assert_eq!(vector_name(6), "#UD (vector 6)");
        assert_eq!(vector_name(3), "vector 3");
    }
}
