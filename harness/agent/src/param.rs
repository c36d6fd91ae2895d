//! The host's switch for in-kernel handling: `kvm.hello_hypercall`.

use anyhow::{Context, Result};

const PARAM: &str = "/sys/module/kvm/parameters/hello_hypercall";

/// The parameter's value, or `None` when the kernel has no such parameter
/// (an unpatched host, or one built without CONFIG_KVM_HELLO_HYPERCALL).
pub fn read() -> Option<bool> {
    let text = std::fs::read_to_string(PARAM).ok()?;
    Some(matches!(text.trim(), "Y" | "y" | "1"))
}

pub fn write(on: bool) -> Result<()> {
    std::fs::write(PARAM, if on { "1" } else { "0" }).context("write kvm.hello_hypercall")
}

pub fn describe(value: Option<bool>) -> String {
    match value {
        Some(true) => "on".into(),
        Some(false) => "off".into(),
        None => "absent".into(),
    }
}
