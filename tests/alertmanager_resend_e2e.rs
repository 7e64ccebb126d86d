//! The Alertmanager receiver's own re-send cadence, against a real HTTP
//! receiver: a firing alert goes out again every `resend_interval` whatever
//! the routes say; once acknowledged it still goes to the Alertmanager but
//! no longer to a generic webhook; once resolved it is sent resolved once
//! and then no more.
//!
//! A second alert, `clock_high`, fires throughout and goes to the
//! Alertmanager only, through its rule's `notify` (no route, so nothing
//! but the re-send cadence sends it again): its re-sends are the clock the
//! test waits on instead of sleeping.

mod harness;

use std::time::Duration;

use harness::{Received, Redops, TestRedis, WebhookReceiver, engine_dir, run_redops};

/// Alertmanager posts of one alert, firing (no `endsAt`) or resolved.
fn am(r: &[Received], rule: &str, resolved: bool) -> usize {
    r.iter()
        .filter(|m| m.path == "/am")
        .flat_map(|m| m.body.as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == rule && a.get("endsAt").is_some() == resolved)
        .count()
}

/// Generic-webhook notifications of `marker_high` with that status, acks
/// left out.
fn hook(r: &[Received], status: &str) -> usize {
    r.iter()
        .filter(|m| m.path == "/hook")
        .filter(|m| m.body["rule"] == "marker_high" && m.body["status"] == status && m.body.get("acked_by").is_none())
        .count()
}

#[test]
fn alertmanager_keeps_hearing_a_firing_alert_acked_or_not_until_it_resolves() {
    let redis = TestRedis::start(&[]);
    let receiver = WebhookReceiver::start();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\", clock = \"GET clock\" }}\n\n\
         [receiver.am]\ntype = \"webhook\"\nformat = \"alertmanager\"\nurl = \"{}\"\nresend_interval = \"1s\"\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [[route]]\nreceivers = [\"am\", \"hook\"]\ngroup_interval = \"1s\"\nrepeat_interval = \"1s\"\n",
        redis.url(0),
        receiver.url_for("/am"),
        receiver.url_for("/hook"),
    );
    let rules = "[[rule]]\nname = \"marker_high\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"critical\"\n\
                 summary = \"marker is {{ marker }}\"\n\n\
                 [[rule]]\nname = \"clock_high\"\nsource = \"sample\"\nwhen = \"clock >= 1\"\nseverity = \"info\"\n\
                 summary = \"the test's clock\"\nnotify = [\"am\"]\n";
    let dir = engine_dir("300ms", &config, &[("resend", rules)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));
    redis.cli(&["SET", "clock", "1"]);
    redis.cli(&["SET", "marker", "1"]);

    // Firing: sent again and again. `clock_high` has no route, so only the
    // re-send cadence repeats it.
    let got = receiver.wait_for(Duration::from_secs(20), |r| {
        am(r, "clock_high", false) >= 3 && am(r, "marker_high", false) >= 2 && hook(r, "firing") >= 2
    });
    assert!(am(&got, "clock_high", false) >= 3, "{}", receiver.describe());

    // Acknowledged: the generic webhook stops hearing it, Alertmanager not.
    let first = got
        .iter()
        .find(|m| m.path == "/hook" && m.body["rule"] == "marker_high")
        .expect("the generic webhook got marker_high");
    let id = &first.body["fingerprint"].as_str().unwrap()[..8];
    let config_path = dir.path().join("redops.toml");
    let ack = run_redops(
        &[
            "alerts",
            "ack",
            id,
            "--by",
            "alice",
            "--config",
            config_path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ack.status.success(), "{}", String::from_utf8_lossy(&ack.stderr));
    let ticks = am(&receiver.received(), "clock_high", false);
    // Whatever was queued before the ack is delivered within these ticks.
    let settled = receiver.wait_for(Duration::from_secs(20), |r| am(r, "clock_high", false) >= ticks + 3);
    let (hook_after_ack, am_after_ack) = (hook(&settled, "firing"), am(&settled, "marker_high", false));
    let later = receiver.wait_for(Duration::from_secs(20), |r| {
        am(r, "clock_high", false) >= ticks + 6 && am(r, "marker_high", false) >= am_after_ack + 2
    });
    assert!(
        am(&later, "marker_high", false) >= am_after_ack + 2,
        "acked, still re-sent to Alertmanager: {}",
        receiver.describe()
    );
    assert_eq!(
        hook(&later, "firing"),
        hook_after_ack,
        "acked, no longer repeated to the generic webhook: {}",
        receiver.describe()
    );

    // Resolved: sent resolved once, then neither resolved nor firing again.
    redis.cli(&["SET", "marker", "0"]);
    let resolved = receiver.wait_for(Duration::from_secs(20), |r| am(r, "marker_high", true) >= 1);
    let firing_before = am(&resolved, "marker_high", false);
    let ticks = am(&resolved, "clock_high", false);
    let end = receiver.wait_for(Duration::from_secs(20), |r| am(r, "clock_high", false) >= ticks + 4);
    assert_eq!(am(&end, "marker_high", true), 1, "one resolve: {}", receiver.describe());
    assert_eq!(
        am(&end, "marker_high", false),
        firing_before,
        "not re-sent once resolved: {}",
        receiver.describe()
    );
    assert_eq!(hook(&end, "resolved"), 1, "{}", receiver.describe());
    assert!(redops.terminate().success(), "{}", redops.output());
}
