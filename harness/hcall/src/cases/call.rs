//! Running one [`CallCase`]: a fresh VM, the call, and every byte of
//! guest memory checked against what the case wants.

use super::*;

/// Every result but -KVM_EPERM (decided before the handler) needs it.
pub(super) fn needs_handler(c: &CallCase) -> bool {
    c.want.ret() != -KVM_EPERM
}

pub(super) fn call_name(c: &CallCase, native: Encoding) -> String {
    let [a0, a1, a2, a3] = c.args;
    format!(
        "{} cpl{} {}: a0={a0:#x} a1={a1:#x} a2={a2:#x} a3={a3:#x}",
        c.mode.name(),
        if c.user { 3 } else { 0 },
        c.enc.resolve(native).name()
    )
}

pub(super) fn refuse_exits(seen: &RefCell<Vec<UserHypercall>>) -> impl FnMut(&UserHypercall) -> u64 + '_ {
    move |call| {
        seen.borrow_mut().push(*call);
        (-KVM_ENOSYS) as u64
    }
}

/// Explains a run that did not reach its report.
pub(super) fn stop_problem(stop: &Stop) -> Option<String> {
    match stop {
        Stop::Reported(_) => None,
        Stop::Exception(v) => Some(format!("guest took {} instead of reporting", vector_name(*v))),
        Stop::TimedOut => Some("guest did not report before its deadline (hung)".into()),
        Stop::Failed(why) => Some(why.clone()),
    }
}

/// Runs one call in a fresh VM and checks result and memory.
pub(super) fn run_call(ctx: &Ctx, c: &CallCase, cfg: VmConfig) -> Result<CaseVerdict> {
    let mut vm = Vm::new(&ctx.kvm, &ctx.supported, &cfg)?;
    call_in(ctx, &mut vm, c)
}

/// Why a wrong answer is wrong, when it is a known way to be wrong: the
/// words the log needs to point at the cause rather than the symptom.
pub(super) fn hint(c: &CallCase, got: i64) -> &'static str {
    let mask = if c.mode.is_64bit() {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let [a0, a1, a2, a3] = c.args.map(|a| a & mask);
    if got == -KVM_ENOSYS && c.want.ret() != -KVM_ENOSYS {
        " (the handler did not run: a kernel without the series, or the VM has it off)"
    } else if a0 == 0 && a1 != 0 && got == 0 {
        " (a1 ignored: without a buffer the host dropped the size, as the v1 ABI did; v2 refuses it)"
    } else if (a2 != 0 || a3 != 0) && got >= 0 {
        " (a2/a3 ignored: the host must refuse non-zero a2 or a3)"
    } else {
        ""
    }
}

