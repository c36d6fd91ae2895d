//! The command line: every verb and option a user can type.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    about = "Build, boot and judge the KVM_HC_HELLO_HYPERCALL series",
    after_help = "Exit status: 0 PASS, 1 FAIL, 2 usage error, 3 harness error (nothing was judged), 4 SKIP."
)]
pub struct Xtask {
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Build the kernel, boot it nested as host and guest, check the host's trace.
    E2e(E2eArgs),
    /// Apply the series to the Debian source and run checkpatch on every patch.
    Patches(PatchesArgs),
    /// Everything CI runs: format, clippy, unit tests, the E2E and its negative control.
    Ci(CiArgs),
    /// Time a warm E2E against a raw nested QEMU run of the same kernels; writes bench.json.
    Bench(BenchArgs),
    /// Cause the faults a run must survive (signals, a killed guest, a
    /// corrupt patch, a full disk) against warm 6.12 kernels; needs root.
    Faults,
    /// Capture real kernel reports (through LKDTM, in the sanitized host)
    /// as test data for the kernel-trouble patterns.
    Splats,
}

/// Which Debian kernel source to build on.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelVersion {
    #[value(name = "6.12")]
    V6_12,
    #[value(name = "6.1")]
    V6_1,
    /// From trixie-backports, which this Debian 12 system does not use:
    /// fetched under target/ (see debian.rs).
    #[value(name = "7.3")]
    V7_3,
}

/// How L1 is accelerated.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// KVM when a probe boot shows it works with nested virtualisation, else TCG.
    Auto,
    Kvm,
    /// TCG with -cpu max, which emulates SVM, and one vCPU (a second one
    /// made runs fail: see README).
    Tcg,
    /// TCG with two vCPUs on one host thread: free of the rare guest
    /// corruption that multi-threaded TCG (QEMU 7.2) shows under nested
    /// SVM in long soaks, for the soak's vCPUs that call at once. The stock
    /// guest's boot then often misses L1's deadline (6 of 9 warm E2Es):
    /// the soak runs with --skip-stock.
    TcgSingle,
}

#[derive(Args, Debug, Clone)]
pub struct KernelArgs {
    /// Kernel source to build on.
    #[arg(long, value_enum, default_value = "6.12")]
    pub kernel: KernelVersion,
    /// Your own kernel git tree: the series is applied in a scratch worktree
    /// of it, never in your checkout.
    #[arg(long, value_name = "PATH")]
    pub tree: Option<PathBuf>,
    /// Build without the series: the negative control, which must FAIL.
    #[arg(long)]
    pub unpatched: bool,
    /// Apply this series (a directory with a `series` file and its
    /// patches) instead of patches/v<KERNEL>: a revision under review.
    /// Its tree and builds are kept apart from the project's series'.
    #[arg(long, value_name = "DIR", conflicts_with = "unpatched")]
    pub series: Option<PathBuf>,
}

impl KernelArgs {
    /// The series to apply: --series, or the project's own for the base.
    pub fn series_dir(&self) -> PathBuf {
        self.series
            .clone()
            .unwrap_or_else(|| crate::layout::series_dir(self.kernel))
    }
}

/// Which CPU L1 runs on.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cpu {
    /// QEMU: this machine's own under KVM, else TCG's "max", which
    /// emulates AMD SVM. L2 Linux guests run on L1's KVM.
    Default,
    /// Bochs' Skylake-X, an emulated Intel CPU with VMX: kvm_intel in L1
    /// runs hcall and the KVM selftests; no L2 Linux guest.
    Intel,
}

#[derive(Args, Debug, Clone)]
pub struct E2eArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// How to accelerate L1 (QEMU only).
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: Accel,
    /// The CPU L1 runs on.
    #[arg(long, value_enum, default_value = "default")]
    pub cpu: Cpu,
    /// Build L1 with KASAN, UBSAN, KFENCE, lockdep, DEBUG_ATOMIC_SLEEP and
    /// DEBUG_LIST (harness/configs/host-sanitize.config), cached apart
    /// from the plain host; any report on its console fails the run.
    #[arg(long)]
    pub sanitize: bool,
    /// Run every check even after a stage failed, where later stages can run.
    #[arg(long)]
    pub keep_going: bool,
    /// Also run this program (with its arguments, in one quoted word)
    /// inside L1 after every guest has ended and the trace is saved, with
    /// the hypercall enabled (repeatable). It sees the patched /dev/kvm; its
    /// KTAP or TAP output becomes checks.
    #[arg(long, value_name = "PATH [ARGS]")]
    pub l1_test: Vec<String>,
    /// Deadline of each program run inside L1, in seconds.
    #[arg(long, default_value_t = 120)]
    pub l1_test_timeout: u64,
    /// L1's deadline in seconds; QEMU is killed when it passes.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Each L2 guest's deadline inside L1, in seconds.
    #[arg(long, default_value_t = 300)]
    pub l2_timeout: u64,
    /// Leave out the stock-kernel guest (its checks are one loud SKIP),
    /// for runs that need only the patched guest and L1's tests, such as
    /// `bench --soak` on one TCG thread.
    #[arg(long)]
    pub skip_stock: bool,
    /// A fault for the agent to inject, used by `cargo xtask faults`:
    /// "kill-l2-main" kills the main guest's QEMU inside L1.
    #[arg(long, hide = true, value_parser = ["kill-l2-main"])]
    pub fault: Option<String>,
}

