//! L2's initramfs: a newc cpio archive with the probe as /init.
//!
//! Written here rather than with cpio(1): the archive has five entries, and
//! building it in memory needs no staging directory and no root-owned
//! device node on the host.

/// One archive member. Paths are relative, without a leading slash.
pub enum Entry<'a> {
    Dir {
        path: &'a str,
    },
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
    CharDev {
        path: &'a str,
        major: u32,
        minor: u32,
    },
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// The archive bytes, in the kernel's "newc" format (magic 070701).
pub fn newc(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir { path } => member(&mut out, ino, path, S_IFDIR | 0o755, 2, (0, 0), &[]),
            Entry::File { path, mode, data } => member(&mut out, ino, path, S_IFREG | mode, 1, (0, 0), data),
            Entry::CharDev { path, major, minor } => {
                member(&mut out, ino, path, S_IFCHR | 0o600, 1, (*major, *minor), &[])
            }
        }
    }
    member(&mut out, 0, "TRAILER!!!", 0, 1, (0, 0), &[]);
    out
}

fn member(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
    let fields = [
        ino,
        mode,
        0, // uid: root
        0, // gid: root
        nlink,
        0, // mtime: fixed, so equal inputs give equal archives
        data.len() as u32,
        0, // dev major
        0, // dev minor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1, // with its NUL
        0,                     // checksum: unused by newc
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The L2 archive: the probe as /init, /dev/console so the kernel can give
/// init its standard streams before devtmpfs is mounted, the guest module
/// for the probe to load, and the series' kselftest for it to run.
pub fn l2(probe: &[u8], module: Option<&[u8]>, kselftest: Option<&[u8]>) -> Vec<u8> {
    let mut entries = vec![
        Entry::Dir { path: "dev" },
        Entry::CharDev {
            path: "dev/console",
            major: 5,
            minor: 1,
        },
        Entry::Dir { path: "proc" },
        Entry::Dir { path: "sys" },
        Entry::File {
            path: "init",
            mode: 0o755,
            data: probe,
        },
    ];
    if let Some(ko) = module {
        entries.push(Entry::File {
            path: proto::MODULE_FILE,
            mode: 0o644,
            data: ko,
        });
    }
    if let Some(test) = kselftest {
        entries.push(Entry::File {
            path: proto::KSELFTEST_FILE,
            mode: 0o755,
            data: test,
        });
    }
    newc(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_aligned_and_terminated() {
        let a = newc(&[Entry::File {
            path: "init",
            mode: 0o755,
            data: b"abc",
        }]);
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        // Header (110) + "init\0" (5) padded to 116, data 3 padded to 120.
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..119], b"abc");
        assert_eq!(&a[120..126], b"070701");
        let trailer = b"TRAILER!!!\0";
        assert!(a.windows(trailer.len()).any(|w| w == trailer));
    }

    #[test]
    fn mode_and_device_fields() {
        let a = newc(&[Entry::CharDev {
            path: "dev/console",
            major: 5,
            minor: 1,
        }]);
        let field = |n: usize| {
            std::str::from_utf8(&a[6 + 8 * n..14 + 8 * n])
                .unwrap()
                .to_string()
        };
        assert_eq!(field(1), format!("{:08x}", 0o020600));
        assert_eq!(field(9), "00000005");
        assert_eq!(field(10), "00000001");
    }
}
