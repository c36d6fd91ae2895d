//! The guests' code, as machine-code bytes with their mnemonics.
//!
//! The VMM loads the hypercall number and a0..a3 into RAX, RBX, RCX, RDX
//! and RSI before entering the guest, so a guest is little more than the
//! hypercall instruction followed by a report: `out REPORT_PORT, al`
//! stops the vCPU with a KVM_EXIT_IO the VMM recognises, and the VMM reads
//! the result from RAX. The same bytes decode identically in 16-, 32- and
//! 64-bit code, which is what lets one program serve every mode.

use crate::layout;

/// The port a guest writes to when it is done ("ucall").
pub const REPORT_PORT: u16 = 0xe4;
/// The port the exception stubs write the vector number to.
pub const EXCEPTION_PORT: u16 = 0xe5;

/// The two hypercall instructions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Encoding {
    /// Intel VMX's `vmcall`.
    Vmcall,
    /// AMD SVM's `vmmcall`.
    Vmmcall,
}

impl Encoding {
    pub fn bytes(self) -> [u8; 3] {
        match self {
            Encoding::Vmcall => [0x0f, 0x01, 0xc1],
            Encoding::Vmmcall => [0x0f, 0x01, 0xd9],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Vmcall => "vmcall",
            Encoding::Vmmcall => "vmmcall",
        }
    }

    pub fn other(self) -> Encoding {
        match self {
            Encoding::Vmcall => Encoding::Vmmcall,
            Encoding::Vmmcall => Encoding::Vmcall,
        }
    }

    /// The encoding KVM patches guests to: the host CPU's own.
    pub fn native() -> Encoding {
        let (vendor, svm, vmx) = host_cpu();
        native_for(&vendor, svm, vmx)
    }
}

/// The host CPU's vendor string and its SVM and VMX feature flags.
fn host_cpu() -> (String, bool, bool) {
    use std::arch::x86_64::__cpuid;
    // CPUID is unprivileged and present on every x86-64 CPU.
    let leaf0 = __cpuid(0);
    let mut vendor = Vec::with_capacity(12);
    for reg in [leaf0.ebx, leaf0.edx, leaf0.ecx] {
        vendor.extend_from_slice(&reg.to_le_bytes());
    }
    let vmx = __cpuid(1).ecx & (1 << 5) != 0;
    let svm = __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 2) != 0;
    (String::from_utf8_lossy(&vendor).into_owned(), svm, vmx)
}

/// AMD and Hygon run SVM, Intel (and Zhaoxin/Centaur) VMX; an unknown
/// vendor is judged by which extension it reports.
fn native_for(vendor: &str, svm: bool, vmx: bool) -> Encoding {
    match vendor {
        "AuthenticAMD" | "HygonGenuine" => Encoding::Vmmcall,
        "GenuineIntel" | "CentaurHauls" | "  Shanghai  " => Encoding::Vmcall,
        _ if svm && !vmx => Encoding::Vmmcall,
        _ => Encoding::Vmcall,
    }
}

/// The host CPU's vendor string, for the log.
pub fn host_vendor() -> String {
    host_cpu().0
}

/// One hypercall with the preloaded registers, then the report.
pub fn guest_code(enc: Encoding) -> Vec<u8> {
    let [b0, b1, b2] = enc.bytes();
    #[rustfmt::skip]
    let code = vec![
        b0, b1, b2,                     // vmcall / vmmcall
        0xe6, REPORT_PORT as u8,        // out REPORT_PORT, al
        0xf4,                           // hlt (never reached: the VMM stops at the report)
    ];
    code
}

/// 64-bit code that calls like kvm_hypercall0(): it loads the number
/// into EAX and nothing else the ABI reads, after its own earlier work
/// left `stale` in RBX, RCX, RDX and RSI; then the report.
pub fn stale_args_call(enc: Encoding, nr: u64, stale: [u64; 4]) -> Vec<u8> {
    let [b0, b1, b2] = enc.bytes();
    let [rbx, rcx, rdx, rsi] = stale.map(u64::to_le_bytes);
    let eax = (nr as u32).to_le_bytes();
    #[rustfmt::skip]
    let code: [&[u8]; 12] = [
        &[0x48, 0xbb], &rbx,            // mov rbx, stale[0]   (earlier work)
        &[0x48, 0xb9], &rcx,            // mov rcx, stale[1]
        &[0x48, 0xba], &rdx,            // mov rdx, stale[2]
        &[0x48, 0xbe], &rsi,            // mov rsi, stale[3]
        &[0xb8], &eax,                  // mov eax, nr         (kvm_hypercall0)
        &[b0, b1, b2],                  // vmcall / vmmcall
        &[0xe6, REPORT_PORT as u8, 0xf4], // out REPORT_PORT, al; hlt
    ];
    code.concat()
}

/// 64-bit ring-0 code that drops to ring 3 with `iretq`: it builds the
/// interrupt frame from R8 (user RIP) and R9 (user RSP), and gives the user
/// IOPL 3 so that its report, an `out`, needs no TSS I/O bitmap. RAX..RSI
/// are left alone for the hypercall that follows.
pub fn enter_user_prologue() -> Vec<u8> {
    #[rustfmt::skip]
    let code = vec![
        0x6a, layout::SEL_USER_DATA as u8,  // push SEL_USER_DATA   (SS)
        0x41, 0x51,                         // push r9              (RSP)
        0x68, 0x02, 0x30, 0x00, 0x00,       // push 0x3002          (RFLAGS: IOPL 3, bit 1)
        0x6a, layout::SEL_USER_CODE64 as u8,// push SEL_USER_CODE64 (CS)
        0x41, 0x50,                         // push r8              (RIP)
        0x48, 0xcf,                         // iretq
    ];
    code
}

