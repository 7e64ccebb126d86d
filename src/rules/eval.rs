//! The rule evaluator: events and a clock in, alert changes and playbook
//! invocations out. It does no I/O, so it is tested with virtual time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rhai::{Dynamic, Scope};
use rustc_hash::FxHashMap;
use tokio::time::Instant;

use super::expr::{EvalError, ExprEngine};
use super::history::{History, Needs};
use super::model::{Rule, RuleKind, SourceKind};
use crate::alerts::{Alert, AlertStatus, Condition, Lifecycle, Phase, Transition, fingerprint};
use crate::event::{Event, MetricValue, Metrics};
use crate::invocation::{Action, Invocation};
use crate::strkey::StrKey;
use crate::template::{Value as TemplateValue, Vars, labels_value};

#[derive(Debug, Default)]
struct RuleState {
    lifecycle: Lifecycle,
    last_run: Option<Instant>,
    /// The alert as it fired, for alerts resolved by time or by the target
    /// going away rather than by a fresh evaluation.
    fired: Option<Alert>,
    /// The rule's `notify` when it fired: its resolve goes to them too.
    notify: Vec<String>,
    /// When a Sentinel alert resolves if no event resolves it first.
    resolve_at: Option<Instant>,
}

/// Cumulative counts seen on ticks; the difference across the window is the
/// windowed count.
#[derive(Debug, Default)]
struct CountWindow {
    points: VecDeque<(Instant, u64)>,
}

impl CountWindow {
    fn update(&mut self, now: Instant, cumulative: u64, window: Duration) -> u64 {
        if self.points.back().is_some_and(|(_, c)| *c > cumulative) {
            // The counter went backwards: a new subscriber. Start over.
            self.points.clear();
        }
        // Ticks every 10 ms under steady events would keep 360,000 points
        // for a 1 h window: keep one per thousandth of the window instead,
        // the newest moving forward until the next is due.
        let resolution = window / 1000;
        let len = self.points.len();
        if len >= 2 && now.duration_since(self.points[len - 2].0) < resolution {
            self.points.pop_back();
        }
        self.points.push_back((now, cumulative));
        let start = now.checked_sub(window);
        // Keep exactly one point at or before the window's start as the baseline.
        while self.points.len() >= 2 && start.is_some_and(|s| self.points[1].0 <= s) {
            self.points.pop_front();
        }
        let baseline = match (self.points.front(), start) {
            (Some((t, c)), Some(s)) if *t <= s => *c,
            // The subscriber is younger than the window: all it counted is inside.
            _ => 0,
        };
        cumulative - baseline
    }
}

#[derive(Debug, Default)]
struct TargetState {
    labels: BTreeMap<String, String>,
    metrics: Metrics,
    history: History,
    keyspace: KeyspaceSlots,
}

/// What the evaluator keeps of each keyspace rule of a target. Counts come
/// every tick for every rule of a storm, each named by the same shared
/// `Arc<str>` every time: a slot is found by that name's address, so no
/// name is hashed or compared per rule per tick. The slot holds a clone of
/// the name, so its address cannot be reused while it is a key.
#[derive(Debug, Default)]
struct KeyspaceSlots {
    by_address: FxHashMap<usize, usize>,
    /// For a name met at a new address: another counter (a reconnect, a
    /// cluster's sum) takes over the slot of the same name.
    by_name: FxHashMap<Arc<str>, usize>,
    slots: Vec<KeyspaceSlot>,
}

#[derive(Debug)]
struct KeyspaceSlot {
    name: Arc<str>,
    window: CountWindow,
    /// The rule's index in `Evaluator::rules` once looked up (none: no
    /// such rule); forgotten when the rules are swapped.
    rule: Option<Option<usize>>,
    /// The `Evaluator::states_epoch` at which the rule's state for this
    /// target was last seen inactive (or absent): while that holds, a
    /// false condition changes nothing, and the state is not looked up.
    quiet: Option<u64>,
}

