//! The report port: L2's second serial port, wired by the agent in L1 to a
//! pipe, so reports never mix with the kernel console.

use fs_err::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};

use anyhow::{bail, Context, Result};
use nix::sys::termios::{self, SetArg};
use proto::{Event, Request};

const PORT: &str = "/dev/ttyS1";

pub struct ReportPort {
    file: Option<File>,
}

impl ReportPort {
    /// Opens the port in raw mode (no echo, no CR/LF rewriting). Without it
    /// the reports still reach the console, so a broken port shows up as
    /// "no result" on the host rather than as silence.
    pub fn open() -> ReportPort {
        crate::mount_dev();
        let file = OpenOptions::new().read(true).write(true).open(PORT).ok();
        if let Some(f) = &file {
            if let Ok(mut t) = termios::tcgetattr(f) {
                termios::cfmakeraw(&mut t);
                let _ = termios::tcsetattr(f, SetArg::TCSANOW, &t);
            }
        }
        ReportPort { file }
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

    /// Asks the agent to do `what` and waits for its answer.
    pub fn ask(&mut self, what: Request) -> Result<()> {
        self.send(&Event::Ask { what });
        let file = self.file.as_ref().context("no report port to ask on")?;
        let mut answer = String::new();
        BufReader::new(file)
            .read_line(&mut answer)
            .context("read the agent's answer")?;
        if answer.trim() != proto::ANSWER_OK {
            bail!("agent answered {:?} to {what:?}", answer.trim());
        }
        Ok(())
    }
}
