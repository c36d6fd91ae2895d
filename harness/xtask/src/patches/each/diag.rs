//! Diagnostics of a build, attributed to the step that printed them and
//! normalised so that one warning compares equal at every prefix of the
//! series, wherever the lines around it moved.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One warning or error. `key` compares across prefixes (no line numbers,
/// no absolute paths); `line` is what the tool printed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub key: String,
    pub line: String,
}

/// Diagnostics per build step: "arch/x86/kvm/x86.o", "scripts/checksyscalls.sh",
/// and [`MAKE`] for make's own errors.
pub type ByStep = BTreeMap<String, Vec<Diag>>;

/// The step make's own "***" errors belong to, whichever recipe came last.
pub const MAKE: &str = "(make)";

/// Splits the output of `make --output-sync=target` into steps. Kbuild
/// announces each step with a line such as "  CC      arch/x86/kvm/x86.o",
/// and output-sync prints everything that step's recipe said (the compiler,
/// kernel-doc under W=1, objtool) right after it, even under -j. `strip`
/// are the path prefixes to remove: the source tree and the build dir.
pub fn attribute(output: &str, strip: &[&str]) -> ByStep {
    let mut steps = ByStep::new();
    let mut current = MAKE.to_string();
    for line in output.lines() {
        if let Some(step) = kbuild_step(line) {
            current = strip_paths(step, strip);
            steps.entry(current.clone()).or_default();
            continue;
        }
        if let Some(key) = normalize(line, strip) {
            let step = if is_make_error(line) { MAKE } else { &current };
            steps.entry(step.to_string()).or_default().push(Diag {
                key,
                line: line.to_string(),
            });
        }
    }
    steps
}

/// The target of a Kbuild progress line ("  CC [M]  fs/foo.o" gives
/// "fs/foo.o"), or `None` for any other line. Compiler context lines such
/// as "  112 | static int x;" are not steps: a tag starts with a capital.
pub fn kbuild_step(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("  ")?;
    let mut words = rest.split_whitespace();
    let tag = words.next()?;
    let tag_ok = tag.len() <= 8
        && tag.starts_with(|c: char| c.is_ascii_uppercase())
        && tag
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !tag_ok {
        return None;
    }
    let mut target = words.next()?;
    if target == "[M]" {
        target = words.next()?;
    }
    words.next().is_none().then_some(target)
}

/// The objects `make -n` would compile: its output echoes each Kbuild
/// step ("echo '  CC      kernel/sys_ni.o';") without running it.
pub fn dry_run_objects(output: &str) -> BTreeSet<String> {
    output
        .split("echo '")
        .skip(1)
        .filter_map(|rest| kbuild_step(rest.split('\'').next()?))
        .filter(|t| t.ends_with(".o"))
        .map(String::from)
        .collect()
}

fn is_make_error(line: &str) -> bool {
    line.starts_with("make") && line.contains(": *** ")
}

/// A diagnostic's comparable form, or `None` for lines that are not one
/// (progress, notes, "In function" context, the "treated as errors" tally).
pub fn normalize(line: &str, strip: &[&str]) -> Option<String> {
    let trimmed = line.trim();
    if trimmed.starts_with("cc1: ") && trimmed.contains("treated as errors") {
        return None;
    }
    let diagnostic = trimmed.contains(": warning: ")
        || trimmed.contains(": error: ")
        || trimmed.contains(": fatal error: ")
        || ["warning: ", "error: ", "WARNING: ", "ERROR: "]
            .iter()
            .any(|p| trimmed.starts_with(p));
    let text = if is_make_error(trimmed) {
        // "make[4]: *** [.../Makefile.build:229: x.o] Error 1": the
        // recursion depth and the Makefile's line say nothing.
        trimmed.split_once(": *** ")?.1.to_string()
    } else if diagnostic {
        trimmed.to_string()
    } else {
        return None;
    };
    let text = strip_paths(&text, strip);
    let text = drop_numbers(&text);
    // KVM_WERROR turns KVM's warnings into errors; either way it is the
    // same finding.
    Some(
        text.replace("[-Werror=", "[-W")
            .replace(": error: ", ": warning: "),
    )
}

