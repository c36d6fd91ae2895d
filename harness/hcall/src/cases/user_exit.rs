//! Cases about the hypercall forwarded to userspace
//! (KVM_CAP_EXIT_HYPERCALL) instead of handled in the kernel.

use super::*;

pub(super) const USER_ARGS: [u64; 4] = [
    0x0123_4567_89ab_cdef,
    0xfedc_ba98_7654_3210,
    0x1122_3344_5566_7788,
    0x8877_6655_4433_2211,
];
pub(super) const USER_RET: u64 = 0xcafe_f00d_d00d_feed;

/// What a call in a forwarding VM did.
pub(super) struct Forwarded {
    stop: Stop,
    exits: Vec<UserHypercall>,
    /// Problems with the data areas (the in-kernel handler must not run).
    written: Vec<String>,
}

/// A forwarded call as it went, or the verdict that ended its case before
/// the call could run.
pub(super) enum Forwarding {
    Ran(Forwarded),
    Ended(CaseVerdict),
}

/// Runs one call in a VM that forwards the hypercall, answering `USER_RET`.
pub(super) fn forwarded(
    ctx: &Ctx,
    cfg: VmConfig,
    mode: Mode,
    user: bool,
    args: [u64; 4],
) -> Result<Forwarding> {
    let caps = ctx
        .kvm
        .check_extension_raw(kvm_bindings::KVM_CAP_EXIT_HYPERCALL.into());
    let advertised = caps & (1 << abi::KVM_HC_HELLO_HYPERCALL) != 0;
    let cfg = VmConfig {
        exit_hypercall: true,
        ..cfg
    };
    // Enabling is tried even when KVM_CHECK_EXTENSION lacks bit 13: its
    // EINVAL is the negative control on a kernel without the series.
    let mut vm = match Vm::new(&ctx.kvm, &ctx.supported, &cfg) {
        Ok(vm) if advertised => vm,
        Ok(_) => {
            return Ok(Forwarding::Ended(CaseVerdict::fail(format!(
                "KVM_CHECK_EXTENSION(KVM_CAP_EXIT_HYPERCALL) = {caps:#x} lacks bit 13, yet enabling it worked"
            ))))
        }
        Err(e) => {
            let mut v = CaseVerdict::fail(format!("{e:#}"));
            v.diags.push(format!(
                "KVM_CHECK_EXTENSION(KVM_CAP_EXIT_HYPERCALL) = {caps:#x}: bit 13 (KVM_HC_HELLO_HYPERCALL) {}",
                if advertised { "set" } else { "missing" }
            ));
            return Ok(Forwarding::Ended(v));
        }
    };
    vm.fill_canaries()?;
    let before = vm.data_areas()?;
    let seen = RefCell::new(Vec::new());
    let mut answer = |call: &UserHypercall| {
        seen.borrow_mut().push(*call);
        USER_RET
    };
    let entry = Entry::call(mode, user, ctx.native, args);
    let stop = vm.enter_guest(&entry, &mut answer)?;
    let written = check_writes(&diff(&before, &vm.data_areas()?), args[0], None, 0, 0);
    Ok(Forwarding::Ran(Forwarded {
        stop,
        exits: seen.into_inner(),
        written,
    }))
}

/// What a forwarded exit carried, for the log.
pub(super) fn show_exits(exits: &[UserHypercall]) -> String {
    if exits.is_empty() {
        return "no KVM_EXIT_HYPERCALL".into();
    }
    let shown: Vec<String> = exits
        .iter()
        .map(|e| {
            format!(
                "KVM_EXIT_HYPERCALL nr {} args {} flags {:#x}",
                e.nr,
                hex(&e.args[..4]),
                e.flags
            )
        })
        .collect();
    shown.join("; ")
}

/// "[0x1, 0x2]" on one line ({:#x?} would pretty-print over several).
pub(super) fn hex(values: &[u64]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:#x}")).collect();
    format!("[{}]", items.join(", "))
}

pub(super) fn show_stop(stop: &Stop) -> String {
    match stop {
        Stop::Reported(r) => format!("guest RAX {:#x}", r.rax),
        other => stop_problem(other).unwrap_or_default(),
    }
}

/// Checks one forwarded exit against the call that caused it.
pub(super) fn check_exit(exits: &[UserHypercall], args: [u64; 4], long_mode: bool) -> Vec<String> {
    let mut problems = vec![];
    let [e] = exits else {
        return vec![format!("{} KVM_EXIT_HYPERCALL exits, want 1", exits.len())];
    };
    if e.nr != abi::KVM_HC_HELLO_HYPERCALL {
        problems.push(format!("exit nr {}, want 13", e.nr));
    }
    let mask = if long_mode { u64::MAX } else { u64::from(u32::MAX) };
    let want = args.map(|a| a & mask);
    if e.args[..4] != want {
        problems.push(format!("exit args {}, want {}", hex(&e.args[..4]), hex(&want)));
    }
    let flag = e.flags & abi::KVM_EXIT_HYPERCALL_LONG_MODE != 0;
    if flag != long_mode {
        problems.push(format!(
            "KVM_EXIT_HYPERCALL_LONG_MODE is {}, want {} (flags {:#x})",
            if flag { "set" } else { "clear" },
            if long_mode { "set" } else { "clear" },
            e.flags
        ));
    }
    problems
}

pub(super) fn check_answer(stop: &Stop, want: i64, mode: Mode) -> Vec<String> {
    match stop {
        Stop::Reported(r) => {
            let got = guest_result(r.rax, mode);
            if got == want {
                vec![]
            } else {
                vec![format!(
                    "guest RAX {:#x} ({}), want {}",
                    r.rax,
                    describe(got),
                    describe(want)
                )]
            }
        }
        other => vec![stop_problem(other).unwrap_or_default()],
    }
}

