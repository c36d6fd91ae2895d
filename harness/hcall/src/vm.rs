//! One VM with one vCPU and the three memslots of `layout`, and the loop
//! that enters the guest and runs it to its report under a deadline.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use kvm_bindings::{kvm_enable_cap, kvm_regs, kvm_run, kvm_sregs, kvm_userspace_memory_region, CpuId};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

use crate::abi;
use crate::check::{diff_area, Change};
use crate::deadline;
use crate::exit::{classify, Action, Exit, UserHypercall};
use crate::guest;
use crate::layout::{self, CODE, CODE_SIZE, STACK_TOP, USER_STACK_TOP};
use crate::memory::GuestMemory;
use crate::modes::{self, Mode};

const KVM_CAP_ENFORCE_PV_FEATURE_CPUID: u32 = kvm_bindings::KVM_CAP_ENFORCE_PV_FEATURE_CPUID;
const KVM_CAP_EXIT_HYPERCALL: u32 = kvm_bindings::KVM_CAP_EXIT_HYPERCALL;
const KVM_CAP_DISABLE_QUIRKS2: u32 = kvm_bindings::KVM_CAP_DISABLE_QUIRKS2;
const KVM_X86_QUIRK_FIX_HYPERCALL_INSN: u64 = kvm_bindings::KVM_X86_QUIRK_FIX_HYPERCALL_INSN as u64;

/// How the guest's CPUID treats KVM_FEATURE_HELLO_HYPERCALL.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PvCpuid {
    /// KVM_GET_SUPPORTED_CPUID as is, no enforcement.
    Supported,
    /// KVM_CAP_ENFORCE_PV_FEATURE_CPUID with the bit set or cleared.
    Enforce { hello_bit: bool },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VmConfig {
    pub cpuid: PvCpuid,
    /// KVM_CAP_EXIT_HYPERCALL with bit 13: calls go to userspace.
    pub exit_hypercall: bool,
    /// KVM_CAP_DISABLE_QUIRKS2 with KVM_X86_QUIRK_FIX_HYPERCALL_INSN.
    pub disable_fix_quirk: bool,
    /// KVM_CREATE_VM's type: KVM_X86_DEFAULT_VM (0), or another that
    /// KVM_CAP_VM_TYPES lists.
    pub vm_type: u32,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            cpuid: PvCpuid::Supported,
            exit_hypercall: false,
            disable_fix_quirk: false,
            vm_type: kvm_bindings::KVM_X86_DEFAULT_VM,
        }
    }
}

/// What to run: a program, the mode and ring it starts in, and the
/// hypercall registers.
#[derive(Clone, Debug)]
pub struct Entry {
    pub mode: Mode,
    /// Drop to ring 3 first (64-bit only): the program then runs at CPL 3.
    pub user: bool,
    pub code: Vec<u8>,
    /// RAX (number), RBX, RCX, RDX, RSI (a0..a3).
    pub nr: u64,
    pub args: [u64; 4],
    /// R8 and R9, for programs that take more input (the benchmark loop).
    pub r8: u64,
    pub r9: u64,
    pub timeout: Duration,
}

