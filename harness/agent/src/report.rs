//! L1's report port: the second serial port, which QEMU on the host writes
//! to a file of its own, apart from the console.

use fs_err::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

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
