//! Cases about what turns the handler on and off: kvm.hello_hypercall,
//! the PV CPUID bit and its enforcement, and the VM type.

use super::*;

pub(super) fn param_missing() -> CaseVerdict {
    CaseVerdict::fail(format!(
        "{} is absent: the kernel lacks the series or CONFIG_KVM_HELLO_HYPERCALL",
        proto::param::HELLO_PARAM
    ))
}

pub(super) fn needs_root() -> CaseVerdict {
    CaseVerdict::skip(format!("changing {} needs root", proto::param::HELLO_PARAM))
}

/// The switch, if present and writable, or the verdict that replaces the case.
pub(super) fn writable_param(ctx: &Ctx) -> std::result::Result<&SysfsSwitch, CaseVerdict> {
    match &ctx.param {
        None => Err(param_missing()),
        Some(p) if !p.writable() => Err(needs_root()),
        Some(p) => Ok(p),
    }
}

/// The usual call, 64 bytes at BUF, and what it must do.
pub(super) const fn buffer_call(want: CallWant) -> CallCase {
    long_call([BUF, 64, 0, 0], want)
}

/// A VM created while kvm.hello_hypercall=N has no handler: the call fails
/// with -KVM_ENOSYS and writes nothing, with a buffer and without.
pub(super) fn param_off_new_vm_enosys(ctx: &Ctx) -> Result<CaseVerdict> {
    let param = match writable_param(ctx) {
        Ok(p) => p,
        Err(v) => return Ok(v),
    };
    let _off = param.hold(false)?;
    let buffer = run_call(
        ctx,
        &buffer_call(CallWant::Nothing(-KVM_ENOSYS)),
        VmConfig::default(),
    )?;
    let none = run_call(
        ctx,
        &long_call([0, 0, 0, 0], CallWant::Nothing(-KVM_ENOSYS)),
        VmConfig::default(),
    )?;
    Ok(combine(vec![
        ("VM created with kvm.hello_hypercall=N", buffer),
        ("VM created with kvm.hello_hypercall=N", none),
    ]))
}

/// A VM, created with the switch at `created_with`, then the switch
/// flipped: the VM must keep what it was created with (`kept`), while a VM
/// created after the flip gets the new value (`control`, which shows the
/// flip took effect: without it a switch that silently did nothing would
/// pass the first half).
pub(super) fn flip_after_create(
    ctx: &Ctx,
    created_with: bool,
    kept: CallWant,
    control: CallWant,
) -> Result<CaseVerdict> {
    let param = match writable_param(ctx) {
        Ok(p) => p,
        Err(v) => return Ok(v),
    };
    let mut vm = {
        let _at_creation = param.hold(created_with)?;
        Vm::new(&ctx.kvm, &ctx.supported, &VmConfig::default())?
    };
    let _flipped = param.hold(!created_with)?;
    let existing = call_in(ctx, &mut vm, &buffer_call(kept))?;
    let fresh = run_call(ctx, &buffer_call(control), VmConfig::default())?;
    let (then, now) = (yn(created_with), yn(!created_with));
    let existing_label = format!("VM created with kvm.hello_hypercall={then}, called with {now}");
    let fresh_label = format!("VM created with {now} (control)");
    Ok(combine(vec![
        (existing_label.as_str(), existing),
        (fresh_label.as_str(), fresh),
    ]))
}

/// kvm.hello_hypercall is read when a VM is created: turning it off does
/// not take the hypercall away from a VM that already has it.
pub(super) fn param_off_existing_vm_keeps_abi(ctx: &Ctx) -> Result<CaseVerdict> {
    flip_after_create(
        ctx,
        true,
        CallWant::Wrote(GREETING),
        CallWant::Nothing(-KVM_ENOSYS),
    )
}

/// And turning it on does not give the hypercall to a VM created without.
pub(super) fn param_on_existing_vm_stays_enosys(ctx: &Ctx) -> Result<CaseVerdict> {
    flip_after_create(
        ctx,
        false,
        CallWant::Nothing(-KVM_ENOSYS),
        CallWant::Wrote(GREETING),
    )
}

