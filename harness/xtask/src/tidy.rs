//! Repository checks, run by `cargo test`: the series is well formed, and
//! what CI runs is what the README tells users to run.

use std::path::Path;

use crate::layout;
use crate::patches::Series;

const PREFIXES: &[&str] = &["KVM: x86: ", "KVM: selftests: ", "x86/kvm: ", "selftests/x86: "];

fn series_dirs() -> Vec<std::path::PathBuf> {
    let dir = layout::root().join("patches");
    let mut dirs: Vec<_> = std::fs::read_dir(&dir)
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
        let cover = std::fs::read_to_string(dir.join("0000-cover-letter.patch")).unwrap();
        assert!(
            !cover.contains("*** SUBJECT HERE ***") && !cover.contains("*** BLURB HERE ***"),
            "{}: cover letter placeholders",
            dir.display()
        );
        for (i, path) in series.paths().iter().enumerate() {
            let text = std::fs::read_to_string(path).unwrap();
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
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
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
