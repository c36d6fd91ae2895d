//! Warnings that Bochs' emulated Skylake-X makes every kernel print at
//! boot, whatever it runs: its CPUID contradicts itself. Leaf 4 counts
//! more cores than leaf 1's logical-processor count has room for
//! (`parse_legacy` in topology_common.c), and leaf 0xd's XSAVE size
//! disagrees with the sum of its components (`fpu__init_system_xstate`).
//! Both come from CPU 0 in PID 0, before KVM or the series exist.
//!
//! The Intel run's console check drops exactly these reports, whole
//! (from "cut here" to "end trace"), and says it did; any other report,
//! or one of these from anywhere else, still fails it.

/// One known report: the start of its WARNING line, which names the CPU,
/// the task and the source file, and the function it must be in.
struct Quirk {
    warning: &'static str,
    function: &'static str,
    what: &'static str,
}

const QUIRKS: &[Quirk] = &[
    Quirk {
        warning: "WARNING: CPU: 0 PID: 0 at arch/x86/kernel/cpu/topology_common.c:",
        function: " parse_legacy+",
        what: "CPUID leaf 4 counts more cores than leaf 1 has room for",
    },
    Quirk {
        warning: "WARNING: CPU: 0 PID: 0 at arch/x86/kernel/fpu/xstate.c:",
        function: " fpu__init_system_xstate+",
        what: "CPUID leaf 0xd's XSAVE size disagrees with its components",
    },
];

const CUT_HERE: &str = "------------[ cut here ]------------";
const END_TRACE: &str = "---[ end trace ";

/// The console without the known reports, and what each dropped one was.
pub fn strip(console: &str) -> (String, Vec<&'static str>) {
    let lines: Vec<&str> = console.lines().collect();
    let mut kept = String::new();
    let mut dropped = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].ends_with(CUT_HERE) {
            if let Some((end, what)) = known_report(&lines[i..]) {
                dropped.push(what);
                i += end + 1;
                continue;
            }
        }
        kept.push_str(lines[i]);
        kept.push('\n');
        i += 1;
    }
    (kept, dropped)
}

/// When `report` (starting at its "cut here" line) is a known quirk: the
/// index of its "end trace" line, and the quirk's description. The WARNING
/// line must come before any other report starts.
fn known_report(report: &[&str]) -> Option<(usize, &'static str)> {
    let end = report
        .iter()
        .skip(1)
        .position(|l| l.contains(END_TRACE) || l.ends_with(CUT_HERE))?
        + 1;
    if !report[end].contains(END_TRACE) {
        return None;
    }
    let warning = report[1..end].iter().find(|l| l.contains("WARNING: "))?;
    QUIRKS
        .iter()
        .find(|q| {
            let at = warning.find(q.warning);
            at.is_some_and(|at| warning[at..].contains(q.function))
        })
        .map(|q| (end, q.what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bochs-l1-console.log");
        fs_err::read_to_string(path).unwrap()
    }

    #[test]
    fn a_captured_bochs_boot_is_clean_but_for_its_two_quirks() {
        let console = captured();
        assert!(console.lines().any(proto::trouble::is_trouble));
        let (rest, dropped) = strip(&console);
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        let bad: Vec<&str> = rest.lines().filter(|l| proto::trouble::is_trouble(l)).collect();
        assert!(bad.is_empty(), "{bad:?}");
        // The reports go whole, and everything around them stays.
        assert!(!rest.contains("XSAVE consistency problem"));
        assert!(!rest.contains(CUT_HERE));
        assert!(rest.contains("CPUID[0d, 00]: eax=000000e7"));
        assert!(rest.ends_with("reboot: Restarting system\n"));
    }

    #[test]
    fn the_same_warning_elsewhere_or_another_report_still_counts() {
        let console = captured();
        // The same file, but from a task other than the boot CPU's idle one.
        let moved = console.replace(
            "WARNING: CPU: 0 PID: 0 at arch/x86/kernel/fpu/xstate.c:",
            "WARNING: CPU: 1 PID: 77 at arch/x86/kernel/fpu/xstate.c:",
        );
        assert_eq!(strip(&moved).1.len(), 1);
        // Another WARNING inside a report that has no end is kept whole.
        let other =
            format!("{CUT_HERE}\nWARNING: CPU: 0 PID: 9 at arch/x86/kvm/x86.c:100 f+0x1/0x2\nCall Trace:\n");
        let (rest, dropped) = strip(&other);
        assert!(dropped.is_empty());
        assert_eq!(rest, other);
        // A known WARNING whose report runs into the next one is not cut.
        let run_on = format!(
            "{CUT_HERE}\nWARNING: CPU: 0 PID: 0 at arch/x86/kernel/fpu/xstate.c:605 \
             fpu__init_system_xstate+0x875/0xb7e\n{CUT_HERE}\nBUG: oops\n---[ end trace 0 ]---\n"
        );
        assert!(strip(&run_on).1.is_empty());
    }
}
