//! A target killed with SIGKILL and restarted: RedisDown fires and resolves,
//! the keyspace subscription comes back and redops sets its flags again.

mod harness;

use std::time::{Duration, Instant};

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, target_and_hook};

const RULES: &str = r#"
[[rule]]
name = "redis_down"
source = "health"
when = "redis_up == 0"
severity = "critical"
summary = "Redis target {{ target }} is down: {{ reason }}"

[[rule]]
name = "writes_seen"
source = "keyspace"
events = ["set"]
keys = "probe:*"
window = "1m"
when = "count >= 5"
severity = "info"
summary = "{{ count }} writes on {{ target }}"
"#;

const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

fn write_probes(redis: &TestRedis, n: usize) {
    let mut conn = redis.conn();
    for i in 0..n {
        let _: () = redis::cmd("SET")
            .arg(format!("probe:{i}"))
            .arg(i)
            .query(&mut conn)
            .unwrap();
    }
}

#[test]
fn sigkill_fires_redis_down_and_restart_resolves_and_resubscribes() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let config = target_and_hook("cache", &redis.url(0), "keyspace_events = \"E$\"", &hook.url());
    let dir = engine_dir("1s", &config, &[("health", RULES)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Keyspace subscription active", Duration::from_secs(10));

    redis.process.kill().unwrap();
    let killed = Instant::now();
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "redis_down", "firing").is_empty()
    });
    let down = alerts(&got, "redis_down", "firing")[0];
    let latency = down.at.duration_since(killed);
    assert!(latency <= 2 * SAMPLE_INTERVAL, "RedisDown took {latency:?}");
    let summary = down.body["summary"].as_str().unwrap();
    assert!(summary.starts_with("Redis target cache is down: "), "{summary}");

    // The restarted server has lost the flags redops set (they were not in its config file).
    redis.process.restart().unwrap();
    hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "redis_down", "resolved").is_empty()
    });
    let reapplied = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let flags = redis.cli(&["CONFIG", "GET", "notify-keyspace-events"]);
        flags.contains('E') && flags.contains('$')
    });
    assert!(reapplied, "flags not re-applied:\n{}", redops.output());
    // Wait for the new subscription, not the first one.
    let resubscribed = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        redops.output().contains("reconnect=true")
    });
    assert!(resubscribed, "no new subscription:\n{}", redops.output());

    write_probes(&redis, 5);
    hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "writes_seen", "firing").is_empty()
    });
    assert_eq!(
        alerts(&hook.received(), "redis_down", "firing").len(),
        1,
        "{}",
        hook.describe()
    );
    assert!(redops.terminate().success(), "{}", redops.output());
}
