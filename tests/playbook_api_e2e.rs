//! The playbook host API against real Redis, through `redops playbook run`:
//! SCAN stops at its limit, `exec` runs only what the allowlist names, HTTP
//! gives up at its timeout, `bigkeys` finds the biggest key, and each
//! shipped playbook runs in dry run and for real, leaving a stored run.

mod harness;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{TestRedis, engine_dir, run_redops};

fn shipped(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("playbooks")
        .join(format!("{name}.rhai"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("Failed to read {}: {e}", path.display()))
}

fn config_for(redis: &TestRedis, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\n{extra}\n",
        redis.url(0)
    )
}

/// Runs a playbook by hand; its exit code and its record as JSON.
fn playbook_run(dir: &Path, name: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let config = dir.join("redops.toml");
    let mut args = vec![
        "playbook",
        "run",
        name,
        "--target",
        "cache",
        "--json",
        "--config",
        config.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    let out = run_redops(&args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let described = format!(
        "exit {:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let record = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not a JSON record ({e}):\n{described}"));
    (out.status.code(), record, described)
}

fn findings(record: &serde_json::Value) -> Vec<String> {
    record["findings"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

fn audit(record: &serde_json::Value) -> Vec<String> {
    record["audit"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} -> {}",
                        e["detail"].as_str().unwrap_or_default(),
                        e["outcome"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn scan_stops_at_its_limit_and_says_so() {
    let redis = TestRedis::start(&[]);
    for i in 0..50 {
        redis.cli(&["SET", &format!("k{i}"), "v"]);
    }
    let dir = engine_dir(
        "1s",
        &config_for(&redis, "[playbooks]\nscan_limit = 10\n"),
        &[],
        &[(
            "scan_all",
            "let keys = redis.scan(\"k*\", 5, \"string\");\nkeys.len()\n",
        )],
    );
    let (code, record, described) = playbook_run(dir.path(), "scan_all", &[]);
    assert_eq!(code, Some(0), "{described}");
    assert_eq!(record["outcome"]["result"], "10", "{described}");
    assert!(
        findings(&record).iter().any(|f| f.contains("scan stopped at 10 keys")),
        "{described}"
    );
}

#[test]
fn exec_runs_only_what_the_allowlist_names() {
    let redis = TestRedis::start(&[]);
    let dir = engine_dir(
        "1s",
        &config_for(
            &redis,
            "[exec.greet]\ncommand = \"/bin/echo\"\nargs = [\"hello\"]\ntimeout = \"5s\"\n",
        ),
        &[],
        &[
            ("denied", "exec(\"rm\", [\"-rf\", \"/tmp/nothing\"])\n"),
            (
                "allowed",
                "let r = exec(\"greet\", [\"$HOME; id\"]);\nr.stdout.trim();\n`${r.status}:${r.stdout}`\n",
            ),
        ],
    );
    let (code, record, described) = playbook_run(dir.path(), "denied", &[]);
    assert_eq!(code, Some(1), "{described}");
    let error = record["outcome"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`rm` is not in the [exec] allowlist (it has: greet)"),
        "{described}"
    );
    assert!(audit(&record).iter().any(|a| a.contains("denied")), "{described}");

    // No shell: the argument reaches echo as it was written.
    let (code, record, described) = playbook_run(dir.path(), "allowed", &[]);
    assert_eq!(code, Some(0), "{described}");
    assert_eq!(record["outcome"]["result"], "0:hello $HOME; id", "{described}");
    // A dry run records the call and does not make it.
    let (code, record, described) = playbook_run(dir.path(), "allowed", &["--dry-run"]);
    assert_eq!(code, Some(0), "{described}");
    assert_eq!(record["outcome"]["result"], "0:", "{described}");
}

#[test]
fn http_to_a_server_that_never_answers_times_out() {
    let redis = TestRedis::start(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("Failed to bind");
    let port = listener.local_addr().expect("an address").port();
    // Accepts connections and never writes a byte.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let script = format!("http.get(\"http://127.0.0.1:{port}/slow\", #{{ timeout: 1 }})\n");
    let dir = engine_dir("1s", &config_for(&redis, ""), &[], &[("slow", &script)]);
    let started = Instant::now();
    let (code, record, described) = playbook_run(dir.path(), "slow", &[]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(code, Some(1), "{described}");
    let error = record["outcome"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("no complete response within 1s"), "{described}");
}

#[test]
fn bigkeys_finds_the_biggest_key() {
    let redis = TestRedis::start(&[]);
    for i in 0..20 {
        redis.cli(&["SET", &format!("small:{i}"), "x"]);
    }
    redis.cli(&["SET", "huge", &"x".repeat(200_000)]);
    let dir = engine_dir(
        "1s",
        &config_for(&redis, ""),
        &[],
        &[(
            "big",
            "let top = redis.bigkeys(#{ sample: 1000, top: 2 });\n`${top[0].key} ${top[0].type} ${top[0].bytes > 200000} ${top.len()}`\n",
        )],
    );
    let (code, record, described) = playbook_run(dir.path(), "big", &[]);
    assert_eq!(code, Some(0), "{described}");
    assert_eq!(record["outcome"]["result"], "huge string true 2", "{described}");
}

#[test]
fn the_shipped_playbooks_run_in_dry_run_and_for_real() {
    let redis = TestRedis::start(&[]);
    redis.cli(&["SET", "warm", "v"]);
    let extra = "[exec.warm_cache]\ncommand = \"/bin/echo\"\nargs = [\"warming\"]\n";
    let dir = engine_dir(
        "1s",
        &config_for(&redis, extra),
        &[],
        &[
            ("security_audit", &shipped("security_audit")),
            ("capacity_report", &shipped("capacity_report")),
            ("redis_outage", &shipped("redis_outage")),
            ("warm_cache", &shipped("warm_cache")),
        ],
    );

    // security_audit: a test server has no password and its commands under their names.
    for mode in [&["--dry-run"][..], &[][..]] {
        let (code, record, described) = playbook_run(dir.path(), "security_audit", mode);
        assert_eq!(code, Some(0), "{described}");
        let f = findings(&record);
        assert!(
            f.iter().any(|l| l == "warn: FAIL requirepass: no password is set"),
            "{described}"
        );
        assert!(
            f.iter().any(|l| l.starts_with("warn: FAIL rename FLUSHALL")),
            "{described}"
        );
    }

    // capacity_report reads only; both modes report.
    for mode in [&["--dry-run"][..], &[][..]] {
        let (code, record, described) = playbook_run(dir.path(), "capacity_report", mode);
        assert_eq!(code, Some(0), "{described}");
        assert!(
            findings(&record)
                .iter()
                .any(|l| l.contains("of system memory") || l.contains("of maxmemory")),
            "{described}"
        );
        assert!(
            findings(&record).iter().any(|l| l.starts_with("connections ")),
            "{described}"
        );
    }

    // redis_outage: a live server is left alone.
    let (code, record, described) = playbook_run(dir.path(), "redis_outage", &[]);
    assert_eq!(code, Some(0), "{described}");
    assert_eq!(record["outcome"]["result"], "up", "{described}");

    // warm_cache through the allowlisted program, watching for a second.
    let (code, record, described) = playbook_run(dir.path(), "warm_cache", &["--dry-run"]);
    assert_eq!(code, Some(0), "{described}");
    assert!(
        audit(&record)
            .iter()
            .any(|a| a == "exec warm_cache --critical -> not run (dry run)"),
        "{described}"
    );
    let (code, record, described) = playbook_run(
        dir.path(),
        "warm_cache",
        &["--param", "scope=all", "--param", "watch=1"],
    );
    assert_eq!(code, Some(0), "{described}");
    assert!(
        audit(&record).iter().any(|a| a == "exec warm_cache --all -> exit 0"),
        "{described}"
    );

    // Every run is stored, newest first, with its trigger.
    let config = dir.path().join("redops.toml");
    let config = config.to_str().expect("a UTF-8 path");
    let out = run_redops(&["runs", "list", "--json", "--limit", "50", "--config", config], &[]);
    assert_eq!(out.status.code(), Some(0));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON rows");
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 7, "{rows:?}");
    assert_eq!(rows[0]["playbook"], "warm_cache");
    assert!(
        rows.iter()
            .all(|r| r["trigger"] == "manual" && r["outcome"] == "succeeded"),
        "{rows:?}"
    );
    let id = rows[0]["id"].as_str().expect("an id");
    let out = run_redops(&["runs", "show", id, "--config", config], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("exec warm_cache --all: exit 0"), "{text}");
}

#[test]
fn redis_outage_on_a_dead_server_says_it_cannot_restart_and_fails() {
    let redis = TestRedis::start(&[]);
    let url = redis.url(0);
    drop(redis);
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{url}\"\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n"
    );
    let dir = engine_dir("1s", &config, &[], &[("redis_outage", &shipped("redis_outage"))]);
    let (code, record, described) = playbook_run(dir.path(), "redis_outage", &[]);
    assert_eq!(code, Some(1), "{described}");
    assert!(
        findings(&record)
            .iter()
            .any(|l| l.contains("restart_redis is not in the [exec] allowlist")),
        "{described}"
    );
    assert!(
        record["outcome"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("still down"),
        "{described}"
    );
}
