//! L2's `/init`: calls the `hello_hypercall` syscall in every documented way,
//! loads the guest module and uses its device, and reports each raw result
//! on the second serial port, then powers off.
//!
//! It judges nothing: xtask compares the facts with the ABI. The syscall
//! number comes from the kernel command line (see [`proto::NR_ENV`]), which
//! xtask read from the guest kernel's generated `unistd_64.h`.

mod cases;
mod kmsg;
mod module;
mod port;
mod selftest;

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use proto::Event;

fn main() {
    let mode = std::env::var(proto::MODE_ENV).unwrap_or_default();
    // "off": power off at once; the benchmark's floor boots L2 this way.
    if mode == "off" {
        proto::guest::power_off();
    }
    let mut port = port::ReportPort::open();
    // "stock": Debian's kernel without the series, so the module only.
    let stock = mode == "stock";
    let result = if stock {
        run_stock(&mut port)
    } else {
        run(&mut port)
    };
    if let Err(err) = result {
        port.send(&Event::Error {
            what: format!("{err:#}"),
        });
    }
    port.send(&Event::Done {
        who: if stock { "probe-stock" } else { "probe" }.into(),
    });
    proto::guest::power_off();
}

fn run(port: &mut port::ReportPort) -> Result<()> {
    port.send(&Event::Hello {
        who: "probe".into(),
        kernel: proto::guest::kernel_release(),
    });
    let nr: i64 = std::env::var(proto::NR_ENV)
        .context("no syscall number on the kernel command line")?
        .parse()
        .context("parse the syscall number")?;

    let boot_log = kmsg::last_seq();
    for case in cases::ENABLED {
        port.send(&Event::Call(cases::run(case, nr)));
    }
    let loaded = load_module(port, "module_load");
    if loaded {
        port.send(&Event::Call(module::read("module_read")));
        port.send(&Event::Call(module::ioctl_raw("module_ioctl_raw")));
    }
    // The series' kselftest, when xtask packed it: its calls get a trace
    // phase of their own, so they cannot blur the counts of the others.
    if let Some(program) = selftest::present() {
        port.ask("kselftest")?;
        port.send(&selftest::run(&program));
    }
    // The host turns kvm.hello_hypercall off between the two phases. This
    // guest's VM was created while it was on and keeps the hypercall: the
    // same calls must still work, which proves the per-VM rule. One L2
    // boot covers both.
    port.ask("disable")?;
    for case in cases::PARAM_OFF {
        port.send(&Event::Call(cases::run(case, nr)));
    }
    if loaded {
        port.send(&Event::Call(module::read("param_off_module_read")));
        port.send(&Event::Call(module::ioctl_raw("param_off_module_ioctl_raw")));
    }
    report_warnings(port, "dmesg_warnings", boot_log);
    Ok(())
}

/// On a stock kernel: load the module and use it, nothing else.
fn run_stock(port: &mut port::ReportPort) -> Result<()> {
    port.send(&Event::Hello {
        who: "probe-stock".into(),
        kernel: proto::guest::kernel_release(),
    });
    let boot_log = kmsg::last_seq();
    // The main guest beside this one turns kvm.hello_hypercall off for a
    // while; this guest's VM was created while it was on (the agent sees
    // to that) and keeps the hypercall, so there is nothing to ask for.
    if load_module(port, "stock_module_load") {
        port.send(&Event::Call(module::read("stock_module_read")));
        port.send(&Event::Call(module::ioctl_raw("stock_module_ioctl_raw")));
    }
    report_warnings(port, "stock_dmesg_warnings", boot_log);
    Ok(())
}

fn load_module(port: &mut port::ReportPort, fact: &str) -> bool {
    let value = module::load();
    let loaded = value == "ok";
    port.send(&Event::Fact {
        name: fact.into(),
        value,
    });
    loaded
}

/// Reports the warnings logged since `since` as `fact`, or, when the log
/// could not be read, why as `<fact>_unreadable`: xtask then has no
/// evidence and says NO RESULT.
fn report_warnings(port: &mut port::ReportPort, fact: &str, since: Result<u64, String>) {
    let event = match since.and_then(kmsg::warnings_since) {
        Ok(lines) => Event::Fact {
            name: fact.into(),
            value: lines.join("\n"),
        },
        Err(why) => Event::Fact {
            name: format!("{fact}_unreadable"),
            value: why,
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