impl KeyspaceSlots {
    /// The place in `slots` of the rule `name` names, added when new.
    fn index(&mut self, name: &Arc<str>) -> usize {
        let address = address_of(name);
        match self.by_address.get(&address) {
            Some(&i) => i,
            None => {
                let i = match self.by_name.get(name) {
                    Some(&i) => {
                        self.by_address.remove(&address_of(&self.slots[i].name));
                        self.slots[i].name = name.clone();
                        i
                    }
                    None => {
                        self.slots.push(KeyspaceSlot {
                            name: name.clone(),
                            window: CountWindow::default(),
                            rule: None,
                            quiet: None,
                        });
                        self.by_name.insert(name.clone(), self.slots.len() - 1);
                        self.slots.len() - 1
                    }
                };
                self.by_address.insert(address, i);
                i
            }
        }
    }

    /// Keeps the slots of the rules `keep` names, windows and all; their
    /// rule indices and states are looked up again.
    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let slots = std::mem::take(&mut self.slots);
        *self = KeyspaceSlots::default();
        for slot in slots.into_iter().filter(|s| keep(&s.name)) {
            let i = self.slots.len();
            self.by_address.insert(address_of(&slot.name), i);
            self.by_name.insert(slot.name.clone(), i);
            self.slots.push(KeyspaceSlot {
                rule: None,
                quiet: None,
                ..slot
            });
        }
    }
}

/// Where a shared name lives: the key of [`KeyspaceSlots::by_address`].
fn address_of(name: &Arc<str>) -> usize {
    Arc::as_ptr(name).cast::<u8>() as usize
}

/// What `on_notice` needs of a Sentinel or cluster event.
struct Notice<'a> {
    source: SourceKind,
    name: &'a str,
    metrics: &'a Metrics,
    /// Another target whose alerts of the resolving rules end too: the
    /// master a failover replaced.
    also_resolves: Option<String>,
}

/// Its maps are keyed by rule and target names, from the config and the
/// servers it watches, and searched for each keyspace rule on every tick:
/// hashed with Fx, not SipHash, as no client picks those names.
pub struct Evaluator {
    rules: Vec<Arc<Rule>>,
    /// Each rule's index in `rules`, by name.
    by_name: FxHashMap<String, usize>,
    expr: Arc<ExprEngine>,
    targets: FxHashMap<String, TargetState>,
    /// By `[rule, target]`.
    states: FxHashMap<[String; 2], RuleState>,
    /// Moves whenever states change other than by evaluating a rule: a
    /// restore, a reload, a target leaving, an event or a timer resolving.
    /// A keyspace slot's `quiet` holds only within one epoch.
    states_epoch: u64,
    history_needs: Needs,
}

fn index_by_name(rules: &[Arc<Rule>]) -> FxHashMap<String, usize> {
    rules.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect()
}

/// What the look-back calls of `rules` read, kept for at least `retention`.
fn needs_of(rules: &[Arc<Rule>], retention: Duration) -> Needs {
    Needs {
        retention: retention.max(super::history::history_retention(rules)),
        metrics: super::history::history_metrics(rules).map(Arc::new),
    }
}

impl Evaluator {
    pub fn new(
        rules: Vec<Arc<Rule>>,
        expr: Arc<ExprEngine>,
        target_labels: impl IntoIterator<Item = (String, BTreeMap<String, String>)>,
        history_retention: Duration,
    ) -> Self {
        let history_needs = needs_of(&rules, history_retention);
        let targets = target_labels
            .into_iter()
            .map(|(name, labels)| {
                (
                    name,
                    TargetState {
                        labels,
                        history: History::with_needs(history_needs.clone()),
                        ..Default::default()
                    },
                )
            })
            .collect();
        Evaluator {
            by_name: index_by_name(&rules),
            rules,
            expr,
            targets,
            states: FxHashMap::default(),
            states_epoch: 0,
            history_needs,
        }
    }

    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// Every alert currently firing.
    pub fn firing(&self) -> Vec<(String, String)> {
        self.states
            .iter()
            .filter(|(_, s)| s.lifecycle.is_firing())
            .map(|([rule, target], _)| (rule.clone(), target.clone()))
            .collect()
    }

