//! The verdict: named checks drawn from what the guests reported, the
//! host's trace and the consoles. Pure: the inputs are texts and facts, so
//! every rule is tested on captured logs.
//!
//! A run that crashed, hung or reported nothing never passes: those end in
//! a failing `l1_boot` or `l2_run` check that says CRASH, TIMEOUT or
//! NO RESULT.

use proto::abi::{errno_name, EFAULT, EINVAL, ENOSYS, EOPNOTSUPP, EPERM, KVM_ENOSYS};
use proto::ktap::{self, Outcome};
use proto::{Call, Event, FactName, GuestName, ParamState, TracePhase, Who};
use serde::Serialize;

use crate::trace::{self, Trace};

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, verdict: Verdict, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict,
            detail: detail.into(),
        }
    }
}

/// The stock-kernel guest: skipped with a reason, or run.
pub enum Stock {
    Skipped(String),
    Ran {
        release: String,
        console: String,
        /// W=1 warnings of the module built against its headers.
        module_warnings: Vec<String>,
    },
}

/// How the series' syscall kselftest got (or did not get) into the main
/// L2 guest.
#[derive(Debug, Clone, PartialEq)]
pub enum Kselftest {
    /// Not built, and why: an --unpatched run has no series.
    NotBuilt(String),
    /// The patched tree lacks the file (the path), which the series adds.
    Missing(String),
    /// It did not compile: what failed and the log's last lines.
    BuildFailed(String),
    /// Built (with these -Wall warnings) and packed into the initramfs.
    Built { warnings: Vec<String> },
}

/// Everything a finished boot left behind.
pub struct Evidence {
    /// L1's QEMU exit code, `None` when it was killed.
    pub l1_code: Option<i32>,
    pub l1_timed_out: bool,
    pub l1_console: String,
    /// What QEMU itself printed, e.g. why it refused to start.
    pub l1_qemu_stderr: String,
    /// The agent's report (L1's second serial port).
    pub report: String,
    pub l2_console: String,
    /// The text of the saved trace, when the agent got that far.
    pub trace: Option<String>,
    /// KVM_HC_HELLO_HYPERCALL from the host tree's kvm_para.h; `None` when
    /// the tree does not define it.
    pub hc_nr: Option<u64>,
    /// Compiler warnings of the guest module's W=1 build.
    pub module_warnings: Vec<String>,
    /// The second L2 guest, Debian's stock kernel with the module only.
    pub stock: Stock,
    /// The test programs the agent was asked to run in L1, with their output.
    pub l1_tests: Vec<(String, String)>,
    /// The series' syscall kselftest, run by the probe in the main guest.
    pub kselftest: Kselftest,
}

/// What the ABI promises for one syscall case.
enum Want {
    /// A return value and the bytes stored (escaped), canaries intact.
    Stored(i64, &'static str),
    /// Return exactly this, nothing stored.
    Ret(i64),
    /// Fail with this errno.
    Errno(i32),
}

/// The syscall checks: check name, probe case, expected result.
const SYSCALL_CHECKS: &[(&str, &str, Want)] = &[
    (
        "syscall_greeting",
        "root_buf",
        Want::Stored(12, "Hello World\\x00"),
    ),
    ("syscall_null_buffer", "root_null", Want::Ret(0)),
    ("syscall_null_with_length", "root_null_len", Want::Errno(EINVAL)),
    ("syscall_short_buffer", "root_short", Want::Stored(5, "Hell\\x00")),
    ("syscall_zero_length", "root_zero_len", Want::Errno(EINVAL)),
    ("syscall_bad_pointer", "root_bad_pointer", Want::Errno(EFAULT)),
    ("syscall_flags_reserved", "root_flags", Want::Errno(EINVAL)),
    ("syscall_unprivileged", "user_buf", Want::Errno(EPERM)),
    // The guest module: read() gives the greeting as a line of text; the
    // raw ioctl gives the host's answer unmapped.
    ("module_read", "module_read", Want::Stored(12, "Hello World\\n")),
    ("module_ioctl_raw", "module_ioctl_raw", Want::Ret(0)),
    // After kvm.hello_hypercall was turned off: the main guest's VM was
    // created while it was on, so every call still works.
    (
        "param_off_vm_keeps_abi",
        "param_off_buf",
        Want::Stored(12, "Hello World\\x00"),
    ),
    (
        "param_off_vm_keeps_module_read",
        "param_off_module_read",
        Want::Stored(12, "Hello World\\n"),
    ),
    (
        "param_off_vm_keeps_module_ioctl_raw",
        "param_off_module_ioctl_raw",
        Want::Ret(0),
    ),
];

/// The probe's calls after the parameter was turned off; each makes one
/// hello hypercall (read() makes it for its first chunk only, and the
/// probe reads the 12 bytes in one).
const PARAM_OFF_CASES: &[&str] = &[
    "param_off_buf",
    "param_off_module_read",
    "param_off_module_ioctl_raw",
];

/// The stock guest's module calls: the same promises as on the patched guest.
const STOCK_CHECKS: &[(&str, &str, Want)] = &[
    (
        "stock_module_read",
        "stock_module_read",
        Want::Stored(12, "Hello World\\n"),
    ),
    ("stock_module_ioctl_raw", "stock_module_ioctl_raw", Want::Ret(0)),
];

pub fn judge(e: &Evidence) -> Vec<Check> {
    let events: Vec<Event> = e.report.lines().filter_map(Event::from_line).collect();
    let mut checks = Vec::new();

    let agent_started = events
        .iter()
        .any(|ev| matches!(ev, Event::Hello { who: Who::Agent, .. }));
    if !agent_started {
        let mut why = no_report("L1", e.l1_timed_out, &e.l1_console);
        if e.l1_code.is_some_and(|c| c != 0) {
            why.push_str(&format!(
                "\nQEMU exited with {:?}:\n{}",
                e.l1_code,
                tail(&e.l1_qemu_stderr, 10)
            ));
        }
        checks.push(Check::new("l1_boot", Verdict::Fail, why));
        return checks;
    }
    checks.push(Check::new("l1_boot", Verdict::Pass, "the agent started in L1"));

    let errors: Vec<&str> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::Error { what } => Some(what.as_str()),
            _ => None,
        })
        .collect();
    let agent_done = events
        .iter()
        .any(|ev| matches!(ev, Event::Done { who: Who::Agent }));
    checks.push(if !errors.is_empty() {
        Check::new(
            "agent",
            Verdict::Fail,
            format!("a guest program failed: {}", errors.join("; ")),
        )
    } else if !agent_done {
        Check::new(
            "agent",
            Verdict::Fail,
            no_report("L1", e.l1_timed_out, &e.l1_console),
        )
    } else {
        Check::new("agent", Verdict::Pass, "the agent reported to its end")
    });

    if let Some(reason) = events.iter().find_map(|ev| match ev {
        Event::Skip { reason } => Some(reason.clone()),
        _ => None,
    }) {
        checks.push(Check::new("nested_kvm", Verdict::Skip, format!("SKIP: {reason}")));
        return checks;
    }

    checks.push(param_check(&events));
    checks.push(module_check(
        &events,
        "guest_module",
        GuestName::Main,
        &e.module_warnings,
    ));
    checks.push(l2_check(&events, "l2_run", GuestName::Main, &e.l2_console));

    let calls = calls(&events);
    let host = host_has_param(&events);
    for (name, case, want) in SYSCALL_CHECKS {
        checks.push(syscall_check(
            name,
            calls.iter().find(|c| c.case == *case).copied(),
            want,
            host,
        ));
    }
    let owners = owners(&events);
    let trace = e.trace.as_deref().map(|text| trace::parse(text, &owners));
    let blind = |guest: &str, pid: Option<u32>| trace.as_ref().and_then(|t| unattributable(t, guest, pid));
    let param_off_calls = calls
        .iter()
        .filter(|c| PARAM_OFF_CASES.contains(&c.case.as_str()))
        .count();
    checks.extend(trace_checks(
        trace.as_ref(),
        blind("main", owners.main),
        e.hc_nr,
        param_off_calls,
    ));
    checks.extend(kselftest_checks(&e.kselftest, &events, trace.as_ref()));
    for (name, log) in &e.l1_tests {
        checks.extend(l1_test_checks(name, log, &events));
    }
    checks.push(console_check("l1_console_clean", "L1", &e.l1_console));
    checks.push(console_check("l2_console_clean", "L2", &e.l2_console));
    checks.push(dmesg_check(&events, "l2_dmesg_clean", GuestName::Main));
    let stock_pid = owners
        .others
        .iter()
        .find(|(_, g)| *g == GuestName::Stock)
        .map(|(pid, _)| *pid);
    checks.extend(stock_checks(
        &e.stock,
        &events,
        trace.as_ref(),
        blind("stock", stock_pid),
        e.hc_nr,
    ));
    checks
}

