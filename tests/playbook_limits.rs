//! Runaway and forbidden playbooks: stopped at their limit or denied by the
//! command policy, while the engine goes on evaluating and notifying.

mod harness;

use std::time::{Duration, Instant};

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, target_and_hook};

const RULES: &str = r#"
[[rule]]
name = "runaway"
source = "sample"
when = "redis_up == 1"
severity = "info"
playbook = "spin"

[[rule]]
name = "wipe"
source = "sample"
when = "redis_up == 1"
severity = "info"
playbook = "flush_everything"

[[rule]]
name = "marker_set"
source = "sample"
when = "marker > 0"
severity = "warning"
summary = "marker is {{ marker }}"
"#;

const SPIN: &str = "let n = 0;\nloop { n += 1; }\n";
const FLUSH: &str = "redis.cmd([\"flushall\"]);\nlog.info(\"flushed\");\n";

#[test]
fn runaway_and_forbidden_playbooks_are_stopped_and_the_engine_goes_on() {
    let redis = TestRedis::start(&[]);
    redis.cli(&["SET", "precious", "data"]);
    let hook = WebhookReceiver::start();
    let config = target_and_hook(
        "cache",
        &redis.url(0),
        "probes = { marker = \"GET marker\" }",
        &hook.url(),
    ) + "\n[playbooks]\ntimeout = \"1s\"\nmax_operations = 0\n";
    let dir = engine_dir(
        "500ms",
        &config,
        &[("limits", RULES)],
        &[("spin", SPIN), ("flush_everything", FLUSH)],
    );
    let mut redops = Redops::start(dir.path(), &[]);

    let started = Instant::now();
    let log = redops.wait_log("Playbook stopped at its deadline", Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the 1 s deadline took {:?}",
        started.elapsed()
    );
    assert!(log.contains("playbook=spin"), "{log}");

    let log = redops.wait_log("denied by the playbook command policy", Duration::from_secs(10));
    assert!(
        log.contains("`FLUSHALL` is denied by the playbook command policy"),
        "{log}"
    );
    assert!(log.contains("allow_commands"), "the error says how to allow it: {log}");
    assert_eq!(redis.cli(&["GET", "precious"]), "data", "FLUSHALL must not have run");

    // Evaluation never stopped: a new condition still fires and is delivered.
    redis.cli(&["SET", "marker", "7"]);
    let got = hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "marker_set", "firing").is_empty()
    });
    assert_eq!(alerts(&got, "marker_set", "firing")[0].body["summary"], "marker is 7");
    assert!(redops.terminate().success(), "{}", redops.output());
}
