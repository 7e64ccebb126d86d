//! The router: from an alert change to notifications. It applies silences
//! and inhibition, matches routes, groups alerts, runs escalation policies,
//! sends playbook outcomes as updates, and makes sure a resolve reaches
//! every receiver that got the firing notification.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio::time::Instant;

use super::incident::{Correlator, Release, Verdict};
use super::resend::Resender;
use super::{AlertNotice, Notification, Notifier, PlaybookSummary};
use crate::alerts::escalation::{self, Progress};
use crate::alerts::store::{AlertStore, Silence, ms, now_ms};
use crate::alerts::{Alert, AlertStatus};
use crate::config::{Config, EscalationConfig, RouteConfig};
use crate::matcher::{Matcher, Op, all_match};

struct Route {
    config: RouteConfig,
    matchers: Vec<Matcher>,
}

#[derive(Default)]
struct Group {
    pending: Vec<AlertNotice>,
    /// When the oldest pending change arrived, for `group_wait`.
    pending_since: Option<Instant>,
    last_flush: Option<Instant>,
    /// When each firing alert of the group was last sent, for `repeat_interval`.
    sent: HashMap<String, Instant>,
}

pub struct Router {
    routes: Vec<Route>,
    escalations: BTreeMap<String, EscalationConfig>,
    all_receivers: Vec<String>,
    inhibit_within_family: bool,
    notifier: Notifier,
    store: AlertStore,
    /// `[[incident]]`: which alerts fold into which cause's page.
    correlator: Correlator,
    groups: HashMap<(usize, String), Group>,
    /// Firing alerts by fingerprint, for inhibition and updates.
    firing: HashMap<String, AlertNotice>,
    silences: Vec<Silence>,
    /// Alerts whose firing was silenced, inhibited or folded: their resolve
    /// is not sent either, since nobody heard of them.
    suppressed: HashSet<String>,
    /// Those a silence or a more severe alert muted (not those an incident
    /// folded), with their rule's own receivers: their firing goes out once
    /// nothing mutes them.
    muted: HashMap<String, Vec<String>>,
    /// Firing alerts the store shows as silenced, kept in step with the
    /// silences each time they are read: also the alerts whose repeats
    /// wait.
    marked_silenced: HashSet<String>,
    /// Milliseconds since the epoch, for silences and escalation steps.
    clock: WallClock,
    /// Firing alerts sent again to Alertmanager receivers.
    resender: Resender,
}

/// The router's wall clock: the system's in the engine, a virtual one in
/// `redops test`.
pub type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The family of an alert: its `family` label, else the rule name without
/// its last `_word` (`memory_warning` → `memory`).
fn family(a: &Alert) -> String {
    a.labels
        .get("family")
        .cloned()
        .unwrap_or_else(|| a.rule.rsplit_once('_').map_or(a.rule.clone(), |(f, _)| f.to_owned()))
}

fn build_routes(config: &Config) -> Vec<Route> {
    config
        .routes
        .iter()
        .map(|r| {
            let mut matchers: Vec<Matcher> = r
                .matchers
                .iter()
                .filter_map(|(k, v)| Matcher::new(k, Op::Eq, v).ok())
                .collect();
            matchers.extend(r.match_re.iter().filter_map(|(k, v)| Matcher::new(k, Op::Re, v).ok()));
            Route {
                config: r.clone(),
                matchers,
            }
        })
        .collect()
}

/// Whether the current firing of an alert was acknowledged.
fn acked(store: &AlertStore, fingerprint: &str) -> bool {
    store
        .get(fingerprint)
        .ok()
        .flatten()
        .is_some_and(|row| row.acked_by.is_some())
}