/// KVM_GET_SUPPORTED_CPUID reports the bit exactly while the handler is on.
pub(super) fn cpuid_bit_follows_param(ctx: &Ctx) -> Result<CaseVerdict> {
    let bit_now = |kvm: &Kvm| -> Result<Option<bool>> {
        let cpuid = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)?;
        Ok(vm::hello_bit(&cpuid))
    };
    let show_bit = |b: Option<bool>| match b {
        Some(true) => "set",
        Some(false) => "clear",
        None => "absent (no leaf 0x40000001)",
    };
    let mut problems = vec![];
    let on = vm::hello_bit(&ctx.supported);
    let param = match &ctx.param {
        None => {
            let mut v = param_missing();
            v.diags.push(format!(
                "KVM_FEATURE_HELLO_HYPERCALL (bit 18) is {}",
                show_bit(on)
            ));
            return Ok(v);
        }
        Some(p) => p,
    };
    if param.get() && on != Some(true) {
        problems.push(format!(
            "kvm.hello_hypercall=Y but bit 18 of 0x40000001 EAX is {}",
            show_bit(on)
        ));
    }
    let mut notes = vec![format!(
        "bit 18 with kvm.hello_hypercall={}: {}",
        yn(param.get()),
        show_bit(on)
    )];
    if param.writable() {
        let off = {
            let _off = param.hold(false)?;
            bit_now(&ctx.kvm)?
        };
        notes.push(format!("bit 18 with kvm.hello_hypercall=N: {}", show_bit(off)));
        if off != Some(false) {
            problems.push(format!("kvm.hello_hypercall=N but bit 18 is {}", show_bit(off)));
        }
        let back = {
            let _on = param.hold(true)?;
            bit_now(&ctx.kvm)?
        };
        if back != Some(true) {
            problems.push(format!(
                "kvm.hello_hypercall=Y again but bit 18 is {}",
                show_bit(back)
            ));
        }
    } else {
        notes.push("not root: the kvm.hello_hypercall=N half is not checked".into());
    }
    Ok(CaseVerdict::from_problems(problems, notes))
}

pub(super) fn yn(b: bool) -> char {
    if b {
        'Y'
    } else {
        'N'
    }
}

/// With KVM_CAP_ENFORCE_PV_FEATURE_CPUID the guest's CPUID bit decides:
/// set, the call works; cleared, it fails with -KVM_ENOSYS.
pub(super) fn enforce_pv_cpuid(ctx: &Ctx) -> Result<CaseVerdict> {
    if let Some(why) = &ctx.handler_unavailable {
        return Ok(CaseVerdict::skip(why.clone()));
    }
    let enforce = |hello_bit| VmConfig {
        cpuid: PvCpuid::Enforce { hello_bit },
        ..VmConfig::default()
    };
    let set = run_call(
        ctx,
        &long_call([BUF, 64, 0, 0], CallWant::Wrote(GREETING)),
        enforce(true),
    )?;
    let cleared = run_call(
        ctx,
        &long_call([BUF, 64, 0, 0], CallWant::Nothing(-KVM_ENOSYS)),
        enforce(false),
    )?;
    Ok(combine(vec![("bit 18 set", set), ("bit 18 cleared", cleared)]))
}

/// Why a VM of type `ty` cannot be created, from KVM_CHECK_EXTENSION's
/// answer for KVM_CAP_VM_TYPES (a bit mask of the types; 0 before 6.8).
pub(super) fn vm_type_unsupported(types: i32, ty: u32, name: &str) -> Option<String> {
    if types <= 0 {
        Some(format!(
            "KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES) = {types}: this KVM has no VM types (Linux < 6.8), so no {name}"
        ))
    } else if types & (1 << ty) == 0 {
        Some(format!(
            "KVM_CAP_VM_TYPES = {types:#x} lacks {name} (bit {ty}): the host kernel needs \
             CONFIG_KVM_SW_PROTECTED_VM=y (under CONFIG_EXPERT) and the TDP MMU"
        ))
    } else {
        None
    }
}

/// KVM cannot write the memory of a protected VM as plaintext, so such a
/// VM never has the handler: -KVM_ENOSYS and nothing written. A default VM
/// is the control that shows the handler is on meanwhile.
pub(super) fn sw_protected_vm_enosys(ctx: &Ctx) -> Result<CaseVerdict> {
    if let Some(why) = &ctx.handler_unavailable {
        return Ok(CaseVerdict::skip(why.clone()));
    }
    let ty = kvm_bindings::KVM_X86_SW_PROTECTED_VM;
    let types = ctx.kvm.check_extension_raw(kvm_bindings::KVM_CAP_VM_TYPES.into());
    if let Some(why) = vm_type_unsupported(types, ty, "KVM_X86_SW_PROTECTED_VM") {
        // A skip, never a pass: nothing was checked.
        return Ok(CaseVerdict::skip(why));
    }
    let cfg = VmConfig {
        vm_type: ty,
        ..VmConfig::default()
    };
    let protected = run_call(ctx, &buffer_call(CallWant::Nothing(-KVM_ENOSYS)), cfg)?;
    let control = run_call(ctx, &buffer_call(CallWant::Wrote(GREETING)), VmConfig::default())?;
    Ok(combine(vec![
        ("KVM_X86_SW_PROTECTED_VM", protected),
        ("KVM_X86_DEFAULT_VM control", control),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_types_are_read_from_the_capability() {
        let why = vm_type_unsupported(0, 1, "KVM_X86_SW_PROTECTED_VM").unwrap();
        assert!(why.contains("no VM types"), "{why}");
        let why = vm_type_unsupported(0b1, 1, "KVM_X86_SW_PROTECTED_VM").unwrap();
        assert!(
            why.contains("= 0x1 lacks") && why.contains("CONFIG_KVM_SW_PROTECTED_VM"),
            "{why}"
        );
        assert_eq!(vm_type_unsupported(0b11, 1, "KVM_X86_SW_PROTECTED_VM"), None);
        assert!(vm_type_unsupported(-1, 1, "x").is_some());
    }
}