fn strip_paths(text: &str, strip: &[&str]) -> String {
    let mut text = text.to_string();
    for prefix in strip {
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            text = text.replace(&format!("{prefix}/"), "");
        }
    }
    text
}

/// Drops ":123" and ":123:45" after a file name and "+0x1f" after a
/// symbol (objtool), so that a finding survives lines moving around it.
fn drop_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        if c == ':' && digits(&rest[1..]) > 0 {
            rest = &rest[1 + digits(&rest[1..])..];
            continue;
        }
        if let Some(hex) = rest.strip_prefix("+0x") {
            let n = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
            if n > 0 {
                rest = &hex[n..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// What `now` says that `base` did not say for the same step. Counted: a
/// second copy of a warning the base has once is new. This is the whole
/// rule for pre-existing warnings: a prefix is only blamed for what the
/// base build of the same objects did not print.
pub fn new_since(base: &ByStep, now: &ByStep) -> Vec<Diag> {
    let mut new = Vec::new();
    for (step, diags) in now {
        let mut left: BTreeMap<&str, usize> = BTreeMap::new();
        for d in base.get(step).into_iter().flatten() {
            *left.entry(d.key.as_str()).or_default() += 1;
        }
        for d in diags {
            match left.get_mut(d.key.as_str()) {
                Some(n) if *n > 0 => *n -= 1,
                _ => new.push(d.clone()),
            }
        }
    }
    new
}

/// The line to show for a failure: a compiler's error or warning before
/// make's summary of it.
pub fn first_line(diags: &[Diag]) -> Option<&str> {
    diags
        .iter()
        .find(|d| !is_make_error(&d.line))
        .or(diags.first())
        .map(|d| d.line.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "/t/src/6.12-each";
    const OUT: &str = "/t/kernels/6.12-each-host";

    /// Captured from `make -Otarget -j3 W=1` on 6.12 (paths shortened).
    const BUILD: &str = r"
  CALL    /t/src/6.12-each/scripts/checksyscalls.sh
  CC      kernel/sys_ni.o
  CC      arch/x86/entry/common.o
/t/src/6.12-each/arch/x86/entry/common.c:206: warning: Function parameter or struct member 'regs' not described in 'do_int80_emulation'
  CC      arch/x86/kvm/x86.o
/t/src/6.12-each/arch/x86/kvm/x86.c: In function ‘kvm_hello’:
/t/src/6.12-each/arch/x86/kvm/x86.c:9712:13: error: unused variable ‘n’ [-Werror=unused-variable]
 9712 |         int n;
      |             ^
cc1: all warnings being treated as errors
make[5]: *** [/t/src/6.12-each/scripts/Makefile.build:229: arch/x86/kvm/x86.o] Error 1
  CC [M]  arch/x86/kvm/kvm-amd.o
";

    #[test]
    fn output_is_split_into_steps() {
        let steps = attribute(BUILD, &[SRC, OUT]);
        let keys = |s: &str| steps[s].iter().map(|d| d.key.as_str()).collect::<Vec<_>>();
        assert_eq!(
            steps.keys().collect::<Vec<_>>(),
            vec![
                MAKE,
                "arch/x86/entry/common.o",
                "arch/x86/kvm/kvm-amd.o",
                "arch/x86/kvm/x86.o",
                "kernel/sys_ni.o",
                "scripts/checksyscalls.sh"
            ]
        );
        assert_eq!(
            keys("arch/x86/entry/common.o"),
            vec![
                "arch/x86/entry/common.c: warning: Function parameter or struct member 'regs' not described in 'do_int80_emulation'"
            ]
        );
        assert_eq!(
            keys("arch/x86/kvm/x86.o"),
            vec!["arch/x86/kvm/x86.c: warning: unused variable ‘n’ [-Wunused-variable]"]
        );
        assert_eq!(
            keys(MAKE),
            vec!["[scripts/Makefile.build: arch/x86/kvm/x86.o] Error 1"]
        );
        assert!(steps["kernel/sys_ni.o"].is_empty());
    }

    #[test]
    fn steps_and_other_lines() {
        assert_eq!(
            kbuild_step("  CC      arch/x86/kvm/x86.o"),
            Some("arch/x86/kvm/x86.o")
        );
        assert_eq!(
            kbuild_step("  LD [M]  arch/x86/kvm/kvm.ko"),
            Some("arch/x86/kvm/kvm.ko")
        );
        assert_eq!(kbuild_step(" 9712 |         int n;"), None);
        assert_eq!(kbuild_step("  112 | static bool x;"), None);
        assert_eq!(kbuild_step("      |             ^"), None);
        assert_eq!(kbuild_step("  Hello World and more"), None);
    }

    #[test]
    fn numbers_and_offsets_do_not_count() {
        assert_eq!(
            normalize(
                "arch/x86/kvm/x86.o: warning: objtool: kvm_hello+0x1a: call to foo() leaves .noinstr.text section",
                &[]
            )
            .unwrap(),
            "arch/x86/kvm/x86.o: warning: objtool: kvm_hello: call to foo() leaves .noinstr.text section"
        );
        assert_eq!(
            normalize("/t/src/6.12-each/a.c:1:2: warning: x [-Wx]", &[SRC]),
            normalize("/t/src/6.12-each/a.c:30:7: warning: x [-Wx]", &[SRC])
        );
        assert_eq!(normalize("  CC      a.o", &[]), None);
        assert_eq!(normalize("/t/a.c:3:1: note: declared here", &[]), None);
        assert_eq!(normalize("cc1: some warnings being treated as errors", &[]), None);
        assert_eq!(
            normalize("WARNING: modpost: missing MODULE_DESCRIPTION() in x.o", &[]).unwrap(),
            "WARNING: modpost: missing MODULE_DESCRIPTION() in x.o"
        );
    }

    fn step(name: &str, keys: &[&str]) -> ByStep {
        let diags = keys
            .iter()
            .map(|k| Diag {
                key: k.to_string(),
                line: format!("{k} (as printed)"),
            })
            .collect();
        ByStep::from([(name.to_string(), diags)])
    }

    #[test]
    fn only_what_the_base_did_not_say_is_new() {
        let base = step("a.o", &["a.c: warning: old"]);
        assert!(new_since(&base, &step("a.o", &["a.c: warning: old"])).is_empty());
        // Moved to another line, same key: still old.
        let now = step("a.o", &["a.c: warning: old", "a.c: warning: new"]);
        assert_eq!(
            new_since(&base, &now)
                .iter()
                .map(|d| d.key.as_str())
                .collect::<Vec<_>>(),
            vec!["a.c: warning: new"]
        );
        // A second copy of an old warning is new.
        assert_eq!(
            new_since(&base, &step("a.o", &["a.c: warning: old", "a.c: warning: old"])).len(),
            1
        );
        // The same warning from an object the base did not build is new.
        assert_eq!(new_since(&base, &step("b.o", &["a.c: warning: old"])).len(), 1);
        // Gone warnings are fine.
        assert!(new_since(&base, &step("a.o", &[])).is_empty());
    }

    #[test]
    fn dry_run_lists_compiled_objects() {
        let out = "set -e;  echo '  CC      arch/x86/kernel/fpu/init.o';   trap 'rm -f arch/x86/kernel/fpu/init.o' HUP\n\
                   set -e;  echo '  CC [M]  arch/x86/kvm/x86.o'; gcc\n\
                   set -e;  echo '  AR      kernel/built-in.a'; ar\n";
        assert_eq!(
            dry_run_objects(out).into_iter().collect::<Vec<_>>(),
            vec!["arch/x86/kernel/fpu/init.o", "arch/x86/kvm/x86.o"]
        );
    }

    #[test]
    fn compiler_lines_come_before_make_lines() {
        let diags = attribute(BUILD, &[SRC, OUT]);
        let all: Vec<Diag> = diags.values().flatten().cloned().collect();
        assert_eq!(
            first_line(&all),
            Some("/t/src/6.12-each/arch/x86/entry/common.c:206: warning: Function parameter or struct member 'regs' not described in 'do_int80_emulation'")
        );
    }
}
