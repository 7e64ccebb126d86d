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

/// Counts go out only when they change, plus a keepalive: a window with no
/// new events must still slide down and resolve the alert, and a burst must
/// reach the rules within tens of milliseconds at the default tick.
const BURST: &str = r#"
[[rule]]
name = "set_burst"
source = "keyspace"
events = ["set"]
keys = "burst:*"
window = "2s"
when = "count >= 100"
severity = "info"
summary = "{{ count }} burst keys set on {{ target }}"
"#;

/// An engine with `rules` on a server that publishes `set` events, once
/// its subscription is active.
fn start_with_sets(redis: &TestRedis, hook: &WebhookReceiver, rules: &[(&str, &str)]) -> (tempfile::TempDir, Redops) {
    let config = target_and_hook("cache", &redis.url(0), "", &hook.url());
    let dir = engine_dir("1s", &config, rules, &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Keyspace subscription active", Duration::from_secs(10));
    (dir, redops)
}

/// Sets 100 `burst:` keys in one pipeline; returns when it was sent.
fn burst(redis: &TestRedis) -> std::time::Instant {
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("burst:{i}")).arg(1).ignore();
    }
    let sent = std::time::Instant::now();
    let _: () = pipe.query(&mut redis.conn()).unwrap();
    sent
}

#[test]
fn a_quiet_window_resolves_and_a_burst_is_seen_at_once() {
    let redis = TestRedis::start(&[("notify-keyspace-events", "E$")]);
    let hook = WebhookReceiver::start();
    let (_dir, mut redops) = start_with_sets(&redis, &hook, &[("burst", BURST)]);

    let sent = burst(&redis);
    let got = hook.wait_for(Duration::from_secs(5), |r| !alerts(r, "set_burst", "firing").is_empty());
    let fired_after = sent.elapsed();
    assert_eq!(
        alerts(&got, "set_burst", "firing")[0].body["summary"],
        "100 burst keys set on cache"
    );
    // Generous for a loaded test machine; the benchmark measures it properly.
    assert!(fired_after < Duration::from_millis(500), "fired after {fired_after:?}");

    // No event after the burst: only the keepalive can slide the window.
    let got = hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "set_burst", "resolved").is_empty()
    });
    assert_eq!(alerts(&got, "set_burst", "resolved").len(), 1);
    let resolved_after = sent.elapsed();
    assert!(
        resolved_after >= Duration::from_secs(2) && resolved_after < Duration::from_millis(3_500),
        "resolved after {resolved_after:?}: the 2 s window plus at most a keepalive"
    );
    assert!(redops.terminate().success(), "{}", redops.output());
}

const NOISE: &str = r#"
[[rule]]
name = "noise"
source = "keyspace"
events = ["set"]
keys = "noise:*"
window = "1m"
when = "count >= 1000000"
severity = "info"
"#;

/// Each send carries only the counts that moved, and all of them once a
/// second: a rule whose count stands still while another's moves every
/// tick still sees its window slide, and resolves on time.
#[test]
fn a_still_count_is_evaluated_while_another_moves_every_tick() {
    let redis = TestRedis::start(&[("notify-keyspace-events", "E$")]);
    let hook = WebhookReceiver::start();
    let (_dir, mut redops) = start_with_sets(&redis, &hook, &[("burst", BURST), ("noise", NOISE)]);

    let sent = burst(&redis);
    // Noise every few milliseconds until the burst's alert resolves.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise = {
        let (stop, mut conn) = (stop.clone(), redis.conn());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _: () = redis::cmd("SET")
                    .arg(format!("noise:{i}"))
                    .arg(1)
                    .query(&mut conn)
                    .unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            i
        })
    };
    hook.wait_for(Duration::from_secs(5), |r| !alerts(r, "set_burst", "firing").is_empty());
    let got = hook.wait_for(Duration::from_secs(6), |r| {
        !alerts(r, "set_burst", "resolved").is_empty()
    });
    let resolved_after = sent.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let noise_sets = noise.join().unwrap();
    assert_eq!(alerts(&got, "set_burst", "resolved").len(), 1, "{}", hook.describe());
    assert!(
        resolved_after >= Duration::from_secs(2) && resolved_after < Duration::from_millis(3_500),
        "resolved after {resolved_after:?} with {noise_sets} noise keys set meanwhile"
    );
    assert!(noise_sets > 200, "the noise moved its count every tick: {noise_sets}");
    assert!(redops.terminate().success(), "{}", redops.output());
}
