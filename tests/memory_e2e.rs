//! A memory threshold on a real redis-server, through every layer: sample,
//! rule, playbook, webhook — and back to resolved.

mod harness;

use std::time::{Duration, Instant};

use harness::{OPTIMIZE_MEMORY, Redops, TestRedis, WebhookReceiver, alerts, engine_dir, target_and_hook};

const RULE: &str = r#"
[[rule]]
name = "memory_critical"
source = "sample"
when = "memory_used_pct > 85"
clear = "memory_used_pct < 80"
for = "2s"
severity = "critical"
labels = { family = "memory" }
playbook = "optimize_memory"
params = { force = true }
summary = "Memory at {{ memory_used_pct }}% of maxmemory on {{ target }}"
runbook = "https://runbooks.example.com/redis/high-memory"
"#;

#[test]
fn memory_critical_fires_runs_optimize_memory_and_resolves() {
    let redis = TestRedis::start(&[("maxmemory", "16mb"), ("maxmemory-policy", "noeviction")]);
    let hook = WebhookReceiver::start();
    let config = target_and_hook(
        "cache",
        &redis.url(0),
        "labels = { service = \"django-cache\", env = \"test\" }",
        &hook.url(),
    );
    let dir = engine_dir(
        "1s",
        &config,
        &[("memory", RULE)],
        &[("optimize_memory", OPTIMIZE_MEMORY)],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));

    harness::fill_memory_to(&mut redis.conn(), 88.0);
    let crossed = Instant::now();
    let firing = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "memory_critical", "firing").is_empty()
    });
    let firing = alerts(&firing, "memory_critical", "firing")[0].clone();
    let latency = firing.at.duration_since(crossed);
    // One sample interval (1 s) plus 1 s of slack past the 2 s `for` window.
    assert!(
        latency <= Duration::from_secs(4),
        "fired {latency:?} after the crossing"
    );

    let body = &firing.body;
    assert_eq!(body["version"], "1");
    assert_eq!(body["target"], "cache");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["labels"]["service"], "django-cache");
    assert_eq!(body["labels"]["family"], "memory");
    assert_eq!(body["runbook"], "https://runbooks.example.com/redis/high-memory");
    assert!(body["ends_at"].is_null(), "{body}");
    assert!(body["starts_at"].as_str().unwrap().ends_with('Z'), "{body}");
    assert_eq!(body["fingerprint"].as_str().unwrap().len(), 16, "{body}");
    let value: f64 = body["value"].as_str().unwrap().parse().unwrap();
    assert!(value > 85.0, "{body}");
    let summary = body["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("Memory at ") && summary.ends_with("% of maxmemory on cache"),
        "{summary}"
    );
    assert!(firing.header("idempotency-key").is_some());

    // The playbook ran against the real server: MEMORY PURGE shows in its stats.
    let ran = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        redis
            .cli(&["INFO", "commandstats"])
            .contains("cmdstat_memory|purge:calls=1")
    });
    assert!(ran, "MEMORY PURGE never ran:\n{}", redops.output());
    redops.wait_log("Playbook succeeded", Duration::from_secs(5));

    redis.cli(&["FLUSHALL"]);
    let resolved = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "memory_critical", "resolved").is_empty()
    });
    let resolved = alerts(&resolved, "memory_critical", "resolved")[0];
    assert_eq!(resolved.body["fingerprint"], firing.body["fingerprint"]);
    assert_eq!(resolved.body["starts_at"], firing.body["starts_at"]);
    assert!(resolved.body["ends_at"].is_string(), "{}", resolved.body);

    // The playbook's outcome follows as an update of the same alert, so the
    // human paged sees what redops already did.
    let all = hook.received();
    let firing_all = alerts(&all, "memory_critical", "firing");
    assert_eq!(firing_all.len(), 2, "the page, then its update: {}", hook.describe());
    assert!(firing_all[0].body.get("playbook").is_none());
    let update = &firing_all[1].body;
    assert_eq!(update["fingerprint"], firing.body["fingerprint"]);
    assert_eq!(update["playbook"]["name"], "optimize_memory");
    assert_eq!(update["playbook"]["outcome"]["status"], "succeeded");
    let findings = update["playbook"]["findings"].to_string();
    assert!(findings.contains("MEMORY PURGE ran"), "{findings}");
    assert_ne!(
        firing_all[0].header("idempotency-key"),
        firing_all[1].header("idempotency-key")
    );
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn dry_run_records_the_purge_instead_of_sending_it() {
    let redis = TestRedis::start(&[("maxmemory", "16mb"), ("maxmemory-policy", "noeviction")]);
    let hook = WebhookReceiver::start();
    let config = target_and_hook("cache", &redis.url(0), "", &hook.url());
    let rule = RULE.replace("for = \"2s\"", "for = \"0s\"");
    let dir = engine_dir(
        "1s",
        &config,
        &[("memory", &rule)],
        &[("optimize_memory", OPTIMIZE_MEMORY)],
    );
    let mut redops = Redops::start(dir.path(), &["--dry-run"]);
    redops.wait_log("Engine started", Duration::from_secs(10));

    harness::fill_memory_to(&mut redis.conn(), 88.0);
    hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "memory_critical", "firing").is_empty()
    });
    let log = redops.wait_log("Playbook succeeded", Duration::from_secs(10));
    assert!(
        log.contains("Dry run: not performed") && log.contains("action=MEMORY PURGE"),
        "{log}"
    );
    // Reads were sent (the playbook decided from INFO), the write was not.
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(!stats.contains("cmdstat_memory|purge"), "{stats}");
    assert!(redops.terminate().success(), "{}", redops.output());
}
