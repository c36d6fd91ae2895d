//! A reference model of what the in-kernel handler must do with one call,
//! on the ABI's numbers (from [`proto::abi`]). The model is pure: the case
//! table states its expectations explicitly, the fuzzer asks the model.

pub use proto::abi::*;

/// KVM truncates the result to 32 bits for a caller outside 64-bit mode;
/// the guest reads it as a 32-bit signed value.
pub fn sext32(rax: u64) -> i64 {
    i64::from(rax as u32 as i32)
}

/// The set of results the ABI documents for the in-kernel handler.
pub fn is_documented(ret: i64) -> bool {
    (0..=GREETING.len() as i64).contains(&ret)
        || [-KVM_EPERM, -KVM_EFAULT, -KVM_EINVAL, -KVM_ENOSYS].contains(&ret)
}

/// One guest-physical memslot as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    pub gpa: u64,
    pub size: u64,
    pub readonly: bool,
}

impl Slot {
    fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && gpa - self.gpa < self.size
    }
}

/// Whether KVM runs the handler for a call in a given VM at all. It is a
/// property of the VM: kvm.hello_hypercall is read once, when the VM is
/// created, and later changes of the parameter do not reach it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Enablement {
    /// Created while kvm.hello_hypercall=Y, and the guest CPUID allows it
    /// (or is not enforced).
    On,
    /// Created while kvm.hello_hypercall=N.
    ParamOff,
    /// KVM_CAP_ENFORCE_PV_FEATURE_CPUID with KVM_FEATURE_HELLO_HYPERCALL cleared.
    CpuidCleared,
    /// A VM type other than KVM_X86_DEFAULT_VM (KVM_X86_SW_PROTECTED_VM,
    /// SEV, TDX): KVM may not write its memory as plaintext.
    ProtectedVm,
}

/// One hypercall as the guest issues it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Call {
    /// a0..a3 as loaded into RBX, RCX, RDX, RSI (all 64 bits, even when the
    /// caller is not in 64-bit mode: KVM must ignore the upper halves then).
    pub args: [u64; 4],
    pub long_mode: bool,
    pub cpl: u8,
}

/// What the handler must do: the result as the guest reads it (already
/// sign-extended from 32 bits outside 64-bit mode) and the bytes it writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    pub ret: i64,
    /// (gpa, bytes) written into guest memory; for -KVM_EFAULT the pages of
    /// the buffer before the first unwritable one, which
    /// kvm_vcpu_write_guest() copies before it gives up.
    pub writes: Option<(u64, Vec<u8>)>,
}

const PAGE: u64 = 4096;

