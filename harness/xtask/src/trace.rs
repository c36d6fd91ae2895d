//! Reads L1's ftrace output (the `trace` file the agent saved): the
//! trace_printk greetings, the kvm_hypercall events and the hypercall exits,
//! split into phases at the agent's markers: "enabled" from the start, then
//! "disabled", then one per further guest ("stock").

use std::collections::BTreeMap;

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
    /// The phases in trace order, each with its name.
    pub phases: Vec<(String, Phase)>,
    /// The ring buffer overflowed and dropped events.
    pub lost_events: bool,
}

impl Trace {
    /// A phase by name; `None` when its marker never made it to the trace.
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }
}

/// Parses the text of /sys/kernel/tracing/trace.
pub fn parse(text: &str) -> Trace {
    let mut t = Trace {
        phases: vec![("enabled".into(), Phase::default())],
        lost_events: false,
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.contains("[LOST ") {
            t.lost_events = true;
            continue;
        }
        let Some((event, message)) = split(line) else {
            continue;
        };
        // Without kallsyms the writer shows as an address: match the text.
        if let Some(name) = message.strip_prefix(proto::TRACE_MARK_PREFIX) {
            t.phases.push((name.to_string(), Phase::default()));
            continue;
        }
        let phase = &mut t.phases.last_mut().expect("the trace starts with a phase").1;
        match event {
            "kvm_hypercall" => {
                if let Some(nr) = hypercall_nr(message) {
                    *phase.hypercalls.entry(nr).or_default() += 1;
                }
            }
            "kvm_exit" => {
                let reason = message.split_whitespace().skip_while(|w| *w != "reason").nth(1);
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
            _ if message == "Hello World" => phase.hello += 1,
            _ => {}
        }
    }
    t
}

/// Splits " task-1 [000] ..... 12.345678: event: message" into its event
/// (or trace_printk's function) and message.
fn split(line: &str) -> Option<(&str, &str)> {
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
    let (event, message) = rest.trim_start().split_once(": ")?;
    Some((event, message.trim_end()))
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
    fn lines_split_at_the_timestamp() {
        let l = " qemu-system-x86-80      [000] d..1.    31.441526: kvm_exit: vcpu 0 reason vmmcall rip 0x1";
        assert_eq!(split(l), Some(("kvm_exit", "vcpu 0 reason vmmcall rip 0x1")));
        let p = "  CPU 0/KVM-81 [000] ..... 31.5: __kvm_emulate_hypercall: Hello World";
        assert_eq!(split(p), Some(("__kvm_emulate_hypercall", "Hello World")));
        assert_eq!(split("no timestamp here"), None);
    }

    #[test]
    fn phases_split_at_the_marker() {
        let text = "\
# tracer: nop
 q-1 [000] ..... 1.0: kvm_exit: vcpu 0 reason vmmcall rip 0x1
 q-1 [000] ..... 1.1: kvm_hypercall: nr 0xd a0 0x1000 a1 0xc a2 0x0 a3 0x0
 q-1 [000] ..... 1.2: __kvm_emulate_hypercall: Hello World
 agent-1 [000] ..... 2.0: tracing_mark_write: hello-hypercall: phase disabled
 q-1 [000] ..... 3.0: kvm_hypercall: nr 0xd a0 0x1000 a1 0xc a2 0x0 a3 0x0
";
        let t = parse(text);
        let (on, off) = (t.phase("enabled").unwrap(), t.phase("disabled").unwrap());
        assert_eq!(on.hello, 1);
        assert_eq!(on.hypercalls.get(&13), Some(&1));
        assert_eq!(on.hypercall_exits, 1);
        assert_eq!(off.hello, 0);
        assert_eq!(off.hypercalls.get(&13), Some(&1));
        assert!(t.phase("stock").is_none());
    }

    #[test]
    fn user_space_markers_are_not_greetings() {
        let text = " agent-1 [000] ..... 2.0: tracing_mark_write: Hello World\n";
        assert_eq!(parse(text).phase("enabled").unwrap().hello, 0);
    }

    #[test]
    fn lost_events_are_noticed() {
        assert!(parse("CPU:0 [LOST 42 EVENTS]\n").lost_events);
    }
}
