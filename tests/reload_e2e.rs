//! Hot reload of a running engine: a new threshold applies within 2 s, a
//! broken file keeps the last good rules and raises an alert, and an
//! unchanged firing alert survives a reload without a new notification.

mod harness;

use std::time::{Duration, Instant};

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, write_file};

fn rule(name: &str, threshold: u32) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\nsource = \"sample\"\nwhen = \"marker >= {threshold}\"\nseverity = \"warning\"\n"
    )
}

fn start(redis: &TestRedis, hook: &WebhookReceiver, rules: &str) -> (tempfile::TempDir, Redops) {
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url()
    );
    let dir = engine_dir("200ms", &config, &[("main", rules)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));
    (dir, redops)
}

#[test]
fn an_edited_threshold_applies_within_two_seconds() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    redis.cli(&["SET", "marker", "3"]);
    let (dir, mut redops) = start(&redis, &hook, &rule("marker_rule", 5));
    std::thread::sleep(Duration::from_millis(600));
    assert!(hook.received().is_empty());

    let edited = Instant::now();
    write_file(dir.path(), "rules/main.toml", &rule("marker_rule", 2));
    let got = hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "marker_rule", "firing").is_empty()
    });
    let after = alerts(&got, "marker_rule", "firing")[0].at.duration_since(edited);
    assert!(after < Duration::from_secs(2), "applied {after:?} after the edit");
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn a_broken_file_keeps_the_last_good_rules_and_raises_an_alert_until_fixed() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let (dir, mut redops) = start(&redis, &hook, &rule("marker_rule", 5));

    write_file(
        dir.path(),
        "rules/main.toml",
        "[[rule]]\nname = \"marker_rule\"\nwhen = \"marker >= \n",
    );
    let got = hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "config_reload_failed", "firing").is_empty()
    });
    let summary = alerts(&got, "config_reload_failed", "firing")[0].body["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(summary.contains("main.toml:3:"), "the alert names the place: {summary}");

    // The old rule still runs.
    redis.cli(&["SET", "marker", "9"]);
    hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "marker_rule", "firing").is_empty()
    });

    write_file(dir.path(), "rules/main.toml", &rule("marker_rule", 5));
    hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "config_reload_failed", "resolved").is_empty()
    });
    assert!(
        redops
            .output()
            .contains("Reload failed; the last good rules and playbooks keep running")
    );
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn an_unchanged_firing_alert_survives_a_reload_silently() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    redis.cli(&["SET", "marker", "9"]);
    let (dir, mut redops) = start(&redis, &hook, &rule("marker_rule", 5));
    hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "marker_rule", "firing").is_empty()
    });

    // Another rule is added above it: the first rule's text and state stay.
    write_file(
        dir.path(),
        "rules/main.toml",
        &[rule("other_rule", 100), rule("marker_rule", 5)].join("\n"),
    );
    redops.wait_log("Reloaded", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    let all = hook.received();
    assert_eq!(alerts(&all, "marker_rule", "firing").len(), 1, "{}", hook.describe());
    assert!(
        alerts(&all, "marker_rule", "resolved").is_empty(),
        "{}",
        hook.describe()
    );
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn reading_the_files_does_not_reload() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let (dir, mut redops) = start(&redis, &hook, &rule("marker_rule", 5));
    // What `cat`, an editor opening a file, or any redops command does.
    for _ in 0..3 {
        std::fs::read_to_string(dir.path().join("rules/main.toml")).unwrap();
        std::fs::read_to_string(dir.path().join("redops.toml")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(!redops.output().contains("Reloaded"), "{}", redops.output());
    assert!(redops.terminate().success(), "{}", redops.output());
}
