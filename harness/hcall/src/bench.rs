//! `hcall bench`: hypercalls per second. A 64-bit guest loops N calls and
//! reports once; the host times the whole KVM_RUN, so the figure is the
//! full round trip (exit, handler, entry) per call. Three kinds of call:
//! hello without a buffer, hello with a 64-byte buffer, and an unknown
//! number that KVM rejects with -KVM_ENOSYS (the floor: the same exits,
//! no handler); each with host tracing off and on.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::abi::{self, describe, KVM_HC_HELLO_HYPERCALL, UNKNOWN_HYPERCALL};
use crate::cases::Ctx;
use crate::guest;
use crate::host;
use crate::json::Json;
use crate::layout::BUF;
use crate::modes::Mode;
use crate::param::{self, Switch};
use crate::vm::{Entry, Stop, Vm, VmConfig};

/// Nested under TCG a call costs tens of microseconds: this keeps one
/// measurement near a second there and far below on real hardware.
pub const DEFAULT_CALLS: u64 = 20_000;

/// Measurements per kind; the median is reported, which a single slow
/// sample (another tenant on the host, a TCG translation flush) can't move.
pub const DEFAULT_REPEAT: u64 = 3;

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
fn section(series: &Series, notes: &mut Vec<String>) -> Json {
    let mut fields = vec![];
    let rates: Vec<f64> = series.samples.iter().map(|s| median(s)).collect();
    for (i, kind) in KINDS.iter().enumerate() {
        notes.push(format!(
            "  {}: {:.0} calls/s (median of {:.0?}), result {}",
            kind.name,
            rates[i],
            series.samples[i],
            describe(series.results[i])
        ));
        fields.push((
            kind.name.to_string(),
            Json::obj([
                ("calls_per_sec", Json::Num(rates[i])),
                (
                    "samples",
                    Json::Arr(series.samples[i].iter().copied().map(Json::Num).collect()),
                ),
                ("result", Json::Int(series.results[i])),
            ]),
        ));
    }
    fields.push(("ratio_hello_nobuf_unknown".into(), Json::Num(rates[0] / rates[2])));
    fields.push(("ratio_hello_buf64_unknown".into(), Json::Num(rates[1] / rates[2])));
    Json::Obj(fields)
}

/// calls/s with tracing on over calls/s with it off, per kind.
fn tracing_cost(sections: &[(String, Json)]) -> Json {
    let rate = |section: &str, kind: &str| -> Option<f64> {
        let (_, Json::Obj(kinds)) = sections.iter().find(|(k, _)| k == section)? else {
            return None;
        };
        let (_, Json::Obj(fields)) = kinds.iter().find(|(k, _)| k == kind)? else {
            return None;
        };
        match fields.iter().find(|(k, _)| k == "calls_per_sec")? {
            (_, Json::Num(x)) => Some(*x),
            _ => None,
        }
    };
    Json::Obj(
        KINDS
            .iter()
            .map(|k| {
                let ratio = match (rate("tracing_on", k.name), rate("tracing_off", k.name)) {
                    (Some(on), Some(off)) => Json::Num(on / off),
                    _ => Json::Null,
                };
                (format!("ratio_on_off_{}", k.name), ratio)
            })
            .collect(),
    )
}

/// The trace events that are on: they cost time in every traced call.
fn enabled_events() -> Json {
    match std::fs::read_to_string("/sys/kernel/tracing/set_event") {
        Ok(text) => Json::Arr(text.lines().map(Json::str).collect()),
        Err(_) => Json::Null,
    }
}

pub fn main(dev: &str, opts: &Options) -> i32 {
    let kvm = match host::open_kvm(dev) {
        Ok(k) => k,
        Err(host::NoKvm(why)) => {
            eprintln!("hcall bench: SKIP: {why}");
            return crate::ktap::EXIT_SKIP;
        }
    };
    match bench(kvm, opts) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hcall bench: {e:#}");
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
    let mut tracing = Switch::open(param::TRACING_ON)?;
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
            if let Some(t) = tracing.as_mut().filter(|t| t.get() != on) {
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

    let mut sections = vec![];
    for on in [false, true] {
        let key = if on { "tracing_on" } else { "tracing_off" };
        let value = if states.contains(&on) {
            notes.push(format!("{key}:"));
            section(&series[usize::from(on)], &mut notes)
        } else {
            Json::Null
        };
        sections.push((key.to_string(), value));
    }
    sections.push(("tracing_cost".into(), tracing_cost(&sections)));

    let param_state = match &ctx.param {
        None => Json::Null,
        Some(p) => Json::Bool(p.get()),
    };
    let mut fields = vec![
        ("kernel".to_string(), Json::str(host::kernel_release())),
        ("vendor".into(), Json::str(guest::host_vendor())),
        ("instruction".into(), Json::str(ctx.native.name())),
        ("mode".into(), Json::str("long64")),
        ("calls".into(), Json::Int(opts.calls as i64)),
        ("repeat".into(), Json::Int(opts.repeat as i64)),
        ("hello_hypercall_param".into(), param_state),
        ("trace_events".into(), enabled_events()),
    ];
    fields.extend(sections);
    let out = Json::Obj(fields);
    if opts.json {
        println!("{out}");
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
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
    }

    #[test]
    fn tracing_cost_divides_on_by_off() {
        let section = |rate: f64| {
            Json::Obj(
                KINDS
                    .iter()
                    .map(|k| {
                        (
                            k.name.to_string(),
                            Json::obj([("calls_per_sec", Json::Num(rate))]),
                        )
                    })
                    .collect(),
            )
        };
        let sections = vec![
            ("tracing_off".to_string(), section(200.0)),
            ("tracing_on".to_string(), section(150.0)),
        ];
        let cost = tracing_cost(&sections).to_string();
        assert!(cost.contains("\"ratio_on_off_unknown\": 0.75"), "{cost}");
        let missing = vec![
            ("tracing_off".to_string(), section(200.0)),
            ("tracing_on".to_string(), Json::Null),
        ];
        assert!(tracing_cost(&missing).to_string().contains("null"));
    }
}
