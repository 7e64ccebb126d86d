//! Alertmanager's webhook receiver (`POST /api/v1/alertmanager`) on a
//! running engine with a real redis-server target: a firing alert runs its
//! route's playbook once, a re-sent one does not, a resolved one runs
//! nothing; the token, the command policy and `--dry-run` hold as for
//! redops's own rules. The payloads in tests/fixtures/alertmanager are
//! written from Alertmanager's documented webhook format (version 4).

mod harness;

use std::time::Duration;

use harness::{Redops, TestRedis, engine_dir, run_redops, wait_until};
use serde_json::Value;

const TOKEN: &str = "am-hook-token-for-the-test-0123456789";
const FIRING: &str = include_str!("fixtures/alertmanager/firing.json");
const RESOLVED: &str = include_str!("fixtures/alertmanager/resolved.json");
/// An alert no route matches, and a new firing of FIRING's alert.
const MIXED: &str = include_str!("fixtures/alertmanager/mixed.json");

/// Counts its runs in Redis and keeps what it was told about the alert.
const COUNT: &str = r#"
redis.cmd(["INCR", "am_runs"]);
redis.cmd(["SET", "am_alert", alert.rule + " " + alert.labels.instance + " " + alert.severity]);
redis.cmd(["SET", "am_param", params.get("marker") ?? "none"]);
"counted"
"#;

/// What a route with a destructive command gets.
const FLUSH: &str = r#"
redis.cmd(["FLUSHALL"]);
"flushed"
"#;

struct Engine {
    _dir: tempfile::TempDir,
    redops: Redops,
    base: String,
    config: String,
}

fn start(redis: &TestRedis, routes: &str, args: &[&str]) -> Engine {
    let port = redops::lab::process::free_port().unwrap();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"${{REDOPS_TEST_API_TOKEN}}\"\n\n{routes}",
        redis.url(0),
    );
    let dir = engine_dir("300ms", &config, &[], &[("count", COUNT), ("flush", FLUSH)]);
    let mut redops = Redops::start_with_env(dir.path(), args, &[("REDOPS_TEST_API_TOKEN", TOKEN)]);
    redops.wait_log("API listening", Duration::from_secs(10));
    let config = dir.path().join("redops.toml").display().to_string();
    Engine {
        _dir: dir,
        redops,
        base: format!("http://127.0.0.1:{port}"),
        config,
    }
}

const COUNT_ROUTE: &str = "[[alertmanager.route]]\n\
    match = [\"alertname=RedisOutOfConfiguredMaxmemory\", \"instance=~.+:[0-9]+\"]\n\
    playbook = \"count\"\n\
    target = \"{{ labels.instance }}\"\n\
    params = { marker = \"from-am\" }\n";

fn payload(template: &str, redis: &TestRedis) -> String {
    template.replace("__INSTANCE__", &format!("127.0.0.1:{}", redis.port()))
}

fn post(engine: &Engine, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/alertmanager", engine.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn get(engine: &Engine, path: &str) -> Value {
    reqwest::blocking::get(format!("{}{path}", engine.base))
        .unwrap()
        .json()
        .unwrap()
}

/// Waits until the run is stored with an outcome other than `running`.
fn finished_run(engine: &Engine, run_id: &str) -> Value {
    let mut run = Value::Null;
    let done = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        run = get(engine, &format!("/api/v1/runs/{run_id}"));
        run["outcome"].as_str().is_some_and(|o| o != "running")
    });
    assert!(done, "run {run_id} did not finish: {run}\n{}", engine.redops.output());
    run
}

fn get_key(redis: &TestRedis, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(&mut redis.conn()).unwrap()
}

