//! Drawing calls: a mode and CPL, the VM to call in and a0..a3 from
//! structured sets, all from the seed.

use crate::abi::Enablement;
use crate::layout::{self, DATA, END, HOLE, HOLE_END, PAGE};
use crate::modes::Mode;
use crate::prng::SplitMix64;

/// One drawn call: everything needed to run and to reproduce it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Draw {
    pub(crate) mode: Mode,
    pub(crate) cpl: u8,
    /// The VM called in, by what it was created with.
    pub(crate) enablement: Enablement,
    /// kvm.hello_hypercall at the time of the call, when the fuzz may set
    /// it; the VM must ignore it.
    pub(super) param_now: Option<bool>,
    pub(crate) args: [u64; 4],
}

pub(super) fn draw_gpa(r: &mut SplitMix64) -> u64 {
    let ram_end = layout::RAM.gpa + layout::RAM.size;
    let edge_end = layout::EDGE.gpa + layout::EDGE.size;
    let ro = layout::RO.gpa;
    let near = |r: &mut SplitMix64, at: u64| at.wrapping_sub(r.below(16));
    match r.below(11) {
        0 => 0,
        // Anywhere in the data area.
        1 => DATA + r.below(ram_end - DATA - 16),
        // Just before a page boundary inside the data area.
        2 => {
            let boundary = DATA + PAGE * (1 + r.below((ram_end - DATA) / PAGE - 1));
            near(r, boundary)
        }
        // Across the boundary of slots 0 and 1, and from slot 1 into the hole.
        3 => near(r, layout::EDGE.gpa),
        4 => near(r, edge_end),
        5 => HOLE + r.below(HOLE_END - HOLE),
        6 => ro + r.below(layout::RO.size),
        // Running into the read-only slot from the hole, and past the end.
        7 => near(r, ro),
        8 => END + r.below(1 << 20),
        // Huge values, and one that truncates into the data area for a
        // 32-bit caller.
        9 => {
            let top = u64::MAX - r.below(16);
            r.pick(&[top, 1 << 52, 1 << 63, 0xffff_fff0, (1 << 32) | (DATA + 0x100)])
        }
        _ => r.next_u64(),
    }
}

pub(super) fn draw_size(r: &mut SplitMix64) -> u64 {
    match r.below(8) {
        0 => 0,
        1..=3 => 1 + r.below(13),
        4 => r.pick(&[64, 4096]),
        // 2^32 is 0 for a 32-bit caller.
        5 => r.pick(&[u64::from(u32::MAX), 1 << 32, (1 << 32) | 5]),
        6 => u64::MAX,
        _ => r.next_u64(),
    }
}

pub(super) fn draw_reserved(r: &mut SplitMix64) -> u64 {
    if r.percent(85) {
        0
    } else {
        let any = r.next_u64();
        r.pick(&[1, 1 << 32, u64::MAX, any])
    }
}

/// Draws a call into one of the VMs in `vms` (half of them into the
/// enabled one, when there is one); `toggle` says whether the parameter
/// may be set.
pub(crate) fn draw(r: &mut SplitMix64, vms: &[Enablement], toggle: bool) -> Draw {
    let (mode, cpl) = match r.below(20) {
        0..=3 => (Mode::Real, 0),
        4..=8 => (Mode::Protected32, 0),
        9..=16 => (Mode::Long64, 0),
        _ => (Mode::Long64, 3),
    };
    let others: Vec<Enablement> = vms.iter().copied().filter(|e| *e != Enablement::On).collect();
    let enablement = if others.is_empty() || (vms.contains(&Enablement::On) && r.percent(50)) {
        Enablement::On
    } else {
        r.pick(&others)
    };
    let param_now = toggle.then(|| r.percent(50));
    let args = [draw_gpa(r), draw_size(r), draw_reserved(r), draw_reserved(r)];
    Draw {
        mode,
        cpl,
        enablement,
        param_now,
        args,
    }
}

pub(crate) fn describe_draw(i: u64, d: &Draw) -> String {
    let [a0, a1, a2, a3] = d.args;
    let now = match d.param_now {
        Some(true) => " (kvm.hello_hypercall now Y)",
        Some(false) => " (kvm.hello_hypercall now N)",
        None => "",
    };
    format!(
        "call {i}: {} cpl{} VM {:?}{now} a0={a0:#x} a1={a1:#x} a2={a2:#x} a3={a3:#x}",
        d.mode.name(),
        d.cpl,
        d.enablement
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_reproduce() {
        let vms = [Enablement::On, Enablement::ParamOff, Enablement::CpuidCleared];
        let run = || -> Vec<String> {
            let mut r = SplitMix64::new(7);
            (0..50)
                .map(|i| describe_draw(i, &draw(&mut r, &vms, true)))
                .collect()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn draws_use_only_the_vms_there_are() {
        let mut r = SplitMix64::new(7);
        let draws: Vec<Draw> = (0..400)
            .map(|_| draw(&mut r, &[Enablement::On, Enablement::CpuidCleared], false))
            .collect();
        assert!(draws
            .iter()
            .all(|d| d.enablement != Enablement::ParamOff && d.param_now.is_none()));
        let on = draws.iter().filter(|d| d.enablement == Enablement::On).count();
        assert!((100..300).contains(&on), "{on} of 400 in the enabled VM");
        // A host whose parameter is fixed off has one VM, and every call goes there.
        let mut r = SplitMix64::new(7);
        assert!(
            (0..50).all(|_| draw(&mut r, &[Enablement::ParamOff], false).enablement == Enablement::ParamOff)
        );
        // With a switch, the parameter is set both ways.
        let mut r = SplitMix64::new(7);
        let now: Vec<Option<bool>> = (0..50)
            .map(|_| draw(&mut r, &[Enablement::On], true).param_now)
            .collect();
        assert!(now.contains(&Some(true)) && now.contains(&Some(false)));
    }
}
