//! redops's own counters: events received, rule evaluations, alert
//! changes, playbook runs, deliveries, leadership. Every part of the engine
//! writes them; the API's `/metrics` reads them. They live down here so that
//! a part that counts needs nothing of the API.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

use rustc_hash::FxHashMap;

use crate::strkey::StrKey;

/// A counter family with `N` labels. Label sets are few (sources ×
/// targets, rules, receivers), so a map under a mutex is cheap enough. A
/// hash map: the evaluator counts every keyspace rule every tick, and a
/// search of a sorted map compares a label with several others, each a
/// string elsewhere in memory. The export sorts. Labels are kept inline
/// when short (rule and target names are), so that finding one reads no
/// memory the cache has long dropped.
pub struct CounterVec<const N: usize>(Mutex<FxHashMap<[Label; N], u64>>);

type Label = smartstring::alias::CompactString;

impl<const N: usize> Default for CounterVec<N> {
    fn default() -> Self {
        CounterVec(Mutex::default())
    }
}

impl<const N: usize> CounterVec<N> {
    pub fn inc(&self, labels: [&str; N]) {
        self.add(labels, 1);
    }

    /// Allocates only for a label set not seen before: the evaluator
    /// counts every keyspace rule a tick apart.
    pub fn add(&self, labels: [&str; N], n: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(&labels as &dyn StrKey<N>) {
            Some(count) => *count += n,
            None => *map.entry(labels.map(Label::from)).or_default() += n,
        }
    }

    /// Every label set and its count, sorted by labels.
    pub fn snapshot(&self) -> Vec<([String; N], u64)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = map
            .iter()
            .map(|(k, v)| (k.each_ref().map(|l| l.to_string()), *v))
            .collect();
        all.sort_unstable();
        all
    }
}

/// Upper bounds, in seconds, of the playbook run duration buckets: from a
/// quick CONFIG SET to a backup of a large dataset.
pub const RUN_DURATION_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// One histogram series: cumulative bucket counts, as Prometheus wants them.
#[derive(Debug, Clone, Default)]
pub struct HistogramSeries {
    pub buckets: [u64; RUN_DURATION_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

/// Playbook run durations by outcome.
#[derive(Default)]
pub struct RunDurations(Mutex<BTreeMap<String, HistogramSeries>>);

impl RunDurations {
    pub fn observe(&self, outcome: &str, seconds: f64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let series = map.entry(outcome.to_owned()).or_default();
        for (bucket, bound) in series.buckets.iter_mut().zip(RUN_DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        series.count += 1;
        series.sum += seconds;
    }

    pub fn snapshot(&self) -> Vec<(String, HistogramSeries)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Engine-wide counters, exported on /metrics.
#[derive(Default)]
pub struct Counters {
    /// By source and target.
    pub events_received: CounterVec<2>,
    /// Rule conditions evaluated, by rule.
    pub rule_evaluations: CounterVec<1>,
    /// Alert changes, by new state and severity.
    pub alert_changes: CounterVec<2>,
    /// Finished playbook runs, by outcome; durations below.
    pub playbook_runs: CounterVec<1>,
    pub playbook_durations: RunDurations,
    /// Invocations the runner's full queue refused.
    pub playbook_invocations_dropped: AtomicU64,
    /// Alerts an Alertmanager posted, by what became of them (started,
    /// duplicate, cooldown, resolved, unmatched, rejected).
    pub alertmanager_alerts: CounterVec<1>,
    pub reloads_failed: AtomicU64,
    /// `[ha]` is on: the two below are exported.
    pub ha_enabled: AtomicBool,
    /// 1 while this instance leads.
    pub ha_leader: AtomicU64,
    /// The fencing token of this instance's latest lease.
    pub ha_fencing_token: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_durations_are_cumulative_buckets_per_outcome() {
        let durations = RunDurations::default();
        durations.observe("succeeded", 0.02);
        durations.observe("succeeded", 7.0);
        durations.observe("failed", 400.0);
        let snapshot = durations.snapshot();
        let (outcome, failed) = &snapshot[0];
        assert_eq!((outcome.as_str(), failed.count, failed.buckets), ("failed", 1, [0; 10]));
        let (_, ok) = &snapshot[1];
        assert_eq!(ok.buckets, [0, 1, 1, 1, 1, 1, 2, 2, 2, 2]);
        assert_eq!((ok.count, ok.sum), (2, 7.02));
    }

    #[test]
    fn labelled_counters_add_per_label_set() {
        let events = CounterVec::<2>::default();
        events.inc(["sample", "cache"]);
        events.add(["sample", "cache"], 2);
        events.inc(["health", "cache"]);
        let snapshot = events.snapshot();
        assert_eq!(snapshot[0], (["health".to_owned(), "cache".to_owned()], 1));
        assert_eq!(snapshot[1], (["sample".to_owned(), "cache".to_owned()], 3));
    }

    /// Found by borrowed labels, which hash as the owned ones, prefixes
    /// and all: every set counted once, none twice.
    #[test]
    fn borrowed_labels_find_the_owned_set() {
        let counter = CounterVec::<2>::default();
        let words = ["", "a", "ab", "b", "ba", "cache", "cach", "z"];
        let mut expected = BTreeMap::new();
        for round in 1..=3u64 {
            for (i, x) in words.iter().enumerate() {
                for y in words.iter().rev().skip(i % 3) {
                    counter.add([x, y], round);
                    *expected.entry([x.to_string(), y.to_string()]).or_insert(0) += round;
                }
            }
        }
        assert_eq!(counter.snapshot(), expected.into_iter().collect::<Vec<_>>());
    }
}
