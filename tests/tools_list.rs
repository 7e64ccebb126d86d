//! scripts/test-tools.txt is the one list of the external programs the test
//! command runs. These tests fail when a test, the harness, a bench or the
//! library code they drive runs a program that is not on it, when an entry
//! is run by nothing, and when scripts/test.sh would not install an entry.
//!
//! The programs are found by reading the sources: every `Command::new(...)`
//! (a string literal, or an expression reviewed in [`REVIEWED`]), every
//! `required_tool("...")`, every `.binary("...")` of a RedisSpec, and in
//! tests/ the `python3 -m` modules, `[exec]` commands and `#!` interpreters
//! of the files tests write.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{TOOLS_LIST_PATH, Tool, ToolCheck, find_on_path, tools_list};
use redops::lab::process::REDIS_SERVER_BIN;

/// Run by `cargo test --all-targets`; examples/ is only built.
const SCANNED_DIRS: &[&str] = &["tests", "src", "benches"];

/// This file is full of the patterns it looks for, so it is not scanned:
/// the programs it runs itself are these.
const THIS_FILE: &str = "tests/tools_list.rs";
const BASH: &str = "/bin/bash";
const PYTHON3: &str = "/usr/bin/python3";

/// `Command::new(<expression>)` and `.binary(<expression>)` whose program is
/// not a string literal: the file, the expression, and the listed programs it
/// can run. A new one fails [`every_program_the_tests_run_is_listed`] until
/// it is added here, with where its program comes from.
const REVIEWED: &[(&str, &str, &[&str])] = &[
    // A RedisSpec's binary: REDIS_SERVER_BIN unless `.binary(...)`, scanned too.
    ("src/lab/process.rs", "&spec.binary", &[REDIS_SERVER_BIN]),
    // An `[exec]` allowlist entry of the config: the tests' `command = "..."`
    // lines are scanned.
    ("src/playbooks/api/exec.rs", "&entry.command", &[]),
    // The binary under test.
    ("tests/harness/mod.rs", "REDOPS_BIN", &[]),
    ("tests/lab_e2e.rs", "REDOPS_BIN", &[]),
    ("tests/cluster_cli_e2e.rs", "REDOPS_BIN", &[]),
    ("tests/check_golden.rs", "env!(\"CARGO_BIN_EXE_redops\")", &[]),
    ("tests/ruletest_e2e.rs", "env!(\"CARGO_BIN_EXE_redops\")", &[]),
    // Paths that required_tool returned.
    ("tests/prometheus_e2e.rs", "promtool", &["promtool"]),
    ("tests/prometheus_e2e.rs", "binary", &["prometheus"]),
    ("tests/dashboard_e2e.rs", "binary", &["chromedriver"]),
    ("tests/backup_e2e.rs", "age_keygen", &["age-keygen"]),
    ("tests/backup_e2e.rs", "&age", &["age"]),
    ("tests/backup_e2e.rs", "&zstd", &["zstd"]),
    ("tests/install_e2e.rs", "analyze", &["systemd-analyze"]),
    ("tests/backup_e2e.rs", "check_rdb", &["redis-check-rdb"]),
];

/// A program the sources run, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Use {
    program: String,
    check: ToolCheck,
    at: String,
}

