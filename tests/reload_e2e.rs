//! Hot reload of a running engine: a new threshold applies within 2 s, a
//! broken file keeps the last good rules and raises an alert, an unchanged
//! firing alert survives a reload without a new notification, and a rotated
//! webhook HMAC key and SMTP password are used from the next delivery.

mod harness;

use std::time::{Duration, Instant};

use harness::{Received, Redops, SmtpServer, TestRedis, WebhookReceiver, alerts, engine_dir, write_file};

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

#[test]
fn edited_routes_and_receiver_urls_apply_at_once_and_a_new_receiver_waits_for_a_restart() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let config = |route_to: &str, night_path: &str, more: &str| {
        format!(
            "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n\
             [receiver.day]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
             [receiver.night]\ntype = \"webhook\"\nurl = \"{}\"\n\n{more}\
             [[route]]\nmatch = {{ severity = \"warning\" }}\nreceivers = [\"{route_to}\"]\ngroup_interval = \"100ms\"\n",
            redis.url(0),
            hook.url_for("/day"),
            hook.url_for(night_path)
        )
    };
    let dir = engine_dir(
        "200ms",
        &config("day", "/night", ""),
        &[("main", &rule("marker_rule", 1))],
        &[],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));
    let fire_and_resolve = |redops: &mut Redops| -> String {
        hook.clear();
        redis.cli(&["SET", "marker", "1"]);
        let got = hook.wait_for(Duration::from_secs(5), |r| {
            !alerts(r, "marker_rule", "firing").is_empty()
        });
        redis.cli(&["SET", "marker", "0"]);
        hook.wait_for(Duration::from_secs(5), |r| {
            !alerts(r, "marker_rule", "resolved").is_empty()
        });
        assert!(redops.is_running(), "{}", redops.output());
        alerts(&got, "marker_rule", "firing")[0].path.clone()
    };

    // The on-call rotation changes: warnings go to the night receiver now.
    write_file(
        dir.path(),
        "redops.toml",
        &[ENGINE, &config("night", "/night", "")].concat(),
    );
    redops.wait_log("Reloaded", Duration::from_secs(5));
    assert_eq!(fire_and_resolve(&mut redops), "/night", "{}", hook.describe());

    // The night receiver's URL changes (a chat hook regenerated with a new
    // token in its path): its next delivery goes there.
    write_file(
        dir.path(),
        "redops.toml",
        &[ENGINE, &config("night", "/night-v2", "")].concat(),
    );
    redops.wait_log(r#"receivers=["night"]"#, Duration::from_secs(5));
    assert_eq!(fire_and_resolve(&mut redops), "/night-v2", "{}", hook.describe());

    // A new receiver needs a restart: the engine says so and keeps the
    // routes and receivers it runs with.
    let pager = format!(
        "[receiver.pager]\ntype = \"webhook\"\nurl = \"{}\"\n\n",
        hook.url_for("/pager")
    );
    write_file(
        dir.path(),
        "redops.toml",
        &[ENGINE, &config("pager", "/night-v3", &pager)].concat(),
    );
    redops.wait_log("take effect at the next restart", Duration::from_secs(5));
    assert!(
        redops.output().contains("changed=[receiver.*] added or removed"),
        "{}",
        redops.output()
    );
    assert_eq!(fire_and_resolve(&mut redops), "/night-v2", "{}", hook.describe());
    assert!(redops.terminate().success(), "{}", redops.output());
}

const ENGINE: &str = "[engine]\nrules_dir = \"rules\"\nplaybooks_dir = \"playbooks\"\nstate_dir = \"state\"\nsample_interval = \"200ms\"\n\n";

#[test]
fn targets_added_and_removed_and_a_new_keyspace_rule_apply_without_a_restart() {
    let (one, two) = (TestRedis::start(&[]), TestRedis::start(&[]));
    let hook = WebhookReceiver::start();
    let target = |name: &str, redis: &TestRedis| {
        format!(
            "[[target]]\nname = \"{name}\"\nurl = \"{}\"\nkeyspace_events = \"E$\"\nprobes = {{ marker = \"GET marker\" }}\n\n",
            redis.url(0)
        )
    };
    let receiver = format!("[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n", hook.url());
    let dir = engine_dir(
        "200ms",
        &[target("one", &one), receiver.clone()].concat(),
        &[("main", &rule("marker_rule", 1))],
        &[],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));

    // A second target appears in the config: sampled at once.
    write_file(
        dir.path(),
        "redops.toml",
        &[ENGINE, &target("one", &one), &target("two", &two), &receiver].concat(),
    );
    redops.wait_log("Targets changed", Duration::from_secs(5));
    two.cli(&["SET", "marker", "1"]);
    let got = hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "marker_rule", "firing").is_empty()
    });
    assert_eq!(alerts(&got, "marker_rule", "firing")[0].body["target"], "two");

    // A keyspace rule written while running counts from then on: the
    // target's subscription restarts with its selector.
    let storm = "[[rule]]\nname = \"write_storm\"\nsource = \"keyspace\"\nevents = [\"set\"]\nkeys = \"job:*\"\n\
                 window = \"10s\"\nwhen = \"count >= 20\"\nseverity = \"warning\"\ntargets = [\"one\"]\n";
    write_file(dir.path(), "rules/storm.toml", storm);
    redops.wait_log("restarted=[\"one\"]", Duration::from_secs(5));
    // The target had no keyspace rule, so this is its first subscription.
    let resubscribed = harness::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        redops.output().contains("Keyspace subscription active target=one")
    });
    assert!(resubscribed, "{}", redops.output());
    for n in 0..30 {
        one.cli(&["SET", &format!("job:{n}"), "x"]);
    }
    hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "write_storm", "firing").is_empty()
    });

    // `two` leaves the config: its sources stop and its alert resolves.
    write_file(
        dir.path(),
        "redops.toml",
        &[ENGINE, &target("one", &one), &receiver].concat(),
    );
    let got = hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "marker_rule", "resolved").is_empty()
    });
    assert_eq!(alerts(&got, "marker_rule", "resolved")[0].body["target"], "two");
    assert!(redops.output().contains("stopped=[\"two\"]"), "{}", redops.output());
    assert!(redops.terminate().success(), "{}", redops.output());
}

