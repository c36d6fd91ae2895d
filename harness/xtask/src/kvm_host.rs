//! Whether this host's KVM can run L1, and if not, why and the one command
//! that fixes it. Reading the host is kept apart from the decision, which
//! is a pure function tested on captured /proc/cpuinfo and sysfs values.

use std::path::Path;

/// The CPU vendor's KVM module, named by the CPU's virtualization flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
}

impl Vendor {
    pub fn module(self) -> &'static str {
        match self {
            Vendor::Intel => "kvm_intel",
            Vendor::Amd => "kvm_amd",
        }
    }
}

/// What the host shows about KVM.
#[derive(Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// From the first "flags" line of /proc/cpuinfo: vmx or svm.
    pub vendor: Option<Vendor>,
    pub dev_kvm: DevKvm,
    /// The vendor module's `nested` parameter, when the module is loaded.
    pub nested: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DevKvm {
    Missing,
    NoAccess,
    Usable,
}

/// Why L1 cannot use KVM.
#[derive(Debug, PartialEq, Eq)]
pub enum Blocker {
    NoCpuSupport,
    NoDevice(Vendor),
    NoAccess,
    NestingOff(Vendor),
}

impl Blocker {
    pub fn reason(&self) -> String {
        match self {
            Blocker::NoCpuSupport => "the CPU shows neither vmx nor svm in /proc/cpuinfo: \
                 this machine is a guest without nested virtualization, or VT-x/AMD-V is off in the firmware"
                .into(),
            Blocker::NoDevice(v) => format!("no /dev/kvm: {} is not loaded", v.module()),
            Blocker::NoAccess => "/dev/kvm exists but this user cannot open it read-write".into(),
            Blocker::NestingOff(v) => format!(
                "{} does not allow nested virtualization (/sys/module/{}/parameters/nested is off)",
                v.module(),
                v.module()
            ),
        }
    }

    /// The one command that removes the blocker.
    pub fn fix(&self) -> String {
        match self {
            Blocker::NoCpuSupport => {
                "enable nested virtualization for this VM on its host (or VT-x/AMD-V in the firmware)".into()
            }
            Blocker::NoDevice(v) => format!("sudo modprobe {}", v.module()),
            Blocker::NoAccess => "sudo usermod -aG kvm \"$USER\"  (then log in again)".into(),
            Blocker::NestingOff(v) => format!(
                "echo 'options {m} nested=1' | sudo tee /etc/modprobe.d/kvm-nested.conf && \
                 sudo modprobe -r {m} && sudo modprobe {m}",
                m = v.module()
            ),
        }
    }
}

/// The first thing that stops L1 from using KVM, in the order a user
/// fixes them; None when nothing visible does (a probe boot decides then).
pub fn blocker(facts: &HostFacts) -> Option<Blocker> {
    let Some(vendor) = facts.vendor else {
        return Some(Blocker::NoCpuSupport);
    };
    match facts.dev_kvm {
        DevKvm::Missing => return Some(Blocker::NoDevice(vendor)),
        DevKvm::NoAccess => return Some(Blocker::NoAccess),
        DevKvm::Usable => {}
    }
    match facts.nested.as_deref().map(str::trim) {
        Some("1" | "Y") => None,
        _ => Some(Blocker::NestingOff(vendor)),
    }
}

/// The vendor from /proc/cpuinfo's text: its first "flags" line.
pub fn vendor_from_cpuinfo(cpuinfo: &str) -> Option<Vendor> {
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags"))?;
    let flags = flags.split_once(':').map_or(flags, |(_, f)| f);
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    if has("vmx") {
        Some(Vendor::Intel)
    } else if has("svm") {
        Some(Vendor::Amd)
    } else {
        None
    }
}

impl HostFacts {
    /// Reads /proc/cpuinfo, /dev/kvm and the vendor module's parameter.
    pub fn read() -> HostFacts {
        let vendor = fs_err::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| vendor_from_cpuinfo(&c));
        let dev_kvm = if !Path::new("/dev/kvm").exists() {
            DevKvm::Missing
        } else if fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
        {
            DevKvm::Usable
        } else {
            DevKvm::NoAccess
        };
        let nested = vendor.and_then(|v| {
            fs_err::read_to_string(format!("/sys/module/{}/parameters/nested", v.module())).ok()
        });
        HostFacts {
            vendor,
            dev_kvm,
            nested,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(vendor: Option<Vendor>, dev_kvm: DevKvm, nested: Option<&str>) -> HostFacts {
        HostFacts {
            vendor,
            dev_kvm,
            nested: nested.map(String::from),
        }
    }

    #[test]
    fn this_projects_machine_has_no_cpu_support_to_nest() {
        // Captured here: an AMD guest whose /dev/kvm is a paravirtual KVM.
        let cpuinfo = include_str!("../tests/data/cpuinfo-pvm-amd.txt");
        assert_eq!(vendor_from_cpuinfo(cpuinfo), None);
        let here = facts(None, DevKvm::Usable, None);
        assert_eq!(blocker(&here), Some(Blocker::NoCpuSupport));
    }

    #[test]
    fn the_vendor_flag_names_the_module() {
        assert_eq!(
            vendor_from_cpuinfo("flags\t\t: fpu vme vmx ept\n"),
            Some(Vendor::Intel)
        );
        assert_eq!(vendor_from_cpuinfo("flags\t\t: fpu svm npt\n"), Some(Vendor::Amd));
        // A flag must match whole: "svm_lock" alone is not svm.
        assert_eq!(vendor_from_cpuinfo("flags\t\t: fpu svm_lock\n"), None);
    }

    #[test]
    fn each_blocker_comes_with_its_fix() {
        let intel = Some(Vendor::Intel);
        let b = blocker(&facts(intel, DevKvm::Missing, None)).unwrap();
        assert_eq!(b.fix(), "sudo modprobe kvm_intel");
        let b = blocker(&facts(intel, DevKvm::NoAccess, Some("Y"))).unwrap();
        assert!(b.fix().starts_with("sudo usermod -aG kvm"));
        // sysfs says "N" (kvm_intel) or "0" (kvm_amd) with a newline.
        let b = blocker(&facts(intel, DevKvm::Usable, Some("N\n"))).unwrap();
        assert_eq!(b, Blocker::NestingOff(Vendor::Intel));
        assert!(b.fix().contains("options kvm_intel nested=1"));
        let amd = Some(Vendor::Amd);
        assert_eq!(
            blocker(&facts(amd, DevKvm::Usable, Some("0\n"))),
            Some(Blocker::NestingOff(Vendor::Amd))
        );
        assert_eq!(blocker(&facts(amd, DevKvm::Usable, Some("1\n"))), None);
        assert_eq!(blocker(&facts(intel, DevKvm::Usable, Some("Y\n"))), None);
    }
}
