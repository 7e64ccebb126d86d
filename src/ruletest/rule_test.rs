//! One `[[test]]`: feeds series and events to the real [`Evaluator`] on a
//! virtual clock and compares, at each `[[test.expect]]`, the alerts pending
//! and firing and the playbooks started with what the test expects.
//!
//! Time is virtual: every input carries its offset from the start of the
//! test, and the evaluator is handed `start + offset` as its clock. Nothing
//! sleeps, so a test of hours runs in microseconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regex::Regex;
use tokio::time::Instant;

use super::series::{Point, Series};
use crate::alerts::store::AlertStore;
use crate::alerts::{Alert, AlertStatus, Phase, Severity};
use crate::config::Config;
use crate::event::sentinel::SentinelEvent;
use crate::event::{Event, Health, KeyspaceCounts, MetricValue, Metrics, Sample, ScheduleTick, SentinelNotice};
use crate::invocation::Action;
use crate::matcher::Matcher;
use crate::notify::router::Router;
use crate::notify::{AlertNotice, Notification, Notifier};
use crate::outbox::Outbox;
use crate::rules::expr::ExprEngine;
use crate::rules::{Evaluator, Rule, SourceKind};
use crate::store::Store;

/// The wall clock at the start of every test, so output never depends on
/// the day the test runs: 2024-01-01T00:00:00Z.
const WALL_START: Duration = Duration::from_secs(1_704_067_200);

pub struct RuleTest {
    pub name: String,
    pub line: usize,
    pub interval: Duration,
    pub targets: BTreeMap<String, TargetInput>,
    pub events: Vec<TimedEvent>,
    pub silences: Vec<SilenceInput>,
    pub acks: Vec<AckInput>,
    pub expects: Vec<Expect>,
}

/// A silence in force from `from` to `until` of the test's clock.
pub struct SilenceInput {
    pub matchers: Vec<Matcher>,
    pub from: Duration,
    pub until: Duration,
}

/// Someone acknowledges the alert of `rule` on `target` at `at`.
pub struct AckInput {
    pub at: Duration,
    pub rule: String,
    pub target: String,
}

#[derive(Default)]
pub struct TargetInput {
    pub labels: BTreeMap<String, String>,
    pub series: BTreeMap<String, Series>,
}

pub struct TimedEvent {
    pub at: Duration,
    pub input: EventInput,
}

pub enum EventInput {
    /// `count` more keyspace events matched `rule` on `target`.
    Keyspace {
        target: String,
        rule: String,
        count: u64,
    },
    Sentinel(SentinelNotice),
    Cluster(crate::event::cluster::ClusterNotice),
    Health {
        target: String,
        up: bool,
        reason: Option<String>,
    },
    /// A schedule rule falls due for `target`.
    Schedule {
        target: String,
        rule: String,
    },
}

pub struct Expect {
    pub at: Duration,
    pub line: usize,
    pub alerts: Option<Vec<ExpectedAlert>>,
    pub playbooks: Option<Vec<ExpectedRun>>,
    pub notifications: Option<Vec<ExpectedNotification>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Alert,
    Group,
    Message,
    DeadLetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    Firing,
    Resolved,
    Acknowledged,
}

pub struct ExpectedNotification {
    pub receiver: String,
    pub kind: Option<NotificationKind>,
    pub rule: Option<String>,
    pub target: Option<String>,
    pub status: Option<NotificationStatus>,
    /// Sorted rule names of the alerts folded into it (`[[incident]]`).
    pub folded: Option<Vec<String>>,
    pub summary: Option<TextMatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Neither pending nor firing: asserts the alert is absent.
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

pub enum TextMatch {
    Exact(String),
    Contains(String),
    Regex(Regex),
}

impl TextMatch {
    fn matches(&self, text: &str) -> bool {
        match self {
            TextMatch::Exact(s) => text == s,
            TextMatch::Contains(s) => text.contains(s.as_str()),
            TextMatch::Regex(r) => r.is_match(text),
        }
    }

