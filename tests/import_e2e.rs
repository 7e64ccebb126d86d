//! `redops import prometheus` as users run it: the awesome-prometheus-alerts
//! Redis set (tests/fixtures/prometheus/redis-alerts.yml) imports whole, the
//! output passes `redops check --strict`, and a `redops test` file fires
//! each imported rule; a rule that does not translate is written commented
//! out with its reason and the command exits 1; a broken YAML file is
//! located at file:line:col with exit 2.
//!
//! No Redis is needed: import, check and test never connect.

mod harness;

use std::path::Path;
use std::process::Output;

use harness::{run_redops, write_file};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/prometheus/redis-alerts.yml"
);

const TEN_ALERTS: [&str; 10] = [
    "RedisDown",
    "RedisMissingMaster",
    "RedisTooManyMasters",
    "RedisDisconnectedSlaves",
    "RedisReplicationBroken",
    "RedisClusterFlapping",
    "RedisMissingBackup",
    "RedisOutOfConfiguredMaxmemory",
    "RedisTooManyConnections",
    "RedisRejectedConnections",
];

fn describe(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp dir path is UTF-8")
}

/// Imports the fixture into `dir/rules/imported.toml`.
fn import_fixture(dir: &Path) -> Output {
    std::fs::create_dir_all(dir.join("rules")).expect("Failed to create rules/");
    let out = dir.join("rules/imported.toml");
    run_redops(&["import", "prometheus", FIXTURE, "--out", path_str(&out)], &[])
}

