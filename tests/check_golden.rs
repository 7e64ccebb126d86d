//! Golden files for `redops check`: the full rendered output, byte for byte.
//!
//! Each directory under `tests/golden/check/<case>/` is a config dir
//! (`redops.toml`, `rules/`, `playbooks/`) with one kind of error or warning,
//! an optional `args` file of extra arguments, and `expected.txt`: the exit
//! code, stdout and stderr of `redops check --config redops.toml` run in that
//! directory, so paths print relative. `tests/check_errors.rs` asserts the
//! locations of errors one by one; this file pins down how they read.
//!
//! After a deliberate change to the output, rewrite the files with
//! `UPDATE_GOLDEN=1 cargo test --test check_golden` and review the diff.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/check");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("Failed to read {}: {e}", root.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("redops.toml").is_file())
        .collect();
    cases.sort();
    cases
}

/// What `check` printed, in the form of `expected.txt`.
fn check(case: &Path) -> String {
    let extra = fs::read_to_string(case.join("args")).unwrap_or_default();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redops"));
    cmd.args(["check", "--config", "redops.toml"])
        .args(extra.split_whitespace())
        .current_dir(case)
        .env("NO_COLOR", "1");
    // The fixtures' `${VAR}`s must be unset whatever the caller's environment.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REDOPS_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("Failed to run redops check in {}: {e}", case.display()));
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().map_or("signal".into(), |c| c.to_string()),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_output_matches_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases();
    assert!(cases.len() >= 20, "the golden cases went missing: {cases:?}");
    let mut mismatches = Vec::new();
    for case in &cases {
        let got = check(case);
        let expected_path = case.join("expected.txt");
        if update {
            fs::write(&expected_path, &got)
                .unwrap_or_else(|e| panic!("Failed to write {}: {e}", expected_path.display()));
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            mismatches.push(format!(
                "=== {} ===\n--- expected ({})\n{expected}\n--- got\n{got}",
                case.file_name().unwrap_or_default().to_string_lossy(),
                expected_path.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} golden file(s) differ (UPDATE_GOLDEN=1 rewrites them):\n\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn every_case_is_an_error_a_warning_or_clean_as_its_name_says() {
    for case in cases() {
        let name = case.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let got = check(&case);
        let expected_exit = match name.split('_').next() {
            Some("error") => "exit: 2\n",
            Some("strict") => "exit: 1\n",
            _ => "exit: 0\n",
        };
        assert!(got.starts_with(expected_exit), "{name}:\n{got}");
        if name.starts_with("warning") {
            assert!(got.contains("\nwarning: "), "{name} has no warning:\n{got}");
            assert!(!got.contains("\nerror: "), "{name} has an error:\n{got}");
        }
    }
}
