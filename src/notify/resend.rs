//! Re-sending firing alerts to Alertmanager receivers on their own cadence.
//!
//! Alertmanager takes an alert it is not told about again within its
//! `resolve_timeout` (5 min by default) as resolved, and tells its own
//! receivers so. A route's `repeat_interval` (hours) and an acknowledgement
//! (which stops repeats) are about paging people; an Alertmanager needs to
//! keep hearing that the alert still fires. So every firing alert that went
//! to an Alertmanager receiver is sent to it again every `resend_interval`,
//! until it resolves, whatever the routes or an ack say.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, ReceiverConfig};

#[derive(Default)]
pub struct Resender {
    /// Alertmanager receivers and their `resend_interval`.
    intervals: BTreeMap<String, Duration>,
    /// Per firing alert, when each Alertmanager receiver last got it;
    /// `None`: not since a restart, so it is due now.
    last_sent: HashMap<String, BTreeMap<String, Option<Instant>>>,
}

impl Resender {
    pub fn new(config: &Config) -> Resender {
        let mut r = Resender::default();
        r.reconfigure(config);
        r
    }

    /// Takes a reloaded config's receivers. Alerts keep their schedule with
    /// the receivers that are still Alertmanagers.
    pub fn reconfigure(&mut self, config: &Config) {
        self.intervals = config
            .receivers
            .iter()
            .filter_map(|(name, r)| match r {
                ReceiverConfig::Webhook(w) => Some((name.clone(), w.resend_interval()?)),
                _ => None,
            })
            .collect();
        for receivers in self.last_sent.values_mut() {
            receivers.retain(|r, _| self.intervals.contains_key(r));
        }
        self.last_sent.retain(|_, receivers| !receivers.is_empty());
    }

    /// Some of `receivers` got these firing alerts at `now`.
    pub fn sent(&mut self, receivers: &[String], firing: &[&str], now: Instant) {
        for r in receivers.iter().filter(|r| self.intervals.contains_key(*r)) {
            for f in firing {
                self.last_sent
                    .entry((*f).to_owned())
                    .or_default()
                    .insert(r.clone(), Some(now));
            }
        }
    }

    /// An alert that fired before a restart and went to `receivers` then:
    /// the Alertmanagers among them get it at the next [`Resender::due`].
    pub fn restored(&mut self, fingerprint: &str, receivers: &[String]) {
        for r in receivers.iter().filter(|r| self.intervals.contains_key(*r)) {
            self.last_sent
                .entry(fingerprint.to_owned())
                .or_default()
                .entry(r.clone())
                .or_insert(None);
        }
    }

    /// The alert resolved: its resolve is its last notification.
    pub fn resolved(&mut self, fingerprint: &str) {
        self.last_sent.remove(fingerprint);
    }

    /// The alerts due again at `now`, each with the receivers it is due to,
    /// counted as sent at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for (fingerprint, receivers) in &mut self.last_sent {
            let mut to = Vec::new();
            for (r, at) in receivers.iter_mut() {
                let every = self.intervals[r];
                if at.is_none_or(|at| now.duration_since(at) >= every) {
                    *at = Some(now);
                    to.push(r.clone());
                }
            }
            if !to.is_empty() {
                out.push((fingerprint.clone(), to));
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resender(every: Duration) -> Resender {
        Resender {
            intervals: [("am".to_owned(), every)].into(),
            last_sent: HashMap::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_firing_alert_is_due_each_interval_until_it_resolves() {
        let mut r = resender(Duration::from_secs(60));
        let start = Instant::now();
        r.sent(&["am".into(), "pager".into()], &["f1"], start);
        assert!(r.due(start + Duration::from_secs(59)).is_empty());
        let due = r.due(start + Duration::from_secs(60));
        assert_eq!(
            due,
            vec![("f1".to_owned(), vec!["am".to_owned()])],
            "only to the Alertmanager"
        );
        assert!(r.due(start + Duration::from_secs(61)).is_empty(), "counted as sent");
        assert_eq!(r.due(start + Duration::from_secs(120)).len(), 1);
        r.resolved("f1");
        assert!(r.due(start + Duration::from_secs(600)).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_restored_alert_is_due_at_once_and_other_receivers_are_ignored() {
        let mut r = resender(Duration::from_secs(60));
        r.restored("f1", &["am".into()]);
        r.restored("f2", &["pager".into()]);
        let now = Instant::now();
        assert_eq!(r.due(now), vec![("f1".to_owned(), vec!["am".to_owned()])]);
        assert!(r.due(now).is_empty());
    }
}
