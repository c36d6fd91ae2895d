//! What a series can break, from the files it touches: the make goals of
//! each build, and which prefixes need a build at all.

use std::collections::BTreeSet;

/// The files a patch touches, from its "diff --git a/X b/Y" lines (both
/// names, so a rename counts on both sides).
pub fn touched(patch: &str) -> Vec<String> {
    let mut files = BTreeSet::new();
    for line in patch.lines() {
        if let Some(rest) = line.strip_prefix("diff --git a/") {
            if let Some((a, b)) = rest.split_once(" b/") {
                files.insert(a.to_string());
                files.insert(b.to_string());
            }
        }
    }
    files.into_iter().collect()
}

/// Make goals for the files the whole series touches. Every prefix, the
/// base included, builds the same goals (those that exist in its tree),
/// so each is compared with the base like for like.
#[derive(Debug, Default, PartialEq)]
pub struct Targets {
    /// Objects of touched C and assembly files: "kernel/sys_ni.o".
    pub objects: Vec<String>,
    /// Directories, as Kbuild goals ("arch/x86/kvm/"), whose private
    /// header, Kconfig or Makefile the series touches: everything in them
    /// may include or depend on it.
    pub dirs: Vec<String>,
    /// KVM selftests whose source the series touches, relative to
    /// tools/testing/selftests/kvm: "x86_64/hello_hypercall_test".
    pub selftests: Vec<String>,
}

const SELFTESTS: &str = "tools/testing/selftests/kvm/";

/// Sorts the touched files into goals. Headers under include/ and
/// arch/*/include/ are everybody's: the touched objects that include them
/// are built, and the rest of the tree is left to the E2E's full build of
/// the whole series; a global header would otherwise mean building most
/// of the kernel at every prefix. Documentation and tools other than the
/// KVM selftests build nothing.
pub fn targets(files: &[String]) -> Targets {
    let mut objects = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    let mut selftests = BTreeSet::new();
    for file in files {
        let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
        if let Some(test) = file.strip_prefix(SELFTESTS) {
            let library = test.starts_with("lib/") || test.starts_with("include/");
            if let (false, Some(bin)) = (library, test.strip_suffix(".c")) {
                selftests.insert(bin.to_string());
            }
            continue;
        }
        let outside = [
            "tools/",
            "Documentation/",
            "scripts/",
            "samples/",
            "usr/",
            "LICENSES/",
        ]
        .iter()
        .any(|p| file.starts_with(p));
        if outside || dir.is_empty() {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".c").or_else(|| name.strip_suffix(".S")) {
            objects.insert(format!("{dir}/{stem}.o"));
        } else if (name.ends_with(".h") && !is_global_header(file))
            || name.starts_with("Kconfig")
            || name == "Makefile"
            || name == "Kbuild"
        {
            dirs.insert(format!("{dir}/"));
        }
    }
    // An object inside a directory goal is built by it anyway.
    let objects = objects
        .into_iter()
        .filter(|o| !dirs.iter().any(|d| o.starts_with(d.as_str())))
        .collect();
    Targets {
        objects,
        dirs: dirs.into_iter().collect(),
        selftests: selftests.into_iter().collect(),
    }
}

fn is_global_header(file: &str) -> bool {
    file.starts_with("include/")
        || file
            .strip_prefix("arch/")
            .and_then(|r| r.split_once('/'))
            .is_some_and(|(_, r)| r.starts_with("include/"))
}

/// Whether a patch can change the kernel build: anything outside tools/
/// and Documentation/. A prefix whose patch does not inherits the previous
/// prefix's build results instead of running make.
pub fn affects_kernel(files: &[String]) -> bool {
    files.iter().any(|f| {
        !f.starts_with("tools/") && !f.starts_with("Documentation/") && !f.starts_with("MAINTAINERS")
    })
}

/// Whether a patch can change what the selftests build: tools/ itself or
/// the UAPI headers the tests are built against, which include the
/// syscall numbers generated from the syscall tables.
pub fn affects_selftests(files: &[String]) -> bool {
    files.iter().any(|f| {
        f.starts_with("tools/")
            || f.ends_with(".tbl")
            || f.starts_with("include/uapi/")
            || f.strip_prefix("arch/")
                .and_then(|r| r.split_once('/'))
                .is_some_and(|(_, r)| r.starts_with("include/uapi/"))
    })
}

