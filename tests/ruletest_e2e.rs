//! `redops test` as users run it: the shipped rules and playbooks pass
//! their tests (tests/rules/*.toml), a file of wrong expectations fails with
//! a readable diff and exit 1, and a broken file is reported, located, with
//! exit 2. No Redis: the tests run in virtual time.
//!
//! The reports of the failing and broken fixtures are golden files under
//! tests/golden/ruletest/; `UPDATE_GOLDEN=1` rewrites them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `redops test` in the crate root, so paths print relative to it.
fn redops_test(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redops"))
        .arg("test")
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("Failed to run redops test")
}

fn describe(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `tests/rules/*.toml`, as a shell would expand it.
fn shipped_tests() -> Vec<String> {
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("tests/rules"))
        .expect("Failed to read tests/rules")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| format!("tests/rules/{}", p.file_name().unwrap_or_default().to_string_lossy()))
        .collect()
}

/// Compares `got` with the golden file, or rewrites it under UPDATE_GOLDEN.
fn assert_golden(rel: &str, got: &str) {
    let path = root().join(rel);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, got).unwrap_or_else(|e| panic!("Failed to write {}: {e}", path.display()));
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == expected,
        "{rel} differs (UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{expected}\n--- got\n{got}"
    );
}

#[test]
fn the_shipped_rules_and_playbooks_pass_their_tests() {
    let files = shipped_tests();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let out = redops_test(&args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("FAIL"), "{}", describe(&out));
    // Every shipped rule file and playbook has a test file that loads it.
    for dir in ["rules", "playbooks"] {
        for entry in fs::read_dir(root().join(dir)).expect("Failed to read the shipped files") {
            let name = entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let covered = files
                .iter()
                .any(|f| fs::read_to_string(root().join(f)).is_ok_and(|t| t.contains(&format!("/{dir}/{name}\""))));
            assert!(covered, "no test file in tests/rules loads {dir}/{name}");
        }
    }
    assert!(stdout.contains("test result: ok."), "{}", describe(&out));
}

#[test]
fn wrong_expectations_fail_with_a_readable_diff() {
    let out = redops_test(&["tests/golden/ruletest/failing.test.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The parts of the diff a reader relies on, in case the golden file is
    // ever rewritten carelessly.
    for part in [
        "  ok    the right expectations pass\n",
        "  FAIL  wrong state, summary, labels and runs  (tests/golden/ruletest/failing.test.toml:19)\n",
        "        at 1m (line 26), alerts:\n          memory_critical on cache:\n            state  expected: firing\n                        got: pending\n",
        "            summary      expected: \"Memory at 95%\"\n                              got: \"Memory at 90% of maxmemory on cache\"\n",
        "          missing:    memory_warning on broker: pending\n          unexpected: memory_warning on cache: pending\n",
        "            optimize_memory for memory_critical on cache, params { force = true } (at 2m)\n",
        "        audit     expected an entry matching \"MEMORY PURGE\" after one matching \"CONFIG SET activedefrag yes\"\n",
        "no canned reply for `INFO memory`",
        "test result: FAILED. 1 passed, 3 failed\n",
    ] {
        assert!(stdout.contains(part), "missing {part:?}\n{}", describe(&out));
    }
    assert_golden("tests/golden/ruletest/failing.expected.txt", &stdout);
}

#[test]
fn wrong_expected_notifications_fail_with_what_was_sent() {
    let out = redops_test(&["tests/golden/ruletest/failing_notifications.test.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for part in [
        "        at 2m (line 17), notifications:\n          expected:\n            to chat: memory_critical firing\n",
        "            to pager: alert memory_critical on cache firing, \"Memory at 90% of maxmemory on cache\" (at 2m)  <- not expected\n",
        "            to chat: memory_warning\n          got:\n            (none)\n",
        "test result: FAILED. 0 passed, 1 failed\n",
    ] {
        assert!(stdout.contains(part), "missing {part:?}\n{}", describe(&out));
    }
    assert_golden("tests/golden/ruletest/failing_notifications.expected.txt", &stdout);
}

#[test]
fn a_broken_test_file_is_reported_located_and_not_run() {
    let out = redops_test(&["tests/golden/ruletest/broken.test.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--> tests/golden/ruletest/broken.test.toml:18:11\n"),
        "{}",
        describe(&out)
    );
    assert_golden("tests/golden/ruletest/broken.expected.txt", &stderr);
}

#[test]
fn a_filter_runs_only_the_tests_it_names() {
    let out = redops_test(&["tests/rules", "--filter", "cooldown"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("test result: ok. 1 passed, 0 failed"),
        "{}",
        describe(&out)
    );
}

/// What CI systems read: `--format junit` is XML that Python's parser
/// takes, with a failure per failing test and an error per broken file;
/// `--format json` has the same counts.
#[test]
fn junit_and_json_reports_carry_every_test_and_failure() {
    let files = [
        "tests/rules/memory.test.toml",
        "tests/golden/ruletest/failing.test.toml",
        "tests/golden/ruletest/broken.test.toml",
    ];
    let mut args = files.to_vec();
    args.extend(["--format", "junit"]);
    let out = redops_test(&args);
    assert_eq!(out.status.code(), Some(2), "a broken file wins: {}", describe(&out));
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    let counted = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E\n\
             r = E.fromstring(sys.stdin.read())\n\
             print(len(r.findall('testsuite')), len(r.findall('.//testcase')), \
             len(r.findall('.//failure')), len(r.findall('.//error')))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(xml.as_bytes())?;
            child.wait_with_output()
        })
        .expect("python3 runs");
    assert!(
        counted.status.success(),
        "not XML:\n{xml}\n{}",
        String::from_utf8_lossy(&counted.stderr)
    );
    let numbers: Vec<usize> = String::from_utf8_lossy(&counted.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let mut json_args = files.to_vec();
    json_args.extend(["--format", "json"]);
    let json_out = redops_test(&json_args);
    let report: serde_json::Value = serde_json::from_slice(&json_out.stdout).expect("one JSON object");
    let (passed, failed) = (
        report["passed"].as_u64().unwrap() as usize,
        report["failed"].as_u64().unwrap() as usize,
    );
    assert!(failed >= 1 && passed >= 1, "{report}");
    assert_eq!(report["broken_files"], 1, "{report}");
    // Suites: one per file; cases: every test plus the broken file.
    assert_eq!(numbers, vec![3, passed + failed + 1, failed, 1], "{xml}");
    assert!(xml.contains("tests/golden/ruletest/failing.test.toml"), "{xml}");
}
