use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;
use crate::alerts::{Severity, fingerprint};
use crate::config::notify::default_incidents;

fn alert(rule: &str, target: &str, severity: Severity, labels: &[(&str, &str)]) -> AlertNotice {
    let mut l: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    l.insert("target".into(), target.into());
    l.insert("rule".into(), rule.into());
    AlertNotice::new(Alert {
        fingerprint: fingerprint(rule, target),
        rule: rule.into(),
        target: target.into(),
        severity,
        status: AlertStatus::Firing,
        labels: l,
        summary: format!("{rule} on {target}"),
        value: None,
        starts_at: SystemTime::now(),
        ends_at: None,
        runbook: None,
        description: None,
        annotations: Default::default(),
    })
}

fn resolved(mut n: AlertNotice) -> AlertNotice {
    n.alert.status = AlertStatus::Resolved;
    n.alert.ends_at = Some(SystemTime::now());
    n
}

fn node_down(addr: &str) -> AlertNotice {
    alert(
        "redis_down",
        &format!("lab/{addr}"),
        Severity::Critical,
        &[("group", "lab"), ("addr", addr)],
    )
}

fn failover() -> AlertNotice {
    alert("sentinel_failover", "lab", Severity::High, &[("group", "lab")])
}

fn odown(addr: &str) -> AlertNotice {
    alert(
        "master_odown",
        &format!("lab/{addr}"),
        Severity::Critical,
        &[("group", "lab"), ("addr", addr)],
    )
}

fn correlator() -> Correlator {
    Correlator::new(default_incidents(), Gates::default())
}

fn rules(list: &[Alert]) -> Vec<&str> {
    let mut rules: Vec<&str> = list.iter().map(|a| a.rule.as_str()).collect();
    rules.sort();
    rules
}

#[test]
fn a_failover_folds_what_came_before_it_and_what_follows() {
    let mut c = correlator();
    let t0 = Instant::now();
    let down = node_down("127.0.0.1:7001");
    let od = odown("127.0.0.1:7001");
    assert_eq!(c.on_alert(&down, &[], t0), Verdict::Held);
    // The node is down: what else is said of it folds under that, for now.
    let under_down = Verdict::Folded {
        root: down.alert.fingerprint.clone(),
    };
    assert_eq!(c.on_alert(&od, &[], t0 + Duration::from_secs(1)), under_down);
    // The failover resolves the odown before it fires: still folded, as resolved.
    assert_eq!(c.on_alert(&resolved(od), &[], t0 + Duration::from_secs(2)), under_down);
    let f = failover();
    assert_eq!(c.on_alert(&f, &[], t0 + Duration::from_secs(2)), Verdict::Deliver);
    let folded = c.folded(&f.alert.fingerprint);
    assert_eq!(rules(&folded), ["master_odown", "redis_down"]);
    assert!(
        folded
            .iter()
            .any(|a| a.rule == "master_odown" && a.status == AlertStatus::Resolved)
    );

    // A replica's subscriber reconnecting after the failover folds too.
    let sub = alert(
        "keyspace_subscriber_disconnected",
        "lab/127.0.0.1:7002",
        Severity::Warning,
        &[("group", "lab")],
    );
    let root = f.alert.fingerprint.clone();
    assert_eq!(
        c.on_alert(&sub, &[], t0 + Duration::from_secs(5)),
        Verdict::Folded { root: root.clone() }
    );
    // The old master comes back: its resolve is folded, nothing is sent.
    assert_eq!(
        c.on_alert(&resolved(down), &[], t0 + Duration::from_secs(10)),
        Verdict::Folded { root: root.clone() }
    );
    assert!(
        c.tick(t0 + Duration::from_secs(120)).is_empty(),
        "nothing pages on its own"
    );
    assert_eq!(c.folded(&root).len(), 3);
}

#[test]
fn a_held_alert_without_its_cause_pages_after_hold_and_a_blip_does_not() {
    let mut c = correlator();
    let t0 = Instant::now();
    let replica = node_down("127.0.0.1:7002");
    assert_eq!(c.on_alert(&replica, &[], t0), Verdict::Held);
    assert!(c.tick(t0 + Duration::from_secs(44)).is_empty());
    let released = c.tick(t0 + Duration::from_secs(45));
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].notice.alert.rule, "redis_down");

    let blip = node_down("127.0.0.1:7003");
    assert_eq!(c.on_alert(&blip, &[], t0), Verdict::Held);
    assert_eq!(
        c.on_alert(&resolved(blip), &[], t0 + Duration::from_secs(3)),
        Verdict::Held
    );
    assert!(
        c.tick(t0 + Duration::from_secs(60)).is_empty(),
        "a blip that resolved while held is not sent"
    );
}

#[test]
fn a_standalone_target_is_never_held() {
    let mut c = correlator();
    let down = alert("redis_down", "cache", Severity::Critical, &[]);
    assert_eq!(c.on_alert(&down, &[], Instant::now()), Verdict::Deliver);
}

