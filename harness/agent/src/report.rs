//! L1's report port: the second serial port, which QEMU on the host writes
//! to a file of its own, apart from the console.

use std::fs::{File, OpenOptions};
use std::io::Write;

use proto::Event;

const PORT: &str = "/dev/ttyS1";

pub struct Report {
    file: Option<File>,
}

impl Report {
    /// Opens the port; without it, reports go to the console, where xtask
    /// still finds them.
    pub fn open() -> Report {
        Report {
            file: OpenOptions::new().write(true).open(PORT).ok(),
        }
    }

    pub fn send(&mut self, event: &Event) {
        let line = event.to_line();
        match &mut self.file {
            Some(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            None => print!("{line}"),
        }
    }
}
