//! The HTTP API of a running engine: reads, token-guarded writes, request
//! limits, and the refusal to listen beyond loopback without a token.

mod harness;

use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, run_redops};

const TOKEN: &str = "api-token-for-the-test-0123456789";

/// The shipped backup playbook, so the catalog holds what users get.
const BACKUP: &str = include_str!("../playbooks/backup.rhai");
/// A playbook with one write, to see it performed or only recorded.
const TOUCH: &str = "redis.cmd([\"SET\", \"touched\", params.get(\"value\") ?? \"1\"]);\n\"touched\"";

fn start(redis: &TestRedis, hook: &WebhookReceiver) -> (tempfile::TempDir, Redops, String) {
    let port = redops::lab::process::free_port().unwrap();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"${{REDOPS_TEST_API_TOKEN}}\"\nmax_body_bytes = 1024\n",
        redis.url(0),
        hook.url()
    );
    let rules =
        "[[rule]]\nname = \"marker_set\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"critical\"\n";
    let dir = engine_dir(
        "300ms",
        &config,
        &[("marker", rules)],
        &[("touch", TOUCH), ("backup", BACKUP), ("slow", "sleep(1.5);")],
    );
    let mut redops = Redops::start_with_env(dir.path(), &[], &[("REDOPS_TEST_API_TOKEN", TOKEN)]);
    redops.wait_log("API listening", Duration::from_secs(10));
    (dir, redops, format!("http://127.0.0.1:{port}"))
}

#[test]
fn reads_are_open_writes_need_the_token() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let (_dir, mut redops, base) = start(&redis, &hook);
    let http = reqwest::blocking::Client::new();
    std::thread::sleep(Duration::from_millis(800));

    let health = http.get(format!("{base}/health")).send().unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<serde_json::Value>().unwrap()["status"], "ok");
    let redis_health: serde_json::Value = http.get(format!("{base}/health/redis")).send().unwrap().json().unwrap();
    assert_eq!(redis_health["targets"]["cache"]["up"], true, "{redis_health}");
    let metrics = http.get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    assert!(
        metrics.contains("redops_memory_used_ratio{target=\"cache\",instance=\"127.0.0.1:"),
        "{metrics}"
    );
    assert!(
        metrics.contains("redops_events_received_total{source=\"sample\",target=\"cache\"}"),
        "{metrics}"
    );
    let targets: serde_json::Value = http
        .get(format!("{base}/api/v1/targets"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(targets["cache"]["metrics"]["used_memory"].is_number(), "{targets}");

    let silence = serde_json::json!({ "matchers": ["rule=marker_set"], "duration": "1h", "comment": "test" });
    let no_token = http
        .post(format!("{base}/api/v1/silences"))
        .json(&silence)
        .send()
        .unwrap();
    assert_eq!(no_token.status(), 401);
    assert!(no_token.text().unwrap().contains("Authorization"));
    let wrong = http
        .post(format!("{base}/api/v1/silences"))
        .bearer_auth("nope")
        .json(&silence)
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let created = http
        .post(format!("{base}/api/v1/silences"))
        .bearer_auth(TOKEN)
        .json(&silence)
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().unwrap()["id"].as_i64().unwrap();
    let listed: serde_json::Value = http
        .get(format!("{base}/api/v1/silences"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed[0]["id"], id);
    let deleted = http
        .delete(format!("{base}/api/v1/silences/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(deleted.status(), 200);

    let huge = serde_json::json!({ "matchers": ["rule=x"], "duration": "1h", "comment": "x".repeat(4096) });
    let too_big = http
        .post(format!("{base}/api/v1/silences"))
        .bearer_auth(TOKEN)
        .json(&huge)
        .send()
        .unwrap();
    assert_eq!(too_big.status(), 413);
    let bad = http
        .post(format!("{base}/api/v1/silences"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "matchers": ["nope"], "duration": "1h", "comment": "c" }))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("not a matcher"));

    redis.cli(&["SET", "marker", "1"]);
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "marker_set", "firing").is_empty()
    });
    let fingerprint = alerts(&got, "marker_set", "firing")[0].body["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let unauth = http
        .post(format!("{base}/api/v1/alerts/{fingerprint}/ack"))
        .send()
        .unwrap();
    assert_eq!(unauth.status(), 401);
    let acked = http
        .post(format!("{base}/api/v1/alerts/{fingerprint}/ack"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "by": "bob", "comment": "looking" }))
        .send()
        .unwrap();
    assert_eq!(acked.status(), 200);
    let list: serde_json::Value = http
        .get(format!("{base}/api/v1/alerts"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list[0]["acked_by"], "bob");
    let metrics = http.get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    assert!(
        metrics.contains("redops_alert_changes_total{state=\"firing\",severity=\"critical\"} 1"),
        "{metrics}"
    );
    let missing = http.get(format!("{base}/nope")).send().unwrap();
    assert_eq!(missing.status(), 404);
    // The token never shows in logs.
    assert!(!redops.output().contains(TOKEN));
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn a_non_loopback_bind_without_a_token_refuses_to_start() {
    let dir = engine_dir(
        "1s",
        "[[target]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:1/0\"\n\n[api]\nlisten = \"0.0.0.0:9187\"\n",
        &[],
        &[],
    );
    let config = dir.path().join("redops.toml");
    let out = run_redops(&["run", "--config", config.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to expose the API without authentication"),
        "{stderr}"
    );
}

/// Polls a run until it is no longer `running`; panics with what was seen.
fn finished_run(http: &reqwest::blocking::Client, base: &str, id: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let done = harness::wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let reply = http.get(format!("{base}/api/v1/runs/{id}")).send().unwrap();
        if reply.status() != 200 {
            return false;
        }
        last = reply.json().unwrap();
        last["outcome"] != "running"
    });
    assert!(done, "run {id} did not finish: {last}");
    last
}

