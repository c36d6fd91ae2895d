//! The verdict as a whole, on captured reports and traces.

use proto::{Event, Who};

use super::{judge, overall, Check, Evidence, Kselftest, Stock, Verdict, RESET};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    fs_err::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
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
                signal: None,
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

/// Captured in a CI run on 6.1: Debian's kernel, the stock guest, reset
/// 3.4 s into its boot with an empty console, while the main guest passed.
#[test]
fn captured_stock_reset_before_its_console_says_reset() {
    let mut e = evidence(&fixture("report-stock-reset.log"), None);
    e.stock = Stock::Ran {
        release: "6.12.117+deb12-cloud-amd64".into(),
        console: String::new(),
        module_warnings: vec![],
    };
    let checks = judge(&e);
    let stock = checks.iter().find(|c| c.name == "stock_l2_run").unwrap();
    assert_eq!(stock.verdict, Verdict::Fail);
    assert!(stock.detail.starts_with(RESET), "{}", stock.detail);
    assert!(stock.detail.contains("after 3.4s"), "{}", stock.detail);
    // The main guest reported to its end: not a reset.
    let main = checks.iter().find(|c| c.name == "l2_run").unwrap();
    assert!(!main.detail.starts_with(RESET), "{}", main.detail);
    // A console with anything on it is not a reset before the console.
    e.stock = Stock::Ran {
        release: "6.12.117+deb12-cloud-amd64".into(),
        console: "Linux version 6.12.117\n".into(),
        module_warnings: vec![],
    };
    let checks = judge(&e);
    let stock = checks.iter().find(|c| c.name == "stock_l2_run").unwrap();
    assert!(stock.detail.starts_with("NO RESULT"), "{}", stock.detail);
}

/// Captured in a CI run on 7.3: L1 ended 9.7 s into the run, in hcall's
/// fuzz, with nothing on its console after KVM's last message.
#[test]
fn captured_l1_reset_says_reset() {
    let mut e = evidence(&fixture("report-l1-reset.log"), None);
    e.l1_console = fixture("l1-console-reset.log");
    let checks = judge(&e);
    let agent = checks.iter().find(|c| c.name == "agent").unwrap();
    assert_eq!(agent.verdict, Verdict::Fail);
    assert!(agent.detail.starts_with(RESET), "{}", agent.detail);
    // The agent's power-off, a panic or a deadline is not a reset.
    for (console, timed_out) in [
        (format!("{}reboot: Power down\n", e.l1_console), false),
        (
            format!("{}Kernel panic - not syncing: Fatal exception\n", e.l1_console),
            false,
        ),
        (e.l1_console.clone(), true),
    ] {
        let mut other = evidence(&fixture("report-l1-reset.log"), None);
        other.l1_console = console;
        other.l1_timed_out = timed_out;
        let checks = judge(&other);
        let agent = checks.iter().find(|c| c.name == "agent").unwrap();
        assert!(!agent.detail.starts_with(RESET), "{}", agent.detail);
    }
}

#[test]
fn captured_l2_panic_is_a_crash() {
    let mut e = evidence(&fixture("report-l2-panic.log"), None);
    e.l2_console = fixture("l2-console-panic.log");
    let checks = judge(&e);
    let l2 = checks.iter().find(|c| c.name == "l2_run").unwrap();
    assert!(l2.detail.starts_with("CRASH: L2 panicked"), "{}", l2.detail);
}
