//! Keyspace rules on a real redis-server: evictions counted in a sliding
//! window, with the notification flags set by redops itself.

mod harness;

use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, target_and_hook};

const RULE: &str = r#"
[[rule]]
name = "eviction_storm"
source = "keyspace"
events = ["evicted"]
keys = "cache:*"
window = "1m"
when = "count > 1000"
severity = "high"
summary = "{{ count }} keys evicted in the last minute on {{ target }}"
"#;

fn evicted_keys(redis: &TestRedis) -> u64 {
    let stats = redis.cli(&["INFO", "stats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Writes 1 KiB `cache:` keys until Redis has evicted at least `n` keys.
fn evict_at_least(redis: &TestRedis, n: u64) -> u64 {
    let mut conn = redis.conn();
    let value = "v".repeat(1024);
    let mut i = 0u64;
    loop {
        let mut pipe = redis::pipe();
        for _ in 0..50 {
            pipe.cmd("SET").arg(format!("cache:{i}")).arg(&value).ignore();
            i += 1;
        }
        let _: () = pipe.query(&mut conn).unwrap();
        let evicted = evicted_keys(redis);
        if evicted >= n {
            return evicted;
        }
    }
}

fn start(redis: &TestRedis, hook: &WebhookReceiver) -> (tempfile::TempDir, Redops) {
    // redops, not the test, turns on keyevent notifications for evictions.
    let config = target_and_hook("cache", &redis.url(0), "keyspace_events = \"Ee\"", &hook.url());
    let dir = engine_dir("1s", &config, &[("evictions", RULE)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Keyspace subscription active", Duration::from_secs(10));
    (dir, redops)
}

#[test]
fn two_thousand_evictions_in_a_minute_fire_the_storm_rule() {
    let redis = TestRedis::start(&[("maxmemory", "2mb"), ("maxmemory-policy", "allkeys-random")]);
    let hook = WebhookReceiver::start();
    let (_dir, mut redops) = start(&redis, &hook);
    let flags = redis.cli(&["CONFIG", "GET", "notify-keyspace-events"]);
    assert!(flags.contains('E') && flags.contains('e'), "flags not set: {flags}");

    let evicted = evict_at_least(&redis, 2000);
    let got = hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "eviction_storm", "firing").is_empty()
    });
    let alert = alerts(&got, "eviction_storm", "firing")[0];
    let count: u64 = alert.body["summary"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        count > 1000 && count <= evicted,
        "counted {count} of {evicted} evictions"
    );
    assert_eq!(alert.body["severity"], "high");
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn ten_evictions_do_not_fire() {
    let redis = TestRedis::start(&[("maxmemory", "2mb"), ("maxmemory-policy", "allkeys-random")]);
    let hook = WebhookReceiver::start();
    let (_dir, mut redops) = start(&redis, &hook);

    let evicted = evict_at_least(&redis, 10);
    assert!(
        evicted < 1000,
        "the setup evicted {evicted} keys, too many for this test"
    );
    // Several evaluation ticks pass with the count in the window.
    std::thread::sleep(Duration::from_secs(2));
    assert!(hook.received().is_empty(), "{}", hook.describe());
    let log = redops.output();
    assert!(redops.terminate().success(), "{log}");
}

#[test]
fn a_server_that_denies_config_set_gets_a_clear_warning() {
    let redis = TestRedis::start(&[("rename-command", "CONFIG \"\"")]);
    let hook = WebhookReceiver::start();
    let config = target_and_hook("cache", &redis.url(0), "keyspace_events = \"Ee\"", &hook.url());
    let dir = engine_dir("1s", &config, &[("evictions", RULE)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    let log = redops.wait_log("Cannot set notify-keyspace-events", Duration::from_secs(10));
    assert!(log.contains("target=cache") && log.contains("wanted=\"Ee\""), "{log}");
    // The subscription still starts: a server configured by hand keeps working.
    redops.wait_log("Keyspace subscription active", Duration::from_secs(10));
    assert!(redops.terminate().success(), "{}", redops.output());
}
