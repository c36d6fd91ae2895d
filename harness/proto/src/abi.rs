//! The ABI under test, as numbers, written once: the hypercall (as
//! include/uapi/linux/kvm_para.h defines it in the series) for hcall, and
//! the syscall's and the guest module's answers for xtask's verdict.

/// The hypercall number (include/uapi/linux/kvm_para.h).
pub const KVM_HC_HELLO_HYPERCALL: u64 = 13;
/// A number no KVM handles: the `-KVM_ENOSYS` path.
pub const UNKNOWN_HYPERCALL: u64 = 0x7fff;

/// What the host writes: "Hello World" and its NUL, 12 bytes.
pub const GREETING: &[u8; 12] = b"Hello World\0";

// Error codes of include/uapi/linux/kvm_para.h; the hypercall returns
// their negation.
pub const KVM_EPERM: i64 = 1;
pub const KVM_EFAULT: i64 = 14;
pub const KVM_EINVAL: i64 = 22;
pub const KVM_ENOSYS: i64 = 1000;

/// CPUID leaf with the KVM paravirtual feature bits in EAX.
pub const KVM_CPUID_FEATURES: u32 = 0x4000_0001;
/// KVM_FEATURE_HELLO_HYPERCALL: the bit in `KVM_CPUID_FEATURES` EAX.
pub const KVM_FEATURE_HELLO_HYPERCALL: u32 = 18;

/// Flags bit of `kvm_run.hypercall` for a caller in 64-bit mode.
pub const KVM_EXIT_HYPERCALL_LONG_MODE: u64 = 1;

/// The name of a hypercall error code, for messages.
pub fn kvm_error_name(ret: i64) -> Option<&'static str> {
    match ret {
        r if r == -KVM_EPERM => Some("-KVM_EPERM"),
        r if r == -KVM_EFAULT => Some("-KVM_EFAULT"),
        r if r == -KVM_EINVAL => Some("-KVM_EINVAL"),
        r if r == -KVM_ENOSYS => Some("-KVM_ENOSYS"),
        _ => None,
    }
}

/// "-1000 (-KVM_ENOSYS)" or "12".
pub fn describe(ret: i64) -> String {
    match kvm_error_name(ret) {
        Some(name) => format!("{ret} ({name})"),
        None => ret.to_string(),
    }
}

// The errnos the hello_hypercall syscall and the guest module answer with
// (include/uapi/asm-generic/errno-base.h and errno.h).
pub const EPERM: i32 = 1;
pub const EFAULT: i32 = 14;
pub const EINVAL: i32 = 22;
pub const ENOSYS: i32 = 38;
pub const EOPNOTSUPP: i32 = 95;

/// The name of a syscall errno, for messages.
pub fn errno_name(errno: i32) -> String {
    match errno {
        EPERM => "EPERM".into(),
        EFAULT => "EFAULT".into(),
        EINVAL => "EINVAL".into(),
        ENOSYS => "ENOSYS".into(),
        EOPNOTSUPP => "EOPNOTSUPP".into(),
        n => format!("errno {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_names() {
        assert_eq!(describe(-KVM_ENOSYS), "-1000 (-KVM_ENOSYS)");
        assert_eq!(describe(12), "12");
        assert_eq!(errno_name(EOPNOTSUPP), "EOPNOTSUPP");
        assert_eq!(errno_name(7), "errno 7");
    }
}
