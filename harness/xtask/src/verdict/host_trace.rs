//! The host's trace: each line given to the guest whose QEMU made the
//! call, then counted per phase.

use proto::{Event, GuestName, TracePhase};

use super::{Check, Verdict};
use crate::trace::{self, Trace};

/// Why no trace line can be given to `guest`, if none can: a greeting
/// missing for that reason is the harness's fault, not the series'.
pub(super) fn unattributable(trace: &Trace, guest: &str, pid: Option<u32>) -> Option<String> {
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
pub(super) fn owners(events: &[Event]) -> trace::Owners {
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

/// The main guest's trace: its calls before the flip (greetings, events,
/// exits), and after it. `param_off_calls` is how many hello hypercalls the
/// probe reported making after kvm.hello_hypercall was turned off.
pub(super) fn trace_checks(
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

#[cfg(test)]
mod tests {
    use super::*;

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
            signal: None,
        };
        let o = owners(&[
            exit(GuestName::Main, Some(7)),
            exit(GuestName::Stock, Some(9)),
            exit(GuestName::Stock, None),
        ]);
        assert_eq!(o.main, Some(7));
        assert_eq!(o.others, [(9, GuestName::Stock)]);
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
}
