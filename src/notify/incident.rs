//! Incident correlation: alerts that one cause explains are folded into the
//! cause's notification instead of paging on their own.
//!
//! A Sentinel failover is one incident: the old master's `redis_down`, the
//! Sentinels' `+sdown`/`+odown`, replica links and keyspace subscribers that
//! reconnect are its symptoms. `[[incident]]` (config) names a cause rule,
//! the rules it explains and the labels they must share. The
//! [`Correlator`] is the pure part: given alert changes and a monotonic
//! clock it says what to hold, fold or deliver; the router acts on it.
//!
//! - An explained alert that fires *before* its cause (the old master's
//!   `redis_down` comes before `+switch-master`) is held for `hold`: if the
//!   cause fires meanwhile it is folded, else it is delivered as it is
//!   (or, resolved already, not at all: a blip nobody needs paging for).
//! - After the cause fires, explained alerts fold for `window` (with
//!   `while_firing`, for as long as the cause fires and `window` more).
//! - Folded alerts send nothing of their own; the cause's notifications
//!   list them with their status. When the cause resolves, a folded alert
//!   still firing is delivered on its own: the cause no longer explains it.
//!   So is one more severe than its cause still firing when the window ends.
//!
//! Playbook messages (`notify()`, `escalate()`) of a held or folded alert
//! pass the same gate ([`Gates`]): held with the alert, dropped with a log
//! line when it folds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{AlertNotice, Notification};
use crate::alerts::{Alert, AlertStatus};
use crate::config::IncidentConfig;

/// What the router does with an alert change.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Send it as usual; a cause's notification lists `folded`.
    Deliver,
    /// Keep it back: its cause may still come.
    Held,
    /// It belongs to the incident of the cause with this fingerprint.
    Folded { root: String },
}

/// An alert the correlator gave back: deliver it as usual.
#[derive(Debug)]
pub struct Release {
    pub notice: AlertNotice,
    pub rule_notify: Vec<String>,
    /// Playbook messages held with it, to send now.
    pub stash: Vec<(Vec<String>, Notification)>,
    pub why: &'static str,
}

/// Where playbook messages of an alert go: shared by the router and every
/// clone of the notifier.
#[derive(Clone, Default)]
pub struct Gates(Arc<Mutex<HashMap<String, Gate>>>);

enum Gate {
    Held(Vec<(Vec<String>, Notification)>),
    Folded { cause: String },
}

/// What [`Gates::admit`] decided for one message.
pub enum Admission {
    Send,
    Held,
    Folded { cause: String },
}

impl Gates {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Gate>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a playbook message of the alert `fingerprint`: held messages
    /// wait with their alert, folded ones are not sent.
    pub fn admit(&self, fingerprint: &str, receivers: &[String], n: &Notification) -> Admission {
        match self.lock().get_mut(fingerprint) {
            None => Admission::Send,
            Some(Gate::Held(stash)) => {
                stash.push((receivers.to_vec(), n.clone()));
                Admission::Held
            }
            Some(Gate::Folded { cause }) => Admission::Folded { cause: cause.clone() },
        }
    }

    fn hold(&self, fingerprint: &str) {
        self.lock()
            .entry(fingerprint.to_owned())
            .or_insert_with(|| Gate::Held(Vec::new()));
    }

    fn fold(&self, fingerprint: &str, cause: &str) -> usize {
        let previous = self.lock().insert(
            fingerprint.to_owned(),
            Gate::Folded {
                cause: cause.to_owned(),
            },
        );
        match previous {
            Some(Gate::Held(stash)) => stash.len(),
            _ => 0,
        }
    }

    fn open(&self, fingerprint: &str) -> Vec<(Vec<String>, Notification)> {
        match self.lock().remove(fingerprint) {
            Some(Gate::Held(stash)) => stash,
            _ => Vec::new(),
        }
    }
}

struct Held {
    notice: AlertNotice,
    rule_notify: Vec<String>,
    fired: Instant,
    hold: std::time::Duration,
    until: Instant,
}

struct Member {
    alert: Alert,
    rule_notify: Vec<String>,
    /// When it fired (was held, or folded at once).
    fired: Instant,
    /// Folded after its cause resolved: it stays quiet until it resolves.
    after_resolve: bool,
}

struct Open {
    /// The `[[incident]]`s with this cause (one may fold everything while
    /// the cause fires, another its echoes for a while after).
    specs: Vec<usize>,
    cause: Alert,
    opened: Instant,
    resolved: Option<Instant>,
    members: BTreeMap<String, Member>,
    /// The window ended and members more severe than the cause were given back.
    window_swept: bool,
    /// The cause resolved and members still firing were given back.
    resolve_swept: bool,
}

