//! What each check is judged from: the files of the run directory a reader
//! opens to see why it passed or failed. report.json lists them with each
//! check, so no verdict stands without naming its evidence.

/// The run directory's files behind the check `name`.
pub fn of(name: &str) -> Vec<String> {
    let files: &[&str] = match name {
        "l1_boot" => &["l1-report.log", "l1-console.log"],
        // The agent's own events on L1's report port (ttyS1).
        "agent" | "nested_kvm" | "host_param" => &["l1-report.log"],
        // The probes' events, relayed by the agent onto L1's report port.
        "l2_run" => &["l1-report.log", "l2-main-console.log"],
        "stock_l2_run" => &["l1-report.log", "l2-stock-console.log"],
        "guest_module" | "stock_module" => &["l1-report.log"],
        "l2_dmesg_clean" | "stock_dmesg_clean" | "stock_guest" => &["l1-report.log"],
        "l1_console_clean" | "l1_sanitizers" => &["l1-console.log"],
        "l2_console_clean" => &["l2-main-console.log"],
        // L1's ftrace, with the report's QEMU pids to tell guests apart.
        "param_off_vm_keeps_trace" | "stock_trace_greeting" => &["trace.txt", "l1-report.log"],
        "interrupted" => &["the signal xtask received"],
        "config_kernel" => &["config-kernel.log"],
        "config_kernel_sanitize" => &["config-kernel-sanitize.log"],
        _ if name.starts_with("host_trace_") || name.starts_with("trace_") => &["trace.txt", "l1-report.log"],
        _ if name.starts_with("syscall_kselftest") => {
            &["l2test-hello_hypercall_kselftest.log", "l1-report.log"]
        }
        _ if name.starts_with("syscall_")
            || name.starts_with("module_")
            || name.starts_with("stock_module_")
            || name.starts_with("param_off_vm_keeps_") =>
        {
            &["l1-report.log"]
        }
        _ if name.starts_with("stage_") => &["the stage's error, and its logs in the run directory"],
        // Everything else is an L1 test program ("hcall") or one of its
        // cases ("hcall: real_mode"): its log, and its exit on the report port.
        _ => {
            let program = name.split(": ").next().unwrap_or(name);
            return vec![format!("l1test-{program}.log"), "l1-report.log".into()];
        }
    };
    files.iter().map(|f| f.to_string()).collect()
}

/// Turns every PASS whose evidence is not in the run directory into a
/// FAIL that says so: a pass must rest on a file a reader can open.
/// `exists` answers for a file name of the run directory.
pub fn require(checks: &mut [super::Check], exists: impl Fn(&str) -> bool) {
    for c in checks.iter_mut().filter(|c| c.verdict == super::Verdict::Pass) {
        let missing: Vec<&String> = c.evidence.iter().filter(|f| !exists(f)).collect();
        if !missing.is_empty() {
            c.detail = format!(
                "NO RESULT: judged PASS, but its evidence {} is not in the run directory ({})",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                c.detail
            );
            c.verdict = super::Verdict::Fail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_without_its_file_is_no_result() {
        use super::super::{Check, Verdict};
        let mut checks = vec![
            Check::new("syscall_greeting", Verdict::Pass, "ok"),
            Check::new("host_trace_greeting", Verdict::Pass, "ok"),
            Check::new("hcall", Verdict::Fail, "exit 1"),
        ];
        require(&mut checks, |f| f == "l1-report.log");
        assert_eq!(checks[0].verdict, Verdict::Pass);
        assert_eq!(checks[1].verdict, Verdict::Fail);
        assert!(checks[1]
            .detail
            .starts_with("NO RESULT: judged PASS, but its evidence trace.txt"));
        // A failure stays a failure, whatever its evidence.
        assert_eq!(checks[2].detail, "exit 1");
    }

    #[test]
    fn every_check_names_a_file() {
        assert_eq!(of("syscall_greeting"), ["l1-report.log"]);
        assert_eq!(of("host_trace_greeting"), ["trace.txt", "l1-report.log"]);
        assert_eq!(of("hcall: real_mode"), ["l1test-hcall.log", "l1-report.log"]);
        assert_eq!(of("hcall-fuzz"), ["l1test-hcall-fuzz.log", "l1-report.log"]);
        assert_eq!(
            of("syscall_kselftest: greeting"),
            ["l2test-hello_hypercall_kselftest.log", "l1-report.log"]
        );
        assert_eq!(of("l1_console_clean"), ["l1-console.log"]);
    }
}
