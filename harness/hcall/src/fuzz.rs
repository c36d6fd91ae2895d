//! `hcall fuzz`: random calls checked against the ABI model.
//!
//! Each iteration draws a mode and CPL, the VM to call in and a0..a3 from
//! structured sets (inside memory, page and slot edges, the hole, the
//! read-only slot, huge values). The VMs differ in what they were created
//! with: kvm.hello_hypercall on or off, a CPUID enforced with the bit
//! cleared, a protected VM type where KVM offers one. KVM reads the
//! parameter only when it creates a VM, so the fuzz also sets it at random
//! before each call, and no VM may notice. After the call the result must
//! be one the ABI documents and the one `abi::expected` predicts, and the
//! data areas must differ from before by exactly the predicted bytes.
//! The kernel log is scanned at the end. Everything derives from the seed.

use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use crate::abi::{self, describe, Enablement};
use crate::cases::Ctx;
use crate::check::{guest_result, show, Change};
use crate::host;
use crate::json::figure;
use crate::layout::{self, DATA, END, HOLE, HOLE_END, PAGE};
use crate::modes::Mode;
use crate::prng::SplitMix64;
use crate::vm::{Entry, PvCpuid, Stop, Vm, VmConfig};
use proto::kmsg::Kmsg;
use proto::ktap::{Outcome, Writer};

/// About 1,800 calls/s nested under TCG: half a second there.
pub const DEFAULT_ITERATIONS: u64 = 1000;
/// Failures printed in full; the rest are only counted.
const SHOWN_FAILURES: usize = 10;

#[derive(Debug, PartialEq)]
pub struct Options {
    pub json: bool,
    pub iterations: u64,
    pub seed: Option<u64>,
}

/// One drawn call: everything needed to run and to reproduce it.
#[derive(Clone, Copy, Debug)]
struct Draw {
    mode: Mode,
    cpl: u8,
    /// The VM called in, by what it was created with.
    enablement: Enablement,
    /// kvm.hello_hypercall at the time of the call, when the fuzz may set
    /// it; the VM must ignore it.
    param_now: Option<bool>,
    args: [u64; 4],
}

fn draw_gpa(r: &mut SplitMix64) -> u64 {
    let ram_end = layout::RAM.gpa + layout::RAM.size;
    let edge_end = layout::EDGE.gpa + layout::EDGE.size;
    let ro = layout::RO.gpa;
    let near = |r: &mut SplitMix64, at: u64| at.wrapping_sub(r.below(16));
    match r.below(11) {
        0 => 0,
        // Anywhere in the data area.
        1 => DATA + r.below(ram_end - DATA - 16),
        // Just before a page boundary inside the data area.
        2 => {
            let boundary = DATA + PAGE * (1 + r.below((ram_end - DATA) / PAGE - 1));
            near(r, boundary)
        }
        // Across the boundary of slots 0 and 1, and from slot 1 into the hole.
        3 => near(r, layout::EDGE.gpa),
        4 => near(r, edge_end),
        5 => HOLE + r.below(HOLE_END - HOLE),
        6 => ro + r.below(layout::RO.size),
        // Running into the read-only slot from the hole, and past the end.
        7 => near(r, ro),
        8 => END + r.below(1 << 20),
        // Huge values, and one that truncates into the data area for a
        // 32-bit caller.
        9 => {
            let top = u64::MAX - r.below(16);
            r.pick(&[top, 1 << 52, 1 << 63, 0xffff_fff0, (1 << 32) | (DATA + 0x100)])
        }
        _ => r.next_u64(),
    }
}

fn draw_size(r: &mut SplitMix64) -> u64 {
    match r.below(8) {
        0 => 0,
        1..=3 => 1 + r.below(13),
        4 => r.pick(&[64, 4096]),
        // 2^32 is 0 for a 32-bit caller.
        5 => r.pick(&[u64::from(u32::MAX), 1 << 32, (1 << 32) | 5]),
        6 => u64::MAX,
        _ => r.next_u64(),
    }
}

fn draw_reserved(r: &mut SplitMix64) -> u64 {
    if r.percent(85) {
        0
    } else {
        let any = r.next_u64();
        r.pick(&[1, 1 << 32, u64::MAX, any])
    }
}

