//! `cargo xtask patches --each`: the series is bisectable.
//!
//! For the base and every prefix 1..n of the series: the objects the series
//! can break build with the host config and with the guest config (the
//! E2E's fragments from harness/configs), with W=1 and, for the host, with
//! CONFIG_KVM_WERROR; the KVM selftests the series touches build against
//! the prefix's exported headers; and each patch passes checkpatch
//! --strict with the justification rule of `cargo xtask patches`.
//!
//! Cost. One source worktree per base (target/src/<base>-each) and one
//! build directory per (base, config) (target/kernels/<base>-each-<role>)
//! are walked from the base through the prefixes in order, so every step
//! is an incremental build of what its patch changed, and only the goals
//! of `targets::targets` are built, not vmlinux. A patch that touches no
//! kernel source (selftests, documentation) inherits the previous
//! prefix's build results. Every result is stored in
//! target/xtask/each/<base>/, keyed by the base, the digests of the
//! prefix's patches and the config, so a run where nothing changed builds
//! nothing, and editing patch 3 rebuilds prefixes 3..n only.
//!
//! Pre-existing warnings. W=1 shows warnings the base already has (6.12's
//! arch/x86/kernel has kernel-doc ones). They never fail the check: every
//! diagnostic is attributed to the build step that printed it (make
//! --output-sync keeps a recipe's output together) and normalised without
//! line numbers or paths, and a prefix fails only on diagnostics that the
//! same step did not print in the base build of the same goals
//! (`diag::new_since`). An incremental build only prints for what it
//! recompiles, so the build directory keeps what each step last printed
//! (hh-each-state.json) and a prefix is judged on all of it. With
//! KVM_WERROR an old warning is an error at the base too, and the base's
//! failing make is the reference as well: a prefix fails when make fails
//! and the base's did not, or on a new diagnostic.

mod checks;
mod diag;
mod kernel;
mod summary;
mod table;
mod targets;

use fs_err::File;
use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use self::diag::{ByStep, MAKE};
use self::kernel::attribute;
use self::table::{Outcome, Row, COLUMNS};
use self::targets::{Dropped, Targets};
use super::{am, checkout, checkpatch_one, hex, scratch, Series};
use crate::build::{self, Plan, Role};
use crate::flags::PatchesArgs;
use crate::source::{self, Source};
use crate::stage::{human, Progress, Stages};
use crate::{deps, kconfig, layout};

/// Part of every cache key: bump it when the rules below change, so that
/// results judged by old rules are not reused.
const RULES: &str = "each-v2";

const HOST: usize = 0;
const GUEST: usize = 1;
const SELFTESTS: usize = 2;
const CHECKPATCH: usize = 3;

/// The result of one check of one prefix, as stored in the cache.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Record {
    outcome: Outcome,
    /// The first new error or warning, or why the check failed.
    first: Option<String>,
    /// How many diagnostics are new since the base.
    new: usize,
    notes: Vec<String>,
    /// Everything the check's steps printed; the base's is the reference.
    diags: ByStep,
    make_ok: bool,
    seconds: f64,
}

impl Record {
    fn not_applicable(note: String) -> Record {
        Record {
            outcome: Outcome::NotApplicable,
            first: None,
            new: 0,
            notes: vec![note],
            diags: ByStep::new(),
            make_ok: true,
            seconds: 0.0,
        }
    }
}

/// What a build directory's steps last printed, kept beside them: an
/// incremental build prints nothing for what it does not recompile.
#[derive(Serialize, Deserialize, Default)]
struct DirState {
    /// Digest of the Kconfig files and fragments the .config was made from.
    kconfig: String,
    /// The requested options olddefconfig dropped from that .config.
    dropped: Vec<String>,
    /// Objects known to be part of this config's build.
    configured: BTreeSet<String>,
    steps: ByStep,
}

struct Config {
    plan: Plan,
    /// Digest of the fragments, the compiler and the flags.
    digest: String,
}

