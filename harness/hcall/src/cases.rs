//! The case table: one named case per ABI promise. Most cases are one
//! hypercall with an expected result and expected bytes ([`CallCase`]);
//! the rest need a VM option, a VM type, the host switch, their own guest
//! code or a forwarded exit and are small functions. Every case gets a
//! fresh VM whose data areas are full of canaries, and every byte of them
//! is checked afterwards.
//!
//! Cases that turn kvm.hello_hypercall off hold it with a guard that puts
//! it back on every way out (an error, a panic), so one failing case never
//! leaves the next without the handler.

use std::cell::RefCell;

use anyhow::Result;
use kvm_bindings::CpuId;
use kvm_ioctls::Kvm;

use crate::abi::{self, describe, sext32, GREETING, KVM_EFAULT, KVM_EINVAL, KVM_ENOSYS, KVM_EPERM};
use crate::check::{check_writes, diff, guest_result, show};
use crate::exit::{vector_name, UserHypercall};
use crate::guest::{self, Encoding};
use crate::layout::{self, BUF, DATA, END, HOLE, PAGE};
use crate::modes::Mode;
use crate::vm::{self, Entry, PvCpuid, Stop, Vm, VmConfig};
use proto::ktap::Outcome;
use proto::param::SysfsSwitch;

/// What the cases share: the KVM handle, the host facts, the switch.
pub struct Ctx {
    pub kvm: Kvm,
    /// KVM_GET_SUPPORTED_CPUID as read with the handler enabled.
    pub supported: CpuId,
    pub native: Encoding,
    /// `kvm.hello_hypercall`; `None` when the kernel has no such parameter.
    pub param: Option<SysfsSwitch>,
    /// Set when the handler is off and this process cannot turn it on:
    /// cases that need it are skipped with this reason.
    pub handler_unavailable: Option<String>,
}

/// A case's verdict and the lines that explain it.
pub struct Verdict {
    pub outcome: Outcome,
    pub diags: Vec<String>,
}