    /// Where each (rule, target) pair is in its lifecycle; `redops test`
    /// compares it with what a test expects, pending alerts included.
    pub fn phases(&self) -> impl Iterator<Item = (&str, &str, Phase)> + '_ {
        self.states
            .iter()
            .map(|([rule, target], s)| (rule.as_str(), target.as_str(), s.lifecycle.phase))
    }

    pub fn on_event(&mut self, event: &Event, now: Instant, wall: SystemTime) -> Vec<Action> {
        let target_name = event.target().to_owned();
        let needs = &self.history_needs;
        let target = self.targets.entry(target_name.clone()).or_insert_with(|| TargetState {
            history: History::with_needs(needs.clone()),
            ..Default::default()
        });
        let mut actions = Vec::new();
        match event {
            Event::Sample(sample) => {
                for (name, value) in &sample.metrics {
                    if let MetricValue::Num(v) = value {
                        target.history.record(name, now, *v);
                    }
                }
                target.metrics = sample.metrics.clone();
                let mut scope = scope_of(&target_name, &target.metrics);
                let rules: Vec<_> = self.rules_for(SourceKind::Sample, &target_name).collect();
                for rule in rules {
                    self.evaluate(&rule, &target_name, &mut scope, now, wall, &mut actions);
                }
            }
            Event::Health(h) => {
                let mut metrics = Metrics::new();
                metrics.insert("redis_up".into(), MetricValue::Num(f64::from(u8::from(h.up))));
                metrics.insert(
                    "consecutive_failures".into(),
                    MetricValue::Num(f64::from(h.consecutive_failures)),
                );
                // Always present, so a summary quoting it renders when resolved too.
                let reason = h.reason.clone().unwrap_or_else(|| "reachable".into());
                metrics.insert("reason".into(), MetricValue::Text(reason));
                let mut scope = scope_of(&target_name, &metrics);
                let rules: Vec<_> = self.rules_for(SourceKind::Health, &target_name).collect();
                for rule in rules {
                    self.evaluate(&rule, &target_name, &mut scope, now, wall, &mut actions);
                }
            }
            Event::KeyspaceCounts(counts) => {
                // They come a tick apart in a storm, for every keyspace
                // rule: one scope for all, with `count` and `window_secs`
                // set again for each rule.
                let mut scope = scope_of(&target_name, &Metrics::new());
                let base = scope.len();
                for (rule_name, cumulative) in &counts.counts {
                    let target = self.targets.get_mut(&target_name).expect("inserted above");
                    let i = target.keyspace.index(rule_name);
                    let slot = &mut target.keyspace.slots[i];
                    let index = *slot.rule.get_or_insert_with(|| self.by_name.get(&**rule_name).copied());
                    let Some(rule) = index.map(|i| &self.rules[i]) else {
                        continue;
                    };
                    let RuleKind::Keyspace { selector, .. } = &rule.kind else {
                        continue;
                    };
                    let count = slot.window.update(now, *cumulative, selector.window);
                    let quiet = slot.quiet == Some(self.states_epoch);
                    scope.rewind(base);
                    scope.push_constant("count", count as f64);
                    scope.push_constant("window_secs", selector.window.as_secs_f64());
                    let rule = rule.clone();
                    let inactive =
                        self.evaluate_unless_quiet(&rule, &target_name, &mut scope, quiet, now, wall, &mut actions);
                    let target = self.targets.get_mut(&target_name).expect("inserted above");
                    target.keyspace.slots[i].quiet = inactive.then_some(self.states_epoch);
                }
            }
            Event::Target(change) if change.present => {
                target.labels = change.labels.clone();
            }
            Event::Target(_) => {
                self.states_epoch += 1;
                self.targets.remove(&target_name);
                let gone: Vec<_> = self.states.keys().filter(|[_, t]| *t == target_name).cloned().collect();
                for key in gone {
                    if let Some(mut state) = self.states.remove(&key) {
                        resolve_stored(&mut state, wall, "the target left its group", &mut actions);
                    }
                }
            }
            Event::Schedule(tick) => {
                if let Some(rule) = self.rules.iter().find(|r| r.name == tick.rule)
                    && let Some(playbook) = &rule.playbook
                {
                    actions.push(Action::RunPlaybook(Invocation {
                        playbook: playbook.clone(),
                        rule: rule.name.clone(),
                        target: target_name.clone(),
                        params: rule.params.clone(),
                        alert: None,
                    }));
                }
            }
            Event::Sentinel(notice) => {
                let name = notice.event.name().to_owned();
                let mut metrics: Metrics = notice
                    .event
                    .fields()
                    .into_iter()
                    .map(|(k, v)| (k, MetricValue::Text(v)))
                    .collect();
                metrics.insert("event".into(), MetricValue::Text(name.clone()));
                metrics.insert("group".into(), MetricValue::Text(notice.group.clone()));
                metrics.insert("sentinel".into(), MetricValue::Text(notice.sentinel.clone()));
                metrics.insert(
                    "reconciled".into(),
                    MetricValue::Num(f64::from(u8::from(notice.reconciled))),
                );
                // A failover also ends what was said of the master it
                // replaced (`+odown` has no `-odown` once it is a replica).
                let old_master = notice.event.old_master_target(&notice.group);
                let notice = Notice {
                    source: SourceKind::Sentinel,
                    name: &name,
                    metrics: &metrics,
                    also_resolves: old_master,
                };
                self.on_notice(&target_name, notice, now, wall, &mut actions);
            }
            Event::Cluster(notice) => {
                let mut metrics: Metrics = notice
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), MetricValue::Text(v.clone())))
                    .collect();
                metrics.insert("event".into(), MetricValue::Text(notice.event.clone()));
                metrics.insert("cluster".into(), MetricValue::Text(notice.cluster.clone()));
                let old_master = notice
                    .fields
                    .get("old_master")
                    .filter(|_| notice.event == "cluster_failover")
                    .map(|addr| format!("{}/{addr}", notice.cluster));
                let notice = Notice {
                    source: SourceKind::Cluster,
                    name: &notice.event,
                    metrics: &metrics,
                    also_resolves: old_master,
                };
                self.on_notice(&target_name, notice, now, wall, &mut actions);
            }
        }
        actions
    }

    /// Swaps in a reloaded rule set. A rule whose definition did not change
    /// keeps its state (no re-firing, no lost `for` progress); a changed
    /// rule starts over and a deleted one resolves its alerts.
    pub fn replace_rules(&mut self, rules: Vec<Arc<Rule>>, wall: SystemTime) -> Vec<Action> {
        let kept: HashMap<&str, &str> = rules.iter().map(|r| (r.name.as_str(), r.digest.as_str())).collect();
        let old: HashMap<String, String> = self.rules.iter().map(|r| (r.name.clone(), r.digest.clone())).collect();
        let mut actions = Vec::new();
        let stale: Vec<[String; 2]> = self
            .states
            .keys()
            .filter(|[rule, _]| kept.get(rule.as_str()) != old.get(rule).map(String::as_str).as_ref())
            .cloned()
            .collect();
        for key in stale {
            if let Some(mut state) = self.states.remove(&key) {
                let why = if kept.contains_key(key[0].as_str()) {
                    "the rule changed"
                } else {
                    "the rule was deleted"
                };
                resolve_stored(&mut state, wall, why, &mut actions);
            }
        }
        // New look-back calls may read other metrics, or further back.
        self.history_needs = needs_of(&rules, Duration::ZERO);
        for target in self.targets.values_mut() {
            target.keyspace.retain(|rule| kept.contains_key(rule));
            target.history.set_needs(self.history_needs.clone());
        }
        self.by_name = index_by_name(&rules);
        self.rules = rules;
        self.states_epoch += 1;
        actions
    }

    /// Takes back alerts that were firing before a restart, so they neither
    /// fire again nor stay unresolved. Alerts of rules that no longer exist
    /// are left to the store.
    pub fn restore(&mut self, alerts: &[Alert], now: Instant) {
        self.states_epoch += 1;
        for a in alerts {
            let Some(rule) = self.rules.iter().find(|r| r.name == a.rule) else {
                continue;
            };
            let state = self.states.entry([a.rule.clone(), a.target.clone()]).or_default();
            state.lifecycle.phase = Phase::Firing {
                since: now,
                started_at: a.starts_at,
            };
            state.fired = Some(a.clone());
            state.notify = rule.notify.clone();
            if let Some(s) = rule.kind.events() {
                state.resolve_at = Some(now + s.resolve_after);
            }
        }
    }

    /// Resolves the alerts whose time is up: Sentinel alerts that no event
    /// resolved within their `resolve_after`.
    pub fn tick(&mut self, now: Instant, wall: SystemTime) -> Vec<Action> {
        let mut actions = Vec::new();
        for state in self.states.values_mut() {
            if state.resolve_at.is_some_and(|at| at <= now) {
                resolve_stored(state, wall, "no event within resolve_after", &mut actions);
                self.states_epoch += 1;
            }
        }
        actions
    }

    /// An event of a Sentinel group or a cluster: fires the rules that
    /// name it, resolves those it ends.
    fn on_notice(
        &mut self,
        target_name: &str,
        notice: Notice<'_>,
        now: Instant,
        wall: SystemTime,
        actions: &mut Vec<Action>,
    ) {
        self.states_epoch += 1;
        let name = notice.name;
        let mut scope = scope_of(target_name, notice.metrics);
        let rules: Vec<_> = self.rules_for(notice.source, target_name).collect();
        for rule in rules {
            let Some(selector) = rule.kind.events() else { continue };
            let key = [rule.name.clone(), target_name.to_owned()];
            if selector.resolves_on(name) {
                let also = notice.also_resolves.clone().map(|t| [rule.name.clone(), t]);
                for key in std::iter::once(key).chain(also) {
                    if let Some(state) = self.states.get_mut(&key) {
                        resolve_stored(state, wall, &format!("{name} seen"), actions);
                    }
                }
                continue;
            }
            if !selector.fires_on(name) {
                continue;
            }
            let target = self.targets.get_mut(target_name).expect("inserted by on_event");
            let when = self.expr.eval_bool(&rule.when, &mut scope, &mut target.history, now);
            if answer(&rule, "when", when) != Some(true) {
                continue;
            }
            // Each event that passes is an incident of its own: the source
            // already merged the copies (each Sentinel's, each discovery's).
            let state = self.states.entry(key).or_default();
            state.lifecycle.phase = Phase::Firing {
                since: now,
                started_at: wall,
            };
            state.resolve_at = Some(now + selector.resolve_after);
            self.emit(
                &rule,
                target_name,
                Transition::Fired { started_at: wall },
                &scope,
                now,
                wall,
                actions,
            );
        }
    }

    fn rules_for<'a>(&'a self, source: SourceKind, target: &'a str) -> impl Iterator<Item = Arc<Rule>> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.source() == source && r.applies_to(target))
            .cloned()
    }

    fn evaluate(
        &mut self,
        rule: &Rule,
        target_name: &str,
        scope: &mut Scope<'static>,
        now: Instant,
        wall: SystemTime,
        actions: &mut Vec<Action>,
    ) {
        self.evaluate_unless_quiet(rule, target_name, scope, false, now, wall, actions);
    }

    /// Evaluates a rule and steps its state. `quiet`: its state is known
    /// to be inactive, so when its condition does not hold there is
    /// nothing to step. Returns whether the state is inactive after.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_unless_quiet(
        &mut self,
        rule: &Rule,
        target_name: &str,
        scope: &mut Scope<'static>,
        quiet: bool,
        now: Instant,
        wall: SystemTime,
        actions: &mut Vec<Action>,
    ) -> bool {
        // Only condition rules come here; the others have no hold.
        let Some(hold) = rule.kind.hold() else { return false };
        let target = self.targets.get_mut(target_name).expect("target state exists");
        let when = answer(
            rule,
            "when",
            self.expr.eval_bool(&rule.when, scope, &mut target.history, now),
        );
        // An inactive state steps only when the condition holds; its
        // `clear` matters only once it fires.
        if quiet && when != Some(true) {
            return true;
        }
        let clear = hold
            .clear
            .as_ref()
            .map(|c| self.expr.eval_bool(c, scope, &mut target.history, now));
        let cond = Condition {
            when,
            clear: clear.and_then(|c| answer(rule, "clear", c)),
            has_clear: hold.clear.is_some(),
        };
        // Found by borrowed names: a keyspace rule comes here every tick.
        let step = |state: &mut RuleState| {
            let transition = state.lifecycle.step(cond, hold.for_, hold.keep_firing_for, now, wall);
            (transition, state.lifecycle.phase == Phase::Inactive)
        };
        let borrowed: &dyn StrKey<2> = &[rule.name.as_str(), target_name];
        let (transition, inactive) = match self.states.get_mut(borrowed) {
            Some(state) => step(state),
            None => step(
                self.states
                    .entry([rule.name.clone(), target_name.to_owned()])
                    .or_default(),
            ),
        };
        if let Some(transition) = transition {
            self.emit(rule, target_name, transition, scope, now, wall, actions);
        }
        inactive
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        rule: &Rule,
        target_name: &str,
        transition: Transition,
        scope: &Scope,
        now: Instant,
        wall: SystemTime,
        actions: &mut Vec<Action>,
    ) {
        let labels = self
            .targets
            .get(target_name)
            .map(|t| t.labels.clone())
            .unwrap_or_default();
        let state = self
            .states
            .entry([rule.name.clone(), target_name.to_owned()])
            .or_default();
        let (status, started_at) = match transition {
            Transition::Fired { started_at } => (AlertStatus::Firing, started_at),
            Transition::Resolved { started_at } => (AlertStatus::Resolved, started_at),
            Transition::Pending | Transition::Cancelled => {
                tracing::debug!(rule = %rule.name, target = target_name, ?transition, "Rule state changed");
                return;
            }
        };
        let alert = build_alert(rule, target_name, &labels, scope, status, started_at, wall);
        state.fired = (status == AlertStatus::Firing).then(|| alert.clone());
        state.notify = rule.notify.clone();
        tracing::info!(rule = %rule.name, target = target_name, status = ?status, summary = %alert.summary, "Alert changed");
        actions.push(Action::Alert {
            alert: alert.clone(),
            notify: rule.notify.clone(),
        });
        if status == AlertStatus::Firing
            && let Some(playbook) = &rule.playbook
        {
            let cooling = state
                .last_run
                .is_some_and(|last| now.duration_since(last) < rule.cooldown);
            if cooling {
                tracing::info!(rule = %rule.name, target = target_name, playbook, "Playbook skipped: rule is in cooldown");
            } else {
                state.last_run = Some(now);
                actions.push(Action::RunPlaybook(Invocation {
                    playbook: playbook.clone(),
                    rule: rule.name.clone(),
                    target: target_name.to_owned(),
                    params: rule.params.clone(),
                    alert: Some(alert),
                }));
            }
        }
    }
}

