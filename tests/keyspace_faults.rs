//! The keyspace subscriber losing its connection, on a real redis-server:
//! whether Redis kills it by hand (`CLIENT KILL TYPE pubsub`) or for
//! overrunning `client-output-buffer-limit pubsub`, the loss is counted in
//! `keyspace_disconnects_total`, pages through the shipped rule, and the
//! subscription comes back (flags included) and counts again.

mod harness;

use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, wait_until};

/// What users get: the rules that page on redops's own losses.
const SHIPPED: &str = include_str!("../rules/redops.toml");

/// Proves counting works: 50 `set`s of `probe:` keys within a minute.
const PROBE: &str = r#"
[[rule]]
name = "probe_counted"
source = "keyspace"
events = ["set"]
keys = "probe:*"
window = "1m"
when = "count >= 50"
severity = "info"
summary = "{{ count }} probe keys set on {{ target }}"
"#;

struct Setup {
    redis: TestRedis,
    hook: WebhookReceiver,
    redops: Redops,
    api: String,
    _dir: tempfile::TempDir,
}

fn start() -> Setup {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let port = redops::lab::process::free_port().unwrap();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nkeyspace_events = \"E$\"\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\n",
        redis.url(0),
        hook.url()
    );
    let dir = engine_dir("200ms", &config, &[("redops", SHIPPED), ("probe", PROBE)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Keyspace subscription active", Duration::from_secs(10));
    Setup {
        redis,
        hook,
        redops,
        api: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

impl Setup {
    /// The value of one of redops's keyspace counters for `cache` on
    /// `/metrics`: `disconnects_total` reads
    /// `redops_keyspace_disconnects_total{target="cache",...}`.
    fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::blocking::get(format!("{}/metrics", self.api))
            .ok()?
            .text()
            .ok()?;
        let prefix = format!("redops_keyspace_{name}{{target=\"cache\"");
        text.lines()
            .find(|l| l.starts_with(&prefix))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }

    fn wait_metric(&self, name: &str, value: f64) {
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
                self.metric(name) == Some(value)
            }),
            "{name} never reached {value} (last {:?}); output:\n{}",
            self.metric(name),
            self.redops.output()
        );
    }

    /// The server's reconnect log line appears once the subscription is back.
    fn wait_resubscribed(&mut self) {
        self.redops.wait_log("reconnect=true", Duration::from_secs(10));
        assert!(
            wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                self.redis.cli(&["PUBSUB", "NUMPAT"]).trim() == "1"
            }),
            "redops did not subscribe again"
        );
    }

    /// 50 `SET probe:*`, then the probe rule must page with a count of 50:
    /// counting resumed after the disconnect.
    fn assert_counting(&self) {
        let mut conn = self.redis.conn();
        let mut pipe = redis::pipe();
        for i in 0..50 {
            pipe.cmd("SET").arg(format!("probe:{i}")).arg(1).ignore();
        }
        let _: () = pipe.query(&mut conn).unwrap();
        let got = self.hook.wait_for(Duration::from_secs(5), |r| {
            !alerts(r, "probe_counted", "firing").is_empty()
        });
        let probe = alerts(&got, "probe_counted", "firing")[0];
        assert_eq!(probe.body["summary"], "50 probe keys set on cache");
    }

    fn assert_disconnect_paged(&self) {
        let got = self.hook.wait_for(Duration::from_secs(10), |r| {
            !alerts(r, "keyspace_subscriber_disconnected", "firing").is_empty()
        });
        let page = alerts(&got, "keyspace_subscriber_disconnected", "firing")[0];
        assert!(
            page.body["summary"]
                .as_str()
                .unwrap()
                .ends_with("(disconnects since start: 1)"),
            "{}",
            page.body
        );
    }
}

#[test]
fn a_killed_subscription_is_counted_paged_and_made_again() {
    let mut s = start();
    s.wait_metric("disconnects_total", 0.0);
    // As after a server restart: the flags redops set are gone. Resubscribing
    // must set them again, or counting would not resume.
    s.redis.cli(&["CONFIG", "SET", "notify-keyspace-events", ""]);
    let killed = s.redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed.trim(), "1", "exactly redops's subscriber is a pubsub client");

    s.redops.wait_log("Keyspace subscription lost", Duration::from_secs(5));
    s.wait_metric("disconnects_total", 1.0);
    s.assert_disconnect_paged();
    s.wait_resubscribed();
    let flags = s.redis.cli(&["CONFIG", "GET", "notify-keyspace-events"]);
    assert!(
        flags.contains('E') && flags.contains('$'),
        "flags not set again: {flags}"
    );
    s.assert_counting();
    assert_eq!(s.metric("events_lost_total"), Some(0.0));
    assert!(s.redops.terminate().success(), "{}", s.redops.output());
}

#[test]
fn a_subscriber_dropped_for_its_output_buffer_is_counted_paged_and_made_again() {
    let mut s = start();
    s.wait_metric("disconnects_total", 0.0);
    // A tiny pubsub limit, and one command that publishes 5,000 events
    // before Redis writes any of them out: Redis must drop the subscriber.
    s.redis
        .cli(&["CONFIG", "SET", "client-output-buffer-limit", "pubsub 1kb 1kb 0"]);
    let mut conn = s.redis.conn();
    let mut mset = redis::cmd("MSET");
    for i in 0..5_000 {
        mset.arg(format!("flood:{i:0>64}")).arg(1);
    }
    let _: () = mset.query(&mut conn).unwrap();

    s.redops.wait_log("Keyspace subscription lost", Duration::from_secs(5));
    let log = s.redis.process.log_tail(50);
    assert!(log.contains("overcoming of output buffer limits"), "{log}");
    s.wait_metric("disconnects_total", 1.0);
    s.assert_disconnect_paged();
    s.wait_resubscribed();
    s.redis
        .cli(&["CONFIG", "SET", "client-output-buffer-limit", "pubsub 32mb 8mb 60"]);
    s.assert_counting();
    assert!(s.redops.terminate().success(), "{}", s.redops.output());
}