/// Why no trace line can be given to `guest`, if none can: a greeting
/// missing for that reason is the harness's fault, not the series'.
fn unattributable(trace: &Trace, guest: &str, pid: Option<u32>) -> Option<String> {
    if trace.no_tgids {
        Some("NO RESULT: the trace recorded no thread groups, so no line can be given to a guest".into())
    } else if pid.is_none() {
        Some(format!(
            "NO RESULT: the agent did not report the {guest} guest's QEMU process, so no trace line can be given to it"
        ))
    } else {
        None
    }
}

/// Which QEMU process ran which guest, as the agent reported: the trace
/// gives each line to a guest by it.
fn owners(events: &[Event]) -> trace::Owners {
    let mut owners = trace::Owners::default();
    for ev in events {
        if let Event::L2Exit {
            guest,
            pid: Some(pid),
            ..
        } = ev
        {
            match guest {
                GuestName::Main => owners.main = Some(*pid),
                other => owners.others.push((*pid, *other)),
            }
        }
    }
    owners
}

/// The run's verdict: any failure fails it, and so does having no check at
/// all; a skip of the whole run (see [`RUN_SKIPS`]) without failures skips
/// it; otherwise it passes, whatever single scenarios were skipped.
pub fn overall(checks: &[Check]) -> Verdict {
    if checks.is_empty() || checks.iter().any(|c| c.verdict == Verdict::Fail) {
        // No check at all is no evidence: never a pass, never a skip.
        Verdict::Fail
    } else if checks
        .iter()
        .any(|c| c.verdict == Verdict::Skip && RUN_SKIPS.contains(&c.name.as_str()))
    {
        Verdict::Skip
    } else {
        Verdict::Pass
    }
}

/// The checks whose skip means the run as a whole could not take place
/// here. Any other skip is one scenario skipped (the stock guest, one test
/// program): it shows in the table, and the rest of the run still decides.
const RUN_SKIPS: &[&str] = &["nested_kvm"];

