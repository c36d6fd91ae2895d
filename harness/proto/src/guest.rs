//! What both guest programs do as PID 1 of their VM (the agent in L1, the
//! probe in L2): name their kernel, and end the VM.

/// The running kernel's release, as the first report names it.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Ends the VM: QEMU runs with `-no-reboot`, so a reboot ends it, and unlike
/// power-off it needs no ACPI in the guest kernel.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // PID 1 must never exit: that would panic the kernel.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
