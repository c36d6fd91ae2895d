//! hcall: a tiny VMM that drives KVM_HC_HELLO_HYPERCALL from hand-made
//! guests, one named case each, and prints KTAP.
//!
//! Exit status: 0 when every case passed (skips allowed), 1 on any
//! failure (or "Bail out!" when setup itself fails), 4 (kselftest's
//! KSFT_SKIP) with a "1..0 # SKIP" plan when there is no usable /dev/kvm.

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]

mod abi;
mod bench;
mod cases;
mod check;
mod deadline;
mod exit;
mod flags;
mod fuzz;
mod guest;
mod host;
mod json;
mod layout;
mod memory;
mod modes;
#[cfg(test)]
mod on_kvm;
mod prng;
mod soak;
mod vm;

use std::panic::AssertUnwindSafe;

use clap::Parser;

use proto::ktap::{self, Outcome, Writer};

fn main() {
    let args = flags::Hcall::parse();
    let code = match args.verb {
        None => run(&args.dev, &args.run.cases, args.run.list),
        Some(flags::Verb::Run(r)) => run(&args.dev, &r.cases, r.list),
        Some(flags::Verb::Bench(b)) => bench::main(&args.dev, &b.into()),
        Some(flags::Verb::Fuzz(f)) => fuzz::main(&args.dev, &f.into()),
        Some(flags::Verb::Soak(s)) => soak::main(&args.dev, &s.into()),
    };
    std::process::exit(code);
}

/// The case run: KTAP on stdout, the exit status as documented above.
fn run(dev: &str, names: &[String], list: bool) -> i32 {
    if list {
        for c in cases::CASES {
            println!("{}", c.name);
        }
        return 0;
    }
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !cases::CASES.iter().any(|c| c.name == n.as_str()))
        .collect();
    if !unknown.is_empty() {
        eprintln!("hcall: no such case: {unknown:?} (see hcall run --list)");
        return 2;
    }
    let selected: Vec<&cases::Case> = cases::CASES
        .iter()
        .filter(|c| names.is_empty() || names.iter().any(|n| n == c.name))
        .collect();

    let kvm = match host::open_kvm(dev) {
        Ok(k) => k,
        Err(host::NoKvm(why)) => {
            print!("{}", ktap::skip_all(&why));
            return ktap::EXIT_SKIP;
        }
    };
    let mut out = Writer::start(std::io::stdout(), selected.len());
    let (ctx, notes) = match host::prepare(kvm) {
        Ok(r) => r,
        Err(e) => {
            println!("Bail out! {e:#}");
            return 1;
        }
    };
    for n in &notes {
        out.diag(n);
    }
    for case in selected {
        let start = std::time::Instant::now();
        let attempt = || {
            std::panic::catch_unwind(AssertUnwindSafe(|| cases::run(&ctx, case))).unwrap_or_else(|p| {
                cases::CaseVerdict {
                    outcome: Outcome::Fail,
                    diags: vec![format!("panicked: {}", panic_text(&p))],
                }
            })
        };
        let mut verdict = attempt();
        // A guest that stopped without reporting is how nested TCG fails
        // (proto/src/stopped.rs): the case runs once more, in fresh VMs,
        // and the second attempt is the verdict; the first stays in the log.
        if let Some(stop) = retry_reason(&verdict) {
            let retried = proto::stopped::RETRIED;
            for d in &verdict.diags {
                out.diag(&format!("{}: {retried} first attempt: {d}", case.name));
            }
            out.diag(&format!(
                "{}: {retried} once more, as a guest stopped without reporting: {stop}",
                case.name
            ));
            verdict = attempt();
        }
        for d in &verdict.diags {
            out.diag(&format!("{}: {d}", case.name));
        }
        out.diag(&format!("{}: {:.2}s", case.name, start.elapsed().as_secs_f64()));
        out.result(case.name, &verdict.outcome);
    }
    out.totals();
    // Restores kvm.hello_hypercall before the exit status is decided.
    drop(ctx);
    if out.failed > 0 {
        1
    } else {
        0
    }
}

/// When a failed case failed because one of its guests stopped without
/// reporting: the line that says so.
fn retry_reason(verdict: &cases::CaseVerdict) -> Option<String> {
    if verdict.outcome != Outcome::Fail {
        return None;
    }
    verdict
        .diags
        .iter()
        .find(|d| proto::stopped::guest_stopped(d))
        .cloned()
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
