//! A test on the real /dev/kvm of the machine that runs `cargo test`: a
//! tiny real-mode guest makes a hypercall no KVM handles and must get
//! -KVM_ENOSYS back. It needs no series, so it runs on any host with a
//! usable KVM, and proves hcall's VM setup, entry and report path there.
//! Where /dev/kvm is missing or cannot run such a guest, it says so on
//! stderr and passes: a skip with its reason, never a silent one.

use std::path::Path;
use std::time::Duration;

use crate::abi::{KVM_ENOSYS, UNKNOWN_HYPERCALL};
use crate::check::guest_result;
use crate::guest::Encoding;
use crate::host::{self, NoKvm};
use crate::modes::Mode;
use crate::vm::{Entry, Stop, Vm, VmConfig};

const DEV: &str = "/dev/kvm";

/// Runs the guest; `Err` is why this host cannot, for the skip.
fn run_unknown_hypercall() -> Result<Stop, String> {
    let kvm = host::open_kvm(DEV).map_err(|NoKvm(why)| why)?;
    let supported = host::supported_cpuid(&kvm).map_err(|e| format!("{e:#}"))?;
    let mut vm = Vm::new(&kvm, &supported, &VmConfig::default())
        .map_err(|e| format!("{DEV} cannot create a VM: {e:#}"))?;
    let entry = Entry {
        nr: UNKNOWN_HYPERCALL,
        // A hang costs this much of every `cargo test`.
        timeout: Duration::from_secs(2),
        ..Entry::call(Mode::Real, false, Encoding::native(), [0; 4])
    };
    // No exit to userspace was asked for, so none may come.
    vm.enter_guest(&entry, &mut |call| {
        panic!("unexpected exit to userspace: {call:?}")
    })
    .map_err(|e| format!("{DEV} cannot run a real-mode guest: {e:#}"))
}

#[test]
fn an_unknown_hypercall_from_real_mode_is_enosys_on_this_kvm() {
    let stop = match run_unknown_hypercall() {
        Ok(stop) => stop,
        Err(why) => {
            eprintln!("SKIP: {why}");
            return;
        }
    };
    let regs = match stop {
        Stop::Reported(regs) => regs,
        // The guest never reported: this KVM cannot run it, which is no
        // verdict on hcall; its own cases judge such stops inside L1.
        other => {
            eprintln!(
                "SKIP: {DEV} did not run the real-mode guest to its report ({other:?}){}",
                why_not_here()
            );
            return;
        }
    };
    assert_eq!(
        guest_result(regs.rax, Mode::Real),
        -KVM_ENOSYS,
        "RAX {:#x} after hypercall {UNKNOWN_HYPERCALL:#x}",
        regs.rax
    );
}

/// What is known to keep this host's KVM from running hcall's guests.
fn why_not_here() -> &'static str {
    // PVM (the pagetable-based paravirtual KVM, kvm_pvm.ko) runs only
    // guest kernels built for it, in 64-bit mode: a bare real-mode guest
    // gets #UD for the hypercall instruction (or spins), as on this
    // project's development machines.
    if Path::new("/sys/module/kvm_pvm").exists() {
        ": this /dev/kvm is kvm_pvm, the paravirtual PVM, which runs only PVM-aware 64-bit guest kernels"
    } else {
        ""
    }
}
