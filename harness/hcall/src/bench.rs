//! `hcall bench`: hypercalls per second. A 64-bit guest loops N calls and
//! reports once; the host times the whole KVM_RUN, so the figure is the
//! full round trip (exit, handler, entry) per call. Three kinds of call:
//! hello without a buffer, hello with a 64-byte buffer, and an unknown
//! number that KVM rejects with -KVM_ENOSYS (the floor: the same exits,
//! no handler); each with host tracing off and on.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use crate::abi::{self, describe, KVM_HC_HELLO_HYPERCALL, UNKNOWN_HYPERCALL};
use crate::cases::Ctx;
use crate::guest;
use crate::host;
use crate::json::figure;
use crate::layout::BUF;
use crate::modes::Mode;
use crate::vm::{Entry, Stop, Vm, VmConfig};
use proto::ktap::{Outcome, Writer};
use proto::param::{self, SysfsSwitch};

/// Nested under TCG a call costs tens of microseconds: this keeps one
/// measurement near a quarter of a second there.
pub const DEFAULT_CALLS: u64 = 5_000;

/// Rounds; each measures every kind once, back to back, so a round's
/// ratios compare calls made under the same conditions. Many short rounds
/// rather than a few long ones: the spread over rounds (median, min, max)
/// says how far a ratio can be trusted on a noisy nested host.
pub const DEFAULT_REPEAT: u64 = 21;

/// The goal for hello's cost over the unknown number's, time per call with
/// tracing off: the handler may add at most a fifth to a hypercall exit.
const TIME_RATIO_GOAL: f64 = 1.2;

#[derive(Debug, PartialEq)]
pub struct Options {
    pub json: bool,
    pub calls: u64,
    pub repeat: u64,
}

struct Kind {
    name: &'static str,
    nr: u64,
    args: [u64; 4],
}

const KINDS: [Kind; 3] = [
    Kind {
        name: "hello_nobuf",
        nr: KVM_HC_HELLO_HYPERCALL,
        args: [0, 0, 0, 0],
    },
    Kind {
        name: "hello_buf64",
        nr: KVM_HC_HELLO_HYPERCALL,
        args: [BUF, 64, 0, 0],
    },
    Kind {
        name: "unknown",
        nr: UNKNOWN_HYPERCALL,
        args: [0, 0, 0, 0],
    },
];

struct Sample {
    calls_per_sec: f64,
    result: i64,
}

/// Runs `calls` hypercalls of one kind in the loop guest.
fn measure(vm: &mut Vm, native: guest::Encoding, kind: &Kind, calls: u64) -> Result<Sample> {
    let entry = Entry {
        mode: Mode::Long64,
        user: false,
        code: guest::bench_loop(native),
        nr: kind.nr,
        args: kind.args,
        r8: calls,
        r9: kind.nr,
        // Generous: even a 1 ms round trip finishes in time.
        timeout: Duration::from_secs(30).max(Duration::from_millis(calls)),
    };
    let start = Instant::now();
    let stop = vm.enter_guest(&entry, &mut |_| (-abi::KVM_ENOSYS) as u64)?;
    let seconds = start.elapsed().as_secs_f64();
    match stop {
        Stop::Reported(regs) => Ok(Sample {
            calls_per_sec: calls as f64 / seconds,
            result: regs.rax as i64,
        }),
        other => bail!("{}: the loop guest did not finish: {other:?}", kind.name),
    }
}

/// The median of a non-empty sample.
fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The measurements of one tracing state: per kind, the calls/s of each
/// round and the last result the guest saw.
#[derive(Default)]
struct Series {
    samples: [Vec<f64>; 3],
    results: [i64; 3],
}