/// 64-bit loop for the benchmark: R8 calls of hypercall R9 with the
/// preloaded a0..a3 (KVM leaves them alone, only RAX changes), then the
/// report.
pub fn bench_loop(enc: Encoding) -> Vec<u8> {
    let [b0, b1, b2] = enc.bytes();
    #[rustfmt::skip]
    let code = vec![
        0x44, 0x89, 0xc8,               // again: mov eax, r9d
        b0, b1, b2,                     // vmcall / vmmcall
        0x49, 0xff, 0xc8,               // dec r8
        0x75, 0xf5,                     // jnz again (-11)
        0xe6, REPORT_PORT as u8,        // out REPORT_PORT, al
        0xf4,                           // hlt
    ];
    code
}

/// 64-bit loop for the soak: R8 calls of hypercall R9 with the preloaded
/// a0..a3, each result compared with the first. It reports with the first
/// result in RDI and R8 at 0 when every call returned the same, or with
/// R8 still counting and RAX the call that differed.
pub fn soak_loop(enc: Encoding) -> Vec<u8> {
    let [b0, b1, b2] = enc.bytes();
    #[rustfmt::skip]
    let code = vec![
        0x44, 0x89, 0xc8,               //  0: mov eax, r9d
        b0, b1, b2,                     //  3: vmcall / vmmcall
        0x48, 0x89, 0xc7,               //  6: mov rdi, rax        (the first result)
        0x49, 0xff, 0xc8,               //  9: dec r8
        0x74, 0x10,                     // 12: jz done (+16)
        0x44, 0x89, 0xc8,               // 14: again: mov eax, r9d
        b0, b1, b2,                     // 17: vmcall / vmmcall
        0x48, 0x39, 0xf8,               // 20: cmp rax, rdi
        0x75, 0x05,                     // 23: jne done (+5)
        0x49, 0xff, 0xc8,               // 25: dec r8
        0x75, 0xf0,                     // 28: jnz again (-16)
        0xe6, REPORT_PORT as u8,        // 30: done: out REPORT_PORT, al
        0xf4,                           // 32: hlt
    ];
    code
}

/// The handler of one exception vector, valid in 16-, 32- and 64-bit code:
/// it reports the vector and stops.
pub fn exception_stub(vector: u8) -> [u8; layout::EXCEPTION_STUB_SIZE as usize] {
    #[rustfmt::skip]
    let code = [
        0xb0, vector,                   // mov al, vector
        0xe6, EXCEPTION_PORT as u8,     // out EXCEPTION_PORT, al
        0xf4,                           // hlt
        0x90, 0x90, 0x90,               // nop padding
    ];
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(Encoding::Vmcall.bytes(), [0x0f, 0x01, 0xc1]);
        assert_eq!(Encoding::Vmmcall.bytes(), [0x0f, 0x01, 0xd9]);
        assert_eq!(Encoding::Vmcall.other(), Encoding::Vmmcall);
        assert_eq!(native_for("AuthenticAMD", true, false), Encoding::Vmmcall);
        assert_eq!(native_for("HygonGenuine", true, false), Encoding::Vmmcall);
        assert_eq!(native_for("GenuineIntel", false, true), Encoding::Vmcall);
        assert_eq!(native_for("SomethingElse", true, false), Encoding::Vmmcall);
        assert_eq!(native_for("SomethingElse", false, false), Encoding::Vmcall);
    }

    #[test]
    fn programs_report_on_the_report_port() {
        let once = guest_code(Encoding::Vmmcall);
        assert_eq!(&once[..3], &[0x0f, 0x01, 0xd9]);
        assert_eq!(&once[3..5], &[0xe6, REPORT_PORT as u8]);
        let lp = bench_loop(Encoding::Vmcall);
        // The jnz goes back to the first byte.
        let jnz = lp.iter().position(|&b| b == 0x75).unwrap();
        assert_eq!(jnz as i64 + 2 + i64::from(lp[jnz + 1] as i8), 0);
        assert_eq!(enter_user_prologue().last(), Some(&0xcf));
        let stale = stale_args_call(Encoding::Vmcall, 13, [1, 2, 3, 0x1122_3344_5566_7788]);
        assert_eq!(&stale[..3], &[0x48, 0xbb, 1]);
        // mov rsi, imm64 carries the value little-endian.
        assert_eq!(
            &stale[30..40],
            &[0x48, 0xbe, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
        assert_eq!(&stale[40..45], &[0xb8, 13, 0, 0, 0]);
        assert_eq!(&stale[45..], &[0x0f, 0x01, 0xc1, 0xe6, REPORT_PORT as u8, 0xf4]);
        assert_eq!(exception_stub(6)[1], 6);
        // The soak loop's three jumps land on "again" (14) and "done" (30).
        let soak = soak_loop(Encoding::Vmcall);
        let target = |at: usize| at as i64 + 2 + i64::from(soak[at + 1] as i8);
        assert_eq!((soak[12], target(12)), (0x74, 30));
        assert_eq!((soak[23], target(23)), (0x75, 30));
        assert_eq!((soak[28], target(28)), (0x75, 14));
        assert_eq!(soak[30], 0xe6);
    }
}
