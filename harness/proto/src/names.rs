//! The closed sets of names the programs exchange: who reports, which L2
//! guest, what the probe asks for, which fact. Each is an enum, so a typo
//! is a compile error rather than a NO RESULT after a ten-minute run, and
//! adding a request or a fact means changing one enum and following the
//! compiler. serde keeps the strings the wire format always had.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A guest program, as it names itself in `Hello` and `Done`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Who {
    /// L1's init.
    Agent,
    /// L2's init in the main (patched) guest.
    Probe,
    /// L2's init in the stock guest.
    ProbeStock,
}

/// One of the L2 guests; names its files, its facts and its trace phase.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum GuestName {
    /// The guest kernel built with the series.
    Main,
    /// Debian's kernel without the series: the guest module only.
    Stock,
}

impl GuestName {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestName::Main => "main",
            GuestName::Stock => "stock",
        }
    }

    /// The name of one of its files in the run directory, e.g.
    /// "l2-main-console.log".
    pub fn file(self, what: &str) -> String {
        format!("l2-{self}-{what}.log")
    }

    /// The probe that runs in this guest.
    pub fn probe(self) -> Who {
        match self {
            GuestName::Main => Who::Probe,
            GuestName::Stock => Who::ProbeStock,
        }
    }
}

impl fmt::Display for GuestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the probe does, from [`crate::MODE_ENV`] on its kernel command
/// line: run as one of the guests, or power off at once (the benchmark's
/// floor boots L2 this way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMode {
    Guest(GuestName),
    Off,
}

impl ProbeMode {
    /// The value for [`crate::MODE_ENV`].
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMode::Guest(g) => g.as_str(),
            ProbeMode::Off => "off",
        }
    }

    /// Reads the mode; no value (or an unknown one) is the main guest,
    /// whose command line carries the syscall number instead.
    pub fn parse(value: Option<&str>) -> ProbeMode {
        match value {
            Some("off") => ProbeMode::Off,
            Some("stock") => ProbeMode::Guest(GuestName::Stock),
            _ => ProbeMode::Guest(GuestName::Main),
        }
    }
}

/// Kernel command line key (an environment variable for init) naming what
/// the agent does: nothing (a run) or "floor" (see [`AgentMode::Floor`]).
pub const AGENT_MODE_ENV: &str = "hh_agent";

/// What the agent does in L1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    /// The end-to-end run: tracing, the guests, the tests, the report.
    Run,
    /// The benchmark's floor: start the guests of agent.json exactly as a
    /// run does, with nothing else, and record how each QEMU ended.
    Floor,
}

impl AgentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentMode::Run => "run",
            AgentMode::Floor => "floor",
        }
    }

    /// Reads the mode; no value (or an unknown one) is a run.
    pub fn parse(value: Option<&str>) -> AgentMode {
        match value {
            Some("floor") => AgentMode::Floor,
            _ => AgentMode::Run,
        }
    }

    /// The kernel parameter that selects this mode.
    pub fn param(self) -> String {
        format!("{AGENT_MODE_ENV}={}", self.as_str())
    }
}

/// What the probe asks the agent to do on the host; it waits for
/// [`crate::ANSWER_OK`] on its report port.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Request {
    /// Turn kvm.hello_hypercall off until the asking guest ends.
    Disable,
    /// Mark the trace: the series' kselftest starts now.
    Kselftest,
}

/// The phases of the host's trace: the main guest's lines start in
/// "enabled" and move on at each marker the agent writes (after
/// [`crate::TRACE_MARK_PREFIX`]); the stock guest's lines and L1's own are
/// phases of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracePhase {
    Enabled,
    Kselftest,
    Disabled,
    Stock,
    /// Calls from no guest's QEMU: L1's own test programs.
    L1,
}

impl TracePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            TracePhase::Enabled => "enabled",
            TracePhase::Kselftest => "kselftest",
            TracePhase::Disabled => "disabled",
            TracePhase::Stock => "stock",
            TracePhase::L1 => "l1",
        }
    }

    /// The marker line the agent writes into the trace buffer.
    pub fn marker(self) -> String {
        format!("{}{}", crate::TRACE_MARK_PREFIX, self.as_str())
    }
}

/// The name of a fact. On the wire it is one string, such as
/// "stock_module_load" or "l2_main_vm_created".
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(into = "String", try_from = "String")]
pub enum FactName {
    /// kvm.hello_hypercall in L1 when the agent started (a [`ParamState`]).
    HelloHypercallParam,
    /// The guest's QEMU command line in L1.
    L2Command(GuestName),
    /// When the guest's VM was created, and the parameter then.
    L2VmCreated(GuestName),
    /// Loading the guest module: "ok" or what went wrong.
    ModuleLoad(GuestName),
    /// The warnings in the guest's kernel log while the probe ran, one a line.
    DmesgWarnings(GuestName),
    /// Why the guest's kernel log could not be read.
    DmesgUnreadable(GuestName),
}

impl FactName {
    /// The probe's facts carry "stock_" for the stock guest and nothing for
    /// the main one, as they always did.
    fn probe_prefix(g: GuestName) -> &'static str {
        match g {
            GuestName::Main => "",
            GuestName::Stock => "stock_",
        }
    }
}