/// Draws a call into one of the VMs in `vms` (half of them into the
/// enabled one, when there is one); `toggle` says whether the parameter
/// may be set.
fn draw(r: &mut SplitMix64, vms: &[Enablement], toggle: bool) -> Draw {
    let (mode, cpl) = match r.below(20) {
        0..=3 => (Mode::Real, 0),
        4..=8 => (Mode::Protected32, 0),
        9..=16 => (Mode::Long64, 0),
        _ => (Mode::Long64, 3),
    };
    let others: Vec<Enablement> = vms.iter().copied().filter(|e| *e != Enablement::On).collect();
    let enablement = if others.is_empty() || (vms.contains(&Enablement::On) && r.percent(50)) {
        Enablement::On
    } else {
        r.pick(&others)
    };
    let param_now = toggle.then(|| r.percent(50));
    let args = [draw_gpa(r), draw_size(r), draw_reserved(r), draw_reserved(r)];
    Draw {
        mode,
        cpl,
        enablement,
        param_now,
        args,
    }
}

fn describe_draw(i: u64, d: &Draw) -> String {
    let [a0, a1, a2, a3] = d.args;
    let now = match d.param_now {
        Some(true) => " (kvm.hello_hypercall now Y)",
        Some(false) => " (kvm.hello_hypercall now N)",
        None => "",
    };
    format!(
        "call {i}: {} cpl{} VM {:?}{now} a0={a0:#x} a1={a1:#x} a2={a2:#x} a3={a3:#x}",
        d.mode.name(),
        d.cpl,
        d.enablement
    )
}

/// The problems with one call's outcome; empty if it matched the model.
fn judge(d: &Draw, stop: &Stop, changes: &[Change]) -> Vec<String> {
    let call = abi::Call {
        args: d.args,
        long_mode: d.mode.is_64bit(),
        cpl: d.cpl,
    };
    let want = abi::expected(&call, d.enablement, &layout::SLOTS);
    let regs = match stop {
        Stop::Reported(regs) => regs,
        other => return vec![format!("guest did not report: {other:?}")],
    };
    let got = guest_result(regs.rax, d.mode);
    let mut problems = vec![];
    if !abi::is_documented(got) {
        problems.push(format!("result {} is not in the documented set", describe(got)));
    }
    if got != want.ret {
        problems.push(format!("got {}, want {}", describe(got), describe(want.ret)));
    }
    let wanted: Vec<(u64, u8)> = match &want.writes {
        Some((at, bytes)) => bytes
            .iter()
            .enumerate()
            .map(|(i, b)| (at + i as u64, *b))
            .collect(),
        None => vec![],
    };
    // Canaries are never greeting bytes, so every wanted byte is a change.
    let got_writes: Vec<(u64, u8)> = changes.iter().map(|c| (c.0, c.2)).collect();
    let unexpected: Vec<&(u64, u8)> = got_writes.iter().filter(|w| !wanted.contains(w)).collect();
    let missing = wanted.iter().filter(|w| !got_writes.contains(w)).count();
    if let Some(first) = unexpected.first() {
        problems.push(format!(
            "{} unexpected byte(s) written, first {:#04x} at {:#x}",
            unexpected.len(),
            first.1,
            first.0
        ));
    }
    if missing > 0 {
        let bytes: Vec<u8> = wanted.iter().map(|w| w.1).collect();
        problems.push(format!("{missing} byte(s) of {} not written", show(&bytes)));
    }
    problems
}

/// A VM per enablement, with the data areas as they must be now.
struct Target {
    enablement: Enablement,
    vm: Vm,
    reference: Vec<(u64, Vec<u8>)>,
    cfg: VmConfig,
    /// The parameter while the VM was created, when the fuzz sets it.
    created_with: Option<bool>,
}

impl Target {
    fn new(ctx: &Ctx, enablement: Enablement, cfg: VmConfig, created_with: Option<bool>) -> Result<Target> {
        let hold = match (&ctx.param, created_with) {
            (Some(p), Some(on)) => Some(p.hold(on)?),
            _ => None,
        };
        let mut vm = Vm::new(&ctx.kvm, &ctx.supported, &cfg)
            .with_context(|| format!("create the fuzz's {enablement:?} VM"))?;
        drop(hold);
        vm.fill_canaries()?;
        let reference = vm.data_areas()?;
        Ok(Target {
            enablement,
            vm,
            reference,
            cfg,
            created_with,
        })
    }

