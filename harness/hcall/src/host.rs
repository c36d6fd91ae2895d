//! The host as every sub-command finds it: /dev/kvm, the
//! `kvm.hello_hypercall` switch (turned on for the run when it is off and
//! we may change it, and restored afterwards), the supported CPUID and the
//! native hypercall instruction.

use anyhow::{Context, Result};
use kvm_bindings::CpuId;
use kvm_ioctls::Kvm;

use crate::cases::Ctx;
use crate::guest::{self, Encoding};
use proto::param::{self, SysfsSwitch};

/// Why nothing can run here: the whole output is a KTAP skip.
pub struct NoKvm(pub String);

pub fn open_kvm(dev: &str) -> std::result::Result<Kvm, NoKvm> {
    if !std::path::Path::new(dev).exists() {
        return Err(NoKvm(format!("no {dev}")));
    }
    let path = std::ffi::CString::new(dev).map_err(|_| NoKvm(format!("bad path {dev:?}")))?;
    Kvm::new_with_path(path).map_err(|e| NoKvm(format!("cannot open {dev}: {e}")))
}

/// Prepares the shared context and says what it found, as diagnostics.
pub fn prepare(kvm: Kvm) -> Result<(Ctx, Vec<String>)> {
    let mut notes = vec![format!("kernel {}", proto::guest::kernel_release())];
    let native = Encoding::native();
    notes.push(format!(
        "host CPU {}: native instruction {}",
        guest::host_vendor(),
        native.name()
    ));

    let switch = SysfsSwitch::open(param::HELLO_PARAM)?;
    let mut handler_unavailable = None;
    match &switch {
        None => notes.push(format!(
            "{} is absent (kernel without the series or CONFIG_KVM_HELLO_HYPERCALL): \
             expect every case that needs the handler to fail",
            param::HELLO_PARAM
        )),
        Some(s) if s.get() => notes.push("kvm.hello_hypercall=Y".into()),
        Some(s) if s.writable() => {
            s.set(true)?;
            notes.push("kvm.hello_hypercall was N: set to Y for this run, restored at the end".into());
        }
        Some(_) => {
            let why = "kvm.hello_hypercall=N and this user cannot change it";
            notes.push(why.into());
            handler_unavailable = Some(why.to_string());
        }
    }
    let supported = supported_cpuid(&kvm)?;
    let ctx = Ctx {
        kvm,
        supported,
        native,
        param: switch,
        handler_unavailable,
    };
    Ok((ctx, notes))
}

pub fn supported_cpuid(kvm: &Kvm) -> Result<CpuId> {
    kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .context("KVM_GET_SUPPORTED_CPUID")
}
