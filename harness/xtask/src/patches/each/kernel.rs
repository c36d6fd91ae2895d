//! Kernel builds of one prefix with one config, and how their output is
//! judged against the base's.

use super::*;

impl Walk<'_> {
    /// Runs make in the worktree with `dir` as its output directory.
    pub(super) fn make(&self, dir: &Path, args: &[&str], progress: &Progress) -> Result<(bool, String)> {
        let mut all = vec![
            "-C".to_string(),
            self.worktree.display().to_string(),
            format!("O={}", dir.display()),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        self.run_make(&all, progress)
    }

    /// Runs make with `args`. The output goes to one file for both
    /// streams, which is what lets make's --output-sync keep a recipe's
    /// lines together; it is then appended to each.log. Returns whether
    /// make succeeded, and what it printed.
    pub(super) fn run_make(&self, args: &[String], progress: &Progress) -> Result<(bool, String)> {
        let out_path = self.cache.join("make.out");
        let out = File::create(&out_path).context("create make.out")?;
        let mut child = Command::new("make")
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?.into_file())
            .stderr(out.into_file())
            .spawn()
            .context("start make")?;
        let status = follow(&mut child, &out_path, progress)?;
        let text = String::from_utf8_lossy(&fs_err::read(&out_path)?).into_owned();
        let mut log = File::options().append(true).open(self.log()?)?;
        std::io::Write::write_all(
            &mut log,
            format!("=== make {} ({status})\n{text}", args.join(" ")).as_bytes(),
        )?;
        Ok((status.success(), text))
    }

    /// A host or guest build of prefix `k`.
    pub(super) fn build(&mut self, k: usize, column: usize, progress: &Progress) -> Result<Record> {
        self.goto(k, progress)?;
        let role = self.configs[column].plan.role.name();
        let dir = self.configs[column].plan.dir.clone();
        let state_file = dir.join("hh-each-state.json");
        let mut state = match fs_err::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<DirState>(&b).ok())
        {
            Some(state) => state,
            None => {
                // Objects whose output nobody kept cannot be judged:
                // start the directory over.
                if dir.exists() {
                    progress.say(format!("{role}: start {} over", dir.display()));
                    fs_err::remove_dir_all(&dir).context("remove a build directory without its state")?;
                }
                DirState::default()
            }
        };
        fs_err::create_dir_all(&dir)?;

        let kconfig = self.kconfig_digest(k, column)?;
        if state.kconfig != kconfig || !dir.join(".config").exists() {
            state.dropped =
                build::configure_keeping(self.sh, &self.configs[column].plan, self.log()?, progress)
                    .with_context(|| format!("configure the {role} kernel"))?;
            state.kconfig = kconfig;
        }
        let mut notes = Vec::new();
        let mut failures = Vec::new();
        for missing in &state.dropped {
            let name = missing.split('=').next().unwrap_or_default();
            match targets::judge_dropped(missing, self.defines(name)?) {
                Dropped::Note(n) => notes.push(n),
                Dropped::Failure(f) => failures.push(f),
            }
        }

        // From here on the directory changes under the state: without the
        // file, an interrupted run starts the directory over.
        let _ = fs_err::remove_file(&state_file);
        let jobs = jobs();
        if state.steps.is_empty() {
            progress.say(format!("{role}: make prepare"));
            let (_, out) = self.make(
                &dir,
                &["-Otarget", &format!("-j{jobs}"), "W=1", "prepare"],
                progress,
            )?;
            state.steps.extend(attribute(&out, &[&self.worktree, &dir]));
        }
        let goals = self.goals(&dir, &mut state, &mut notes, progress)?;
        if goals.is_empty() {
            write_state(&state_file, &state)?;
            let mut r = Record::not_applicable(format!(
                "nothing the series touches is built by the {role} config"
            ));
            r.notes.extend(notes);
            return Ok(r);
        }
        progress.say(format!("{role}: make W=1 {}", goals.join(" ")));
        let mut args = vec![
            "-k".to_string(),
            "-Otarget".into(),
            format!("-j{jobs}"),
            "W=1".into(),
        ];
        args.extend(goals.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (make_ok, out) = self.make(&dir, &args, progress)?;
        let mut steps = attribute(&out, &[&self.worktree, &dir]);
        // make's own errors belong to this build only.
        state
            .steps
            .insert(MAKE.into(), steps.remove(MAKE).unwrap_or_default());
        state.steps.extend(steps);
        write_state(&state_file, &state)?;

        let diags: ByStep = state
            .steps
            .iter()
            .filter(|(step, _)| in_scope(step, &goals))
            .map(|(s, d)| (s.clone(), d.clone()))
            .collect();
        Ok(self.judge(k, column, diags, make_ok, &out, notes, failures))
    }

    /// The goals of this config at the worktree's prefix: the series'
    /// directories, and those of its objects that the config builds.
    /// Kbuild compiles a named object even when the config leaves it out,
    /// so the objects come from `make -n` of their directories, which
    /// lists what the config would compile. An object already built and up
    /// to date is not listed again: once seen, it stays in the state.
    pub(super) fn goals(
        &self,
        dir: &Path,
        state: &mut DirState,
        notes: &mut Vec<String>,
        progress: &Progress,
    ) -> Result<Vec<String>> {
        let role = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let objects: Vec<&String> = self
            .targets
            .objects
            .iter()
            .filter(|o| {
                let stem = o.trim_end_matches(".o");
                self.worktree.join(format!("{stem}.c")).exists()
                    || self.worktree.join(format!("{stem}.S")).exists()
            })
            .collect();
        let dirs: BTreeSet<String> = objects
            .iter()
            .map(|o| format!("{}/", o.rsplit_once('/').map_or("", |(d, _)| d)))
            .collect();
        let listed = if dirs.is_empty() {
            BTreeSet::new()
        } else {
            progress.say(format!(
                "{role}: make -n {}",
                dirs.iter().cloned().collect::<Vec<_>>().join(" ")
            ));
            let mut args = vec!["-n", "W=1"];
            args.extend(dirs.iter().map(String::as_str));
            let (_, out) = self.make(dir, &args, progress)?;
            diag::dry_run_objects(&out)
        };
        let mut goals = Vec::new();
        for o in objects {
            if listed.contains(o) || (state.configured.contains(o) && dir.join(o).exists()) {
                state.configured.insert(o.clone());
                goals.push(o.clone());
            } else {
                state.configured.remove(o);
                notes.push(format!("{o} is not part of this config"));
            }
        }
        for d in &self.targets.dirs {
            let src = self.worktree.join(d);
            if src.join("Makefile").exists() || src.join("Kbuild").exists() {
                goals.push(d.clone());
            }
        }
        Ok(goals)
    }

    /// Turns what a check printed into its record: the base is the
    /// reference; a prefix fails on what the base did not print, or when
    /// its make fails and the base's did not.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn judge(
        &self,
        k: usize,
        column: usize,
        diags: ByStep,
        make_ok: bool,
        output: &str,
        notes: Vec<String>,
        failures: Vec<String>,
    ) -> Record {
        let failed_line = || {
            output
                .lines()
                .find(|l| l.contains("error") || l.contains("***"))
                .map(String::from)
        };
        let (outcome, first, new) = if k == 0 {
            let all: Vec<diag::Diag> = diags.values().flatten().cloned().collect();
            match (failures.first(), make_ok) {
                (Some(f), _) => (Outcome::Fail, Some(f.clone()), 0),
                (None, true) => (Outcome::Ok, None, 0),
                (None, false) => (
                    Outcome::BaseBroken,
                    diag::first_line(&all).map(String::from).or_else(failed_line),
                    0,
                ),
            }
        } else {
            let base = self.results[0][column].as_ref();
            let empty = ByStep::new();
            let new = diag::new_since(base.map_or(&empty, |b| &b.diags), &diags);
            let broke = !make_ok && base.is_none_or(|b| b.make_ok);
            let first = failures
                .first()
                .cloned()
                .or_else(|| diag::first_line(&new).map(String::from))
                .or_else(|| broke.then(failed_line).flatten());
            let outcome = if failures.is_empty() && new.is_empty() && !broke {
                Outcome::Ok
            } else {
                Outcome::Fail
            };
            (outcome, first, new.len())
        };
        Record {
            outcome,
            first,
            new,
            notes,
            diags,
            make_ok,
            seconds: 0.0,
        }
    }

    /// Digest of what decides the .config at prefix `k`: the tree's
    /// Kconfig files and the config's fragments.
    pub(super) fn kconfig_digest(&mut self, k: usize, column: usize) -> Result<String> {
        let commit = self.commits.as_ref().context("commits")?[k].clone();
        let repo = &self.source.repo;
        let tree = cmd!(self.sh, "git -C {repo} ls-tree -r {commit}")
            .quiet()
            .read()?;
        Ok(digest(&[
            &targets::kconfig_inputs(&tree),
            &self.configs[column].digest,
        ]))
    }

    /// Whether the worktree's Kconfig files define CONFIG_<name>.
    pub(super) fn defines(&self, name: &str) -> Result<bool> {
        let symbol = name.trim_start_matches("CONFIG_");
        let pattern = format!("^[[:space:]]*(menu)?config {symbol}[[:space:]]*$");
        let worktree = &self.worktree;
        let found = cmd!(self.sh, "git -C {worktree} grep -q -E {pattern} -- *Kconfig*")
            .quiet()
            .ignore_status()
            .output()?;
        Ok(found.status.success())
    }
}