#[test]
fn every_other_alert_of_a_down_target_folds_under_redis_down() {
    let mut c = correlator();
    let t0 = Instant::now();
    let down = alert("redis_down", "cache", Severity::Critical, &[]);
    assert_eq!(c.on_alert(&down, &[], t0), Verdict::Deliver);
    let root = down.alert.fingerprint.clone();
    let mem = alert("memory_critical", "cache", Severity::Critical, &[]);
    assert_eq!(
        c.on_alert(&mem, &[], t0 + Duration::from_secs(600)),
        Verdict::Folded { root: root.clone() },
        "while the target is down, however long"
    );
    let other = alert("memory_critical", "sessions", Severity::Critical, &[]);
    assert_eq!(
        c.on_alert(&other, &[], t0),
        Verdict::Deliver,
        "another target is not explained"
    );

    // The target comes back; the subscriber alert that follows folds too.
    assert_eq!(
        c.on_alert(&resolved(down), &[], t0 + Duration::from_secs(700)),
        Verdict::Deliver
    );
    let sub = alert("keyspace_subscriber_disconnected", "cache", Severity::Warning, &[]);
    assert_eq!(
        c.on_alert(&sub, &[], t0 + Duration::from_secs(705)),
        Verdict::Folded { root: root.clone() }
    );
    // memory_critical still fires after its cause resolved: it pages now;
    // the subscriber alert, folded after the resolve, stays quiet.
    let released = c.tick(t0 + Duration::from_secs(706));
    assert_eq!(
        released
            .iter()
            .map(|r| r.notice.alert.rule.as_str())
            .collect::<Vec<_>>(),
        ["memory_critical"]
    );
    assert!(c.tick(t0 + Duration::from_secs(800)).is_empty());
    // After the window, the target's alerts page as usual again.
    let later = alert("memory_warning", "cache", Severity::Warning, &[]);
    assert_eq!(c.on_alert(&later, &[], t0 + Duration::from_secs(800)), Verdict::Deliver);
}

#[test]
fn a_folded_alert_more_severe_than_its_cause_pages_when_the_window_ends() {
    let mut c = correlator();
    let t0 = Instant::now();
    let f = failover();
    assert_eq!(c.on_alert(&f, &[], t0), Verdict::Deliver);
    // The new master goes down right after the failover: folded for now...
    let new_master = node_down("127.0.0.1:7002");
    assert!(matches!(
        c.on_alert(&new_master, &[], t0 + Duration::from_secs(10)),
        Verdict::Folded { .. }
    ));
    assert!(c.tick(t0 + Duration::from_secs(60)).is_empty());
    // ...but not past the window: it is more severe than the failover.
    let released = c.tick(t0 + Duration::from_secs(61));
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].notice.alert.target, "lab/127.0.0.1:7002");
    // Past the window, a new alert of the group is its own page.
    assert_eq!(
        c.on_alert(&odown("127.0.0.1:7002"), &[], t0 + Duration::from_secs(62)),
        Verdict::Held
    );
}

#[test]
fn what_was_folded_under_a_down_node_moves_up_to_the_failover() {
    let mut c = correlator();
    let t0 = Instant::now();
    let down = node_down("127.0.0.1:7001");
    assert_eq!(c.on_alert(&down, &[], t0), Verdict::Held);
    let sub = alert(
        "keyspace_events_lost",
        "lab/127.0.0.1:7001",
        Severity::Warning,
        &[("group", "lab")],
    );
    // Explained by both; the node's own outage is the nearer cause.
    assert_eq!(
        c.on_alert(&sub, &[], t0 + Duration::from_secs(1)),
        Verdict::Folded {
            root: down.alert.fingerprint.clone()
        }
    );
    let f = failover();
    assert_eq!(c.on_alert(&f, &[], t0 + Duration::from_secs(2)), Verdict::Deliver);
    assert_eq!(
        rules(&c.folded(&f.alert.fingerprint)),
        ["keyspace_events_lost", "redis_down"]
    );
    assert_eq!(c.root_of(&sub.alert.fingerprint), Some(f.alert.fingerprint.as_str()));
}

