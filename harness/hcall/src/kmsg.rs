//! The kernel log since a point in time, from /dev/kmsg, and the lines in
//! it that mean the kernel hurt itself.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};

/// A reader positioned at the end of the log when it was opened.
pub struct Kmsg {
    file: File,
}

impl Kmsg {
    pub fn open_at_end() -> Result<Kmsg> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .context("open /dev/kmsg")?;
        file.seek(SeekFrom::End(0)).context("seek /dev/kmsg to its end")?;
        Ok(Kmsg { file })
    }

    /// The messages logged since the last call (or since opening).
    pub fn read_new(&mut self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // Each read returns exactly one record.
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.push(message(&String::from_utf8_lossy(&buf[..n]))),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // Records were overwritten before we read them; go on.
                Err(e) if e.kind() == ErrorKind::BrokenPipe => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("read /dev/kmsg"),
            }
        }
        Ok(out)
    }
}

/// The text of a record: "6,1234,5678,-;text\n KEY=value" gives "text".
fn message(record: &str) -> String {
    let body = record.split_once(';').map_or(record, |(_, b)| b);
    body.lines().next().unwrap_or("").to_string()
}

/// The messages that report kernel trouble.
pub fn troubles(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| proto::trouble::is_trouble(m))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_troubles() {
        assert_eq!(
            message("4,812,9123,-;WARNING: CPU: 0 PID: 1 at x86.c:42\n SUBSYSTEM=cpu\n"),
            "WARNING: CPU: 0 PID: 1 at x86.c:42"
        );
        let msgs = vec![
            "kvm: hello".to_string(),
            "WARNING: CPU: 0 PID: 1 at arch/x86/kvm/x86.c:11 kvm_arch_vcpu_ioctl_run".to_string(),
            "BUG: unable to handle page fault".to_string(),
        ];
        assert_eq!(troubles(&msgs).len(), 2);
        assert!(troubles(&msgs[..1]).is_empty());
    }
}