impl Entry {
    /// One hypercall with `enc` from `mode`, the usual case.
    pub fn call(mode: Mode, user: bool, enc: guest::Encoding, args: [u64; 4]) -> Entry {
        Entry {
            mode,
            user,
            code: guest::guest_code(enc),
            nr: abi::KVM_HC_HELLO_HYPERCALL,
            args,
            r8: 0,
            r9: 0,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A hypercall takes microseconds even nested under TCG; a case that has
/// not reported after this long is hung.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a guest run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// Reached its report; the registers at that point.
    Reported(kvm_regs),
    /// Took an exception, reported by its stub.
    Exception(u8),
    TimedOut,
    Failed(String),
}

pub struct Vm {
    // Drop order matters: the vCPU and the VM (and with it the memslots)
    // go before the memory they point at.
    vcpu: VcpuFd,
    vm: VmFd,
    reset_sregs: kvm_sregs,
    ram: GuestMemory,
    edge: GuestMemory,
    ro: GuestMemory,
    /// Where slot 1 (the edge page) is now: `None` once deleted.
    edge_at: Option<u64>,
}

fn enable_cap(cap: u32, arg0: u64) -> kvm_enable_cap {
    let mut c = kvm_enable_cap {
        cap,
        ..Default::default()
    };
    c.args[0] = arg0;
    c
}

/// The supported CPUID with KVM_FEATURE_HELLO_HYPERCALL forced to `on`.
pub fn with_hello_bit(supported: &CpuId, on: bool) -> Result<CpuId> {
    let mut cpuid = supported.clone();
    let leaf = cpuid
        .as_mut_slice()
        .iter_mut()
        .find(|e| e.function == abi::KVM_CPUID_FEATURES)
        .context("KVM_GET_SUPPORTED_CPUID has no leaf 0x40000001 (KVM_CPUID_FEATURES)")?;
    let bit = 1u32 << abi::KVM_FEATURE_HELLO_HYPERCALL;
    leaf.eax = if on { leaf.eax | bit } else { leaf.eax & !bit };
    Ok(cpuid)
}

/// Bit 18 of leaf 0x40000001 EAX in a CPUID table.
pub fn hello_bit(cpuid: &CpuId) -> Option<bool> {
    cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == abi::KVM_CPUID_FEATURES)
        .map(|e| e.eax & (1 << abi::KVM_FEATURE_HELLO_HYPERCALL) != 0)
}

impl Vm {
    pub fn new(kvm: &Kvm, supported: &CpuId, cfg: &VmConfig) -> Result<Vm> {
        let vm = kvm
            .create_vm_with_type(cfg.vm_type.into())
            .with_context(|| format!("KVM_CREATE_VM type {}", cfg.vm_type))?;
        // Only VMX without unrestricted guest needs it, and only outside
        // guest memory; SVM ignores it.
        vm.set_tss_address(0xfffb_d000).context("KVM_SET_TSS_ADDR")?;
        if cfg.exit_hypercall {
            let arg = 1u64 << abi::KVM_HC_HELLO_HYPERCALL;
            vm.enable_cap(&enable_cap(KVM_CAP_EXIT_HYPERCALL, arg))
                .with_context(|| {
                    format!(
                        "KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL, {arg:#x}): KVM does not forward \
                     KVM_HC_HELLO_HYPERCALL to userspace (kernel without the series?)"
                    )
                })?;
        }
        if cfg.disable_fix_quirk {
            vm.enable_cap(&enable_cap(
                KVM_CAP_DISABLE_QUIRKS2,
                KVM_X86_QUIRK_FIX_HYPERCALL_INSN,
            ))
            .context("KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2, KVM_X86_QUIRK_FIX_HYPERCALL_INSN)")?;
        }

        let mut ram = GuestMemory::new(layout::RAM.size as usize)?;
        let edge = GuestMemory::new(layout::EDGE.size as usize)?;
        let ro = GuestMemory::new(layout::RO.size as usize)?;
        for (slot, region, mem) in [
            (layout::SLOT_RAM, layout::RAM, &ram),
            (layout::SLOT_EDGE, layout::EDGE, &edge),
            (layout::SLOT_RO, layout::RO, &ro),
        ] {
            let flags = if region.readonly {
                kvm_bindings::KVM_MEM_READONLY
            } else {
                0
            };
            let r = kvm_userspace_memory_region {
                slot,
                flags,
                guest_phys_addr: region.gpa,
                memory_size: region.size,
                userspace_addr: mem.host_addr(),
            };
            // SAFETY: `mem` is a live mapping of exactly `memory_size` bytes
            // that the Vm owns and drops only after the VM fd (field order).
            unsafe { vm.set_user_memory_region(r) }
                .with_context(|| format!("KVM_SET_USER_MEMORY_REGION slot {slot} at {:#x}", region.gpa))?;
        }
        modes::write_tables(&mut ram)?;

        let vcpu = vm.create_vcpu(0).context("KVM_CREATE_VCPU")?;
        let cpuid = match cfg.cpuid {
            PvCpuid::Supported => supported.clone(),
            PvCpuid::Enforce { hello_bit } => with_hello_bit(supported, hello_bit)?,
        };
        vcpu.set_cpuid2(&cpuid).context("KVM_SET_CPUID2")?;
        if let PvCpuid::Enforce { .. } = cfg.cpuid {
            vcpu.enable_cap(&enable_cap(KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 1))
                .context("KVM_ENABLE_CAP(KVM_CAP_ENFORCE_PV_FEATURE_CPUID)")?;
        }
        let reset_sregs = vcpu.get_sregs().context("KVM_GET_SREGS")?;
        Ok(Vm {
            vcpu,
            vm,
            reset_sregs,
            ram,
            edge,
            ro,
            edge_at: Some(layout::EDGE.gpa),
        })
    }

