//! Cases about the instruction and the registers: the CPL check, the
//! other vendor's instruction, and stale argument registers.

use super::*;

/// From ring 3 the call is refused and writes nothing; the same call from
/// ring 0 is the control that shows the refusal is about the CPL (KVM's
/// CPL check predates the hypercall, so without the control this case
/// would pass on a kernel without it).
pub(super) fn long_mode_cpl3_eperm(ctx: &Ctx) -> Result<CaseVerdict> {
    let user = CallCase {
        user: true,
        ..long_call([BUF, 64, 0, 0], CallWant::Nothing(-KVM_EPERM))
    };
    let mut parts = vec![("cpl3", run_call(ctx, &user, VmConfig::default())?)];
    if ctx.handler_unavailable.is_none() {
        let control = long_call([BUF, 64, 0, 0], CallWant::Wrote(GREETING));
        parts.push(("cpl0 control", run_call(ctx, &control, VmConfig::default())?));
    }
    Ok(combine(parts))
}

/// With KVM_X86_QUIRK_FIX_HYPERCALL_INSN disabled the other vendor's
/// instruction is a plain #UD, and the native one still works.
pub(super) fn foreign_insn_ud(ctx: &Ctx) -> Result<CaseVerdict> {
    let cfg = VmConfig {
        disable_fix_quirk: true,
        ..VmConfig::default()
    };
    let foreign = ctx.native.other();
    let mut vm = Vm::new(&ctx.kvm, &ctx.supported, &cfg)?;
    vm.fill_canaries()?;
    let before = vm.data_areas()?;
    let seen = RefCell::new(Vec::new());
    let entry = Entry::call(Mode::Long64, false, foreign, [BUF, 64, 0, 0]);
    let stop = vm.enter_guest(&entry, &mut refuse_exits(&seen))?;
    let mut problems = vec![];
    let mut notes = vec![];
    match stop {
        Stop::Exception(6) => notes.push(format!("{}: #UD as expected", foreign.name())),
        Stop::Reported(r) => problems.push(format!(
            "{} returned {} instead of raising #UD",
            foreign.name(),
            describe(r.rax as i64)
        )),
        other => problems.push(format!(
            "{}: {}",
            foreign.name(),
            stop_problem(&other).unwrap_or_default()
        )),
    }
    problems.extend(check_writes(&diff(&before, &vm.data_areas()?), BUF, None, 0, 0));
    if ctx.handler_unavailable.is_none() {
        // The same VM still takes the native instruction.
        let entry = Entry::call(Mode::Long64, false, ctx.native, [BUF, 64, 0, 0]);
        match vm.enter_guest(&entry, &mut refuse_exits(&seen))? {
            Stop::Reported(r) if r.rax == 12 => notes.push(format!("{} afterwards: 12", ctx.native.name())),
            Stop::Reported(r) => problems.push(format!(
                "{} afterwards: got {}, want 12",
                ctx.native.name(),
                describe(r.rax as i64)
            )),
            other => problems.push(format!(
                "{} afterwards: {}",
                ctx.native.name(),
                stop_problem(&other).unwrap_or_default()
            )),
        }
    }
    Ok(CaseVerdict::from_problems(problems, notes))
}

/// What a caller of kvm_hypercall0() may leave in RBX, RCX, RDX and RSI:
/// whatever its code used them for. The worst case is chosen: a0 and a1
/// make a valid 64-byte buffer in the data area, so a host that ignored
/// a2 and a3 would write the greeting there and the case would see it.
pub(super) const STALE_REGS: [u64; 4] = [BUF, 64, 0xffff_8880_0001_2340, 0x0000_7ffc_dead_beef];

/// A caller that loads only RAX, like kvm_hypercall0(), passes whatever the
/// other registers hold; with non-zero a2 and a3 the host must refuse the
/// call (-KVM_EINVAL), write nothing, and leave those registers alone.
pub(super) fn kvm_hypercall0_stale_regs(ctx: &Ctx) -> Result<CaseVerdict> {
    if let Some(why) = &ctx.handler_unavailable {
        return Ok(CaseVerdict::skip(why.clone()));
    }
    let mut vm = Vm::new(&ctx.kvm, &ctx.supported, &VmConfig::default())?;
    vm.fill_canaries()?;
    let before = vm.data_areas()?;
    let seen = RefCell::new(Vec::new());
    // The VMM enters with RBX..RSI zero: only the guest's own code puts
    // the stale values there, as the caller's earlier code would have.
    let entry = Entry {
        code: guest::stale_args_call(ctx.native, abi::KVM_HC_HELLO_HYPERCALL, STALE_REGS),
        ..Entry::call(Mode::Long64, false, ctx.native, [0; 4])
    };
    let stop = vm.enter_guest(&entry, &mut refuse_exits(&seen))?;
    let name = format!(
        "long64 cpl0 {}: RAX=13 only, stale a0..a3 {}",
        ctx.native.name(),
        hex(&STALE_REGS)
    );
    let regs = match stop {
        Stop::Reported(regs) => regs,
        other => {
            return Ok(CaseVerdict::fail(format!(
                "{name}: {}",
                stop_problem(&other).unwrap_or_default()
            )))
        }
    };
    let c = long_call(STALE_REGS, CallWant::Nothing(-KVM_EINVAL));
    let got = regs.rax as i64;
    let mut problems = vec![];
    if got != -KVM_EINVAL {
        problems.push(format!(
            "{name}: got {}, want {}{}",
            describe(got),
            describe(-KVM_EINVAL),
            hint(&c, got)
        ));
    }
    if !seen.borrow().is_empty() {
        problems.push(format!("{name}: unexpected {}", show_exits(&seen.borrow())));
    }
    let after = [regs.rbx, regs.rcx, regs.rdx, regs.rsi];
    if after != STALE_REGS {
        problems.push(format!(
            "{name}: RBX, RCX, RDX, RSI changed to {} (KVM may write only RAX)",
            hex(&after)
        ));
    }
    problems.extend(check_writes(&diff(&before, &vm.data_areas()?), BUF, None, 0, 0));
    let notes = if problems.is_empty() {
        vec![format!("{name}: {}, nothing written", describe(got))]
    } else {
        vec![]
    };
    Ok(CaseVerdict::from_problems(problems, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_registers_are_all_non_zero() {
        assert!(STALE_REGS.iter().all(|&r| r != 0));
        let model = abi::expected(
            &abi::Call {
                args: STALE_REGS,
                long_mode: true,
                cpl: 0,
            },
            abi::Enablement::On,
            &layout::SLOTS,
        );
        assert_eq!((model.ret, model.writes), (-KVM_EINVAL, None));
    }
}
