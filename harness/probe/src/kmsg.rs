//! L2's kernel log, read from /dev/kmsg: the console is quiet (every byte
//! is an exit through two hypervisors), so warnings are only found here.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

/// The sequence number of the newest record so far: warnings before it
/// belong to booting under emulated CPUs, not to what the probe does.
pub fn last_seq() -> Result<u64, String> {
    Ok(records()?.iter().map(|(seq, _, _)| *seq).max().unwrap_or(0))
}

/// Messages at warning level or worse (syslog levels 0 to 4) logged after
/// record `since`. An unreadable log is an error, never an empty list: a
/// clean log must be seen to be clean.
pub fn warnings_since(since: u64) -> Result<Vec<String>, String> {
    Ok(records()?
        .into_iter()
        .filter(|(seq, level, _)| *seq > since && *level <= 4)
        .map(|(_, _, text)| text)
        .collect())
}

/// Every record in the log as (sequence number, level, first line).
fn records() -> Result<Vec<(u64, u32, String)>, String> {
    let mut kmsg = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(|e| format!("open /dev/kmsg: {e}"))?;
    let mut found = Vec::new();
    // One read returns one record; EAGAIN marks the end of the log.
    let mut buf = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(record) = parse(&String::from_utf8_lossy(&buf[..n])) {
                    found.push(record);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // A record overwritten while reading: skip it.
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(e) => return Err(format!("read /dev/kmsg: {e}")),
        }
    }
    Ok(found)
}

/// "4,123,456,-;text" → (123, 4, "text"); the facility bits above the
/// level are dropped.
fn parse(record: &str) -> Option<(u64, u32, String)> {
    let (header, text) = record.split_once(';')?;
    let mut fields = header.split(',');
    let prio: u32 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    Some((seq, prio & 7, text.lines().next().unwrap_or_default().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_level_and_sequence() {
        assert_eq!(
            parse("4,10,20,-;something odd\n"),
            Some((10, 4, "something odd".into()))
        );
        // 3 | 1 << 3: facility user, level error.
        assert_eq!(
            parse("11,12,22,-;user error\n"),
            Some((12, 3, "user error".into()))
        );
        assert_eq!(parse("garbage"), None);
    }
}