/// The object for "tracing_off" / "tracing_on": per kind the median and
/// its samples, then the ratios of each hello kind to the unknown number.
fn section(series: &Series, notes: &mut Vec<String>) -> Value {
    let mut fields = Map::new();
    let rates: Vec<f64> = series.samples.iter().map(|s| median(s)).collect();
    for (i, kind) in KINDS.iter().enumerate() {
        notes.push(format!(
            "  {}: {:.0} calls/s (median of {:.0?}), result {}",
            kind.name,
            rates[i],
            series.samples[i],
            describe(series.results[i])
        ));
        let samples: Vec<Value> = series.samples[i].iter().map(|x| figure(*x)).collect();
        fields.insert(
            kind.name.to_string(),
            json!({
                "calls_per_sec": figure(rates[i]),
                "samples": samples,
                "result": series.results[i],
            }),
        );
    }
    fields.insert("ratio_hello_nobuf_unknown".into(), figure(rates[0] / rates[2]));
    fields.insert("ratio_hello_buf64_unknown".into(), figure(rates[1] / rates[2]));
    for (i, kind) in KINDS.iter().enumerate().take(2) {
        let spread = time_ratios(&series.samples[i], &series.samples[2]);
        notes.push(format!(
            "  time per call, {} / unknown: median {:.3}, min {:.3}, max {:.3} over {} rounds",
            kind.name, spread.median, spread.min, spread.max, spread.rounds
        ));
        fields.insert(
            format!("time_ratio_{}_unknown", kind.name),
            json!({
                "median": figure(spread.median),
                "min": figure(spread.min),
                "max": figure(spread.max),
                "rounds": spread.rounds,
                "goal": TIME_RATIO_GOAL,
                "within_goal": spread.median <= TIME_RATIO_GOAL,
            }),
        );
    }
    Value::Object(fields)
}

/// The spread of a ratio over rounds.
#[derive(Debug, PartialEq)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    rounds: usize,
}

/// Time per call of `kind` over time per call of the unknown number, round
/// by round (both measured in the same round), from their calls/s.
fn time_ratios(kind: &[f64], unknown: &[f64]) -> Spread {
    let ratios: Vec<f64> = kind.iter().zip(unknown).map(|(k, u)| u / k).collect();
    Spread {
        median: median(&ratios),
        min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        rounds: ratios.len(),
    }
}

/// calls/s with tracing on over calls/s with it off, per kind.
fn tracing_cost(sections: &Map<String, Value>) -> Value {
    let rate = |section: &str, kind: &str| sections.get(section)?[kind]["calls_per_sec"].as_f64();
    let ratios = KINDS.iter().map(|k| {
        let ratio = match (rate("tracing_on", k.name), rate("tracing_off", k.name)) {
            (Some(on), Some(off)) => figure(on / off),
            _ => Value::Null,
        };
        (format!("ratio_on_off_{}", k.name), ratio)
    });
    Value::Object(ratios.collect())
}

/// The trace events that are on: they cost time in every traced call.
fn enabled_events() -> Value {
    match fs_err::read_to_string("/sys/kernel/tracing/set_event") {
        Ok(text) => json!(text.lines().collect::<Vec<_>>()),
        Err(_) => Value::Null,
    }
}

pub fn main(dev: &str, opts: &Options) -> i32 {
    let kvm = match host::open_kvm(dev) {
        Ok(k) => k,
        Err(host::NoKvm(why)) => {
            eprintln!("hcall bench: SKIP: {why}");
            return proto::ktap::EXIT_SKIP;
        }
    };
    // One KTAP case, so that a run of the bench is judged like any test
    // program: with figures and no KTAP, xtask would say NO RESULT.
    let mut ktap = Writer::start(crate::json::ktap_stream(opts.json), 1);
    let name = format!("bench: {} rounds of {} calls per kind", opts.repeat, opts.calls);
    match bench(kvm, opts) {
        Ok(()) => {
            ktap.result(&name, &Outcome::Pass);
            ktap.totals();
            0
        }
        Err(e) => {
            ktap.diag(&format!("{e:#}"));
            ktap.result(&name, &Outcome::Fail);
            ktap.totals();
            1
        }
    }
}