    /// A fresh VM made the way this one was.
    fn renew(&mut self, ctx: &Ctx) -> Result<()> {
        *self = Target::new(ctx, self.enablement, self.cfg, self.created_with)?;
        Ok(())
    }

    /// Puts back the bytes a call changed, so every call starts from the
    /// same canaries.
    fn restore(&mut self, changes: &[Change]) -> Result<()> {
        for c in changes {
            self.vm.write(c.0, &[c.1])?;
        }
        Ok(())
    }
}

/// The VMs the fuzz calls in, each labelled with the enablement the model
/// must assume for it. With a switch it may set, the fuzz creates one VM
/// with the parameter on and one with it off; otherwise every VM has what
/// the host has, and one label says which. The notes say what was left out.
fn targets(ctx: &Ctx, can_toggle: bool) -> Result<(Vec<Target>, Vec<String>)> {
    let fixed_off = !can_toggle && ctx.param.as_ref().is_some_and(|p| !p.get());
    let on = can_toggle.then_some(true);
    let mut targets = vec![];
    if fixed_off {
        // Whatever else a VM has, created now it has no handler.
        targets.push(Target::new(ctx, Enablement::ParamOff, VmConfig::default(), None)?);
        return Ok((targets, vec![]));
    }
    targets.push(Target::new(ctx, Enablement::On, VmConfig::default(), on)?);
    if can_toggle {
        targets.push(Target::new(
            ctx,
            Enablement::ParamOff,
            VmConfig::default(),
            Some(false),
        )?);
    }
    let cleared = VmConfig {
        cpuid: PvCpuid::Enforce { hello_bit: false },
        ..VmConfig::default()
    };
    targets.push(Target::new(ctx, Enablement::CpuidCleared, cleared, on)?);
    let protected = kvm_bindings::KVM_X86_SW_PROTECTED_VM;
    let types = ctx.kvm.check_extension_raw(kvm_bindings::KVM_CAP_VM_TYPES.into());
    let mut notes = vec![];
    if types > 0 && types & (1 << protected) != 0 {
        let cfg = VmConfig {
            vm_type: protected,
            ..VmConfig::default()
        };
        // The case sw_protected_vm_enosys fails on this; the fuzz goes on
        // with the other VMs.
        match Target::new(ctx, Enablement::ProtectedVm, cfg, on) {
            Ok(t) => targets.push(t),
            Err(e) => notes.push(format!("no KVM_X86_SW_PROTECTED_VM VM: {e:#}")),
        }
    } else {
        notes.push(format!(
            "KVM_CAP_VM_TYPES = {types:#x}: no KVM_X86_SW_PROTECTED_VM VM to call into"
        ));
    }
    Ok((targets, notes))
}

#[derive(Default)]
struct Tally {
    calls: u64,
    failures: u64,
    shown: Vec<String>,
    by_result: std::collections::BTreeMap<i64, u64>,
    by_mode: std::collections::BTreeMap<String, u64>,
    partial_efault_copies: u64,
}

pub fn main(dev: &str, opts: &Options) -> i32 {
    let kvm = match host::open_kvm(dev) {
        Ok(k) => k,
        Err(host::NoKvm(why)) => {
            print!("{}", proto::ktap::skip_all(&why));
            return proto::ktap::EXIT_SKIP;
        }
    };
    match fuzz(kvm, opts) {
        Ok(code) => code,
        Err(e) => {
            println!("Bail out! {e:#}");
            1
        }
    }
}

