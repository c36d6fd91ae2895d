//! `hcall soak`: a long run of fuzzed calls from several vCPUs at once,
//! with memslot edits between calls, while kvm.hello_hypercall flips.
//!
//! Each worker is a process of its own (hcall re-run with `--worker`),
//! with its own VM and vCPU: the KVM_RUN deadline is a process-wide
//! alarm, so one vCPU per process keeps every kick on the right thread.
//! The parent turns the parameter on, waits until every worker has
//! created its VM, then flips the parameter every millisecond until they
//! are done: the VMs were all created with it on, so no call may notice.
//!
//! A worker draws calls as the fuzz does (real, 32-bit and long mode; CPL
//! 0 and 3; buffers at page and slot edges, in the hole, read-only,
//! huge). A 64-bit CPL 0 draw runs as a burst: the guest repeats the call
//! in a loop and compares each result with the first, so most calls cost
//! one exit to the host kernel and none to this process. Every few draws
//! the worker moves or deletes slot 1, the page after RAM, and aims some
//! calls at where it now is. After each draw the result must be what the
//! ABI model predicts for the memslots as they are, and the data areas
//! must differ by exactly the predicted bytes, which are then put back.
//! The parent reads the kernel log at the end.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::abi::{self, Enablement};
use crate::fuzz::{self, Draw};
use crate::guest::{self, Encoding};
use crate::host;
use crate::json::figure;
use crate::layout::{self, HOLE, PAGE};
use crate::modes::Mode;
use crate::prng::SplitMix64;
use crate::vm::{Entry, Stop, Vm, VmConfig};
use proto::kmsg::Kmsg;
use proto::ktap::{Outcome, Writer};

/// Calls per worker by default: two workers make the million the soak is
/// asked for.
pub const DEFAULT_CALLS: u64 = 500_000;
pub const DEFAULT_WORKERS: u64 = 2;
/// Calls in one 64-bit burst: long enough that most calls cost no exit to
/// this process, short enough that the other modes and the memslot edits
/// still come often.
const BURST: u64 = 32;
/// Draws between two memslot edits.
const EDIT_EVERY: u64 = 16;
/// Failures a worker reports in full.
const SHOWN: usize = 10;
/// Calls between a worker's progress lines.
const PROGRESS_EVERY: u64 = 20_000;
/// How often the parent flips the parameter.
const FLIP_EVERY: Duration = Duration::from_millis(1);

#[derive(Debug, PartialEq)]
pub struct Options {
    pub json: bool,
    pub calls: u64,
    pub workers: u64,
    pub seed: Option<u64>,
    /// Run as worker N (internal: the parent starts the workers).
    pub worker: Option<u64>,
    /// Leave the memslots alone, or the parameter: to tell apart what a
    /// failure needs.
    pub no_slot_edits: bool,
    pub no_flips: bool,
}

/// What a worker sends back, one JSON line at its end.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Tally {
    calls: u64,
    /// Draws whose guest stopped without reporting (a triple fault, a
    /// hang, a stray MMIO exit): failures too, counted apart because the
    /// ABI model says nothing about them.
    #[serde(default)]
    stopped: u64,
    /// The worker's last line says true; the lines before it are progress,
    /// so that a soak stopped at its deadline still reports what ran.
    #[serde(default)]
    done: bool,
    failures: u64,
    shown: Vec<String>,
    by_mode: std::collections::BTreeMap<String, u64>,
    slot_edits: u64,
    seconds: f64,
}

impl Tally {
    /// Adds a worker's figures to the run's.
    fn add(&mut self, t: &Tally) {
        self.calls += t.calls;
        self.failures += t.failures;
        self.stopped += t.stopped;
        self.slot_edits += t.slot_edits;
        self.shown.extend(t.shown.iter().cloned());
        for (mode, k) in &t.by_mode {
            *self.by_mode.entry(mode.clone()).or_default() += k;
        }
    }
}

/// The line a worker prints once its VM exists.
const READY: &str = "ready";

pub fn main(dev: &str, opts: &Options) -> i32 {
    let result = match opts.worker {
        Some(n) => worker(dev, opts.calls, seed_of(opts.seed, n), !opts.no_slot_edits).map(|t| {
            println!(
                "{}",
                serde_json::to_string(&Tally { done: true, ..t }).unwrap_or_default()
            );
            0
        }),
        None => parent(dev, opts),
    };
    result.unwrap_or_else(|e| {
        println!("Bail out! {e:#}");
        1
    })
}

