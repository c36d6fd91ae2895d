//! CPU modes: the system tables every guest shares (GDT, IDT, real-mode
//! IVT, exception stubs, identity page tables) and the segment and control
//! registers that put the vCPU straight into a mode through KVM_SET_SREGS,
//! the way a VMM starts a kernel, instead of mode-switching guest code.

use anyhow::Result;
use kvm_bindings::{kvm_segment, kvm_sregs};

use crate::guest;
use crate::layout::*;
use crate::memory::GuestMemory;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// 16-bit real mode.
    Real,
    /// 32-bit protected mode, flat segments, paging off.
    Protected32,
    /// 64-bit long mode, identity-mapped with 2 MiB pages.
    Long64,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Real => "real",
            Mode::Protected32 => "prot32",
            Mode::Long64 => "long64",
        }
    }

    /// Whether a hypercall from this mode is a 64-bit one (full registers).
    pub fn is_64bit(self) -> bool {
        self == Mode::Long64
    }
}

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

// Page-table entry bits. Accessed and Dirty are preset so that the CPU's
// page walks never write to the tables; U/S is set everywhere so ring 3
// can run the same code and stack.
const PTE_P: u64 = 1;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const PTE_PS: u64 = 1 << 7;

/// A flat code or data descriptor. Types carry the Accessed bit (0xb, 0x3)
/// so the CPU never writes it back into the GDT.
const fn descriptor(dpl: u64, code: bool, long: bool) -> u64 {
    let ty = if code { 0xb } else { 0x3 };
    let access = (1 << 7) | (dpl << 5) | (1 << 4) | ty; // P, DPL, S, type
    let (l, db) = if long { (1, 0) } else { (0, 1) };
    let flags = (1 << 3) | (db << 2) | (l << 1); // G, D/B, L
    0xffff | (access << 40) | (0xf << 48) | (flags << 52)
}

/// The GDT, indexed by selector / 8.
pub fn gdt() -> [u64; 6] {
    [
        0,
        descriptor(0, true, true),   // SEL_CODE64
        descriptor(0, false, false), // SEL_DATA
        descriptor(0, true, false),  // SEL_CODE32
        descriptor(3, true, true),   // SEL_USER_CODE64
        descriptor(3, false, false), // SEL_USER_DATA
    ]
}

/// A 64-bit interrupt gate (16 bytes) to `handler` in SEL_CODE64.
fn gate64(handler: u64) -> [u64; 2] {
    let low = (handler & 0xffff)
        | (u64::from(SEL_CODE64) << 16)
        | (0x8e << 40) // P, DPL 0, 64-bit interrupt gate
        | (((handler >> 16) & 0xffff) << 48);
    [low, handler >> 32]
}

/// A 32-bit interrupt gate (8 bytes) to `handler` in SEL_CODE32.
fn gate32(handler: u64) -> u64 {
    (handler & 0xffff) | (u64::from(SEL_CODE32) << 16) | (0x8e << 40) | (((handler >> 16) & 0xffff) << 48)
}

/// Writes every table the three modes need; each mode uses its own part.
pub fn write_tables(mem: &mut GuestMemory) -> Result<()> {
    for (i, d) in gdt().iter().enumerate() {
        mem.write_u64(GDT + 8 * i as u64, *d)?;
    }
    for v in 0..EXCEPTION_VECTORS {
        let stub = EXCEPTION_STUBS + u64::from(v) * EXCEPTION_STUB_SIZE;
        mem.write(stub, &guest::exception_stub(v))?;
        let [lo, hi] = gate64(stub);
        mem.write_u64(IDT64 + 16 * u64::from(v), lo)?;
        mem.write_u64(IDT64 + 16 * u64::from(v) + 8, hi)?;
        mem.write_u64(IDT32 + 8 * u64::from(v), gate32(stub))?;
        // Real-mode IVT entry: offset, then segment 0.
        mem.write(IVT + 4 * u64::from(v), &[stub as u8, (stub >> 8) as u8, 0, 0])?;
    }
    // 1 GiB identity map: PML4[0] -> PDPT[0] -> PD of 512 2 MiB pages. It
    // covers every slot, the hole and the end of memory.
    mem.write_u64(PML4, PDPT | PTE_P | PTE_RW | PTE_US | PTE_A)?;
    mem.write_u64(PDPT, PD | PTE_P | PTE_RW | PTE_US | PTE_A)?;
    for i in 0..512u64 {
        let pte = (i << 21) | PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D | PTE_PS;
        mem.write_u64(PD + 8 * i, pte)?;
    }
    Ok(())
}

