//! The HTTP API of a running engine: reads, token-guarded writes, request
//! limits, and the refusal to listen beyond loopback without a token.

mod harness;

use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, run_redops};

const TOKEN: &str = "api-token-for-the-test-0123456789";

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
    let dir = engine_dir("300ms", &config, &[("marker", rules)], &[]);
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
        metrics.contains("redis_memory_used_pct{target=\"cache\",role=\"master\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("redops_events_received_total{source=\"sample\"}"),
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
        metrics.contains("redops_alert_changes_total{state=\"firing\"} 1"),
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
