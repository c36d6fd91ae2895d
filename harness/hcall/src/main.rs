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
mod fuzz;
mod guest;
mod host;
mod json;
mod kmsg;
mod ktap;
mod layout;
mod memory;
mod modes;
mod param;
mod prng;
mod vm;

use std::panic::AssertUnwindSafe;

use ktap::{Ktap, Outcome};

const USAGE: &str = "\
usage: hcall [run] [--dev PATH] [--list] [CASE...]
       hcall bench [--json] [--calls N] [--repeat N] [--dev PATH]
       hcall fuzz [--iterations N] [--seed S] [--json] [--dev PATH]

run    every case (or the named ones), KTAP on stdout; exit 0 if all pass,
       1 on a failure, 4 if there is no usable /dev/kvm
bench  hypercalls per second: hello without a buffer, with a 64-byte
       buffer, and an unknown number; host tracing off and on
fuzz   random arguments, modes, CPLs and enablement against the ABI model,
       then the kernel log; --seed reproduces a run";

#[derive(Debug, PartialEq)]
enum Command {
    Run { cases: Vec<String>, list: bool },
    Bench(bench::Options),
    Fuzz(fuzz::Options),
    Help,
}

#[derive(Debug, PartialEq)]
struct Args {
    dev: String,
    command: Command,
}

fn number(flag: &str, value: Option<String>) -> Result<u64, String> {
    let v = value.ok_or_else(|| format!("{flag} needs a value"))?;
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| format!("{flag}: not a number: {v}"))
}

fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut it = argv.into_iter().peekable();
    let verb = match it.peek().map(String::as_str) {
        Some("run" | "bench" | "fuzz" | "help") => it.next().unwrap(),
        _ => "run".to_string(),
    };
    let mut dev = "/dev/kvm".to_string();
    let mut json = false;
    let mut list = false;
    let mut calls = None;
    let mut repeat = None;
    let mut iterations = None;
    let mut seed = None;
    let mut names = vec![];
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                return Ok(Args {
                    dev,
                    command: Command::Help,
                })
            }
            "--dev" => dev = it.next().ok_or("--dev needs a path")?,
            "--json" if verb != "run" => json = true,
            "--list" if verb == "run" => list = true,
            "--calls" if verb == "bench" => calls = Some(number("--calls", it.next())?),
            "--repeat" if verb == "bench" => repeat = Some(number("--repeat", it.next())?),
            "--iterations" if verb == "fuzz" => iterations = Some(number("--iterations", it.next())?),
            "--seed" if verb == "fuzz" => seed = Some(number("--seed", it.next())?),
            a if a.starts_with('-') => return Err(format!("{verb}: unknown option {a}")),
            a if verb == "run" => names.push(a.to_string()),
            a => return Err(format!("{verb}: unexpected argument {a}")),
        }
    }
    let command = match verb.as_str() {
        "run" => Command::Run { cases: names, list },
        "bench" => Command::Bench(bench::Options {
            json,
            calls: calls.unwrap_or(bench::DEFAULT_CALLS),
            repeat: repeat.unwrap_or(bench::DEFAULT_REPEAT),
        }),
        "fuzz" => Command::Fuzz(fuzz::Options {
            json,
            iterations: iterations.unwrap_or(fuzz::DEFAULT_ITERATIONS),
            seed,
        }),
        _ => Command::Help,
    };
    Ok(Args { dev, command })
}

fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hcall: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let code = match args.command {
        Command::Help => {
            println!("{USAGE}");
            0
        }
        Command::Run { cases, list } => run(&args.dev, &cases, list),
        Command::Bench(opts) => bench::main(&args.dev, &opts),
        Command::Fuzz(opts) => fuzz::main(&args.dev, &opts),
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
        eprintln!("hcall: no such case: {unknown:?} (see hcall --list)");
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
    let mut out = Ktap::start(std::io::stdout(), selected.len());
    let (mut ctx, notes) = match host::prepare(kvm) {
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
        let verdict = std::panic::catch_unwind(AssertUnwindSafe(|| cases::run(&mut ctx, case)))
            .unwrap_or_else(|p| cases::Verdict {
                outcome: Outcome::Fail,
                diags: vec![format!("panicked: {}", panic_text(&p))],
            });
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

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn default_is_run() {
        assert_eq!(
            args("").unwrap(),
            Args {
                dev: "/dev/kvm".into(),
                command: Command::Run {
                    cases: vec![],
                    list: false
                }
            }
        );
        assert_eq!(
            args("real_mode --dev /tmp/kvm").unwrap().command,
            Command::Run {
                cases: vec!["real_mode".into()],
                list: false
            }
        );
    }

    #[test]
    fn sub_commands() {
        assert_eq!(
            args("bench --json --calls 500").unwrap().command,
            Command::Bench(bench::Options {
                json: true,
                calls: 500,
                repeat: bench::DEFAULT_REPEAT,
            })
        );
        assert_eq!(
            args("fuzz --iterations 10 --seed 0x2a").unwrap().command,
            Command::Fuzz(fuzz::Options {
                json: false,
                iterations: 10,
                seed: Some(42)
            })
        );
        assert!(args("fuzz --calls 3").is_err());
        assert!(args("bench --seed x").is_err());
        assert!(args("run --json").is_err());
        assert_eq!(args("run --help").unwrap().command, Command::Help);
    }
}