/// The lines of `git ls-tree -r` that decide a .config: every Kconfig
/// file, the config fragments tinyconfig merges, and Kconfig itself.
pub fn kconfig_inputs(ls_tree: &str) -> String {
    ls_tree
        .lines()
        .filter(|l| {
            let path = l.split_once('\t').map_or("", |(_, p)| p);
            let name = path.rsplit('/').next().unwrap_or(path);
            name.starts_with("Kconfig") || path.contains("/configs/") || path.starts_with("scripts/kconfig/")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How a requested option that olddefconfig dropped is judged.
#[derive(Debug, PartialEq)]
pub enum Dropped {
    /// Worth saying, not a failure.
    Note(String),
    Failure(String),
}

/// Judges one of `kconfig::missing`'s lines ("CONFIG_X=y (got: not set)").
/// An option this prefix does not define yet (the series adds it later)
/// is a note; so is KVM_WERROR, which the base may refuse (it depends on
/// !KASAN and EXPERT or WERROR); any other option that exists but did not
/// survive has unmet dependencies, which is a failure.
pub fn judge_dropped(missing: &str, defined: bool) -> Dropped {
    let name = missing.split('=').next().unwrap_or(missing);
    if name == "CONFIG_KVM_WERROR" {
        Dropped::Note(format!(
            "olddefconfig dropped {missing}: KVM is built without -Werror (new W=1 warnings still fail)"
        ))
    } else if !defined {
        Dropped::Note(format!("{name} is not in this tree yet"))
    } else {
        Dropped::Failure(format!("olddefconfig dropped {missing}: unmet dependencies"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The files patches/v6.12 touches.
    fn series_612() -> Vec<String> {
        files(&[
            "Documentation/admin-guide/kernel-parameters.txt",
            "Documentation/virt/kvm/api.rst",
            "arch/x86/entry/syscalls/syscall_64.tbl",
            "arch/x86/include/uapi/asm/kvm_para.h",
            "arch/x86/kernel/kvm.c",
            "arch/x86/kvm/Kconfig",
            "arch/x86/kvm/cpuid.c",
            "arch/x86/kvm/x86.c",
            "arch/x86/kvm/x86.h",
            "include/linux/syscalls.h",
            "include/uapi/linux/kvm_para.h",
            "kernel/sys_ni.c",
            "tools/testing/selftests/kvm/Makefile",
            "tools/testing/selftests/kvm/include/x86_64/processor.h",
            "tools/testing/selftests/kvm/x86_64/hello_hypercall_test.c",
            "tools/testing/selftests/kvm/x86_64/kvm_pv_test.c",
        ])
    }

    #[test]
    fn goals_of_the_612_series() {
        assert_eq!(
            targets(&series_612()),
            Targets {
                objects: files(&["arch/x86/kernel/kvm.o", "kernel/sys_ni.o"]),
                dirs: files(&["arch/x86/kvm/"]),
                selftests: files(&["x86_64/hello_hypercall_test", "x86_64/kvm_pv_test"]),
            }
        );
    }

    #[test]
    fn files_from_diff_headers() {
        let patch = "Subject: x\n---\ndiff --git a/kernel/sys_ni.c b/kernel/sys_ni.c\nindex 1..2\n\
                     diff --git a/old/name.c b/new/name.c\nsimilarity index 90%\n";
        assert_eq!(
            touched(patch),
            files(&["kernel/sys_ni.c", "new/name.c", "old/name.c"])
        );
    }

    #[test]
    fn which_prefixes_build() {
        assert!(affects_kernel(&files(&[
            "Documentation/a.rst",
            "kernel/sys_ni.c"
        ])));
        assert!(!affects_kernel(&files(&[
            "Documentation/a.rst",
            "tools/testing/selftests/kvm/x86_64/kvm_pv_test.c"
        ])));
        assert!(affects_selftests(&files(&[
            "arch/x86/include/uapi/asm/kvm_para.h"
        ])));
        assert!(affects_selftests(&files(&["include/uapi/linux/kvm_para.h"])));
        assert!(affects_selftests(&files(&[
            "arch/x86/entry/syscalls/syscall_64.tbl"
        ])));
        assert!(!affects_selftests(&files(&[
            "arch/x86/kvm/x86.c",
            "include/linux/syscalls.h"
        ])));
    }

    #[test]
    fn kconfig_inputs_are_kconfig_files() {
        let ls = "100644 blob aa\tarch/x86/kvm/Kconfig\n100644 blob bb\tarch/x86/kvm/x86.c\n\
                  100644 blob cc\tkernel/configs/tiny.config\n100644 blob dd\tarch/x86/Kconfig.cpu\n";
        assert_eq!(
            kconfig_inputs(ls),
            "100644 blob aa\tarch/x86/kvm/Kconfig\n100644 blob cc\tkernel/configs/tiny.config\n\
             100644 blob dd\tarch/x86/Kconfig.cpu"
        );
    }

    #[test]
    fn dropped_options() {
        assert_eq!(
            judge_dropped("CONFIG_KVM_HELLO_HYPERCALL=y (got: not set)", false),
            Dropped::Note("CONFIG_KVM_HELLO_HYPERCALL is not in this tree yet".into())
        );
        assert!(matches!(
            judge_dropped("CONFIG_KVM_HELLO_HYPERCALL=y (got: not set)", true),
            Dropped::Failure(_)
        ));
        assert!(matches!(
            judge_dropped("CONFIG_KVM_WERROR=y (got: not set)", true),
            Dropped::Note(_)
        ));
    }
}
