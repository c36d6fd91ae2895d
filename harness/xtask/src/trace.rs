//! Reads L1's ftrace output (the `trace` file the agent saved): the
//! trace_printk greetings, the kvm_hypercall events and the hypercall exits,
//! sorted by who caused them. The guests run side by side, so each line is
//! given to a guest by its thread group (the agent records tgids, and a
//! guest's calls run in its QEMU process). The main guest's lines are split
//! at the agent's markers into "enabled" and the phases the markers name
//! ("kselftest", "disabled"); every other guest's lines form a phase named
//! after it, and the rest (the L1 tests) "l1".

use std::collections::BTreeMap;

use proto::TracePhase;

/// What one phase of the trace holds.
#[derive(Debug, Default, PartialEq)]
pub struct Phase {
    /// trace_printk lines whose message is exactly "Hello World".
    pub hello: usize,
    /// kvm_hypercall events, counted by hypercall number.
    pub hypercalls: BTreeMap<u64, usize>,
    /// kvm_exit events whose reason is a hypercall instruction.
    pub hypercall_exits: usize,
}

#[derive(Debug, PartialEq)]
pub struct Trace {
    /// The phases in order of first appearance, each with its name.
    pub phases: Vec<(String, Phase)>,
    /// The ring buffer overflowed and dropped events.
    pub lost_events: bool,
    /// Event lines came, but none with a thread group: nothing can be
    /// given to a guest (tracing's record-tgid option was off).
    pub no_tgids: bool,
}

impl Trace {
    /// A phase by name; `None` when nothing (not even its marker) made it
    /// to the trace.
    pub fn phase(&self, name: TracePhase) -> Option<&Phase> {
        self.phases
            .iter()
            .find(|(n, _)| n == name.as_str())
            .map(|(_, p)| p)
    }

    fn phase_mut(&mut self, name: &str) -> &mut Phase {
        let at = match self.phases.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.phases.push((name.to_string(), Phase::default()));
                self.phases.len() - 1
            }
        };
        &mut self.phases[at].1
    }
}

/// The QEMU process of each guest, from the agent's report: the main
/// guest's, and the others' by name.
#[derive(Debug, Default)]
pub struct Owners {
    pub main: Option<u32>,
    pub others: Vec<(u32, proto::GuestName)>,
}

/// Parses the text of /sys/kernel/tracing/trace.
pub fn parse(text: &str, owners: &Owners) -> Trace {
    let mut t = Trace {
        phases: vec![(TracePhase::Enabled.as_str().into(), Phase::default())],
        lost_events: false,
        no_tgids: false,
    };
    let mut main_phase = TracePhase::Enabled.as_str();
    let (mut tagged, mut untagged) = (0, 0);
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.contains("[LOST ") {
            t.lost_events = true;
            continue;
        }
        let Some(l) = split(line) else {
            continue;
        };
        // Without kallsyms the writer shows as an address: match the text.
        if let Some(name) = l.message.strip_prefix(proto::TRACE_MARK_PREFIX) {
            main_phase = name;
            t.phase_mut(main_phase);
            continue;
        }
        if l.tgid.is_some() {
            tagged += 1;
        } else {
            untagged += 1;
        }
        let phase = match l.tgid {
            Some(g) if owners.main == Some(g) => main_phase,
            Some(g) => owners
                .others
                .iter()
                .find(|(pid, _)| *pid == g)
                .map_or(TracePhase::L1.as_str(), |(_, name)| name.as_str()),
            None => TracePhase::L1.as_str(),
        };
        let phase = t.phase_mut(phase);
        match l.event {
            "kvm_hypercall" => {
                if let Some(nr) = hypercall_nr(l.message) {
                    *phase.hypercalls.entry(nr).or_default() += 1;
                }
            }
            "kvm_exit" => {
                let reason = l.message.split_whitespace().skip_while(|w| *w != "reason").nth(1);
                // SVM names the exit "hypercall" (older kernels "vmmcall"), VMX "VMCALL".
                let hypercall = ["hypercall", "vmmcall", "vmcall"];
                if reason.is_some_and(|r| hypercall.iter().any(|h| r.eq_ignore_ascii_case(h))) {
                    phase.hypercall_exits += 1;
                }
            }
            // trace_printk lines carry the calling function as the event
            // name, which differs between kernel versions: only the message
            // is matched.
            // The marker file is written from user space; it is never a greeting.
            "tracing_mark_write" => {}
            _ if l.message == "Hello World" => phase.hello += 1,
            _ => {}
        }
    }
    t.no_tgids = tagged == 0 && untagged > 0;
    t
}

