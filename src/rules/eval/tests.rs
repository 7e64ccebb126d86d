//! The rule state machine under virtual time: `for`, `clear` hysteresis,
//! flapping input, cooldown and keyspace windows.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, advance};

use super::*;
use crate::diagnostics::{Diagnostics, SourceFile};
use crate::event::{Health, KeyspaceCounts, Sample};
use crate::rules::load::{References, parse_rule_file};

fn evaluator(rules_toml: &str) -> Evaluator {
    let expr = Arc::new(ExprEngine::new());
    let refs = References {
        playbooks: vec!["optimize_memory"],
        targets: vec!["cache"],
        receivers: vec![],
    };
    let mut diags = Diagnostics::default();
    let rules = parse_rule_file(&SourceFile::new("test.toml", rules_toml), &refs, &expr, &mut diags);
    assert!(!diags.has_errors(), "{}", diags.render());
    let labels = [(
        "cache".to_owned(),
        BTreeMap::from([("env".to_owned(), "test".to_owned())]),
    )];
    Evaluator::new(
        rules.into_iter().map(Arc::new).collect(),
        expr,
        labels,
        Duration::from_secs(600),
    )
}

fn sample(metric: &str, value: f64) -> Event {
    Event::Sample(Sample {
        target: "cache".into(),
        at: SystemTime::now(),
        metrics: Metrics::from([(metric.to_owned(), MetricValue::Num(value))]),
    })
}

fn feed(ev: &mut Evaluator, event: Event) -> Vec<Action> {
    ev.on_event(&event, Instant::now(), SystemTime::now())
}

fn statuses(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Alert { alert: al, .. } => format!("{:?}", al.status).to_lowercase(),
            Action::RunPlaybook(i) => format!("run {}", i.playbook),
        })
        .collect()
}

const MEMORY: &str = r#"
[[rule]]
name = "memory_critical"
source = "sample"
when = "memory_used_pct > 85"
clear = "memory_used_pct < 80"
for = "2m"
severity = "critical"
playbook = "optimize_memory"
cooldown = "15m"
summary = "Memory at {{ memory_used_pct }}% on {{ target }}"
"#;

#[tokio::test(start_paused = true)]
async fn fires_after_for_with_summary_labels_and_playbook() {
    let mut ev = evaluator(MEMORY);
    assert!(
        feed(&mut ev, sample("memory_used_pct", 90.0)).is_empty(),
        "pending is silent"
    );
    advance(Duration::from_secs(60)).await;
    assert!(
        feed(&mut ev, sample("memory_used_pct", 91.0)).is_empty(),
        "for has not elapsed"
    );
    advance(Duration::from_secs(60)).await;
    let actions = feed(&mut ev, sample("memory_used_pct", 92.5));
    assert_eq!(statuses(&actions), ["firing", "run optimize_memory"]);
    let Action::Alert { alert, .. } = &actions[0] else {
        unreachable!()
    };
    assert_eq!(alert.summary, "Memory at 92.50% on cache");
    assert_eq!(alert.value.as_deref(), Some("92.50"));
    assert_eq!(alert.labels["env"], "test");
    assert_eq!(alert.labels["severity"], "critical");
    assert_eq!(alert.severity, crate::alerts::Severity::Critical);
}

#[tokio::test(start_paused = true)]
async fn clear_gives_hysteresis() {
    let mut ev = evaluator(MEMORY);
    feed(&mut ev, sample("memory_used_pct", 90.0));
    advance(Duration::from_secs(120)).await;
    assert_eq!(statuses(&feed(&mut ev, sample("memory_used_pct", 90.0)))[0], "firing");
    // Below `when` but above `clear`: still firing.
    assert!(feed(&mut ev, sample("memory_used_pct", 83.0)).is_empty());
    assert!(feed(&mut ev, sample("memory_used_pct", 80.5)).is_empty());
    let resolved = feed(&mut ev, sample("memory_used_pct", 79.0));
    assert_eq!(statuses(&resolved), ["resolved"]);
    let Action::Alert { alert, .. } = &resolved[0] else {
        unreachable!()
    };
    assert!(alert.ends_at.is_some());
}