    fn describe(&self) -> String {
        match self {
            TextMatch::Exact(s) => format!("{s:?}"),
            TextMatch::Contains(s) => format!("containing {s:?}"),
            TextMatch::Regex(r) => format!("matching /{}/", r.as_str()),
        }
    }
}

pub struct ExpectedAlert {
    pub rule: String,
    pub target: Option<String>,
    pub state: AlertState,
    pub severity: Option<Severity>,
    pub labels: BTreeMap<String, String>,
    pub summary: Option<TextMatch>,
    pub value: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

pub struct ExpectedRun {
    pub playbook: String,
    pub rule: Option<String>,
    pub target: Option<String>,
    pub params: Option<BTreeMap<String, toml::Value>>,
}

/// An alert as the test sees it at one moment.
struct Actual {
    rule: String,
    target: String,
    state: AlertState,
    severity: Severity,
    /// The alert as it fired; `None` while pending.
    fired: Option<Alert>,
}

struct Run {
    at: Duration,
    playbook: String,
    rule: String,
    target: String,
    params: BTreeMap<String, toml::Value>,
}

/// What the router sent to one receiver: one per alert of a group.
struct Sent {
    at: Duration,
    receiver: String,
    kind: NotificationKind,
    rule: String,
    target: String,
    status: Option<NotificationStatus>,
    summary: String,
    /// Sorted rule names of the alerts folded into it.
    folded: Vec<String>,
}

/// The engine's router on the test's clock, sending to an outbox that no
/// worker drains but the test.
struct Routing {
    router: Router,
    outbox: Outbox,
    alerts: AlertStore,
    receivers: Vec<String>,
    wall_ms: Arc<AtomicI64>,
}

impl Routing {
    fn new(config: &Config, silences: &[SilenceInput]) -> Result<Routing, String> {
        let store = Store::in_memory();
        let outbox = Outbox::open(store.clone()).map_err(|e| e.to_string())?;
        let alerts = AlertStore::open(store).map_err(|e| e.to_string())?;
        let start_ms = WALL_START.as_millis() as i64;
        for s in silences {
            let (from, until) = (
                start_ms + s.from.as_millis() as i64,
                start_ms + s.until.as_millis() as i64,
            );
            alerts
                .add_silence(&s.matchers, from, until, "redops test", "")
                .map_err(|e| e.to_string())?;
        }
        let receivers: Vec<String> = config.receivers.keys().cloned().collect();
        let notifier = Notifier::queue_only(receivers.clone(), outbox.clone());
        let wall_ms = Arc::new(AtomicI64::new(start_ms));
        let clock = wall_ms.clone();
        let router = Router::new(config, notifier, alerts.clone()).with_clock(Arc::new(move || clock.load(Relaxed)));
        Ok(Routing {
            router,
            outbox,
            alerts,
            receivers,
            wall_ms,
        })
    }