impl Open {
    /// Until when explained alerts fold into it; `None`: while it fires.
    fn fold_until(&self, spec: &IncidentConfig) -> Option<Instant> {
        match (spec.while_firing, self.resolved) {
            (true, None) => None,
            (true, Some(r)) => Some(r + spec.window),
            (false, _) => Some(self.opened + spec.window),
        }
    }

    fn folding(&self, spec: &IncidentConfig, now: Instant) -> bool {
        self.fold_until(spec).is_none_or(|until| now <= until)
    }

    /// Whether one of its `[[incident]]`s explains `alert` now.
    fn explains_now(&self, specs: &[IncidentConfig], alert: &Alert, now: Instant) -> bool {
        self.specs
            .iter()
            .map(|&i| &specs[i])
            .any(|spec| self.folding(spec, now) && explains(spec, &self.cause, alert))
    }

    /// Whether every one of its `[[incident]]`s has stopped folding.
    fn window_over(&self, specs: &[IncidentConfig], now: Instant) -> bool {
        self.specs
            .iter()
            .all(|&i| self.fold_until(&specs[i]).is_some_and(|until| now > until))
    }
}

pub struct Correlator {
    specs: Vec<IncidentConfig>,
    held: BTreeMap<String, Held>,
    /// Incidents by the fingerprint of their cause.
    open: HashMap<String, Open>,
    /// Folded alerts: fingerprint → the cause they were folded into.
    member_of: HashMap<String, String>,
    gates: Gates,
}

fn explains(spec: &IncidentConfig, cause: &Alert, alert: &Alert) -> bool {
    alert.fingerprint != cause.fingerprint
        && explains_rule(spec, &alert.rule)
        && spec.same.iter().all(|l| {
            alert
                .labels
                .get(l)
                .is_some_and(|v| !v.is_empty() && cause.labels.get(l) == Some(v))
        })
}

fn explains_rule(spec: &IncidentConfig, rule: &str) -> bool {
    rule != spec.cause && spec.explains.iter().any(|r| r == "*" || r == rule)
}

impl Correlator {
    pub fn new(specs: Vec<IncidentConfig>, gates: Gates) -> Correlator {
        Correlator {
            specs,
            held: BTreeMap::new(),
            open: HashMap::new(),
            member_of: HashMap::new(),
            gates,
        }
    }

    /// Takes the `[[incident]]`s of a reloaded config. Incidents already
    /// open keep folding under the spec they opened with, if it still
    /// exists; otherwise they stop folding.
    pub fn reconfigure(&mut self, specs: Vec<IncidentConfig>) {
        let old = std::mem::replace(&mut self.specs, specs);
        let new = &self.specs;
        self.open.retain(|_, o| {
            o.specs = o
                .specs
                .iter()
                .filter_map(|&i| new.iter().position(|s| *s == old[i]))
                .collect();
            !o.specs.is_empty()
        });
    }

    /// The alerts folded into the incident of `cause`, for its notifications.
    /// In the order they fired.
    pub fn folded(&self, cause: &str) -> Vec<Alert> {
        let mut folded: Vec<Alert> = self
            .open
            .get(cause)
            .map(|o| o.members.values().map(|m| m.alert.clone()).collect())
            .unwrap_or_default();
        folded.sort_by(|a, b| (a.starts_at, &a.rule, &a.target).cmp(&(b.starts_at, &b.rule, &b.target)));
        folded
    }

    /// The cause an alert is folded into, if it is.
    pub fn root_of(&self, fingerprint: &str) -> Option<&str> {
        self.member_of.get(fingerprint).map(String::as_str)
    }

