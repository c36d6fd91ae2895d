//! The one list of what a kernel prints when it hurt itself, used by every
//! reader of a kernel log: xtask on the consoles, hcall on L1's /dev/kmsg.

/// Substrings of a kernel log line that report trouble. Each entry says
/// which report it catches; they are matched anywhere in the line, so a
/// console's timestamps and a kmsg record's prefix do not matter.
pub const KERNEL_TROUBLE: &[&str] = &[
    // panic(): "Kernel panic - not syncing: ...".
    "Kernel panic",
    // BUG(), "BUG: KASAN: ...", "BUG: sleeping function called from
    // invalid context", "BUG: soft lockup - CPU#0 stuck for 22s!", and
    // "kernel BUG at mm/slub.c:..." (which has no colon after BUG).
    "BUG:",
    "kernel BUG",
    // An oops: "Oops: general protection fault ...", "Oops: 0002 [#1]".
    "Oops",
    "general protection fault",
    // WARN(), lockdep ("WARNING: possible circular locking dependency
    // detected"), refcount ("refcount_t: underflow; use-after-free." is
    // printed under a WARNING line too, but not always on the same line).
    "WARNING:",
    "refcount_t:",
    // DEBUG_LIST: "list_add corruption. next->prev should be prev (…)",
    // the message of the WARNING that follows it.
    "list_add corruption",
    "list_del corruption",
    // Sanitizers whose report line does not start with BUG: or WARNING:.
    "UBSAN:",
    "KASAN:",
    "KFENCE:",
    // RCU, seen from another CPU ("rcu: INFO: rcu_preempt detected stalls
    // on CPUs/tasks:") or from the stalled one ("rcu: INFO: rcu_sched
    // self-detected stall on CPU", which a captured soft lockup printed).
    "detected stall",
    // "watchdog: BUG: soft lockup" is caught above; hung tasks are not BUGs:
    // "INFO: task kworker/0:1:12 blocked for more than 120 seconds."
    "blocked for more than",
    // Any stack dump the kernel prints, whatever printed it.
    "Call Trace:",
];

/// True when `line` reports kernel trouble.
pub fn is_trouble(line: &str) -> bool {
    KERNEL_TROUBLE.iter().any(|t| line.contains(t))
}

#[cfg(test)]
mod tests {
    use super::is_trouble;

    // Report lines in the form the kernel prints them (written from the
    // printk formats in the kernel source, not captured from a splat).
    const REPORTS: &[&str] = &[
        "[    1.234567] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009",
        "[    2.000000] BUG: KASAN: slab-out-of-bounds in kvm_pv_hello_hypercall+0x4c/0x90",
        "[    2.000000] ==================================================================",
        "[    3.100000] UBSAN: array-index-out-of-bounds in arch/x86/kvm/x86.c:9700:12",
        "[    3.200000] BUG: KFENCE: out-of-bounds read in test_func+0x5/0x10",
        "[    4.000000] WARNING: possible circular locking dependency detected",
        "[    4.100000] BUG: sleeping function called from invalid context at mm/slab.h:332",
        "[   30.000000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
        "[   31.000000] rcu: INFO: rcu_sched self-detected stall on CPU",
        "[   40.000000] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [qemu:123]",
        "[  150.000000] INFO: task kworker/0:1:12 blocked for more than 120 seconds.",
        "[    5.000000] refcount_t: underflow; use-after-free.",
        "[    5.100000] WARNING: CPU: 0 PID: 1 at arch/x86/kvm/x86.c:100 f+0x1/0x2",
        "[    6.000000] Oops: general protection fault, probably for non-canonical address",
        "[    6.100000] kernel BUG at mm/slub.c:379!",
        "[    6.200000] Call Trace:",
    ];

    #[test]
    fn every_kind_of_report_is_trouble() {
        for line in REPORTS.iter().filter(|l| !l.ends_with("=====")) {
            assert!(is_trouble(line), "not caught: {line}");
        }
    }

    /// The splats `cargo xtask splats` captured from a real kernel, one
    /// file per kind, and the console of a whole sanitized E2E before them.
    fn captured() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/splats");
        let mut files: Vec<(String, String)> = fs_err::read_dir(&dir)
            .expect("captured splats (cargo xtask splats)")
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, fs_err::read_to_string(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn every_captured_splat_is_trouble() {
        let splats = captured();
        assert!(splats.len() > 5, "too few captured splats: {splats:?}");
        for (name, text) in splats.iter().filter(|(n, _)| n != "sanitized-e2e.log") {
            assert!(
                text.lines().any(is_trouble),
                "{name}: no line is trouble:\n{text}"
            );
        }
    }

    /// Every kind of report the list must catch, by a line of its report,
    /// was captured from a real kernel, and that line is trouble: a kind
    /// whose provocation printed nothing fails here, not silently.
    #[test]
    fn every_kind_was_captured_from_a_kernel() {
        let splats = captured();
        for (kind, report) in [
            ("KASAN", "BUG: KASAN: slab-out-of-bounds"),
            ("KASAN", "BUG: KASAN: slab-use-after-free"),
            ("KFENCE", "BUG: KFENCE: use-after-free read"),
            ("UBSAN", "UBSAN: array-index-out-of-bounds"),
            ("lockdep", "WARNING: lock held when returning to user space!"),
            (
                "sleep in atomic",
                "BUG: sleeping function called from invalid context",
            ),
            ("RCU stall", "self-detected stall on CPU"),
            ("soft lockup", "watchdog: BUG: soft lockup"),
            ("hung task", "blocked for more than 2 seconds"),
            ("refcount", "refcount_t: decrement hit 0"),
            ("WARNING", "WARNING: CPU:"),
            ("Oops", "Oops: "),
            ("BUG()", "kernel BUG at"),
            ("list corruption", "list_add corruption"),
            ("panic", "Kernel panic - not syncing"),
        ] {
            let line = splats
                .iter()
                .flat_map(|(_, text)| text.lines())
                .find(|l| l.contains(report));
            match line {
                Some(line) => assert!(is_trouble(line), "{kind}: not caught: {line}"),
                None => panic!("{kind}: no captured splat has {report:?}"),
            }
        }
    }

    #[test]
    fn a_captured_sanitized_run_is_not_trouble() {
        let (_, clean) = captured()
            .into_iter()
            .find(|(n, _)| n == "sanitized-e2e.log")
            .expect("sanitized-e2e.log");
        let bad: Vec<&str> = clean.lines().filter(|l| is_trouble(l)).collect();
        assert!(bad.is_empty(), "false alarms: {bad:?}");
        assert!(clean.contains("KernelAddressSanitizer initialized"));
    }

    #[test]
    fn an_ordinary_boot_is_not_trouble() {
        for line in [
            "[    0.000000] Linux version 7.3.4 (root@vm) (gcc 12.2.0) #1 SMP",
            "[    0.100000] rcu: Hierarchical RCU implementation.",
            "[    0.200000] kvm_amd: TSC scaling supported",
            "[    0.300000] Run /init as init process",
        ] {
            assert!(!is_trouble(line), "false alarm: {line}");
        }
    }
}
