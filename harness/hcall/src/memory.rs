//! Guest memory: anonymous host mappings handed to KVM as memslots.
//!
//! The guest writes this memory while KVM_RUN runs, so no Rust reference
//! into it outlives a call: reads and writes copy through raw pointers,
//! the unsafe `inspect` lends a slice for the length of a closure, and a
//! VM's vCPU runs only on the thread that holds the VM, so none of them
//! overlaps a KVM_RUN.

use std::ptr::NonNull;

use anyhow::{bail, ensure, Result};

/// One anonymous, private mapping; unmapped on drop. The KVM memslot that
/// points at it must be gone first, which `Vm` guarantees by dropping its
/// VM file descriptor before its memory (field order).
pub struct GuestMemory {
    ptr: NonNull<u8>,
    len: usize,
}

impl GuestMemory {
    pub fn new(len: usize) -> Result<GuestMemory> {
        ensure!(len > 0, "empty guest memory");
        // SAFETY: a fresh anonymous mapping at an address the kernel picks;
        // it aliases nothing, and the result is checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            bail!("mmap {len} bytes: {}", std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<u8>()).expect("mmap returned NULL without MAP_FIXED");
        Ok(GuestMemory { ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The host address for `kvm_userspace_memory_region.userspace_addr`.
    pub fn host_addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        let off = usize::try_from(offset)?;
        ensure!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "access [{off:#x}, +{len:#x}) outside {:#x} bytes of guest memory",
            self.len
        );
        Ok(off)
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let off = self.check(offset, data.len())?;
        // SAFETY: `check` keeps [off, off + len) inside the mapping, `data`
        // is a separate host buffer, and no vCPU runs during the copy.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(off), data.len()) };
        Ok(())
    }

    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let off = self.check(offset, len)?;
        let mut out = vec![0u8; len];
        // SAFETY: as in `write`, in the other direction.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), out.as_mut_ptr(), len) };
        Ok(out)
    }

    /// Lends `[offset, offset + len)` to `f` without a copy: the fuzzer
    /// compares every data byte after each call, and under TCG a copy costs
    /// more than the comparison.
    ///
    /// # Safety
    ///
    /// Nothing may write this memory while `f` runs: no vCPU of a VM backed
    /// by it may run, and no KVM ioctl that writes guest memory (KVM_RUN,
    /// KVM_SET_MSRS for the clock pages, ...) may be made.
    pub unsafe fn inspect<R>(&self, offset: u64, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let off = self.check(offset, len)?;
        // SAFETY: `check` keeps the range inside the mapping; the caller
        // promises that nothing writes it while the slice lives, and the
        // slice does not outlive `f`.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), len) };
        Ok(f(bytes))
    }

    pub fn write_u64(&mut self, offset: u64, value: u64) -> Result<()> {
        self.write(offset, &value.to_le_bytes())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this length and is
        // unmapped exactly once; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_and_bounds() {
        let mut m = GuestMemory::new(8192).unwrap();
        assert_eq!(m.read(0, 4).unwrap(), [0; 4], "anonymous memory starts zeroed");
        m.write(4094, b"abcd").unwrap();
        assert_eq!(m.read(4094, 4).unwrap(), b"abcd");
        m.write_u64(0, 0xaaaa).unwrap();
        assert_eq!(m.read(0, 3).unwrap(), [0xaa, 0xaa, 0]);
        assert!(m.write(8190, b"abc").is_err());
        assert!(m.read(u64::MAX, 1).is_err());
        assert_eq!(m.len(), 8192);
    }
}