/// The key of an alert's group under a route: its `group_by` labels.
fn group_key(route: &RouteConfig, alert: &Alert) -> String {
    route
        .group_by
        .iter()
        .map(|l| format!("{l}={}", alert.labels.get(l).map(String::as_str).unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

impl Router {
    pub fn new(config: &Config, notifier: Notifier, store: AlertStore) -> Router {
        let mut router = Router {
            routes: build_routes(config),
            escalations: config.escalations.clone(),
            all_receivers: config.receivers.keys().cloned().collect(),
            inhibit_within_family: config.notify.inhibit_within_family,
            correlator: Correlator::new(config.incidents.clone(), notifier.gates()),
            notifier,
            store,
            groups: HashMap::new(),
            firing: HashMap::new(),
            silences: Vec::new(),
            suppressed: HashSet::new(),
            muted: HashMap::new(),
            marked_silenced: HashSet::new(),
            clock: Arc::new(now_ms),
            resender: Resender::new(config),
        };
        router.reload_silences();
        router
    }

    /// Takes the routes, escalation policies and `[notify]` settings of a
    /// reloaded config. What the groups hold goes out first, under the
    /// routes it was grouped by, so a reload loses no notification. Firing
    /// alerts, silences and escalations in progress carry on; a firing
    /// alert's `repeat_interval` counts again from the reload.
    pub fn reconfigure(&mut self, config: &Config, now: Instant) {
        let keys: Vec<(usize, String)> = self.groups.keys().cloned().collect();
        for key in keys {
            self.flush(&key, now);
        }
        self.routes = build_routes(config);
        self.groups.clear();
        for notice in self.firing.values() {
            let alert = &notice.alert;
            for (i, route) in self.routes.iter().enumerate() {
                if !all_match(&route.matchers, &alert.labels) {
                    continue;
                }
                if !route.config.receivers.is_empty() {
                    let group = self.groups.entry((i, group_key(&route.config, alert))).or_default();
                    group.sent.insert(alert.fingerprint.clone(), now);
                }
                if !route.config.continue_matching {
                    break;
                }
            }
        }
        self.escalations = config.escalations.clone();
        self.inhibit_within_family = config.notify.inhibit_within_family;
        self.correlator.reconfigure(config.incidents.clone());
        self.resender.reconfigure(config);
    }

    /// Where this router's notifications wait for delivery.
    pub fn outbox(&self) -> &crate::outbox::Outbox {
        self.notifier.outbox()
    }

    /// Reads silences and times escalations on `clock` instead of the
    /// system's.
    pub fn with_clock(mut self, clock: WallClock) -> Router {
        self.clock = clock;
        self.reload_silences();
        self
    }

    /// Alerts that were firing when redops last stopped.
    pub fn restore(&mut self, alerts: Vec<Alert>) {
        for a in alerts {
            if let Ok(Some(row)) = self.store.get(&a.fingerprint) {
                self.resender.restored(&a.fingerprint, &row.notified);
                if row.silenced {
                    self.marked_silenced.insert(a.fingerprint.clone());
                }
            }
            self.firing.insert(a.fingerprint.clone(), AlertNotice::new(a));
        }
    }

    fn reload_silences(&mut self) {
        match self.store.silences_at(false, (self.clock)()) {
            Ok(s) => self.silences = s,
            Err(e) => tracing::error!(error = %e, "Cannot read silences; keeping the last known"),
        }
    }

    fn silenced_by(&self, a: &Alert) -> Option<i64> {
        let now = (self.clock)();
        self.silences
            .iter()
            .find(|s| s.is_active(now) && all_match(&s.matchers, &a.labels))
            .map(|s| s.id)
    }

    /// A higher-severity alert of the same family fires on the same target.
    fn inhibited_by(&self, a: &Alert) -> Option<String> {
        if !self.inhibit_within_family {
            return None;
        }
        let fam = family(a);
        self.firing
            .values()
            .map(|n| &n.alert)
            .find(|f| f.target == a.target && f.severity > a.severity && family(f) == fam)
            .map(|f| f.rule.clone())
    }

    fn send(&self, receivers: &[String], n: &Notification, fingerprints: &[&str]) {
        if receivers.is_empty() {
            return;
        }
        self.notifier.send(receivers, n);
        for f in fingerprints {
            if let Err(e) = self.store.add_notified(f, receivers) {
                tracing::error!(error = %e, "Cannot record who was notified");
            }
        }
    }

    /// An alert fired or resolved. `rule_notify` is the rule's own list of
    /// receivers, which bypasses routes.
    pub fn on_alert(&mut self, alert: Alert, rule_notify: &[String], now: Instant) {
        let fingerprint = alert.fingerprint.clone();
        let firing = alert.status == AlertStatus::Firing;
        let previous = self.store.get(&fingerprint).ok().flatten();
        let mut notice = AlertNotice::new(alert.clone());
        // A playbook's outcome belongs to the firing it ran for, not to a
        // new incident of the same rule and target.
        if let Some(prev) = self.firing.get(&fingerprint)
            && prev.alert.starts_at == alert.starts_at
        {
            notice.playbook = prev.playbook.clone();
        }
        let silenced = self.silenced_by(&alert).is_some();
        if let Err(e) = self.store.record(&alert, silenced) {
            tracing::error!(error = %e, rule = %alert.rule, "Cannot record the alert in the state store");
        }
        if firing && silenced {
            self.marked_silenced.insert(fingerprint.clone());
        } else {
            self.marked_silenced.remove(&fingerprint);
        }
        let verdict = self.correlator.on_alert(&notice, rule_notify, now);
        notice.folded = self.correlator.folded(&fingerprint);
        if firing {
            self.firing.insert(fingerprint.clone(), notice.clone());
        } else {
            self.firing.remove(&fingerprint);
            self.resender.resolved(&fingerprint);
            let _ = self.store.finish_escalation(&fingerprint);
        }
        match verdict {
            Verdict::Deliver => self.deliver(notice, rule_notify, previous.as_ref(), 0, now),
            Verdict::Held => {}
            Verdict::Folded { root } => {
                if firing {
                    self.muted.remove(&fingerprint);
                    self.suppressed.insert(fingerprint);
                }
                self.refresh_folded(&root);
            }
        }
        self.tick(now);
    }

    /// Copies the incident's folded alerts into its cause's notice, so
    /// updates, repeats, escalations and the resolve list them.
    fn refresh_folded(&mut self, cause: &str) {
        let folded = self.correlator.folded(cause);
        if let Some(n) = self.firing.get_mut(cause) {
            n.folded = folded;
        }
    }

    /// Gives back what the correlator no longer holds: each goes out as if
    /// it had just changed, with the playbook messages held with it.
    fn release(&mut self, released: Vec<Release>, now: Instant) {
        for r in released {
            let alert = &r.notice.alert;
            tracing::info!(rule = %alert.rule, target = %alert.target, why = r.why, "Alert sent on its own");
            if let Some(root) = self.correlator.root_of(&alert.fingerprint).map(str::to_owned) {
                self.refresh_folded(&root);
            }
            let mut notice = r.notice;
            notice.folded = self.correlator.folded(&notice.alert.fingerprint);
            if let Some(current) = self.firing.get(&notice.alert.fingerprint) {
                notice.playbook = current.playbook.clone();
            }
            self.suppressed.remove(&notice.alert.fingerprint);
            self.muted.remove(&notice.alert.fingerprint);
            self.deliver(notice, &r.rule_notify, None, 0, now);
            for (receivers, message) in r.stash {
                self.notifier.send(&receivers, &message);
            }
        }
    }

    /// Silences, inhibition, routes: sends one alert change as configured.
    /// An escalation it starts is `held_ms` behind the alert's start.
    fn deliver(
        &mut self,
        notice: AlertNotice,
        rule_notify: &[String],
        previous: Option<&crate::alerts::store::AlertRow>,
        held_ms: i64,
        now: Instant,
    ) {
        let alert = notice.alert.clone();
        let fingerprint = alert.fingerprint.clone();
        let firing = alert.status == AlertStatus::Firing;
        let silenced = self.silenced_by(&alert);
        if !firing {
            self.muted.remove(&fingerprint);
        }
        if !firing && self.suppressed.remove(&fingerprint) {
            tracing::debug!(rule = %alert.rule, target = %alert.target, "Resolve not sent: the firing was not either");
            return;
        }
        if let Some(id) = silenced {
            tracing::info!(rule = %alert.rule, target = %alert.target, silence = id, "Notification silenced");
            if firing {
                self.suppressed.insert(fingerprint.clone());
                self.muted.insert(fingerprint, rule_notify.to_vec());
            }
            return;
        }
        if firing && let Some(by) = self.inhibited_by(&alert) {
            tracing::info!(rule = %alert.rule, target = %alert.target, inhibited_by = %by, "Notification inhibited by a more severe alert");
            self.suppressed.insert(fingerprint.clone());
            self.muted.insert(fingerprint, rule_notify.to_vec());
            return;
        }
        self.suppressed.remove(&fingerprint);
        self.muted.remove(&fingerprint);
        // A resolve goes to whoever got the firing one, however it got there.
        let notified_before: Vec<String> = match (previous, firing) {
            (Some(p), false) if ms(alert.starts_at) == p.starts_ms => p.notified.clone(),
            _ => Vec::new(),
        };
        if !rule_notify.is_empty() || self.routes.is_empty() {
            let receivers = if !firing && !notified_before.is_empty() {
                notified_before
            } else if rule_notify.is_empty() {
                self.all_receivers.clone()
            } else {
                rule_notify.to_vec()
            };
            self.send(&receivers, &Notification::Alert(Box::new(notice)), &[&fingerprint]);
            if firing {
                self.resender.sent(&receivers, &[&fingerprint], now);
            }
            return;
        }
        let mut grouped_receivers = Vec::new();
        for i in 0..self.routes.len() {
            let route = &self.routes[i];
            if !all_match(&route.matchers, &alert.labels) {
                continue;
            }
            let cfg = route.config.clone();
            if let Some(policy) = &cfg.escalation
                && firing
                && let Err(e) = self
                    .store
                    .start_escalation(&fingerprint, ms(alert.starts_at), policy, held_ms)
            {
                tracing::error!(error = %e, "Cannot record the escalation");
            }
            if !cfg.receivers.is_empty() {
                grouped_receivers.extend(cfg.receivers.iter().cloned());
                let group = self.groups.entry((i, group_key(&cfg, &alert))).or_default();
                group.pending.retain(|n| n.alert.fingerprint != fingerprint);
                if group.pending.is_empty() {
                    group.pending_since = Some(now);
                }
                group.pending.push(notice.clone());
                if firing {
                    group.sent.insert(fingerprint.clone(), now);
                } else {
                    group.sent.remove(&fingerprint);
                }
            }
            if !cfg.continue_matching {
                break;
            }
        }
        // Receivers that got the firing alert some other way (an escalation
        // step) get the resolve directly.
        if !firing {
            let rest: Vec<String> = notified_before
                .into_iter()
                .filter(|r| !grouped_receivers.contains(r))
                .collect();
            self.send(&rest, &Notification::Alert(Box::new(notice)), &[]);
        }
    }

    /// A playbook finished: its outcome goes to whoever got the alert, if
    /// the firing it ran for (`alert_started_at`) is still the current one.
    /// A run for an earlier firing of the same rule and target stays in the
    /// run store; it does not update the newer incident's page.
    pub fn on_playbook(
        &mut self,
        fingerprint: &str,
        alert_started_at: Option<std::time::SystemTime>,
        summary: PlaybookSummary,
    ) {
        let Some(notice) = self.firing.get_mut(fingerprint) else {
            return;
        };
        if alert_started_at.is_some_and(|t| t != notice.alert.starts_at) {
            tracing::debug!(run_id = %summary.run_id, "Playbook outcome of an earlier firing; not sent as an update");
            return;
        }
        notice.playbook = Some(summary);
        let update = notice.clone();
        let receivers = self
            .store
            .get(fingerprint)
            .ok()
            .flatten()
            .map(|a| a.notified)
            .unwrap_or_default();
        self.send(&receivers, &Notification::Alert(Box::new(update)), &[]);
    }

    /// Flushes groups that are due, re-sends what `repeat_interval` asks
    /// for, advances escalations and reports acknowledgements.
    pub fn tick(&mut self, now: Instant) {
        let released = self.correlator.tick(now);
        self.release(released, now);
        let keys: Vec<(usize, String)> = self.groups.keys().cloned().collect();
        for key in keys {
            let route = &self.routes[key.0].config;
            let (wait, interval, repeat) = (route.group_wait, route.group_interval, route.repeat_interval);
            let group = self.groups.get_mut(&key).expect("key listed above");
            // Re-send still-firing alerts that have not gone out for a while,
            // unless someone acknowledged them (they know) or a silence
            // mutes them now.
            for (f, at) in group.sent.iter_mut() {
                if now.duration_since(*at) >= repeat
                    && !self.marked_silenced.contains(f)
                    && let Some(n) = self.firing.get(f)
                    && !group.pending.iter().any(|p| &p.alert.fingerprint == f)
                    && !acked(&self.store, f)
                {
                    if group.pending.is_empty() {
                        group.pending_since = Some(now);
                    }
                    group.pending.push(n.clone());
                    *at = now;
                }
            }
            if group.pending.is_empty() {
                continue;
            }
            let waited = now.duration_since(group.pending_since.unwrap_or(now));
            let due = match group.last_flush {
                None => waited >= wait,
                Some(last) => now.duration_since(last) >= interval,
            };
            if due {
                self.flush(&key, now);
            }
        }
        self.escalate(now);
        self.resend(now);
    }

    /// Sends firing alerts again to the Alertmanager receivers they are due
    /// to, acknowledged or not. Silenced, inhibited or folded ones are not
    /// sent (Alertmanager resolves them) until they may be again.
    fn resend(&mut self, now: Instant) {
        for (fingerprint, receivers) in self.resender.due(now) {
            let Some(notice) = self.firing.get(&fingerprint) else {
                self.resender.resolved(&fingerprint);
                continue;
            };
            if self.suppressed.contains(&fingerprint) || self.silenced_by(&notice.alert).is_some() {
                continue;
            }
            tracing::debug!(rule = %notice.alert.rule, target = %notice.alert.target, receivers = ?receivers, "Firing alert sent again to Alertmanager");
            self.notifier
                .send(&receivers, &Notification::Alert(Box::new(notice.clone())));
        }
    }

    /// Sends what a group holds, as one alert or one group notification.
    fn flush(&mut self, key: &(usize, String), now: Instant) {
        let receivers = self.routes[key.0].config.receivers.clone();
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        if group.pending.is_empty() {
            return;
        }
        let mut notices = std::mem::take(&mut group.pending);
        group.pending_since = None;
        group.last_flush = Some(now);
        let fingerprints: Vec<String> = notices
            .iter()
            .filter(|n| n.alert.status == AlertStatus::Firing)
            .map(|n| n.alert.fingerprint.clone())
            .collect();
        let n = if notices.len() == 1 {
            Notification::Alert(Box::new(notices.remove(0)))
        } else {
            Notification::Group {
                group: key.1.clone(),
                alerts: notices,
            }
        };
        let refs: Vec<&str> = fingerprints.iter().map(String::as_str).collect();
        self.send(&receivers, &n, &refs);
        self.resender.sent(&receivers, &refs, now);
    }

    /// Called every second or so: silences may have changed from the CLI,
    /// the API or another HA instance.
    pub fn refresh(&mut self, now: Instant) {
        self.reload_silences();
        self.mark_silenced();
        self.unmute(now);
        self.tick(now);
    }

    /// Keeps each firing alert's `silenced` in the store in step with the
    /// silences in force, for `alerts list` and the API: a silence made
    /// after an alert fired marks it, one that ends unmarks it.
    fn mark_silenced(&mut self) {
        let changed: Vec<(String, bool)> = self
            .firing
            .iter()
            .map(|(f, n)| (f, self.silenced_by(&n.alert).is_some()))
            .filter(|(f, silenced)| *silenced != self.marked_silenced.contains(*f))
            .map(|(f, silenced)| (f.clone(), silenced))
            .collect();
        for (fingerprint, silenced) in changed {
            if let Err(e) = self.store.set_silenced(&fingerprint, silenced) {
                tracing::error!(error = %e, "Cannot record that an alert is silenced");
                continue;
            }
            if silenced {
                self.marked_silenced.insert(fingerprint);
            } else {
                self.marked_silenced.remove(&fingerprint);
            }
        }
    }

    /// Sends the firing of alerts that a silence or a more severe alert
    /// muted and that nothing mutes any more: an alert still firing when
    /// its maintenance window ends pages like a new one.
    fn unmute(&mut self, now: Instant) {
        // A muted alert that resolved (or that an incident took since) is
        // no longer this one's to send.
        let firing = &self.firing;
        self.muted.retain(|f, _| firing.contains_key(f));
        let free: Vec<(AlertNotice, Vec<String>)> = self
            .muted
            .iter()
            .filter(|(f, _)| self.correlator.root_of(f).is_none())
            .filter_map(|(f, notify)| Some((self.firing.get(f)?.clone(), notify.clone())))
            .filter(|(n, _)| self.silenced_by(&n.alert).is_none() && self.inhibited_by(&n.alert).is_none())
            .collect();
        for (notice, rule_notify) in free {
            let alert = &notice.alert;
            tracing::info!(rule = %alert.rule, target = %alert.target, "Alert no longer silenced or inhibited; notifying");
            self.suppressed.remove(&alert.fingerprint);
            self.muted.remove(&alert.fingerprint);
            // Its escalation starts now, as if it had fired now.
            let held_ms = ((self.clock)() - ms(alert.starts_at)).max(0);
            self.deliver(notice, &rule_notify, None, held_ms, now);
        }
    }

    fn escalate(&mut self, now_instant: Instant) {
        let active = match self.store.active_escalations() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "Cannot read escalations");
                return;
            }
        };
        let now = (self.clock)();
        for mut e in active {
            let Some(policy) = self.escalations.get(&e.policy) else {
                continue;
            };
            let Some(notice) = self.firing.get(&e.fingerprint).cloned() else {
                // Not firing in this engine (resolved, or from before a
                // restart that has not re-evaluated yet): leave it.
                continue;
            };
            if ms(notice.alert.starts_at) != e.starts_ms {
                let _ = self.store.finish_escalation(&e.fingerprint);
                continue;
            }
            // A silence holds the escalation's clock: no step goes out
            // while it mutes the alert, and the timeline resumes where it
            // stood when the silence ends.
            let silenced = !e.acked && self.silenced_by(&notice.alert).is_some();
            let resumed = !silenced && e.held_since_ms.is_some();
            match (silenced, e.held_since_ms) {
                (true, None) => {
                    tracing::info!(rule = %notice.alert.rule, target = %notice.alert.target, policy = %e.policy, "Escalation held by a silence");
                    e.held_since_ms = Some(now);
                    if let Err(err) = self.store.update_escalation(&e) {
                        tracing::error!(error = %err, "Cannot record escalation progress");
                    }
                    continue;
                }
                (true, Some(_)) => continue,
                (false, Some(since)) => {
                    let held = (now - since).max(0);
                    tracing::info!(rule = %notice.alert.rule, target = %notice.alert.target, policy = %e.policy, held_ms = held, "Escalation resumes: the silence ended");
                    e.held_ms += held;
                    if e.last_step_ms > 0 {
                        e.last_step_ms += held;
                    }
                    e.held_since_ms = None;
                }
                (false, None) => {}
            }
            if e.acked {
                if !e.ack_notified {
                    let row = self.store.get(&e.fingerprint).ok().flatten();
                    let mut ack = notice.clone();
                    ack.acked_by = row.as_ref().and_then(|r| r.acked_by.clone()).or(Some("someone".into()));
                    ack.ack_comment = row.and_then(|r| r.ack_comment);
                    let receivers = self
                        .store
                        .get(&e.fingerprint)
                        .ok()
                        .flatten()
                        .map(|a| a.notified)
                        .unwrap_or_default();
                    tracing::info!(rule = %notice.alert.rule, target = %notice.alert.target, by = ?ack.acked_by, "Alert acknowledged; escalation stopped");
                    self.send(&receivers, &Notification::Alert(Box::new(ack)), &[]);
                    e.ack_notified = true;
                    let _ = self.store.update_escalation(&e);
                }
                continue;
            }
            let progress = Progress {
                next_step: e.next_step,
                last_step_ms: e.last_step_ms,
            };
            let (steps, p) = escalation::due(policy, e.timeline_start_ms(), progress, now);
            if steps.is_empty() {
                if resumed && let Err(err) = self.store.update_escalation(&e) {
                    tracing::error!(error = %err, "Cannot record escalation progress");
                }
                continue;
            }
            for step in steps {
                let receivers = policy.steps[step].notify.clone();
                tracing::info!(rule = %notice.alert.rule, target = %notice.alert.target, policy = %e.policy, step, "Escalation step");
                self.send(
                    &receivers,
                    &Notification::Alert(Box::new(notice.clone())),
                    &[&e.fingerprint],
                );
                self.resender.sent(&receivers, &[&e.fingerprint], now_instant);
            }
            e.next_step = p.next_step;
            e.last_step_ms = p.last_step_ms;
            if let Err(err) = self.store.update_escalation(&e) {
                tracing::error!(error = %err, "Cannot record escalation progress");
            }
        }
    }
}
