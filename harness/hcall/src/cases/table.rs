//! The table itself: every case by name, in the order they run.

use super::*;

pub(super) const fn call(name: &'static str, mode: Mode, enc: Enc, args: [u64; 4], want: CallWant) -> Case {
    Case {
        name,
        kind: Kind::Call(CallCase {
            mode,
            user: false,
            enc,
            args,
            want,
        }),
    }
}

/// A long-mode call from ring 0 with the native instruction.
pub(super) const fn long(name: &'static str, args: [u64; 4], want: CallWant) -> Case {
    call(name, Mode::Long64, Enc::Native, args, want)
}

pub(super) const fn custom(name: &'static str, f: fn(&Ctx) -> Result<CaseVerdict>) -> Case {
    Case {
        name,
        kind: Kind::Custom(f),
    }
}

pub(super) const HELL: &[u8] = b"Hell\0";
/// The page-crossing buffer: 6 bytes before a page boundary in the data area.
pub(super) const PAGE_EDGE: u64 = DATA + 2 * PAGE - 6;
/// 6 bytes before the end of slot 0: the rest lies in slot 1.
pub(super) const SLOT_EDGE: u64 = layout::EDGE.gpa - 6;
/// 6 bytes before the end of slot 1: the rest lies in the hole.
pub(super) const HOLE_EDGE: u64 = HOLE - 6;

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    call("real_mode", Mode::Real, Enc::Native, [BUF, 64, 0, 0], CallWant::Wrote(GREETING)),
    call("protected_mode_32", Mode::Protected32, Enc::Native, [BUF, 64, 0, 0], CallWant::Wrote(GREETING)),
    call("protected_mode_32_error_sign_extended", Mode::Protected32, Enc::Native, [BUF, 0, 0, 0], CallWant::Nothing(-KVM_EINVAL)),
    // KVM must truncate a0..a3 to 32 bits for a 32-bit caller: these are
    // BUF, 64, 0 and 0 there.
    call("protected_mode_32_upper_halves_ignored", Mode::Protected32, Enc::Native, [0xdead_0000_0000_0000 | BUF, 1 << 40 | 64, 1 << 32, 1 << 33], CallWant::Wrote(GREETING)),
    long("long_mode_cpl0", [BUF, 64, 0, 0], CallWant::Wrote(GREETING)),
    custom("long_mode_cpl3_eperm", long_mode_cpl3_eperm),
    call("vmcall", Mode::Long64, Enc::Vmcall, [BUF, 64, 0, 0], CallWant::Wrote(GREETING)),
    call("vmmcall", Mode::Long64, Enc::Vmmcall, [BUF, 64, 0, 0], CallWant::Wrote(GREETING)),
    custom("foreign_insn_ud_without_fix_quirk", foreign_insn_ud),
    long("buffer_exact_size", [BUF, 12, 0, 0], CallWant::Wrote(GREETING)),
    long("truncated_to_5", [BUF, 5, 0, 0], CallWant::Wrote(HELL)),
    long("truncated_to_1", [BUF, 1, 0, 0], CallWant::Wrote(b"\0")),
    long("truncated_to_11", [BUF, 11, 0, 0], CallWant::Wrote(b"Hello Worl\0")),
    long("canaries_around_buffer", [BUF, 13, 0, 0], CallWant::Wrote(GREETING)),
    long("oversized_buffer", [BUF, 4096, 0, 0], CallWant::Wrote(GREETING)),
    long("page_crossing", [PAGE_EDGE, 12, 0, 0], CallWant::Wrote(GREETING)),
    long("memslot_crossing", [SLOT_EDGE, 12, 0, 0], CallWant::Wrote(GREETING)),
    long("readonly_memslot_efault", [layout::RO.gpa + 0x40, 12, 0, 0], CallWant::Fault),
    long("past_end_of_memory_efault", [END, 12, 0, 0], CallWant::Fault),
    long("hole_between_memslots_efault", [HOLE + 0x40, 12, 0, 0], CallWant::Fault),
    long("buffer_runs_into_hole_efault", [HOLE_EDGE, 12, 0, 0], CallWant::Fault),
    long("huge_gpa_efault", [0xffff_ffff_ffff_fffa, 12, 0, 0], CallWant::Fault),
    long("zero_size_einval", [BUF, 0, 0, 0], CallWant::Nothing(-KVM_EINVAL)),
    long("nonzero_a2_einval", [BUF, 12, 1, 0], CallWant::Nothing(-KVM_EINVAL)),
    long("nonzero_a3_einval", [BUF, 12, 0, 1], CallWant::Nothing(-KVM_EINVAL)),
    long("no_buffer", [0, 0, 0, 0], CallWant::Nothing(0)),
    long("no_buffer_with_size_einval", [0, 5, 0, 0], CallWant::Nothing(-KVM_EINVAL)),
    custom("kvm_hypercall0_stale_regs_einval", kvm_hypercall0_stale_regs),
    custom("param_off_new_vm_enosys", param_off_new_vm_enosys),
    custom("param_off_existing_vm_keeps_abi", param_off_existing_vm_keeps_abi),
    custom("param_on_existing_vm_stays_enosys", param_on_existing_vm_stays_enosys),
    custom("sw_protected_vm_enosys", sw_protected_vm_enosys),
    custom("cpuid_bit_follows_param", cpuid_bit_follows_param),
    custom("enforce_pv_cpuid", enforce_pv_cpuid),
    custom("enforce_pv_cpuid_before_user_exit", enforce_before_user_exit),
    custom("user_exit_long_mode", user_exit_long_mode),
    custom("user_exit_protected_mode_32", user_exit_protected_mode_32),
    custom("user_exit_cpl3_eperm", user_exit_cpl3),
    custom("user_exit_param_off", user_exit_param_off),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ktap_safe() {
        let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        assert!(names.iter().all(|n| !n.contains('#') && !n.contains(' ')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CASES.len());
    }

    #[test]
    fn call_cases_agree_with_the_model() {
        // The table states its expectations by hand; the fuzzer's model
        // must agree with every one of them.
        for case in CASES {
            let Kind::Call(c) = &case.kind else { continue };
            let model = abi::expected(
                &abi::Call {
                    args: c.args,
                    long_mode: c.mode.is_64bit(),
                    cpl: if c.user { 3 } else { 0 },
                },
                abi::Enablement::On,
                &layout::SLOTS,
            );
            assert_eq!(model.ret, c.want.ret(), "{}", case.name);
            if let CallWant::Wrote(bytes) = c.want {
                assert_eq!(model.writes.map(|w| w.1), Some(bytes.to_vec()), "{}", case.name);
            }
        }
    }
}
