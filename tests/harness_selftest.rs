//! Tests of the test harness itself, so a harness bug is not mistaken for a
//! redops bug.

mod harness;

use std::time::{Duration, Instant};

use harness::{TestRedis, WebhookReceiver, wait_until, write_file};

#[test]
fn test_redis_starts_and_answers() {
    let redis = TestRedis::start(&[("maxmemory", "16mb")]);
    assert_eq!(redis.cli(&["PING"]), "PONG");
    assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(redis.cli(&["GET", "k"]), "v");
    assert_eq!(redis.cli(&["GET", "missing"]), "");
    assert_eq!(redis.cli(&["CONFIG", "GET", "maxmemory"]), "maxmemory\n16777216");
    assert!(redis.cli(&["NO-SUCH-COMMAND"]).starts_with("ERR "));

    let mut conn = redis.conn();
    let n: i64 = redis::cmd("INCR").arg("counter").query(&mut conn).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn kill_and_restart_keep_the_port() {
    let redis = TestRedis::start(&[]);
    let port = redis.port();
    redis.cli(&["SET", "k", "v"]);
    redis.process.kill().unwrap();
    assert!(!redis.process.is_running());

    redis.process.restart().unwrap();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cli(&["PING"]), "PONG");
    // `save ""`: a killed server comes back empty.
    assert_eq!(redis.cli(&["GET", "k"]), "");
}

#[tokio::test]
async fn webhook_receiver_records_posts() {
    let receiver = WebhookReceiver::start();
    let sent_at = Instant::now();
    let response = reqwest::Client::new()
        .post(receiver.url())
        .header("x-test", "1")
        .json(&serde_json::json!({ "alert": "memory_critical", "severity": "critical" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let received = receiver.wait_for(Duration::from_secs(5), |r| !r.is_empty());
    let first = &received[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/hook");
    assert_eq!(first.header("X-Test"), Some("1"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.body["alert"], "memory_critical");
    assert!(first.at >= sent_at);

    reqwest::Client::new()
        .post(receiver.url_for("/other"))
        .body("not json")
        .send()
        .await
        .unwrap();
    let received = receiver.wait_for(Duration::from_secs(5), |r| r.len() == 2);
    assert_eq!(received[1].path, "/other");
    assert!(received[1].body.is_null());
    assert_eq!(received[1].raw, b"not json");
}

#[test]
fn wait_for_timeout_explains_what_arrived() {
    let receiver = WebhookReceiver::start();
    let url = receiver.url();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            reqwest::Client::new()
                .post(url)
                .json(&serde_json::json!({ "seen": true }))
                .send()
                .await
                .unwrap();
        })
    })
    .join()
    .unwrap();

    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        receiver.wait_for(Duration::from_millis(100), |r| r.len() >= 2)
    }))
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("POST /hook"), "{message}");
    assert!(message.contains("\"seen\": true"), "{message}");
}

#[tokio::test]
async fn set_response_answers_429_with_retry_after() {
    let receiver = WebhookReceiver::start();
    receiver.set_response(429, Some(2));
    let response = reqwest::Client::new()
        .post(receiver.url())
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");

    receiver.set_status(500);
    let response = reqwest::Client::new().post(receiver.url()).send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn stopped_receiver_refuses_then_restarts_on_the_same_port() {
    let mut receiver = WebhookReceiver::start();
    let port = receiver.port();
    // A keep-alive connection must not survive the stop.
    let client = reqwest::Client::new();
    client.post(receiver.url()).send().await.unwrap();

    receiver.stop();
    assert!(client.post(receiver.url()).send().await.is_err());

    receiver.restart();
    assert_eq!(receiver.port(), port);
    // A fresh client: a pooled connection to the stopped server would fail
    // with "connection closed" however the server behaves.
    reqwest::Client::new().post(receiver.url()).send().await.unwrap();
    assert_eq!(receiver.received().len(), 2);

    receiver.stop();
    let fresh = WebhookReceiver::start_on(port);
    reqwest::Client::new().post(fresh.url()).send().await.unwrap();
    assert_eq!(fresh.received().len(), 1);
}

#[test]
fn write_file_creates_parent_dirs_and_wait_until_polls() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "rules/nested/memory.toml", "[[rule]]\n");
    let path = dir.path().join("rules/nested/memory.toml");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "[[rule]]\n");

    let mut calls = 0;
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(1), || {
        calls += 1;
        calls == 3
    }));
    assert!(!wait_until(Duration::from_millis(20), Duration::from_millis(5), || {
        false
    }));
}
