//! Both keyspace readers count exactly what a real redis-server publishes:
//! 10,000 matching SETs and 5,000 others sent in pipelines, and a page that
//! quotes the count. The default (`resp`) reader is also checked through an
//! authenticated (ACL user) connection, which it authenticates itself.

mod harness;

use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, target_and_hook};

const MATCHING: usize = 10_000;

const RULE: &str = r#"
[[rule]]
name = "exact_count"
source = "keyspace"
events = ["set"]
keys = "n:*"
window = "10m"
when = "count >= 10000"
severity = "info"
summary = "{{ count }}"
"#;

/// Starts redops on `redis` with `engine` lines in `[engine]` and `target`
/// lines in its target, waits for its subscription, sends the SETs, and
/// returns the count the page quotes, redops's output and the server's
/// `CLIENT LIST TYPE pubsub` while subscribed.
fn count_with(redis: &TestRedis, target: &str, engine: &str) -> (String, String, String) {
    let hook = WebhookReceiver::start();
    let extra = format!("keyspace_events = \"E$\"\n{target}");
    let config = format!(
        "{engine}\n\n{}",
        target_and_hook("cache", &redis.url(0), &extra, &hook.url())
    );
    let dir = engine_dir("1s", &config, &[("exact", RULE)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Keyspace subscription active", Duration::from_secs(10));
    let subscribers = redis.cli(&["CLIENT", "LIST", "TYPE", "pubsub"]);

    let mut conn = redis.conn();
    for chunk in 0..(MATCHING / 1_000) {
        let mut pipe = redis::pipe();
        for i in 0..1_000 {
            let n = chunk * 1_000 + i;
            pipe.cmd("SET").arg(format!("n:{n}")).arg(1).ignore();
            if n % 2 == 0 {
                pipe.cmd("SET").arg(format!("other:{n}")).arg(1).ignore();
            }
        }
        let _: () = pipe.query(&mut conn).unwrap();
    }
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "exact_count", "firing").is_empty()
    });
    let page = alerts(&got, "exact_count", "firing");
    assert!(!page.is_empty(), "no page; output:\n{}", redops.output());
    let count = page[0].body["summary"].as_str().unwrap().to_owned();
    assert!(redops.terminate().success(), "{}", redops.output());
    (count, redops.output(), subscribers)
}

#[test]
fn the_resp_reader_counts_exactly_what_redis_published() {
    let redis = TestRedis::start(&[]);
    let (count, output, _) = count_with(&redis, "", "");
    assert!(
        output.contains("reader=\"resp\"") || output.contains("reader=resp"),
        "{output}"
    );
    assert_eq!(count, MATCHING.to_string());
}

#[test]
fn the_redis_rs_reader_stays_selectable_and_counts_the_same() {
    let redis = TestRedis::start(&[]);
    let (count, output, _) = count_with(&redis, "", "keyspace_reader = \"redis-rs\"");
    assert!(output.contains("redis-rs"), "{output}");
    assert_eq!(count, MATCHING.to_string());
}

#[test]
fn the_resp_reader_authenticates_as_an_acl_user() {
    let redis = TestRedis::start(&[]);
    redis.cli(&["ACL", "SETUSER", "watcher", "on", ">s3cret-pw", "~*", "&*", "+@all"]);
    let (count, output, subscribers) = count_with(&redis, "username = \"watcher\"\npassword = \"s3cret-pw\"", "");
    assert!(
        output.contains("reader=\"resp\"") || output.contains("reader=resp"),
        "{output}"
    );
    assert!(subscribers.contains("user=watcher"), "{subscribers}");
    assert!(!output.contains("s3cret-pw"), "the password was logged:\n{output}");
    assert_eq!(count, MATCHING.to_string());
}