    /// Moves slot 1, the edge page, to `at`, or deletes it (`None`): the
    /// memslot edits the soak makes between calls. Its memory and contents
    /// stay the same; only where the guest sees them changes.
    pub fn set_edge(&mut self, at: Option<u64>) -> Result<()> {
        let mut region = kvm_userspace_memory_region {
            slot: layout::SLOT_EDGE,
            flags: 0,
            guest_phys_addr: self.edge_gpa(),
            memory_size: 0,
            userspace_addr: self.edge.host_addr(),
        };
        // A present slot is deleted first: KVM moves a slot in place too,
        // but a delete and a create also cover the way back from None.
        if self.edge_at.is_some() {
            // SAFETY: size 0 deletes the slot; no memory is mapped by it.
            unsafe { self.vm.set_user_memory_region(region) }.context("delete memslot 1")?;
            self.edge_at = None;
        }
        if let Some(gpa) = at {
            region.guest_phys_addr = gpa;
            region.memory_size = layout::EDGE.size;
            // SAFETY: `self.edge` is a live mapping of exactly this size,
            // which the Vm drops only after the VM fd (field order).
            unsafe { self.vm.set_user_memory_region(region) }
                .with_context(|| format!("create memslot 1 at {gpa:#x}"))?;
            self.edge_at = Some(gpa);
        }
        Ok(())
    }

    /// The guest-physical address of the edge page, or its home while it
    /// is deleted (where host-side reads and writes still label it).
    fn edge_gpa(&self) -> u64 {
        self.edge_at.unwrap_or(layout::EDGE.gpa)
    }

    /// The memslots as the guest sees them now, for the ABI model.
    pub fn slots(&self) -> Vec<abi::Slot> {
        let mut slots = vec![layout::RAM];
        if let Some(gpa) = self.edge_at {
            slots.push(abi::Slot { gpa, ..layout::EDGE });
        }
        slots.push(layout::RO);
        slots
    }

    /// The memory backing `[gpa, gpa + len)`, which must lie in one slot.
    fn backing_mut(&mut self, gpa: u64, len: usize) -> Option<(&mut GuestMemory, u64)> {
        let edge = abi::Slot {
            gpa: self.edge_gpa(),
            ..layout::EDGE
        };
        [
            (layout::RAM, &mut self.ram),
            (edge, &mut self.edge),
            (layout::RO, &mut self.ro),
        ]
        .into_iter()
        .find(|(s, _)| gpa >= s.gpa && gpa + len as u64 <= s.gpa + s.size)
        .map(|(s, m)| (m, gpa - s.gpa))
    }

    /// Writes guest memory from the host side (also the read-only slot,
    /// which is read-only only for the guest).
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> Result<()> {
        let (m, off) = self
            .backing_mut(gpa, data.len())
            .with_context(|| format!("no memory at {gpa:#x}"))?;
        m.write(off, data)
    }

    /// The areas only hypercalls write: (gpa, contents) of each.
    pub fn data_areas(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let ram_data = (layout::RAM.size - layout::DATA) as usize;
        Ok(vec![
            (layout::DATA, self.ram.read(layout::DATA, ram_data)?),
            (self.edge_gpa(), self.edge.read(0, self.edge.len())?),
            (layout::RO.gpa, self.ro.read(0, self.ro.len())?),
        ])
    }