/// Worker `n`'s seed, from the run's.
fn seed_of(seed: Option<u64>, n: u64) -> u64 {
    let base = seed.unwrap_or(1);
    base ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn parent(dev: &str, opts: &Options) -> Result<i32> {
    let kvm = match host::open_kvm(dev) {
        Ok(k) => k,
        Err(host::NoKvm(why)) => {
            print!("{}", proto::ktap::skip_all(&why));
            return Ok(proto::ktap::EXIT_SKIP);
        }
    };
    let mut out = Writer::start(crate::json::ktap_stream(opts.json), 2);
    let (ctx, notes) = host::prepare(kvm)?;
    for n in &notes {
        out.diag(n);
    }
    let Some(param) = ctx.param.as_ref().filter(|p| p.writable()) else {
        bail!("the soak flips kvm.hello_hypercall: it needs the series' parameter, writable (root)");
    };
    let seed = opts.seed.unwrap_or(1);
    out.diag(&format!(
        "seed {seed}, {} workers x {} calls, kvm.hello_hypercall flipped every {FLIP_EVERY:?}",
        opts.workers, opts.calls
    ));
    let mut kmsg = Kmsg::open_at_end();
    let on = param.hold(true)?;
    let exe = std::env::current_exe().context("find hcall's own path")?;
    let (lines, from_workers) = mpsc::channel::<(u64, String)>();
    let mut children = Vec::new();
    for n in 0..opts.workers {
        let child = Command::new(&exe)
            .args(["--dev", dev, "soak", "--worker", &n.to_string()])
            .args(["--calls", &opts.calls.to_string(), "--seed", &seed.to_string()])
            .args(opts.no_slot_edits.then_some("--no-slot-edits"))
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .context("start a soak worker")?;
        children.push(Reaped(child));
    }
    for (n, c) in children.iter_mut().enumerate() {
        let stdout = c.0.stdout.take().context("a worker without stdout")?;
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send((n as u64, line));
            }
        });
    }
    drop(lines);
    // Generous: a call costs under a millisecond even nested under TCG
    // with every sanitizer on.
    // Generous: four milliseconds a call is far slower than a sanitized L1
    // on one TCG thread, the slowest host the soak runs on.
    let deadline = Instant::now() + Duration::from_secs(120) + Duration::from_millis(4 * opts.calls);
    let mut ready = 0;
    let mut results: Vec<Option<Tally>> = (0..opts.workers).map(|_| None).collect();
    let mut other_lines = Vec::new();
    let start = Instant::now();
    let mut flips = 0u64;
    loop {
        match from_workers.recv_timeout(FLIP_EVERY) {
            Ok((_, line)) if line == READY => ready += 1,
            Ok((n, line)) => match serde_json::from_str::<Tally>(&line) {
                Ok(t) => results[n as usize] = Some(t),
                Err(_) => other_lines.push(format!("worker {n}: {line}")),
            },
            // Every worker closed its output: all have ended.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let running = results.iter().any(|r| !r.as_ref().is_some_and(|t| t.done));
        if !opts.no_flips && ready == opts.workers && running {
            param.set(!param.get())?;
            flips += 1;
        }
        if Instant::now() >= deadline {
            other_lines.push(format!(
                "killed at the deadline after {:.0}s",
                start.elapsed().as_secs_f64()
            ));
            break;
        }
    }
    drop(children);
    drop(on);
    let elapsed = start.elapsed().as_secs_f64();
    drop(ctx);

    for l in &other_lines {
        out.diag(l);
    }
    let mut total = Tally::default();
    let mut missing = 0;
    let mut unfinished = 0;
    for (n, t) in results.iter().enumerate() {
        match t {
            Some(t) if !t.done => {
                unfinished += 1;
                out.diag(&format!(
                    "worker {n}: stopped at the deadline after {} calls in {:.1}s, {} failures so far",
                    t.calls, t.seconds, t.failures
                ));
                total.add(t);
            }
            Some(t) => {
                out.diag(&format!(
                    "worker {n}: {} calls in {:.1}s, {} failures ({} guests stopped without reporting), {} memslot edits",
                    t.calls, t.seconds, t.failures, t.stopped, t.slot_edits
                ));
                total.add(t);
            }
            None => missing += 1,
        }
    }
    for s in total.shown.iter().take(SHOWN) {
        out.diag(s);
    }
    let by_mode: Vec<String> = total.by_mode.iter().map(|(m, k)| format!("{m}: {k}")).collect();
    out.diag(&format!("calls by mode: {}", by_mode.join(", ")));
    out.diag(&format!("kvm.hello_hypercall flipped {flips} times"));
    let name = format!(
        "soak: {} calls from {} vCPUs, seed {seed}",
        total.calls, opts.workers
    );
    let passed = missing == 0 && unfinished == 0 && total.failures == 0 && total.calls > 0;
    if missing > 0 {
        out.diag(&format!("{missing} worker(s) sent no result"));
    }
    out.result(&name, &if passed { Outcome::Pass } else { Outcome::Fail });
    let splats = match kmsg.as_mut().map_err(|e| format!("{e:#}")).and_then(|k| {
        k.read_new()
            .context("read the kernel log")
            .map_err(|e| format!("{e:#}"))
    }) {
        Ok(records) => Ok(records
            .into_iter()
            .filter(|r| r.is_trouble())
            .map(|r| r.text)
            .collect::<Vec<String>>()),
        Err(why) => Err(why),
    };
    let log_outcome = match &splats {
        Ok(bad) if bad.is_empty() => Outcome::Pass,
        Ok(bad) => {
            for b in bad {
                out.diag(&format!("kernel: {b}"));
            }
            Outcome::Fail
        }
        // No kernel log is no evidence: a failure, never a pass.
        Err(why) => {
            out.diag(&format!("NO RESULT: {why}"));
            Outcome::Fail
        }
    };
    out.result("soak: kernel log has no WARNING, BUG or Oops", &log_outcome);
    out.totals();
    if opts.json {
        let j = json!({
            "calls": total.calls,
            "failures": total.failures,
            "stopped": total.stopped,
            "complete": missing == 0 && unfinished == 0,
            "workers": opts.workers,
            "seed": seed,
            "seconds": figure(elapsed),
            "calls_per_sec": figure(total.calls as f64 / elapsed),
            "param_flips": flips,
            "slot_edits": total.slot_edits,
            "by_mode": total.by_mode,
            "splats": splats.as_ref().map(Vec::len).ok(),
            "kernel_log_problems": splats.as_ref().ok(),
            "first_failures": total.shown.iter().take(SHOWN).collect::<Vec<_>>(),
        });
        println!("{j}");
    }
    Ok(if out.failed > 0 { 1 } else { 0 })
}