    /// An alert fired or resolved.
    pub fn on_alert(&mut self, notice: &AlertNotice, rule_notify: &[String], now: Instant) -> Verdict {
        let alert = &notice.alert;
        let fp = alert.fingerprint.clone();
        let firing = alert.status == AlertStatus::Firing;

        if let Some(root) = self.member_of.get(&fp).cloned() {
            // A folded alert stays folded while its incident explains it:
            // its resolve, or a new firing while the cause fires or folds.
            let keep = self
                .open
                .get(&root)
                .is_some_and(|o| !firing || o.resolved.is_none() || o.explains_now(&self.specs, alert, now));
            if keep {
                if let Some(m) = self.open.get_mut(&root).and_then(|o| o.members.get_mut(&fp)) {
                    m.alert = alert.clone();
                }
                return Verdict::Folded { root };
            }
            self.unfold(&fp);
        }
        if let Some(h) = self.held.get_mut(&fp) {
            if firing && h.notice.alert.starts_at != alert.starts_at {
                // A new firing waits for its cause afresh.
                h.fired = now;
                h.until = now + h.hold;
            }
            h.notice = notice.clone();
            if firing {
                self.open_incident(alert, now);
            } else if let Some(o) = self.open.get_mut(&fp) {
                o.resolved = Some(now);
                o.cause = alert.clone();
            }
            return Verdict::Held;
        }

        if !firing {
            if let Some(o) = self.open.get_mut(&fp) {
                o.resolved = Some(now);
                o.cause = alert.clone();
            }
            return Verdict::Deliver;
        }

        if let Some(root) = self.find_incident(alert, now) {
            self.fold(alert, rule_notify, &root, now);
            return Verdict::Folded { root };
        }
        self.open_incident(alert, now);
        let wait = self
            .specs
            .iter()
            .filter(|s| explains_rule(s, &alert.rule) && s.same.iter().all(|l| alert.labels.contains_key(l)))
            .map(|s| s.hold)
            .max()
            .unwrap_or_default();
        if !wait.is_zero() {
            self.held.insert(
                fp.clone(),
                Held {
                    notice: notice.clone(),
                    rule_notify: rule_notify.to_vec(),
                    fired: now,
                    hold: wait,
                    until: now + wait,
                },
            );
            self.gates.hold(&fp);
            tracing::info!(rule = %alert.rule, target = %alert.target, hold = ?wait, "Alert held: its cause may still come");
            return Verdict::Held;
        }
        Verdict::Deliver
    }

    /// The open incident (its root cause) that explains `alert` now.
    fn find_incident(&self, alert: &Alert, now: Instant) -> Option<String> {
        let mut found: Vec<(&String, &Open)> = self
            .open
            .iter()
            .filter(|(_, o)| o.explains_now(&self.specs, alert, now))
            .collect();
        // The most recent incident explains best.
        found.sort_by_key(|(_, o)| std::cmp::Reverse(o.opened));
        found
            .into_iter()
            .map(|(cause, _)| self.root(cause))
            .find(|root| *root != alert.fingerprint && !self.is_below(root, &alert.fingerprint))
    }

    /// The cause at the top of `fingerprint`'s chain of folds.
    fn root(&self, fingerprint: &str) -> String {
        let mut at = fingerprint;
        for _ in 0..16 {
            match self.member_of.get(at) {
                Some(up) => at = up,
                None => break,
            }
        }
        at.to_owned()
    }

    /// Whether `root` is folded, directly or not, under `fingerprint`.
    fn is_below(&self, root: &str, fingerprint: &str) -> bool {
        let mut at = root;
        for _ in 0..16 {
            match self.member_of.get(at) {
                Some(up) if up == fingerprint => return true,
                Some(up) => at = up,
                None => return false,
            }
        }
        false
    }

