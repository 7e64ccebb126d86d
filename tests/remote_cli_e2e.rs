//! `redops alerts|silence|runs --url`: the commands ask a running engine's
//! API (a real `redops run` watching a real redis-server) instead of the
//! local state store; changes need the token, which is never printed.

mod harness;

use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, run_redops};

const TOKEN: &str = "remote-cli-token-for-the-test-0123456789";
const TOUCH: &str = "redis.cmd([\"SET\", \"touched\", \"1\"]);\n\"touched\"";

struct Engine {
    _dir: tempfile::TempDir,
    redops: Redops,
    base: String,
}

fn start(redis: &TestRedis, hook: &WebhookReceiver) -> Engine {
    start_with(redis, hook, |_| String::new())
}

/// An engine with one target and one rule, its API on a free port;
/// `extra` adds config sections, given that port.
fn start_with(redis: &TestRedis, hook: &WebhookReceiver, extra: impl FnOnce(u16) -> String) -> Engine {
    let port = redops::lab::process::free_port().unwrap();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"${{REDOPS_TEST_API_TOKEN}}\"\n\n{}",
        redis.url(0),
        hook.url(),
        extra(port)
    );
    let rules =
        "[[rule]]\nname = \"marker_set\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"critical\"\n";
    let dir = engine_dir("300ms", &config, &[("marker", rules)], &[("touch", TOUCH)]);
    let mut redops = Redops::start_with_env(dir.path(), &[], &[("REDOPS_TEST_API_TOKEN", TOKEN)]);
    redops.wait_log("API listening", Duration::from_secs(10));
    Engine {
        _dir: dir,
        redops,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// `silence add rule=marker_set` for 2h by ann, through the API at `base`.
fn add_maintenance_silence(base: &str, env: &[(&str, &str)]) -> Ran {
    remote(
        base,
        &[
            "silence",
            "add",
            "rule=marker_set",
            "--duration",
            "2h",
            "--comment",
            "maint",
            "--by",
            "ann",
        ],
        env,
    )
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `redops ARGS --url BASE`, from a directory with no config at all: only
/// the API can answer.
fn remote(base: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--url", base, "--config", "/nonexistent/redops.toml"]);
    let out = run_redops(&all, env);
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn alerts_silences_and_runs_through_a_running_engines_api() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let engine = start(&redis, &hook);
    let base = engine.base.as_str();
    let with_token = [("REDOPS_API_TOKEN", TOKEN)];

    let empty = remote(base, &["alerts", "list"], &[]);
    assert_eq!(empty.code, Some(0), "{}", empty.stderr);
    assert_eq!(empty.stdout.trim(), "no firing alerts");

    redis.cli(&["SET", "marker", "1"]);
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "marker_set", "firing").is_empty()
    });
    let fingerprint = alerts(&got, "marker_set", "firing")[0].body["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    let listed = remote(base, &["alerts", "list"], &[]);
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert!(listed.stdout.contains(&fingerprint[..10]), "{}", listed.stdout);
    assert!(listed.stdout.contains("marker_set"), "{}", listed.stdout);

    // Without the token an ack is refused, clearly, and changes nothing.
    let refused = remote(base, &["alerts", "ack", &fingerprint[..8], "--by", "bob"], &[]);
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--token or REDOPS_API_TOKEN"),
        "{}",
        refused.stderr
    );
    let wrong = remote(base, &["alerts", "ack", &fingerprint[..8], "--token", "not-it"], &[]);
    assert_eq!(wrong.code, Some(1));
    assert!(!wrong.stderr.contains("not-it"), "{}", wrong.stderr);
    let json = remote(base, &["alerts", "list", "--json"], &[]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows[0]["acked_by"], serde_json::Value::Null, "{rows}");

    let acked = remote(
        base,
        &[
            "alerts",
            "ack",
            &fingerprint[..8],
            "--by",
            "bob",
            "--comment",
            "looking",
        ],
        &with_token,
    );
    assert_eq!(acked.code, Some(0), "{}", acked.stderr);
    assert_eq!(
        acked.stdout.trim(),
        format!("acknowledged {fingerprint} as bob; its escalation stops")
    );
    assert!(!acked.stdout.contains(TOKEN) && !acked.stderr.contains(TOKEN));
    let json = remote(base, &["alerts", "list", "--json"], &[]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows[0]["acked_by"], "bob", "{rows}");
    assert_eq!(rows[0]["ack_comment"], "looking", "{rows}");

    // Silences: add, list (text and JSON), expire.
    let refused = remote(
        base,
        &[
            "silence",
            "add",
            "rule=marker_set",
            "--duration",
            "2h",
            "--comment",
            "maint",
        ],
        &[],
    );
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    let none = remote(base, &["silence", "list"], &[]);
    assert_eq!(none.stdout.trim(), "no active silences");
    let added = add_maintenance_silence(base, &with_token);
    assert_eq!(added.code, Some(0), "{}", added.stderr);
    assert!(added.stdout.starts_with("silence "), "{}", added.stdout);
    assert!(added.stdout.contains("rule=marker_set for 2h"), "{}", added.stdout);
    let id = added.stdout["silence ".len()..].split(':').next().unwrap().to_owned();
    let listed = remote(base, &["silence", "list"], &[]);
    assert!(listed.stdout.contains("rule=marker_set"), "{}", listed.stdout);
    assert!(listed.stdout.contains("by ann: maint"), "{}", listed.stdout);
    let json = remote(base, &["silence", "list", "--json"], &[]);
    let list: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(list[0]["id"].to_string(), id, "{list}");
    let bad = remote(base, &["silence", "add", "nope", "--comment", "x"], &with_token);
    assert_eq!(bad.code, Some(2), "a bad matcher is a usage error: {}", bad.stderr);
    let expired = remote(base, &["silence", "expire", &id], &with_token);
    assert_eq!(expired.code, Some(0), "{}", expired.stderr);
    assert_eq!(expired.stdout.trim(), format!("silence {id} expired"));
    let again = remote(base, &["silence", "expire", &id], &with_token);
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains(&format!("no active silence {id}")),
        "{}",
        again.stderr
    );
    let all = remote(base, &["silence", "list", "--all"], &[]);
    assert!(all.stdout.contains("expired"), "{}", all.stdout);

    // Runs: one asked for through the API, then listed and shown.
    let started: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{base}/api/v1/playbooks/touch/run"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "target": "cache" }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let mut shown = None;
    let done = harness::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let ran = remote(base, &["runs", "show", &run_id], &[]);
        let finished = ran.code == Some(0) && ran.stdout.contains("succeeded");
        shown = Some(ran);
        finished
    });
    let shown = shown.unwrap();
    assert!(done, "{} {}", shown.stdout, shown.stderr);
    assert!(
        shown.stdout.contains("touch on cache  succeeded (api)"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("audit:"), "{}", shown.stdout);
    let listed = remote(base, &["runs", "list"], &[]);
    assert!(listed.stdout.starts_with(&run_id), "{}", listed.stdout);
    let json = remote(base, &["runs", "list", "--json", "--limit", "5"], &[]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows[0]["id"], run_id.as_str(), "{rows}");
    let missing = remote(base, &["runs", "show", "nope"], &[]);
    assert_eq!(missing.code, Some(1));
    assert!(missing.stderr.contains("no run `nope`"), "{}", missing.stderr);
    drop(engine);
}