pub fn run(args: &PatchesArgs) -> Result<ExitCode> {
    let _lock = layout::lock()?;
    let started = Instant::now();
    let sh = Shell::new()?;
    let mut stages = Stages::default();
    stages.run("deps", |p| deps::ensure_for(&sh, &args.kernel, p))?;
    let source = stages.run("source", |p| source::prepare(&sh, &args.kernel, p))?;
    let series = Series::load(&layout::series_dir(args.kernel.kernel))?;
    let mut walk = Walk::new(&sh, &source, &series)?;
    let n = series.patches.len();
    for k in 0..=n {
        let name = if k == 0 {
            "base".to_string()
        } else {
            format!("prefix {k}/{n}")
        };
        stages.run(&name, |p| {
            let before = walk.cached;
            for column in [HOST, GUEST, SELFTESTS, CHECKPATCH] {
                walk.step(k, column, p)?;
            }
            if walk.cached - before == COLUMNS.len() {
                p.cached();
            }
            Ok(())
        })?;
    }
    let report = walk.report();
    print!("{report}");
    fs_err::write(walk.cache.join("table.txt"), &report).context("write table.txt")?;
    println!(
        "each on {}: {} ({} checks run, {} inherited from the prefix before, {} from {})",
        source.name,
        human(started.elapsed()),
        walk.ran,
        walk.inherited,
        walk.cached,
        walk.cache.display()
    );
    Ok(if walk.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

struct Walk<'a> {
    sh: &'a Shell,
    source: &'a Source,
    series: &'a Series,
    /// target/xtask/each/<base>: results, the log, the selftests' output.
    cache: PathBuf,
    /// The source worktree the builds read, at `at`.
    worktree: PathBuf,
    /// each.log, emptied when this run first writes to it, so that a run
    /// with everything cached keeps the last run's log.
    log: PathBuf,
    log_started: std::cell::Cell<bool>,
    /// The files each patch touches.
    touched: Vec<Vec<String>>,
    targets: Targets,
    keys: Keys,
    cover: String,
    configs: Vec<Config>,
    commits: Option<Vec<String>>,
    at: Option<usize>,
    results: Vec<[Option<Record>; 4]>,
    ran: usize,
    /// Checks of a patch that cannot change them, which take the previous prefix's result.
    inherited: usize,
    cached: usize,
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.len().to_le_bytes());
        h.update(p);
    }
    hex(&h.finalize())
}

/// What every stored result is keyed by.
struct Keys {
    /// One id per prefix, from [`prefix_ids`].
    prefixes: Vec<String>,
    /// Each patch's own digest.
    patches: Vec<String>,
    base: String,
    /// Digest of the files the whole series touches, which decide the goals.
    targets: String,
    /// [`Config::digest`] of the host and the guest.
    configs: [String; 2],
    compiler: String,
    /// Digest of the cover letter, which justifies checkpatch's warnings.
    cover: String,
}

impl Keys {
    /// The key of one check of prefix `k`. A build depends on the prefix,
    /// its config and the goals; the selftests on the prefix and the
    /// compiler; checkpatch on its patch and the cover letter only.
    fn key(&self, k: usize, column: usize) -> String {
        match column {
            HOST | GUEST => digest(&["build", &self.prefixes[k], &self.configs[column], &self.targets]),
            SELFTESTS => digest(&["selftests", &self.prefixes[k], &self.compiler, &self.targets]),
            _ => digest(&[
                RULES,
                "checkpatch",
                &self.base,
                k.checked_sub(1).map_or("", |i| &self.patches[i]),
                &self.cover,
            ]),
        }
    }
}

/// One id per prefix: the rules and the base, then each patch's digest
/// chained on, so that editing patch j changes the ids of prefixes j..n.
fn prefix_ids(base: &str, patch_digests: &[String]) -> Vec<String> {
    let mut ids = vec![digest(&[RULES, base])];
    for d in patch_digests {
        let last = ids.last().cloned().unwrap_or_default();
        ids.push(digest(&[&last, d]));
    }
    ids
}

fn jobs() -> String {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() + 1)
        .to_string()
}

