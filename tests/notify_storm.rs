//! A storm of 10,000 alert changes in 10 s reaches a receiver as a bounded
//! number of grouped messages, and nothing is lost on the way.

mod harness;

use std::collections::{BTreeMap, HashSet};
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

const RULES: usize = 10;
const TARGETS: usize = 100;
const SECONDS: u64 = 10;
const GROUP_INTERVAL: u64 = 1;

fn alert(rule: usize, target: usize, status: AlertStatus, starts_at: SystemTime) -> Alert {
    let (rule, target) = (format!("storm_{rule}"), format!("node-{target}"));
    Alert {
        fingerprint: fingerprint(&rule, &target),
        labels: BTreeMap::from([("rule".into(), rule.clone()), ("target".into(), target.clone())]),
        rule,
        target,
        severity: Severity::Warning,
        status,
        summary: "storm".into(),
        value: None,
        starts_at,
        ends_at: (status == AlertStatus::Resolved).then(SystemTime::now),
        runbook: None,
        description: None,
        annotations: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_changes_arrive_grouped_and_complete() {
    let hook = WebhookReceiver::start();
    let text = format!(
        "[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n[[route]]\nreceivers = [\"hook\"]\ngroup_by = [\"rule\"]\ngroup_interval = \"{GROUP_INTERVAL}s\"\n",
        hook.url()
    );
    let mut diags = Diagnostics::default();
    let config = Config::parse(&SourceFile::new("storm.toml", text), &mut diags).expect("config parses");
    assert!(!diags.has_errors(), "{}", diags.render());
    let store = Store::in_memory();
    let shutdown = CancellationToken::new();
    let (notifier, handle) = Notifier::spawn(
        &config.receivers,
        Outbox::open(store.clone()).unwrap(),
        None,
        shutdown.clone(),
    )
    .unwrap();
    let mut router = Router::new(&config, notifier, AlertStore::open(store).unwrap());

    // 1,000 changes a second for 10 s: every alert fires, then resolves, ...
    let started = SystemTime::now();
    let mut changes = 0;
    let mut firing = vec![false; RULES * TARGETS];
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for _tick in 0..SECONDS * 10 {
        ticker.tick().await;
        for _ in 0..100 {
            let i = changes % (RULES * TARGETS);
            firing[i] = !firing[i];
            let status = if firing[i] {
                AlertStatus::Firing
            } else {
                AlertStatus::Resolved
            };
            router.on_alert(
                alert(i % RULES, i / RULES, status, started),
                &[],
                tokio::time::Instant::now(),
            );
            changes += 1;
        }
        router.tick(tokio::time::Instant::now());
    }
    assert_eq!(changes, 10_000);
    // Let the last group interval pass and everything drain.
    tokio::time::sleep(Duration::from_secs(GROUP_INTERVAL + 1)).await;
    router.tick(tokio::time::Instant::now());
    let delivered = tokio::task::spawn_blocking(move || {
        // Something arrives, then the stream goes quiet for half a second.
        let started = harness::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            !hook.received().is_empty()
        });
        assert!(started, "nothing was delivered");
        let drained = harness::wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            let before = hook.received().len();
            std::thread::sleep(Duration::from_millis(500));
            hook.received().len() == before
        });
        assert!(drained, "deliveries never stopped: {} so far", hook.received().len());
        hook.received()
    })
    .await
    .unwrap();

    // The bound: each group sends at most once per group_interval, plus its
    // first send and the final flush.
    let elapsed = started.elapsed().unwrap().as_secs();
    let bound = RULES * (2 + (elapsed / GROUP_INTERVAL) as usize);
    eprintln!(
        "{} messages for 10,000 changes over {elapsed} s (bound {bound})",
        delivered.len()
    );
    assert!(
        delivered.len() <= bound,
        "{} messages for {RULES} groups, bound {bound}",
        delivered.len()
    );
    // Every alert made it into some message.
    let mut seen = HashSet::new();
    for m in &delivered {
        match m.body["kind"].as_str() {
            Some("group") => seen.extend(
                m.body["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["fingerprint"].to_string()),
            ),
            _ => {
                seen.insert(m.body["fingerprint"].to_string());
            }
        }
    }
    assert_eq!(seen.len(), RULES * TARGETS, "every alert reached the receiver");
    shutdown.cancel();
    handle.join().await;
}
