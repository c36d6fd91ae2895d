//! Judging a call: the result as the guest reads it, and the bytes of
//! guest memory it changed against the bytes it may change. Shared by the
//! case table and the fuzzer; pure.

use crate::abi::sext32;
use crate::modes::Mode;
use crate::vm::canary;

/// The result as the guest reads it.
pub fn guest_result(rax: u64, mode: Mode) -> i64 {
    if mode.is_64bit() {
        rax as i64
    } else {
        sext32(rax)
    }
}

/// One address whose byte changed: (gpa, before, after).
pub type Change = (u64, u8, u8);

/// Every byte that differs between two snapshots of the data areas.
pub fn diff(before: &[(u64, Vec<u8>)], after: &[(u64, Vec<u8>)]) -> Vec<Change> {
    let mut changes = Vec::new();
    for ((gpa, old), (_, new)) in before.iter().zip(after) {
        diff_area(*gpa, old, new, &mut changes);
    }
    changes
}

/// Appends every byte that differs between two copies of the area at
/// `gpa`.
pub fn diff_area(gpa: u64, old: &[u8], new: &[u8], changes: &mut Vec<Change>) {
    // Whole chunks compare with memcmp; only differing ones byte by byte,
    // which matters for a fuzzer diffing every data byte per call under TCG.
    const CHUNK: usize = 256;
    for (c, (o, n)) in old.chunks(CHUNK).zip(new.chunks(CHUNK)).enumerate() {
        if o == n {
            continue;
        }
        for (i, (ob, nb)) in o.iter().zip(n).enumerate() {
            if ob != nb {
                changes.push((gpa + (c * CHUNK + i) as u64, *ob, *nb));
            }
        }
    }
}

/// Checks the changed bytes against what the call may write: exactly
/// `want` at `at` (when given), and nothing outside `[lo, hi)`.
pub fn check_writes(changes: &[Change], at: u64, want: Option<&[u8]>, lo: u64, hi: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let outside: Vec<&Change> = changes.iter().filter(|c| c.0 < lo || c.0 >= hi).collect();
    if let Some(first) = outside.first() {
        problems.push(format!(
            "{} byte(s) written outside the buffer [{lo:#x}, {hi:#x}), first at {:#x}: {:#04x} -> {:#04x}",
            outside.len(),
            first.0,
            first.1,
            first.2
        ));
    }
    if let Some(want) = want {
        let mut got: Vec<u8> = Vec::with_capacity(want.len());
        for i in 0..want.len() as u64 {
            let gpa = at + i;
            match changes.iter().find(|c| c.0 == gpa) {
                Some(c) => got.push(c.2),
                // Unchanged: the canary is still there, unless the
                // expected byte happens to equal it (it never does).
                None => got.push(canary(gpa)),
            }
        }
        let untouched = (0..want.len() as u64).all(|i| got[i as usize] == canary(at + i));
        if untouched {
            problems.push(format!(
                "buffer not written (canaries intact), want {}",
                show(want)
            ));
        } else if got != want {
            problems.push(format!("buffer holds {}, want {}", show(&got), show(want)));
        }
    }
    problems
}

/// Bytes as an escaped string: "Hell\0".
pub fn show(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::canary;

    fn area(gpa: u64, len: usize) -> Vec<(u64, Vec<u8>)> {
        vec![(gpa, (0..len as u64).map(|i| canary(gpa + i)).collect())]
    }

    #[test]
    fn writes_are_checked_byte_by_byte() {
        let before = area(0x1000, 32);
        let mut after = before.clone();
        after[0].1[8..13].copy_from_slice(b"Hell\0");
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 5);
        assert!(check_writes(&changes, 0x1008, Some(b"Hell\0"), 0x1008, 0x100d).is_empty());
        // The same write judged against a shorter allowance.
        let p = check_writes(&changes, 0x1008, Some(b"He\0"), 0x1008, 0x100b);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("outside") && p[1].contains("\"Hel\""), "{p:?}");
        // Nothing allowed at all.
        assert_eq!(check_writes(&changes, 0, None, 0, 0).len(), 1);
        // A byte that should have been written but still holds its canary.
        let p = check_writes(&[], 0x1008, Some(b"H"), 0x1008, 0x1009);
        assert!(
            p[0].contains("not written (canaries intact), want \"H\""),
            "{p:?}"
        );
    }

    #[test]
    fn results_sign_extend_outside_long_mode() {
        assert_eq!(guest_result(0xffff_ffea, Mode::Protected32), -22);
        assert_eq!(guest_result(0xffff_ffea, Mode::Long64), 0xffff_ffea);
        assert_eq!(guest_result(u64::MAX - 21, Mode::Long64), -22);
    }
}
