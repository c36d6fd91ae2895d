//! The words the guest programs and xtask share.
//!
//! Guests only report facts (what a syscall returned, what the host's
//! module parameter read, how L2's QEMU ended); xtask alone turns facts into
//! verdicts. Each fact is one JSON object on its own line, behind [`MARK`],
//! so a report survives being mixed with kernel noise and a truncated report
//! is still readable up to its last whole line.

pub mod abi;
#[cfg(feature = "guest")]
pub mod guest;
#[cfg(feature = "guest")]
pub mod kmsg;
pub mod ktap;
pub mod names;
#[cfg(feature = "guest")]
pub mod param;
pub mod reap;
pub mod stopped;
pub mod trouble;
use std::path::Path;

pub use names::{AgentMode, FactName, GuestName, ParamState, ProbeMode, Request, TracePhase, Who};

use serde::{Deserialize, Serialize};

/// Every report line starts with this, so parsers can skip anything else.
pub const MARK: &str = "@hh ";

/// The answer the agent sends back to the probe once it has done what the
/// probe asked for.
pub const ANSWER_OK: &str = "ok";

/// Kernel command line key (passed to init as an environment variable) that
/// carries `__NR_hello_hypercall` of the guest kernel into the probe.
pub const NR_ENV: &str = "hh_nr";

/// Where the guest module sits in L2's initramfs.
pub const MODULE_FILE: &str = "hello_hypercall.ko";

/// Where the series' syscall kselftest (tools/testing/selftests/x86/
/// hello_hypercall.c, built static) sits in the main L2's initramfs.
pub const KSELFTEST_FILE: &str = "hello_hypercall_kselftest";

/// The marker the agent writes into the host's trace buffer, followed by
/// a phase name: "kselftest" while the main guest runs the series'
/// kselftest, "disabled" once its probe had kvm.hello_hypercall turned off.
/// That guest's lines start in the phase "enabled"; other guests are told
/// apart by their QEMU process, not by markers.
pub const TRACE_MARK_PREFIX: &str = "hello-hypercall: phase ";

/// Kernel command line key (an environment variable for init) naming what
/// the probe does: "main" (the syscall, the module, both phases), "stock"
/// (the module only, on a kernel without the series) or "off" (power off
/// at once, for the benchmark's floor).
pub const MODE_ENV: &str = "hh_mode";

/// Kernel command line key (an environment variable for L1's init) saying
/// where the run directory is: unset, the 9p share [`OUT_TAG`]; "serial",
/// nowhere, as under Bochs, which has no 9p: the agent then reads its
/// config from [`INITRAMFS_AGENT_CONFIG`] and sends each file it wrote as
/// an [`Event::File`] on its report port.
pub const OUT_ENV: &str = "hh_out";

/// Where the agent's config sits in an L1 initramfs (see [`OUT_ENV`]).
pub const INITRAMFS_AGENT_CONFIG: &str = "/agent.json";

/// One fact from a guest program.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A guest program started.
    Hello { who: Who, kernel: String },
    /// A named fact about the environment, such as the module parameter.
    Fact { name: FactName, value: String },
    /// One call of the hello_hypercall syscall made by the probe.
    Call(Call),
    /// The probe asks the agent to act on the host, and waits for
    /// [`ANSWER_OK`] on its report port.
    Ask { what: Request },
    /// A stage that cannot run here, with the reason.
    Skip { reason: String },
    /// The guest program itself failed to do something it needed.
    Error { what: String },
    /// How L2's QEMU ended, as seen from L1.
    L2Exit {
        guest: GuestName,
        status: Option<i32>,
        timed_out: bool,
        seconds: f64,
        /// When the probe said hello, from QEMU's start: the boot's share.
        #[serde(default)]
        init_seconds: Option<f64>,
        /// When the probe said done: boot and probe, without the power-off.
        #[serde(default)]
        done_seconds: Option<f64>,
        /// L2's QEMU process: the trace's thread group of its calls.
        #[serde(default)]
        pid: Option<u32>,
        /// The signal that ended QEMU, when one did and the agent did not
        /// send it (a crash, the OOM killer, an injected fault).
        #[serde(default)]
        signal: Option<i32>,
    },
    /// How one L1 test program ended; its output is in l1test-<name>.log,
    /// `name` being the [`L1Test`]'s, echoed back.
    L1Test {
        name: String,
        status: Option<i32>,
        timed_out: bool,
        /// Wall time inside L1, so a slow program shows in the report.
        #[serde(default)]
        seconds: f64,
    },
    /// How a test program the probe ran in L2 ended, with its output.
    L2Test {
        name: String,
        /// The exit code; `None` when a signal ended it.
        status: Option<i32>,
        /// The signal that ended it (a crash, or the kill at its deadline).
        signal: Option<i32>,
        timed_out: bool,
        seconds: f64,
        /// Its standard output and error, as one stream.
        output: String,
        /// The output was longer than the report carries; its start is kept.
        truncated: bool,
    },
    /// A file of the run directory, sent whole over the report port where
    /// L1 has no share to write it to (the Intel run under Bochs).
    File { name: String, text: String },
    /// The program reached its end; a report without it is incomplete.
    Done { who: Who },
}