impl Verdict {
    fn from_problems(problems: Vec<String>, mut notes: Vec<String>) -> Verdict {
        let outcome = if problems.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        };
        notes.extend(problems);
        Verdict {
            outcome,
            diags: notes,
        }
    }

    fn skip(why: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Skip(why.into()),
            diags: vec![],
        }
    }

    fn fail(why: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Fail,
            diags: vec![why.into()],
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Enc {
    Native,
    Vmcall,
    Vmmcall,
}

impl Enc {
    fn resolve(self, native: Encoding) -> Encoding {
        match self {
            Enc::Native => native,
            Enc::Vmcall => Encoding::Vmcall,
            Enc::Vmmcall => Encoding::Vmmcall,
        }
    }
}

/// What one call must do.
#[derive(Clone, Copy, Debug)]
pub enum Want {
    /// Return the length of these bytes and write them at a0, nothing else.
    Wrote(&'static [u8]),
    /// Return this and write nothing at all.
    Nothing(i64),
    /// Return -KVM_EFAULT and write nothing outside [a0, a0 + a1). A copy
    /// that got partway is allowed and reported.
    Fault,
}

impl Want {
    fn ret(self) -> i64 {
        match self {
            Want::Wrote(b) => b.len() as i64,
            Want::Nothing(r) => r,
            Want::Fault => -KVM_EFAULT,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct CallCase {
    pub mode: Mode,
    pub user: bool,
    pub enc: Enc,
    pub args: [u64; 4],
    pub want: Want,
}

pub enum Kind {
    Call(CallCase),
    Custom(fn(&Ctx) -> Result<Verdict>),
}

pub struct Case {
    pub name: &'static str,
    pub kind: Kind,
}

const fn call(name: &'static str, mode: Mode, enc: Enc, args: [u64; 4], want: Want) -> Case {
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
const fn long(name: &'static str, args: [u64; 4], want: Want) -> Case {
    call(name, Mode::Long64, Enc::Native, args, want)
}

const fn custom(name: &'static str, f: fn(&Ctx) -> Result<Verdict>) -> Case {
    Case {
        name,
        kind: Kind::Custom(f),
    }
}

const HELL: &[u8] = b"Hell\0";
/// The page-crossing buffer: 6 bytes before a page boundary in the data area.
const PAGE_EDGE: u64 = DATA + 2 * PAGE - 6;
/// 6 bytes before the end of slot 0: the rest lies in slot 1.
const SLOT_EDGE: u64 = layout::EDGE.gpa - 6;
/// 6 bytes before the end of slot 1: the rest lies in the hole.
const HOLE_EDGE: u64 = HOLE - 6;

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    call("real_mode", Mode::Real, Enc::Native, [BUF, 64, 0, 0], Want::Wrote(GREETING)),
    call("protected_mode_32", Mode::Protected32, Enc::Native, [BUF, 64, 0, 0], Want::Wrote(GREETING)),
    call("protected_mode_32_error_sign_extended", Mode::Protected32, Enc::Native, [BUF, 0, 0, 0], Want::Nothing(-KVM_EINVAL)),
    // KVM must truncate a0..a3 to 32 bits for a 32-bit caller: these are
    // BUF, 64, 0 and 0 there.
    call("protected_mode_32_upper_halves_ignored", Mode::Protected32, Enc::Native, [0xdead_0000_0000_0000 | BUF, 1 << 40 | 64, 1 << 32, 1 << 33], Want::Wrote(GREETING)),
    long("long_mode_cpl0", [BUF, 64, 0, 0], Want::Wrote(GREETING)),
    custom("long_mode_cpl3_eperm", long_mode_cpl3_eperm),
    call("vmcall", Mode::Long64, Enc::Vmcall, [BUF, 64, 0, 0], Want::Wrote(GREETING)),
    call("vmmcall", Mode::Long64, Enc::Vmmcall, [BUF, 64, 0, 0], Want::Wrote(GREETING)),
    custom("foreign_insn_ud_without_fix_quirk", foreign_insn_ud),
    long("buffer_exact_size", [BUF, 12, 0, 0], Want::Wrote(GREETING)),
    long("truncated_to_5", [BUF, 5, 0, 0], Want::Wrote(HELL)),
    long("truncated_to_1", [BUF, 1, 0, 0], Want::Wrote(b"\0")),
    long("truncated_to_11", [BUF, 11, 0, 0], Want::Wrote(b"Hello Worl\0")),
    long("canaries_around_buffer", [BUF, 13, 0, 0], Want::Wrote(GREETING)),
    long("oversized_buffer", [BUF, 4096, 0, 0], Want::Wrote(GREETING)),
    long("page_crossing", [PAGE_EDGE, 12, 0, 0], Want::Wrote(GREETING)),
    long("memslot_crossing", [SLOT_EDGE, 12, 0, 0], Want::Wrote(GREETING)),
    long("readonly_memslot_efault", [layout::RO.gpa + 0x40, 12, 0, 0], Want::Fault),
    long("past_end_of_memory_efault", [END, 12, 0, 0], Want::Fault),
    long("hole_between_memslots_efault", [HOLE + 0x40, 12, 0, 0], Want::Fault),
    long("buffer_runs_into_hole_efault", [HOLE_EDGE, 12, 0, 0], Want::Fault),
    long("huge_gpa_efault", [0xffff_ffff_ffff_fffa, 12, 0, 0], Want::Fault),
    long("zero_size_einval", [BUF, 0, 0, 0], Want::Nothing(-KVM_EINVAL)),
    long("nonzero_a2_einval", [BUF, 12, 1, 0], Want::Nothing(-KVM_EINVAL)),
    long("nonzero_a3_einval", [BUF, 12, 0, 1], Want::Nothing(-KVM_EINVAL)),
    long("no_buffer", [0, 0, 0, 0], Want::Nothing(0)),
    long("no_buffer_with_size_einval", [0, 5, 0, 0], Want::Nothing(-KVM_EINVAL)),
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

/// Runs one case; an error (an ioctl that failed) is a failure with its
/// context chain as the reason.
pub fn run(ctx: &Ctx, case: &Case) -> Verdict {
    let result = match &case.kind {
        Kind::Call(c) => {
            if let (Some(why), true) = (&ctx.handler_unavailable, needs_handler(c)) {
                return Verdict::skip(why.clone());
            }
            run_call(ctx, c, VmConfig::default())
        }
        Kind::Custom(f) => f(ctx),
    };
    result.unwrap_or_else(|e| Verdict::fail(format!("{e:#}")))
}

/// Every result but -KVM_EPERM (decided before the handler) needs it.
fn needs_handler(c: &CallCase) -> bool {
    c.want.ret() != -KVM_EPERM
}

fn call_name(c: &CallCase, native: Encoding) -> String {
    let [a0, a1, a2, a3] = c.args;
    format!(
        "{} cpl{} {}: a0={a0:#x} a1={a1:#x} a2={a2:#x} a3={a3:#x}",
        c.mode.name(),
        if c.user { 3 } else { 0 },
        c.enc.resolve(native).name()
    )
}

fn refuse_exits(seen: &RefCell<Vec<UserHypercall>>) -> impl FnMut(&UserHypercall) -> u64 + '_ {
    move |call| {
        seen.borrow_mut().push(*call);
        (-KVM_ENOSYS) as u64
    }
}

/// Explains a run that did not reach its report.
fn stop_problem(stop: &Stop) -> Option<String> {
    match stop {
        Stop::Reported(_) => None,
        Stop::Exception(v) => Some(format!("guest took {} instead of reporting", vector_name(*v))),
        Stop::TimedOut => Some("guest did not report before its deadline (hung)".into()),
        Stop::Failed(why) => Some(why.clone()),
    }
}

/// Runs one call in a fresh VM and checks result and memory.
fn run_call(ctx: &Ctx, c: &CallCase, cfg: VmConfig) -> Result<Verdict> {
    let mut vm = Vm::new(&ctx.kvm, &ctx.supported, &cfg)?;
    call_in(ctx, &mut vm, c)
}

/// Why a wrong answer is wrong, when it is a known way to be wrong: the
/// words the log needs to point at the cause rather than the symptom.
fn hint(c: &CallCase, got: i64) -> &'static str {
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
fn call_in(ctx: &Ctx, vm: &mut Vm, c: &CallCase) -> Result<Verdict> {
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
        return Ok(Verdict::fail(format!("{name}: {p}")));
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
        Want::Wrote(bytes) => {
            let hi = a0 + bytes.len() as u64;
            problems.extend(check_writes(&changes, a0, Some(bytes), a0, hi));
        }
        Want::Nothing(_) => problems.extend(check_writes(&changes, a0, None, 0, 0)),
        Want::Fault => {
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
    Ok(Verdict::from_problems(problems, notes))
}

/// Several verdicts as one: failed if any failed, every line kept with
/// the label of its part.
fn combine(parts: Vec<(&str, Verdict)>) -> Verdict {
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
    Verdict { outcome, diags }
}

const fn long_call(args: [u64; 4], want: Want) -> CallCase {
    CallCase {
        mode: Mode::Long64,
        user: false,
        enc: Enc::Native,
        args,
        want,
    }
}

/// From ring 3 the call is refused and writes nothing; the same call from
/// ring 0 is the control that shows the refusal is about the CPL (KVM's
/// CPL check predates the hypercall, so without the control this case
/// would pass on a kernel without it).
fn long_mode_cpl3_eperm(ctx: &Ctx) -> Result<Verdict> {
    let user = CallCase {
        user: true,
        ..long_call([BUF, 64, 0, 0], Want::Nothing(-KVM_EPERM))
    };
    let mut parts = vec![("cpl3", run_call(ctx, &user, VmConfig::default())?)];
    if ctx.handler_unavailable.is_none() {
        let control = long_call([BUF, 64, 0, 0], Want::Wrote(GREETING));
        parts.push(("cpl0 control", run_call(ctx, &control, VmConfig::default())?));
    }
    Ok(combine(parts))
}

/// With KVM_X86_QUIRK_FIX_HYPERCALL_INSN disabled the other vendor's
/// instruction is a plain #UD, and the native one still works.
fn foreign_insn_ud(ctx: &Ctx) -> Result<Verdict> {
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
    Ok(Verdict::from_problems(problems, notes))
}

fn param_missing() -> Verdict {
    Verdict::fail(format!(
        "{} is absent: the kernel lacks the series or CONFIG_KVM_HELLO_HYPERCALL",
        proto::param::HELLO_PARAM
    ))
}

fn needs_root() -> Verdict {
    Verdict::skip(format!("changing {} needs root", proto::param::HELLO_PARAM))
}

/// The switch, if present and writable, or the verdict that replaces the case.
fn writable_param(ctx: &Ctx) -> std::result::Result<&SysfsSwitch, Verdict> {
    match &ctx.param {
        None => Err(param_missing()),
        Some(p) if !p.writable() => Err(needs_root()),
        Some(p) => Ok(p),
    }
}

/// The usual call, 64 bytes at BUF, and what it must do.
const fn buffer_call(want: Want) -> CallCase {
    long_call([BUF, 64, 0, 0], want)
}

/// A VM created while kvm.hello_hypercall=N has no handler: the call fails
/// with -KVM_ENOSYS and writes nothing, with a buffer and without.
fn param_off_new_vm_enosys(ctx: &Ctx) -> Result<Verdict> {
    let param = match writable_param(ctx) {
        Ok(p) => p,
        Err(v) => return Ok(v),
    };
    let _off = param.hold(false)?;
    let buffer = run_call(ctx, &buffer_call(Want::Nothing(-KVM_ENOSYS)), VmConfig::default())?;
    let none = run_call(
        ctx,
        &long_call([0, 0, 0, 0], Want::Nothing(-KVM_ENOSYS)),
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
fn flip_after_create(ctx: &Ctx, created_with: bool, kept: Want, control: Want) -> Result<Verdict> {
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
fn param_off_existing_vm_keeps_abi(ctx: &Ctx) -> Result<Verdict> {
    flip_after_create(ctx, true, Want::Wrote(GREETING), Want::Nothing(-KVM_ENOSYS))
}

/// And turning it on does not give the hypercall to a VM created without.
fn param_on_existing_vm_stays_enosys(ctx: &Ctx) -> Result<Verdict> {
    flip_after_create(ctx, false, Want::Nothing(-KVM_ENOSYS), Want::Wrote(GREETING))
}

/// KVM_GET_SUPPORTED_CPUID reports the bit exactly while the handler is on.
fn cpuid_bit_follows_param(ctx: &Ctx) -> Result<Verdict> {
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
    Ok(Verdict::from_problems(problems, notes))
}

fn yn(b: bool) -> char {
    if b {
        'Y'
    } else {
        'N'
    }
}

/// With KVM_CAP_ENFORCE_PV_FEATURE_CPUID the guest's CPUID bit decides:
/// set, the call works; cleared, it fails with -KVM_ENOSYS.
fn enforce_pv_cpuid(ctx: &Ctx) -> Result<Verdict> {
    if let Some(why) = &ctx.handler_unavailable {
        return Ok(Verdict::skip(why.clone()));
    }
    let enforce = |hello_bit| VmConfig {
        cpuid: PvCpuid::Enforce { hello_bit },
        ..VmConfig::default()
    };
    let set = run_call(
        ctx,
        &long_call([BUF, 64, 0, 0], Want::Wrote(GREETING)),
        enforce(true),
    )?;
    let cleared = run_call(
        ctx,
        &long_call([BUF, 64, 0, 0], Want::Nothing(-KVM_ENOSYS)),
        enforce(false),
    )?;
    Ok(combine(vec![("bit 18 set", set), ("bit 18 cleared", cleared)]))
}

/// What a caller of kvm_hypercall0() may leave in RBX, RCX, RDX and RSI:
/// whatever its code used them for. The worst case is chosen: a0 and a1
/// make a valid 64-byte buffer in the data area, so a host that ignored
/// a2 and a3 would write the greeting there and the case would see it.
const STALE_REGS: [u64; 4] = [BUF, 64, 0xffff_8880_0001_2340, 0x0000_7ffc_dead_beef];

/// A caller that loads only RAX, like kvm_hypercall0(), passes whatever the
/// other registers hold; with non-zero a2 and a3 the host must refuse the
/// call (-KVM_EINVAL), write nothing, and leave those registers alone.
fn kvm_hypercall0_stale_regs(ctx: &Ctx) -> Result<Verdict> {
    if let Some(why) = &ctx.handler_unavailable {
        return Ok(Verdict::skip(why.clone()));
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
            return Ok(Verdict::fail(format!(
                "{name}: {}",
                stop_problem(&other).unwrap_or_default()
            )))
        }
    };
    let c = long_call(STALE_REGS, Want::Nothing(-KVM_EINVAL));
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
    Ok(Verdict::from_problems(problems, notes))
}

/// Why a VM of type `ty` cannot be created, from KVM_CHECK_EXTENSION's
/// answer for KVM_CAP_VM_TYPES (a bit mask of the types; 0 before 6.8).
fn vm_type_unsupported(types: i32, ty: u32, name: &str) -> Option<String> {
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
fn sw_protected_vm_enosys(ctx: &Ctx) -> Result<Verdict> {
    if let Some(why) = &ctx.handler_unavailable {
        return Ok(Verdict::skip(why.clone()));
    }
    let ty = kvm_bindings::KVM_X86_SW_PROTECTED_VM;
    let types = ctx.kvm.check_extension_raw(kvm_bindings::KVM_CAP_VM_TYPES.into());
    if let Some(why) = vm_type_unsupported(types, ty, "KVM_X86_SW_PROTECTED_VM") {
        // A skip, never a pass: nothing was checked.
        return Ok(Verdict::skip(why));
    }
    let cfg = VmConfig {
        vm_type: ty,
        ..VmConfig::default()
    };
    let protected = run_call(ctx, &buffer_call(Want::Nothing(-KVM_ENOSYS)), cfg)?;
    let control = run_call(ctx, &buffer_call(Want::Wrote(GREETING)), VmConfig::default())?;
    Ok(combine(vec![
        ("KVM_X86_SW_PROTECTED_VM", protected),
        ("KVM_X86_DEFAULT_VM control", control),
    ]))
}

const USER_ARGS: [u64; 4] = [
    0x0123_4567_89ab_cdef,
    0xfedc_ba98_7654_3210,
    0x1122_3344_5566_7788,
    0x8877_6655_4433_2211,
];
const USER_RET: u64 = 0xcafe_f00d_d00d_feed;

/// What a call in a forwarding VM did.
struct Forwarded {
    stop: Stop,
    exits: Vec<UserHypercall>,
    /// Problems with the data areas (the in-kernel handler must not run).
    written: Vec<String>,
}

/// Runs one call in a VM that forwards the hypercall, answering `USER_RET`.
/// The error side is the verdict that ends the case early.
fn forwarded(
    ctx: &Ctx,
    cfg: VmConfig,
    mode: Mode,
    user: bool,
    args: [u64; 4],
) -> Result<std::result::Result<Forwarded, Verdict>> {
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
            return Ok(Err(Verdict::fail(format!(
                "KVM_CHECK_EXTENSION(KVM_CAP_EXIT_HYPERCALL) = {caps:#x} lacks bit 13, yet enabling it worked"
            ))))
        }
        Err(e) => {
            let mut v = Verdict::fail(format!("{e:#}"));
            v.diags.push(format!(
                "KVM_CHECK_EXTENSION(KVM_CAP_EXIT_HYPERCALL) = {caps:#x}: bit 13 (KVM_HC_HELLO_HYPERCALL) {}",
                if advertised { "set" } else { "missing" }
            ));
            return Ok(Err(v));
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
    Ok(Ok(Forwarded {
        stop,
        exits: seen.into_inner(),
        written,
    }))
}

/// What a forwarded exit carried, for the log.
fn show_exits(exits: &[UserHypercall]) -> String {
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
fn hex(values: &[u64]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:#x}")).collect();
    format!("[{}]", items.join(", "))
}

fn show_stop(stop: &Stop) -> String {
    match stop {
        Stop::Reported(r) => format!("guest RAX {:#x}", r.rax),
        other => stop_problem(other).unwrap_or_default(),
    }
}

/// Checks one forwarded exit against the call that caused it.
fn check_exit(exits: &[UserHypercall], args: [u64; 4], long_mode: bool) -> Vec<String> {
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

fn check_answer(stop: &Stop, want: i64, mode: Mode) -> Vec<String> {
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
fn enforce_before_user_exit(ctx: &Ctx) -> Result<Verdict> {
    let cfg = VmConfig {
        cpuid: PvCpuid::Enforce { hello_bit: false },
        ..VmConfig::default()
    };
    let Forwarded {
        stop,
        exits,
        written: mut problems,
    } = match forwarded(ctx, cfg, Mode::Long64, false, [BUF, 64, 0, 0])? {
        Ok(r) => r,
        Err(v) => return Ok(v),
    };
    if !exits.is_empty() {
        problems.push(format!(
            "{} KVM_EXIT_HYPERCALL exit(s) despite the cleared CPUID bit",
            exits.len()
        ));
    }
    problems.extend(check_answer(&stop, -KVM_ENOSYS, Mode::Long64));
    Ok(Verdict::from_problems(
        problems,
        vec![show_exits(&exits), show_stop(&stop)],
    ))
}

/// The exit carries nr, all four arguments and the long-mode flag; the
/// answer lands in RAX whole. A real buffer is forwarded too, unwritten.
fn user_exit_long_mode(ctx: &Ctx) -> Result<Verdict> {
    let mut problems = vec![];
    let mut notes = vec![];
    for args in [USER_ARGS, [BUF, 64, 0, 0]] {
        let Forwarded { stop, exits, written } =
            match forwarded(ctx, VmConfig::default(), Mode::Long64, false, args)? {
                Ok(r) => r,
                Err(v) => return Ok(v),
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
    Ok(Verdict::from_problems(problems, notes))
}

/// From 32-bit code the exit has the low halves, no long-mode flag, and
/// the answer is truncated to 32 bits.
fn user_exit_protected_mode_32(ctx: &Ctx) -> Result<Verdict> {
    let Forwarded {
        stop,
        exits,
        written: mut problems,
    } = match forwarded(ctx, VmConfig::default(), Mode::Protected32, false, USER_ARGS)? {
        Ok(r) => r,
        Err(v) => return Ok(v),
    };
    problems.extend(check_exit(&exits, USER_ARGS, false));
    problems.extend(check_answer(&stop, sext32(USER_RET), Mode::Protected32));
    Ok(Verdict::from_problems(
        problems,
        vec![show_exits(&exits), show_stop(&stop)],
    ))
}

/// CPL is checked before the exit: -KVM_EPERM and no exit.
fn user_exit_cpl3(ctx: &Ctx) -> Result<Verdict> {
    let Forwarded {
        stop,
        exits,
        written: mut problems,
    } = match forwarded(ctx, VmConfig::default(), Mode::Long64, true, [BUF, 64, 0, 0])? {
        Ok(r) => r,
        Err(v) => return Ok(v),
    };
    if !exits.is_empty() {
        problems.push(format!("{} KVM_EXIT_HYPERCALL exit(s) from CPL 3", exits.len()));
    }
    problems.extend(check_answer(&stop, -KVM_EPERM, Mode::Long64));
    Ok(Verdict::from_problems(
        problems,
        vec![show_exits(&exits), show_stop(&stop)],
    ))
}

/// The exit does not depend on kvm.hello_hypercall.
fn user_exit_param_off(ctx: &Ctx) -> Result<Verdict> {
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
        Ok(r) => r,
        Err(v) => return Ok(v),
    };
    problems.extend(check_exit(&exits, USER_ARGS, true));
    problems.extend(check_answer(&stop, USER_RET as i64, Mode::Long64));
    Ok(Verdict::from_problems(
        problems,
        vec![show_exits(&exits), show_stop(&stop)],
    ))
}

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
            if let Want::Wrote(bytes) = c.want {
                assert_eq!(model.writes.map(|w| w.1), Some(bytes.to_vec()), "{}", case.name);
            }
        }
    }

    #[test]
    fn wrong_answers_name_their_cause() {
        let sized = long_call([0, 5, 0, 0], Want::Nothing(-KVM_EINVAL));
        assert!(hint(&sized, 0).contains("a1 ignored"));
        assert_eq!(hint(&sized, -KVM_EINVAL), "");
        let stale = long_call(STALE_REGS, Want::Nothing(-KVM_EINVAL));
        assert!(hint(&stale, 12).contains("a2/a3 ignored"));
        let good = buffer_call(Want::Wrote(GREETING));
        assert!(hint(&good, -KVM_ENOSYS).contains("did not run"));
        assert_eq!(hint(&good, 5), "");
        // For a 32-bit caller a size of 2^32 is no size at all.
        let wide = CallCase {
            mode: Mode::Protected32,
            ..long_call([0, 1 << 32, 0, 0], Want::Nothing(0))
        };
        assert_eq!(hint(&wide, 0), "");
    }

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