    /// Opens (or renews) the incidents `alert` is the cause of, and folds
    /// into them the held alerts they explain.
    fn open_incident(&mut self, alert: &Alert, now: Instant) {
        let specs: Vec<usize> = (0..self.specs.len())
            .filter(|&i| self.specs[i].cause == alert.rule)
            .collect();
        if specs.is_empty() {
            return;
        }
        // A new firing of the same cause is a new incident. What still fires
        // of the last one carries over, and so does what fired since the last
        // one opened, within `hold`: the run-up to this one, which a held
        // alert would have been had the last one not folded it (a Sentinel's
        // `+odown` that a `-odown` ended before the `+switch-master`).
        let (last_opened, mut members) = self
            .open
            .remove(&alert.fingerprint)
            .map(|o| (Some(o.opened), o.members))
            .unwrap_or_default();
        let run_up = |m: &Member| {
            last_opened.is_some_and(|opened| m.fired > opened)
                && specs
                    .iter()
                    .map(|&i| &self.specs[i])
                    .any(|spec| now.duration_since(m.fired) <= spec.hold && explains(spec, alert, &m.alert))
        };
        let gone: Vec<String> = members
            .iter()
            .filter(|(_, m)| m.alert.status != AlertStatus::Firing && !run_up(m))
            .map(|(fp, _)| fp.clone())
            .collect();
        for fp in gone {
            members.remove(&fp);
            self.member_of.remove(&fp);
            self.gates.open(&fp);
        }
        let explained: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| {
                specs
                    .iter()
                    .map(|&i| &self.specs[i])
                    .any(|spec| now.duration_since(h.fired) <= spec.hold && explains(spec, alert, &h.notice.alert))
            })
            .map(|(fp, _)| fp.clone())
            .collect();
        self.open.insert(
            alert.fingerprint.clone(),
            Open {
                specs,
                cause: alert.clone(),
                opened: now,
                resolved: None,
                members,
                window_swept: false,
                resolve_swept: false,
            },
        );
        let root = self.root(&alert.fingerprint);
        for fp in explained {
            if fp == root || self.is_below(&root, &fp) {
                continue;
            }
            let h = self.held.remove(&fp).expect("listed above");
            self.fold(&h.notice.alert, &h.rule_notify, &root, h.fired);
        }
    }

    fn fold(&mut self, alert: &Alert, rule_notify: &[String], root: &str, fired: Instant) {
        let fp = alert.fingerprint.clone();
        self.held.remove(&fp);
        let dropped = self.gates.fold(&fp, root);
        let cause_rule = self.open.get(root).map(|o| o.cause.rule.clone()).unwrap_or_default();
        tracing::info!(rule = %alert.rule, target = %alert.target, into = %cause_rule, playbook_messages_dropped = dropped, "Alert folded into an incident");
        self.member_of.insert(fp.clone(), root.to_owned());
        // What was folded under this alert moves up with it.
        let moved: Vec<(String, Member)> = self
            .open
            .get_mut(&fp)
            .map(|o| std::mem::take(&mut o.members).into_iter().collect())
            .unwrap_or_default();
        let Some(open) = self.open.get_mut(root) else {
            return;
        };
        let after_resolve = open.resolved.is_some();
        open.members.insert(
            fp,
            Member {
                alert: alert.clone(),
                rule_notify: rule_notify.to_vec(),
                fired,
                after_resolve,
            },
        );
        for (m, member) in moved {
            self.member_of.insert(m.clone(), root.to_owned());
            open.members.insert(m, member);
        }
    }

    fn unfold(&mut self, fingerprint: &str) {
        if let Some(root) = self.member_of.remove(fingerprint)
            && let Some(o) = self.open.get_mut(&root)
        {
            o.members.remove(fingerprint);
        }
        self.gates.open(fingerprint);
    }

    /// What time gives back: held alerts whose cause did not come, and
    /// folded alerts their incident no longer explains.
    pub fn tick(&mut self, now: Instant) -> Vec<Release> {
        let mut released = Vec::new();
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.until <= now)
            .map(|(fp, _)| fp.clone())
            .collect();
        for fp in due {
            let h = self.held.remove(&fp).expect("listed above");
            let stash = self.gates.open(&fp);
            if h.notice.alert.status == AlertStatus::Resolved {
                tracing::info!(rule = %h.notice.alert.rule, target = %h.notice.alert.target, playbook_messages_dropped = stash.len(), "Held alert resolved before its cause came: not sent");
                continue;
            }
            released.push(Release {
                notice: h.notice,
                rule_notify: h.rule_notify,
                stash,
                why: "its cause did not come within `hold`",
            });
        }

        let mut give_back: Vec<(String, &'static str)> = Vec::new();
        let mut closed = Vec::new();
        for (cause, o) in self.open.iter_mut() {
            let window_over = o.window_over(&self.specs, now);
            if o.resolved.is_some() && !self.held.contains_key(cause) {
                // The cause resolved: what still fires is no longer explained
                // (members that folded after the resolve stay quiet).
                if !o.resolve_swept {
                    give_back.extend(
                        o.members
                            .values()
                            .filter(|m| m.alert.status == AlertStatus::Firing && !m.after_resolve)
                            .map(|m| (m.alert.fingerprint.clone(), "its cause resolved and it still fires")),
                    );
                    o.resolve_swept = true;
                }
                if window_over {
                    closed.push(cause.clone());
                }
            } else if window_over && !o.window_swept {
                give_back.extend(
                    o.members
                        .values()
                        .filter(|m| m.alert.status == AlertStatus::Firing && m.alert.severity > o.cause.severity)
                        .map(|m| {
                            (
                                m.alert.fingerprint.clone(),
                                "it is more severe than its cause and still fires",
                            )
                        }),
                );
                o.window_swept = true;
            }
        }
        for (fp, why) in give_back {
            let Some(root) = self.member_of.get(&fp).cloned() else {
                continue;
            };
            let Some(member) = self.open.get_mut(&root).and_then(|o| o.members.remove(&fp)) else {
                continue;
            };
            self.member_of.remove(&fp);
            let stash = self.gates.open(&fp);
            released.push(Release {
                notice: AlertNotice::new(member.alert),
                rule_notify: member.rule_notify,
                stash,
                why,
            });
        }
        for cause in closed {
            if let Some(o) = self.open.remove(&cause) {
                for fp in o.members.keys() {
                    self.member_of.remove(fp);
                    self.gates.open(fp);
                }
            }
        }
        released
    }
}

#[cfg(test)]
mod tests;