/// What one syscall returned.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Call {
    /// The case name, such as "root_buf".
    pub case: String,
    /// The raw return value; -1 on error.
    pub ret: i64,
    /// errno when `ret` is -1, else 0.
    pub errno: i32,
    /// The bytes the syscall stored, printed with Rust's escapes.
    pub data: String,
    /// Whether the canary bytes the call may not write are untouched: those
    /// after the bytes it stored (never past the requested length), or all
    /// of them when it failed.
    pub canary_intact: bool,
}

impl Event {
    /// The event as one report line, newline included.
    pub fn to_line(&self) -> String {
        // Serialising these plain structs cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{MARK}{json}\n")
    }

    /// Reads an event from a report line; `None` for lines that are not
    /// report lines or were cut short.
    pub fn from_line(line: &str) -> Option<Event> {
        let at = line.find(MARK)?;
        serde_json::from_str(line[at + MARK.len()..].trim_end()).ok()
    }
}

/// The TSC frequency in kHz from /proc/cpuinfo's "cpu MHz" line; `None`
/// when missing or zero (a kernel that could not sample it).
pub fn tsc_khz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    let khz = (mhz * 1000.0).round() as u64;
    (khz > 0).then_some(khz)
}

/// L2's QEMU command line (without the program), from the agent's config.
/// Pure, so the flags can be reviewed and tested without a VM; xtask's
/// benchmark uses it too, so its floor runs L2 the same way.
pub fn l2_qemu_args(cfg: &AgentConfig, guest: &Guest, out: &Path, tsc_khz: Option<u64>) -> Vec<String> {
    let mut append = guest.append.clone();
    if let Some(khz) = tsc_khz {
        // A nested guest on busy cores can fail to calibrate its TSC, and
        // then KVM never starts it: hand it the frequency L1 measured.
        append.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
    }
    let mut args: Vec<String> = [
        // L2 runs on L1's KVM: that is the path under test.
        "-accel",
        "kvm",
        // Whatever L1's KVM can offer, the KVM paravirt leaves included.
        "-cpu",
        "host",
        "-m",
        &cfg.l2_memory_mib.to_string(),
        "-smp",
        "1",
        // No VGA, NIC or default serial: less to emulate, and the two
        // serial ports below are the only ones.
        "-nodefaults",
        "-display",
        "none",
        // The probe ends with a reboot, which then ends QEMU.
        "-no-reboot",
    ]
    .map(String::from)
    .to_vec();
    if !cfg.bios.is_empty() {
        // qboot boots a -kernel faster than SeaBIOS.
        args.extend(["-bios".into(), cfg.bios.clone()]);
    }
    args.extend([
        "-kernel".into(),
        guest.kernel.clone(),
        "-initrd".into(),
        guest.initrd.clone(),
        "-append".into(),
        append,
        // ttyS0: L2's console, straight into the run directory.
        "-serial".into(),
        format!("file:{}", out.join(guest.file("console")).display()),
        // ttyS1: the probe's report port, relayed by the agent.
        "-serial".into(),
        "stdio".into(),
    ]);
    args
}