/// The cleared CPUID bit is checked before the exit: no exit, -KVM_ENOSYS.
pub(super) fn enforce_before_user_exit(ctx: &Ctx) -> Result<CaseVerdict> {
    let cfg = VmConfig {
        cpuid: PvCpuid::Enforce { hello_bit: false },
        ..VmConfig::default()
    };
    let Forwarded {
        stop,
        exits,
        written: mut problems,
    } = match forwarded(ctx, cfg, Mode::Long64, false, [BUF, 64, 0, 0])? {
        Forwarding::Ran(r) => r,
        Forwarding::Ended(v) => return Ok(v),
    };
    if !exits.is_empty() {
        problems.push(format!(
            "{} KVM_EXIT_HYPERCALL exit(s) despite the cleared CPUID bit",
            exits.len()
        ));
    }
    problems.extend(check_answer(&stop, -KVM_ENOSYS, Mode::Long64));
    Ok(CaseVerdict::from_problems(
        problems,
        vec![show_exits(&exits), show_stop(&stop)],
    ))
}

/// The exit carries nr, all four arguments and the long-mode flag; the
/// answer lands in RAX whole. A real buffer is forwarded too, unwritten.
pub(super) fn user_exit_long_mode(ctx: &Ctx) -> Result<CaseVerdict> {
    let mut problems = vec![];
    let mut notes = vec![];
    for args in [USER_ARGS, [BUF, 64, 0, 0]] {
        let Forwarded { stop, exits, written } =
            match forwarded(ctx, VmConfig::default(), Mode::Long64, false, args)? {
                Forwarding::Ran(r) => r,
                Forwarding::Ended(v) => return Ok(v),
            };
        let tag = format!("a0={:#x}", args[0]);
        notes.push(format!("{tag}: {}; {}", show_exits(&exits), show_stop(&stop)));
        problems.extend(
            check_exit(&exits, args, true)
                .into_iter()
                .map(|p| format!("{tag}: {p}")),
        );
        problems.extend(
            check_answer(&stop, USER_RET as i64, Mode::Long64)
                .into_iter()
                .map(|p| format!("{tag}: {p}")),
        );
        problems.extend(
            written
                .into_iter()
                .map(|p| format!("{tag}: in-kernel handler ran too: {p}")),
        );
    }
    Ok(CaseVerdict::from_problems(problems, notes))
}

/// From 32-bit code the exit has the low halves, no long-mode flag, and
/// the answer is truncated to 32 bits.
pub(super) fn user_exit_protected_mode_32(ctx: &Ctx) -> Result<CaseVerdict> {
    let Forwarded {
        stop,
        exits,
        written: mut problems,
    } = match forwarded(ctx, VmConfig::default(), Mode::Protected32, false, USER_ARGS)? {
        Forwarding::Ran(r) => r,
        Forwarding::Ended(v) => return Ok(v),
    };
    problems.extend(check_exit(&exits, USER_ARGS, false));
    problems.extend(check_answer(&stop, sext32(USER_RET), Mode::Protected32));
    Ok(CaseVerdict::from_problems(
        problems,
        vec![show_exits(&exits), show_stop(&stop)],
    ))
}

/// CPL is checked before the exit: -KVM_EPERM and no exit.
pub(super) fn user_exit_cpl3(ctx: &Ctx) -> Result<CaseVerdict> {
    let Forwarded {
        stop,
        exits,
        written: mut problems,
    } = match forwarded(ctx, VmConfig::default(), Mode::Long64, true, [BUF, 64, 0, 0])? {
        Forwarding::Ran(r) => r,
        Forwarding::Ended(v) => return Ok(v),
    };
    if !exits.is_empty() {
        problems.push(format!("{} KVM_EXIT_HYPERCALL exit(s) from CPL 3", exits.len()));
    }
    problems.extend(check_answer(&stop, -KVM_EPERM, Mode::Long64));
    Ok(CaseVerdict::from_problems(
        problems,
        vec![show_exits(&exits), show_stop(&stop)],
    ))
}

/// The exit does not depend on kvm.hello_hypercall.
pub(super) fn user_exit_param_off(ctx: &Ctx) -> Result<CaseVerdict> {
    let param = match writable_param(ctx) {
        Ok(p) => p,
        Err(v) => return Ok(v),
    };
    // The VM is created while the switch is off, so it has no handler.
    let _off = param.hold(false)?;
    let Forwarded {
        stop,
        exits,
        written: mut problems,
    } = match forwarded(ctx, VmConfig::default(), Mode::Long64, false, USER_ARGS)? {
        Forwarding::Ran(r) => r,
        Forwarding::Ended(v) => return Ok(v),
    };
    problems.extend(check_exit(&exits, USER_ARGS, true));
    problems.extend(check_answer(&stop, USER_RET as i64, Mode::Long64));
    Ok(CaseVerdict::from_problems(
        problems,
        vec![show_exits(&exits), show_stop(&stop)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_exits_are_compared_exactly() {
        let good = UserHypercall {
            nr: 13,
            args: [USER_ARGS[0], USER_ARGS[1], USER_ARGS[2], USER_ARGS[3], 0, 0],
            flags: 1,
        };
        assert!(check_exit(&[good], USER_ARGS, true).is_empty());
        assert_eq!(check_exit(&[], USER_ARGS, true).len(), 1);
        let short = UserHypercall {
            args: USER_ARGS
                .map(|a| a & 0xffff_ffff)
                .into_iter()
                .chain([0, 0])
                .collect::<Vec<_>>()
                .try_into()
                .unwrap(),
            flags: 0,
            ..good
        };
        assert!(check_exit(&[short], USER_ARGS, false).is_empty());
        let p = check_exit(&[good], USER_ARGS, false);
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