/// Kills a worker that is still running when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Where slot 1 goes at edit number `n`: home, into the hole at one of
/// a few pages, or away.
fn edge_position(n: u64, r: &mut SplitMix64) -> Option<u64> {
    match n % 3 {
        0 => Some(HOLE + PAGE * (8 + r.below(64))),
        1 => None,
        _ => Some(layout::EDGE.gpa),
    }
}

/// Aims a draw at slot 1 where it is now, some of the time: the fuzz's
/// own draws know only its home.
fn aim_at_edge(d: &mut Draw, edge: Option<u64>, r: &mut SplitMix64) {
    if let Some(at) = edge {
        if r.percent(30) {
            d.args[0] = (at + r.below(PAGE + 32)).wrapping_sub(16);
        }
    }
}

fn worker(dev: &str, calls: u64, seed: u64, slot_edits: bool) -> Result<Tally> {
    let kvm = host::open_kvm(dev).map_err(|host::NoKvm(why)| anyhow::anyhow!(why))?;
    let supported = host::supported_cpuid(&kvm)?;
    let native = Encoding::native();
    let mut vm = Vm::new(&kvm, &supported, &VmConfig::default()).context("create the worker's VM")?;
    vm.fill_canaries()?;
    let mut reference = vm.data_areas()?;
    // Created before the parent flips anything: the parameter was on.
    let mut enablement = Enablement::On;
    println!("{READY}");
    let mut r = SplitMix64::new(seed);
    let mut t = Tally::default();
    let mut edge = Some(layout::EDGE.gpa);
    let start = Instant::now();
    let mut draws = 0u64;
    let mut next_progress = PROGRESS_EVERY;
    while t.calls < calls {
        if t.calls >= next_progress {
            t.seconds = (start.elapsed().as_secs_f64() * 10.0).round() / 10.0;
            println!("{}", serde_json::to_string(&t).unwrap_or_default());
            next_progress += PROGRESS_EVERY;
        }
        if slot_edits && draws % EDIT_EVERY == EDIT_EVERY - 1 {
            edge = edge_position(t.slot_edits, &mut r);
            vm.set_edge(edge)?;
            // The snapshot labels slot 1 by where it is.
            reference = vm.data_areas()?;
            t.slot_edits += 1;
        }
        draws += 1;
        let mut d = fuzz::draw(&mut r, &[enablement], false);
        aim_at_edge(&mut d, edge, &mut r);
        let burst = d.mode == Mode::Long64 && d.cpl == 0;
        let (stop, n, differed) = if burst {
            let n = BURST.min(calls - t.calls);
            let entry = Entry {
                mode: Mode::Long64,
                user: false,
                code: guest::soak_loop(native),
                nr: abi::KVM_HC_HELLO_HYPERCALL,
                args: d.args,
                r8: n,
                r9: abi::KVM_HC_HELLO_HYPERCALL,
                timeout: Duration::from_secs(30),
            };
            match vm.enter_guest(&entry, &mut |_| (-abi::KVM_ENOSYS) as u64)? {
                // The first result is judged; the rest had to equal it.
                Stop::Reported(regs) => {
                    let first = kvm_bindings::kvm_regs {
                        rax: regs.rdi,
                        ..regs
                    };
                    (Stop::Reported(first), n, (regs.r8 != 0).then_some(regs.rax))
                }
                other => (other, n, None),
            }
        } else {
            let entry = Entry::call(d.mode, d.cpl == 3, native, d.args);
            (
                vm.enter_guest(&entry, &mut |_| (-abi::KVM_ENOSYS) as u64)?,
                1,
                None,
            )
        };
        let changes = vm.changes_since(&reference)?;
        let mut problems = fuzz::judge(&d, &stop, &changes, &vm.slots());
        if let Some(rax) = differed {
            problems.push(format!(
                "a repeat of the call returned {rax:#x}, unlike the first"
            ));
        }
        t.calls += n;
        *t.by_mode
            .entry(format!("{}_cpl{}", d.mode.name(), d.cpl))
            .or_default() += n;
        if !problems.is_empty() {
            t.failures += 1;
            if t.shown.len() < SHOWN {
                let edge = edge.map_or("deleted".into(), |g| format!("{g:#x}"));
                t.shown.push(format!(
                    "{} (slot 1 {edge}, {n} calls): {}",
                    fuzz::describe_draw(draws, &d),
                    problems.join("; ")
                ));
            }
        }
        if matches!(stop, Stop::Reported(_)) {
            for c in &changes {
                vm.write(c.0, &[c.1])?;
            }
        } else {
            // A VM that did not report cannot be trusted for the next
            // call: it is replaced. The parent may have turned the
            // parameter off meanwhile, so the new VM's enablement is
            // asked of it with a plain call before it is used.
            t.stopped += 1;
            vm = Vm::new(&kvm, &supported, &VmConfig::default()).context("re-create the worker's VM")?;
            vm.fill_canaries()?;
            reference = vm.data_areas()?;
            edge = Some(layout::EDGE.gpa);
            enablement = enablement_of(&mut vm, native)?;
        }
    }
    t.seconds = (start.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    Ok(t)
}

/// What a VM created while the parameter flips got: a call without a
/// buffer returns 0 where the handler is on, -KVM_ENOSYS where it is off.
fn enablement_of(vm: &mut Vm, native: Encoding) -> Result<Enablement> {
    let entry = Entry::call(Mode::Long64, false, native, [0; 4]);
    match vm.enter_guest(&entry, &mut |_| (-abi::KVM_ENOSYS) as u64)? {
        Stop::Reported(regs) if regs.rax == 0 => Ok(Enablement::On),
        Stop::Reported(regs) if regs.rax as i64 == -abi::KVM_ENOSYS => Ok(Enablement::ParamOff),
        other => bail!("a new VM answered its first call with {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_get_distinct_reproducible_seeds() {
        assert_eq!(seed_of(Some(7), 0), 7);
        assert_ne!(seed_of(Some(7), 1), seed_of(Some(7), 0));
        assert_eq!(seed_of(Some(7), 1), seed_of(Some(7), 1));
    }

    #[test]
    fn slot_1_moves_into_the_hole_goes_away_and_comes_home() {
        let mut r = SplitMix64::new(3);
        let moved = edge_position(0, &mut r).unwrap();
        assert!((HOLE..layout::HOLE_END - PAGE).contains(&moved) && moved.is_multiple_of(PAGE));
        assert!(moved + PAGE <= layout::RO.gpa);
        assert_eq!(edge_position(1, &mut r), None);
        assert_eq!(edge_position(2, &mut r), Some(layout::EDGE.gpa));
    }
}