/// What xtask tells the agent about the run, written as [`AGENT_CONFIG`]
/// into the run directory that L1 mounts with tag [`OUT_TAG`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// L2's QEMU, a path on the host root that L1 mounts read-only.
    pub qemu: String,
    /// A BIOS image for L2, or empty for QEMU's default.
    pub bios: String,
    /// The L2 guests, side by side: the first is the patched guest (which
    /// asks for the hypercall to be disabled half-way), the others ask for
    /// it enabled before they use it.
    pub guests: Vec<Guest>,
    pub l2_memory_mib: u32,
    /// L2's deadline; QEMU is killed when it passes.
    pub l2_timeout_secs: u64,
    /// Size of L1's per-CPU trace buffer.
    pub trace_buffer_kb: u32,
    /// The host's TSC frequency, for when L1 cannot tell its own.
    #[serde(default)]
    pub fallback_tsc_khz: Option<u64>,
    /// Test programs the agent runs in L1 once the first guest has ended,
    /// beside the others, with the hypercall enabled: the KVM selftests and
    /// the hcall VMM. Each prints KTAP or TAP, which xtask reads from
    /// l1test-<name>.log.
    #[serde(default)]
    pub l1_tests: Vec<L1Test>,
    /// Tests the user added (--l1-test): run alone after every guest has
    /// ended and the trace is saved.
    #[serde(default)]
    pub l1_extra_tests: Vec<L1Test>,
    /// Each test program's deadline.
    #[serde(default)]
    pub l1_test_timeout_secs: u64,
    /// A fault the agent injects, for `cargo xtask faults`: "kill-l2-main"
    /// kills the main guest's QEMU once its probe has said hello.
    #[serde(default)]
    pub fault: Option<String>,
}

impl AgentConfig {
    /// Every L1 test in the order they run.
    pub fn all_l1_tests(&self) -> Vec<L1Test> {
        [self.l1_tests.as_slice(), self.l1_extra_tests.as_slice()].concat()
    }
}

/// One test program for L1: named once, by xtask, and the agent reports
/// it under that name. The name is its log's (l1test-<name>.log) and its
/// checks'.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct L1Test {
    pub name: String,
    /// The program (a host path) and its arguments.
    pub argv: Vec<String>,
}

impl L1Test {
    /// Names a list of command lines, each a program and its arguments,
    /// uniquely: a repeated name gets "-2", "-3"... in order, so two runs
    /// of one sub-command keep two logs.
    pub fn name_all(argvs: Vec<Vec<String>>) -> Vec<L1Test> {
        let mut tests: Vec<L1Test> = Vec::new();
        for argv in argvs {
            let base = l1_test_name(&argv);
            let mut name = base.clone();
            let mut n = 1;
            while tests.iter().any(|t| t.name == name) {
                n += 1;
                name = format!("{base}-{n}");
            }
            tests.push(L1Test { name, argv });
        }
        tests
    }
}

/// The name of an L1 test from its command line ("/x/hcall fuzz --seed 1"
/// → "hcall-fuzz"): the program's file name and its words that are not
/// options.
fn l1_test_name(argv: &[String]) -> String {
    let mut words = argv.iter().map(String::as_str);
    let program = words.next().unwrap_or_default();
    let base = Path::new(program)
        .file_name()
        .map_or(program.into(), |n| n.to_string_lossy());
    let mut name = base.into_owned();
    let mut options = false;
    for w in words {
        // An option's value ("--seed 1") is not a sub-command either.
        if w.starts_with('-') || options {
            options = true;
            continue;
        }
        // A path among the arguments names a file by its last component:
        // the name becomes a file name, which must hold no '/'.
        let word = Path::new(w).file_name().map_or(w.into(), |n| n.to_string_lossy());
        name.push('-');
        name.push_str(&word);
    }
    file_name_safe(&name)
}

/// `name` with every character a file name in the run directory should not
/// carry (a path separator, white space, quotes) replaced by '_'.
fn file_name_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | ',' | '=') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One L2 guest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Guest {
    pub name: GuestName,
    pub kernel: String,
    pub initrd: String,
    /// Its kernel command line, less the TSC options the agent measures.
    pub append: String,
}

impl Guest {
    /// The name of one of its files in the run directory, e.g.
    /// "l2-main-console.log".
    pub fn file(&self, what: &str) -> String {
        self.name.file(what)
    }
}

/// File name of the [`AgentConfig`] in the run directory.
pub const AGENT_CONFIG: &str = "agent.json";

/// 9p mount tag of the run directory, L1's only writable share.
pub const OUT_TAG: &str = "out";