impl fmt::Display for FactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FactName::HelloHypercallParam => f.write_str("hello_hypercall_param"),
            FactName::L2Command(g) => write!(f, "l2_{g}_command"),
            FactName::L2VmCreated(g) => write!(f, "l2_{g}_vm_created"),
            FactName::ModuleLoad(g) => write!(f, "{}module_load", Self::probe_prefix(g)),
            FactName::DmesgWarnings(g) => write!(f, "{}dmesg_warnings", Self::probe_prefix(g)),
            FactName::DmesgUnreadable(g) => {
                write!(f, "{}dmesg_warnings_unreadable", Self::probe_prefix(g))
            }
        }
    }
}

impl FromStr for FactName {
    type Err = String;

    fn from_str(s: &str) -> Result<FactName, String> {
        // Every name is one of a small closed set: find it by printing them.
        let guests = [GuestName::Main, GuestName::Stock];
        let all = std::iter::once(FactName::HelloHypercallParam).chain(guests.into_iter().flat_map(|g| {
            [
                FactName::L2Command(g),
                FactName::L2VmCreated(g),
                FactName::ModuleLoad(g),
                FactName::DmesgWarnings(g),
                FactName::DmesgUnreadable(g),
            ]
        }));
        all.into_iter()
            .find(|f| f.to_string() == s)
            .ok_or_else(|| format!("unknown fact {s:?}"))
    }
}

impl From<FactName> for String {
    fn from(f: FactName) -> String {
        f.to_string()
    }
}

impl TryFrom<String> for FactName {
    type Error = String;

    fn try_from(s: String) -> Result<FactName, String> {
        s.parse()
    }
}

/// kvm.hello_hypercall as the agent found it: the value of the fact
/// [`FactName::HelloHypercallParam`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamState {
    On,
    Off,
    /// The kernel has no such parameter: an unpatched host, or one built
    /// without CONFIG_KVM_HELLO_HYPERCALL.
    Absent,
}

impl ParamState {
    pub fn from_value(value: Option<bool>) -> ParamState {
        match value {
            Some(true) => ParamState::On,
            Some(false) => ParamState::Off,
            None => ParamState::Absent,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ParamState::On => "on",
            ParamState::Off => "off",
            ParamState::Absent => "absent",
        }
    }

    pub fn parse(text: &str) -> Option<ParamState> {
        [ParamState::On, ParamState::Off, ParamState::Absent]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

impl fmt::Display for ParamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fact_names_keep_their_wire_strings() {
        let pinned = [
            (FactName::HelloHypercallParam, "hello_hypercall_param"),
            (FactName::L2Command(GuestName::Main), "l2_main_command"),
            (FactName::L2VmCreated(GuestName::Stock), "l2_stock_vm_created"),
            (FactName::ModuleLoad(GuestName::Main), "module_load"),
            (FactName::ModuleLoad(GuestName::Stock), "stock_module_load"),
            (FactName::DmesgWarnings(GuestName::Main), "dmesg_warnings"),
            (FactName::DmesgWarnings(GuestName::Stock), "stock_dmesg_warnings"),
            (
                FactName::DmesgUnreadable(GuestName::Main),
                "dmesg_warnings_unreadable",
            ),
            (
                FactName::DmesgUnreadable(GuestName::Stock),
                "stock_dmesg_warnings_unreadable",
            ),
        ];
        for (fact, wire) in pinned {
            assert_eq!(serde_json::to_string(&fact).unwrap(), format!("\"{wire}\""));
            assert_eq!(wire.parse::<FactName>(), Ok(fact));
        }
        assert!("module_loaded".parse::<FactName>().is_err());
    }

    #[test]
    fn names_keep_their_wire_strings() {
        let json = |v: &dyn erased::Ser| v.json();
        assert_eq!(json(&Who::Agent), "\"agent\"");
        assert_eq!(json(&Who::Probe), "\"probe\"");
        assert_eq!(json(&Who::ProbeStock), "\"probe-stock\"");
        assert_eq!(json(&GuestName::Main), "\"main\"");
        assert_eq!(json(&GuestName::Stock), "\"stock\"");
        assert_eq!(json(&Request::Disable), "\"disable\"");
        assert_eq!(json(&Request::Kselftest), "\"kselftest\"");
    }

    /// Serialises values of different types through one closure.
    mod erased {
        pub trait Ser {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Ser for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }

    #[test]
    fn probe_modes_and_phases() {
        assert_eq!(ProbeMode::parse(None), ProbeMode::Guest(GuestName::Main));
        assert_eq!(ProbeMode::parse(Some("stock")).as_str(), "stock");
        assert_eq!(ProbeMode::parse(Some("off")), ProbeMode::Off);
        assert_eq!(AgentMode::parse(None), AgentMode::Run);
        assert_eq!(AgentMode::parse(Some("floor")), AgentMode::Floor);
        assert_eq!(AgentMode::Floor.param(), "hh_agent=floor");
        assert_eq!(TracePhase::Disabled.marker(), "hello-hypercall: phase disabled");
        assert_eq!(ParamState::parse("absent"), Some(ParamState::Absent));
        assert_eq!(ParamState::from_value(Some(true)).to_string(), "on");
    }
}