#[test]
fn playbook_messages_wait_with_a_held_alert_and_drop_with_a_folded_one() {
    let gates = Gates::default();
    let mut c = Correlator::new(default_incidents(), gates.clone());
    let t0 = Instant::now();
    let message = |text: &str| Notification::Message {
        playbook: "redis_outage".into(),
        run_id: "r1".into(),
        target: "lab/127.0.0.1:7001".into(),
        body: serde_json::json!({ "text": text }),
    };
    let down = node_down("127.0.0.1:7001");
    c.on_alert(&down, &[], t0);
    assert!(matches!(
        gates.admit(&down.alert.fingerprint, &["pager".into()], &message("still down")),
        Admission::Held
    ));
    c.on_alert(&failover(), &[], t0 + Duration::from_secs(2));
    assert!(matches!(
        gates.admit(&down.alert.fingerprint, &["pager".into()], &message("again")),
        Admission::Folded { .. }
    ));

    // Held and never folded: the message goes out with the alert.
    let replica = node_down("127.0.0.1:7002");
    let later = t0 + Duration::from_secs(100);
    c.on_alert(&replica, &[], later);
    gates.admit(&replica.alert.fingerprint, &["pager".into()], &message("replica down"));
    let released = c.tick(later + Duration::from_secs(45));
    let replica_release = released
        .iter()
        .find(|r| r.notice.alert.fingerprint == replica.alert.fingerprint)
        .expect("the replica's redis_down pages after hold");
    assert_eq!(replica_release.stash.len(), 1);
    // The old master, still down long after the failover, pages on its own
    // too (more severe than its cause); its dropped message is not sent.
    let master_release = released
        .iter()
        .find(|r| r.notice.alert.fingerprint == down.alert.fingerprint)
        .expect("released at the end of the window");
    assert!(master_release.stash.is_empty());
    assert!(matches!(
        gates.admit(&replica.alert.fingerprint, &[], &message("after")),
        Admission::Send
    ));
}

#[test]
fn five_failovers_are_five_incidents() {
    let mut c = correlator();
    let t0 = Instant::now();
    let mut delivered = 0;
    for i in 0..5u64 {
        let at = t0 + Duration::from_secs(i * 20);
        let addr = format!("127.0.0.1:{}", 7001 + i % 2);
        c.on_alert(&node_down(&addr), &[], at);
        let mut f = failover();
        f.alert.starts_at = SystemTime::now() + Duration::from_secs(i);
        if c.on_alert(&f, &[], at + Duration::from_secs(2)) == Verdict::Deliver {
            delivered += 1;
        }
        assert_eq!(rules(&c.folded(&f.alert.fingerprint)), ["redis_down"], "failover {i}");
        c.on_alert(&resolved(node_down(&addr)), &[], at + Duration::from_secs(8));
        assert!(c.tick(at + Duration::from_secs(9)).is_empty());
    }
    assert_eq!(delivered, 5);
}

#[test]
fn a_failover_soon_after_another_lists_its_run_up_even_if_resolved() {
    let mut c = correlator();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let (a, b) = ("127.0.0.1:7001", "127.0.0.1:7002");
    let f1 = failover();
    c.on_alert(&node_down(a), &[], at(0));
    assert_eq!(c.on_alert(&f1, &[], at(2)), Verdict::Deliver);
    let root = Verdict::Folded {
        root: f1.alert.fingerprint.clone(),
    };
    assert_eq!(c.on_alert(&resolved(node_down(a)), &[], at(3)), root);
    // Seconds later the new master goes down: within the first failover's
    // window, so it folds there; a Sentinel's `-odown` ends its odown
    // before the second `+switch-master`.
    assert_eq!(c.on_alert(&node_down(b), &[], at(4)), root);
    assert_eq!(c.on_alert(&odown(b), &[], at(6)), root);
    assert_eq!(c.on_alert(&resolved(odown(b)), &[], at(6)), root);
    let mut f2 = failover();
    f2.alert.starts_at = SystemTime::now() + Duration::from_secs(7);
    assert_eq!(c.on_alert(&f2, &[], at(7)), Verdict::Deliver);
    let folded = c.folded(&f2.alert.fingerprint);
    let listed: Vec<(&str, &str, AlertStatus)> = folded
        .iter()
        .map(|m| (m.rule.as_str(), m.target.as_str(), m.status))
        .collect();
    assert_eq!(
        listed,
        [
            ("redis_down", "lab/127.0.0.1:7002", AlertStatus::Firing),
            ("master_odown", "lab/127.0.0.1:7002", AlertStatus::Resolved),
        ],
        "the second page names its own run-up, not the first one's resolved outage"
    );
    // The next failover lists neither what resolved before the last one
    // nor an echo of the last one that fired longer than `hold` ago.
    c.on_alert(&resolved(node_down(b)), &[], at(8));
    let echo = alert(
        "keyspace_subscriber_disconnected",
        "lab/127.0.0.1:7001",
        Severity::Warning,
        &[("group", "lab")],
    );
    c.on_alert(&echo, &[], at(10));
    c.on_alert(&resolved(echo), &[], at(12));
    c.on_alert(&odown(a), &[], at(40));
    c.on_alert(&resolved(odown(a)), &[], at(41));
    let mut f3 = failover();
    f3.alert.starts_at = SystemTime::now() + Duration::from_secs(70);
    c.on_alert(&f3, &[], at(70));
    let folded = c.folded(&f3.alert.fingerprint);
    let listed: Vec<(&str, &str)> = folded.iter().map(|m| (m.rule.as_str(), m.target.as_str())).collect();
    assert_eq!(listed, [("master_odown", "lab/127.0.0.1:7001")]);
}

#[test]
fn no_incident_config_folds_nothing() {
    let mut c = Correlator::new(Vec::new(), Gates::default());
    assert_eq!(
        c.on_alert(&node_down("127.0.0.1:7001"), &[], Instant::now()),
        Verdict::Deliver
    );
}