fn resolved(mut alert: Alert, wall: SystemTime) -> Alert {
    alert.status = AlertStatus::Resolved;
    alert.ends_at = Some(wall);
    alert
}

/// Resolves a firing alert from what it was when it fired: for alerts that
/// end by time, by an event or by their target leaving, not by evaluation.
fn resolve_stored(state: &mut RuleState, wall: SystemTime, why: &str, actions: &mut Vec<Action>) {
    state.resolve_at = None;
    if !state.lifecycle.is_firing() {
        return;
    }
    state.lifecycle.phase = Phase::Inactive;
    if let Some(alert) = state.fired.take() {
        tracing::info!(rule = %alert.rule, target = %alert.target, why, "Alert resolved");
        actions.push(Action::Alert {
            alert: resolved(alert, wall),
            notify: state.notify.clone(),
        });
    }
}

fn answer(rule: &Rule, which: &str, result: Result<bool, EvalError>) -> Option<bool> {
    match result {
        Ok(b) => Some(b),
        Err(EvalError::NoData(why)) => {
            tracing::trace!(rule = %rule.name, which, why, "No data for condition");
            None
        }
        Err(EvalError::Failed(why)) => {
            tracing::warn!(rule = %rule.name, which, error = %why, "Condition failed to evaluate");
            None
        }
    }
}