/// L1's scratch tmpfs on the read-only host root. Not /tmp: a checkout
/// under the host's /tmp (a CI clone, say) must stay visible in L1, which
/// runs its programs and boots its kernels from there.
pub const L1_SCRATCH: &str = "/run";
/// Where L1 mounts the run directory, inside its scratch tmpfs.
pub const L1_OUT: &str = "/run/hello-hypercall";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = Event::Call(Call {
            case: "root_buf".into(),
            ret: 12,
            errno: 0,
            data: "Hello World\\x00".into(),
            canary_intact: true,
        });
        assert_eq!(Event::from_line(&e.to_line()), Some(e));
    }

    #[test]
    fn noise_and_truncation_are_not_events() {
        assert_eq!(Event::from_line("[    1.0] random kernel line"), None);
        assert_eq!(Event::from_line("@hh {\"event\":\"done\",\"who\""), None);
        // Console noise before the mark is tolerated: serial ports mix.
        assert_eq!(
            Event::from_line("\r@hh {\"event\":\"done\",\"who\":\"probe\"}\r"),
            Some(Event::Done { who: Who::Probe })
        );
    }

    fn guest() -> Guest {
        Guest {
            name: GuestName::Main,
            kernel: "/k/bzImage".into(),
            initrd: "/k/initrd.cpio".into(),
            append: "console=ttyS0".into(),
        }
    }

    fn cfg() -> AgentConfig {
        AgentConfig {
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            bios: String::new(),
            guests: vec![guest()],
            l2_memory_mib: 256,
            l2_timeout_secs: 60,
            trace_buffer_kb: 4096,
            fallback_tsc_khz: None,
            l1_tests: vec![],
            l1_extra_tests: vec![],
            l1_test_timeout_secs: 0,
            fault: None,
        }
    }

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    fn name(line: &str) -> String {
        l1_test_name(&argv(line))
    }

    #[test]
    fn l1_tests_are_named_by_program_and_subcommand() {
        assert_eq!(name("/a/b/hello_hypercall_test"), "hello_hypercall_test");
        assert_eq!(name("/x/hcall fuzz --iterations 2000 --seed 7"), "hcall-fuzz");
        assert_eq!(name("/x/hcall"), "hcall");
    }

    #[test]
    fn l1_test_names_are_file_names_even_with_paths_in_the_arguments() {
        assert_eq!(name("/path/prog /some/file"), "prog-file");
        assert_eq!(name("/p/prog a/b/ c\"quoted\""), "prog-b-c_quoted_");
        assert!(!name("/p/prog ../..").contains('/'));
    }

    #[test]
    fn repeated_l1_tests_get_numbered() {
        let tests = L1Test::name_all(vec![
            argv("/x/hcall fuzz --seed 1"),
            argv("/x/hcall"),
            argv("/x/hcall fuzz --seed 7"),
        ]);
        let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["hcall-fuzz", "hcall", "hcall-fuzz-2"]);
        assert_eq!(tests[2].argv, argv("/x/hcall fuzz --seed 7"));
    }

    #[test]
    fn the_wire_format_is_pinned() {
        // Built from one tree, agent, probe and xtask agree on any format;
        // these lines pin it anyway, so a change is a deliberate one.
        let pinned = [
            r#"{"event":"hello","who":"probe-stock","kernel":"6.12.117+"}"#,
            r#"{"event":"fact","name":"stock_module_load","value":"ok"}"#,
            r#"{"event":"ask","what":"disable"}"#,
            r#"{"event":"l2_exit","guest":"main","status":0,"timed_out":false,"seconds":2.5,"init_seconds":1.9,"done_seconds":2.4,"pid":39,"signal":9}"#,
            r#"{"event":"l1_test","name":"hcall-fuzz","status":0,"timed_out":false,"seconds":1.0}"#,
            r##"{"event":"file","name":"trace.txt","text":"# tracer: nop\n"}"##,
            r#"{"event":"done","who":"agent"}"#,
        ];
        for json in pinned {
            let line = format!("{MARK}{json}\n");
            let event = Event::from_line(&line).unwrap_or_else(|| panic!("{json}"));
            assert_eq!(event.to_line(), line);
        }
    }

    #[test]
    fn tsc_comes_from_cpu_mhz() {
        assert_eq!(
            tsc_khz("processor\t: 0\ncpu MHz\t\t: 2495.310\n"),
            Some(2_495_310)
        );
        assert_eq!(tsc_khz("cpu MHz\t\t: 0.000\n"), None);
        assert_eq!(tsc_khz("processor : 0\n"), None);
    }

    #[test]
    fn l2_gets_kvm_tsc_and_two_ports() {
        let args = l2_qemu_args(&cfg(), &guest(), Path::new("/tmp/out"), Some(2_000_000));
        let joined = args.join(" ");
        assert!(joined.starts_with("-accel kvm -cpu host -m 256"));
        assert!(joined.contains("console=ttyS0 tsc_early_khz=2000000 tsc=reliable"));
        assert!(joined.ends_with("-serial file:/tmp/out/l2-main-console.log -serial stdio"));
        assert!(!joined.contains("-bios"));
    }
}
