//! The guest module's cases: load hello_hypercall.ko from the initramfs,
//! read its device like a file, and issue the raw hypercall through its
//! ioctl. This is the route for guests whose kernel lacks the syscall.

use fs_err::File;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;

use proto::Call;

const DEVICE: &str = "/dev/hello_hypercall";

// HELLO_HYPERCALL_IOC_RAW from guest-module/hello_hypercall.h:
// _IOR('H', 0x01, __s64), which the host answers in the s64.
nix::ioctl_read!(ioc_raw, b'H', 0x01, i64);

/// Loads the module: "ok", or what went wrong.
pub fn load() -> String {
    match File::open(format!("/{}", proto::MODULE_FILE)) {
        Ok(ko) => {
            match nix::kmod::finit_module(&ko, &CString::default(), nix::kmod::ModuleInitFlags::empty()) {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("finit_module: {e}"),
            }
        }
        Err(e) => format!("no module in the initramfs: {e}"),
    }
}

/// Reads the device to its end, as `cat` would.
pub fn read(case: &str) -> Call {
    let mut data = Vec::new();
    let result = File::open(DEVICE).and_then(|mut f| f.read_to_end(&mut data));
    match result {
        Ok(n) => call(case, n as i64, 0, &data),
        Err(e) => call(case, -1, e.raw_os_error().unwrap_or(0), &[]),
    }
}

/// The raw hypercall without a buffer; `ret` is the host's answer.
pub fn ioctl_raw(case: &str) -> Call {
    let file = match File::open(DEVICE) {
        Ok(f) => f,
        Err(e) => return call(case, -1, e.raw_os_error().unwrap_or(0), &[]),
    };
    let mut answer: i64 = 0;
    // SAFETY: the fd is the module's device, open for the call, and the
    // ioctl writes one i64 through the pointer, which points at `answer`.
    match unsafe { ioc_raw(file.as_raw_fd(), &mut answer) } {
        Ok(_) => call(case, answer, 0, &[]),
        Err(errno) => call(case, -1, errno as i32, &[]),
    }
}

fn call(case: &str, ret: i64, errno: i32, data: &[u8]) -> Call {
    Call {
        case: case.into(),
        ret,
        errno,
        data: data.escape_ascii().to_string(),
        canary_intact: true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ioctl_number_is_the_headers() {
        // guest-module/hello_hypercall.h: _IOR('H', 0x01, __s64).
        let code = nix::request_code_read!(b'H', 0x01, std::mem::size_of::<i64>());
        assert_eq!(code as u64, 0x8008_4801);
    }
}