#[derive(Args, Debug)]
pub struct PatchesArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Write the series into DIR (new or empty) ready for `git send-email`,
    /// with --signoff as its From: and Signed-off-by: instead of the
    /// repository's placeholder author.
    #[arg(long, value_name = "DIR", requires = "signoff")]
    pub export: Option<PathBuf>,
    /// The identity --export signs with, "Full Name <addr@host>".
    #[arg(long, value_name = "NAME <ADDR>", requires = "export")]
    pub signoff: Option<String>,
    /// Prove the series bisectable: every prefix builds with the host and
    /// the guest config (W=1, KVM_WERROR) and passes checkpatch --strict.
    #[arg(long, conflicts_with = "export")]
    pub each: bool,
}

#[derive(Args, Debug)]
pub struct CiArgs {
    /// Skip the kernel builds: the E2E runs and `patches --each` (format,
    /// clippy, unit tests and checkpatch only).
    #[arg(long)]
    pub no_e2e: bool,
    /// Run only the E2E on this kernel, judged as `cargo xtask ci` judges
    /// it: one cell of a CI matrix (see .github/workflows/e2e.yml).
    #[arg(long, value_enum, value_name = "KERNEL", conflicts_with = "no_e2e")]
    pub e2e: Option<KernelVersion>,
    /// With --e2e: the negative control, which passes when the unpatched
    /// run FAILS on the checks that tell the series apart.
    #[arg(long, requires = "e2e")]
    pub unpatched: bool,
    /// With --e2e: the CPU L1 runs on.
    #[arg(long, value_enum, default_value = "default", requires = "e2e")]
    pub cpu: Cpu,
    /// Keep each base's sources and kernel builds when its steps are done
    /// (about 25 GiB for all three), instead of reclaiming them so that
    /// the run's peak is one base (about 12 GiB).
    #[arg(long, conflicts_with = "e2e")]
    pub keep: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Timed rounds; each runs a warm E2E and a raw nested boot. Medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Skip hcall's benchmark and 100,000-call fuzz (about 15 minutes under
    /// TCG); their figures are carried over from the last bench.json.
    #[arg(long)]
    pub no_hcall: bool,
    /// Time each stage of a cold `cargo xtask e2e` in a fresh clone of
    /// HEAD under target/ (no caches; 10+ minutes) into bench.json's "cold".
    #[arg(long, conflicts_with_all = ["no_hcall", "soak", "repeat", "intel"])]
    pub cold: bool,
    /// A million fuzzed hypercalls (`hcall soak`: two vCPUs, memslot
    /// edits, the parameter flipping) in L1 built with --sanitize; calls,
    /// failures and splats into bench.json's "soak".
    #[arg(long, conflicts_with_all = ["no_hcall", "repeat", "intel"])]
    pub soak: bool,
    /// With --soak: calls per worker (two workers).
    #[arg(long, default_value_t = 500_000, requires = "soak")]
    pub soak_calls: u64,
    /// Run N warm E2Es and record how many passed (the flake rate) into
    /// bench.json's "repeat".
    #[arg(long, value_name = "N", conflicts_with_all = ["no_hcall", "intel"])]
    pub repeat: Option<usize>,
    /// With --repeat: L1's accelerator in every run, so that two settings
    /// can be compared side by side.
    #[arg(long, value_enum, default_value = "auto", requires = "repeat")]
    pub accel: Accel,
    /// Time each stage of a warm `cargo xtask e2e --cpu intel` (Bochs)
    /// into bench.json's "intel".
    #[arg(long, conflicts_with = "no_hcall")]
    pub intel: bool,
    /// Only hcall's benchmark (hello against the unknown number, round by
    /// round) and its 100,000-call fuzz inside L1, into bench.json's
    /// "hcall_bench" and "hcall_fuzz".
    #[arg(long, conflicts_with_all = ["no_hcall", "cold", "soak", "repeat", "intel"])]
    pub hcall: bool,
}