/// [`diag::attribute`] with `dirs` stripped as given and as make sees
/// them: make runs in the physical directory, so a symlink on the way
/// (target/ may be one) is resolved in what the compiler prints.
pub(super) fn attribute(output: &str, dirs: &[&Path]) -> ByStep {
    let mut strip: Vec<String> = Vec::new();
    for d in dirs {
        strip.push(d.to_string_lossy().into_owned());
        if let Ok(real) = d.canonicalize() {
            strip.push(real.to_string_lossy().into_owned());
        }
    }
    let strip: Vec<&str> = strip.iter().map(String::as_str).collect();
    diag::attribute(output, &strip)
}

pub(super) fn write_state(file: &Path, state: &DirState) -> Result<()> {
    fs_err::write(file, serde_json::to_vec(state)?).context("write the build directory's state")
}

/// Whether a step's output counts for these goals: the goals themselves,
/// anything built inside a goal directory, make's own errors, and the
/// steps that are not objects (prepare: generated headers, host tools,
/// checksyscalls), which every goal depends on.
pub(super) fn in_scope(step: &str, goals: &[String]) -> bool {
    let object = [".o", ".a", ".ko"].iter().any(|e| step.ends_with(e));
    step == MAKE
        || !object
        || goals
            .iter()
            .any(|g| step == g || (g.ends_with('/') && step.starts_with(g.as_str())))
}

