//! Faults around the engine: a Redis that hangs (SIGSTOP) and a state
//! directory that cannot be used.

mod harness;

use std::time::{Duration, Instant};

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, write_file};

const DOWN: &str =
    "[[rule]]\nname = \"redis_down\"\nsource = \"health\"\nwhen = \"redis_up == 0\"\nseverity = \"critical\"\n";

#[test]
fn a_half_open_redis_is_detected_by_the_command_timeout() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url()
    );
    let dir = engine_dir("1s", &config, &[("down", DOWN)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));

    redis.process.pause().unwrap();
    let paused = Instant::now();
    let got = hook.wait_for(Duration::from_secs(15), |r| {
        !alerts(r, "redis_down", "firing").is_empty()
    });
    let after = alerts(&got, "redis_down", "firing")[0].at.duration_since(paused);
    assert!(
        after < Duration::from_secs(10),
        "a hung server took {after:?} to detect"
    );
    redis.process.resume().unwrap();
    hook.wait_for(Duration::from_secs(15), |r| {
        !alerts(r, "redis_down", "resolved").is_empty()
    });
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn an_unusable_state_directory_raises_an_alert_and_the_engine_goes_on() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url()
    );
    let rules =
        "[[rule]]\nname = \"marker_set\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"warning\"\n";
    let dir = engine_dir("300ms", &config, &[("marker", rules)], &[]);
    // A file where the state directory should be: it cannot be created.
    write_file(dir.path(), "state", "not a directory");
    let mut redops = Redops::start(dir.path(), &[]);
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "state_dir_unusable", "firing").is_empty()
    });
    let summary = alerts(&got, "state_dir_unusable", "firing")[0].body["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(summary.contains("without durable state"), "{summary}");
    redis.cli(&["SET", "marker", "1"]);
    hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "marker_set", "firing").is_empty()
    });
    assert!(redops.terminate().success(), "{}", redops.output());
}