/// Whether the notification's `X-Redops-Signature` is the HMAC of its body
/// under `key`.
fn signed_with(received: &Received, key: &str) -> bool {
    let timestamp = received
        .header("x-redops-timestamp")
        .expect("a signed notification has a timestamp");
    received.header("x-redops-signature")
        == Some(redops::notify::webhook::signature(key, timestamp, &received.raw).as_str())
}

#[test]
fn a_rotated_hmac_key_and_smtp_password_are_used_from_the_next_delivery() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let smtp_port = redops::lab::process::free_port().unwrap();
    let smtp = SmtpServer::start_with_login(smtp_port, "redops-mailer", "smtp-pass-old-1");
    // Written in the file, as a secrets manager renders it: a `${VAR}` is
    // read from redops's own environment, which a reload does not change.
    let config = |hmac_key: &str, smtp_password: &str| {
        format!(
            "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n\
             [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\nhmac_secret = \"{hmac_key}\"\n\n\
             [receiver.mail]\ntype = \"email\"\nsmtp = \"smtp://127.0.0.1:{smtp_port}\"\ntls = \"none\"\n\
             username = \"redops-mailer\"\npassword = \"{smtp_password}\"\n\
             from = \"redops@example.com\"\nto = [\"oncall@example.com\"]\n",
            redis.url(0),
            hook.url()
        )
    };
    let dir = engine_dir(
        "200ms",
        &config("hmac-key-old-1", "smtp-pass-old-1"),
        &[("main", &rule("marker_rule", 1))],
        &[],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));

    redis.cli(&["SET", "marker", "1"]);
    let got = hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "marker_rule", "firing").is_empty()
    });
    assert!(signed_with(alerts(&got, "marker_rule", "firing")[0], "hmac-key-old-1"));
    let mails = smtp.wait_for_mails(1, Duration::from_secs(10));
    assert!(mails[0].contains("Subject: [FIRING]"), "{mails:#?}");

    // Both are rotated. The mail server takes only the new password now; its
    // restart also cuts the connection redops pooled, logged in with the old.
    drop(smtp);
    let smtp = SmtpServer::start_with_login(smtp_port, "redops-mailer", "smtp-pass-new-2");
    write_file(
        dir.path(),
        "redops.toml",
        &[ENGINE, &config("hmac-key-new-2", "smtp-pass-new-2")].concat(),
    );
    redops.wait_log("Reloaded", Duration::from_secs(5));
    let log = redops.output();
    assert!(
        log.contains(r#"Receivers changed; their next deliveries use the new settings receivers=["hook", "mail"]"#),
        "{log}"
    );
    assert!(!log.contains("next restart"), "{log}");
    assert!(
        !log.contains("hmac-key-new-2") && !log.contains("smtp-pass-new-2"),
        "{log}"
    );

    redis.cli(&["SET", "marker", "0"]);
    let got = hook.wait_for(Duration::from_secs(5), |r| {
        !alerts(r, "marker_rule", "resolved").is_empty()
    });
    let resolved = alerts(&got, "marker_rule", "resolved")[0];
    assert!(
        signed_with(resolved, "hmac-key-new-2") && !signed_with(resolved, "hmac-key-old-1"),
        "the next delivery is signed with the new key: {}",
        hook.describe()
    );
    let mails = smtp.wait_for_mails(1, Duration::from_secs(10));
    assert!(mails[0].contains("Subject: [RESOLVED]"), "{mails:#?}");

    // Settings that cannot be built are refused: the receiver goes on with
    // the ones it runs with.
    let unusable = config("hmac-key-new-2", "smtp-pass-new-2").replace(
        "tls = \"none\"",
        "tls = \"starttls\"\nca_file = \"/nonexistent/ca.pem\"",
    );
    write_file(dir.path(), "redops.toml", &[ENGINE, &unusable].concat());
    redops.wait_log("Receiver not changed", Duration::from_secs(5));
    assert!(
        redops
            .output()
            .contains("receiver=mail error=receiver `mail`: cannot read ca_file /nonexistent/ca.pem"),
        "{}",
        redops.output()
    );
    redis.cli(&["SET", "marker", "1"]);
    let mails = smtp.wait_for_mails(2, Duration::from_secs(10));
    assert!(mails[1].contains("Subject: [FIRING]"), "{mails:#?}");
    assert!(redops.terminate().success(), "{}", redops.output());
}
