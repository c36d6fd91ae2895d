//! Repository checks, run by `cargo test`: the series is well formed,
//! what CI runs is what the README tells users to run, and the source
//! keeps the rules that a compiler cannot check.

use std::path::Path;

use crate::layout;
use crate::patches::Series;

const PREFIXES: &[&str] = &["KVM: x86: ", "KVM: selftests: ", "x86/kvm: ", "selftests/x86: "];

fn series_dirs() -> Vec<std::path::PathBuf> {
    let dir = layout::root().join("patches");
    let mut dirs: Vec<_> = fs_err::read_dir(&dir)
        .expect("patches/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("series").exists())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_series_is_well_formed() {
    let dirs = series_dirs();
    assert!(!dirs.is_empty(), "no series under patches/");
    for dir in dirs {
        let series = Series::load(&dir).unwrap();
        assert!(
            series.base_sha().is_some(),
            "{}: the series' first line must name the base commit",
            dir.display()
        );
        let cover = fs_err::read_to_string(dir.join("0000-cover-letter.patch")).unwrap();
        assert!(
            !cover.contains("*** SUBJECT HERE ***") && !cover.contains("*** BLURB HERE ***"),
            "{}: cover letter placeholders",
            dir.display()
        );
        for (i, path) in series.paths().iter().enumerate() {
            let text = fs_err::read_to_string(path).unwrap();
            let name = path.display();
            let subject = text
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_else(|| panic!("{name}: no Subject"));
            let title = subject.split_once("] ").map_or(subject, |(_, t)| t);
            assert!(
                PREFIXES.iter().any(|p| title.starts_with(p)),
                "{name}: subject prefix of {title:?}"
            );
            assert!(!title.ends_with('.'), "{name}: subject ends with a period");
            assert!(text.contains("\nSigned-off-by: "), "{name}: no Signed-off-by");
            assert!(
                text.contains("\nbase-commit: ") || i > 0 || cover.contains("\nbase-commit: "),
                "{name}: no base-commit"
            );
            let number = format!("{:04}-", i + 1);
            assert!(
                path.file_name().unwrap().to_string_lossy().starts_with(&number),
                "{name}: out of order in series"
            );
        }
        assert!(
            cover.contains(&format!("base-commit: {}", series.base_sha().unwrap())),
            "{}: cover letter's base-commit differs from the series file",
            dir.display()
        );
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let root = layout::root();
    let read = |p: &str| fs_err::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert!(
        read(".ci/run").contains("cargo xtask ci"),
        ".ci/run must call cargo xtask ci"
    );
    assert!(
        read("ci/run").contains("cargo xtask ci"),
        "ci/run must call cargo xtask ci"
    );
    let readme = read("README.md");
    assert!(
        readme.contains("cargo xtask ci") && readme.contains("cargo xtask e2e"),
        "README must show both commands"
    );
    assert!(Path::new(&root.join("ARCHITECTURE.md")).exists());
}

/// The commands of a workflow's `run:` steps, one per line: a one-line
/// `run: cmd`, or each line of a `run: |` block.
fn run_commands(workflow: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut lines = workflow.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(value) = trimmed.strip_prefix("run:") else {
            continue;
        };
        let value = value.trim();
        if !value.starts_with('|') && !value.starts_with('>') {
            commands.push(value.to_string());
            continue;
        }
        // A block: every following line indented deeper than `run:`.
        let indent = line.len() - trimmed.len();
        while let Some(next) =
            lines.next_if(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        {
            let next = next.trim();
            if !next.is_empty() && !next.starts_with('#') {
                commands.push(next.to_string());
            }
        }
    }
    commands
}

/// What the README offers as a command: each line of its code blocks
/// (without a trailing `# comment`) and each `inline code` span.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if in_block {
            let command = line.split(" #").next().unwrap_or_default().trim();
            if !command.is_empty() {
                commands.push(command.to_string());
            }
        } else {
            commands.extend(line.split('`').skip(1).step_by(2).map(|s| s.trim().to_string()));
        }
    }
    commands
}

/// The workflow's kernel matrix: `kernel: ["6.12", "6.1", "7.3"]`.
fn matrix_kernels(workflow: &str) -> Vec<String> {
    workflow
        .lines()
        .find_map(|l| l.trim().strip_prefix("kernel: ["))
        .map(|list| {
            list.trim_end_matches(']')
                .split(',')
                .map(|k| k.trim().trim_matches('"').to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_workflow_runs_the_readme_commands() {
    use clap::ValueEnum;

    let root = layout::root();
    let readme = readme_commands(&fs_err::read_to_string(root.join("README.md")).unwrap());
    let workflow = fs_err::read_to_string(root.join(".github/workflows/e2e.yml")).unwrap();
    let kernels = matrix_kernels(&workflow);
    let every: Vec<&str> = crate::flags::KernelVersion::value_variants()
        .iter()
        .map(|v| v.name())
        .collect();
    assert_eq!(kernels, every, "the workflow's matrix must hold every base");
    let commands = run_commands(&workflow);
    assert!(
        commands.iter().any(|c| c.starts_with("cargo xtask e2e")),
        "{commands:?}"
    );
    for command in &commands {
        for kernel in &kernels {
            let command = command.replace("${{ matrix.kernel }}", kernel);
            assert!(
                !command.contains("${{"),
                "{command}: only the kernel may vary in a run step"
            );
            assert!(
                readme.contains(&command),
                "the workflow runs `{command}`, which README.md does not give"
            );
        }
    }
}

#[test]
fn run_steps_and_readme_commands_are_found() {
    let workflow = "\
jobs:
  a:
    steps:
      - run: cargo xtask ci --no-e2e
      - if: always()
        run: |
          # why
          cargo xtask e2e
          bash .ci/run
      - uses: actions/cache@v5
        with:
          path: target
";
    assert_eq!(
        run_commands(workflow),
        ["cargo xtask ci --no-e2e", "cargo xtask e2e", "bash .ci/run"]
    );
    let readme = "Run `cargo xtask ci` or:\n\n```\ncargo xtask e2e      # the main job\n```\n";
    assert_eq!(readme_commands(readme), ["cargo xtask ci", "cargo xtask e2e"]);
    assert_eq!(
        matrix_kernels("    matrix:\n        kernel: [\"6.12\", \"6.1\"]\n"),
        ["6.12", "6.1"]
    );
}

/// Every Rust file of the workspace, for the checks on source text.
fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in fs_err::read_dir(dir).expect("a readable source tree").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn file_errors_name_their_path() {
    // fs-err's functions say which file failed; std::fs's say only "No
    // such file or directory". A file made from a pipe has no path, so
    // that one use of std::fs stays.
    let mut files = Vec::new();
    rust_files(&layout::root().join("harness"), &mut files);
    let mut offenders = Vec::new();
    for file in &files {
        let text = fs_err::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") || !code.contains(concat!("std::", "fs")) {
                continue;
            }
            if !code.contains(concat!("std::", "fs::File::from(")) {
                offenders.push(format!("{}:{}: {code}", file.display(), n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "use fs_err instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_code_map_names_every_source_file() {
    // ARCHITECTURE.md is a newcomer's map: a file it does not name is a
    // file the newcomer cannot place.
    let map = fs_err::read_to_string(layout::root().join("ARCHITECTURE.md")).unwrap();
    let mut files = Vec::new();
    rust_files(&layout::root().join("harness"), &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name()?.to_str().map(String::from))
        .filter(|name| !map.contains(name.as_str()))
        .collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md does not name {missing:?}");
}