fn fuzz(kvm: kvm_ioctls::Kvm, opts: &Options) -> Result<i32> {
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    // With --json, stdout carries only the JSON; the KTAP goes to stderr.
    let stream: Box<dyn std::io::Write> = if opts.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut out = Writer::start(stream, 2);
    let (ctx, notes) = host::prepare(kvm)?;
    for n in &notes {
        out.diag(n);
    }
    let can_toggle = ctx.param.as_ref().is_some_and(|p| p.writable());
    let mut kmsg = Kmsg::open_at_end();
    let (mut targets, left_out) = targets(&ctx, can_toggle)?;
    for n in &left_out {
        out.diag(n);
    }
    let vms: Vec<Enablement> = targets.iter().map(|t| t.enablement).collect();
    out.diag(&format!(
        "seed {seed} ({seed:#x}), {} iterations; VMs {vms:?}; kvm.hello_hypercall {}",
        opts.iterations,
        if can_toggle {
            "set at random before each call"
        } else {
            "fixed"
        }
    ));
    let mut rng = SplitMix64::new(seed);
    let mut tally = Tally::default();
    let start = Instant::now();

    for i in 0..opts.iterations {
        let d = draw(&mut rng, &vms, can_toggle);
        if let (Some(p), Some(on)) = (&ctx.param, d.param_now) {
            if p.get() != on {
                p.set(on)?;
            }
        }
        let target = targets
            .iter_mut()
            .find(|t| t.enablement == d.enablement)
            .context("a draw for a VM the fuzz does not have")?;
        let entry = Entry::call(d.mode, d.cpl == 3, ctx.native, d.args);
        let stop = target
            .vm
            .enter_guest(&entry, &mut |_| (-abi::KVM_ENOSYS) as u64)?;
        let changes = target.vm.changes_since(&target.reference)?;
        let problems = judge(&d, &stop, &changes);

        tally.calls += 1;
        *tally
            .by_mode
            .entry(format!("{}_cpl{}", d.mode.name(), d.cpl))
            .or_default() += 1;
        if let Stop::Reported(r) = &stop {
            let got = guest_result(r.rax, d.mode);
            *tally.by_result.entry(got).or_default() += 1;
            if got == -abi::KVM_EFAULT && !changes.is_empty() {
                tally.partial_efault_copies += 1;
            }
        }
        if !problems.is_empty() {
            tally.failures += 1;
            if tally.shown.len() < SHOWN_FAILURES {
                tally
                    .shown
                    .push(format!("{}: {}", describe_draw(i, &d), problems.join("; ")));
            }
        }
        if matches!(stop, Stop::Reported(_)) {
            target.restore(&changes)?;
        } else {
            // A VM that hung or crashed is replaced, not reused.
            target.renew(&ctx)?;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Puts kvm.hello_hypercall back before the log is read.
    drop(ctx);

    for line in &tally.shown {
        out.diag(line);
    }
    let results: Vec<String> = tally
        .by_result
        .iter()
        .map(|(r, n)| format!("{}: {n}", describe(*r)))
        .collect();
    out.diag(&format!("results: {}", results.join(", ")));
    out.diag(&format!(
        "{} call(s) returned -KVM_EFAULT after a partial copy",
        tally.partial_efault_copies
    ));
    let name = format!("fuzz: {} calls, seed {seed}", tally.calls);
    if tally.failures > 0 {
        out.diag(&format!(
            "{} of {} calls did not match the ABI",
            tally.failures, tally.calls
        ));
    }
    out.result(
        &name,
        &if tally.failures == 0 {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
    );

    let (log_outcome, log_problems) = match kmsg.as_mut().map_err(|e| format!("{e:#}")).and_then(|k| {
        k.read_new()
            .context("read the kernel log")
            .map_err(|e| format!("{e:#}"))
    }) {
        Ok(records) => {
            let bad: Vec<String> = records
                .into_iter()
                .filter(|r| r.is_trouble())
                .map(|r| r.text)
                .collect();
            for b in &bad {
                out.diag(&format!("kernel: {b}"));
            }
            (
                if bad.is_empty() {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                },
                json!(bad),
            )
        }
        Err(why) => (Outcome::Skip(why), Value::Null),
    };
    out.result("fuzz: kernel log has no WARNING, BUG or Oops", &log_outcome);
    out.totals();

    if opts.json {
        let by_result: Map<String, Value> = tally
            .by_result
            .iter()
            .map(|(r, n)| (r.to_string(), json!(n)))
            .collect();
        let j = json!({
            "calls": tally.calls,
            "seed": seed,
            "failures": tally.failures,
            "seconds": figure(elapsed),
            "calls_per_sec": figure(tally.calls as f64 / elapsed),
            "by_result": by_result,
            "by_mode": tally.by_mode,
            "partial_efault_copies": tally.partial_efault_copies,
            "kernel_log_problems": log_problems,
            "first_failures": tally.shown,
        });
        println!("{j}");
    }
    Ok(if out.failed > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_regs;

    fn reported(rax: u64) -> Stop {
        Stop::Reported(kvm_regs {
            rax,
            ..Default::default()
        })
    }

    fn d(mode: Mode, args: [u64; 4]) -> Draw {
        Draw {
            mode,
            cpl: 0,
            enablement: Enablement::On,
            param_now: None,
            args,
        }
    }

    fn greeting_at(at: u64, n: usize) -> Vec<Change> {
        let mut text = abi::GREETING[..n].to_vec();
        text[n - 1] = 0;
        text.iter()
            .enumerate()
            .map(|(i, b)| (at + i as u64, 0xaa, *b))
            .collect()
    }

    #[test]
    fn judge_accepts_the_model() {
        let call = d(Mode::Long64, [DATA, 5, 0, 0]);
        assert!(judge(&call, &reported(5), &greeting_at(DATA, 5)).is_empty());
        // 32-bit: zero-extended -22 in RAX is -22.
        let bad = d(Mode::Protected32, [DATA, 0, 0, 0]);
        assert!(judge(&bad, &reported(0xffff_ffea), &[]).is_empty());
    }

    #[test]
    fn judge_rejects_deviations() {
        let call = d(Mode::Long64, [DATA, 5, 0, 0]);
        let p = judge(&call, &reported(12), &greeting_at(DATA, 12));
        assert!(p.iter().any(|x| x.contains("got 12, want 5")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("unexpected byte")), "{p:?}");
        let p = judge(&call, &reported(5), &[]);
        assert!(p.iter().any(|x| x.contains("not written")), "{p:?}");
        let p = judge(&call, &reported(13), &greeting_at(DATA, 5));
        assert!(p.iter().any(|x| x.contains("not in the documented set")), "{p:?}");
        assert!(!judge(&call, &Stop::TimedOut, &[]).is_empty());
    }

    #[test]
    fn judge_follows_the_v2_rules() {
        // A size without a buffer is refused now; the v1 answer (0) fails.
        let sized = d(Mode::Long64, [0, 5, 0, 0]);
        assert!(judge(&sized, &reported((-abi::KVM_EINVAL) as u64), &[]).is_empty());
        let p = judge(&sized, &reported(0), &[]);
        assert!(p.iter().any(|x| x.contains("got 0, want -22")), "{p:?}");
        // A VM created with the parameter off stays off, whatever it is now.
        let off = Draw {
            enablement: Enablement::ParamOff,
            param_now: Some(true),
            ..d(Mode::Long64, [DATA, 12, 0, 0])
        };
        assert!(judge(&off, &reported((-abi::KVM_ENOSYS) as u64), &[]).is_empty());
        let on = Draw {
            enablement: Enablement::On,
            param_now: Some(false),
            ..off
        };
        assert!(judge(&on, &reported(12), &greeting_at(DATA, 12)).is_empty());
        let protected = Draw {
            enablement: Enablement::ProtectedVm,
            ..on
        };
        let p = judge(&protected, &reported(12), &greeting_at(DATA, 12));
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn draws_reproduce() {
        let vms = [Enablement::On, Enablement::ParamOff, Enablement::CpuidCleared];
        let run = || -> Vec<String> {
            let mut r = SplitMix64::new(7);
            (0..50)
                .map(|i| describe_draw(i, &draw(&mut r, &vms, true)))
                .collect()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn draws_use_only_the_vms_there_are() {
        let mut r = SplitMix64::new(7);
        let draws: Vec<Draw> = (0..400)
            .map(|_| draw(&mut r, &[Enablement::On, Enablement::CpuidCleared], false))
            .collect();
        assert!(draws
            .iter()
            .all(|d| d.enablement != Enablement::ParamOff && d.param_now.is_none()));
        let on = draws.iter().filter(|d| d.enablement == Enablement::On).count();
        assert!((100..300).contains(&on), "{on} of 400 in the enabled VM");
        // A host whose parameter is fixed off has one VM, and every call goes there.
        let mut r = SplitMix64::new(7);
        assert!(
            (0..50).all(|_| draw(&mut r, &[Enablement::ParamOff], false).enablement == Enablement::ParamOff)
        );
        // With a switch, the parameter is set both ways.
        let mut r = SplitMix64::new(7);
        let now: Vec<Option<bool>> = (0..50)
            .map(|_| draw(&mut r, &[Enablement::On], true).param_now)
            .collect();
        assert!(now.contains(&Some(true)) && now.contains(&Some(false)));
    }
}
