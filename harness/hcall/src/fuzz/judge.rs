//! Judging one call against the model: the result, and every byte of the
//! data areas.

use crate::abi::{self, describe, Slot};
use crate::check::{guest_result, show, Change};
use crate::vm::Stop;

use super::draw::Draw;

/// The problems with one call's outcome; empty if it matched the model.
pub(crate) fn judge(d: &Draw, stop: &Stop, changes: &[Change], slots: &[Slot]) -> Vec<String> {
    let call = abi::Call {
        args: d.args,
        long_mode: d.mode.is_64bit(),
        cpl: d.cpl,
    };
    let want = abi::expected(&call, d.enablement, slots);
    let regs = match stop {
        Stop::Reported(regs) => regs,
        other => return vec![format!("guest did not report: {other:?}")],
    };
    let got = guest_result(regs.rax, d.mode);
    let mut problems = vec![];
    if !abi::is_documented(got) {
        problems.push(format!("result {} is not in the documented set", describe(got)));
    }
    if got != want.ret {
        problems.push(format!("got {}, want {}", describe(got), describe(want.ret)));
    }
    let wanted: Vec<(u64, u8)> = match &want.writes {
        Some((at, bytes)) => bytes
            .iter()
            .enumerate()
            .map(|(i, b)| (at + i as u64, *b))
            .collect(),
        None => vec![],
    };
    // Canaries are never greeting bytes, so every wanted byte is a change.
    let got_writes: Vec<(u64, u8)> = changes.iter().map(|c| (c.0, c.2)).collect();
    let unexpected: Vec<&(u64, u8)> = got_writes.iter().filter(|w| !wanted.contains(w)).collect();
    let missing = wanted.iter().filter(|w| !got_writes.contains(w)).count();
    if let Some(first) = unexpected.first() {
        problems.push(format!(
            "{} unexpected byte(s) written, first {:#04x} at {:#x}",
            unexpected.len(),
            first.1,
            first.0
        ));
    }
    if missing > 0 {
        let bytes: Vec<u8> = wanted.iter().map(|w| w.1).collect();
        problems.push(format!("{missing} byte(s) of {} not written", show(&bytes)));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::Enablement;
    use crate::layout;
    use crate::layout::DATA;
    use crate::modes::Mode;
    use kvm_bindings::kvm_regs;

    fn reported(rax: u64) -> Stop {
        Stop::Reported(kvm_regs {
            rax,
            ..Default::default()
        })
    }

    fn d(mode: Mode, args: [u64; 4]) -> Draw {
        Draw {
            mode,
            cpl: 0,
            enablement: Enablement::On,
            param_now: None,
            args,
        }
    }

    fn greeting_at(at: u64, n: usize) -> Vec<Change> {
        let mut text = abi::GREETING[..n].to_vec();
        text[n - 1] = 0;
        text.iter()
            .enumerate()
            .map(|(i, b)| (at + i as u64, 0xaa, *b))
            .collect()
    }

    #[test]
    fn judge_accepts_the_model() {
        let call = d(Mode::Long64, [DATA, 5, 0, 0]);
        assert!(judge(&call, &reported(5), &greeting_at(DATA, 5), &layout::SLOTS).is_empty());
        // 32-bit: zero-extended -22 in RAX is -22.
        let bad = d(Mode::Protected32, [DATA, 0, 0, 0]);
        assert!(judge(&bad, &reported(0xffff_ffea), &[], &layout::SLOTS).is_empty());
    }

    #[test]
    fn judge_rejects_deviations() {
        let call = d(Mode::Long64, [DATA, 5, 0, 0]);
        let p = judge(&call, &reported(12), &greeting_at(DATA, 12), &layout::SLOTS);
        assert!(p.iter().any(|x| x.contains("got 12, want 5")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("unexpected byte")), "{p:?}");
        let p = judge(&call, &reported(5), &[], &layout::SLOTS);
        assert!(p.iter().any(|x| x.contains("not written")), "{p:?}");
        let p = judge(&call, &reported(13), &greeting_at(DATA, 5), &layout::SLOTS);
        assert!(p.iter().any(|x| x.contains("not in the documented set")), "{p:?}");
        assert!(!judge(&call, &Stop::TimedOut, &[], &layout::SLOTS).is_empty());
    }

    #[test]
    fn judge_follows_the_v2_rules() {
        // A size without a buffer is refused now; the v1 answer (0) fails.
        let sized = d(Mode::Long64, [0, 5, 0, 0]);
        assert!(judge(&sized, &reported((-abi::KVM_EINVAL) as u64), &[], &layout::SLOTS).is_empty());
        let p = judge(&sized, &reported(0), &[], &layout::SLOTS);
        assert!(p.iter().any(|x| x.contains("got 0, want -22")), "{p:?}");
        // A VM created with the parameter off stays off, whatever it is now.
        let off = Draw {
            enablement: Enablement::ParamOff,
            param_now: Some(true),
            ..d(Mode::Long64, [DATA, 12, 0, 0])
        };
        assert!(judge(&off, &reported((-abi::KVM_ENOSYS) as u64), &[], &layout::SLOTS).is_empty());
        let on = Draw {
            enablement: Enablement::On,
            param_now: Some(false),
            ..off
        };
        assert!(judge(&on, &reported(12), &greeting_at(DATA, 12), &layout::SLOTS).is_empty());
        let protected = Draw {
            enablement: Enablement::ProtectedVm,
            ..on
        };
        let p = judge(&protected, &reported(12), &greeting_at(DATA, 12), &layout::SLOTS);
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