/// Why a VM reported nothing: CRASH with the panic line, TIMEOUT, or
/// NO RESULT with the console's last line.
fn no_report(vm: &str, timed_out: bool, console: &str) -> String {
    if let Some(line) = console.lines().find(|l| l.contains("Kernel panic")) {
        return format!("CRASH: {vm} panicked: {}\n{}", line.trim(), tail(console, 15));
    }
    if timed_out {
        return format!(
            "TIMEOUT: {vm} did not finish before its deadline and was killed\n{}",
            tail(console, 15)
        );
    }
    format!(
        "NO RESULT: {vm}'s report is missing or incomplete\n{}",
        tail(console, 15)
    )
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("    | {}", l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn param_check(events: &[Event]) -> Check {
    let value = fact_value(events, FactName::HelloHypercallParam);
    match value.map(|v| (v, ParamState::parse(v))) {
        Some((_, Some(ParamState::On))) => Check::new("host_param", Verdict::Pass, "kvm.hello_hypercall is on in L1"),
        Some((_, Some(ParamState::Absent))) => Check::new(
            "host_param",
            Verdict::Fail,
            "L1 has no kvm.hello_hypercall parameter: the host kernel lacks the series (or CONFIG_KVM_HELLO_HYPERCALL)",
        ),
        Some((other, _)) => Check::new("host_param", Verdict::Fail, format!("kvm.hello_hypercall is {other} in L1; the run enables it on the command line")),
        None => Check::new("host_param", Verdict::Fail, "the agent did not report kvm.hello_hypercall"),
    }
}

/// The guest module built without warnings at W=1 and loaded in L2.
fn module_check(events: &[Event], check: &str, guest: GuestName, warnings: &[String]) -> Check {
    let load = fact_value(events, FactName::ModuleLoad(guest));
    match (load, warnings.is_empty()) {
        (_, false) => Check::new(
            check,
            Verdict::Fail,
            format!("W=1 warnings: {}", warnings.join(" | ")),
        ),
        (Some("ok"), true) => Check::new(check, Verdict::Pass, "built without W=1 warnings, loaded in L2"),
        (Some(err), true) => Check::new(check, Verdict::Fail, format!("did not load in L2: {err}")),
        (None, true) => Check::new(
            check,
            Verdict::Fail,
            "NO RESULT: the probe did not report loading it",
        ),
    }
}

/// One L2 guest booted, its probe reported to the end, and QEMU ended in
/// time.
fn l2_check(events: &[Event], check: &str, guest: GuestName, console: &str) -> Check {
    let exit = events.iter().find_map(|ev| match ev {
        Event::L2Exit {
            guest: g,
            timed_out,
            seconds,
            init_seconds,
            ..
        } if *g == guest => Some((*timed_out, *seconds, *init_seconds)),
        _ => None,
    });
    let probe_done = events
        .iter()
        .any(|ev| matches!(ev, Event::Done { who } if *who == guest.probe()));
    match exit {
        Some((false, secs, init)) if probe_done => Check::new(
            check,
            Verdict::Pass,
            match init {
                Some(init) => {
                    format!("L2 reached init after {init:.1}s, the probe reported, L2 ended after {secs:.1}s")
                }
                None => format!("L2 booted, the probe reported, L2 ended after {secs:.1}s"),
            },
        ),
        Some((timed_out, _, _)) => Check::new(check, Verdict::Fail, no_report("L2", timed_out, console)),
        None => Check::new(check, Verdict::Fail, "the agent did not report how L2 ended"),
    }
}

/// Whether L1 has kvm.hello_hypercall, as the agent reported: a host
/// without it has no hypercall, whatever the phase.
fn host_has_param(events: &[Event]) -> bool {
    fact_value(events, FactName::HelloHypercallParam)
        .is_some_and(|v| ParamState::parse(v) != Some(ParamState::Absent))
}

/// One call against what the ABI promises; `host` says whether L1 has the
/// parameter, which decides what a refusal most likely means.
fn syscall_check(name: &str, call: Option<&Call>, want: &Want, host: bool) -> Check {
    let Some(c) = call else {
        return Check::new(
            name,
            Verdict::Fail,
            "NO RESULT: the probe did not report this call",
        );
    };
    let got = describe(c);
    let ok = match want {
        Want::Stored(ret, data) => c.ret == *ret && c.data == *data && c.canary_intact,
        Want::Ret(ret) => c.ret == *ret,
        // A refused call stores nothing.
        Want::Errno(errno) => c.ret == -1 && c.errno == *errno && c.canary_intact,
    };
    let wanted = match want {
        Want::Stored(ret, data) => format!("{ret} with \"{data}\" stored and the canaries intact"),
        Want::Ret(ret) => ret.to_string(),
        Want::Errno(errno) => format!("-1, {}, nothing stored", errno_name(*errno)),
    };
    if ok {
        Check::new(name, Verdict::Pass, format!("got {got}"))
    } else {
        Check::new(
            name,
            Verdict::Fail,
            format!("wanted {wanted}, got {got}{}", explain(name, c, host)),
        )
    }
}

fn describe(c: &Call) -> String {
    if c.ret == -1 {
        let canary = if c.canary_intact {
            ""
        } else {
            ", yet the buffer was written"
        };
        return format!("-1, {}{canary}", errno_name(c.errno));
    }
    if c.ret == -KVM_ENOSYS {
        return format!("{} (-KVM_ENOSYS: the host does not handle the hypercall)", c.ret);
    }
    let canary = if c.canary_intact {
        ""
    } else {
        ", canaries overwritten"
    };
    format!("{} with \"{}\" stored{canary}", c.ret, c.data)
}

/// What a surprising result of check `name` most likely means, on a host
/// with (`host`) or without the parameter.
fn explain(name: &str, c: &Call, host: bool) -> &'static str {
    let refused = (c.ret == -1 && c.errno == EOPNOTSUPP) || c.ret == -KVM_ENOSYS;
    match name {
        _ if c.ret == -1 && c.errno == ENOSYS => {
            ": the guest kernel has no hello_hypercall syscall (unpatched guest)"
        }
        n if n.starts_with("param_off_vm_keeps") && refused && host => {
            ": the host took the hypercall from a VM created while kvm.hello_hypercall was on (it reads the parameter at each call, as v1 did, not once per VM)"
        }
        _ if refused => ": the host answered -KVM_ENOSYS (an unpatched host, or a VM created with the hypercall off)",
        "syscall_flags_reserved" if c.ret >= 0 => {
            ": the flags argument was ignored (a guest syscall without it, as in v1)"
        }
        "syscall_null_with_length" if c.ret >= 0 => {
            ": NULL with a length went through as a call without a buffer (v1); v2 refuses it"
        }
        _ => "",
    }
}

/// The main guest's trace: its calls before the flip (greetings, events,
/// exits), and after it. `param_off_calls` is how many hello hypercalls the
/// probe reported making after kvm.hello_hypercall was turned off.
fn trace_checks(
    trace: Option<&Trace>,
    blind: Option<String>,
    hc_nr: Option<u64>,
    param_off_calls: usize,
) -> Vec<Check> {
    const NAMES: [&str; 4] = [
        "host_trace_greeting",
        "host_trace_kvm_hypercall",
        "host_trace_hypercall_exit",
        "param_off_vm_keeps_trace",
    ];
    let Some(t) = trace else {
        return NAMES
            .iter()
            .map(|n| Check::new(n, Verdict::Fail, "NO RESULT: the agent saved no trace"))
            .collect();
    };
    if let Some(why) = blind {
        return NAMES
            .iter()
            .map(|n| Check::new(n, Verdict::Fail, why.clone()))
            .collect();
    }
    let mut checks = Vec::new();
    let ours = |p: &crate::trace::Phase| hc_nr.and_then(|nr| p.hypercalls.get(&nr).copied()).unwrap_or(0);
    let lost = if t.lost_events {
        " (the trace buffer dropped events)"
    } else {
        ""
    };

    let none = crate::trace::Phase::default();
    let enabled = t.phase(TracePhase::Enabled).unwrap_or(&none);
    let disabled = t.phase(TracePhase::Disabled);
    let (hello, calls) = (enabled.hello, ours(enabled));
    checks.push(if hello >= 3 && hello == calls {
        Check::new(NAMES[0], Verdict::Pass, format!("{hello} \"Hello World\" lines, one per hello hypercall"))
    } else if hello == 0 {
        Check::new(NAMES[0], Verdict::Fail, format!("no \"Hello World\" line in the host's trace{lost}"))
    } else {
        Check::new(NAMES[0], Verdict::Fail, format!("{hello} \"Hello World\" lines for {calls} hello hypercalls; wanted one per successful call, at least 3{lost}"))
    });

    checks.push(match hc_nr {
        None => Check::new(
            NAMES[1],
            Verdict::Fail,
            "the host tree does not define KVM_HC_HELLO_HYPERCALL (unpatched host)",
        ),
        Some(nr) if calls > 0 => Check::new(
            NAMES[1],
            Verdict::Pass,
            format!("{calls} kvm_hypercall events with nr {nr:#x}"),
        ),
        Some(nr) => Check::new(
            NAMES[1],
            Verdict::Fail,
            format!("no kvm_hypercall event with nr {nr:#x}{lost}"),
        ),
    });

    checks.push(if enabled.hypercall_exits > 0 {
        Check::new(
            NAMES[2],
            Verdict::Pass,
            format!(
                "{} kvm_exit events for the hypercall instruction",
                enabled.hypercall_exits
            ),
        )
    } else {
        Check::new(
            NAMES[2],
            Verdict::Fail,
            format!("no kvm_exit event for a hypercall instruction{lost}"),
        )
    });

    // The VM was created while the parameter was on, so each call after
    // the flip must still reach the handler: one kvm_hypercall event and
    // one greeting per call, no more, no fewer.
    let n = param_off_calls;
    checks.push(match disabled {
        None => Check::new(
            NAMES[3],
            Verdict::Fail,
            "the agent's phase marker is missing from the trace",
        ),
        Some(_) if n == 0 => Check::new(
            NAMES[3],
            Verdict::Fail,
            "NO RESULT: the probe reported no call after kvm.hello_hypercall was turned off",
        ),
        Some(p) if p.hello == n && ours(p) == n => Check::new(
            NAMES[3],
            Verdict::Pass,
            format!(
                "after kvm.hello_hypercall was turned off, {n} calls from the main guest (its VM created with it on): {n} kvm_hypercall events, {n} \"Hello World\" lines"
            ),
        ),
        Some(p) if p.hello == 0 && ours(p) > 0 => Check::new(
            NAMES[3],
            Verdict::Fail,
            format!(
                "{} hello hypercalls after kvm.hello_hypercall was turned off, no \"Hello World\" line: the host took the hypercall from a VM created while it was on{lost}",
                ours(p)
            ),
        ),
        Some(p) => Check::new(
            NAMES[3],
            Verdict::Fail,
            format!(
                "{} \"Hello World\" lines and {} kvm_hypercall events for the {n} calls the main guest made after kvm.hello_hypercall was turned off; wanted exactly {n} of each{lost}",
                p.hello,
                ours(p)
            ),
        ),
    });
    checks
}

/// Test programs that print no KTAP, each with the line of its output that
/// shows it exercised the series: without it, exit 0 is no evidence.
const PLAIN_EVIDENCE: &[(&str, &str)] = &[("kvm_pv_test", "testing hcall: KVM_HC_HELLO_HYPERCALL")];

/// One L1 test program (a KVM selftest or the hcall VMM): a check per
/// KTAP case, and one for the program itself. Exit 4 is kselftest's SKIP;
/// a crash (cases the plan announced but never reported) and "no tests
/// ran" are failures, never passes.
fn l1_test_checks(prog: &str, log: &str, events: &[Event]) -> Vec<Check> {
    let ktap = ktap::parse(log);
    let mut checks: Vec<Check> = ktap
        .cases
        .iter()
        .map(|c| {
            let name = format!("{prog}: {}", c.name);
            match &c.outcome {
                Outcome::Pass => Check::new(&name, Verdict::Pass, "ok"),
                Outcome::Skip(why) => Check::new(&name, Verdict::Skip, format!("SKIP: {why}")),
                Outcome::Fail => Check::new(&name, Verdict::Fail, format!("not ok; see l1test-{prog}.log")),
            }
        })
        .collect();
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim();
    let result = events.iter().find_map(|ev| match ev {
        Event::L1Test {
            name,
            status,
            timed_out,
            seconds,
        } if name == prog => Some((*status, *timed_out, *seconds)),
        _ => None,
    });
    let (verdict, detail) = match result {
        None => (
            Verdict::Fail,
            "NO RESULT: the agent did not report this program".to_string(),
        ),
        Some((_, true, secs)) => (
            Verdict::Fail,
            format!("TIMEOUT: killed at its deadline ({secs:.0}s); last line: {last}"),
        ),
        Some((Some(4), _, _)) => (Verdict::Skip, format!("SKIP (exit 4): {last}")),
        Some((Some(0), _, _)) if ktap.missing() > 0 => (
            Verdict::Fail,
            format!(
                "CRASH: {} of {} planned cases never reported",
                ktap.missing(),
                ktap.plan.unwrap_or(0)
            ),
        ),
        Some((Some(0), _, _)) if ktap.plan == Some(0) => (Verdict::Fail, "no tests ran".to_string()),
        // Without KTAP, an exit status alone proves nothing ran: the
        // program must show in its own words that it tested the hypercall.
        Some((Some(0), _, secs)) if ktap.plan.is_none() && ktap.cases.is_empty() => {
            match PLAIN_EVIDENCE.iter().find(|(p, _)| *p == prog) {
                Some((_, line)) if log.contains(line) => (
                    Verdict::Pass,
                    format!("exit 0 after {secs:.1}s; its log shows \"{line}\""),
                ),
                Some((_, line)) => (
                    Verdict::Fail,
                    format!("NO RESULT: exit 0, but its log never shows \"{line}\"; last line: {last}"),
                ),
                None => (
                    Verdict::Fail,
                    format!("NO RESULT: exit 0 without KTAP output; last line: {last}"),
                ),
            }
        }
        Some((Some(0), _, secs)) => (Verdict::Pass, format!("exit 0 after {secs:.1}s: {last}")),
        Some((status, _, secs)) => (Verdict::Fail, format!("exit {status:?} after {secs:.1}s: {last}")),
    };
    checks.push(Check::new(prog, verdict, detail));
    checks
}

/// The series' syscall kselftest in the main guest: a check per KTAP case,
/// and one for the program. It runs on KVM there, so it must pass: exit 4
/// (kselftest's SKIP, "not on KVM") is a failure, and so are exit 0 with
/// no KTAP, a crash, a hang, and a plan of cases that all skipped.
fn kselftest_checks(k: &Kselftest, events: &[Event], trace: Option<&Trace>) -> Vec<Check> {
    const NAME: &str = "syscall_kselftest";
    let fail = |why: String| vec![Check::new(NAME, Verdict::Fail, why)];
    let warnings = match k {
        Kselftest::NotBuilt(why) => return fail(format!("not built: {why}")),
        Kselftest::Missing(path) => {
            return fail(format!("the patched tree has no {path}: the series must add it"))
        }
        Kselftest::BuildFailed(why) => return fail(format!("did not build: {why}")),
        Kselftest::Built { warnings } => warnings,
    };
    let ran = events.iter().find_map(|ev| match ev {
        Event::L2Test {
            name,
            status,
            signal,
            timed_out,
            seconds,
            output,
            truncated,
        } if name == proto::KSELFTEST_FILE => {
            Some((*status, *signal, *timed_out, *seconds, output, *truncated))
        }
        _ => None,
    });
    let Some((status, signal, timed_out, secs, output, truncated)) = ran else {
        return fail("NO RESULT: the probe did not report running it".into());
    };
    let see = format!("see l2test-{}.log", proto::KSELFTEST_FILE);
    let ktap = ktap::parse(output);
    let mut checks: Vec<Check> = ktap
        .cases
        .iter()
        .map(|c| {
            let name = format!("{NAME}: {}", c.name);
            match &c.outcome {
                Outcome::Pass => Check::new(&name, Verdict::Pass, "ok"),
                Outcome::Skip(why) => Check::new(&name, Verdict::Skip, format!("SKIP: {why}")),
                Outcome::Fail => Check::new(&name, Verdict::Fail, format!("not ok; {see}")),
            }
        })
        .collect();
    let last = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim();
    let passed = ktap.cases.iter().filter(|c| c.outcome == Outcome::Pass).count();
    let failed = ktap.cases.iter().filter(|c| c.outcome == Outcome::Fail).count();
    let skipped = ktap.cases.len() - passed - failed;
    let cut = if truncated {
        " (its output was cut short in the report)"
    } else {
        ""
    };
    let (verdict, detail) = if timed_out {
        (
            Verdict::Fail,
            format!("TIMEOUT: killed at its deadline ({secs:.0}s); last line: {last}"),
        )
    } else if let Some(sig) = signal {
        (
            Verdict::Fail,
            format!("CRASH: killed by signal {sig}; last line: {last}"),
        )
    } else if status == Some(4) {
        (
            Verdict::Fail,
            format!("exit 4 (KSFT_SKIP) in the main guest, which runs on KVM: {last}"),
        )
    } else if status != Some(0) {
        (
            Verdict::Fail,
            format!("exit {status:?} after {secs:.1}s: {last}; {see}"),
        )
    } else if ktap.plan.is_none() && ktap.cases.is_empty() {
        (
            Verdict::Fail,
            format!("NO RESULT: exit 0 without KTAP output{cut}; last line: {last}"),
        )
    } else if let Some(why) = &ktap.bailed {
        (Verdict::Fail, format!("exit 0, yet it bailed out: {why}"))
    } else if ktap.missing() > 0 {
        (
            Verdict::Fail,
            format!(
                "CRASH: {} of {} planned cases never reported{cut}",
                ktap.missing(),
                ktap.plan.unwrap_or(0)
            ),
        )
    } else if failed > 0 {
        (
            Verdict::Fail,
            format!("exit 0, yet {failed} case(s) not ok; {see}"),
        )
    } else if passed == 0 {
        (
            Verdict::Fail,
            format!("no case passed ({skipped} skipped): nothing was checked; {see}"),
        )
    } else if !warnings.is_empty() {
        (
            Verdict::Fail,
            format!("passed, but built with -Wall warnings: {}", warnings.join(" | ")),
        )
    } else {
        let greetings = trace
            .and_then(|t| t.phase(TracePhase::Kselftest))
            .map_or(String::new(), |p| {
                format!(", {} \"Hello World\" lines in the host's trace", p.hello)
            });
        (
            Verdict::Pass,
            format!("exit 0 after {secs:.1}s: {passed} passed, {skipped} skipped{greetings}"),
        )
    };
    checks.push(Check::new(NAME, verdict, detail));
    checks
}

/// Every syscall or device call the probes reported.
fn calls(events: &[Event]) -> Vec<&Call> {
    events
        .iter()
        .filter_map(|ev| match ev {
            Event::Call(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn fact_value(events: &[Event], fact: FactName) -> Option<&str> {
    events.iter().find_map(|ev| match ev {
        Event::Fact { name, value } if *name == fact => Some(value.as_str()),
        _ => None,
    })
}

/// The stock guest: Debian's kernel without the series, the module only;
/// its trace lines are those of its QEMU process.
fn stock_checks(
    stock: &Stock,
    events: &[Event],
    trace: Option<&Trace>,
    blind: Option<String>,
    hc_nr: Option<u64>,
) -> Vec<Check> {
    let (release, console, warnings) = match stock {
        Stock::Skipped(why) => return vec![Check::new("stock_guest", Verdict::Skip, format!("SKIP: {why}"))],
        Stock::Ran {
            release,
            console,
            module_warnings,
        } => (release, console, module_warnings),
    };
    let calls = calls(events);
    let mut checks = vec![
        l2_check(events, "stock_l2_run", GuestName::Stock, console),
        module_check(events, "stock_module", GuestName::Stock, warnings),
    ];
    let host = host_has_param(events);
    for (name, case, want) in STOCK_CHECKS {
        checks.push(syscall_check(
            name,
            calls.iter().find(|c| c.case == *case).copied(),
            want,
            host,
        ));
    }
    let phase = trace.and_then(|t| t.phase(TracePhase::Stock));
    let ours = phase.map_or(0, |p| {
        hc_nr.and_then(|nr| p.hypercalls.get(&nr).copied()).unwrap_or(0)
    });
    checks.push(match (phase, blind) {
        (_, Some(why)) => Check::new("stock_trace_greeting", Verdict::Fail, why),
        (None, None) if trace.is_none() => Check::new(
            "stock_trace_greeting",
            Verdict::Fail,
            "NO RESULT: the agent saved no trace",
        ),
        (None, None) => Check::new(
            "stock_trace_greeting",
            Verdict::Fail,
            format!("no traced call from the stock guest's QEMU process ({release})"),
        ),
        (Some(p), None) if p.hello >= 2 && p.hello == ours => Check::new(
            "stock_trace_greeting",
            Verdict::Pass,
            format!("{} \"Hello World\" lines from {release}", p.hello),
        ),
        (Some(p), None) => Check::new(
            "stock_trace_greeting",
            Verdict::Fail,
            format!(
                "{} \"Hello World\" lines for {ours} hello hypercalls from {release}; wanted 2",
                p.hello
            ),
        ),
    });
    checks.push(dmesg_check(events, "stock_dmesg_clean", GuestName::Stock));
    checks
}

/// L2's console is quiet, so the probe reads warnings from /dev/kmsg,
/// from what it logged while the probe ran (boot-time noise of emulated
/// CPUs, such as XSAVE leaf dumps, is not the series' doing).
fn dmesg_check(events: &[Event], check: &str, guest: GuestName) -> Check {
    let warnings = fact_value(events, FactName::DmesgWarnings(guest));
    match warnings {
        None => Check::new(
            check,
            Verdict::Fail,
            match fact_value(events, FactName::DmesgUnreadable(guest)) {
                Some(why) => format!("NO RESULT: the probe could not read L2's kernel log: {why}"),
                None => "NO RESULT: the probe did not report L2's kernel log".into(),
            },
        ),
        Some(lines) => {
            // Loading any out-of-tree module logs this taint notice at
            // warning level; it says nothing about the module's behaviour.
            let bad: Vec<&str> = lines
                .lines()
                .filter(|l| !l.is_empty() && !l.ends_with("loading out-of-tree module taints kernel."))
                .collect();
            if bad.is_empty() {
                Check::new(
                    check,
                    Verdict::Pass,
                    "no warning or worse in L2's kernel log while the probe ran",
                )
            } else {
                Check::new(
                    check,
                    Verdict::Fail,
                    format!("L2's kernel log: {}", bad.join(" | ")),
                )
            }
        }
    }
}

fn console_check(name: &str, vm: &str, console: &str) -> Check {
    let bad: Vec<&str> = console
        .lines()
        .filter(|l| proto::trouble::is_trouble(l))
        .collect();
    if bad.is_empty() {
        Check::new(
            name,
            Verdict::Pass,
            format!("no kernel trouble (panic, BUG, Oops, WARNING, sanitizer, stall, hung task) on {vm}'s console"),
        )
    } else {
        Check::new(
            name,
            Verdict::Fail,
            format!("{vm}'s console: {}", bad.join(" | ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_kernel_log_is_no_result_never_clean() {
        let fact = |name: &str, value: &str| Event::Fact {
            name: name.parse().unwrap(),
            value: value.into(),
        };
        let unreadable = [fact(
            "dmesg_warnings_unreadable",
            "open /dev/kmsg: No such file or directory",
        )];
        let c = dmesg_check(&unreadable, "l2_dmesg_clean", GuestName::Main);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(
            c.detail.contains("NO RESULT") && c.detail.contains("/dev/kmsg"),
            "{}",
            c.detail
        );
        let clean = [fact("dmesg_warnings", "")];
        assert_eq!(
            dmesg_check(&clean, "l2_dmesg_clean", GuestName::Main).verdict,
            Verdict::Pass
        );
    }

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn evidence(report: &str, trace_text: Option<&str>) -> Evidence {
        Evidence {
            l1_code: Some(0),
            l1_timed_out: false,
            l1_console: String::new(),
            l1_qemu_stderr: String::new(),
            report: report.into(),
            l2_console: String::new(),
            trace: trace_text.map(str::to_string),
            hc_nr: Some(13),
            module_warnings: vec![],
            stock: Stock::Skipped("not in this test".into()),
            l1_tests: vec![],
            kselftest: Kselftest::Built { warnings: vec![] },
        }
    }

    fn verdict_of(checks: &[Check], name: &str) -> Verdict {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
            .verdict
    }

    #[test]
    fn silence_is_no_result_never_pass() {
        let checks = judge(&evidence("", None));
        assert_eq!(overall(&checks), Verdict::Fail);
        assert!(checks[0].detail.starts_with("NO RESULT"), "{checks:?}");
    }

    #[test]
    fn a_panic_is_a_crash() {
        let mut e = evidence("", None);
        e.l1_console = "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n".into();
        let checks = judge(&e);
        assert!(checks[0].detail.starts_with("CRASH: L1 panicked"), "{checks:?}");
    }

    #[test]
    fn a_hang_is_a_timeout() {
        let mut e = evidence("", None);
        e.l1_timed_out = true;
        e.l1_code = None;
        assert!(judge(&e)[0].detail.starts_with("TIMEOUT"));
    }

    #[test]
    fn a_skipped_scenario_is_a_skipped_check_not_a_skipped_run() {
        let checks = [
            Check::new("syscall_greeting", Verdict::Pass, "ok"),
            Check::new("stock_guest", Verdict::Skip, "SKIP: no stock kernel here"),
        ];
        assert_eq!(overall(&checks), Verdict::Pass);
        assert_eq!(overall(&[]), Verdict::Fail);
    }

    #[test]
    fn a_missing_kvm_in_l1_skips_loudly() {
        let report = [
            Event::Hello {
                who: Who::Agent,
                kernel: "6.12.117".into(),
            },
            Event::Skip {
                reason: "L1 has no /dev/kvm".into(),
            },
            Event::Done { who: Who::Agent },
        ]
        .map(|e| e.to_line())
        .concat();
        let checks = judge(&evidence(&report, None));
        assert_eq!(overall(&checks), Verdict::Skip);
        assert!(checks
            .iter()
            .any(|c| c.detail.starts_with("SKIP: L1 has no /dev/kvm")));
    }

    #[test]
    fn captured_pass() {
        let mut e = evidence(&fixture("report-pass.log"), Some(&fixture("trace-pass.txt")));
        e.stock = Stock::Ran {
            release: "6.12.117+deb12-cloud-amd64".into(),
            console: String::new(),
            module_warnings: vec![],
        };
        let checks = judge(&e);
        assert_eq!(overall(&checks), Verdict::Pass, "{checks:#?}");
        for name in [
            "stock_trace_greeting",
            "param_off_vm_keeps_abi",
            "param_off_vm_keeps_trace",
            "syscall_flags_reserved",
            "syscall_null_with_length",
            "syscall_kselftest",
            "syscall_kselftest: greeting",
        ] {
            assert_eq!(verdict_of(&checks, name), Verdict::Pass, "{name}");
        }
        // The kselftest's own calls are a phase of their own: the probe's
        // counts before the flip are exact without them.
        let greeting = checks.iter().find(|c| c.name == "host_trace_greeting").unwrap();
        assert!(
            greeting.detail.starts_with("6 \"Hello World\" lines"),
            "{}",
            greeting.detail
        );
    }

    #[test]
    fn captured_v1_run_fails_on_the_v2_promises_only() {
        // A real run of this probe and agent on the v1 series: everything
        // v1 shares with v2 passes, and each changed promise fails, saying
        // why. The stock guest's ioctl fell into a moment when the
        // parameter was off, which a v1 host applies to running VMs too.
        let mut e = evidence(&fixture("report-v1.log"), Some(&fixture("trace-v1.txt")));
        e.stock = Stock::Ran {
            release: "6.12.117+deb12-cloud-amd64".into(),
            console: String::new(),
            module_warnings: vec![],
        };
        e.kselftest = Kselftest::Missing(crate::kselftest::SOURCE.into());
        let checks = judge(&e);
        let mut failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .map(|c| c.name.as_str())
            .collect();
        failed.sort();
        assert_eq!(
            failed,
            [
                "param_off_vm_keeps_abi",
                "param_off_vm_keeps_module_ioctl_raw",
                "param_off_vm_keeps_module_read",
                "param_off_vm_keeps_trace",
                "stock_module_ioctl_raw",
                "stock_trace_greeting",
                "syscall_flags_reserved",
                "syscall_kselftest",
                "syscall_null_with_length",
            ],
            "{checks:#?}"
        );
        let detail = |name: &str| checks.iter().find(|c| c.name == name).unwrap().detail.as_str();
        assert!(detail("syscall_flags_reserved").contains("flags argument was ignored"));
        assert!(detail("syscall_null_with_length").contains("NULL with a length"));
        assert!(detail("param_off_vm_keeps_abi").contains("once per VM"));
        assert!(detail("param_off_vm_keeps_trace").starts_with("3 hello hypercalls after"));
        assert!(detail("syscall_kselftest").contains("has no tools/testing/selftests/x86/hello_hypercall.c"));
    }

    #[test]
    fn trace_lines_of_a_guest_without_a_pid_are_no_result() {
        // The agent's report without the pids: nothing can be given to the
        // guests, and that is the harness's failure, not a missing greeting.
        let report: String = fixture("report-pass.log")
            .lines()
            .map(|l| match Event::from_line(l) {
                Some(Event::L2Exit {
                    guest,
                    status,
                    timed_out,
                    seconds,
                    ..
                }) => Event::L2Exit {
                    guest,
                    status,
                    timed_out,
                    seconds,
                    init_seconds: None,
                    done_seconds: None,
                    pid: None,
                }
                .to_line(),
                _ => format!("{l}\n"),
            })
            .collect();
        let mut e = evidence(&report, Some(&fixture("trace-pass.txt")));
        e.stock = Stock::Ran {
            release: "6.12.117+deb12-cloud-amd64".into(),
            console: String::new(),
            module_warnings: vec![],
        };
        let checks = judge(&e);
        for name in [
            "host_trace_greeting",
            "param_off_vm_keeps_trace",
            "stock_trace_greeting",
        ] {
            let c = checks.iter().find(|c| c.name == name).unwrap();
            assert_eq!(c.verdict, Verdict::Fail, "{name}");
            assert!(c.detail.contains("did not report the"), "{}", c.detail);
        }
    }

    #[test]
    fn owners_come_from_the_l2_exits() {
        let exit = |guest, pid| Event::L2Exit {
            guest,
            status: Some(0),
            timed_out: false,
            seconds: 1.0,
            init_seconds: None,
            done_seconds: None,
            pid,
        };
        let o = owners(&[
            exit(GuestName::Main, Some(7)),
            exit(GuestName::Stock, Some(9)),
            exit(GuestName::Stock, None),
        ]);
        assert_eq!(o.main, Some(7));
        assert_eq!(o.others, [(9, GuestName::Stock)]);
    }

    #[test]
    fn captured_unpatched_fails_for_the_right_reasons() {
        let mut e = evidence(
            &fixture("report-unpatched.log"),
            Some(&fixture("trace-unpatched.txt")),
        );
        e.hc_nr = None;
        e.kselftest = Kselftest::NotBuilt("--unpatched".into());
        let checks = judge(&e);
        assert_eq!(overall(&checks), Verdict::Fail);
        for name in [
            "host_param",
            "syscall_greeting",
            "host_trace_greeting",
            "host_trace_kvm_hypercall",
            "param_off_vm_keeps_module_read",
            "param_off_vm_keeps_trace",
            "syscall_kselftest",
        ] {
            assert_eq!(verdict_of(&checks, name), Verdict::Fail, "{name}");
        }
        let detail = |name: &str| checks.iter().find(|c| c.name == name).unwrap().detail.as_str();
        assert!(detail("syscall_greeting").contains("ENOSYS"));
        // Without the series the host never had the hypercall: no talk of
        // a VM losing it.
        assert!(detail("param_off_vm_keeps_module_read").contains("an unpatched host"));
        assert!(detail("syscall_kselftest").starts_with("not built"));
    }

    #[test]
    fn captured_truncated_report_is_no_result() {
        let checks = judge(&evidence(&fixture("report-truncated.log"), None));
        assert_eq!(overall(&checks), Verdict::Fail);
        assert!(
            checks.iter().any(|c| c.detail.starts_with("NO RESULT")),
            "{checks:#?}"
        );
    }

    #[test]
    fn captured_l2_panic_is_a_crash() {
        let mut e = evidence(&fixture("report-l2-panic.log"), None);
        e.l2_console = fixture("l2-console-panic.log");
        let checks = judge(&e);
        let l2 = checks.iter().find(|c| c.name == "l2_run").unwrap();
        assert!(l2.detail.starts_with("CRASH: L2 panicked"), "{}", l2.detail);
    }

    fn call(case: &str, ret: i64, errno: i32, data: &str) -> Call {
        Call {
            case: case.into(),
            ret,
            errno,
            data: data.into(),
            canary_intact: true,
        }
    }

    #[test]
    fn refused_calls_must_store_nothing() {
        let want = Want::Errno(EINVAL);
        let ok = call("root_flags", -1, EINVAL, "");
        assert_eq!(
            syscall_check("syscall_flags_reserved", Some(&ok), &want, true).verdict,
            Verdict::Pass
        );
        let written = Call {
            canary_intact: false,
            ..ok.clone()
        };
        let c = syscall_check("syscall_flags_reserved", Some(&written), &want, true);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.detail.contains("yet the buffer was written"), "{}", c.detail);
    }

    #[test]
    fn v1_answers_are_explained() {
        let greeting = Want::Stored(12, "Hello World\\x00");
        let flags = syscall_check(
            "syscall_flags_reserved",
            Some(&call("root_flags", 12, 0, "Hello World\\x00")),
            &Want::Errno(EINVAL),
            true,
        );
        assert!(
            flags.detail.contains("flags argument was ignored"),
            "{}",
            flags.detail
        );
        let null = syscall_check(
            "syscall_null_with_length",
            Some(&call("root_null_len", 0, 0, "")),
            &Want::Errno(EINVAL),
            true,
        );
        assert!(null.detail.contains("NULL with a length"), "{}", null.detail);
        let off = syscall_check(
            "param_off_vm_keeps_abi",
            Some(&call("param_off_buf", -1, EOPNOTSUPP, "")),
            &greeting,
            true,
        );
        assert_eq!(off.verdict, Verdict::Fail);
        assert!(
            off.detail.contains("took the hypercall from a VM created while"),
            "{}",
            off.detail
        );
        let raw = syscall_check(
            "param_off_vm_keeps_module_ioctl_raw",
            Some(&call("param_off_module_ioctl_raw", -1000, 0, "")),
            &Want::Ret(0),
            true,
        );
        assert!(raw.detail.contains("once per VM"), "{}", raw.detail);
        // A host without the series never had the hypercall to take away.
        let unpatched = syscall_check(
            "param_off_vm_keeps_module_ioctl_raw",
            Some(&call("param_off_module_ioctl_raw", -1000, 0, "")),
            &Want::Ret(0),
            false,
        );
        assert!(
            unpatched.detail.contains("an unpatched host"),
            "{}",
            unpatched.detail
        );
    }

    fn main_trace(after_flip: &str) -> Trace {
        let text = format!(
            " q-71 (     70) [000] ..... 1.1: kvm_hypercall: nr 0xd a0 0x1000 a1 0xc a2 0x0 a3 0x0
 q-71 (     70) [000] ..... 1.2: __kvm_emulate_hypercall: Hello World
 agent-1 (      1) [000] ..... 2.0: tracing_mark_write: hello-hypercall: phase disabled
{after_flip}"
        );
        let owners = trace::Owners {
            main: Some(70),
            others: vec![],
        };
        trace::parse(&text, &owners)
    }

    const CALL: &str =
        " q-71 (     70) [000] ..... 3.0: kvm_hypercall: nr 0xd a0 0x1000 a1 0xc a2 0x0 a3 0x0\n";
    const HELLO: &str = " q-71 (     70) [000] ..... 3.1: __kvm_emulate_hypercall: Hello World\n";

    fn param_off_trace(after_flip: &str, calls: usize) -> Check {
        let t = main_trace(after_flip);
        trace_checks(Some(&t), None, Some(13), calls).pop().unwrap()
    }

    #[test]
    fn the_main_vm_keeps_its_trace_after_the_flip() {
        let two = [CALL, HELLO, CALL, HELLO].concat();
        let c = param_off_trace(&two, 2);
        assert_eq!(c.name, "param_off_vm_keeps_trace");
        assert_eq!(c.verdict, Verdict::Pass, "{}", c.detail);
        assert!(c
            .detail
            .contains("2 kvm_hypercall events, 2 \"Hello World\" lines"));
        // v1: the calls reached the host, which refused them.
        let v1 = param_off_trace(&[CALL, CALL].concat(), 2);
        assert_eq!(v1.verdict, Verdict::Fail);
        assert!(v1.detail.contains("took the hypercall"), "{}", v1.detail);
        // One greeting too many, or a call that never reached the host.
        assert_eq!(
            param_off_trace(&[two.as_str(), HELLO].concat(), 2).verdict,
            Verdict::Fail
        );
        assert_eq!(param_off_trace(&two, 3).verdict, Verdict::Fail);
        // No calls reported: nothing proven.
        let none = param_off_trace("", 0);
        assert!(none.detail.starts_with("NO RESULT"), "{}", none.detail);
        // No marker: the flip cannot be placed.
        let t = main_trace("");
        let mut t2 = t;
        t2.phases.retain(|(n, _)| n != "disabled");
        let c = trace_checks(Some(&t2), None, Some(13), 2).pop().unwrap();
        assert!(c.detail.contains("marker is missing"), "{}", c.detail);
    }

    fn ran(status: Option<i32>, signal: Option<i32>, timed_out: bool, output: &str) -> Vec<Event> {
        vec![Event::L2Test {
            name: proto::KSELFTEST_FILE.into(),
            status,
            signal,
            timed_out,
            seconds: 0.5,
            output: output.into(),
            truncated: false,
        }]
    }

    fn kselftest_verdict(k: &Kselftest, events: &[Event]) -> (Verdict, String) {
        let checks = kselftest_checks(k, events, None);
        let c = checks.last().unwrap();
        assert_eq!(c.name, "syscall_kselftest");
        (c.verdict, c.detail.clone())
    }

    #[test]
    fn the_kselftest_passes_only_on_ktap_evidence() {
        let built = Kselftest::Built { warnings: vec![] };
        let good = "TAP version 13\n1..2\nok 1 greeting\nok 2 # SKIP no nobody user\n# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0\n";
        let checks = kselftest_checks(&built, &ran(Some(0), None, false, good), None);
        let got: Vec<(&str, Verdict)> = checks.iter().map(|c| (c.name.as_str(), c.verdict)).collect();
        assert_eq!(
            got,
            [
                ("syscall_kselftest: greeting", Verdict::Pass),
                ("syscall_kselftest: no nobody user", Verdict::Skip),
                ("syscall_kselftest", Verdict::Pass),
            ]
        );
        let cases = [
            (
                ran(Some(0), None, false, "hello\n"),
                "NO RESULT: exit 0 without KTAP",
            ),
            (ran(Some(0), None, false, ""), "NO RESULT: exit 0 without KTAP"),
            (
                ran(None, Some(11), false, "1..2\nok 1 a\n"),
                "CRASH: killed by signal 11",
            ),
            (
                ran(Some(0), None, false, "1..3\nok 1 a\n"),
                "CRASH: 2 of 3 planned",
            ),
            (ran(None, Some(9), true, "1..3\n"), "TIMEOUT"),
            (
                ran(Some(4), None, false, "1..0 # SKIP not on KVM\n"),
                "exit 4 (KSFT_SKIP)",
            ),
            (ran(Some(1), None, false, "1..1\nnot ok 1 a\n"), "exit Some(1)"),
            (
                ran(Some(0), None, false, "1..1\nnot ok 1 a\n"),
                "1 case(s) not ok",
            ),
            (
                ran(Some(0), None, false, "1..1\nok 1 # SKIP a\n"),
                "no case passed",
            ),
            (
                ran(Some(0), None, false, "1..1\nBail out! no syscall\n"),
                "bailed out",
            ),
            (vec![], "NO RESULT: the probe did not report"),
        ];
        for (events, want) in cases {
            let (v, detail) = kselftest_verdict(&built, &events);
            assert_eq!(v, Verdict::Fail, "{want}: {detail}");
            assert!(detail.contains(want), "want {want:?} in {detail:?}");
        }
        let warned = Kselftest::Built {
            warnings: vec!["x.c:1: warning: unused".into()],
        };
        let (v, detail) = kselftest_verdict(&warned, &ran(Some(0), None, false, good));
        assert!(
            v == Verdict::Fail && detail.contains("-Wall warnings"),
            "{detail}"
        );
    }

    #[test]
    fn a_kselftest_that_is_not_there_fails_by_name() {
        let missing = Kselftest::Missing("tools/testing/selftests/x86/hello_hypercall.c".into());
        let (v, detail) = kselftest_verdict(&missing, &[]);
        assert_eq!(v, Verdict::Fail);
        assert!(
            detail.contains("no tools/testing/selftests/x86/hello_hypercall.c"),
            "{detail}"
        );
        let (v, detail) = kselftest_verdict(&Kselftest::NotBuilt("--unpatched".into()), &[]);
        assert!(
            v == Verdict::Fail && detail.starts_with("not built: --unpatched"),
            "{detail}"
        );
        let (v, detail) = kselftest_verdict(&Kselftest::BuildFailed("gcc failed".into()), &[]);
        assert!(
            v == Verdict::Fail && detail.contains("did not build: gcc failed"),
            "{detail}"
        );
    }

    #[test]
    fn l1_tests_are_judged_by_case_and_exit() {
        let done = |status| Event::L1Test {
            name: "t".into(),
            status,
            timed_out: false,
            seconds: 1.0,
        };
        let log = "TAP version 13\n1..2\nok 1 a\nok 2 # SKIP b\n";
        let checks = l1_test_checks("t", log, &[done(Some(0))]);
        let names: Vec<_> = checks.iter().map(|c| (c.name.as_str(), c.verdict)).collect();
        assert_eq!(
            names,
            [
                ("t: a", Verdict::Pass),
                ("t: b", Verdict::Skip),
                ("t", Verdict::Pass)
            ]
        );
        let crashed = l1_test_checks("t", "1..3\nok 1 a\n", &[done(Some(0))]);
        assert!(crashed.last().unwrap().detail.starts_with("CRASH"));
        let none = l1_test_checks("t", "1..0\n", &[done(Some(0))]);
        assert_eq!(none.last().unwrap().detail, "no tests ran");
        let silent = l1_test_checks("t", "", &[]);
        assert!(silent.last().unwrap().detail.starts_with("NO RESULT"));
    }

    #[test]
    fn exit_0_without_ktap_is_evidence_only_with_the_programs_own_words() {
        let done = |name: &str| Event::L1Test {
            name: name.into(),
            status: Some(0),
            timed_out: false,
            seconds: 0.2,
        };
        let quiet = l1_test_checks("t", "all good\n", &[done("t")]);
        assert_eq!(quiet.last().unwrap().verdict, Verdict::Fail);
        assert!(quiet
            .last()
            .unwrap()
            .detail
            .starts_with("NO RESULT: exit 0 without KTAP"));

        let pv = "testing hcall: KVM_HC_SCHED_YIELD (11)\ntesting hcall: KVM_HC_HELLO_HYPERCALL (13)\n";
        let ran = l1_test_checks("kvm_pv_test", pv, &[done("kvm_pv_test")]);
        assert_eq!(ran.last().unwrap().verdict, Verdict::Pass);

        // An unpatched tree's kvm_pv_test does not test the hypercall.
        let old = l1_test_checks(
            "kvm_pv_test",
            "testing hcall: KVM_HC_SCHED_YIELD (11)\n",
            &[done("kvm_pv_test")],
        );
        assert_eq!(old.last().unwrap().verdict, Verdict::Fail);
        assert!(old.last().unwrap().detail.contains("never shows"));
    }
}
