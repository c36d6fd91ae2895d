//! The file systems L1 needs on top of the read-only host root.

use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};

/// Where the run directory lives, from the kernel command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// The host's run directory over 9p (QEMU).
    NineP,
    /// Nowhere: L1 runs from an initramfs (Bochs has no 9p), the files go
    /// to tmpfs and then, whole, over the report port.
    Serial,
}

impl Share {
    pub fn from_env() -> Share {
        match std::env::var(proto::OUT_ENV).as_deref() {
            Ok("serial") => Share::Serial,
            _ => Share::NineP,
        }
    }
}

/// Mounts the kernel file systems, a writable scratch tmpfs and the run
/// directory at `out`. The root is the host's own, read-only, so
/// everything writable lives on tmpfs or on the run directory share; the
/// host's /tmp stays visible, since a checkout may live there.
pub fn mount_all(out: &str, share: Share) -> Result<()> {
    let kernel_fs = [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", proto::L1_SCRATCH, "tmpfs"),
        ("tracefs", "/sys/kernel/tracing", "tracefs"),
    ];
    for (source, target, fstype) in kernel_fs {
        mount_one(source, target, fstype, None)?;
    }
    fs_err::create_dir_all(out).context("create the run directory mount point")?;
    if share == Share::Serial {
        return Ok(());
    }
    // The run directory takes every log L2 writes, so a large msize pays.
    mount_one(
        proto::OUT_TAG,
        out,
        "9p",
        Some("trans=virtio,version=9p2000.L,msize=262144"),
    )
}

fn mount_one(source: &str, target: &str, fstype: &str, data: Option<&str>) -> Result<()> {
    mount(
        Some(source),
        Path::new(target),
        Some(fstype),
        MsFlags::empty(),
        data,
    )
    .with_context(|| format!("mount {fstype} on {target}"))
}