/// Runs one call in `vm` (fresh canaries first) and checks result and
/// memory.
pub(super) fn call_in(ctx: &Ctx, vm: &mut Vm, c: &CallCase) -> Result<CaseVerdict> {
    let native = ctx.native;
    let enc = c.enc.resolve(native);
    vm.fill_canaries()?;
    let before = vm.data_areas()?;
    let seen = RefCell::new(Vec::new());
    let entry = Entry::call(c.mode, c.user, enc, c.args);
    let stop = vm.enter_guest(&entry, &mut refuse_exits(&seen))?;
    let name = call_name(c, native);
    let mut notes = vec![];
    let mut problems = vec![];
    if let Some(p) = stop_problem(&stop) {
        return Ok(CaseVerdict::fail(format!("{name}: {p}")));
    }
    let Stop::Reported(regs) = stop else {
        unreachable!("stop_problem is None only for Reported")
    };
    if !seen.borrow().is_empty() {
        problems.push(format!("{name}: unexpected {}", show_exits(&seen.borrow())));
    }
    let got = guest_result(regs.rax, c.mode);
    let want = c.want.ret();
    if got != want {
        problems.push(format!(
            "{name}: got {}, want {}{}",
            describe(got),
            describe(want),
            hint(c, got)
        ));
    }
    if !c.mode.is_64bit() && regs.rax >> 32 != 0 {
        notes.push(format!(
            "{name}: RAX upper half is {:#x} (KVM writes the 32-bit result zero-extended)",
            regs.rax >> 32
        ));
    }
    // For a 32-bit caller the buffer is where the truncated a0 points.
    let mask = if c.mode.is_64bit() {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let (a0, a1) = (c.args[0] & mask, c.args[1] & mask);
    let changes = diff(&before, &vm.data_areas()?);
    match c.want {
        CallWant::Wrote(bytes) => {
            let hi = a0 + bytes.len() as u64;
            problems.extend(check_writes(&changes, a0, Some(bytes), a0, hi));
        }
        CallWant::Nothing(_) => problems.extend(check_writes(&changes, a0, None, 0, 0)),
        CallWant::Fault => {
            let hi = a0.saturating_add(a1.min(GREETING.len() as u64));
            problems.extend(check_writes(&changes, a0, None, a0, hi));
            if !changes.is_empty() && changes.iter().all(|ch| ch.0 >= a0 && ch.0 < hi) {
                let bytes: Vec<u8> = changes.iter().map(|ch| ch.2).collect();
                notes.push(format!(
                    "{name}: -KVM_EFAULT after a partial copy: {} byte(s) {} landed at {:#x}",
                    bytes.len(),
                    show(&bytes),
                    changes[0].0
                ));
            }
        }
    }
    if enc != native {
        // The hypercall is the program's first instruction, after the
        // ring-3 prologue if there is one.
        let prologue = if c.user {
            guest::enter_user_prologue().len()
        } else {
            0
        };
        let code = vm.code(prologue as u64, 3)?;
        let note = if code == native.bytes() {
            format!(
                "{name}: KVM's fix-up rewrote {} into {} in guest memory",
                enc.name(),
                native.name()
            )
        } else {
            format!("{name}: instruction bytes after the call: {code:02x?}")
        };
        notes.push(note);
    }
    if problems.is_empty() {
        notes.push(format!("{name}: {}", describe(got)));
    }
    Ok(CaseVerdict::from_problems(problems, notes))
}

/// Several verdicts as one: failed if any failed, every line kept with
/// the label of its part.
pub(super) fn combine(parts: Vec<(&str, CaseVerdict)>) -> CaseVerdict {
    let mut outcome = Outcome::Pass;
    let mut diags = vec![];
    for (label, v) in parts {
        match v.outcome {
            Outcome::Fail => outcome = Outcome::Fail,
            Outcome::Skip(why) if outcome == Outcome::Pass => outcome = Outcome::Skip(why),
            _ => {}
        }
        diags.extend(v.diags.into_iter().map(|d| format!("{label}: {d}")));
    }
    CaseVerdict { outcome, diags }
}

pub(super) const fn long_call(args: [u64; 4], want: CallWant) -> CallCase {
    CallCase {
        mode: Mode::Long64,
        user: false,
        enc: Enc::Native,
        args,
        want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_answers_name_their_cause() {
        let sized = long_call([0, 5, 0, 0], CallWant::Nothing(-KVM_EINVAL));
        assert!(hint(&sized, 0).contains("a1 ignored"));
        assert_eq!(hint(&sized, -KVM_EINVAL), "");
        let stale = long_call(STALE_REGS, CallWant::Nothing(-KVM_EINVAL));
        assert!(hint(&stale, 12).contains("a2/a3 ignored"));
        let good = buffer_call(CallWant::Wrote(GREETING));
        assert!(hint(&good, -KVM_ENOSYS).contains("did not run"));
        assert_eq!(hint(&good, 5), "");
        // For a 32-bit caller a size of 2^32 is no size at all.
        let wide = CallCase {
            mode: Mode::Protected32,
            ..long_call([0, 1 << 32, 0, 0], CallWant::Nothing(0))
        };
        assert_eq!(hint(&wide, 0), "");
    }
}