fn scope_of(target: &str, metrics: &Metrics) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant("target", target.to_owned());
    for (name, value) in metrics {
        let v: Dynamic = match value {
            MetricValue::Num(n) => (*n).into(),
            MetricValue::Text(t) => t.clone().into(),
        };
        scope.push_constant_dynamic(name.clone(), v);
    }
    scope
}

fn scope_value(scope: &Scope, name: &str) -> Option<String> {
    let v = scope.get(name)?;
    Some(if let Ok(n) = v.as_float() {
        MetricValue::Num(n).to_string()
    } else {
        v.to_string()
    })
}

fn build_alert(
    rule: &Rule,
    target: &str,
    target_labels: &BTreeMap<String, String>,
    scope: &Scope,
    status: AlertStatus,
    started_at: SystemTime,
    wall: SystemTime,
) -> Alert {
    let mut labels = target_labels.clone();
    labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert("rule".into(), rule.name.clone());
    labels.insert("target".into(), target.to_owned());
    labels.insert("severity".into(), rule.severity.to_string());
    // Roles move in a failover: the label says what the node was when it fired.
    if let Some(role) = scope.get("role").filter(|r| r.is_string()) {
        labels.insert("role".into(), role.to_string());
    }
    let value = rule.value_metric.as_deref().and_then(|m| scope_value(scope, m));
    let vars = template_vars(rule, target, &labels, scope);
    let what = |key: &str| format!("rule `{}` {key}", rule.name);
    let summary = rule.summary.render_or_raw(&vars, &what("summary"));
    let annotations: BTreeMap<String, String> = rule
        .annotations
        .iter()
        .map(|(key, t)| (key.clone(), t.render_or_raw(&vars, &what(key))))
        .collect();
    Alert {
        fingerprint: fingerprint(&rule.name, target),
        rule: rule.name.clone(),
        target: target.to_owned(),
        severity: rule.severity,
        status,
        labels,
        summary,
        value,
        starts_at: started_at,
        ends_at: (status == AlertStatus::Resolved).then_some(wall),
        runbook: rule.runbook.clone(),
        description: annotations.get("description").cloned(),
        annotations,
    }
}

