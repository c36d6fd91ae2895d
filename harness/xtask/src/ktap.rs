//! KTAP and TAP 13, as the KVM selftests (kselftest) and the hcall VMM
//! print them: the plan and the top-level results. Pure; tested on
//! captured output.

/// How one test case ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Pass,
    Fail,
    Skip(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub status: Status,
}

#[derive(Debug, Default, PartialEq)]
pub struct Ktap {
    /// The number of cases the plan line ("1..N") announced.
    pub plan: Option<usize>,
    pub cases: Vec<Case>,
    /// The reason of a "Bail out!" line.
    pub bailed: Option<String>,
}

impl Ktap {
    /// Cases the plan announced that never reported: a crash or a hang.
    pub fn missing(&self) -> usize {
        self.plan.map_or(0, |p| p.saturating_sub(self.cases.len()))
    }
}

/// Reads the top level of a KTAP or TAP stream; nested (indented) lines
/// and other output are ignored.
pub fn parse(text: &str) -> Ktap {
    let mut k = Ktap::default();
    for line in text.lines().map(|l| l.trim_end()) {
        if let Some(n) = line.strip_prefix("1..") {
            k.plan = n.trim().parse().ok();
        } else if let Some(reason) = line.strip_prefix("Bail out!") {
            k.bailed = Some(reason.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("not ok ") {
            k.cases.push(case(rest, false));
        } else if let Some(rest) = line.strip_prefix("ok ") {
            k.cases.push(case(rest, true));
        }
    }
    k
}

/// "3 name # SKIP why" or kselftest's "3 # SKIP name" after ok/not ok.
fn case(rest: &str, ok: bool) -> Case {
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit()).trim();
    let (name, directive) = match rest.split_once('#') {
        Some((n, d)) => (n.trim(), d.trim()),
        None => (rest, ""),
    };
    let skip = directive
        .get(..4)
        .is_some_and(|d| d.eq_ignore_ascii_case("skip"))
        .then(|| directive[4..].trim().to_string());
    let name = match (&skip, name.is_empty()) {
        // kselftest puts the name after the directive.
        (Some(reason), true) => reason.clone(),
        _ => name.to_string(),
    };
    let status = match skip {
        Some(reason) => Status::Skip(reason),
        None if ok => Status::Pass,
        None => Status::Fail,
    };
    Case { name, status }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kselftest_output() {
        let text = "Random seed: 0x6b8b4567\nTAP version 13\n1..3\n# kvm.hello_hypercall is Y\n\
                    ok 1 in-kernel handler\nok 2 # SKIP disabled handler\nnot ok 3 userspace exit\n";
        let k = parse(text);
        assert_eq!(k.plan, Some(3));
        assert_eq!(k.missing(), 0);
        assert_eq!(
            k.cases[0],
            Case {
                name: "in-kernel handler".into(),
                status: Status::Pass
            }
        );
        assert_eq!(
            k.cases[1],
            Case {
                name: "disabled handler".into(),
                status: Status::Skip("disabled handler".into())
            }
        );
        assert_eq!(k.cases[2].status, Status::Fail);
    }

    #[test]
    fn ktap_skip_and_nesting() {
        let text = "KTAP version 1\n1..2\n    KTAP version 1\n    ok 1 nested\n\
                    ok 1 real_mode\nok 2 cpl3 # SKIP no user mode\n";
        let k = parse(text);
        assert_eq!(k.cases.len(), 2);
        assert_eq!(
            k.cases[1],
            Case {
                name: "cpl3".into(),
                status: Status::Skip("no user mode".into())
            }
        );
    }

    #[test]
    fn a_crash_leaves_cases_missing() {
        let k = parse("1..5\nok 1 a\nok 2 b\n");
        assert_eq!(k.missing(), 3);
        assert_eq!(
            parse("Bail out! no /dev/kvm\n").bailed.as_deref(),
            Some("no /dev/kvm")
        );
    }
}
