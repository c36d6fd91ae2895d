//! L1's report port: the second serial port, which QEMU on the host writes
//! to a file of its own, apart from the console.

use fs_err::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use proto::Event;

const PORT: &str = "/dev/ttyS1";

/// Shared by the threads that run guests side by side; each event is one
/// write under the lock, so lines never interleave.
pub struct Report {
    file: Mutex<Option<File>>,
}

impl Report {
    /// Opens the port; without it, reports go to the console, where xtask
    /// still finds them.
    pub fn open() -> Report {
        Report {
            file: Mutex::new(OpenOptions::new().write(true).open(PORT).ok()),
        }
    }

    pub fn send(&self, event: &Event) {
        let line = event.to_line();
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &mut *file {
            Some(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            None => print!("{line}"),
        }
    }
}

impl Report {
    /// Waits until the port has sent every byte written to it.
    pub fn drain(&self) {
        let file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(f) = &*file {
            let _ = nix::sys::termios::tcdrain(f);
        }
        let _ = std::io::stdout().flush();
    }
}

/// Sends every file of the run directory `out` as one event each, in name
/// order: where L1 has no share, this is how they reach xtask.
pub fn send_files(report: &Report, out: &Path) -> Result<()> {
    let mut names: Vec<_> = fs_err::read_dir(out)
        .context("list the run directory")?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let bytes = fs_err::read(out.join(&name)).with_context(|| format!("read {name:?}"))?;
        report.send(&Event::File {
            name: name.to_string_lossy().into_owned(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    Ok(())
}
