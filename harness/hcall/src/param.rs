//! Host switches in sysfs: `kvm.hello_hypercall` and ftrace's
//! `tracing_on`. A [`Switch`] remembers the value it found and writes it
//! back when dropped, so a failing case (or a panic, which unwinds) leaves
//! the host as it was.

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

/// The value of a boolean sysfs file; `None` if it is absent.
pub fn read(path: &Path) -> Result<Option<bool>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_bool(&text)
            .map(Some)
            .with_context(|| format!("{}: not a boolean: {text:?}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// A boolean sysfs file that is restored to its first value on drop.
pub struct Switch {
    path: PathBuf,
    original: bool,
    current: bool,
}

impl Switch {
    /// Opens the switch; `None` if the file does not exist.
    pub fn open(path: &str) -> Result<Option<Switch>> {
        let path = PathBuf::from(path);
        Ok(read(&path)?.map(|v| Switch {
            path,
            original: v,
            current: v,
        }))
    }

    pub fn get(&self) -> bool {
        self.current
    }

    /// Whether this process may change the switch (root, writable sysfs).
    pub fn writable(&self) -> bool {
        std::fs::OpenOptions::new().write(true).open(&self.path).is_ok()
    }

    pub fn set(&mut self, on: bool) -> Result<()> {
        std::fs::write(&self.path, if on { "1" } else { "0" })
            .with_context(|| format!("write {} to {}", u8::from(on), self.path.display()))?;
        self.current = on;
        Ok(())
    }

    /// Runs `f` with the switch at `on`, then puts back the value it had.
    pub fn with<T>(&mut self, on: bool, f: impl FnOnce() -> T) -> Result<T> {
        let before = self.current;
        self.set(on)?;
        let out = f();
        self.set(before)?;
        Ok(out)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if self.current != self.original {
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

    #[test]
    fn switch_restores_on_drop() {
        let dir = std::env::temp_dir().join(format!("hcall-param-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("flag");
        std::fs::write(&file, "N\n").unwrap();
        {
            let mut s = Switch::open(file.to_str().unwrap()).unwrap().unwrap();
            assert!(!s.get() && s.writable());
            let seen = s.with(true, || read(&file).unwrap()).unwrap();
            assert_eq!(seen, Some(true));
            assert!(!s.get());
            s.set(true).unwrap();
        }
        assert_eq!(read(&file).unwrap(), Some(false));
        assert!(Switch::open(dir.join("absent").to_str().unwrap())
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
