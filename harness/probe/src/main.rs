//! L2's `/init`: calls the `hello_hypercall` syscall in every documented way,
//! loads the guest module and uses its device, and reports each raw result
//! on the second serial port, then powers off.
//!
//! It judges nothing: xtask compares the facts with the ABI. The syscall
//! number comes from the kernel command line (see [`proto::NR_ENV`]), which
//! xtask read from the guest kernel's generated `unistd_64.h`.

mod cases;
mod module;
mod port;
mod selftest;

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use proto::{Event, FactName, GuestName, ProbeMode, Request};

fn main() {
    let mode = ProbeMode::parse(std::env::var(proto::MODE_ENV).ok().as_deref());
    let guest = match mode {
        // Power off at once; the benchmark's floor boots L2 this way.
        ProbeMode::Off => proto::guest::power_off(),
        ProbeMode::Guest(guest) => guest,
    };
    let mut port = port::ReportPort::open();
    let result = match guest {
        GuestName::Main => run(&mut port),
        // Debian's kernel without the series, so the module only.
        GuestName::Stock => run_stock(&mut port),
    };
    if let Err(err) = result {
        port.send(&Event::Error {
            what: format!("{err:#}"),
        });
    }
    port.send(&Event::Done { who: guest.probe() });
    proto::guest::power_off();
}

fn run(port: &mut port::ReportPort) -> Result<()> {
    let guest = GuestName::Main;
    port.send(&Event::Hello {
        who: guest.probe(),
        kernel: proto::guest::kernel_release(),
    });
    let nr: i64 = std::env::var(proto::NR_ENV)
        .context("no syscall number on the kernel command line")?
        .parse()
        .context("parse the syscall number")?;

    let boot_log = proto::kmsg::last_seq();
    for case in cases::ENABLED {
        port.send(&Event::Call(cases::run(case, nr)));
    }
    let loaded = load_module(port, guest);
    if loaded {
        port.send(&Event::Call(module::read("module_read")));
        port.send(&Event::Call(module::ioctl_raw("module_ioctl_raw")));
    }
    // The series' kselftest, when xtask packed it: its calls get a trace
    // phase of their own, so they cannot blur the counts of the others.
    if let Some(program) = selftest::present() {
        port.ask(Request::Kselftest)?;
        port.send(&selftest::run(&program));
    }
    // The host turns kvm.hello_hypercall off between the two phases. This
    // guest's VM was created while it was on and keeps the hypercall: the
    // same calls must still work, which proves the per-VM rule. One L2
    // boot covers both.
    port.ask(Request::Disable)?;
    for case in cases::PARAM_OFF {
        port.send(&Event::Call(cases::run(case, nr)));
    }
    if loaded {
        port.send(&Event::Call(module::read("param_off_module_read")));
        port.send(&Event::Call(module::ioctl_raw("param_off_module_ioctl_raw")));
    }
    report_warnings(port, guest, boot_log);
    Ok(())
}

/// On a stock kernel: load the module and use it, nothing else.
fn run_stock(port: &mut port::ReportPort) -> Result<()> {
    let guest = GuestName::Stock;
    port.send(&Event::Hello {
        who: guest.probe(),
        kernel: proto::guest::kernel_release(),
    });
    let boot_log = proto::kmsg::last_seq();
    // The main guest beside this one turns kvm.hello_hypercall off for a
    // while; this guest's VM was created while it was on (the agent sees
    // to that) and keeps the hypercall, so there is nothing to ask for.
    if load_module(port, guest) {
        port.send(&Event::Call(module::read("stock_module_read")));
        port.send(&Event::Call(module::ioctl_raw("stock_module_ioctl_raw")));
    }
    report_warnings(port, guest, boot_log);
    Ok(())
}

fn load_module(port: &mut port::ReportPort, guest: GuestName) -> bool {
    let value = module::load();
    let loaded = value == "ok";
    port.send(&Event::Fact {
        name: FactName::ModuleLoad(guest),
        value,
    });
    loaded
}

/// Reports the warnings logged since `since`, or, when the log could not
/// be read, why: xtask then has no evidence and says NO RESULT.
fn report_warnings(port: &mut port::ReportPort, guest: GuestName, since: std::io::Result<u64>) {
    let event = match since.and_then(proto::kmsg::warnings_since) {
        Ok(lines) => Event::Fact {
            name: FactName::DmesgWarnings(guest),
            value: lines.join("\n"),
        },
        Err(why) => Event::Fact {
            name: FactName::DmesgUnreadable(guest),
            value: why.to_string(),
        },
    };
    port.send(&event);
}

/// Mounts devtmpfs so that the report port exists; an initramfs gets no
/// automatic /dev mount.
pub(crate) fn mount_dev() {
    let _ = mount(
        Some("devtmpfs"),
        "/dev",
        Some("devtmpfs"),
        MsFlags::empty(),
        None::<&str>,
    );
}
