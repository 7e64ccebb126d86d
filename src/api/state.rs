//! What the engine shows the API: each target's latest sample and
//! connection state, and engine-wide counters. The engine loop writes it;
//! API handlers read a snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::status::Status;

use crate::event::{Event, MetricValue, Metrics};
use crate::rules::{Rule, SourceKind};

#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub labels: BTreeMap<String, String>,
    pub up: bool,
    #[serde(with = "crate::alerts::rfc3339")]
    pub sampled_at: SystemTime,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub targets: BTreeMap<String, TargetView>,
    pub uptime_seconds: u64,
    pub reload_ok: bool,
}

/// A counter family with `N` labels. Label sets are few (sources ×
/// targets, rules, receivers), so a map under a mutex is cheap enough and
/// keeps the exported order stable.
pub struct CounterVec<const N: usize>(Mutex<BTreeMap<[String; N], u64>>);

impl<const N: usize> Default for CounterVec<N> {
    fn default() -> Self {
        CounterVec(Mutex::default())
    }
}

impl<const N: usize> CounterVec<N> {
    pub fn inc(&self, labels: [&str; N]) {
        self.add(labels, 1);
    }

    pub fn add(&self, labels: [&str; N], n: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(labels.map(str::to_owned)).or_default() += n;
    }

    pub fn snapshot(&self) -> Vec<([String; N], u64)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
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
    pub reloads_failed: AtomicU64,
    /// `[ha]` is on: the two below are exported.
    pub ha_enabled: AtomicBool,
    /// 1 while this instance leads.
    pub ha_leader: AtomicU64,
    /// The fencing token of this instance's latest lease.
    pub ha_fencing_token: AtomicU64,
}

#[derive(Clone)]
pub struct EngineView {
    targets: Arc<RwLock<BTreeMap<String, TargetView>>>,
    pub counters: Arc<Counters>,
    reload_ok: Arc<AtomicBool>,
    started: Instant,
}

impl Default for EngineView {
    fn default() -> Self {
        EngineView {
            targets: Arc::default(),
            counters: Arc::default(),
            reload_ok: Arc::new(AtomicBool::new(true)),
            started: Instant::now(),
        }
    }
}

impl EngineView {
    pub fn record_sample(&self, target: &str, labels: Option<&BTreeMap<String, String>>, metrics: &Metrics) {
        let up = metrics
            .get("redis_up")
            .and_then(MetricValue::as_f64)
            .is_none_or(|v| v > 0.0);
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        let entry = targets.entry(target.to_owned()).or_insert_with(|| TargetView {
            labels: BTreeMap::new(),
            up,
            sampled_at: SystemTime::now(),
            metrics: Metrics::new(),
        });
        if let Some(l) = labels {
            entry.labels = l.clone();
        }
        entry.up = up;
        entry.sampled_at = SystemTime::now();
        // A down target's sample carries only redis_up: keep the last
        // known values, with up = false saying they are stale.
        if up {
            entry.metrics = metrics.clone();
        } else {
            entry.metrics.insert("redis_up".into(), MetricValue::Num(0.0));
        }
    }

    pub fn set_labels(&self, target: &str, labels: &BTreeMap<String, String>) {
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = targets.get_mut(target) {
            t.labels = labels.clone();
        }
    }

    pub fn remove(&self, target: &str) {
        self.targets.write().unwrap_or_else(|e| e.into_inner()).remove(target);
    }

    pub fn set_reload_ok(&self, ok: bool) {
        self.reload_ok.store(ok, Ordering::Relaxed);
        if !ok {
            self.counters.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an event by source and target, and the rule conditions it
    /// makes the evaluator check (the rules of its source that apply to its
    /// target; for keyspace counts, the rules they were counted for).
    pub fn count_event(&self, event: &Event, rules: &[Arc<Rule>]) {
        let c = &self.counters;
        let target = event.target();
        let source = match event {
            Event::Sample(_) => SourceKind::Sample,
            Event::KeyspaceCounts(counts) => {
                c.events_received.inc(["keyspace", target]);
                for (rule, _) in &counts.counts {
                    c.rule_evaluations.inc([rule]);
                }
                return;
            }
            Event::Health(_) => SourceKind::Health,
            Event::Sentinel(_) => SourceKind::Sentinel,
            Event::Schedule(_) => {
                c.events_received.inc(["schedule", target]);
                return;
            }
            Event::Target(_) => return,
        };
        c.events_received.inc([source.as_str(), target]);
        for rule in rules.iter().filter(|r| r.source == source && r.applies_to(target)) {
            c.rule_evaluations.inc([&rule.name]);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            targets: self.targets.read().unwrap_or_else(|e| e.into_inner()).clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            reload_ok: self.reload_ok.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub metric: &'static str,
    pub value: Option<f64>,
    pub status: Status,
    pub thresholds: &'static str,
}

/// The guide's dashboard thresholds: memory < 70 % (warning 70–85,
/// critical > 85), hit ratio > 90 % (warning 80–90, critical < 80),
/// fragmentation < 1.5 (warning 1.5–2.0, critical > 2.0).
pub fn guide_checks(t: &TargetView) -> Vec<Check> {
    let get = |m: &str| t.metrics.get(m).and_then(MetricValue::as_f64);
    let memory = get("memory_used_pct");
    let hit = get("hit_ratio");
    let frag = get("mem_fragmentation_ratio");
    // A nearly empty server reports huge ratios (12 MB RSS for 1 MB of
    // data); like the shipped rules, judge fragmentation from 64 MiB on.
    let sizeable = get("used_memory").is_some_and(|u| u >= 64.0 * 1024.0 * 1024.0);
    vec![
        Check {
            metric: "memory_used_pct",
            value: memory,
            status: Status::above(memory, 70.0, 85.0),
            thresholds: "warning > 70, critical > 85",
        },
        Check {
            metric: "hit_ratio",
            value: hit,
            status: Status::below(hit, 90.0, 80.0),
            thresholds: "warning < 90, critical < 80",
        },
        Check {
            metric: "mem_fragmentation_ratio",
            value: frag,
            status: if sizeable {
                Status::above(frag, 1.5, 2.0)
            } else {
                Status::Ok
            },
            thresholds: "warning > 1.5, critical > 2.0 (judged from 64 MiB of data)",
        },
    ]
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
}
