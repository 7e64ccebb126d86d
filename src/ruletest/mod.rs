//! `redops test`: unit tests for rules and playbooks, in virtual time and
//! without Redis. The format is documented in docs/testing.md.
//!
//! ```text
//!  test file ──spec──> RuleTest ─────rule_test──> Evaluator (the real one, virtual clock)
//!                 └──> PlaybookTest ─playbook_test──> PlaybookEngine (the real one, scripted world)
//! ```
//!
//! - [`spec`]: the TOML format and its loading, every problem located; its
//!   `rules` and `playbooks` read `[[test]]` and `[[playbook_test]]`.
//! - [`series`]: the `"50+5x10 90x20"` notation for sampled values.
//! - [`rule_test`]: drives the evaluator and compares alerts and runs.
//! - [`playbook_test`]: runs a playbook against canned Redis replies and
//!   compares its outcome, audit trail and findings.

pub mod playbook_test;
pub mod rule_test;
pub mod series;
pub mod spec;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::diagnostics::Diagnostics;

/// What a run of test files came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    /// Files that could not be loaded; their diagnostics were printed.
    pub broken_files: usize,
    /// Each test and each broken file, in the order run, for `--format`.
    pub cases: Vec<Case>,
}

/// One test's result, or a file that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Case {
    pub file: String,
    /// The test's name; `None` for a file that could not be loaded.
    pub name: Option<String>,
    pub line: usize,
    /// What failed, one line each (a broken file: its diagnostics); empty
    /// when it passed.
    pub failures: Vec<String>,
}

impl Summary {
    /// 2 when a file is broken, 1 when a test failed, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.broken_files > 0 {
            2
        } else if self.failed > 0 {
            1
        } else {
            0
        }
    }
}

/// Expands directories into the `*.toml` files they hold, sorted.
pub fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut diags = Diagnostics::default();
            out.extend(crate::files::files_with_extension(path, "toml", &mut diags));
        } else {
            out.push(path.clone());
        }
    }
    out
}

/// Loads and runs every test of `paths` whose name contains `filter`,
/// writing a report to `out` and diagnostics of broken files to `err`.
pub fn run_files(paths: &[PathBuf], filter: Option<&str>, out: &mut dyn Write, err: &mut dyn Write) -> Summary {
    let mut summary = Summary::default();
    for path in expand(paths) {
        let mut diags = Diagnostics::default();
        let Some(file) = spec::load(&path, &mut diags) else {
            summary.broken_files += 1;
            summary.cases.push(Case {
                file: path.display().to_string(),
                name: None,
                line: 0,
                failures: diags.render().lines().map(str::to_owned).collect(),
            });
            let _ = writeln!(err, "{}", diags.render());
            let _ = writeln!(out, "{}: not run, the file has errors", path.display());
            continue;
        };
        run_file(&file, filter, out, &mut summary);
    }
    let verdict = if summary.failed == 0 && summary.broken_files == 0 {
        "ok"
    } else {
        "FAILED"
    };
    let mut line = format!(
        "test result: {verdict}. {} passed, {} failed",
        summary.passed, summary.failed
    );
    if summary.broken_files > 0 {
        line.push_str(&format!(", {} file(s) with errors", summary.broken_files));
    }
    let _ = writeln!(out, "{line}");
    summary
}

fn run_file(file: &spec::TestFile, filter: Option<&str>, out: &mut dyn Write, summary: &mut Summary) {
    let _ = writeln!(out, "{}", file.path.display());
    let selected = |name: &str| filter.is_none_or(|f| name.contains(f));
    for test in file.rule_tests.iter().filter(|t| selected(&t.name)) {
        let failures = rule_test::run(test, &file.rules, &file.expr, file.config.as_deref());
        report(out, &file.path, &test.name, test.line, &failures, summary);
    }
    for test in file.playbook_tests.iter().filter(|t| selected(&t.name)) {
        let failures = playbook_test::run(test, &file.playbook_engine);
        report(out, &file.path, &test.name, test.line, &failures, summary);
    }
}

fn report(out: &mut dyn Write, path: &Path, name: &str, line: usize, failures: &[String], summary: &mut Summary) {
    summary.cases.push(Case {
        file: path.display().to_string(),
        name: Some(name.to_owned()),
        line,
        failures: failures.to_vec(),
    });
    if failures.is_empty() {
        summary.passed += 1;
        let _ = writeln!(out, "  ok    {name}");
        return;
    }
    summary.failed += 1;
    let _ = writeln!(out, "  FAIL  {name}  ({}:{line})", path.display());
    for f in failures {
        let _ = writeln!(out, "        {f}");
    }
}

#[cfg(test)]
mod tests;