    /// The bytes of the data areas that differ from `snapshot`, a result
    /// of [`Vm::data_areas`], compared in place.
    pub fn changes_since(&self, snapshot: &[(u64, Vec<u8>)]) -> Result<Vec<Change>> {
        let [(_, ram), (_, edge), (_, ro)] = snapshot else {
            bail!("a snapshot of {} areas, not 3", snapshot.len());
        };
        let mut changes = Vec::new();
        let mut compare = |mem: &GuestMemory, offset: u64, gpa: u64, old: &[u8]| {
            // SAFETY: a `Vm`'s vCPU runs only on the thread that holds the
            // `Vm` (the deadline's watchdog touches kvm_run, never guest
            // memory), and this borrows the whole `Vm` shared, so no KVM_RUN (which takes `&mut Vm`) or other
            // vCPU ioctl can happen while `diff_area`, a pure comparison,
            // reads the slice.
            unsafe { mem.inspect(offset, old.len(), |now| diff_area(gpa, old, now, &mut changes)) }
        };
        compare(&self.ram, layout::DATA, layout::DATA, ram)?;
        compare(&self.edge, 0, self.edge_gpa(), edge)?;
        compare(&self.ro, 0, layout::RO.gpa, ro)?;
        Ok(changes)
    }

    /// Fills the data areas with canaries: `canary(gpa)` at each address.
    pub fn fill_canaries(&mut self) -> Result<()> {
        let areas = self.data_areas()?;
        for (gpa, bytes) in areas {
            let fresh: Vec<u8> = (0..bytes.len() as u64).map(|i| canary(gpa + i)).collect();
            self.write(gpa, &fresh)?;
        }
        Ok(())
    }

    /// Bytes of the loaded program, e.g. to see whether KVM patched its
    /// hypercall instruction.
    pub fn code(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.ram.read(CODE + offset, len)
    }

    /// Loads `e`, enters the guest and runs it until it reports, takes an
    /// exception, fails or passes its deadline. Forwarded hypercalls are
    /// answered with what `answer` returns.
    pub fn enter_guest(&mut self, e: &Entry, answer: &mut dyn FnMut(&UserHypercall) -> u64) -> Result<Stop> {
        if e.user && e.mode != Mode::Long64 {
            bail!("ring 3 is only set up for 64-bit guests");
        }
        let prologue = if e.user {
            guest::enter_user_prologue()
        } else {
            Vec::new()
        };
        let program = [prologue.as_slice(), e.code.as_slice()].concat();
        if program.len() as u64 > CODE_SIZE {
            bail!("program of {} bytes does not fit", program.len());
        }
        self.ram.write(CODE, &program)?;
        let sregs = modes::sregs_for(e.mode, &self.reset_sregs);
        self.vcpu.set_sregs(&sregs).context("KVM_SET_SREGS")?;
        let regs = kvm_regs {
            rax: e.nr,
            rbx: e.args[0],
            rcx: e.args[1],
            rdx: e.args[2],
            rsi: e.args[3],
            r8: if e.user {
                CODE + prologue.len() as u64
            } else {
                e.r8
            },
            r9: if e.user { USER_STACK_TOP } else { e.r9 },
            rip: CODE,
            rsp: STACK_TOP,
            rflags: 2,
            ..Default::default()
        };
        self.vcpu.set_regs(&regs).context("KVM_SET_REGS")?;
        self.run(e.timeout, answer)
    }

    fn run(&mut self, timeout: Duration, answer: &mut dyn FnMut(&UserHypercall) -> u64) -> Result<Stop> {
        self.vcpu.set_kvm_immediate_exit(0);
        let run_ptr: *mut kvm_run = self.vcpu.get_kvm_run();
        // SAFETY: the kvm_run mapping belongs to `self.vcpu`, which outlives
        // `armed`, dropped at the end of this function on this thread.
        let armed = unsafe { deadline::arm(run_ptr, timeout)? };
        let stop = loop {
            let (exit, ret) = snapshot(self.vcpu.run());
            match classify(&exit, armed.expired()) {
                Action::Report => break Stop::Reported(self.vcpu.get_regs().context("KVM_GET_REGS")?),
                Action::Exception(v) => break Stop::Exception(v),
                Action::Answer(call) => {
                    // KVM reads the answer on the next KVM_RUN.
                    *ret.context("hypercall exit without a return slot")? = answer(&call);
                }
                Action::Resume => {}
                Action::TimedOut => break Stop::TimedOut,
                Action::Fail(why) => break Stop::Failed(why),
            }
        };
        drop(armed);
        if matches!(stop, Stop::Reported(_) | Stop::Exception(_)) {
            self.complete_pending_io()?;
        }
        Ok(stop)
    }

