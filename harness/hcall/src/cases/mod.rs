//! The case table: one named case per ABI promise. Most cases are one
//! hypercall with an expected result and expected bytes ([`CallCase`]);
//! the rest need a VM option, a VM type, the host switch, their own guest
//! code or a forwarded exit and are small functions. Every case gets a
//! fresh VM whose data areas are full of canaries, and every byte of them
//! is checked afterwards.
//!
//! Cases that turn kvm.hello_hypercall off hold it with a guard that puts
//! it back on every way out (an error, a panic), so one failing case never
//! leaves the next without the handler.

use std::cell::RefCell;

use anyhow::Result;
use kvm_bindings::CpuId;
use kvm_ioctls::Kvm;

use crate::abi::{self, describe, sext32, GREETING, KVM_EFAULT, KVM_EINVAL, KVM_ENOSYS, KVM_EPERM};
use crate::check::{check_writes, diff, guest_result, show};
use crate::exit::{vector_name, UserHypercall};
use crate::guest::{self, Encoding};
use crate::layout::{self, BUF, DATA, END, HOLE, PAGE};
use crate::modes::Mode;
use crate::vm::{self, Entry, PvCpuid, Stop, Vm, VmConfig};
use proto::ktap::Outcome;
use proto::param::SysfsSwitch;

mod call;
mod insn;
mod switches;
mod table;
mod user_exit;

use call::*;
use insn::*;
use switches::*;
use user_exit::*;

pub use table::CASES;

/// What the cases share: the KVM handle, the host facts, the switch.
pub struct Ctx {
    pub kvm: Kvm,
    /// KVM_GET_SUPPORTED_CPUID as read with the handler enabled.
    pub supported: CpuId,
    pub native: Encoding,
    /// `kvm.hello_hypercall`; `None` when the kernel has no such parameter.
    pub param: Option<SysfsSwitch>,
    /// Set when the handler is off and this process cannot turn it on:
    /// cases that need it are skipped with this reason.
    pub handler_unavailable: Option<String>,
}

/// A case's verdict and the lines that explain it.
pub struct CaseVerdict {
    pub outcome: Outcome,
    pub diags: Vec<String>,
}

impl CaseVerdict {
    fn from_problems(problems: Vec<String>, mut notes: Vec<String>) -> CaseVerdict {
        let outcome = if problems.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        };
        notes.extend(problems);
        CaseVerdict {
            outcome,
            diags: notes,
        }
    }

    fn skip(why: impl Into<String>) -> CaseVerdict {
        CaseVerdict {
            outcome: Outcome::Skip(why.into()),
            diags: vec![],
        }
    }

    fn fail(why: impl Into<String>) -> CaseVerdict {
        CaseVerdict {
            outcome: Outcome::Fail,
            diags: vec![why.into()],
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Enc {
    Native,
    Vmcall,
    Vmmcall,
}

impl Enc {
    fn resolve(self, native: Encoding) -> Encoding {
        match self {
            Enc::Native => native,
            Enc::Vmcall => Encoding::Vmcall,
            Enc::Vmmcall => Encoding::Vmmcall,
        }
    }
}

/// What one call must do.
#[derive(Clone, Copy, Debug)]
pub enum CallWant {
    /// Return the length of these bytes and write them at a0, nothing else.
    Wrote(&'static [u8]),
    /// Return this and write nothing at all.
    Nothing(i64),
    /// Return -KVM_EFAULT and write nothing outside [a0, a0 + a1). A copy
    /// that got partway is allowed and reported.
    Fault,
}

impl CallWant {
    fn ret(self) -> i64 {
        match self {
            CallWant::Wrote(b) => b.len() as i64,
            CallWant::Nothing(r) => r,
            CallWant::Fault => -KVM_EFAULT,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct CallCase {
    pub mode: Mode,
    pub user: bool,
    pub enc: Enc,
    pub args: [u64; 4],
    pub want: CallWant,
}

pub enum Kind {
    Call(CallCase),
    Custom(fn(&Ctx) -> Result<CaseVerdict>),
}

pub struct Case {
    pub name: &'static str,
    pub kind: Kind,
}

/// Runs one case; an error (an ioctl that failed) is a failure with its
/// context chain as the reason.
pub fn run(ctx: &Ctx, case: &Case) -> CaseVerdict {
    let result = match &case.kind {
        Kind::Call(c) => {
            if let (Some(why), true) = (&ctx.handler_unavailable, needs_handler(c)) {
                return CaseVerdict::skip(why.clone());
            }
            run_call(ctx, c, VmConfig::default())
        }
        Kind::Custom(f) => f(ctx),
    };
    result.unwrap_or_else(|e| CaseVerdict::fail(format!("{e:#}")))
}