/// How many kvm_exit events the trace holds, by exit reason as the
/// kernel names it ("VMCALL", "EPT_VIOLATION"...). With L2 guests the
/// agent keeps only hypercall exits; without (the Intel run), all.
pub fn exit_reasons(text: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')).filter_map(split) {
        if l.event != "kvm_exit" {
            continue;
        }
        if let Some(reason) = l.message.split_whitespace().skip_while(|w| *w != "reason").nth(1) {
            *counts.entry(reason.to_string()).or_default() += 1;
        }
    }
    counts
}

/// One trace line, split.
#[derive(Debug, PartialEq)]
struct Line<'a> {
    /// The thread group, when the trace recorded one: "(    170)" before
    /// the CPU field; "(-------)" or no field at all is `None`.
    tgid: Option<u32>,
    /// The event, or trace_printk's function.
    event: &'a str,
    message: &'a str,
}

/// Splits " task-1 (  1) [000] ..... 12.345678: event: message" into its
/// thread group, event (or trace_printk's function) and message.
fn split(line: &str) -> Option<Line<'_>> {
    // The timestamp is the first word ending in ':' that is a number.
    let mut rest = line;
    loop {
        let start = rest.len() - rest.trim_start().len();
        let word_end = rest[start..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |e| start + e);
        let word = &rest[start..word_end];
        rest = &rest[word_end..];
        if word.is_empty() {
            return None;
        }
        if let Some(ts) = word.strip_suffix(':') {
            if ts.parse::<f64>().is_ok() {
                break;
            }
        }
    }
    let context = &line[..line.len() - rest.len()];
    let (event, message) = rest.trim_start().split_once(": ")?;
    Some(Line {
        tgid: tgid(context),
        event,
        message: message.trim_end(),
    })
}

/// The tgid in the part of a line before the event: the last "( n)" before
/// the "[cpu]" field (a task name may hold parentheses of its own).
fn tgid(context: &str) -> Option<u32> {
    let cpu = context.rfind(" [")?;
    let before = context[..cpu].trim_end().strip_suffix(')')?;
    let open = before.rfind('(')?;
    before[open + 1..].trim().parse().ok()
}

