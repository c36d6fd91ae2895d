//! What Bochs boots: an initramfs with the agent as /init and the programs
//! it runs, and a GRUB ISO around it and the host kernel.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::initramfs::{self, Entry};

/// The initramfs' name in the run directory and on the ISO.
pub const INITRD: &str = "l1-initramfs.cpio";

/// Where the test programs sit in the initramfs.
const BIN: &str = "bin";

/// L1's kernel command line. `hh_out=serial` tells the agent there is no
/// share (see proto::OUT_ENV); loglevel=5 keeps the boot's notes off the
/// console, whose every byte costs UART time, while warnings and splats
/// still show. A panic stops the run (see bochs::ended).
pub fn append(params: &[String]) -> String {
    let mut words = vec![
        "console=ttyS0".to_string(),
        "loglevel=5".into(),
        "panic=-1".into(),
        format!("{}=serial", proto::OUT_ENV),
    ];
    words.extend(params.iter().cloned());
    words.join(" ")
}

/// grub.cfg: straight to L1's kernel, no menu.
pub fn grub_cfg(append: &str) -> String {
    format!(
        "set timeout=0\nset default=0\nmenuentry \"hello-hypercall L1\" {{\n  \
         linux /boot/bzImage {append}\n  initrd /boot/{INITRD}\n}}\n"
    )
}