/// Waits for make, showing the last line it wrote to `path` as progress.
fn follow(
    child: &mut std::process::Child,
    path: &Path,
    progress: &Progress,
) -> Result<std::process::ExitStatus> {
    let mut seen = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(mut f) = File::open(path) {
            let len = f.metadata().map_or(0, |m| m.len());
            if len > seen {
                let from = len.saturating_sub(512).max(seen);
                let mut tail = String::new();
                if f.seek(SeekFrom::Start(from)).is_ok() && f.read_to_string(&mut tail).is_ok() {
                    if let Some(line) = tail.lines().rev().find(|l| !l.trim().is_empty()) {
                        progress.say(line.trim().to_string());
                    }
                }
                seen = len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_of_goals() {
        let goals = vec!["arch/x86/kvm/".to_string(), "kernel/sys_ni.o".to_string()];
        assert!(in_scope("arch/x86/kvm/x86.o", &goals));
        assert!(in_scope("arch/x86/kvm/built-in.a", &goals));
        assert!(in_scope("kernel/sys_ni.o", &goals));
        assert!(in_scope("scripts/checksyscalls.sh", &goals));
        assert!(in_scope(MAKE, &goals));
        assert!(!in_scope("arch/x86/kernel/kvm.o", &goals));
        assert!(!in_scope("kernel/sys.o", &goals));
    }

    #[test]
    fn physical_and_symlinked_paths_are_stripped() {
        let base = std::env::temp_dir().join(format!("hh-each-test-{}", std::process::id()));
        let real = base.join("real");
        fs_err::create_dir_all(&real).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let out = format!(
            "  CC      a.o\n{}/a.c:1:2: warning: x [-Wx]\n{}/a.c:3:4: warning: x [-Wx]\n",
            real.display(),
            link.display()
        );
        let steps = attribute(&out, &[&link]);
        fs_err::remove_dir_all(&base).unwrap();
        let keys: Vec<&str> = steps["a.o"].iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, vec!["a.c: warning: x [-Wx]", "a.c: warning: x [-Wx]"]);
    }
}
