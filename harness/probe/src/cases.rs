//! The syscall cases, one row each: who calls, with what buffer, how
//! long, with which flags.

use nix::sys::wait::waitpid;
use nix::unistd::{fork, setresuid, ForkResult, Uid};
use proto::Call;

/// The unprivileged caller: `nobody`, without CAP_SYS_ADMIN.
const NOBODY: u32 = 65534;
const CANARY: u8 = 0xa5;

#[derive(Clone, Copy)]
pub enum Buffer {
    /// A real buffer of this many bytes, followed by canary bytes.
    Len(usize),
    /// NULL, length 0: the hypercall without a buffer.
    Null,
    /// NULL with this length: no buffer, yet a size.
    NullWithLen(usize),
    /// A pointer into an unmapped page.
    Unmapped,
}

pub struct Case {
    pub name: &'static str,
    pub buffer: Buffer,
    pub unprivileged: bool,
    /// The syscall's third argument, reserved: 0 unless the case is about it.
    pub flags: u32,
}

const fn case(name: &'static str, buffer: Buffer, unprivileged: bool) -> Case {
    Case {
        name,
        buffer,
        unprivileged,
        flags: 0,
    }
}

/// Cases run while the host has the hypercall enabled.
pub const ENABLED: &[Case] = &[
    case("root_buf", Buffer::Len(64), false),
    case("root_null", Buffer::Null, false),
    case("root_null_len", Buffer::NullWithLen(64), false),
    case("root_short", Buffer::Len(5), false),
    case("root_zero_len", Buffer::Len(0), false),
    case("root_bad_pointer", Buffer::Unmapped, false),
    Case {
        flags: 1,
        ..case("root_flags", Buffer::Len(64), false)
    },
    case("user_buf", Buffer::Len(64), true),
];

/// Cases run after the host turned kvm.hello_hypercall off. This guest's
/// VM was created while it was on, and must keep the hypercall.
pub const PARAM_OFF: &[Case] = &[case("param_off_buf", Buffer::Len(64), false)];

pub fn run(case: &Case, nr: i64) -> Call {
    if case.unprivileged {
        return run_as_nobody(case, nr);
    }
    call(case, nr)
}

fn call(case: &Case, nr: i64) -> Call {
    let len = match case.buffer {
        Buffer::Len(n) | Buffer::NullWithLen(n) => n,
        Buffer::Null => 0,
        Buffer::Unmapped => 64,
    };
    let mut buf = vec![CANARY; len + 16];
    let ptr: *mut u8 = match case.buffer {
        Buffer::Len(_) => buf.as_mut_ptr(),
        Buffer::Null | Buffer::NullWithLen(_) => std::ptr::null_mut(),
        // The zero page is never mapped for a user process.
        Buffer::Unmapped => 16 as *mut u8,
    };
    // SAFETY: the kernel writes at most `len` bytes at `ptr`, which is either
    // NULL, an address the process cannot have mapped, or `buf`, which is
    // `len + 16` bytes long and outlives the call.
    let ret = unsafe { nix::libc::syscall(nr, ptr, len, nix::libc::c_ulong::from(case.flags)) };
    let errno = if ret < 0 { nix::errno::Errno::last_raw() } else { 0 };
    let own = matches!(case.buffer, Buffer::Len(_));
    let stored = if ret > 0 && own {
        &buf[..(ret as usize).min(len)]
    } else {
        &[][..]
    };
    let canary_intact = !own || untouched(&buf, ret, len);
    Call {
        case: case.name.into(),
        ret,
        errno,
        data: stored.escape_ascii().to_string(),
        canary_intact,
    }
}

/// Whether the call left alone what it may not write: the bytes after the
/// `ret` it stored (after `len` at most), or all of them when it failed.
fn untouched(buf: &[u8], ret: i64, len: usize) -> bool {
    let from = usize::try_from(ret).map_or(0, |n| n.min(len));
    buf[from..].iter().all(|&b| b == CANARY)
}

/// Runs the call in a child that dropped root, so PID 1 keeps its
/// privileges for the rest of the cases; the result travels back in a pipe.
fn run_as_nobody(case: &Case, nr: i64) -> Call {
    let failed = |what: &str| Call {
        case: case.name.into(),
        ret: i64::MIN,
        errno: 0,
        data: format!("probe: {what}"),
        canary_intact: true,
    };
    let Ok((rd, wr)) = nix::unistd::pipe() else {
        return failed("pipe");
    };
    // SAFETY: the probe is single-threaded, so the child may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(rd);
            let nobody = Uid::from_raw(NOBODY);
            let line = match setresuid(nobody, nobody, nobody) {
                Ok(()) => proto::Event::Call(call(case, nr)).to_line(),
                Err(e) => proto::Event::Call(failed(&format!("setresuid: {e}"))).to_line(),
            };
            let _ = nix::unistd::write(&wr, line.as_bytes());
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut std::fs::File::from(rd), &mut out);
            let _ = waitpid(child, None);
            match proto::Event::from_line(&out) {
                Some(proto::Event::Call(c)) => c,
                _ => failed("no result from the unprivileged child"),
            }
        }
        Err(e) => failed(&format!("fork: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_stored_may_change() {
        let mut buf = vec![CANARY; 64 + 16];
        assert!(untouched(&buf, -1, 64));
        buf[..12].copy_from_slice(b"Hello World\0");
        assert!(untouched(&buf, 12, 64));
        assert!(!untouched(&buf, 5, 64));
        assert!(!untouched(&buf, -1, 64), "a failed call stores nothing");
        buf[70] = 0;
        assert!(!untouched(&buf, 1000, 64), "never past the length");
    }

    #[test]
    fn names_are_unique_and_flags_reserved() {
        let mut names: Vec<&str> = ENABLED.iter().chain(PARAM_OFF).map(|c| c.name).collect();
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all);
        let flagged: Vec<&str> = ENABLED.iter().filter(|c| c.flags != 0).map(|c| c.name).collect();
        assert_eq!(flagged, ["root_flags"]);
    }
}