/// An expression the scan cannot resolve to a program.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unreviewed {
    at: String,
    call: String,
    expression: String,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("Failed to read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `/usr/bin/python3` runs `python3`.
fn program_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// The text of the string literal at the start of `text` (after blanks),
/// or `None` if it starts with something else.
fn leading_literal(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    let end = rest
        .char_indices()
        .scan(false, |escaped, (i, c)| {
            let found = (c == '"' && !*escaped).then_some(i);
            *escaped = c == '\\' && !*escaped;
            Some(found)
        })
        .flatten()
        .next()?;
    Some(&rest[..end])
}

/// The expression up to the `)` that closes the call, blanks collapsed.
fn call_argument(text: &str) -> String {
    let mut depth = 0usize;
    let mut end = text.len();
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => {
                end = i;
                break;
            }
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    text[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every program `text` (the file `rel`, relative to the repository) runs,
/// and the calls it cannot resolve.
fn scan(rel: &str, text: &str) -> (Vec<Use>, Vec<Unreviewed>) {
    let in_tests = rel.starts_with("tests/");
    let line_of = |offset: usize| format!("{rel}:{}", text[..offset].matches('\n').count() + 1);
    // A comment that names a call runs nothing.
    let in_comment = |offset: usize| {
        let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        text[start..offset].trim_start().starts_with("//")
    };
    let mut uses = Vec::new();
    let mut unreviewed = Vec::new();
    let mut found = |offset: usize, program: &str, check: ToolCheck| {
        uses.push(Use {
            program: program.to_string(),
            check,
            at: line_of(offset),
        })
    };

    // Patterns built from pieces, so this file does not match itself.
    let calls = [concat!("Command::", "new("), concat!(".bin", "ary(")];
    for call in calls {
        for (offset, _) in text.match_indices(call).filter(|(o, _)| !in_comment(*o)) {
            let argument = &text[offset + call.len()..];
            if let Some(literal) = leading_literal(argument) {
                // A test's deliberately missing binary.
                if !literal.starts_with("/nonexistent/") {
                    found(offset, &program_name(literal), ToolCheck::Command);
                }
                continue;
            }
            let expression = call_argument(argument);
            match REVIEWED.iter().find(|(file, e, _)| *file == rel && *e == expression) {
                Some((_, _, programs)) => {
                    for program in *programs {
                        found(offset, program, ToolCheck::Command);
                    }
                }
                None => unreviewed.push(Unreviewed {
                    at: line_of(offset),
                    call: call.to_string(),
                    expression,
                }),
            }
        }
    }
    let required = concat!("required_", "tool(");
    for (offset, _) in text.match_indices(required).filter(|(o, _)| !in_comment(*o)) {
        let argument = &text[offset + required.len()..];
        // The helper's own definition takes a parameter, not a name.
        if let Some(name) = leading_literal(argument) {
            found(offset, name, ToolCheck::Command);
        } else if !text[..offset].ends_with("fn ") {
            unreviewed.push(Unreviewed {
                at: line_of(offset),
                call: required.to_string(),
                expression: call_argument(argument),
            });
        }
    }
    if !in_tests {
        return (uses, unreviewed);
    }
    // `python3 -m <module>`.
    let module_flag = concat!("\"-", "m\",");
    for (offset, _) in text.match_indices(module_flag) {
        if let Some(module) = leading_literal(&text[offset + module_flag.len()..]) {
            found(offset, module, ToolCheck::Python3Module);
        }
    }
    // `[exec]` allowlist entries in the configs tests write, as TOML inside
    // a Rust string (`command = \"/bin/echo\"`) or a raw one.
    for pattern in [concat!("command = ", "\\\""), concat!("command = ", "\"")] {
        for (offset, _) in text.match_indices(pattern) {
            let rest = &text[offset + pattern.len()..];
            let end = rest.find(['"', '\\', '\n']).unwrap_or(rest.len());
            if end > 0 {
                found(offset, &program_name(&rest[..end]), ToolCheck::Command);
            }
        }
    }
    // Scripts tests write and run.
    let shebang = concat!("#", "!/");
    for (offset, _) in text.match_indices(shebang) {
        let line = text[offset + 2..].lines().next().unwrap_or_default();
        let mut words = line.split([' ', '\\', '"']).filter(|w| !w.is_empty());
        let interpreter = words.next().unwrap_or_default();
        found(offset, &program_name(interpreter), ToolCheck::Command);
        if program_name(interpreter) == "env"
            && let Some(program) = words.next()
        {
            found(offset, program, ToolCheck::Command);
        }
    }
    (uses, unreviewed)
}

fn scan_repository() -> (Vec<Use>, Vec<Unreviewed>) {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in SCANNED_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut uses = Vec::new();
    let mut unreviewed = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        if rel == THIS_FILE {
            for program in [BASH, PYTHON3] {
                uses.push(Use {
                    program: program_name(program),
                    check: ToolCheck::Command,
                    at: THIS_FILE.to_string(),
                });
            }
            continue;
        }
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("Failed to read {rel}: {e}"));
        let (u, r) = scan(&rel, &text);
        uses.extend(u);
        unreviewed.extend(r);
    }
    (uses, unreviewed)
}

#[test]
fn every_program_the_tests_run_is_listed() {
    let tools = tools_list();
    let (uses, unreviewed) = scan_repository();
    assert!(
        unreviewed.is_empty(),
        "these calls run a program the scan cannot name: pass a string literal, or add the \
         expression to REVIEWED in tests/tools_list.rs with the programs it can run (and those \
         to {TOOLS_LIST_PATH}):\n{}",
        unreviewed
            .iter()
            .map(|u| format!("  {}: {}{})", u.at, u.call, u.expression))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The scan must see the calls this list exists for, not pass on nothing.
    let programs: BTreeSet<&str> = uses.iter().map(|u| u.program.as_str()).collect();
    for known in [
        "redis-server",
        "age-keygen",
        "zstd",
        "kill",
        "aiosmtpd",
        "openssl",
        "echo",
    ] {
        assert!(
            programs.contains(known),
            "the scan did not find `{known}` among {programs:?}"
        );
    }

    let listed: BTreeMap<(&str, ToolCheck), &Tool> = tools.iter().map(|t| ((t.name.as_str(), t.check), t)).collect();
    let missing: Vec<String> = uses
        .iter()
        .filter(|u| !listed.contains_key(&(u.program.as_str(), u.check)))
        .map(|u| {
            let what = match u.check {
                ToolCheck::Command => format!("`{}`", u.program),
                ToolCheck::Python3Module => format!("the python3 module `{}`", u.program),
            };
            format!("  {what}, run at {}", u.at)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in {TOOLS_LIST_PATH}, so scripts/test.sh would not install them on a fresh machine:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_listed_tool_is_run_by_something_and_listed_once() {
    let tools = tools_list();
    let (uses, _) = scan_repository();
    let used: BTreeSet<(&str, ToolCheck)> = uses.iter().map(|u| (u.program.as_str(), u.check)).collect();
    let unused: Vec<String> = tools
        .iter()
        .filter(|t| !used.contains(&(t.name.as_str(), t.check)))
        .map(|t| format!("  {TOOLS_LIST_PATH}:{}: {}", t.line, t.name))
        .collect();
    assert!(
        unused.is_empty(),
        "nothing runs these, so scripts/test.sh should not install them: remove them, or \
         teach tests/tools_list.rs where they are run:\n{}",
        unused.join("\n")
    );
    let mut seen = BTreeMap::new();
    for tool in &tools {
        if let Some(first) = seen.insert(tool.name.as_str(), tool.line) {
            panic!(
                "{TOOLS_LIST_PATH}:{}: `{}` is listed twice (first on line {first})",
                tool.line, tool.name
            );
        }
    }
    assert!(tools.len() >= 10, "suspiciously short list: {tools:?}");
}

/// `scripts/test.sh --missing-tools` under `path` (the PATH) and `python`
/// (REDOPS_TOOLS_PYTHON, unset for `None`): the packages it would install.
fn missing_tools(path: &std::ffi::OsStr, python: Option<&str>) -> Vec<String> {
    let mut command = Command::new(BASH);
    command
        .arg(repo_root().join("scripts/test.sh"))
        .arg("--missing-tools")
        .env("PATH", path)
        .env_remove("REDOPS_TOOLS_PYTHON");
    if let Some(python) = python {
        command.env("REDOPS_TOOLS_PYTHON", python);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("Failed to run scripts/test.sh --missing-tools: {e}"));
    assert!(
        out.status.success(),
        "scripts/test.sh --missing-tools failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Each package once, in the list's order.
fn packages_of<'a>(tools: impl IntoIterator<Item = &'a Tool>) -> Vec<String> {
    let mut packages: Vec<String> = Vec::new();
    for tool in tools {
        if !packages.contains(&tool.package) {
            packages.push(tool.package.clone());
        }
    }
    packages
}

#[test]
fn test_sh_installs_every_entry_of_the_list_when_nothing_is_installed() {
    let tools = tools_list();
    let empty = tempfile::tempdir().unwrap();
    let packages = missing_tools(empty.path().as_os_str(), Some("/nonexistent/python3"));
    assert_eq!(
        packages,
        packages_of(&tools),
        "on a machine with none of the tools, scripts/test.sh must install the package of every entry of {TOOLS_LIST_PATH}"
    );
}

#[test]
fn test_sh_installs_exactly_what_is_missing_here() {
    let tools = tools_list();
    let present = |tool: &Tool| match tool.check {
        ToolCheck::Command => find_on_path(&tool.name).is_some(),
        ToolCheck::Python3Module => Command::new(PYTHON3)
            .args(["-c", &format!("import {}", tool.name)])
            .output()
            .is_ok_and(|out| out.status.success()),
    };
    let expected = packages_of(tools.iter().filter(|t| !present(t)));
    let path = std::env::var_os("PATH").unwrap_or_default();
    assert_eq!(missing_tools(&path, None), expected);
}

#[test]
fn test_sh_installs_from_the_list_only() {
    let script = fs::read_to_string(repo_root().join("scripts/test.sh")).unwrap();
    let installs: Vec<&str> = script.lines().filter(|l| l.contains("apt-get install")).collect();
    assert_eq!(
        installs.len(),
        1,
        "one apt-get install, of the list's packages: {installs:?}"
    );
    assert!(installs[0].trim_end().ends_with("$packages >/dev/null"), "{installs:?}");
    assert!(script.contains("tools_list=scripts/test-tools.txt"));
    assert!(script.contains("export REDOPS_REQUIRE_ALL=1"), "CI must not skip");
}

#[test]
fn required_tool_refuses_a_tool_missing_from_the_list() {
    let panic = std::panic::catch_unwind(|| harness::required_tool("a-tool-nobody-listed")).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("is not in scripts/test-tools.txt"), "{message}");
}

#[test]
fn the_scan_reads_literals_reviewed_expressions_and_test_configs() {
    let new = concat!("Command::", "new(");
    let text = format!(
        "let a = {new}\"/usr/bin/foo\");\nlet b = {new}\n    \"bar\",\n);\nlet c = {new}some_path);\n\
         let d = {new}REDOPS_BIN)\n    .arg(\"x\");\nlet e = {new}\"/nonexistent\");\n\
         cmd.args([\"-m\", \"smtpd\"]);\nlet cfg = \"[exec.x]\\ncommand = \\\"/bin/sleep\\\"\\n\";\n\
         let script = \"{shebang}/usr/bin/env perl\\n\";\nharness::required_{tool}(\"qux\");\n\
         /// {new}\"documented\") is not a call\n",
        shebang = "#!",
        tool = "tool",
    );
    let (uses, unreviewed) = scan("tests/harness/mod.rs", &text);
    let found: Vec<(&str, ToolCheck, &str)> = uses
        .iter()
        .map(|u| (u.program.as_str(), u.check, u.at.as_str()))
        .collect();
    use ToolCheck::{Command as Cmd, Python3Module as Py};
    assert_eq!(
        found,
        [
            ("foo", Cmd, "tests/harness/mod.rs:1"),
            ("bar", Cmd, "tests/harness/mod.rs:2"),
            ("nonexistent", Cmd, "tests/harness/mod.rs:8"),
            ("qux", Cmd, "tests/harness/mod.rs:12"),
            ("smtpd", Py, "tests/harness/mod.rs:9"),
            ("sleep", Cmd, "tests/harness/mod.rs:10"),
            ("env", Cmd, "tests/harness/mod.rs:11"),
            ("perl", Cmd, "tests/harness/mod.rs:11"),
        ]
    );
    assert_eq!(
        unreviewed,
        [Unreviewed {
            at: "tests/harness/mod.rs:5".to_string(),
            call: new.to_string(),
            expression: "some_path".to_string(),
        }]
    );
    // Outside tests/ only the calls count: src/ documents configs.
    let (uses, _) = scan("src/x.rs", "command = \"/bin/sleep\"\n");
    assert!(uses.is_empty(), "{uses:?}");
}
