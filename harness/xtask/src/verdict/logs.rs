//! Kernel logs: L2's /dev/kmsg as the probes reported it, and the
//! consoles.

use proto::{Event, FactName, GuestName};

use super::{fact_value, Check, Verdict};

/// L2's console is quiet, so the probe reads warnings from /dev/kmsg,
/// from what it logged while the probe ran (boot-time noise of emulated
/// CPUs, such as XSAVE leaf dumps, is not the series' doing).
pub(super) fn dmesg_check(events: &[Event], check: &str, guest: GuestName) -> Check {
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

pub(crate) fn console_check(name: &str, vm: &str, console: &str) -> Check {
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
}