/// "nr 0xd a0 0x0 ..." → 13.
fn hypercall_nr(message: &str) -> Option<u64> {
    let nr = message.split_whitespace().skip_while(|w| *w != "nr").nth(1)?;
    u64::from_str_radix(nr.trim_start_matches("0x"), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_are_counted_by_name() {
        let text = "# tracer: nop\n\
            hcall-80 (80) [000] d..1. 9.1: kvm_exit: vcpu 0 reason VMCALL rip 0x1003 info1 0x0\n\
            hcall-80 (80) [000] d..1. 9.2: kvm_exit: vcpu 0 reason VMCALL rip 0x1003 info1 0x0\n\
            hcall-80 (80) [000] d..1. 9.3: kvm_hypercall: nr 0xd a0 0x0 a1 0x0 a2 0x0 a3 0x0\n\
            qemu-71 (71) [001] d..1. 9.4: kvm_exit: vcpu 1 reason hypercall rip 0x2\n";
        let counts = exit_reasons(text);
        assert_eq!(counts.get("VMCALL"), Some(&2));
        assert_eq!(counts.get("hypercall"), Some(&1));
        assert_eq!(counts.len(), 2);
    }

    fn owners() -> Owners {
        Owners {
            main: Some(70),
            others: vec![(80, proto::GuestName::Stock)],
        }
    }

    #[test]
    fn lines_split_at_the_timestamp() {
        let l = " qemu-system-x86-80      [000] d..1.    31.441526: kvm_exit: vcpu 0 reason vmmcall rip 0x1";
        let got = split(l).unwrap();
        assert_eq!((got.tgid, got.event), (None, "kvm_exit"));
        assert_eq!(got.message, "vcpu 0 reason vmmcall rip 0x1");
        let p = "  CPU 0/KVM-81 (     80) [000] ..... 31.5: __kvm_emulate_hypercall: Hello World";
        let got = split(p).unwrap();
        assert_eq!(
            (got.tgid, got.event, got.message),
            (Some(80), "__kvm_emulate_hypercall", "Hello World")
        );
        let unknown = "  (odd) name-9 (-------) [001] ..... 1.0: kvm_exit: x";
        assert_eq!(split(unknown).unwrap().tgid, None);
        assert_eq!(split("no timestamp here"), None);
    }

    #[test]
    fn guests_are_told_apart_by_thread_group() {
        let text = "\
# tracer: nop
 q-71 (     70) [000] ..... 1.0: kvm_exit: vcpu 0 reason vmmcall rip 0x1
 q-71 (     70) [000] ..... 1.1: kvm_hypercall: nr 0xd a0 0x1000 a1 0xc a2 0x0 a3 0x0
 q-81 (     80) [001] ..... 1.15: __kvm_emulate_hypercall: Hello World
 q-71 (     70) [000] ..... 1.2: __kvm_emulate_hypercall: Hello World
 agent-1 (      1) [000] ..... 1.8: tracing_mark_write: hello-hypercall: phase kselftest
 q-71 (     70) [000] ..... 1.9: __kvm_emulate_hypercall: Hello World
 agent-1 (      1) [000] ..... 2.0: tracing_mark_write: hello-hypercall: phase disabled
 q-71 (     70) [000] ..... 3.0: kvm_hypercall: nr 0xd a0 0x1000 a1 0xc a2 0x0 a3 0x0
 q-81 (     80) [001] ..... 3.1: kvm_hypercall: nr 0xd a0 0x1000 a1 0xc a2 0x0 a3 0x0
 q-81 (     80) [001] ..... 3.2: __kvm_emulate_hypercall: Hello World
 hcall-90 (     90) [000] ..... 4.0: __kvm_emulate_hypercall: Hello World
";
        let t = parse(text, &owners());
        let (on, off) = (
            t.phase(TracePhase::Enabled).unwrap(),
            t.phase(TracePhase::Disabled).unwrap(),
        );
        assert_eq!(on.hello, 1);
        assert_eq!(on.hypercalls.get(&13), Some(&1));
        assert_eq!(on.hypercall_exits, 1);
        assert_eq!(off.hello, 0);
        assert_eq!(off.hypercalls.get(&13), Some(&1));
        assert_eq!(t.phase(TracePhase::Kselftest).unwrap().hello, 1);
        let stock = t.phase(TracePhase::Stock).unwrap();
        assert_eq!((stock.hello, stock.hypercalls.get(&13)), (2, Some(&1)));
        assert_eq!(t.phase(TracePhase::L1).unwrap().hello, 1);
    }

    #[test]
    fn a_line_without_an_owner_is_nobody_s() {
        // A trace without tgids (record-tgid off) gives no guest anything.
        let text = " q-71 [000] ..... 1.2: __kvm_emulate_hypercall: Hello World\n";
        let t = parse(text, &owners());
        assert_eq!(t.phase(TracePhase::Enabled).unwrap().hello, 0);
        assert_eq!(t.phase(TracePhase::L1).unwrap().hello, 1);
        assert!(t.phase(TracePhase::Disabled).is_none());
        assert!(t.no_tgids);
        assert!(!parse("", &owners()).no_tgids);
    }

    #[test]
    fn a_task_name_may_hold_parentheses() {
        let l = " a (1)-9 (     80) [001] ..... 1.0: kvm_exit: x";
        assert_eq!(split(l).unwrap().tgid, Some(80));
    }

    #[test]
    fn user_space_markers_are_not_greetings() {
        let text = " agent-1 (      1) [000] ..... 2.0: tracing_mark_write: Hello World\n";
        let t = parse(text, &owners());
        assert!(t.phases.iter().all(|(_, p)| p.hello == 0));
    }

    #[test]
    fn lost_events_are_noticed() {
        assert!(parse("CPU:0 [LOST 42 EVENTS]\n", &owners()).lost_events);
    }
}