fn ask_run(
    http: &reqwest::blocking::Client,
    base: &str,
    playbook: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> reqwest::blocking::Response {
    let request = http.post(format!("{base}/api/v1/playbooks/{playbook}/run")).json(&body);
    match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    }
    .send()
    .unwrap()
}

#[test]
fn playbooks_run_through_the_api_and_their_runs_and_backups_are_listed() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let (_dir, mut redops, base) = start(&redis, &hook);
    let http = reqwest::blocking::Client::new();
    let body = serde_json::json!({ "target": "cache", "params": { "value": "from-api" }, "dry_run": true });

    let no_token = ask_run(&http, &base, "touch", None, body.clone());
    assert_eq!(no_token.status(), 401);
    let wrong = ask_run(&http, &base, "touch", Some("wrong"), body.clone());
    assert_eq!(wrong.status(), 401);
    let unknown_playbook = ask_run(&http, &base, "nope", Some(TOKEN), body.clone());
    assert_eq!(unknown_playbook.status(), 404);
    assert!(unknown_playbook.text().unwrap().contains("known: backup, slow, touch"));
    let unknown_target = ask_run(
        &http,
        &base,
        "touch",
        Some(TOKEN),
        serde_json::json!({ "target": "elsewhere" }),
    );
    assert_eq!(unknown_target.status(), 404);
    assert!(unknown_target.text().unwrap().contains("no target named `elsewhere`"));
    let null_param = ask_run(
        &http,
        &base,
        "touch",
        Some(TOKEN),
        serde_json::json!({ "target": "cache", "params": { "value": null } }),
    );
    assert_eq!(null_param.status(), 400);
    let unknown_field = ask_run(
        &http,
        &base,
        "touch",
        Some(TOKEN),
        serde_json::json!({ "target": "cache", "dryrun": true }),
    );
    assert_eq!(unknown_field.status(), 422);

    // A dry run records the write and does not perform it.
    let accepted = ask_run(&http, &base, "touch", Some(TOKEN), body);
    assert_eq!(accepted.status(), 202);
    let accepted: serde_json::Value = accepted.json().unwrap();
    let dry_id = accepted["run_id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["url"], format!("/api/v1/runs/{dry_id}"));
    let dry = finished_run(&http, &base, &dry_id);
    assert_eq!(dry["outcome"], "succeeded", "{dry}");
    assert_eq!(
        (dry["trigger"].as_str(), dry["dry_run"].as_bool()),
        (Some("api"), Some(true))
    );
    assert_eq!(dry["params"]["value"], "from-api");
    assert_eq!(dry["audit"][0]["detail"], "SET touched from-api", "{dry}");
    assert_eq!(dry["audit"][0]["dry_run"], true);
    assert_eq!(redis.cli(&["GET", "touched"]), "");

    // A real run performs it.
    let real = ask_run(
        &http,
        &base,
        "touch",
        Some(TOKEN),
        serde_json::json!({ "target": "cache", "params": { "value": "for-real" } }),
    );
    assert_eq!(real.status(), 202);
    let real_id = real.json::<serde_json::Value>().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(finished_run(&http, &base, &real_id)["outcome"], "succeeded");
    assert_eq!(redis.cli(&["GET", "touched"]), "for-real");

    // The shipped backup playbook fills the catalog.
    let backup = ask_run(
        &http,
        &base,
        "backup",
        Some(TOKEN),
        serde_json::json!({ "target": "cache", "params": { "kind": "rdb" } }),
    );
    assert_eq!(backup.status(), 202);
    let backup_id = backup.json::<serde_json::Value>().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let backup_run = finished_run(&http, &base, &backup_id);
    assert_eq!(backup_run["outcome"], "succeeded", "{backup_run}");
    let backups: serde_json::Value = http
        .get(format!("{base}/api/v1/backups"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(backups.as_array().map(Vec::len), Some(1), "{backups}");
    assert_eq!(
        (backups[0]["target"].as_str(), backups[0]["kind"].as_str()),
        (Some("cache"), Some("rdb"))
    );
    let elsewhere: serde_json::Value = http
        .get(format!("{base}/api/v1/backups?target=elsewhere"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(elsewhere, serde_json::json!([]));

    // Newest first, without the audit, which the single run has.
    let runs: serde_json::Value = http.get(format!("{base}/api/v1/runs")).send().unwrap().json().unwrap();
    let ids: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [backup_id.as_str(), real_id.as_str(), dry_id.as_str()], "{runs}");
    assert!(runs[0].get("audit").is_none(), "{runs}");
    assert_eq!(runs[2]["audit_entries"], 1, "{runs}");
    let limited: serde_json::Value = http
        .get(format!("{base}/api/v1/runs?limit=1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(limited.as_array().map(Vec::len), Some(1));
    let bad_limit = http.get(format!("{base}/api/v1/runs?limit=0")).send().unwrap();
    assert_eq!(bad_limit.status(), 400);
    assert!(bad_limit.text().unwrap().contains("limit must be between 1 and"));
    let not_a_number = http.get(format!("{base}/api/v1/runs?limit=many")).send().unwrap();
    assert_eq!(not_a_number.status(), 400);
    assert!(not_a_number.json::<serde_json::Value>().unwrap()["error"].is_string());
    let missing = http.get(format!("{base}/api/v1/runs/nope")).send().unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().unwrap().contains("no run `nope`"));

    // One run by hand per target at a time; the second id still leads to a
    // stored run that says why it did not start.
    let slow = serde_json::json!({ "target": "cache" });
    let first = ask_run(&http, &base, "slow", Some(TOKEN), slow.clone());
    let second = ask_run(&http, &base, "slow", Some(TOKEN), slow);
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (202, 202));
    let second_id = second.json::<serde_json::Value>().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let skipped = finished_run(&http, &base, &second_id);
    assert_eq!(
        (skipped["outcome"].as_str(), skipped["trigger"].as_str()),
        (Some("failed"), Some("api")),
        "{skipped}"
    );
    assert!(
        skipped["detail"].as_str().unwrap().contains("already running"),
        "{skipped}"
    );
    let first_id = first.json::<serde_json::Value>().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(finished_run(&http, &base, &first_id)["outcome"], "succeeded");

    // No Sentinel group configured: an empty list.
    let sentinels: serde_json::Value = http
        .get(format!("{base}/api/v1/sentinels"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(sentinels, serde_json::json!([]));
    assert!(!redops.output().contains(TOKEN));
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn write_endpoints_are_off_without_a_configured_token() {
    let redis = TestRedis::start(&[]);
    let port = redops::lab::process::free_port().unwrap();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n",
        redis.url(0)
    );
    let dir = engine_dir("1s", &config, &[], &[("touch", TOUCH)]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("API listening", Duration::from_secs(10));
    let http = reqwest::blocking::Client::new();
    let reply = ask_run(
        &http,
        &format!("http://127.0.0.1:{port}"),
        "touch",
        Some("anything"),
        serde_json::json!({ "target": "cache" }),
    );
    assert_eq!(reply.status(), 403);
    assert!(reply.text().unwrap().contains("write endpoints are off"));
    assert_eq!(redis.cli(&["GET", "touched"]), "");
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn sentinel_groups_show_master_replicas_sentinels_and_quorum() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = redops::lab::topology::Topology::start(lab_dir.path()).unwrap();
    let port = redops::lab::process::free_port().unwrap();
    let sentinels: Vec<String> = lab.sentinel_addrs().iter().map(|a| format!("\"{a}\"")).collect();
    let config = format!(
        "[[sentinel]]\nname = \"lab\"\nmaster = \"{}\"\nsentinels = [{}]\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n",
        redops::lab::topology::MASTER_NAME,
        sentinels.join(", ")
    );
    let dir = engine_dir("500ms", &config, &[], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("API listening", Duration::from_secs(10));
    let groups: serde_json::Value = reqwest::blocking::get(format!("http://127.0.0.1:{port}/api/v1/sentinels"))
        .unwrap()
        .json()
        .unwrap();
    let group = &groups[0];
    assert_eq!(group["group"], "lab", "{groups}");
    assert_eq!(group["master"], lab.master_addr(), "{groups}");
    assert_eq!(group["replicas"][0]["addr"], lab.replica_addr(), "{groups}");
    assert_eq!(group["quorum"], 2, "{groups}");
    assert_eq!(group["quorum_ok"], true, "{groups}");
    assert_eq!(group["sentinels_reachable"], 3, "{groups}");
    assert_eq!(group["problems"], serde_json::json!([]), "{groups}");
    assert!(redops.terminate().success(), "{}", redops.output());
}
