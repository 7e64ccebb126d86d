//! The typed events every source emits into the engine.

pub mod cluster;
pub mod keyspace;
pub mod metric_names;
pub mod sentinel;

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

/// Whether a rule's `targets` cover `target`: empty covers every target,
/// and a Sentinel group's name covers its nodes (`group/host:port`).
pub fn names_target(targets: &[String], target: &str) -> bool {
    targets.is_empty()
        || targets.iter().any(|t| {
            t == target
                || target
                    .strip_prefix(t.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// One sampled value. Most metrics are numbers; a few (`role`) are text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum MetricValue {
    Num(f64),
    Text(String),
}

impl MetricValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetricValue::Num(n) => Some(*n),
            MetricValue::Text(_) => None,
        }
    }
}

impl fmt::Display for MetricValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricValue::Num(n) => crate::template::Number(*n).fmt(f),
            MetricValue::Text(s) => f.write_str(s),
        }
    }
}

impl From<f64> for MetricValue {
    fn from(n: f64) -> Self {
        MetricValue::Num(n)
    }
}

impl From<&str> for MetricValue {
    fn from(s: &str) -> Self {
        MetricValue::Text(s.to_owned())
    }
}

/// Named metrics of one sample, ordered by name so output is stable.
pub type Metrics = BTreeMap<String, MetricValue>;

/// What a source saw, tagged with the target it concerns.
#[derive(Debug, Clone)]
pub enum Event {
    /// A periodic INFO sample (or a `redis_up = 0` sample when the target is down).
    Sample(Sample),
    /// Cumulative keyspace-event counts per keyspace rule, read on a tick.
    KeyspaceCounts(KeyspaceCounts),
    /// A change of a target's connection state.
    Health(Health),
    /// A target appeared, changed labels, or went away: Sentinel groups add
    /// and remove nodes as the Sentinels see them.
    Target(TargetChange),
    /// A Sentinel event, once per incident however many Sentinels told it.
    Sentinel(SentinelNotice),
    /// A schedule rule fell due for a target.
    Schedule(ScheduleTick),
    /// A change a cluster source saw between two discoveries.
    Cluster(cluster::ClusterNotice),
}

impl Event {
    pub fn target(&self) -> &str {
        match self {
            Event::Sample(s) => &s.target,
            Event::KeyspaceCounts(k) => &k.target,
            Event::Health(h) => &h.target,
            Event::Target(t) => &t.target,
            Event::Sentinel(n) => &n.target,
            Event::Schedule(s) => &s.target,
            Event::Cluster(n) => &n.target,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub target: String,
    pub at: SystemTime,
    pub metrics: Metrics,
}

/// Counts never reset while the subscriber lives: the evaluator turns them
/// into windowed counts by differencing, so a tick can never double count.
#[derive(Debug, Clone)]
pub struct KeyspaceCounts {
    pub target: String,
    /// `(rule name, cumulative matched events)`. The names are shared
    /// with the counter that sends them: an emit allocates one `Vec`.
    pub counts: Vec<(std::sync::Arc<str>, u64)>,
}

#[derive(Debug, Clone)]
pub struct Health {
    pub target: String,
    pub up: bool,
    /// Why the target is down: the connection error, never a secret.
    pub reason: Option<String>,
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone)]
pub struct TargetChange {
    pub target: String,
    pub labels: BTreeMap<String, String>,
    pub present: bool,
}

#[derive(Debug, Clone)]
pub struct SentinelNotice {
    /// The node the event is about (`group/host:port`), or the group.
    pub target: String,
    pub group: String,
    pub event: sentinel::SentinelEvent,
    /// The Sentinel that told us first.
    pub sentinel: String,
    /// True when redops inferred the event on reconnecting to a Sentinel,
    /// because it was not listening when the event was published.
    pub reconciled: bool,
}

#[derive(Debug, Clone)]
pub struct ScheduleTick {
    pub target: String,
    pub rule: String,
    /// A run missed while redops was down, made up at start.
    pub catch_up: bool,
}
