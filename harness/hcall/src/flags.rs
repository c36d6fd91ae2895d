//! The command line: hcall's verbs and options.

use clap::{Args, Parser, Subcommand};

use crate::{bench, fuzz, soak};

#[derive(Parser, Debug, PartialEq)]
#[command(
    name = "hcall",
    about = "Drive KVM_HC_HELLO_HYPERCALL from hand-made guests; KTAP on stdout",
    after_help = "Exit status: 0 when every case passed (skips allowed), 1 on a failure, \
                  2 on a usage error, 4 (kselftest's skip) when there is no usable /dev/kvm."
)]
pub struct Hcall {
    /// The KVM device to open.
    #[arg(long, global = true, default_value = "/dev/kvm", value_name = "PATH")]
    pub dev: String,
    #[command(subcommand)]
    pub verb: Option<Verb>,
    /// Without a verb, hcall runs the cases, as `hcall run`.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug, PartialEq)]
pub enum Verb {
    /// Every case, or the named ones.
    Run(RunArgs),
    /// Hypercalls per second: hello without a buffer, with a 64-byte buffer,
    /// and an unknown number; host tracing off and on.
    Bench(BenchArgs),
    /// Random arguments, modes, CPLs and enablement against the ABI model,
    /// then the kernel log; --seed reproduces a run.
    Fuzz(FuzzArgs),
    /// A million fuzzed calls from several vCPUs at once, with memslot
    /// edits between calls, while kvm.hello_hypercall flips; then the
    /// kernel log. Needs the series' parameter, writable.
    Soak(SoakArgs),
}

#[derive(Args, Debug, PartialEq, Default)]
pub struct RunArgs {
    /// Print the case names and exit.
    #[arg(long)]
    pub list: bool,
    /// Cases to run (default: all).
    #[arg(value_name = "CASE")]
    pub cases: Vec<String>,
}

#[derive(Args, Debug, PartialEq)]
pub struct BenchArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Hypercalls per measurement.
    #[arg(long, default_value_t = bench::DEFAULT_CALLS, value_parser = number)]
    pub calls: u64,
    /// Measurements per kind and tracing state; the median is reported.
    #[arg(long, default_value_t = bench::DEFAULT_REPEAT, value_parser = number)]
    pub repeat: u64,
}

#[derive(Args, Debug, PartialEq)]
pub struct FuzzArgs {
    /// Print one JSON object on stdout; the KTAP goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Calls to draw and check.
    #[arg(long, default_value_t = fuzz::DEFAULT_ITERATIONS, value_parser = number)]
    pub iterations: u64,
    /// The seed of the draws (default: from the clock); decimal or 0x hex.
    #[arg(long, value_parser = number)]
    pub seed: Option<u64>,
}

#[derive(Args, Debug, PartialEq)]
pub struct SoakArgs {
    /// Print one JSON object on stdout; the KTAP goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Calls per worker.
    #[arg(long, default_value_t = soak::DEFAULT_CALLS, value_parser = number)]
    pub calls: u64,
    /// Workers, each a process with a VM and a vCPU of its own.
    #[arg(long, default_value_t = soak::DEFAULT_WORKERS, value_parser = number)]
    pub workers: u64,
    /// The seed of the draws; decimal or 0x hex.
    #[arg(long, value_parser = number)]
    pub seed: Option<u64>,
    /// Internal: run as worker N of a soak started by its parent.
    #[arg(long, hide = true, value_parser = number)]
    pub worker: Option<u64>,
    /// Leave the memslots alone (to tell apart what a failure needs).
    #[arg(long)]
    pub no_slot_edits: bool,
    /// Leave kvm.hello_hypercall alone (to tell apart what a failure needs).
    #[arg(long)]
    pub no_flips: bool,
}

impl From<SoakArgs> for soak::Options {
    fn from(a: SoakArgs) -> Self {
        soak::Options {
            json: a.json,
            calls: a.calls,
            workers: a.workers,
            seed: a.seed,
            worker: a.worker,
            no_slot_edits: a.no_slot_edits,
            no_flips: a.no_flips,
        }
    }
}

/// A number in decimal or, with "0x", hex: seeds are often written in hex.
fn number(v: &str) -> Result<u64, String> {
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| format!("not a number: {v}"))
}

impl From<BenchArgs> for bench::Options {
    fn from(a: BenchArgs) -> Self {
        bench::Options {
            json: a.json,
            calls: a.calls,
            repeat: a.repeat,
        }
    }
}

impl From<FuzzArgs> for fuzz::Options {
    fn from(a: FuzzArgs) -> Self {
        fuzz::Options {
            json: a.json,
            iterations: a.iterations,
            seed: a.seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Hcall, clap::Error> {
        Hcall::try_parse_from(std::iter::once("hcall").chain(s.split_whitespace()))
    }

    #[test]
    fn no_verb_runs_the_cases() {
        let h = parse("").unwrap();
        assert_eq!(
            (h.dev.as_str(), h.verb, h.run),
            ("/dev/kvm", None, RunArgs::default())
        );
        let h = parse("real_mode --dev /tmp/kvm").unwrap();
        assert_eq!(h.dev, "/tmp/kvm");
        assert_eq!(h.run.cases, ["real_mode"]);
        let h = parse("run --list").unwrap();
        assert_eq!(
            h.verb,
            Some(Verb::Run(RunArgs {
                list: true,
                cases: vec![]
            }))
        );
    }

    #[test]
    fn verbs_take_their_own_options() {
        assert_eq!(
            parse("bench --json --calls 500").unwrap().verb,
            Some(Verb::Bench(BenchArgs {
                json: true,
                calls: 500,
                repeat: bench::DEFAULT_REPEAT,
            }))
        );
        assert_eq!(
            parse("fuzz --iterations 10 --seed 0x2a --dev /x").unwrap().verb,
            Some(Verb::Fuzz(FuzzArgs {
                json: false,
                iterations: 10,
                seed: Some(42)
            }))
        );
        // The device may come before or after the verb.
        let h = parse("--dev /y fuzz").unwrap();
        assert_eq!(h.dev, "/y");
        assert!(matches!(h.verb, Some(Verb::Fuzz(_))));
        assert_eq!(parse("bench --dev /z").unwrap().dev, "/z");
        assert!(parse("fuzz --calls 3").is_err());
        assert!(parse("bench --seed x").is_err());
        assert!(parse("run --json").is_err());
        assert!(parse("fuzz --seed nope").is_err());
    }
}
