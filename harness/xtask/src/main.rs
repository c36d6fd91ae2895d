//! `cargo xtask`: the hello-hypercall project's automation.
//!
//! Verbs: `e2e` (build the kernel, boot it nested as host and guest, judge the host's
//! trace), `patches` (apply and checkpatch the series), `ci` (everything CI
//! runs), `bench` (timings into target/xtask/bench.json). This file only
//! parses flags and dispatches; each verb lives in the module of its name.

mod bench;
mod bochs;
mod build;
mod ci;
mod debian;
mod deps;
mod disk;
mod e2e;
mod faults;
mod flags;
mod images;
mod initramfs;
mod intel;
mod interrupt;
mod kconfig;
mod kselftest;
mod kvm_host;
mod layout;
mod module;
mod patches;
mod qemu;
mod report;
mod sanitize;
mod selftests;
mod source;
mod splats;
mod stage;
mod stamp;
mod stock;
#[cfg(test)]
mod tidy;
mod trace;
mod verdict;
mod workflow;

use std::process::ExitCode;

use clap::Parser;

/// Exit status when the harness itself failed, so nothing was judged (a
/// missing package, a full disk, a kernel that did not build). 0 is PASS, 1
/// FAIL, 2 a usage error (clap's own).
pub const EXIT_HARNESS_ERROR: u8 = 3;
/// Exit status of a run that could not take place here: kselftest's KSFT_SKIP.
pub const EXIT_SKIP: u8 = 4;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    if let Err(err) = interrupt::install() {
        eprintln!("error: {err:#}");
        return ExitCode::from(EXIT_HARNESS_ERROR);
    }
    let result = match flags.verb {
        flags::Verb::E2e(args) => e2e::run(&args),
        flags::Verb::Patches(args) => patches::run(&args),
        flags::Verb::Ci(args) => ci::run(&args),
        flags::Verb::Bench(args) => bench::run(&args),
        flags::Verb::Faults => faults::run(),
        flags::Verb::Splats => splats::run(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_HARNESS_ERROR)
        }
    }
}
