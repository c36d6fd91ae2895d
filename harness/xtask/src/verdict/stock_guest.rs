//! The stock guest: Debian's kernel without the series, the module only.

use proto::{Event, GuestName, TracePhase};

use super::boot::{l2_check, module_check};
use super::calls::{promised_checks, STOCK_CHECKS};
use super::logs::dmesg_check;
use super::{Check, Stock, Verdict};
use crate::trace::Trace;

/// The stock guest: Debian's kernel without the series, the module only;
/// its trace lines are those of its QEMU process.
pub(super) fn stock_checks(
    stock: &Stock,
    events: &[Event],
    trace: Option<&Trace>,
    blind: Option<String>,
    hc_nr: Option<u64>,
) -> Vec<Check> {
    let (release, console, warnings) = match stock {
        Stock::Skipped(why) => return vec![Check::new("stock_guest", Verdict::Skip, format!("SKIP: {why}"))],
        Stock::Ran {
            release,
            console,
            module_warnings,
        } => (release, console, module_warnings),
    };
    let mut checks = vec![
        l2_check(events, "stock_l2_run", GuestName::Stock, console),
        module_check(events, "stock_module", GuestName::Stock, warnings),
    ];
    checks.extend(promised_checks(events, STOCK_CHECKS));
    let phase = trace.and_then(|t| t.phase(TracePhase::Stock));
    let ours = phase.map_or(0, |p| {
        hc_nr.and_then(|nr| p.hypercalls.get(&nr).copied()).unwrap_or(0)
    });
    checks.push(match (phase, blind) {
        (_, Some(why)) => Check::new("stock_trace_greeting", Verdict::Fail, why),
        (None, None) if trace.is_none() => Check::new(
            "stock_trace_greeting",
            Verdict::Fail,
            "NO RESULT: the agent saved no trace",
        ),
        (None, None) => Check::new(
            "stock_trace_greeting",
            Verdict::Fail,
            format!("no traced call from the stock guest's QEMU process ({release})"),
        ),
        (Some(p), None) if p.hello >= 2 && p.hello == ours => Check::new(
            "stock_trace_greeting",
            Verdict::Pass,
            format!("{} \"Hello World\" lines from {release}", p.hello),
        ),
        (Some(p), None) => Check::new(
            "stock_trace_greeting",
            Verdict::Fail,
            format!(
                "{} \"Hello World\" lines for {ours} hello hypercalls from {release}; wanted 2",
                p.hello
            ),
        ),
    });
    checks.push(dmesg_check(events, "stock_dmesg_clean", GuestName::Stock));
    checks
}