#[test]
fn the_redis_alert_set_imports_and_passes_check() {
    let dir = tempfile::tempdir().expect("Failed to create a temp dir");
    let out = import_fixture(dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("10 of 10 rule(s) translated"), "{}", describe(&out));
    let rules = std::fs::read_to_string(dir.path().join("rules/imported.toml")).expect("imported.toml");
    for name in TEN_ALERTS {
        assert!(
            rules.contains(&format!("\n[[rule]]\nname = \"{name}\"\n")),
            "{name} missing:\n{rules}"
        );
    }
    assert!(!rules.contains("NOT TRANSLATED"), "{rules}");

    write_file(
        dir.path(),
        "redops.toml",
        "[engine]\nrules_dir = \"rules\"\nplaybooks_dir = \"playbooks\"\n\n[[target]]\nname = \"cache\"\nurl = \
         \"redis://127.0.0.1:1/0\"\n",
    );
    std::fs::create_dir_all(dir.path().join("playbooks")).expect("Failed to create playbooks/");
    let config = dir.path().join("redops.toml");
    let check = run_redops(&["check", "--strict", "--config", path_str(&config)], &[]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(printed.contains("10 rule(s)"), "{printed}");
    assert!(!printed.contains("warning"), "{printed}");
}

/// For each imported rule: a target, its series, and when the rule fires.
const FIRING: [(&str, &str, &str, &str); 10] = [
    ("RedisDown", "cache", "redis_up = \"0x3\"", "0s"),
    ("RedisMissingMaster", "lab", "masters_seen = \"0x3\"", "0s"),
    ("RedisTooManyMasters", "lab", "masters_seen = \"2x3\"", "0s"),
    (
        "RedisDisconnectedSlaves",
        "lab",
        "replicas = \"2x3\", replicas_up = \"1x3\", replicas_link_down = \"0x3\"",
        "0s",
    ),
    (
        "RedisReplicationBroken",
        "cache",
        "connected_replicas = \"2 1x3\"",
        "10s",
    ),
    // Flapping every sample: pending from the second change (20 s), firing 2 m later.
    (
        "RedisClusterFlapping",
        "cache",
        "connected_replicas = \"1 2 1 2 1 2 1 2 1 2 1 2 1 2 1 2 1 2 1 2\"",
        "2m20s",
    ),
    (
        "RedisMissingBackup",
        "cache",
        "seconds_since_last_save = \"90000x3\"",
        "0s",
    ),
    (
        "RedisOutOfConfiguredMaxmemory",
        "cache",
        "used_memory = \"950x15\", maxmemory = 1000",
        "2m",
    ),
    (
        "RedisTooManyConnections",
        "cache",
        "connected_clients = \"95x15\", maxclients = 100",
        "2m",
    ),
    (
        "RedisRejectedConnections",
        "cache",
        "rejected_connections_per_sec = \"0 2 0x3\"",
        "10s",
    ),
];

#[test]
fn a_generated_rule_test_fires_each_imported_rule() {
    let dir = tempfile::tempdir().expect("Failed to create a temp dir");
    let out = import_fixture(dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mut test = String::from("rule_files = [\"rules/imported.toml\"]\nevaluation_interval = \"10s\"\n");
    for (rule, target, series, at) in FIRING {
        test.push_str(&format!(
            "\n[[test]]\nname = \"{rule} fires\"\n[test.targets.{target}]\nseries = {{ {series} }}\n\n\
             [[test.expect]]\nat = \"{at}\"\nalerts = [{{ rule = \"{rule}\", target = \"{target}\" }}]\n"
        ));
    }
    // The summary template came across: `{{ $labels.instance }}` is the target.
    test.push_str(
        "\n[[test]]\nname = \"summaries name the target\"\n[test.targets.cache]\nseries = { redis_up = \"0\" }\n\n\
         [[test.expect]]\nat = \"0s\"\nalerts = [{ rule = \"RedisDown\", summary = \"Redis down (instance cache)\" }]\n",
    );
    // keep_firing_for = 5m: the rejections leave the 1 m window at 80 s,
    // the alert resolves 5 m after that.
    test.push_str(
        "\n[[test]]\nname = \"RedisRejectedConnections keeps firing for 5m\"\n[test.targets.cache]\n\
         series = { rejected_connections_per_sec = \"0 2 0x40\" }\n\n\
         [[test.expect]]\nat = \"6m10s\"\nalerts = [{ rule = \"RedisRejectedConnections\" }]\n\n\
         [[test.expect]]\nat = \"6m20s\"\nalerts = []\n",
    );
    write_file(dir.path(), "imported.test.toml", &test);
    let file = dir.path().join("imported.test.toml");
    let run = run_redops(&["test", path_str(&file)], &[]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n--- test file ---\n{test}",
        describe(&run)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    for (rule, ..) in FIRING {
        assert!(stdout.contains(&format!("{rule} fires")), "{rule} not run:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn an_untranslatable_rule_is_commented_with_its_reason_and_exits_1() {
    let dir = tempfile::tempdir().expect("Failed to create a temp dir");
    let yaml = "groups:\n  - name: capacity\n    rules:\n      - alert: RedisMemoryFullSoon\n        expr: \
                predict_linear(redis_memory_used_bytes[6h], 86400) > redis_memory_max_bytes\n      - alert: \
                RedisDown\n        expr: redis_up == 0\n";
    write_file(dir.path(), "alerts.yml", yaml);
    let input = dir.path().join("alerts.yml");
    let out = run_redops(&["import", "prometheus", path_str(&input)], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:4:9: not translated: RedisMemoryFullSoon: predict_linear() has no redops equivalent",
            input.display()
        )),
        "{}",
        describe(&out)
    );
    assert!(stderr.contains("1 of 2 rule(s) translated"), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("# NOT TRANSLATED: predict_linear() has no redops equivalent\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# [[rule]]\n# name = \"RedisMemoryFullSoon\"\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\n[[rule]]\nname = \"RedisDown\"\n"), "{stdout}");
}

#[test]
fn a_yaml_error_is_located_and_exits_2() {
    let dir = tempfile::tempdir().expect("Failed to create a temp dir");
    write_file(
        dir.path(),
        "alerts.yml",
        "groups:\n  - name: redis\n    rules:\n      - alert: RedisDown\n        expr: redis_up == 0\n        labels: [\n",
    );
    let input = dir.path().join("alerts.yml");
    let out = run_redops(&["import", "prometheus", path_str(&input)], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("redops: {}:", input.display());
    let located = stderr
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{}", describe(&out)));
    let mut parts = located.splitn(3, ':');
    let line: u32 = parts.next().and_then(|l| l.parse().ok()).expect("a line number");
    let col: u32 = parts.next().and_then(|c| c.parse().ok()).expect("a column number");
    assert!(line >= 6 && col >= 1, "{}", describe(&out));
    assert!(out.stdout.is_empty(), "nothing is written on a parse error");
}
