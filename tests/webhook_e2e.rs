//! Webhook delivery against a real HTTP receiver: retries with the same
//! idempotency key, Retry-After honoured, and messages sent by playbooks.

mod harness;

use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, target_and_hook};

const RULES: &str = r#"
[[rule]]
name = "marker_set"
source = "sample"
when = "marker > 0"
severity = "warning"
playbook = "report"
summary = "marker is {{ marker }}"
"#;

const REPORT: &str = r#"
let marker = redis.cmd(["GET", "marker"]);
notify("hook", #{ text: `marker found: ${marker}`, severity: alert.severity });
"#;

fn start(redis: &TestRedis, hook: &WebhookReceiver) -> (tempfile::TempDir, Redops) {
    let config = target_and_hook(
        "cache",
        &redis.url(0),
        "probes = { marker = \"GET marker\" }",
        &hook.url(),
    );
    let dir = engine_dir("500ms", &config, &[("marker", RULES)], &[("report", REPORT)]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));
    (dir, redops)
}

#[test]
fn failed_deliveries_are_retried_with_one_idempotency_key() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    hook.set_status(500);
    let (_dir, mut redops) = start(&redis, &hook);
    redis.cli(&["SET", "marker", "1"]);
    let failed = hook.wait_for(Duration::from_secs(10), |r| {
        alerts(r, "marker_set", "firing").len() >= 2
    });
    hook.set_status(200);
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        alerts(r, "marker_set", "firing").len() > failed.len()
    });
    // The page's attempts; the playbook's update that follows is another
    // notification with its own key.
    let attempts: Vec<_> = alerts(&got, "marker_set", "firing")
        .into_iter()
        .filter(|a| a.body.get("playbook").is_none())
        .collect();
    assert!(attempts.len() >= 2, "{}", hook.describe());
    let key = attempts[0].header("idempotency-key").unwrap();
    assert!(
        attempts.iter().all(|a| a.header("idempotency-key") == Some(key)),
        "{}",
        hook.describe()
    );
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn retry_after_is_honoured() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    hook.set_response(429, Some(2));
    let (_dir, mut redops) = start(&redis, &hook);
    redis.cli(&["SET", "marker", "1"]);
    let first = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "marker_set", "firing").is_empty()
    });
    hook.set_status(200);
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        alerts(r, "marker_set", "firing").len() >= 2
    });
    let attempts = alerts(&got, "marker_set", "firing");
    let gap = attempts[1]
        .at
        .duration_since(alerts(&first, "marker_set", "firing")[0].at);
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?} despite Retry-After: 2"
    );
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn playbooks_send_messages_with_notify() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let (_dir, mut redops) = start(&redis, &hook);
    redis.cli(&["SET", "marker", "42"]);
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        r.iter().any(|m| m.body["kind"] == "message")
    });
    let message = got.iter().find(|m| m.body["kind"] == "message").unwrap();
    assert_eq!(message.body["playbook"], "report");
    assert_eq!(message.body["target"], "cache");
    assert_eq!(message.body["body"]["text"], "marker found: 42");
    assert_eq!(message.body["body"]["severity"], "warning");
    assert_eq!(message.body["version"], "1");
    assert!(redops.terminate().success(), "{}", redops.output());
}