#[test]
fn an_unreachable_engine_is_named_with_exit_code_1() {
    let port = redops::lab::process::free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for args in [&["alerts", "list"][..], &["silence", "list"], &["runs", "list"]] {
        let ran = remote(&base, args, &[]);
        assert_eq!(ran.code, Some(1), "{args:?}: {}", ran.stdout);
        assert!(
            ran.stderr.contains(&format!("cannot reach the engine's API at {base}")),
            "{args:?}: {}",
            ran.stderr
        );
    }
}

/// One of two instances under `[ha]` sharing a lease in `redis`.
fn start_ha(id: &str, redis: &TestRedis, hook: &WebhookReceiver) -> Engine {
    start_with(redis, hook, |port| {
        format!(
            "[ha]\nenabled = true\nlease_on = \"cache\"\nlease_ttl = \"3s\"\ninstance_id = \"{id}\"\n\
             advertise_api = \"localhost:{port}\"\n"
        )
    })
}

fn api(engine: &Engine, path: &str) -> serde_json::Value {
    reqwest::blocking::get(format!("{}{path}", engine.base))
        .and_then(|r| r.json())
        .unwrap_or_default()
}

#[test]
fn silences_and_acks_made_on_one_ha_instance_are_seen_by_the_other() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let a = start_ha("a", &redis, &hook);
    let b = start_ha("b", &redis, &hook);
    let with_token = [("REDOPS_API_TOKEN", TOKEN)];

    let added = add_maintenance_silence(&a.base, &with_token);
    assert_eq!(added.code, Some(0), "{}", added.stderr);
    let on_b = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        api(&b, "/api/v1/silences")
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["comment"] == "maint" && s["created_by"] == "ann"))
    });
    assert!(
        on_b,
        "B never got A's silence: {}\n{}",
        api(&b, "/api/v1/silences"),
        b.redops.output()
    );

    // The alert fires on both instances; B mutes it by A's silence.
    redis.cli(&["SET", "marker", "1"]);
    let firing = |e: &Engine| {
        api(e, "/api/v1/alerts")
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["rule"] == "marker_set").cloned())
    };
    let muted = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        firing(&b).is_some_and(|row| row["silenced"] == true) && firing(&a).is_some()
    });
    assert!(
        muted,
        "B did not mute the alert: {:?}\n{}",
        firing(&b),
        b.redops.output()
    );

    // Acknowledged through A, seen on B.
    let fingerprint = firing(&a).unwrap()["fingerprint"].as_str().unwrap().to_owned();
    let acked = remote(&a.base, &["alerts", "ack", &fingerprint, "--by", "bob"], &with_token);
    assert_eq!(acked.code, Some(0), "{}", acked.stderr);
    let seen = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        firing(&b).is_some_and(|row| row["acked_by"] == "bob")
    });
    assert!(seen, "B never saw A's ack: {:?}\n{}", firing(&b), b.redops.output());
    let listed = remote(&b.base, &["alerts", "list"], &[]);
    assert!(listed.stdout.contains("acked by bob"), "{}", listed.stdout);

    // Expired through B, expired on A.
    let id = api(&b, "/api/v1/silences")[0]["id"].to_string();
    let expired = remote(&b.base, &["silence", "expire", &id], &with_token);
    assert_eq!(expired.code, Some(0), "{}", expired.stderr);
    let gone = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        api(&a, "/api/v1/silences").as_array().is_some_and(Vec::is_empty)
    });
    assert!(gone, "A still has the silence: {}", api(&a, "/api/v1/silences"));

    // Runs are recorded where they ran: a follower says who leads.
    let leader = redis.wait_for_leader(Duration::from_secs(10));
    let (follower, leading) = if leader == "a" { (&b, &a) } else { (&a, &b) };
    let runs = remote(&follower.base, &["runs", "list"], &[]);
    assert_eq!(runs.code, Some(0), "{}", runs.stderr);
    let note = format!("is an HA follower: playbook runs happen on the leader, `{leader}`");
    assert!(runs.stderr.contains(&note), "{}", runs.stderr);
    // The leader's address as it advertises it (`[ha] advertise_api`).
    let advertised = leading.base.replace("127.0.0.1", "localhost");
    assert!(runs.stderr.contains(&advertised), "{}", runs.stderr);
    let runs = remote(&leading.base, &["runs", "list"], &[]);
    assert!(!runs.stderr.contains("HA follower"), "{}", runs.stderr);
}