fn bench(kvm: kvm_ioctls::Kvm, opts: &Options) -> Result<()> {
    if opts.calls == 0 || opts.repeat == 0 {
        bail!("--calls and --repeat must be at least 1");
    }
    let (ctx, mut notes): (Ctx, Vec<String>) = host::prepare(kvm)?;
    let mut vm = Vm::new(&ctx.kvm, &ctx.supported, &VmConfig::default())?;
    let tracing = SysfsSwitch::open(param::TRACING_ON)?;
    // The tracing states to measure: both if we can switch, else the one
    // the host is in.
    let states: Vec<bool> = match &tracing {
        Some(t) if t.writable() => vec![false, true],
        Some(t) => vec![t.get()],
        None => vec![],
    };
    if states.len() < 2 {
        notes.push(format!(
            "cannot switch {}: only the current state is measured",
            param::TRACING_ON
        ));
    }

    // Warm up every kind, then measure round-robin (each round visits
    // every tracing state and kind once), so that drift in a noisy nested
    // host spreads over all figures instead of biasing one of them.
    for kind in &KINDS {
        measure(&mut vm, ctx.native, kind, (opts.calls / 20).max(1))?;
    }
    let mut series: [Series; 2] = Default::default();
    for _ in 0..opts.repeat {
        for &on in &states {
            if let Some(t) = tracing.as_ref().filter(|t| t.get() != on) {
                t.set(on)?;
            }
            let s = &mut series[usize::from(on)];
            for (i, kind) in KINDS.iter().enumerate() {
                let sample = measure(&mut vm, ctx.native, kind, opts.calls)?;
                s.samples[i].push(sample.calls_per_sec);
                s.results[i] = sample.result;
            }
        }
    }
    // Puts tracing_on back as it was.
    drop(tracing);

    let mut out = Map::new();
    out.insert("kernel".into(), json!(proto::guest::kernel_release()));
    out.insert("vendor".into(), json!(guest::host_vendor()));
    out.insert("instruction".into(), json!(ctx.native.name()));
    out.insert("mode".into(), json!("long64"));
    out.insert("calls".into(), json!(opts.calls));
    out.insert("repeat".into(), json!(opts.repeat));
    out.insert(
        "hello_hypercall_param".into(),
        json!(ctx.param.as_ref().map(|p| p.get())),
    );
    out.insert("trace_events".into(), enabled_events());
    for on in [false, true] {
        let key = if on { "tracing_on" } else { "tracing_off" };
        let value = if states.contains(&on) {
            notes.push(format!("{key}:"));
            section(&series[usize::from(on)], &mut notes)
        } else {
            Value::Null
        };
        out.insert(key.into(), value);
    }
    let cost = tracing_cost(&out);
    out.insert("tracing_cost".into(), cost);
    if opts.json {
        println!("{}", Value::Object(out));
    } else {
        for n in notes {
            println!("{n}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ratios_pair_each_round() {
        // Hello at 800 calls/s against the unknown number's 1000 costs 1.25
        // times as much per call; the rounds are paired, not the medians.
        let spread = time_ratios(&[800.0, 1000.0, 500.0], &[1000.0, 1100.0, 500.0]);
        assert_eq!(spread.rounds, 3);
        assert_eq!(spread.median, 1.1);
        assert_eq!(spread.min, 1.0);
        assert_eq!(spread.max, 1.25);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
    }

    #[test]
    fn tracing_cost_divides_on_by_off() {
        let section = |rate: f64| {
            let kinds = KINDS
                .iter()
                .map(|k| (k.name.to_string(), json!({ "calls_per_sec": rate })));
            Value::Object(kinds.collect())
        };
        let mut sections = Map::new();
        sections.insert("tracing_off".into(), section(200.0));
        sections.insert("tracing_on".into(), section(150.0));
        assert_eq!(tracing_cost(&sections)["ratio_on_off_unknown"], json!(0.75));
        sections.insert("tracing_on".into(), Value::Null);
        assert_eq!(tracing_cost(&sections)["ratio_on_off_unknown"], Value::Null);
    }
}
