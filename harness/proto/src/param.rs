//! Host switches in sysfs: `kvm.hello_hypercall` and ftrace's
//! `tracing_on`, for the programs that run in L1 (the agent and hcall).
//! A [`SysfsSwitch`] remembers the value it found and writes it back when
//! dropped, and a [`Hold`] puts back the value from before it, so a
//! failing case of hcall (or a panic, which unwinds) leaves the host as it
//! was and the next case starts from the run's setting.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub const HELLO_PARAM: &str = "/sys/module/kvm/parameters/hello_hypercall";
pub const TRACING_ON: &str = "/sys/kernel/tracing/tracing_on";

/// A boolean as sysfs prints it: module parameters say Y/N, tracefs 1/0.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "Y" | "y" | "1" => Some(true),
        "N" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// kvm.hello_hypercall's value, or `None` when the kernel has no such
/// parameter (an unpatched host, or one built without
/// CONFIG_KVM_HELLO_HYPERCALL) or it cannot be read.
pub fn hello_param() -> Option<bool> {
    read(Path::new(HELLO_PARAM)).ok().flatten()
}

/// Writes a boolean sysfs file.
pub fn write(path: &Path, on: bool) -> Result<()> {
    fs_err::write(path, if on { "1" } else { "0" })
        .with_context(|| format!("write {} to {}", u8::from(on), path.display()))
}

/// The value of a boolean sysfs file; `None` if it is absent.
pub fn read(path: &Path) -> Result<Option<bool>> {
    match fs_err::read_to_string(path) {
        Ok(text) => parse_bool(&text)
            .map(Some)
            .with_context(|| format!("{}: not a boolean: {text:?}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// A boolean sysfs file that is restored to its first value on drop.
///
/// The current value lives in a `Cell`, so a case can hold the switch at a
/// value (see [`SysfsSwitch::hold`]) while it shares the rest of its
/// context: hcall is single-threaded. (The agent's threads share the
/// parameter through leases of their own, on [`read`] and [`write`].)
pub struct SysfsSwitch {
    path: PathBuf,
    original: bool,
    current: Cell<bool>,
}

impl SysfsSwitch {
    /// Opens the switch; `None` if the file does not exist.
    pub fn open(path: &str) -> Result<Option<SysfsSwitch>> {
        let path = PathBuf::from(path);
        Ok(read(&path)?.map(|v| SysfsSwitch {
            path,
            original: v,
            current: Cell::new(v),
        }))
    }

    pub fn get(&self) -> bool {
        self.current.get()
    }

    /// Whether this process may change the switch (root, writable sysfs).
    pub fn writable(&self) -> bool {
        fs_err::OpenOptions::new().write(true).open(&self.path).is_ok()
    }

    pub fn set(&self, on: bool) -> Result<()> {
        write(&self.path, on)?;
        self.current.set(on);
        Ok(())
    }

    /// Sets the switch to `on` until the returned guard is dropped, which
    /// puts back the value it had: on every way out of a case, an early
    /// `?` and a panic's unwinding included.
    pub fn hold(&self, on: bool) -> Result<Hold<'_>> {
        let before = self.get();
        self.set(on)?;
        Ok(Hold { switch: self, before })
    }
}

/// The switch held at a value; see [`SysfsSwitch::hold`].
pub struct Hold<'a> {
    switch: &'a SysfsSwitch,
    before: bool,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if self.switch.get() != self.before {
            if let Err(e) = self.switch.set(self.before) {
                eprintln!("# could not restore {}: {e:#}", self.switch.path.display());
            }
        }
    }
}

impl Drop for SysfsSwitch {
    fn drop(&mut self) {
        if self.get() != self.original {
            if let Err(e) = self.set(self.original) {
                eprintln!("# could not restore {}: {e:#}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("Y\n"), Some(true));
        assert_eq!(parse_bool("N\n"), Some(false));
        assert_eq!(parse_bool("1\n"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    fn scratch(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("proto-param-{name}-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let file = dir.join("flag");
        (dir, file)
    }

    #[test]
    fn switch_restores_on_drop() {
        let (dir, file) = scratch("drop");
        fs_err::write(&file, "N\n").unwrap();
        {
            let s = SysfsSwitch::open(file.to_str().unwrap()).unwrap().unwrap();
            assert!(!s.get() && s.writable());
            {
                let _on = s.hold(true).unwrap();
                assert_eq!(read(&file).unwrap(), Some(true));
            }
            assert!(!s.get());
            assert_eq!(read(&file).unwrap(), Some(false));
            s.set(true).unwrap();
        }
        assert_eq!(read(&file).unwrap(), Some(false));
        assert!(SysfsSwitch::open(dir.join("absent").to_str().unwrap())
            .unwrap()
            .is_none());
        fs_err::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_hold_is_released_by_a_failing_case() {
        let (dir, file) = scratch("hold");
        fs_err::write(&file, "Y\n").unwrap();
        let s = SysfsSwitch::open(file.to_str().unwrap()).unwrap().unwrap();
        // A case that panics half-way, as hcall's runner catches it.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _off = s.hold(false).unwrap();
            assert_eq!(read(&file).unwrap(), Some(false));
            panic!("a case failed midway");
        }));
        assert!(caught.is_err());
        assert!(s.get());
        assert_eq!(read(&file).unwrap(), Some(true));
        // And one that returns early with an error.
        let early = || -> Result<()> {
            let _off = s.hold(false)?;
            anyhow::bail!("an ioctl failed")
        };
        assert!(early().is_err());
        assert_eq!(read(&file).unwrap(), Some(true));
        drop(s);
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
