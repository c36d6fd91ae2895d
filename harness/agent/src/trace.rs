//! L1's ftrace: cleared and armed before the L2 guests start, saved once
//! every guest has ended.

use std::path::Path;

use anyhow::{Context, Result};

const TRACING: &str = "/sys/kernel/tracing";

/// Which hardware virtualisation L1's KVM drives; the hypercall's exit
/// reason differs between the two.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Vendor {
    Amd,
    Intel,
}

impl Vendor {
    pub fn detect() -> Vendor {
        let cpuinfo = fs_err::read_to_string("/proc/cpuinfo").unwrap_or_default();
        vendor_from_cpuinfo(&cpuinfo)
    }

    /// The kvm_exit reason of a hypercall: SVM_EXIT_VMMCALL or
    /// EXIT_REASON_VMCALL.
    fn hypercall_exit_reason(self) -> u32 {
        match self {
            Vendor::Amd => 0x81,
            Vendor::Intel => 18,
        }
    }
}

fn vendor_from_cpuinfo(cpuinfo: &str) -> Vendor {
    let svm = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "svm"));
    if svm {
        Vendor::Amd
    } else {
        Vendor::Intel
    }
}

fn write(file: &str, value: &str) -> Result<()> {
    fs_err::write(Path::new(TRACING).join(file), value).with_context(|| format!("write {file}"))
}

/// Clears the buffer and enables the events the verdict reads. With L2
/// guests, `kvm_exit` is filtered to hypercall exits: unfiltered, an L2
/// boot logs tens of thousands of exits and can push the interesting lines
/// out of the buffer. Without them (the Intel run) every exit is kept, so
/// the report can count them by reason.
pub fn start(buffer_kb: u32, vendor: Vendor, all_exits: bool) -> Result<()> {
    write("tracing_on", "0")?;
    write("buffer_size_kb", &buffer_kb.to_string())?;
    write("trace", "")?;
    // Guests run side by side: each line is told apart by its thread
    // group, which is the QEMU process that ran the call.
    write("options/record-tgid", "1")?;
    // One clock for every CPU, so the lines of two vCPUs merge in the
    // order they happened, the agent's markers included.
    write("trace_clock", "global")?;
    write("events/kvm/kvm_hypercall/enable", "1")?;
    let filter = match all_exits {
        true => "0".to_string(),
        false => format!("exit_reason == {}", vendor.hypercall_exit_reason()),
    };
    write("events/kvm/kvm_exit/filter", &filter)?;
    write("events/kvm/kvm_exit/enable", "1")?;
    write("tracing_on", "1")
}

/// Writes a line into the trace, to split it into phases.
pub fn mark(text: &str) -> Result<()> {
    write("trace_marker", text)
}

pub fn stop_and_save(to: &Path) -> Result<()> {
    write("tracing_on", "0")?;
    let trace = fs_err::read(Path::new(TRACING).join("trace")).context("read trace")?;
    fs_err::write(to, trace).context("write trace.txt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_comes_from_the_flags_line() {
        let amd = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu vme svm lm\n";
        let intel = "vendor_id\t: GenuineIntel\nflags\t\t: fpu vmx lm\n";
        assert_eq!(vendor_from_cpuinfo(amd), Vendor::Amd);
        assert_eq!(vendor_from_cpuinfo(intel), Vendor::Intel);
    }
}