/// What a rule's templates see: the event's variables, then `rule`,
/// `target`, `severity`, `value` (the number `when` is about) and `labels`.
fn template_vars(rule: &Rule, target: &str, labels: &BTreeMap<String, String>, scope: &Scope) -> Vars {
    let mut vars: Vars = scope
        .iter_raw()
        .map(|(name, _, v)| (name.to_owned(), dynamic_value(v)))
        .collect();
    vars.insert("rule".into(), rule.name.as_str().into());
    vars.insert("target".into(), target.into());
    vars.insert("severity".into(), rule.severity.as_str().into());
    let value = rule
        .value_metric
        .as_deref()
        .and_then(|m| scope.get(m))
        .map(dynamic_value);
    vars.insert("value".into(), value.unwrap_or(TemplateValue::from(())));
    vars.insert("labels".into(), labels_value(labels));
    vars
}

fn dynamic_value(v: &Dynamic) -> TemplateValue {
    if let Ok(n) = v.as_float() {
        TemplateValue::from(n)
    } else if let Ok(n) = v.as_int() {
        TemplateValue::from(n)
    } else if let Ok(b) = v.as_bool() {
        TemplateValue::from(b)
    } else {
        TemplateValue::from(v.to_string())
    }
}

#[cfg(test)]
mod tests;