    /// KVM completes an `out` (skips the instruction) only on the next
    /// KVM_RUN; a run with `immediate_exit` does that and returns at once,
    /// so that new registers are not set under a pending I/O.
    fn complete_pending_io(&mut self) -> Result<()> {
        self.vcpu.set_kvm_immediate_exit(1);
        let r = self.vcpu.run().map(|_| ());
        self.vcpu.set_kvm_immediate_exit(0);
        match r {
            Err(e) if e.errno() == libc::EINTR => Ok(()),
            Err(e) => bail!("KVM_RUN to complete the report: {e}"),
            Ok(()) => bail!("KVM_RUN with immediate_exit returned an exit"),
        }
    }
}

/// The canary byte at `gpa`: position-dependent, so a shifted or misplaced
/// write shows, and never an ASCII letter of the greeting.
pub fn canary(gpa: u64) -> u8 {
    0xa0 | (gpa as u8 & 0x0f)
}

/// Turns the result of KVM_RUN into an owned [`Exit`] and, for a forwarded
/// hypercall, the slot its answer goes into.
fn snapshot(r: Result<VcpuExit<'_>, kvm_ioctls::Error>) -> (Exit, Option<&mut u64>) {
    let exit = match r {
        Ok(VcpuExit::Hypercall(h)) => {
            let call = UserHypercall {
                nr: h.nr,
                args: h.args,
                flags: u64::from(h.longmode),
            };
            return (Exit::Hypercall(call), Some(h.ret));
        }
        Ok(VcpuExit::IoOut(port, data)) => Exit::IoOut {
            port,
            data: data.to_vec(),
        },
        Ok(VcpuExit::IoIn(port, _)) => Exit::IoIn { port },
        Ok(VcpuExit::MmioRead(addr, _)) => Exit::Mmio { addr, write: false },
        Ok(VcpuExit::MmioWrite(addr, _)) => Exit::Mmio { addr, write: true },
        Ok(VcpuExit::Hlt) => Exit::Hlt,
        Ok(VcpuExit::Shutdown) => Exit::Shutdown,
        Ok(VcpuExit::FailEntry(reason, cpu)) => Exit::FailEntry { reason, cpu },
        Ok(VcpuExit::InternalError) => Exit::InternalError,
        Ok(VcpuExit::Intr) => Exit::Interrupted,
        Ok(other) => Exit::Other(format!("{other:?}")),
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Exit::Interrupted,
        Err(e) => Exit::RunError(e.errno()),
    };
    (exit, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn hello_bit_is_set_and_cleared() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 0x4000_0000,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: abi::KVM_CPUID_FEATURES,
                eax: 0x0100_7afb,
                ..Default::default()
            },
        ];
        let cpuid = CpuId::from_entries(&entries).unwrap();
        assert_eq!(hello_bit(&cpuid), Some(false));
        let on = with_hello_bit(&cpuid, true).unwrap();
        assert_eq!(hello_bit(&on), Some(true));
        assert_eq!(on.as_slice()[1].eax, 0x0100_7afb | 1 << 18);
        let off = with_hello_bit(&on, false).unwrap();
        assert_eq!(off.as_slice()[1].eax, 0x0100_7afb);
        let none = CpuId::from_entries(&entries[..1]).unwrap();
        assert_eq!(hello_bit(&none), None);
        assert!(with_hello_bit(&none, true).is_err());
    }

    #[test]
    fn canaries_are_not_greeting_bytes() {
        for gpa in 0..64 {
            assert!(!abi::GREETING.contains(&canary(gpa)));
        }
        assert_ne!(canary(0), canary(1));
    }
}