fn flat(selector: u16, code: bool, mode: Mode, dpl: u8) -> kvm_segment {
    let (db, l) = match (mode, code) {
        (Mode::Long64, true) => (0, 1),
        _ => (1, 0),
    };
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl,
        db,
        s: 1,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn real(code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff,
        selector: 0,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// The special registers for `mode` at CPL 0, starting from the vCPU's
/// reset state (which supplies TR, LDTR, APIC base and the rest).
pub fn sregs_for(mode: Mode, reset: &kvm_sregs) -> kvm_sregs {
    let mut s = *reset;
    match mode {
        Mode::Real => {
            s.cs = real(true);
            s.ds = real(false);
            s.es = real(false);
            s.fs = real(false);
            s.gs = real(false);
            s.ss = real(false);
            s.cr0 = CR0_ET;
            s.cr4 = 0;
            s.efer = 0;
            s.idt.base = IVT;
            s.idt.limit = 4 * u16::from(EXCEPTION_VECTORS) - 1;
        }
        Mode::Protected32 | Mode::Long64 => {
            let code_sel = if mode == Mode::Long64 {
                SEL_CODE64
            } else {
                SEL_CODE32
            };
            let data = flat(SEL_DATA, false, mode, 0);
            s.cs = flat(code_sel, true, mode, 0);
            s.ds = data;
            s.es = data;
            s.fs = data;
            s.gs = data;
            s.ss = data;
            s.gdt.base = GDT;
            s.gdt.limit = (8 * gdt().len() - 1) as u16;
            if mode == Mode::Long64 {
                s.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
                s.cr3 = PML4;
                s.cr4 = CR4_PAE;
                s.efer = EFER_LME | EFER_LMA;
                s.idt.base = IDT64;
                s.idt.limit = 16 * u16::from(EXCEPTION_VECTORS) - 1;
            } else {
                s.cr0 = CR0_PE | CR0_ET | CR0_NE;
                s.cr4 = 0;
                s.efer = 0;
                s.idt.base = IDT32;
                s.idt.limit = 8 * u16::from(EXCEPTION_VECTORS) - 1;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors() {
        let g = gdt();
        // Well-known encodings of flat segments.
        assert_eq!(g[1], 0x00af_9b00_0000_ffff, "64-bit ring-0 code");
        assert_eq!(g[2], 0x00cf_9300_0000_ffff, "ring-0 data");
        assert_eq!(g[3], 0x00cf_9b00_0000_ffff, "32-bit ring-0 code");
        assert_eq!(g[4], 0x00af_fb00_0000_ffff, "64-bit ring-3 code");
        assert_eq!(g[5], 0x00cf_f300_0000_ffff, "ring-3 data");
        assert_eq!(usize::from(SEL_USER_CODE64 & !3) / 8, 4);
        assert_eq!(usize::from(SEL_USER_DATA & !3) / 8, 5);
    }

    #[test]
    fn gates_split_the_handler_address() {
        let [lo, hi] = gate64(0x1234_5678_9abc);
        assert_eq!(lo & 0xffff, 0x9abc);
        assert_eq!(lo >> 48, 0x5678);
        assert_eq!(hi, 0x1234);
        assert_eq!((lo >> 16) & 0xffff, u64::from(SEL_CODE64));
        assert_eq!(gate32(0x3008) & 0xffff, 0x3008);
    }

    #[test]
    fn long_mode_registers() {
        let s = sregs_for(Mode::Long64, &kvm_sregs::default());
        assert_eq!(s.efer, EFER_LME | EFER_LMA);
        assert!(s.cr0 & CR0_PG != 0 && s.cr4 & CR4_PAE != 0);
        assert_eq!((s.cs.l, s.cs.db, s.cs.selector), (1, 0, SEL_CODE64));
        let p = sregs_for(Mode::Protected32, &kvm_sregs::default());
        assert_eq!((p.cs.l, p.cs.db, p.cr0 & CR0_PG), (0, 1, 0));
        let r = sregs_for(Mode::Real, &kvm_sregs::default());
        assert_eq!((r.cr0 & CR0_PE, r.cs.base, r.idt.base), (0, 0, IVT));
    }
}
