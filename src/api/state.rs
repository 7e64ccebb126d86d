//! What the engine shows the API: each target's latest sample and
//! connection state, and engine-wide counters. The engine loop writes it;
//! API handlers read a snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::status::Status;

use crate::event::{Event, MetricValue, Metrics};
use crate::rules::{Rule, SourceKind};
use crate::telemetry::Counters;

#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub labels: BTreeMap<String, String>,
    pub up: bool,
    #[serde(with = "crate::alerts::rfc3339")]
    pub sampled_at: SystemTime,
    pub metrics: Metrics,
    /// `host:port` of a configured target, the `instance` label of its
    /// series on `/metrics`; a discovered node has its `addr` label instead.
    #[serde(skip)]
    pub instance: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub targets: BTreeMap<String, TargetView>,
    pub uptime_seconds: u64,
    pub reload_ok: bool,
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
            instance: None,
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

    /// Records `host:port` of a target already recorded.
    pub fn set_instance(&self, target: &str, instance: &str) {
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = targets.get_mut(target) {
            t.instance = Some(instance.to_owned());
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
            Event::Cluster(_) => SourceKind::Cluster,
            Event::Schedule(_) => {
                c.events_received.inc(["schedule", target]);
                return;
            }
            Event::Target(_) => return,
        };
        c.events_received.inc([source.as_str(), target]);
        for rule in rules.iter().filter(|r| r.source() == source && r.applies_to(target)) {
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
