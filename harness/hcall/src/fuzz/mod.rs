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
use crate::check::{guest_result, Change};
use crate::host;
use crate::json::figure;
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

mod draw;
mod judge;

pub(crate) use draw::{describe_draw, draw, Draw};
pub(crate) use judge::judge;

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

    /// Makes draw `d`'s call (`entry`) and judges it: how the guest
    /// stopped, what it changed in memory, and the problems with both.
    fn call(&mut self, entry: &Entry, d: &Draw) -> Result<(Stop, Vec<Change>, Vec<String>)> {
        let stop = self.vm.enter_guest(entry, &mut |_| (-abi::KVM_ENOSYS) as u64)?;
        let changes = self.vm.changes_since(&self.reference)?;
        let problems = judge(d, &stop, &changes, &crate::layout::SLOTS);
        Ok((stop, changes, problems))
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
    /// Draws run again because their guest stopped without reporting.
    retried: u64,
    retries_shown: Vec<String>,
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
    let mut out = Writer::start(crate::json::ktap_stream(opts.json), 2);
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
        let (mut stop, mut changes, mut problems) = target.call(&entry, &d)?;
        // A guest that stopped without reporting is how nested TCG fails
        // (proto/src/stopped.rs): the same draw runs once more in a fresh
        // VM, whose result is judged; the stop is counted and shown.
        if !matches!(stop, Stop::Reported(_)) {
            tally.retried += 1;
            if tally.retries_shown.len() < SHOWN_FAILURES {
                tally
                    .retries_shown
                    .push(format!("{}: {}", describe_draw(i, &d), problems.join("; ")));
            }
            target.renew(&ctx)?;
            (stop, changes, problems) = target.call(&entry, &d)?;
        }

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

    for line in &tally.retries_shown {
        out.diag(&format!(
            "{} in a fresh VM, as its guest stopped: {line}",
            proto::stopped::RETRIED
        ));
    }
    if tally.retried > 0 {
        out.diag(&format!(
            "{} draw(s) retried once because a guest stopped without reporting",
            tally.retried
        ));
    }
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
            "stopped_and_retried": tally.retried,
            "kernel_log_problems": log_problems,
            "first_failures": tally.shown,
        });
        println!("{j}");
    }
    Ok(if out.failed > 0 { 1 } else { 0 })
}
