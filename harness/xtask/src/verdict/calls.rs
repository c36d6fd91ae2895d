//! The probes' syscall and device calls against what the ABI promises.

use proto::abi::{errno_name, EFAULT, EINVAL, ENOSYS, EOPNOTSUPP, EPERM, KVM_ENOSYS};
use proto::{Call, Event, FactName, ParamState};

use super::{fact_value, Check, Verdict};

/// What the ABI promises for one syscall case.
pub(super) enum Promise {
    /// A return value and the bytes stored (escaped), canaries intact.
    Stored(i64, &'static str),
    /// Return exactly this, nothing stored.
    Ret(i64),
    /// Fail with this errno.
    Errno(i32),
}

/// The syscall checks: check name, probe case, expected result.
pub(super) const SYSCALL_CHECKS: &[(&str, &str, Promise)] = &[
    (
        "syscall_greeting",
        "root_buf",
        Promise::Stored(12, "Hello World\\x00"),
    ),
    ("syscall_null_buffer", "root_null", Promise::Ret(0)),
    (
        "syscall_null_with_length",
        "root_null_len",
        Promise::Errno(EINVAL),
    ),
    (
        "syscall_short_buffer",
        "root_short",
        Promise::Stored(5, "Hell\\x00"),
    ),
    ("syscall_zero_length", "root_zero_len", Promise::Errno(EINVAL)),
    ("syscall_bad_pointer", "root_bad_pointer", Promise::Errno(EFAULT)),
    ("syscall_flags_reserved", "root_flags", Promise::Errno(EINVAL)),
    ("syscall_unprivileged", "user_buf", Promise::Errno(EPERM)),
    // The guest module: read() gives the greeting as a line of text; the
    // raw ioctl gives the host's answer unmapped.
    (
        "module_read",
        "module_read",
        Promise::Stored(12, "Hello World\\n"),
    ),
    ("module_ioctl_raw", "module_ioctl_raw", Promise::Ret(0)),
    // After kvm.hello_hypercall was turned off: the main guest's VM was
    // created while it was on, so every call still works.
    (
        "param_off_vm_keeps_abi",
        "param_off_buf",
        Promise::Stored(12, "Hello World\\x00"),
    ),
    (
        "param_off_vm_keeps_module_read",
        "param_off_module_read",
        Promise::Stored(12, "Hello World\\n"),
    ),
    (
        "param_off_vm_keeps_module_ioctl_raw",
        "param_off_module_ioctl_raw",
        Promise::Ret(0),
    ),
];

/// The probe's calls after the parameter was turned off; each makes one
/// hello hypercall (read() makes it for its first chunk only, and the
/// probe reads the 12 bytes in one).
pub(super) const PARAM_OFF_CASES: &[&str] = &[
    "param_off_buf",
    "param_off_module_read",
    "param_off_module_ioctl_raw",
];

/// The stock guest's module calls: the same promises as on the patched guest.
pub(super) const STOCK_CHECKS: &[(&str, &str, Promise)] = &[
    (
        "stock_module_read",
        "stock_module_read",
        Promise::Stored(12, "Hello World\\n"),
    ),
    (
        "stock_module_ioctl_raw",
        "stock_module_ioctl_raw",
        Promise::Ret(0),
    ),
];

/// The checks of one table of promises against the calls the probes
/// reported.
pub(super) fn promised_checks(events: &[Event], table: &[(&str, &str, Promise)]) -> Vec<Check> {
    let calls = super::calls(events);
    let host = host_has_param(events);
    table
        .iter()
        .map(|(name, case, want)| {
            syscall_check(name, calls.iter().find(|c| c.case == *case).copied(), want, host)
        })
        .collect()
}

/// Whether L1 has kvm.hello_hypercall, as the agent reported: a host
/// without it has no hypercall, whatever the phase.
pub(super) fn host_has_param(events: &[Event]) -> bool {
    fact_value(events, FactName::HelloHypercallParam)
        .is_some_and(|v| ParamState::parse(v) != Some(ParamState::Absent))
}

/// One call against what the ABI promises; `host` says whether L1 has the
/// parameter, which decides what a refusal most likely means.
pub(super) fn syscall_check(name: &str, call: Option<&Call>, want: &Promise, host: bool) -> Check {
    let Some(c) = call else {
        return Check::new(
            name,
            Verdict::Fail,
            "NO RESULT: the probe did not report this call",
        );
    };
    let got = describe(c);
    let ok = match want {
        Promise::Stored(ret, data) => c.ret == *ret && c.data == *data && c.canary_intact,
        Promise::Ret(ret) => c.ret == *ret,
        // A refused call stores nothing.
        Promise::Errno(errno) => c.ret == -1 && c.errno == *errno && c.canary_intact,
    };
    let wanted = match want {
        Promise::Stored(ret, data) => format!("{ret} with \"{data}\" stored and the canaries intact"),
        Promise::Ret(ret) => ret.to_string(),
        Promise::Errno(errno) => format!("-1, {}, nothing stored", errno_name(*errno)),
    };
    if ok {
        Check::new(name, Verdict::Pass, format!("got {got}"))
    } else {
        Check::new(
            name,
            Verdict::Fail,
            format!("wanted {wanted}, got {got}{}", explain(name, c, host)),
        )
    }
}

pub(super) fn describe(c: &Call) -> String {
    if c.ret == -1 {
        let canary = if c.canary_intact {
            ""
        } else {
            ", yet the buffer was written"
        };
        return format!("-1, {}{canary}", errno_name(c.errno));
    }
    if c.ret == -KVM_ENOSYS {
        return format!("{} (-KVM_ENOSYS: the host does not handle the hypercall)", c.ret);
    }
    let canary = if c.canary_intact {
        ""
    } else {
        ", canaries overwritten"
    };
    format!("{} with \"{}\" stored{canary}", c.ret, c.data)
}

/// What a surprising result of check `name` most likely means, on a host
/// with (`host`) or without the parameter.
pub(super) fn explain(name: &str, c: &Call, host: bool) -> &'static str {
    let refused = (c.ret == -1 && c.errno == EOPNOTSUPP) || c.ret == -KVM_ENOSYS;
    match name {
        _ if c.ret == -1 && c.errno == ENOSYS => {
            ": the guest kernel has no hello_hypercall syscall (unpatched guest)"
        }
        n if n.starts_with("param_off_vm_keeps") && refused && host => {
            ": the host took the hypercall from a VM created while kvm.hello_hypercall was on (it reads the parameter at each call, as v1 did, not once per VM)"
        }
        _ if refused => ": the host answered -KVM_ENOSYS (an unpatched host, or a VM created with the hypercall off)",
        "syscall_flags_reserved" if c.ret >= 0 => {
            ": the flags argument was ignored (a guest syscall without it, as in v1)"
        }
        "syscall_null_with_length" if c.ret >= 0 => {
            ": NULL with a length went through as a call without a buffer (v1); v2 refuses it"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(case: &str, ret: i64, errno: i32, data: &str) -> Call {
        Call {
            case: case.into(),
            ret,
            errno,
            data: data.into(),
            canary_intact: true,
        }
    }

    #[test]
    fn refused_calls_must_store_nothing() {
        let want = Promise::Errno(EINVAL);
        let ok = call("root_flags", -1, EINVAL, "");
        assert_eq!(
            syscall_check("syscall_flags_reserved", Some(&ok), &want, true).verdict,
            Verdict::Pass
        );
        let written = Call {
            canary_intact: false,
            ..ok.clone()
        };
        let c = syscall_check("syscall_flags_reserved", Some(&written), &want, true);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.detail.contains("yet the buffer was written"), "{}", c.detail);
    }

    #[test]
    fn v1_answers_are_explained() {
        let greeting = Promise::Stored(12, "Hello World\\x00");
        let flags = syscall_check(
            "syscall_flags_reserved",
            Some(&call("root_flags", 12, 0, "Hello World\\x00")),
            &Promise::Errno(EINVAL),
            true,
        );
        assert!(
            flags.detail.contains("flags argument was ignored"),
            "{}",
            flags.detail
        );
        let null = syscall_check(
            "syscall_null_with_length",
            Some(&call("root_null_len", 0, 0, "")),
            &Promise::Errno(EINVAL),
            true,
        );
        assert!(null.detail.contains("NULL with a length"), "{}", null.detail);
        let off = syscall_check(
            "param_off_vm_keeps_abi",
            Some(&call("param_off_buf", -1, EOPNOTSUPP, "")),
            &greeting,
            true,
        );
        assert_eq!(off.verdict, Verdict::Fail);
        assert!(
            off.detail.contains("took the hypercall from a VM created while"),
            "{}",
            off.detail
        );
        let raw = syscall_check(
            "param_off_vm_keeps_module_ioctl_raw",
            Some(&call("param_off_module_ioctl_raw", -1000, 0, "")),
            &Promise::Ret(0),
            true,
        );
        assert!(raw.detail.contains("once per VM"), "{}", raw.detail);
        // A host without the series never had the hypercall to take away.
        let unpatched = syscall_check(
            "param_off_vm_keeps_module_ioctl_raw",
            Some(&call("param_off_module_ioctl_raw", -1000, 0, "")),
            &Promise::Ret(0),
            false,
        );
        assert!(
            unpatched.detail.contains("an unpatched host"),
            "{}",
            unpatched.detail
        );
    }
}