/// The shared libraries a dynamically linked program loads, from ldd's
/// output: each resolved path, the loader included; none for a static one.
pub fn libraries(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The tests the agent runs, in order: the KVM selftests, hcall's cases,
/// then a short fuzz whose seed makes a failure reproducible.
pub fn tests(selftests: &[String], fuzz_iterations: u32) -> Vec<proto::L1Test> {
    let mut argvs: Vec<Vec<String>> = selftests.iter().map(|t| vec![format!("/{BIN}/{t}")]).collect();
    let hcall = format!("/{BIN}/hcall");
    argvs.push(vec![hcall.clone()]);
    argvs.push(
        [
            &hcall,
            "fuzz",
            "--iterations",
            &fuzz_iterations.to_string(),
            "--seed",
            "1",
        ]
        .map(String::from)
        .to_vec(),
    );
    proto::L1Test::name_all(argvs)
}

/// Writes L1's initramfs into the run directory and returns the names of
/// the tests it runs, as their logs are named.
pub fn initramfs(
    sh: &Shell,
    bin: &Path,
    selftests: &[PathBuf],
    fuzz_iterations: u32,
    test_timeout: u64,
    run_dir: &Path,
) -> Result<Vec<String>> {
    let read = |p: &Path| fs_err::read(p).with_context(|| format!("read {}", p.display()));
    let agent = read(&bin.join("agent"))?;
    let hcall = read(&bin.join("hcall"))?;
    let mut programs: Vec<(String, Vec<u8>)> = vec![("hcall".into(), hcall)];
    // The selftests are linked against the C library: it and its loader
    // go in at the paths they were linked with.
    let mut libs: Vec<PathBuf> = Vec::new();
    for test in selftests {
        let name = test
            .file_name()
            .context("a selftest without a file name")?
            .to_string_lossy()
            .into_owned();
        programs.push((name, read(test)?));
        let ldd = cmd!(sh, "ldd {test}").quiet().ignore_status().read()?;
        for lib in libraries(&ldd) {
            if !libs.contains(&lib) {
                libs.push(lib);
            }
        }
    }
    let names: Vec<String> = selftests
        .iter()
        .filter_map(|t| Some(t.file_name()?.to_string_lossy().into_owned()))
        .collect();
    let tests = tests(&names, fuzz_iterations);
    let config = proto::AgentConfig {
        qemu: String::new(),
        bios: String::new(),
        guests: Vec::new(),
        l2_memory_mib: 0,
        l2_timeout_secs: 0,
        // One CPU: the only buffer.
        trace_buffer_kb: 4096,
        fallback_tsc_khz: None,
        l1_tests: tests.clone(),
        l1_extra_tests: Vec::new(),
        l1_test_timeout_secs: test_timeout,
        fault: None,
    };
    let config = serde_json::to_vec_pretty(&config)?;
    let lib_data: Vec<(String, Vec<u8>)> = libs
        .iter()
        .map(|l| {
            Ok((
                l.display().to_string().trim_start_matches('/').to_string(),
                read(l)?,
            ))
        })
        .collect::<Result<_>>()?;

    let mut dirs: Vec<String> = ["dev", "proc", "sys", "run", "tmp", BIN]
        .iter()
        .map(|d| d.to_string())
        .collect();
    for (path, _) in &lib_data {
        let mut parent = Path::new(path).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.display().to_string());
            parent = p.parent();
        }
        for d in chain.into_iter().rev() {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    let paths: Vec<String> = programs.iter().map(|(n, _)| format!("{BIN}/{n}")).collect();
    let mut entries: Vec<Entry> = dirs.iter().map(|d| Entry::Dir { path: d }).collect();
    entries.push(Entry::CharDev {
        path: "dev/console",
        major: 5,
        minor: 1,
    });
    entries.push(Entry::File {
        path: "init",
        mode: 0o755,
        data: &agent,
    });
    entries.push(Entry::File {
        path: proto::INITRAMFS_AGENT_CONFIG.trim_start_matches('/'),
        mode: 0o644,
        data: &config,
    });
    for ((_, data), path) in programs.iter().zip(&paths) {
        entries.push(Entry::File {
            path,
            mode: 0o755,
            data,
        });
    }
    for (path, data) in &lib_data {
        entries.push(Entry::File {
            path,
            mode: 0o755,
            data,
        });
    }
    let out = run_dir.join(INITRD);
    fs_err::write(&out, initramfs::newc(&entries)).with_context(|| format!("write {}", out.display()))?;
    Ok(tests.into_iter().map(|t| t.name).collect())
}

/// Builds the ISO that Bochs boots from the host kernel and the
/// initramfs, with `grub.cfg` from [`grub_cfg`]; returns its path.
pub fn iso(sh: &Shell, kernel: &Path, initrd: &Path, run_dir: &Path) -> Result<PathBuf> {
    let root = run_dir.join("iso");
    let boot = root.join("boot");
    fs_err::create_dir_all(boot.join("grub")).context("create the ISO's tree")?;
    fs_err::copy(kernel, boot.join("bzImage")).context("copy the host kernel into the ISO")?;
    fs_err::copy(initrd, boot.join(INITRD)).context("copy the initramfs into the ISO")?;
    let params = e2e_params();
    fs_err::write(boot.join("grub/grub.cfg"), grub_cfg(&append(&params))).context("write grub.cfg")?;
    let iso = run_dir.join("l1.iso");
    let log = run_dir.join("grub-mkrescue.log");
    let out = cmd!(sh, "grub-mkrescue -o {iso} {root}")
        .quiet()
        .ignore_status()
        .output()?;
    fs_err::write(&log, [out.stdout, out.stderr].concat()).context("write grub-mkrescue.log")?;
    if !out.status.success() {
        anyhow::bail!(
            "grub-mkrescue failed; see {} (needs grub-pc-bin, xorriso and mtools)",
            log.display()
        );
    }
    Ok(iso)
}

/// L1's parameters: the same opt-in as the QEMU run's; Bochs needs no TSC
/// hand-over (its TSC follows its instruction count).
fn e2e_params() -> Vec<String> {
    vec!["kvm.hello_hypercall=1".to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_from_ldd_output() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f67)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f675f506000)\n";
        assert_eq!(
            libraries(ldd),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(libraries("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn grub_boots_the_kernel_with_the_agent_on_serial() {
        let cfg = grub_cfg(&append(&e2e_params()));
        assert!(cfg.starts_with("set timeout=0\n"));
        assert!(cfg.contains(
            "linux /boot/bzImage console=ttyS0 loglevel=5 panic=-1 hh_out=serial kvm.hello_hypercall=1\n"
        ));
        assert!(cfg.contains("initrd /boot/l1-initramfs.cpio\n"));
    }

    #[test]
    fn tests_run_selftests_then_hcall() {
        let tests = tests(&["hello_hypercall_test".into()], 200);
        let argvs: Vec<String> = tests.iter().map(|t| t.argv.join(" ")).collect();
        assert_eq!(
            argvs,
            [
                "/bin/hello_hypercall_test",
                "/bin/hcall",
                "/bin/hcall fuzz --iterations 200 --seed 1"
            ]
        );
        let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["hello_hypercall_test", "hcall", "hcall-fuzz"]);
    }
}
