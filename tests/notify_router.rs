//! The router's rules, in process against a real HTTP receiver: a critical
//! alert mutes the warning of its family on the same target, and a
//! notification the receiver refuses is dead-lettered to the fallback.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use harness::WebhookReceiver;
use redops::alerts::store::AlertStore;
use redops::alerts::{Alert, AlertStatus, Severity, fingerprint};
use redops::config::Config;
use redops::diagnostics::{Diagnostics, SourceFile};
use redops::notify::Notifier;
use redops::notify::router::Router;
use redops::outbox::Outbox;
use redops::store::Store;
use tokio_util::sync::CancellationToken;

fn alert(rule: &str, target: &str, severity: Severity) -> Alert {
    Alert {
        fingerprint: fingerprint(rule, target),
        labels: BTreeMap::from([
            ("rule".into(), rule.into()),
            ("target".into(), target.into()),
            ("family".into(), "memory".into()),
        ]),
        rule: rule.into(),
        target: target.into(),
        severity,
        status: AlertStatus::Firing,
        summary: format!("{rule} on {target}"),
        value: None,
        starts_at: SystemTime::now(),
        ends_at: None,
        runbook: None,
        description: None,
        annotations: Default::default(),
    }
}

fn setup(text: String) -> (Router, CancellationToken, redops::notify::NotifierHandle) {
    let mut diags = Diagnostics::default();
    let config = Config::parse(&SourceFile::new("router.toml", text), &mut diags).unwrap();
    assert!(!diags.has_errors(), "{}", diags.render());
    let store = Store::in_memory();
    let shutdown = CancellationToken::new();
    let (notifier, handle) = Notifier::spawn(
        &config.receivers,
        Outbox::open(store.clone()).unwrap(),
        config.notify.fallback_receiver.clone(),
        shutdown.clone(),
    )
    .unwrap();
    (
        Router::new(&config, notifier, AlertStore::open(store).unwrap()),
        shutdown,
        handle,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_alert_mutes_the_warning_of_its_family_on_its_target_only() {
    let hook = WebhookReceiver::start();
    let (mut router, shutdown, handle) = setup(format!(
        "[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        hook.url()
    ));
    let now = tokio::time::Instant::now;
    router.on_alert(alert("memory_critical", "cache", Severity::Critical), &[], now());
    router.on_alert(alert("memory_warning", "cache", Severity::Warning), &[], now());
    router.on_alert(alert("memory_warning", "broker", Severity::Warning), &[], now());
    let outbox = router.outbox().clone();
    let got = tokio::task::spawn_blocking(move || {
        harness::wait_drained(&outbox, Duration::from_secs(10));
        hook.received()
    })
    .await
    .unwrap();
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.body["rule"].as_str().unwrap().to_owned(),
                r.body["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("memory_critical".into(), "cache".into()),
            ("memory_warning".into(), "broker".into())
        ],
        "the warning on cache is inhibited, the one on broker is not"
    );
    shutdown.cancel();
    handle.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_notification_is_dead_lettered_to_the_fallback() {
    let hook = WebhookReceiver::start();
    let text = format!(
        "[receiver.broken]\ntype = \"webhook\"\nurl = \"{}\"\n\n[receiver.fallback]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [notify]\nfallback_receiver = \"fallback\"\n",
        hook.url_for("/broken"),
        hook.url_for("/fallback")
    );
    let (mut router, shutdown, handle) = setup(text);
    // The broken receiver answers 400: it will never take this body.
    hook.set_status(400);
    router.on_alert(
        alert("memory_critical", "cache", Severity::Critical),
        &["broken".into()],
        tokio::time::Instant::now(),
    );
    let got = tokio::task::spawn_blocking(move || {
        hook.wait_for(Duration::from_secs(5), |r| r.iter().any(|m| m.path == "/broken"));
        hook.set_status(200);
        hook.wait_for(Duration::from_secs(10), |r| {
            r.iter()
                .any(|m| m.path == "/fallback" && m.body["kind"] == "dead_letter")
        })
    })
    .await
    .unwrap();
    let dead = got.iter().find(|m| m.path == "/fallback").unwrap();
    assert_eq!(dead.body["receiver"], "broken");
    assert_eq!(dead.body["error"], "HTTP 400 Bad Request");
    shutdown.cancel();
    handle.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_incident_does_not_carry_the_last_ones_playbook_outcome() {
    let hook = WebhookReceiver::start();
    let (mut router, shutdown, handle) = setup(format!(
        "[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        hook.url()
    ));
    let now = tokio::time::Instant::now;
    let outcome = |run_id: &str| redops::notify::PlaybookSummary {
        name: "sentinel_failover".into(),
        run_id: run_id.into(),
        outcome: redops::invocation::RunOutcome::Succeeded { result: "ok".into() },
        findings: Vec::new(),
    };
    let first = alert("sentinel_failover", "lab", Severity::High);
    router.on_alert(first.clone(), &[], now());
    router.on_playbook(&first.fingerprint, Some(first.starts_at), outcome("run-1"));
    // The same rule fires again on the same target: a new incident.
    let mut second = alert("sentinel_failover", "lab", Severity::High);
    second.starts_at = first.starts_at + Duration::from_secs(5);
    router.on_alert(second.clone(), &[], now());
    // A second run for the first firing ends late: not the new page's update.
    router.on_playbook(&first.fingerprint, Some(first.starts_at), outcome("run-1b"));
    router.on_playbook(&second.fingerprint, Some(second.starts_at), outcome("run-2"));
    let outbox = router.outbox().clone();
    let got = tokio::task::spawn_blocking(move || {
        harness::wait_drained(&outbox, Duration::from_secs(10));
        hook.received()
    })
    .await
    .unwrap();
    let playbooks: Vec<Option<&str>> = got.iter().map(|r| r.body["playbook"]["run_id"].as_str()).collect();
    assert_eq!(
        playbooks,
        [None, Some("run-1"), None, Some("run-2")],
        "{}",
        serde_json::to_string_pretty(&playbooks).unwrap()
    );
    shutdown.cancel();
    drop(router);
    handle.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_sends_what_groups_held_then_routes_anew() {
    let hook = WebhookReceiver::start();
    let receivers = format!(
        "[receiver.day]\ntype = \"webhook\"\nurl = \"{}\"\n\n[receiver.night]\ntype = \"webhook\"\nurl = \"{}\"\n\n",
        hook.url_for("/day"),
        hook.url_for("/night")
    );
    let routes = |to: &str| {
        format!("[[route]]\nmatch = {{ severity = \"warning\" }}\nreceivers = [\"{to}\"]\ngroup_wait = \"1h\"\n")
    };
    let (mut router, shutdown, handle) = setup([receivers.clone(), routes("day")].concat());
    let now = tokio::time::Instant::now;
    // Held for an hour by group_wait when the config changes.
    let warning = |target: &str| {
        let mut a = alert("disk_warning", target, Severity::Warning);
        a.labels.insert("severity".into(), "warning".into());
        a
    };
    router.on_alert(warning("cache"), &[], now());
    let mut diags = Diagnostics::default();
    let config = Config::parse(
        &SourceFile::new("router.toml", [receivers, routes("night")].concat()),
        &mut diags,
    )
    .unwrap();
    router.reconfigure(&config, now());
    router.on_alert(warning("broker"), &[], now());
    router.tick(now() + Duration::from_secs(3601));
    let got = tokio::task::spawn_blocking(move || {
        hook.wait_for(Duration::from_secs(10), |r| r.len() >= 2);
        hook.received()
    })
    .await
    .unwrap();
    // Two receivers, two workers: no order between them.
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| (r.path.clone(), r.body["target"].as_str().unwrap_or_default().to_owned()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("/day".into(), "cache".into()), ("/night".into(), "broker".into())]
    );
    shutdown.cancel();
    drop(router);
    handle.join().await;
}

/// `redops playbook run` delivers from the engine's outbox while the
/// engine does: two notifiers on one state directory (two processes' worth
/// of connections) deliver each notification once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_outbox_deliver_each_notification_once() {
    let hook = WebhookReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n", hook.url());
    let mut diags = Diagnostics::default();
    let config = Config::parse(&SourceFile::new("router.toml", text), &mut diags).unwrap();
    let shutdown = CancellationToken::new();
    let mut notifiers = Vec::new();
    for _ in 0..2 {
        let outbox = Outbox::open(Store::open(dir.path()).unwrap()).unwrap();
        notifiers.push(Notifier::spawn(&config.receivers, outbox, None, shutdown.clone()).unwrap());
    }
    for n in 0..40 {
        let mut a = alert(&format!("marker_{n:02}"), "cache", Severity::Warning);
        a.labels.insert("n".into(), n.to_string());
        let notice = redops::notify::Notification::Alert(Box::new(redops::notify::AlertNotice::new(a)));
        notifiers[n % 2].0.send(&["hook".to_owned()], &notice);
    }
    let outbox = notifiers[0].0.outbox().clone();
    let got = tokio::task::spawn_blocking(move || {
        harness::wait_drained(&outbox, Duration::from_secs(10));
        hook.received()
    })
    .await
    .unwrap();
    let rules: Vec<&str> = got.iter().map(|r| r.body["rule"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..40).map(|n| format!("marker_{n:02}")).collect();
    assert_eq!(rules, expected, "each once, in order");
    shutdown.cancel();
    for (notifier, handle) in notifiers {
        drop(notifier);
        handle.join().await;
    }
}
