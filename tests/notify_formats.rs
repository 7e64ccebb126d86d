//! Every webhook format against a real HTTP receiver: generic (signed),
//! Slack, PagerDuty Events v2 and Alertmanager, firing then resolved.

mod harness;

use std::time::Duration;

use harness::{Received, Redops, TestRedis, WebhookReceiver, engine_dir};

fn on<'a>(r: &'a [Received], path: &str) -> Vec<&'a Received> {
    r.iter().filter(|m| m.path == path).collect()
}

#[test]
fn each_format_speaks_its_receivers_language() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n\
         [receiver.generic]\ntype = \"webhook\"\nurl = \"{}\"\nhmac_secret = \"${{REDOPS_TEST_HMAC}}\"\n\n\
         [receiver.slack]\ntype = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\n\
         [receiver.pager]\ntype = \"webhook\"\nformat = \"pagerduty\"\nurl = \"{}\"\nrouting_key = \"${{REDOPS_TEST_PD_KEY}}\"\n\n\
         [receiver.am]\ntype = \"webhook\"\nformat = \"alertmanager\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url_for("/generic"),
        hook.url_for("/slack"),
        hook.url_for("/pager"),
        hook.url_for("/am"),
    );
    let rules = "[[rule]]\nname = \"marker_high\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"critical\"\n\
                 summary = \"marker is {{ marker }}\"\nrunbook = \"https://runbooks.example.com/marker\"\n";
    let dir = engine_dir("300ms", &config, &[("marker", rules)], &[]);
    let secret = "hmac-secret-for-the-test";
    let mut redops = Redops::start_with_env(
        dir.path(),
        &[],
        &[
            ("REDOPS_TEST_HMAC", secret),
            ("REDOPS_TEST_PD_KEY", "pd-routing-key-1234"),
        ],
    );
    redops.wait_log("Engine started", Duration::from_secs(10));
    redis.cli(&["SET", "marker", "3"]);
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        ["/generic", "/slack", "/pager", "/am"]
            .iter()
            .all(|p| !on(r, p).is_empty())
    });

    let generic = on(&got, "/generic")[0];
    let timestamp = generic.header("x-redops-timestamp").unwrap();
    let expected = redops::notify::webhook::signature(secret, timestamp, &generic.raw);
    assert_eq!(
        generic.header("x-redops-signature"),
        Some(expected.as_str()),
        "signature verifies"
    );
    assert_eq!(generic.body["kind"], "alert");

    let slack = &on(&got, "/slack")[0].body;
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .starts_with("[FIRING] CRITICAL marker_high on cache"),
        "{slack}"
    );
    assert_eq!(slack["blocks"][0]["type"], "section");

    let pager = &on(&got, "/pager")[0].body;
    assert_eq!(pager["event_action"], "trigger");
    assert_eq!(pager["routing_key"], "pd-routing-key-1234");
    assert_eq!(pager["dedup_key"], generic.body["fingerprint"]);
    assert_eq!(pager["payload"]["severity"], "critical");
    assert_eq!(pager["payload"]["source"], "cache");
    assert_eq!(pager["links"][0]["href"], "https://runbooks.example.com/marker");

    let am = &on(&got, "/am")[0].body;
    assert_eq!(am[0]["labels"]["alertname"], "marker_high");
    assert_eq!(am[0]["annotations"]["summary"], "marker is 3");
    assert!(am[0].get("endsAt").is_none());

    redis.cli(&["SET", "marker", "0"]);
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        on(r, "/pager").len() >= 2 && on(r, "/am").len() >= 2
    });
    let resolve = &on(&got, "/pager")[1].body;
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], pager["dedup_key"]);
    assert!(on(&got, "/am")[1].body[0]["endsAt"].is_string());
    // Secrets never reach the log.
    let log = redops.output();
    assert!(!log.contains(secret) && !log.contains("pd-routing-key-1234"));
    assert!(redops.terminate().success(), "{}", redops.output());
}
