//! Where everything lives in guest-physical memory. Every guest is
//! identity-mapped, so these are also its virtual addresses.
//!
//! ```text
//! 0x0000_0000  slot 0, RAM (256 KiB; below 1 MiB so real mode reaches it)
//!   0x0000       real-mode IVT
//!   0x1000       GDT
//!   0x2000       IDT (64-bit gates), 0x2400 IDT (32-bit gates)
//!   0x3000       exception stubs, 8 bytes per vector
//!   0x4000       guest code
//!   0x6000-0x7000  user stack (CPL 3), 0x7000-0x8000 kernel stack
//!   0x9000       page tables: PML4, PDPT at 0xa000, PD at 0xb000
//!   0x1_0000     data area: buffers and canaries, up to the end of slot 0
//! 0x0004_0000  slot 1, RAM (one page, right after slot 0)
//! 0x0004_1000  hole: no memslot
//! 0x0020_0000  slot 2, read-only (KVM_MEM_READONLY, one page)
//! 0x0020_1000  end of guest memory
//! ```

use crate::abi::Slot;

pub const PAGE: u64 = 0x1000;

pub const IVT: u64 = 0x0;
pub const GDT: u64 = 0x1000;
pub const IDT64: u64 = 0x2000;
pub const IDT32: u64 = 0x2400;
pub const EXCEPTION_STUBS: u64 = 0x3000;
pub const EXCEPTION_STUB_SIZE: u64 = 8;
/// Vectors with a stub: the architectural exceptions.
pub const EXCEPTION_VECTORS: u8 = 32;
pub const CODE: u64 = 0x4000;
pub const CODE_SIZE: u64 = 0x2000;
pub const USER_STACK_TOP: u64 = 0x7000;
pub const STACK_TOP: u64 = 0x8000;
pub const PML4: u64 = 0x9000;
pub const PDPT: u64 = 0xa000;
pub const PD: u64 = 0xb000;

/// Start of the area the guest never touches itself: only the hypercall
/// writes there, so every byte of it can be checked after each call.
pub const DATA: u64 = 0x1_0000;
/// The usual buffer: 64 bytes into the data area, canaries before it.
pub const BUF: u64 = DATA + 0x40;

/// Small on purpose: the fuzzer compares every data byte after each call,
/// and under TCG that comparison is a large part of a call's cost.
pub const RAM: Slot = Slot {
    gpa: 0,
    size: 0x4_0000,
    readonly: false,
};
/// A second writable slot adjacent to RAM: a buffer across the boundary
/// spans two memslots.
pub const EDGE: Slot = Slot {
    gpa: 0x4_0000,
    size: PAGE,
    readonly: false,
};
pub const HOLE: u64 = 0x4_1000;
pub const HOLE_END: u64 = 0x20_0000;
pub const RO: Slot = Slot {
    gpa: 0x20_0000,
    size: PAGE,
    readonly: true,
};
/// The first address past the last memslot.
pub const END: u64 = 0x20_1000;

/// Memslot numbers for KVM_SET_USER_MEMORY_REGION.
pub const SLOT_RAM: u32 = 0;
pub const SLOT_EDGE: u32 = 1;
pub const SLOT_RO: u32 = 2;

pub const SLOTS: [Slot; 3] = [RAM, EDGE, RO];

// The slot chain the cases rely on, checked at compile time: slot 1 right
// after slot 0, the hole right after slot 1, the read-only slot last.
const _: () = assert!(RAM.gpa + RAM.size == EDGE.gpa);
const _: () = assert!(EDGE.gpa + EDGE.size == HOLE);
const _: () = assert!(HOLE < HOLE_END && HOLE_END <= RO.gpa);
const _: () = assert!(RO.gpa + RO.size == END);

/// Selectors of the GDT that `modes` writes.
pub const SEL_CODE64: u16 = 0x08;
pub const SEL_DATA: u16 = 0x10;
pub const SEL_CODE32: u16 = 0x18;
pub const SEL_USER_CODE64: u16 = 0x20 | 3;
pub const SEL_USER_DATA: u16 = 0x28 | 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_do_not_overlap() {
        let system = [
            (IVT, 0x400),
            (GDT, 0x100),
            (IDT64, 16 * u64::from(EXCEPTION_VECTORS)),
            (IDT32, 8 * u64::from(EXCEPTION_VECTORS)),
            (
                EXCEPTION_STUBS,
                EXCEPTION_STUB_SIZE * u64::from(EXCEPTION_VECTORS),
            ),
            (CODE, CODE_SIZE),
            (USER_STACK_TOP - PAGE, 2 * PAGE),
            (PML4, 3 * PAGE),
        ];
        for (i, a) in system.iter().enumerate() {
            assert!(a.0 + a.1 <= DATA, "{a:x?} runs into the data area");
            for b in &system[i + 1..] {
                assert!(a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0, "{a:x?} overlaps {b:x?}");
            }
        }
    }
}
