//! The kernel log, read from /dev/kmsg: the probe looks in L2's for
//! warnings (its console is quiet: every byte is an exit through two
//! hypervisors), hcall's fuzzer in L1's for kernel trouble.

use fs_err::os::unix::fs::OpenOptionsExt;
use fs_err::File;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};

/// One record of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct KmsgRecord {
    pub seq: u64,
    /// The syslog level, 0 (emergency) to 7 (debug).
    pub level: u32,
    /// The first line of its text.
    pub text: String,
}

impl KmsgRecord {
    /// Whether it reports kernel trouble (see [`crate::trouble`]).
    pub fn is_trouble(&self) -> bool {
        crate::trouble::is_trouble(&self.text)
    }
}

/// A reader of /dev/kmsg that hands out the records logged since its last
/// read.
pub struct Kmsg {
    file: File,
}

impl Kmsg {
    /// Opens the log at its start: the first read gives every record kept.
    pub fn open() -> io::Result<Kmsg> {
        let file = fs_err::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .map_err(|e| io::Error::new(e.kind(), format!("open /dev/kmsg: {e}")))?;
        Ok(Kmsg { file })
    }

    /// Opens the log at its end: the first read gives what comes next.
    pub fn open_at_end() -> io::Result<Kmsg> {
        let mut kmsg = Kmsg::open()?;
        kmsg.file
            .seek(SeekFrom::End(0))
            .map_err(|e| io::Error::new(e.kind(), format!("seek /dev/kmsg to its end: {e}")))?;
        Ok(kmsg)
    }

    /// The records logged since the last read (or since opening). An
    /// unreadable log is an error, never an empty list: a clean log must
    /// be seen to be clean.
    pub fn read_new(&mut self) -> io::Result<Vec<KmsgRecord>> {
        let mut found = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // One read returns one record; EAGAIN marks the end of the log.
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => found.extend(parse(&String::from_utf8_lossy(&buf[..n]))),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // Records were overwritten before we read them; go on.
                Err(e) if e.kind() == ErrorKind::BrokenPipe => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("read /dev/kmsg: {e}"))),
            }
        }
        Ok(found)
    }
}

/// The sequence number of the newest record so far: the probe judges only
/// what comes after it, not the noise of booting under emulated CPUs.
pub fn last_seq() -> io::Result<u64> {
    Ok(Kmsg::open()?.read_new()?.iter().map(|r| r.seq).max().unwrap_or(0))
}

/// Messages at warning level or worse (syslog levels 0 to 4) logged after
/// record `since`.
pub fn warnings_since(since: u64) -> io::Result<Vec<String>> {
    Ok(Kmsg::open()?
        .read_new()?
        .into_iter()
        .filter(|r| r.seq > since && r.level <= 4)
        .map(|r| r.text)
        .collect())
}

/// "4,123,456,-;text\n KEY=value" → record 123 at level 4 saying "text";
/// the facility bits above the level are dropped.
pub fn parse(record: &str) -> Option<KmsgRecord> {
    let (header, text) = record.split_once(';')?;
    let mut fields = header.split(',');
    let prio: u32 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    Some(KmsgRecord {
        seq,
        level: prio & 7,
        text: text.lines().next().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_level_sequence_and_first_line() {
        let r = |seq, level, text: &str| {
            Some(KmsgRecord {
                seq,
                level,
                text: text.into(),
            })
        };
        assert_eq!(parse("4,10,20,-;something odd\n"), r(10, 4, "something odd"));
        // 3 | 1 << 3: facility user, level error.
        assert_eq!(parse("11,12,22,-;user error\n"), r(12, 3, "user error"));
        assert_eq!(
            parse("4,812,9123,-;WARNING: CPU: 0 PID: 1 at x86.c:42\n SUBSYSTEM=cpu\n"),
            r(812, 4, "WARNING: CPU: 0 PID: 1 at x86.c:42")
        );
        assert_eq!(parse("garbage"), None);
    }

    #[test]
    fn troubles_are_found_by_the_shared_list() {
        let trouble = |text: &str| parse(&format!("4,1,1,-;{text}")).unwrap().is_trouble();
        assert!(trouble(
            "WARNING: CPU: 0 PID: 1 at arch/x86/kvm/x86.c:11 kvm_arch_vcpu_ioctl_run"
        ));
        assert!(trouble("BUG: unable to handle page fault"));
        assert!(!trouble("kvm: hello"));
    }
}
