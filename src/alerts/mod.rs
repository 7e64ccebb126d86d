//! Alerts: their severities, their lifecycle and the changes the engine
//! hands to notifications.
//!
//! The lifecycle is `inactive → pending → firing → resolved (→ inactive)`.
//! [`Lifecycle::step`] is the whole state machine: a pure function of the
//! condition and a monotonic clock, so a jump of the wall clock cannot fire
//! or clear a `for` window.

pub mod escalation;
pub mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// One alert as receivers see it: what, where, how bad, since when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub rule: String,
    pub target: String,
    pub severity: Severity,
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    /// The current value of the metric the rule's condition is about.
    pub value: Option<String>,
    #[serde(with = "rfc3339")]
    pub starts_at: SystemTime,
    #[serde(with = "rfc3339::option")]
    pub ends_at: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The rule's annotations, rendered for this alert (`description`
    /// among them when the rule has one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A stable identity for an alert: the same rule on the same target always
/// has the same fingerprint, across restarts and engines.
pub fn fingerprint(rule: &str, target: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    h.update([0]);
    h.update(target.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// Where one (rule, target) pair is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Inactive,
    Pending {
        since: Instant,
    },
    Firing {
        since: Instant,
        started_at: SystemTime,
    },
}

/// What the evaluator learned from a rule's expressions this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    /// `when`: `None` when it could not be evaluated (missing data).
    pub when: Option<bool>,
    /// `clear`: `None` when the rule has none, or it could not be evaluated.
    pub clear: Option<bool>,
    pub has_clear: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Pending,
    /// Back to inactive before `for` elapsed: nobody is told.
    Cancelled,
    Fired {
        started_at: SystemTime,
    },
    Resolved {
        started_at: SystemTime,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    pub phase: Phase,
    /// While firing, since when the condition has been clear: the alert
    /// resolves once that is `keep_firing_for` ago.
    pub cleared_since: Option<Instant>,
}

impl Lifecycle {
    /// Advances the state machine. Missing data never changes the phase:
    /// a target that stops answering is the health rules' business.
    ///
    /// A firing alert resolves only once its condition has stayed clear for
    /// `keep_firing_for` (Prometheus's field of that name): a condition that
    /// dips for a sample or two does not resolve and re-fire it.
    pub fn step(
        &mut self,
        cond: Condition,
        for_: Duration,
        keep_firing_for: Duration,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Transition> {
        if !self.is_firing() {
            self.cleared_since = None;
        }
        match self.phase {
            Phase::Inactive => match cond.when {
                Some(true) if for_.is_zero() => {
                    self.phase = Phase::Firing {
                        since: now,
                        started_at: wall,
                    };
                    Some(Transition::Fired { started_at: wall })
                }
                Some(true) => {
                    self.phase = Phase::Pending { since: now };
                    Some(Transition::Pending)
                }
                _ => None,
            },
            Phase::Pending { since } => match cond.when {
                Some(false) => {
                    self.phase = Phase::Inactive;
                    Some(Transition::Cancelled)
                }
                Some(true) if now.duration_since(since) >= for_ => {
                    self.phase = Phase::Firing {
                        since: now,
                        started_at: wall,
                    };
                    Some(Transition::Fired { started_at: wall })
                }
                _ => None,
            },
            Phase::Firing { started_at, .. } => {
                // With a `clear`, only it ends the alert (hysteresis); without
                // one, the alert ends when `when` stops holding.
                let (cleared, holds) = if cond.has_clear {
                    (cond.clear == Some(true), cond.clear == Some(false))
                } else {
                    (cond.when == Some(false), cond.when == Some(true))
                };
                if cleared {
                    let since = *self.cleared_since.get_or_insert(now);
                    if now.duration_since(since) < keep_firing_for {
                        return None;
                    }
                    self.phase = Phase::Inactive;
                    self.cleared_since = None;
                    Some(Transition::Resolved { started_at })
                } else {
                    // The condition is back: the next clearing counts from zero.
                    // Missing data neither re-arms nor advances it.
                    if holds {
                        self.cleared_since = None;
                    }
                    None
                }
            }
        }
    }

    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }
}

pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(D::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(text) => humantime::parse_rfc3339(&text).map(Some).map_err(D::Error::custom),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOR: Duration = Duration::from_secs(120);

    fn cond(when: Option<bool>, clear: Option<bool>) -> Condition {
        Condition {
            when,
            clear,
            has_clear: true,
        }
    }

    #[test]
    fn fires_only_after_for_has_held() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let mut lc = Lifecycle::default();
        assert_eq!(
            lc.step(cond(Some(true), Some(false)), FOR, Duration::ZERO, t0, wall),
            Some(Transition::Pending)
        );
        assert_eq!(
            lc.step(
                cond(Some(true), Some(false)),
                FOR,
                Duration::ZERO,
                t0 + Duration::from_secs(119),
                wall
            ),
            None
        );
        let fired = lc.step(cond(Some(true), Some(false)), FOR, Duration::ZERO, t0 + FOR, wall);
        assert!(matches!(fired, Some(Transition::Fired { .. })));
    }

    #[test]
    fn a_dip_during_for_restarts_the_window() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let mut lc = Lifecycle::default();
        lc.step(cond(Some(true), Some(false)), FOR, Duration::ZERO, t0, wall);
        assert_eq!(
            lc.step(
                cond(Some(false), Some(false)),
                FOR,
                Duration::ZERO,
                t0 + Duration::from_secs(60),
                wall
            ),
            Some(Transition::Cancelled)
        );
        lc.step(
            cond(Some(true), Some(false)),
            FOR,
            Duration::ZERO,
            t0 + Duration::from_secs(70),
            wall,
        );
        // 120 s after the first crossing is not enough: the window restarted at 70 s.
        assert_eq!(
            lc.step(cond(Some(true), Some(false)), FOR, Duration::ZERO, t0 + FOR, wall),
            None
        );
        assert!(
            lc.step(
                cond(Some(true), Some(false)),
                FOR,
                Duration::ZERO,
                t0 + Duration::from_secs(190),
                wall
            )
            .is_some()
        );
    }

    #[test]
    fn missing_data_changes_nothing() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let mut lc = Lifecycle::default();
        lc.step(cond(Some(true), None), Duration::ZERO, Duration::ZERO, t0, wall);
        assert!(lc.is_firing());
        assert_eq!(
            lc.step(cond(None, None), Duration::ZERO, Duration::ZERO, t0, wall),
            None
        );
        assert!(lc.is_firing());
    }

    #[test]
    fn keep_firing_for_holds_a_cleared_alert_and_rearms_when_the_condition_returns() {
        const KEEP: Duration = Duration::from_secs(60);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let wall = SystemTime::UNIX_EPOCH;
        let when = |w: bool| Condition {
            when: Some(w),
            clear: None,
            has_clear: false,
        };
        let mut lc = Lifecycle::default();
        assert!(matches!(
            lc.step(when(true), Duration::ZERO, KEEP, at(0), wall),
            Some(Transition::Fired { .. })
        ));
        // Clear for 50 s, then back: still firing, and the clock restarts.
        assert_eq!(lc.step(when(false), Duration::ZERO, KEEP, at(10), wall), None);
        assert_eq!(lc.step(when(false), Duration::ZERO, KEEP, at(60), wall), None);
        assert!(lc.is_firing());
        assert_eq!(lc.step(when(true), Duration::ZERO, KEEP, at(65), wall), None);
        assert_eq!(lc.step(when(false), Duration::ZERO, KEEP, at(70), wall), None);
        // 115 s after the first clearing is not enough: it re-armed at 65 s.
        assert_eq!(lc.step(when(false), Duration::ZERO, KEEP, at(125), wall), None);
        // Missing data neither re-arms nor resolves.
        let no_data = Condition {
            when: None,
            clear: None,
            has_clear: false,
        };
        assert_eq!(lc.step(no_data, Duration::ZERO, KEEP, at(128), wall), None);
        assert!(matches!(
            lc.step(when(false), Duration::ZERO, KEEP, at(130), wall),
            Some(Transition::Resolved { .. })
        ));
        assert!(!lc.is_firing());
        // Firing again starts a fresh keep window.
        lc.step(when(true), Duration::ZERO, KEEP, at(200), wall);
        assert_eq!(lc.step(when(false), Duration::ZERO, KEEP, at(205), wall), None);
        assert!(lc.is_firing());
    }

    #[test]
    fn keep_firing_for_waits_on_clear_when_the_rule_has_one() {
        const KEEP: Duration = Duration::from_secs(30);
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let mut lc = Lifecycle::default();
        lc.step(cond(Some(true), Some(false)), Duration::ZERO, KEEP, t0, wall);
        // `when` false but `clear` not yet true: the keep clock does not start.
        lc.step(
            cond(Some(false), Some(false)),
            Duration::ZERO,
            KEEP,
            t0 + Duration::from_secs(10),
            wall,
        );
        lc.step(
            cond(Some(false), Some(true)),
            Duration::ZERO,
            KEEP,
            t0 + Duration::from_secs(20),
            wall,
        );
        assert_eq!(
            lc.step(
                cond(Some(false), Some(true)),
                Duration::ZERO,
                KEEP,
                t0 + Duration::from_secs(49),
                wall
            ),
            None
        );
        assert!(matches!(
            lc.step(
                cond(Some(false), Some(true)),
                Duration::ZERO,
                KEEP,
                t0 + Duration::from_secs(50),
                wall
            ),
            Some(Transition::Resolved { .. })
        ));
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        assert_eq!(
            fingerprint("memory_critical", "cache"),
            fingerprint("memory_critical", "cache")
        );
        assert_ne!(
            fingerprint("memory_critical", "cache"),
            fingerprint("memory_critical", "broker")
        );
        assert_ne!(fingerprint("ab", "c"), fingerprint("a", "bc"));
    }
}
