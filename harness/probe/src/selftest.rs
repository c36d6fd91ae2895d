//! Runs the series' syscall kselftest, packed into the initramfs by xtask,
//! with a deadline, and reports how it ended and what it printed. Its
//! KTAP is judged on the host, like everything else.

use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, dup2, execve, fork, ForkResult};
use proto::Event;

/// A kselftest of a few syscalls takes milliseconds; one still running
/// after this long is hung.
const DEADLINE: Duration = Duration::from_secs(60);
/// What the report carries of its output: every byte crosses a nested
/// serial port, and a KTAP of a few dozen cases fits many times over.
const MAX_OUTPUT: usize = 16 * 1024;

/// The program's path, when xtask packed it.
pub fn present() -> Option<String> {
    let path = format!("/{}", proto::KSELFTEST_FILE);
    Path::new(&path).exists().then_some(path)
}

/// How the program ended, as waitpid(2) tells it.
struct Ended {
    status: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
}

/// Runs `program` to its end or its deadline.
///
/// Not with std's Command: on Linux it opens a socketpair for its error
/// channel, and L2's kernel has no networking (socketpair is ENOSYS).
/// fork and execve need nothing of the sort.
pub fn run(program: &str) -> Event {
    let started = Instant::now();
    let report = |ended: Ended, out: Vec<u8>, why: Option<String>| {
        let truncated = out.len() > MAX_OUTPUT;
        let mut output = String::from_utf8_lossy(&out[..out.len().min(MAX_OUTPUT)]).into_owned();
        if let Some(why) = why {
            output.push_str(&format!("\nprobe: {why}\n"));
        }
        Event::L2Test {
            name: proto::KSELFTEST_FILE.into(),
            status: ended.status,
            signal: ended.signal,
            timed_out: ended.timed_out,
            seconds: started.elapsed().as_secs_f64(),
            output,
            truncated,
        }
    };
    let not_run = |why: String| {
        let ended = Ended {
            status: None,
            signal: None,
            timed_out: false,
        };
        report(ended, vec![], Some(why))
    };
    let Ok(path) = CString::new(program) else {
        return not_run(format!("bad path {program:?}"));
    };
    // One pipe for both streams keeps their lines in order.
    let (rd, wr) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return not_run(format!("pipe: {e}")),
    };
    // SAFETY: the probe runs no other thread at this point (the reader
    // starts after the fork), so the child may run any code before exec.
    let child = match unsafe { fork() } {
        Err(e) => return not_run(format!("fork: {e}")),
        Ok(ForkResult::Child) => exec_child(&path, rd, wr),
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(wr);
    let (tx, chunks) = mpsc::channel();
    std::thread::spawn(move || {
        // Reads to the end, so the program never blocks on a full pipe.
        let mut pipe = std::fs::File::from(rd);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = started + DEADLINE;
    let ended = loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => {
                break Ended {
                    status: Some(code),
                    signal: None,
                    timed_out: false,
                }
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                break Ended {
                    status: None,
                    signal: Some(sig as i32),
                    timed_out: Instant::now() >= deadline,
                }
            }
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            // Past the deadline: kill it, then collect it as above.
            Ok(_) => {
                let _ = kill(child, Signal::SIGKILL);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                let _ = kill(child, Signal::SIGKILL);
                return not_run(format!("waitpid: {e}"));
            }
        }
    };
    // A child it left behind may hold the pipe open: wait a little, not
    // forever, for the rest of the output.
    let mut out = Vec::new();
    let last = Instant::now() + Duration::from_secs(2);
    while let Ok(chunk) = chunks.recv_timeout(last.saturating_duration_since(Instant::now())) {
        if out.len() <= MAX_OUTPUT {
            out.extend_from_slice(&chunk);
        }
    }
    report(ended, out, None)
}

/// The child's side: the pipe as stdout and stderr, no stdin, "/" as its
/// directory, an empty environment, then the program. Never returns; if
/// exec fails, the reason goes into the output and the exit code is 127,
/// as a shell's would be.
fn exec_child(path: &CString, rd: OwnedFd, wr: OwnedFd) -> ! {
    drop(rd);
    let setup = || -> nix::Result<std::convert::Infallible> {
        let null = nix::fcntl::open("/dev/null", OFlag::O_RDONLY, Mode::empty())?;
        dup2(null, 0)?;
        dup2(wr.as_raw_fd(), 1)?;
        dup2(wr.as_raw_fd(), 2)?;
        chdir("/")?;
        execve::<_, &CStr>(path, &[path.as_c_str()], &[])
    };
    // setup() only comes back with an error: exec replaced the process
    // otherwise.
    let Err(e) = setup();
    let _ = nix::unistd::write(&wr, format!("exec {path:?}: {e}\n").as_bytes());
    std::process::exit(127)
}