#[tokio::test(start_paused = true)]
async fn flapping_input_fires_once() {
    let mut ev = evaluator(MEMORY);
    let mut all = Vec::new();
    // Oscillate 84 ↔ 86 for ten minutes, a sample every 10 s.
    for i in 0..60 {
        let v = if i % 2 == 0 { 86.0 } else { 84.0 };
        all.extend(feed(&mut ev, sample("memory_used_pct", v)));
        advance(Duration::from_secs(10)).await;
    }
    // Every dip below 85 cancels the pending window, so it never fires.
    assert!(statuses(&all).is_empty(), "{:?}", statuses(&all));

    // Now hold above 85 long enough to fire, then oscillate 81 ↔ 86: the
    // clear threshold (80) is never reached, so nothing resolves or re-fires.
    for _ in 0..13 {
        all.extend(feed(&mut ev, sample("memory_used_pct", 86.0)));
        advance(Duration::from_secs(10)).await;
    }
    for i in 0..60 {
        let v = if i % 2 == 0 { 86.0 } else { 81.0 };
        all.extend(feed(&mut ev, sample("memory_used_pct", v)));
        advance(Duration::from_secs(10)).await;
    }
    assert_eq!(statuses(&all), ["firing", "run optimize_memory"]);
}

#[tokio::test(start_paused = true)]
async fn cooldown_holds_back_the_playbook_but_not_the_alert() {
    let mut ev = evaluator(&MEMORY.replace("for = \"2m\"", "for = \"0s\""));
    assert_eq!(
        statuses(&feed(&mut ev, sample("memory_used_pct", 90.0))),
        ["firing", "run optimize_memory"]
    );
    assert_eq!(statuses(&feed(&mut ev, sample("memory_used_pct", 70.0))), ["resolved"]);
    advance(Duration::from_secs(5 * 60)).await;
    // Fires again within the 15 m cooldown: notified, not re-run.
    assert_eq!(statuses(&feed(&mut ev, sample("memory_used_pct", 90.0))), ["firing"]);
    assert_eq!(statuses(&feed(&mut ev, sample("memory_used_pct", 70.0))), ["resolved"]);
    advance(Duration::from_secs(11 * 60)).await;
    assert_eq!(
        statuses(&feed(&mut ev, sample("memory_used_pct", 90.0))),
        ["firing", "run optimize_memory"]
    );
}