/// The reference model of the in-kernel handler and of the checks in
/// __kvm_emulate_hypercall() in front of it.
pub fn expected(call: &Call, enabled: Enablement, slots: &[Slot]) -> Expected {
    let mask = if call.long_mode {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let [a0, a1, a2, a3] = call.args.map(|a| a & mask);
    let fail = |e: i64| Expected {
        ret: -e,
        writes: None,
    };
    if call.cpl != 0 {
        return fail(KVM_EPERM);
    }
    if enabled != Enablement::On {
        return fail(KVM_ENOSYS);
    }
    // A buffer and its size come together: an address without a size,
    // or a size without an address, is a caller's mistake.
    if a2 != 0 || a3 != 0 || (a0 == 0) != (a1 == 0) {
        return fail(KVM_EINVAL);
    }
    if a0 == 0 {
        return Expected { ret: 0, writes: None };
    }
    let n = a1.min(GREETING.len() as u64) as usize;
    let mut text = GREETING[..n].to_vec();
    text[n - 1] = 0;

    // Page by page, as kvm_vcpu_write_guest() does: a page outside every
    // writable slot ends the copy with -EFAULT, earlier pages stay written.
    let writable = |gpa: u64| slots.iter().any(|s| !s.readonly && s.contains(gpa));
    let mut done = 0usize;
    while done < n {
        let gpa = a0.wrapping_add(done as u64);
        if gpa < a0 || !writable(gpa) {
            let writes = (done > 0).then(|| (a0, text[..done].to_vec()));
            return Expected {
                ret: -KVM_EFAULT,
                writes,
            };
        }
        let room = (PAGE - gpa % PAGE) as usize;
        done += room.min(n - done);
    }
    Expected {
        ret: n as i64,
        writes: Some((a0, text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOTS: [Slot; 3] = [
        Slot {
            gpa: 0,
            size: 0x10_0000,
            readonly: false,
        },
        Slot {
            gpa: 0x10_0000,
            size: 0x1000,
            readonly: false,
        },
        Slot {
            gpa: 0x20_0000,
            size: 0x1000,
            readonly: true,
        },
    ];

    fn call(args: [u64; 4]) -> Call {
        Call {
            args,
            long_mode: true,
            cpl: 0,
        }
    }

    fn ret(args: [u64; 4]) -> i64 {
        expected(&call(args), Enablement::On, &SLOTS).ret
    }

    #[test]
    fn greeting_truncated_and_terminated() {
        let e = expected(&call([0x1_0000, 5, 0, 0]), Enablement::On, &SLOTS);
        assert_eq!(e.ret, 5);
        assert_eq!(e.writes, Some((0x1_0000, b"Hell\0".to_vec())));
        let one = expected(&call([0x1_0000, 1, 0, 0]), Enablement::On, &SLOTS);
        assert_eq!(one.writes, Some((0x1_0000, vec![0])));
        assert_eq!(ret([0x1_0000, 4096, 0, 0]), 12);
    }

    #[test]
    fn argument_errors() {
        assert_eq!(ret([0x1_0000, 0, 0, 0]), -KVM_EINVAL);
        assert_eq!(ret([0x1_0000, 12, 1, 0]), -KVM_EINVAL);
        assert_eq!(ret([0, 0, 0, 1]), -KVM_EINVAL);
        // v2: a size without a buffer is refused, no longer ignored.
        assert_eq!(ret([0, 5, 0, 0]), -KVM_EINVAL);
        assert_eq!(ret([0, u64::MAX, 0, 0]), -KVM_EINVAL);
        assert_eq!(ret([0, 0, 0, 0]), 0);
    }

    #[test]
    fn memory_errors_and_partial_copies() {
        assert_eq!(ret([0x20_0000, 12, 0, 0]), -KVM_EFAULT);
        assert_eq!(ret([0x18_0000, 12, 0, 0]), -KVM_EFAULT);
        assert_eq!(ret([u64::MAX - 3, 12, 0, 0]), -KVM_EFAULT);
        // Across two adjacent writable slots: fine.
        assert_eq!(ret([0x10_0000 - 6, 12, 0, 0]), 12);
        // From the last writable page into the hole: the first page is copied.
        let e = expected(&call([0x10_1000 - 6, 12, 0, 0]), Enablement::On, &SLOTS);
        assert_eq!(e.ret, -KVM_EFAULT);
        assert_eq!(e.writes, Some((0x10_1000 - 6, b"Hello ".to_vec())));
    }

    #[test]
    fn precedence_cpl_then_enablement_then_arguments() {
        let user = Call {
            cpl: 3,
            ..call([0, 0, 1, 1])
        };
        assert_eq!(expected(&user, Enablement::ParamOff, &SLOTS).ret, -KVM_EPERM);
        let bad = call([0x1_0000, 0, 1, 1]);
        assert_eq!(expected(&bad, Enablement::ParamOff, &SLOTS).ret, -KVM_ENOSYS);
        assert_eq!(expected(&bad, Enablement::CpuidCleared, &SLOTS).ret, -KVM_ENOSYS);
        assert_eq!(expected(&bad, Enablement::ProtectedVm, &SLOTS).ret, -KVM_ENOSYS);
        let good = call([0x1_0000, 12, 0, 0]);
        let e = expected(&good, Enablement::ProtectedVm, &SLOTS);
        assert_eq!((e.ret, e.writes), (-KVM_ENOSYS, None));
    }

    #[test]
    fn upper_halves_ignored_outside_long_mode() {
        let c = Call {
            args: [0xdead_0000_0001_0000, 0x1_0000_0040, 1 << 32, 1 << 33],
            long_mode: false,
            cpl: 0,
        };
        let e = expected(&c, Enablement::On, &SLOTS);
        assert_eq!(e.ret, 12);
        assert_eq!(e.writes.map(|w| w.0), Some(0x1_0000));
        // A size of 2^32 is 0 for a 32-bit caller.
        let zero = Call {
            args: [0x1_0000, 1 << 32, 0, 0],
            ..c
        };
        assert_eq!(expected(&zero, Enablement::On, &SLOTS).ret, -KVM_EINVAL);
        // So without a buffer it is no size at all, and the call is valid.
        let none = Call {
            args: [1 << 32, 1 << 32, 0, 0],
            ..c
        };
        assert_eq!(expected(&none, Enablement::On, &SLOTS).ret, 0);
    }

    #[test]
    fn sign_extension_and_names() {
        assert_eq!(sext32(0x0000_0000_ffff_fc18), -1000);
        assert_eq!(sext32(12), 12);
        assert_eq!(describe(-1000), "-1000 (-KVM_ENOSYS)");
        assert_eq!(describe(12), "12");
        assert!(is_documented(-14) && is_documented(0) && !is_documented(13) && !is_documented(-2));
    }
}