#[test]
fn a_firing_alert_runs_its_playbook_once_and_resolved_or_unmatched_alerts_run_nothing() {
    let redis = TestRedis::start(&[]);
    let engine = start(&redis, COUNT_ROUTE, &[]);
    let firing = payload(FIRING, &redis);

    let (status, body) = post(&engine, &firing, None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(&engine, &firing, Some("not-the-token"));
    assert_eq!(status, 401, "{body}");
    assert_eq!(get_key(&redis, "am_runs"), None, "nothing runs without the token");

    let (status, body) = post(&engine, &firing, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["received"], 1, "{body}");
    let started = &body["started"][0];
    assert_eq!(started["playbook"], "count", "{body}");
    assert_eq!(
        started["target"], "cache",
        "the instance label resolves to the target: {body}"
    );
    assert_eq!(started["fingerprint"], "3f2b9a1c7d4e5f60", "{body}");
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let run = finished_run(&engine, &run_id);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(run["trigger"], "alertmanager", "{run}");
    assert_eq!(run["params"]["marker"], "from-am", "{run}");
    assert_eq!(get_key(&redis, "am_runs").as_deref(), Some("1"));
    assert_eq!(
        get_key(&redis, "am_alert"),
        Some(format!(
            "RedisOutOfConfiguredMaxmemory 127.0.0.1:{} critical",
            redis.port()
        )),
        "the playbook sees the Alertmanager alert"
    );

    // Alertmanager sends the group again every group_interval.
    let (status, body) = post(&engine, &firing, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["started"], serde_json::json!([]), "{body}");
    assert_eq!(body["skipped"][0]["outcome"], "duplicate", "{body}");
    assert_eq!(body["skipped"][0]["run_id"], run_id.as_str(), "{body}");

    let (status, body) = post(&engine, &payload(RESOLVED, &redis), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["started"], serde_json::json!([]), "{body}");
    assert_eq!(body["skipped"][0]["outcome"], "resolved", "{body}");

    // An unmatched alert and a new firing of the first: only the firing
    // runs. The runner takes requests in order, so once this run is done
    // any run the duplicate or the resolve had queued would be too.
    let (status, body) = post(&engine, &payload(MIXED, &redis), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unmatched"], 1, "{body}");
    assert_eq!(body["skipped"][0]["alertname"], "RedisTooManyConnections", "{body}");
    assert_eq!(body["skipped"][0]["outcome"], "unmatched", "{body}");
    let second = body["started"][0]["run_id"].as_str().unwrap().to_owned();
    assert_ne!(second, run_id, "a new firing is a new run");
    assert_eq!(finished_run(&engine, &second)["outcome"], "succeeded");
    assert_eq!(
        get_key(&redis, "am_runs").as_deref(),
        Some("2"),
        "{}",
        engine.redops.output()
    );
    let runs = get(&engine, "/api/v1/runs");
    let from_am = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"] == "alertmanager")
        .count();
    assert_eq!(from_am, 2, "{runs}");

    let metrics = reqwest::blocking::get(format!("{}/metrics", engine.base))
        .unwrap()
        .text()
        .unwrap();
    for (outcome, n) in [("started", 2), ("duplicate", 1), ("resolved", 1), ("unmatched", 1)] {
        let line = format!("redops_alertmanager_alerts_total{{outcome=\"{outcome}\"}} {n}");
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }

    // `redops runs` shows where the runs came from.
    let listed = run_redops(
        &["runs", "list", "--config", &engine.config],
        &[("REDOPS_TEST_API_TOKEN", TOKEN)],
    );
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(
        stdout.matches("count on cache  succeeded (alertmanager)").count(),
        2,
        "{stdout}"
    );
}

#[test]
fn a_re_sent_firing_does_not_run_again_after_a_restart() {
    let redis = TestRedis::start(&[]);
    let mut engine = start(&redis, COUNT_ROUTE, &[]);
    let firing = payload(FIRING, &redis);
    let (_, body) = post(&engine, &firing, Some(TOKEN));
    let run_id = body["started"][0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(finished_run(&engine, &run_id)["outcome"], "succeeded");
    assert!(engine.redops.terminate().success());
    let dir = engine._dir.path().to_path_buf();
    engine.redops = Redops::start_with_env(&dir, &[], &[("REDOPS_TEST_API_TOKEN", TOKEN)]);
    engine.redops.wait_log("API listening", Duration::from_secs(10));
    let (status, body) = post(&engine, &firing, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["skipped"][0]["outcome"], "duplicate", "{body}");
    assert_eq!(get_key(&redis, "am_runs").as_deref(), Some("1"));
}

#[test]
fn a_destructive_command_is_denied_and_a_dry_run_engine_does_not_touch_redis() {
    let redis = TestRedis::start(&[]);
    redis.cli(&["SET", "precious", "1"]);
    let flush_route = "[[alertmanager.route]]\nmatch = [\"alertname=RedisOutOfConfiguredMaxmemory\"]\n\
                       playbook = \"flush\"\ntarget = \"cache\"\n";
    let engine = start(&redis, flush_route, &[]);
    let (_, body) = post(&engine, &payload(FIRING, &redis), Some(TOKEN));
    let run_id = body["started"][0]["run_id"].as_str().unwrap().to_owned();
    let run = finished_run(&engine, &run_id);
    assert_eq!(run["outcome"], "failed", "{run}");
    assert!(run["detail"].as_str().unwrap().contains("FLUSHALL"), "{run}");
    assert_eq!(
        get_key(&redis, "precious").as_deref(),
        Some("1"),
        "the policy kept the data"
    );
    drop(engine);

    let engine = start(&redis, COUNT_ROUTE, &["--dry-run"]);
    let (_, body) = post(&engine, &payload(FIRING, &redis), Some(TOKEN));
    assert_eq!(
        body["started"][0]["dry_run"], false,
        "the route asks for no dry run: {body}"
    );
    let run_id = body["started"][0]["run_id"].as_str().unwrap().to_owned();
    let run = finished_run(&engine, &run_id);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(run["dry_run"], true, "{run}");
    let audit = run["audit"].as_array().unwrap();
    assert!(!audit.is_empty() && audit.iter().all(|e| e["dry_run"] == true), "{run}");
    assert_eq!(get_key(&redis, "am_runs"), None, "a dry run performs nothing");
}

#[test]
fn check_names_the_place_of_an_unknown_playbook_a_bad_matcher_and_an_unknown_target() {
    let routes = "[[alertmanager.route]]\n\
                  match = [\"alertname=A\", \"instance=~(\"]\n\
                  playbook = \"count\"\n\
                  target = \"cache\"\n\n\
                  [[alertmanager.route]]\n\
                  match = [\"alertname=B\"]\n\
                  playbook = \"optimise_memory\"\n\
                  target = \"nowhere\"\n";
    let config = format!("[[target]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:1/0\"\n\n{routes}");
    let dir = engine_dir("1s", &config, &[], &[("count", COUNT), ("optimize_memory", "\"ok\"")]);
    let path = dir.path().join("redops.toml");
    let out = run_redops(&["check", "--config", path.to_str().unwrap()], &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    let line_of = |needle: &str| {
        let file = std::fs::read_to_string(&path).unwrap();
        file.lines().position(|l| l.contains(needle)).unwrap() + 1
    };
    let at = |needle: &str| format!("{}:{}:", path.display(), line_of(needle));
    assert!(text.contains("invalid regex `(`"), "{text}");
    assert!(text.contains(&at("instance=~(")), "{text}");
    assert!(
        text.contains("names playbook `optimise_memory`, which does not exist"),
        "{text}"
    );
    assert!(text.contains("did you mean `optimize_memory`?"), "{text}");
    assert!(text.contains(&at("optimise_memory")), "{text}");
    assert!(
        text.contains("names target `nowhere`, which is not configured"),
        "{text}"
    );
    assert!(text.contains(&at("\"nowhere\"")), "{text}");
}

/// One of two instances under `[ha]` with the lease in `redis`.
fn start_ha(redis: &TestRedis, id: &str) -> Engine {
    let ha = format!(
        "{COUNT_ROUTE}\n[ha]\nenabled = true\nlease_on = \"cache\"\nlease_ttl = \"3s\"\ninstance_id = \"{id}\"\n"
    );
    start(redis, &ha, &[])
}

#[test]
fn under_ha_a_follower_passes_the_post_to_the_leader_and_the_firing_runs_once() {
    let redis = TestRedis::start(&[]);
    let a = start_ha(&redis, "a");
    let b = start_ha(&redis, "b");
    let leader = redis.wait_for_leader(Duration::from_secs(10));
    let (leading, following) = if leader == "a" { (&a, &b) } else { (&b, &a) };
    let firing = payload(FIRING, &redis);

    let (status, body) = post(following, &firing, None);
    assert_eq!(status, 401, "a follower wants the token too: {body}");
    let (status, body) = post(following, &firing, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["forwarded_to"]["leader"], leader.as_str(), "{body}");
    let run_id = body["started"][0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(finished_run(leading, &run_id)["outcome"], "succeeded");

    // Alertmanager posting to every instance: the firing still runs once.
    for engine in [leading, following] {
        let (status, body) = post(engine, &firing, Some(TOKEN));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["skipped"][0]["outcome"], "duplicate", "{body}");
    }
    assert_eq!(get_key(&redis, "am_runs").as_deref(), Some("1"));
}