impl<'a> Walk<'a> {
    fn new(sh: &'a Shell, source: &'a Source, series: &'a Series) -> Result<Walk<'a>> {
        let cache = layout::xtask().join("each").join(&source.name);
        fs_err::create_dir_all(&cache).context("create the --each cache")?;
        let log = cache.join("each.log");
        let mut touched = Vec::new();
        let mut patch_digests = Vec::new();
        for path in series.paths() {
            let text = fs_err::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
            touched.push(targets::touched(&text));
            patch_digests.push(digest(&[&text]));
        }
        let all: BTreeSet<String> = touched.iter().flatten().cloned().collect();
        let all: Vec<String> = all.into_iter().collect();
        let targets = targets::targets(&all);
        let cover = fs_err::read_to_string(series.dir.join("0000-cover-letter.patch"))
            .context("read the cover letter")?;
        let compiler = cmd!(sh, "gcc --version")
            .quiet()
            .read()
            .context("run gcc --version")?;
        let compiler = compiler.lines().next().unwrap_or_default().to_string();
        let configs = vec![
            Walk::config(sh, source, Role::Host, &cache, &compiler)?,
            Walk::config(sh, source, Role::Guest, &cache, &compiler)?,
        ];
        Ok(Walk {
            sh,
            source,
            series,
            worktree: layout::sources().join(format!("{}-each", source.name)),
            cache,
            log,
            log_started: std::cell::Cell::new(false),
            touched,
            targets,
            keys: Keys {
                prefixes: prefix_ids(&source.base, &patch_digests),
                patches: patch_digests,
                base: source.base.clone(),
                targets: digest(&[&all.join("\n")]),
                configs: [configs[HOST].digest.clone(), configs[GUEST].digest.clone()],
                compiler,
                cover: digest(&[&cover]),
            },
            cover,
            configs,
            commits: None,
            at: None,
            results: vec![[None, None, None, None]; series.patches.len() + 1],
            ran: 0,
            inherited: 0,
            cached: 0,
        })
    }

    /// The E2E's fragments for `role` (the host with the series' option),
    /// and for the host KVM_WERROR where the base has it. The guest builds
    /// no KVM, so the option means nothing there.
    fn config(sh: &Shell, source: &Source, role: Role, cache: &Path, compiler: &str) -> Result<Config> {
        let repo = &source.repo;
        let kvm_kconfig = format!("{}:arch/x86/kvm/Kconfig", source.base);
        let text = cmd!(sh, "git -C {repo} show {kvm_kconfig}")
            .quiet()
            .read()
            .unwrap_or_default();
        let mut fragments = build::fragments(role, true, &text);
        if role == Role::Host && kconfig::defines(&text, "KVM_WERROR") {
            let werror = cache.join("kvm-werror.config");
            fs_err::write(
                &werror,
                "# Added by `cargo xtask patches --each`: KVM's warnings are errors.\nCONFIG_KVM_WERROR=y\n",
            )
            .context("write kvm-werror.config")?;
            fragments.push(werror);
        }
        let mut parts = vec![
            RULES.to_string(),
            role.name().to_string(),
            compiler.to_string(),
            "W=1".into(),
        ];
        for f in &fragments {
            parts.push(fs_err::read_to_string(f).with_context(|| format!("read {}", f.display()))?);
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let dir = layout::kernels().join(format!("{}-each-{}", source.name, role.name()));
        Ok(Config {
            plan: Plan {
                role,
                name: role.name().into(),
                src: layout::sources().join(format!("{}-each", source.name)),
                dir,
                fragments,
                key: String::new(),
            },
            digest: digest(&parts),
        })
    }

    /// each.log, emptied first if this run has not written to it yet.
    fn log(&self) -> Result<&Path> {
        if !self.log_started.replace(true) {
            File::create(&self.log).context("create each.log")?;
        }
        Ok(&self.log)
    }

    /// Runs (or reads from the cache) one check of prefix `k`.
    fn step(&mut self, k: usize, column: usize, progress: &Progress) -> Result<()> {
        let file = self.cache.join(format!("{}.json", self.keys.key(k, column)));
        if let Some(record) = fs_err::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        {
            self.cached += 1;
            self.results[k][column] = Some(record);
            return Ok(());
        }
        let inherit = k > 0
            && match column {
                HOST | GUEST => !targets::affects_kernel(&self.touched[k - 1]),
                SELFTESTS => !targets::affects_selftests(&self.touched[k - 1]),
                _ => false,
            };
        let record = if inherit {
            self.inherited += 1;
            let mut r = self.results[k - 1][column]
                .clone()
                .context("the previous prefix's result")?;
            if r.outcome == Outcome::BaseBroken {
                r.outcome = Outcome::Ok;
            }
            r.seconds = 0.0;
            r
        } else {
            self.ran += 1;
            let started = Instant::now();
            let mut r = match column {
                HOST | GUEST => self.build(k, column, progress)?,
                SELFTESTS => self.selftests(k, progress)?,
                _ => self.checkpatch(k, progress)?,
            };
            r.seconds = started.elapsed().as_secs_f64();
            r
        };
        fs_err::write(&file, serde_json::to_vec_pretty(&record)?).context("store an --each result")?;
        self.results[k][column] = Some(record);
        Ok(())
    }

    /// The base and the series' commits, applied once in the scratch
    /// worktree; only needed when something must be built.
    fn commits(&mut self, progress: &Progress) -> Result<Vec<String>> {
        if self.commits.is_none() {
            let scratch = scratch(self.source);
            let mut commits = vec![self.source.base.clone()];
            commits.extend(am(self.sh, self.source, self.series, &scratch, progress)?);
            self.commits = Some(commits);
        }
        Ok(self.commits.clone().unwrap_or_default())
    }

    /// Puts the build worktree at prefix `k`. A checkout rewrites only the
    /// files that differ, so make rebuilds only what the patch changed.
    fn goto(&mut self, k: usize, progress: &Progress) -> Result<()> {
        if self.at != Some(k) {
            let commits = self.commits(progress)?;
            progress.say(format!("check out prefix {k}"));
            checkout(self.sh, self.source, &self.worktree, &commits[k], progress)?;
            self.at = Some(k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_what_they_depend_on() {
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        let keys = |patches: &[&str], host: &str, cover: &str| {
            let patches: Vec<String> = patches.iter().map(|p| p.to_string()).collect();
            Keys {
                prefixes: prefix_ids("base", &patches),
                patches,
                base: "base".into(),
                targets: "targets".into(),
                configs: [host.into(), "guest".into()],
                compiler: "gcc".into(),
                cover: cover.into(),
            }
        };
        let all = |k: &Keys| -> Vec<Vec<String>> {
            (0..=3).map(|p| (0..4).map(|c| k.key(p, c)).collect()).collect()
        };
        let before = all(&keys(&["p1", "p2", "p3"], "host", "cover"));
        // Editing patch 2 changes prefixes 2 and 3, and patch 2's checkpatch only.
        let edited = all(&keys(&["p1", "p2'", "p3"], "host", "cover"));
        for k in 0..=3 {
            for c in [HOST, GUEST, SELFTESTS] {
                assert_eq!(before[k][c] == edited[k][c], k < 2, "prefix {k}, column {c}");
            }
            assert_eq!(
                before[k][CHECKPATCH] == edited[k][CHECKPATCH],
                k != 2,
                "checkpatch {k}"
            );
        }
        // The host config changes the host builds only; the cover letter, checkpatch only.
        let host = all(&keys(&["p1", "p2", "p3"], "host'", "cover"));
        let cover = all(&keys(&["p1", "p2", "p3"], "host", "cover'"));
        for k in 0..=3 {
            assert_ne!(before[k][HOST], host[k][HOST]);
            assert_eq!(before[k][GUEST], host[k][GUEST]);
            assert_eq!(before[k][HOST], cover[k][HOST]);
            assert_eq!(before[k][SELFTESTS], cover[k][SELFTESTS]);
            assert_ne!(before[k][CHECKPATCH], cover[k][CHECKPATCH]);
        }
        // Every check of every prefix has its own key.
        let mut flat: Vec<&String> = before.iter().flatten().collect();
        flat.sort();
        flat.dedup();
        assert_eq!(flat.len(), 16);
    }
}