    /// Everything queued since the last call, by receiver.
    fn drain(&self, at: Duration, out: &mut Vec<Sent>) {
        for receiver in &self.receivers {
            while let Ok(Some(entry)) = self.outbox.head(receiver) {
                let _ = self.outbox.delivered(entry.id);
                let Ok(n) = serde_json::from_str::<Notification>(&entry.payload) else {
                    continue;
                };
                let sent = |kind, notice: &AlertNotice| Sent {
                    at,
                    receiver: receiver.clone(),
                    kind,
                    rule: notice.alert.rule.clone(),
                    target: notice.alert.target.clone(),
                    status: Some(match (&notice.acked_by, notice.alert.status) {
                        (Some(_), _) => NotificationStatus::Acknowledged,
                        (None, AlertStatus::Firing) => NotificationStatus::Firing,
                        (None, AlertStatus::Resolved) => NotificationStatus::Resolved,
                    }),
                    summary: notice.alert.summary.clone(),
                    folded: {
                        let mut f: Vec<String> = notice.folded.iter().map(|a| a.rule.clone()).collect();
                        f.sort();
                        f
                    },
                };
                match &n {
                    Notification::Alert(notice) => out.push(sent(NotificationKind::Alert, notice)),
                    Notification::Group { alerts, .. } => {
                        out.extend(alerts.iter().map(|a| sent(NotificationKind::Group, a)));
                    }
                    Notification::Message { playbook, target, .. } => out.push(Sent {
                        at,
                        receiver: receiver.clone(),
                        kind: NotificationKind::Message,
                        rule: playbook.clone(),
                        target: target.clone(),
                        status: None,
                        summary: String::new(),
                        folded: Vec::new(),
                    }),
                    Notification::DeadLetter { .. } => {}
                }
            }
        }
    }
}

/// Runs the test; the failures, as lines of text (empty when it passes).
pub fn run(test: &RuleTest, rules: &[Arc<Rule>], expr: &Arc<ExprEngine>, config: Option<&Config>) -> Vec<String> {
    let mut evaluator = Evaluator::new(
        rules.to_vec(),
        expr.clone(),
        test.targets.iter().map(|(n, t)| (n.clone(), t.labels.clone())),
        crate::rules::history::history_retention(rules),
    );
    let start = Instant::now();
    let clock = |at: Duration| (start + at, UNIX_EPOCH + WALL_START + at);

    let mut expects: Vec<&Expect> = test.expects.iter().collect();
    expects.sort_by_key(|e| e.at);
    let end = expects.last().map_or(Duration::ZERO, |e| e.at);
    let last_step = (end.as_nanos() / test.interval.as_nanos().max(1)) as u32;
    let steps: BTreeSet<Duration> = (0..=last_step).map(|k| test.interval * k).collect();
    let moments: BTreeSet<Duration> = steps
        .iter()
        .copied()
        .chain(test.events.iter().map(|e| e.at))
        .chain(expects.iter().map(|e| e.at))
        .filter(|at| *at <= end)
        .collect();

    let keyspace_rules: Vec<&Arc<Rule>> = rules.iter().filter(|r| r.source() == SourceKind::Keyspace).collect();
    let mut keyspace_counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for target in test.targets.keys() {
        for rule in keyspace_rules.iter().filter(|r| r.applies_to(target)) {
            keyspace_counts.insert((target.clone(), rule.name.clone()), 0);
        }
    }
    let mut failures_in_a_row: HashMap<&str, u32> = HashMap::new();
    let mut fired: HashMap<(String, String), Alert> = HashMap::new();
    let mut runs: Vec<Run> = Vec::new();
    let mut runs_checked = 0;
    let mut failures = Vec::new();
    let mut routing = match config.map(|c| Routing::new(c, &test.silences)).transpose() {
        Ok(r) => r,
        Err(e) => return vec![format!("cannot set up routing: {e}")],
    };
    let mut sent: Vec<Sent> = Vec::new();
    let mut sent_checked = 0;

    let moments: BTreeSet<Duration> = moments
        .into_iter()
        .chain(test.acks.iter().map(|a| a.at).filter(|at| *at <= end))
        .collect();
    for &at in &moments {
        let (now, wall) = clock(at);
        if let Some(r) = &routing {
            r.wall_ms.store((WALL_START + at).as_millis() as i64, Relaxed);
            for ack in test.acks.iter().filter(|a| a.at == at) {
                let id = crate::alerts::fingerprint(&ack.rule, &ack.target);
                match r.alerts.ack(&id, "redops test", None) {
                    Ok(Ok(_)) => {}
                    Ok(Err(why)) => failures.push(format!(
                        "at {}: cannot acknowledge {} on {}: {why}",
                        human(at),
                        ack.rule,
                        ack.target
                    )),
                    Err(e) => failures.push(format!("at {}: cannot acknowledge: {e}", human(at))),
                }
            }
        }
        let mut inputs = Vec::new();
        if steps.contains(&at) {
            let step = (at.as_nanos() / test.interval.as_nanos().max(1)) as usize;
            for (name, target) in test.targets.iter().filter(|(_, t)| !t.series.is_empty()) {
                let failures = failures_in_a_row.entry(name).or_default();
                inputs.extend(sample_events(name, target, step, failures, wall));
            }
        }
        for event in test.events.iter().filter(|e| e.at == at) {
            match &event.input {
                EventInput::Keyspace { target, rule, count } => {
                    *keyspace_counts.entry((target.clone(), rule.clone())).or_default() += count;
                }
                EventInput::Sentinel(notice) => inputs.push(Event::Sentinel(notice.clone())),
                EventInput::Cluster(notice) => inputs.push(Event::Cluster(notice.clone())),
                EventInput::Schedule { target, rule } => inputs.push(Event::Schedule(ScheduleTick {
                    target: target.clone(),
                    rule: rule.clone(),
                    catch_up: false,
                })),
                EventInput::Health { target, up, reason } => {
                    let failures = failures_in_a_row.entry(target).or_default();
                    *failures = if *up { 0 } else { *failures + 1 };
                    inputs.push(Event::Health(Health {
                        target: target.clone(),
                        up: *up,
                        reason: if *up {
                            None
                        } else {
                            reason.clone().or(Some("down".into()))
                        },
                        consecutive_failures: *failures,
                    }));
                }
            }
        }
        // Keyspace rules are evaluated on a tick, whether events came or not.
        let mut per_target: BTreeMap<&str, Vec<(Arc<str>, u64)>> = BTreeMap::new();
        for ((target, rule), count) in &keyspace_counts {
            per_target
                .entry(target)
                .or_default()
                .push((rule.as_str().into(), *count));
        }
        inputs.extend(per_target.into_iter().map(|(target, counts)| {
            Event::KeyspaceCounts(KeyspaceCounts {
                target: target.to_owned(),
                counts,
            })
        }));

        let mut actions = Vec::new();
        for event in &inputs {
            actions.extend(evaluator.on_event(event, now, wall));
        }
        actions.extend(evaluator.tick(now, wall));
        for action in actions {
            match action {
                Action::Alert { alert, notify } => {
                    if let Some(r) = routing.as_mut() {
                        r.router.on_alert(alert.clone(), &notify, now);
                    }
                    let key = (alert.rule.clone(), alert.target.clone());
                    match alert.status {
                        AlertStatus::Firing => fired.insert(key, alert),
                        AlertStatus::Resolved => fired.remove(&key),
                    };
                }
                Action::RunPlaybook(inv) => runs.push(Run {
                    at,
                    playbook: inv.playbook,
                    rule: inv.rule,
                    target: inv.target,
                    params: inv.params,
                }),
            }
        }

        if let Some(r) = routing.as_mut() {
            r.router.refresh(now);
            r.drain(at, &mut sent);
        }

        for expect in expects.iter().filter(|e| e.at == at) {
            if let Some(expected) = &expect.notifications {
                let since = sent_checked;
                sent_checked = sent.len();
                let diff = compare_notifications(expected, &sent[since..]);
                if !diff.is_empty() {
                    failures.push(format!("at {} (line {}), notifications:", human(at), expect.line));
                    failures.extend(diff.into_iter().map(|l| format!("  {l}")));
                }
            }
            if let Some(expected) = &expect.alerts {
                let actual = actual_alerts(&evaluator, rules, &fired);
                let diff = compare_alerts(expected, &actual);
                if !diff.is_empty() {
                    failures.push(format!("at {} (line {}), alerts:", human(at), expect.line));
                    failures.extend(diff.into_iter().map(|l| format!("  {l}")));
                }
            }
            if let Some(expected) = &expect.playbooks {
                let since = runs_checked;
                runs_checked = runs.len();
                let diff = compare_runs(expected, &runs[since..]);
                if !diff.is_empty() {
                    failures.push(format!("at {} (line {}), playbook runs:", human(at), expect.line));
                    failures.extend(diff.into_iter().map(|l| format!("  {l}")));
                }
            }
        }
    }
    failures
}

/// The health event and the sample of one target at one step, as the
/// sampler emits them.
fn sample_events(name: &str, target: &TargetInput, step: usize, failures: &mut u32, wall: SystemTime) -> Vec<Event> {
    let stale = target.series.values().any(|s| *s.at(step) == Point::Stale);
    *failures = if stale { *failures + 1 } else { 0 };
    let health = Event::Health(Health {
        target: name.to_owned(),
        up: !stale,
        reason: stale.then(|| "stale".to_owned()),
        consecutive_failures: *failures,
    });
    let mut metrics = Metrics::from([("redis_up".to_owned(), MetricValue::Num(if stale { 0.0 } else { 1.0 }))]);
    if !stale {
        for (metric, series) in &target.series {
            match series.at(step) {
                Point::Num(v) => metrics.insert(metric.clone(), MetricValue::Num(*v)),
                Point::Text(t) => metrics.insert(metric.clone(), MetricValue::Text(t.clone())),
                Point::Missing | Point::Stale => None,
            };
        }
    }
    let sample = Event::Sample(Sample {
        target: name.to_owned(),
        at: wall,
        metrics,
    });
    vec![health, sample]
}

fn actual_alerts(evaluator: &Evaluator, rules: &[Arc<Rule>], fired: &HashMap<(String, String), Alert>) -> Vec<Actual> {
    let mut out: Vec<Actual> = evaluator
        .phases()
        .filter_map(|(rule, target, phase)| {
            let state = match phase {
                Phase::Inactive => return None,
                Phase::Pending { .. } => AlertState::Pending,
                Phase::Firing { .. } => AlertState::Firing,
            };
            let severity = rules.iter().find(|r| r.name == rule)?.severity;
            Some(Actual {
                rule: rule.to_owned(),
                target: target.to_owned(),
                state,
                severity,
                fired: fired.get(&(rule.to_owned(), target.to_owned())).cloned(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.rule, &a.target).cmp(&(&b.rule, &b.target)));
    out
}

/// The differences between field values, as `(field, expected, got)`.
fn field_diffs(expected: &ExpectedAlert, actual: &Actual) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if expected.state != actual.state {
        out.push((
            "state".into(),
            expected.state.as_str().into(),
            actual.state.as_str().into(),
        ));
    }
    if expected.state == AlertState::Inactive {
        return out;
    }
    if let Some(s) = expected.severity
        && s != actual.severity
    {
        out.push(("severity".into(), s.to_string(), actual.severity.to_string()));
    }
    let Some(alert) = &actual.fired else {
        return out;
    };
    for (label, value) in &expected.labels {
        let got = alert.labels.get(label);
        if got != Some(value) {
            let got = got.map_or_else(|| "(no such label)".to_owned(), |g| format!("{g:?}"));
            out.push((format!("labels.{label}"), format!("{value:?}"), got));
        }
    }
    if let Some(summary) = &expected.summary
        && !summary.matches(&alert.summary)
    {
        out.push(("summary".into(), summary.describe(), format!("{:?}", alert.summary)));
    }
    for (key, text) in &expected.annotations {
        let got = alert.annotations.get(key);
        if got != Some(text) {
            let got = got.map_or_else(|| "(no such annotation)".to_owned(), |g| format!("{g:?}"));
            out.push((format!("annotations.{key}"), format!("{text:?}"), got));
        }
    }
    if let Some(value) = &expected.value
        && alert.value.as_ref() != Some(value)
    {
        let got = alert
            .value
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |v| format!("{v:?}"));
        out.push(("value".into(), format!("{value:?}"), got));
    }
    out
}

fn describe_actual(a: &Actual) -> String {
    match &a.fired {
        Some(alert) => format!("{} on {}: {}, {:?}", a.rule, a.target, a.state.as_str(), alert.summary),
        None => format!("{} on {}: {}", a.rule, a.target, a.state.as_str()),
    }
}

fn describe_expected(e: &ExpectedAlert) -> String {
    let target = e.target.as_deref().unwrap_or("any target");
    format!("{} on {target}: {}", e.rule, e.state.as_str())
}

/// Pairs each expected alert with an actual one of the same rule (and
/// target, when given) — the one that matches best — and reports what
/// differs, what is missing and what was not expected.
fn compare_alerts(expected: &[ExpectedAlert], actual: &[Actual]) -> Vec<String> {
    let mut claimed = vec![false; actual.len()];
    let mut lines = Vec::new();
    let mut missing = Vec::new();
    for e in expected {
        let candidates: Vec<usize> = (0..actual.len())
            .filter(|&i| {
                !claimed[i] && actual[i].rule == e.rule && e.target.as_ref().is_none_or(|t| *t == actual[i].target)
            })
            .collect();
        let Some(&best) = candidates.iter().min_by_key(|&&i| field_diffs(e, &actual[i]).len()) else {
            if e.state != AlertState::Inactive {
                missing.push(e);
            }
            continue;
        };
        claimed[best] = true;
        let diffs = field_diffs(e, &actual[best]);
        if diffs.is_empty() {
            continue;
        }
        lines.push(format!("{} on {}:", e.rule, actual[best].target));
        let width = diffs.iter().map(|d| d.0.len()).max().unwrap_or(0);
        for (field, want, got) in diffs {
            lines.push(format!("  {field:<width$}  expected: {want}"));
            lines.push(format!("  {:<width$}       got: {got}", ""));
        }
    }
    for e in missing {
        lines.push(format!("missing:    {}", describe_expected(e)));
    }
    for (i, a) in actual.iter().enumerate() {
        if !claimed[i] {
            lines.push(format!("unexpected: {}", describe_actual(a)));
        }
    }
    if !lines.is_empty() && actual.is_empty() {
        lines.push("(no alert is pending or firing)".into());
    }
    lines
}

fn run_matches(e: &ExpectedRun, r: &Run) -> bool {
    e.playbook == r.playbook
        && e.rule.as_ref().is_none_or(|x| *x == r.rule)
        && e.target.as_ref().is_none_or(|x| *x == r.target)
        && e.params.as_ref().is_none_or(|p| *p == r.params)
}

fn compare_runs(expected: &[ExpectedRun], got: &[Run]) -> Vec<String> {
    if expected.len() == got.len() && expected.iter().zip(got).all(|(e, r)| run_matches(e, r)) {
        return Vec::new();
    }
    let mut lines = vec!["expected:".to_owned()];
    if expected.is_empty() {
        lines.push("  (none)".into());
    }
    for e in expected {
        let mut line = format!("  {}", e.playbook);
        if let Some(rule) = &e.rule {
            let _ = write!(line, " for {rule}");
        }
        if let Some(target) = &e.target {
            let _ = write!(line, " on {target}");
        }
        if let Some(params) = &e.params {
            let _ = write!(line, ", params {}", inline_table(params));
        }
        lines.push(line);
    }
    lines.push("got:".into());
    if got.is_empty() {
        lines.push("  (none)".into());
    }
    for r in got {
        lines.push(format!(
            "  {} for {} on {}, params {} (at {})",
            r.playbook,
            r.rule,
            r.target,
            inline_table(&r.params),
            human(r.at)
        ));
    }
    lines
}

fn notification_matches(e: &ExpectedNotification, s: &Sent) -> bool {
    e.receiver == s.receiver
        && e.kind.is_none_or(|k| k == s.kind)
        && e.rule.as_ref().is_none_or(|x| *x == s.rule)
        && e.target.as_ref().is_none_or(|x| *x == s.target)
        && e.status.is_none_or(|x| Some(x) == s.status)
        && e.folded.as_ref().is_none_or(|f| *f == s.folded)
        && e.summary.as_ref().is_none_or(|m| m.matches(&s.summary))
}

/// Each expected notification claims one that was sent, in any order;
/// when one is missing or one was not expected, both lists are shown.
fn compare_notifications(expected: &[ExpectedNotification], sent: &[Sent]) -> Vec<String> {
    let mut claimed = vec![false; sent.len()];
    let mut all_found = true;
    for e in expected {
        match (0..sent.len()).find(|&i| !claimed[i] && notification_matches(e, &sent[i])) {
            Some(i) => claimed[i] = true,
            None => all_found = false,
        }
    }
    if all_found && claimed.iter().all(|c| *c) {
        return Vec::new();
    }
    let mut lines = vec!["expected:".to_owned()];
    if expected.is_empty() {
        lines.push("  (none)".into());
    }
    for e in expected {
        let mut line = format!("  to {}:", e.receiver);
        if let Some(k) = e.kind {
            let _ = write!(line, " {}", kind_name(k));
        }
        if let Some(rule) = &e.rule {
            let _ = write!(line, " {rule}");
        }
        if let Some(target) = &e.target {
            let _ = write!(line, " on {target}");
        }
        if let Some(status) = e.status {
            let _ = write!(line, " {}", status_name(Some(status)));
        }
        if let Some(folded) = &e.folded {
            let _ = write!(line, ", folding [{}]", folded.join(", "));
        }
        if let Some(summary) = &e.summary {
            let _ = write!(line, ", summary {}", summary.describe());
        }
        lines.push(line);
    }
    lines.push("got:".into());
    if sent.is_empty() {
        lines.push("  (none)".into());
    }
    for (i, s) in sent.iter().enumerate() {
        let mark = if claimed[i] { "" } else { "  <- not expected" };
        let folded = if s.folded.is_empty() {
            String::new()
        } else {
            format!(", folding [{}]", s.folded.join(", "))
        };
        lines.push(format!(
            "  to {}: {} {} on {} {}, {:?}{folded} (at {}){mark}",
            s.receiver,
            kind_name(s.kind),
            s.rule,
            s.target,
            status_name(s.status),
            s.summary,
            human(s.at)
        ));
    }
    lines
}

fn kind_name(k: NotificationKind) -> &'static str {
    match k {
        NotificationKind::Alert => "alert",
        NotificationKind::Group => "group",
        NotificationKind::Message => "message",
        NotificationKind::DeadLetter => "dead_letter",
    }
}

fn status_name(s: Option<NotificationStatus>) -> &'static str {
    match s {
        Some(NotificationStatus::Firing) => "firing",
        Some(NotificationStatus::Resolved) => "resolved",
        Some(NotificationStatus::Acknowledged) => "acknowledged",
        None => "-",
    }
}

fn inline_table(params: &BTreeMap<String, toml::Value>) -> String {
    if params.is_empty() {
        return "{}".into();
    }
    let fields: Vec<String> = params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", fields.join(", "))
}

/// `2m 30s`, or `0s`.
pub fn human(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// Where a Sentinel event lands, as the group source decides.
pub fn sentinel_target(group: &str, event: &SentinelEvent) -> String {
    event.target_in(group)
}