#[tokio::test(start_paused = true)]
async fn missing_metrics_change_nothing() {
    let mut ev = evaluator(&MEMORY.replace("for = \"2m\"", "for = \"0s\""));
    assert_eq!(statuses(&feed(&mut ev, sample("memory_used_pct", 90.0)))[0], "firing");
    // A down target's sample carries only redis_up = 0.
    assert!(feed(&mut ev, sample("redis_up", 0.0)).is_empty());
    assert_eq!(ev.firing().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn keyspace_counts_slide_over_the_window() {
    let mut ev = evaluator(
        r#"
[[rule]]
name = "eviction_storm"
source = "keyspace"
events = ["evicted"]
window = "1m"
when = "count > 1000"
severity = "high"
summary = "{{ count }} evictions in {{ window_secs }}s"
"#,
    );
    let counts = |n: u64| {
        Event::KeyspaceCounts(KeyspaceCounts {
            target: "cache".into(),
            counts: vec![("eviction_storm".into(), n)],
        })
    };
    assert!(feed(&mut ev, counts(10)).is_empty());
    advance(Duration::from_secs(1)).await;
    let fired = feed(&mut ev, counts(2010));
    assert_eq!(statuses(&fired), ["firing"]);
    let Action::Alert { alert: a, .. } = &fired[0] else {
        unreachable!()
    };
    assert_eq!(a.summary, "2010 evictions in 60s");
    // A minute later with no new events the window is empty again.
    for _ in 0..61 {
        advance(Duration::from_secs(1)).await;
        let acts = feed(&mut ev, counts(2010));
        if !acts.is_empty() {
            assert_eq!(statuses(&acts), ["resolved"]);
            return;
        }
    }
    panic!("the storm never resolved after its window passed");
}

#[tokio::test(start_paused = true)]
async fn health_rules_see_redis_up() {
    let mut ev = evaluator(
        r#"
[[rule]]
name = "redis_down"
source = "health"
when = "redis_up == 0"
severity = "critical"
summary = "{{ target }} is down: {{ reason }}"
"#,
    );
    let health = |up: bool| {
        Event::Health(Health {
            target: "cache".into(),
            up,
            reason: (!up).then(|| "connection refused".into()),
            consecutive_failures: u32::from(!up),
        })
    };
    assert!(feed(&mut ev, health(true)).is_empty());
    let down = feed(&mut ev, health(false));
    let Action::Alert { alert: a, .. } = &down[0] else {
        panic!("{down:?}")
    };
    assert_eq!(a.summary, "cache is down: connection refused");
    assert_eq!(statuses(&feed(&mut ev, health(true))), ["resolved"]);
}

#[test]
fn count_window_survives_a_counter_reset() {
    let t0 = Instant::now();
    let mut w = CountWindow::default();
    assert_eq!(w.update(t0, 100, Duration::from_secs(60)), 100);
    assert_eq!(w.update(t0 + Duration::from_secs(1), 5, Duration::from_secs(60)), 5);
}

#[test]
fn a_count_window_keeps_a_bounded_number_of_points_and_counts_right() {
    let t0 = Instant::now();
    let window = Duration::from_secs(3600);
    let mut w = CountWindow::default();
    // Two hours of 10 ms ticks, one event a tick.
    let mut last = 0;
    for tick in 0..720_000u64 {
        last = w.update(t0 + Duration::from_millis(tick * 10), tick, window);
    }
    assert!(w.points.len() <= 1010, "{} points", w.points.len());
    // An hour of one event per 10 ms is 360,000, within a resolution step.
    assert!((360_000..=360_360).contains(&last), "{last}");
}

/// The wall clock jumps an hour forward, then a day back, while monotonic
/// time moves 10 s per sample: `for`, cooldown and look-back windows follow
/// the monotonic clock, so nothing fires early or clears wrongly.
#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_neither_fires_nor_clears_a_for_window() {
    let mut ev = evaluator(MEMORY);
    let base = SystemTime::now();
    let walls = [
        base,
        base + Duration::from_secs(3600),
        base - Duration::from_secs(86_400),
    ];
    let mut fired_after = None;
    for step in 0..15u64 {
        let wall = walls[step as usize % walls.len()];
        let event = Event::Sample(Sample {
            target: "cache".into(),
            at: wall,
            metrics: Metrics::from([("memory_used_pct".to_owned(), MetricValue::Num(90.0))]),
        });
        let actions = ev.on_event(&event, Instant::now(), wall);
        if fired_after.is_none() && statuses(&actions).contains(&"firing".to_owned()) {
            fired_after = Some(step * 10);
        }
        advance(Duration::from_secs(10)).await;
    }
    // `for = "2m"`: the 13th sample, 120 s after the first, fires it.
    assert_eq!(fired_after, Some(120));
}

fn parsed(rules_toml: &str) -> Vec<Arc<Rule>> {
    let refs = References {
        playbooks: vec![],
        targets: vec!["cache"],
        receivers: vec![],
    };
    let mut diags = Diagnostics::default();
    let rules = parse_rule_file(
        &SourceFile::new("test.toml", rules_toml),
        &refs,
        &ExprEngine::new(),
        &mut diags,
    );
    assert!(!diags.has_errors(), "{}", diags.render());
    rules.into_iter().map(Arc::new).collect()
}

/// A look-back rule loaded by a hot reload into an engine that had none
/// gets the history it reads, and only the metric it names is kept.
#[tokio::test(start_paused = true)]
async fn a_reloaded_look_back_rule_gets_its_history() {
    let expr = Arc::new(ExprEngine::new());
    let plain = "[[rule]]\nname = \"up\"\nsource = \"sample\"\nwhen = \"redis_up == 0\"\nseverity = \"critical\"\n";
    let mut ev = Evaluator::new(
        parsed(plain),
        expr,
        [("cache".to_owned(), BTreeMap::new())],
        Duration::ZERO,
    );
    let growth = "[[rule]]\nname = \"growth\"\nsource = \"sample\"\n\
                  when = \"delta(\\\"used_memory\\\", \\\"1m\\\") > 1000\"\nseverity = \"warning\"\n";
    let rules = parsed(growth);
    assert_eq!(
        crate::rules::history::history_metrics(&rules),
        Some(["used_memory".to_owned()].into())
    );
    ev.replace_rules(rules, SystemTime::now());
    let mut fired = false;
    for step in 0..8u32 {
        let event = Event::Sample(Sample {
            target: "cache".into(),
            at: SystemTime::now(),
            metrics: Metrics::from([
                ("used_memory".to_owned(), MetricValue::Num(f64::from(step) * 500.0)),
                ("connected_clients".to_owned(), MetricValue::Num(1.0)),
            ]),
        });
        fired |= statuses(&feed(&mut ev, event)).contains(&"firing".to_owned());
        advance(Duration::from_secs(10)).await;
    }
    assert!(fired, "delta over the reloaded rule's window never answered");
    let history = &ev.targets["cache"].history;
    assert!(
        history
            .window("connected_clients", Instant::now(), Duration::from_secs(60))
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn keep_firing_for_outlasts_a_short_dip_and_resolves_after_a_long_one() {
    let mut ev = evaluator(
        r#"
[[rule]]
name = "replication_broken"
source = "sample"
when = "master_link_up == 0"
keep_firing_for = "1m"
severity = "critical"
"#,
    );
    assert_eq!(statuses(&feed(&mut ev, sample("master_link_up", 0.0))), ["firing"]);
    // The link comes back for 30 s: not long enough to resolve.
    for _ in 0..6 {
        advance(Duration::from_secs(5)).await;
        assert!(feed(&mut ev, sample("master_link_up", 1.0)).is_empty());
    }
    advance(Duration::from_secs(5)).await;
    assert!(
        feed(&mut ev, sample("master_link_up", 0.0)).is_empty(),
        "still firing, no re-fire"
    );
    // Up for a full minute: resolved at the first sample a minute after it cleared.
    let mut resolved_after = None;
    for i in 1..=20 {
        advance(Duration::from_secs(5)).await;
        let actions = feed(&mut ev, sample("master_link_up", 1.0));
        if !actions.is_empty() {
            assert_eq!(statuses(&actions), ["resolved"]);
            resolved_after = Some(i * 5);
            break;
        }
    }
    // The first clear sample is at 5 s, so 60 s later is 65 s.
    assert_eq!(resolved_after, Some(65));
    assert!(ev.firing().is_empty());
}

const STORM: &str = r#"
[[rule]]
name = "storm"
source = "keyspace"
events = ["evicted"]
window = "1m"
when = "count > 1000"
severity = "high"
"#;

fn keyspace_counts(counts: &[(&Arc<str>, u64)]) -> Event {
    Event::KeyspaceCounts(KeyspaceCounts {
        target: "cache".into(),
        counts: counts.iter().map(|(name, n)| (Arc::clone(name), *n)).collect(),
    })
}

/// A keyspace rule seen inactive skips its state while its condition
/// fails; an alert restored as firing must still be stepped, and resolve.
#[tokio::test(start_paused = true)]
async fn a_restored_alert_of_a_quiet_keyspace_rule_resolves() {
    let mut ev = evaluator(STORM);
    let storm: Arc<str> = "storm".into();
    assert!(feed(&mut ev, keyspace_counts(&[(&storm, 10)])).is_empty());
    advance(Duration::from_secs(1)).await;
    let fired = feed(&mut ev, keyspace_counts(&[(&storm, 2010)]));
    let Some(Action::Alert { alert, .. }) = fired.first() else {
        panic!("expected the storm to fire: {fired:?}");
    };
    let alert = alert.clone();
    // Resolved once the window has passed; quiet from then on.
    advance(Duration::from_secs(61)).await;
    assert_eq!(
        statuses(&feed(&mut ev, keyspace_counts(&[(&storm, 2010)]))),
        ["resolved"]
    );
    advance(Duration::from_secs(1)).await;
    assert!(feed(&mut ev, keyspace_counts(&[(&storm, 2010)])).is_empty());
    // A restart hands the alert back as firing; the count is still low.
    ev.restore(&[alert], Instant::now());
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        statuses(&feed(&mut ev, keyspace_counts(&[(&storm, 2010)]))),
        ["resolved"]
    );
    assert!(ev.firing().is_empty());
}

/// A reload that reorders the rules: each count still meets its own rule.
#[tokio::test(start_paused = true)]
async fn keyspace_counts_meet_their_rules_after_a_reload_reorders_them() {
    let rule = |name: &str, threshold: u64| {
        format!(
            "[[rule]]\nname = \"{name}\"\nsource = \"keyspace\"\nevents = [\"set\"]\nwindow = \"1m\"\n\
             when = \"count > {threshold}\"\nseverity = \"info\"\n"
        )
    };
    let (low, high) = (rule("low", 100), rule("high", 1_000_000));
    let mut ev = evaluator(&format!("{low}\n{high}"));
    let (low_name, high_name): (Arc<str>, Arc<str>) = ("low".into(), "high".into());
    assert!(feed(&mut ev, keyspace_counts(&[(&low_name, 50), (&high_name, 50)])).is_empty());
    let swapped = parsed(&format!("{high}\n{low}"));
    assert!(
        ev.replace_rules(swapped, SystemTime::now()).is_empty(),
        "same rules, kept"
    );
    advance(Duration::from_secs(1)).await;
    assert!(
        feed(&mut ev, keyspace_counts(&[(&low_name, 50), (&high_name, 500)])).is_empty(),
        "500 is under high's threshold"
    );
    advance(Duration::from_secs(1)).await;
    let fired = feed(&mut ev, keyspace_counts(&[(&low_name, 500), (&high_name, 500)]));
    assert_eq!(statuses(&fired), ["firing"]);
    let Action::Alert { alert, .. } = &fired[0] else {
        unreachable!()
    };
    assert_eq!(alert.rule, "low");
}

/// Counts whose names come at a new address each time (another counter,
/// a cluster's sum) keep one window per rule: it neither grows nor starts
/// over.
#[tokio::test(start_paused = true)]
async fn a_rule_name_at_a_new_address_keeps_its_window() {
    let mut ev = evaluator(STORM);
    let (mut fired_at, mut resolved_at) = (None, None);
    for tick in 1..=800u64 {
        let name: Arc<str> = "storm".into();
        // 10 a tick up to 1,010 at tick 101, then no more: it fires then,
        // and resolves when the first tick's 10 leave the minute's window
        // (tick 601). A window started over would count all 1,010 again.
        let actions = feed(&mut ev, keyspace_counts(&[(&name, tick.min(101) * 10)]));
        match statuses(&actions).first().map(String::as_str) {
            Some("firing") => fired_at = Some(tick),
            Some("resolved") => resolved_at = Some(tick),
            _ => {}
        }
        advance(Duration::from_millis(100)).await;
    }
    assert_eq!(fired_at, Some(101));
    assert!(
        resolved_at.is_some_and(|t| (600..=610).contains(&t)),
        "resolved at tick {resolved_at:?}"
    );
    let slots = &ev.targets["cache"].keyspace;
    assert_eq!(
        (slots.slots.len(), slots.by_address.len(), slots.by_name.len()),
        (1, 1, 1)
    );
}
