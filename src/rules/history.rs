//! A short, bounded ring of past values per metric of one target, read by
//! the look-back functions (`delta`, `rate`, ...).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Rule;
use super::expr::HISTORY_FUNCTIONS;

/// At most this many points are kept per metric, whatever the retention.
const MAX_POINTS: usize = 2048;

/// Which metrics to keep, and for how long: what the loaded rules' look-back
/// calls need ([`history_retention`], [`history_metrics`]).
#[derive(Debug, Default, Clone)]
pub struct Needs {
    pub retention: Duration,
    /// `None`: every metric.
    pub metrics: Option<Arc<HashSet<String>>>,
}

#[derive(Debug, Default, Clone)]
pub struct History {
    needs: Needs,
    series: HashMap<String, VecDeque<(Instant, f64)>>,
}

impl History {
    /// Keeps every metric for `retention`.
    pub fn new(retention: Duration) -> Self {
        Self::with_needs(Needs {
            retention,
            metrics: None,
        })
    }

    pub fn with_needs(needs: Needs) -> Self {
        History {
            needs,
            series: HashMap::new(),
        }
    }

    /// New rules need other metrics or a longer look-back: series nobody
    /// reads are dropped, the others kept.
    pub fn set_needs(&mut self, needs: Needs) {
        if let Some(only) = &needs.metrics {
            self.series.retain(|metric, _| only.contains(metric));
        }
        self.needs = needs;
    }

    pub fn record(&mut self, metric: &str, at: Instant, value: f64) {
        if self.needs.retention.is_zero() || self.needs.metrics.as_ref().is_some_and(|m| !m.contains(metric)) {
            return;
        }
        let ring = match self.series.get_mut(metric) {
            Some(r) => r,
            None => self.series.entry(metric.to_owned()).or_default(),
        };
        ring.push_back((at, value));
        while ring.len() > MAX_POINTS
            || ring
                .front()
                .is_some_and(|(t, _)| at.duration_since(*t) > self.needs.retention)
        {
            ring.pop_front();
        }
    }

    /// The points within `window` before `now`, oldest first.
    pub fn window(&self, metric: &str, now: Instant, window: Duration) -> Option<Vec<(Instant, f64)>> {
        let ring = self.series.get(metric)?;
        let points: Vec<_> = ring
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) <= window)
            .copied()
            .collect();
        (!points.is_empty()).then_some(points)
    }
}

/// The metrics the look-back functions of `rules` read (their first
/// argument, a string literal): only those need a history. `None` when a
/// call names its metric some other way, so every metric is kept.
pub fn history_metrics(rules: &[Arc<Rule>]) -> Option<HashSet<String>> {
    let mut metrics = HashSet::new();
    for rule in rules {
        for text in rule.expression_texts() {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            for f in HISTORY_FUNCTIONS {
                for call in compact.split(&format!("{f}(")).skip(1) {
                    let name = call.strip_prefix('"')?.split('"').next()?;
                    metrics.insert(name.to_owned());
                }
            }
        }
    }
    Some(metrics)
}

/// How far back metric history must reach for the rules' look-back
/// functions: the longest window they name, zero when none looks back.
pub fn history_retention(rules: &[Arc<Rule>]) -> Duration {
    const DEFAULT: Duration = Duration::from_secs(600);
    let mut longest = Duration::ZERO;
    for rule in rules {
        for text in rule.expression_texts() {
            // Whitespace is legal between a function and its `(`.
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            if !HISTORY_FUNCTIONS.iter().any(|f| compact.contains(&format!("{f}("))) {
                continue;
            }
            // Window arguments are string literals: take the longest that parses.
            let windows = text
                .split('"')
                .skip(1)
                .step_by(2)
                .filter_map(|lit| humantime::parse_duration(lit).ok());
            longest = longest.max(windows.max().unwrap_or(DEFAULT));
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_retention_window() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(30));
        for i in 0..10 {
            h.record("m", t0 + Duration::from_secs(i * 10), i as f64);
        }
        let now = t0 + Duration::from_secs(90);
        let all = h.window("m", now, Duration::from_secs(3600)).unwrap();
        assert_eq!(all.first().unwrap().1, 6.0);
        assert!(
            History::new(Duration::ZERO)
                .window("m", now, Duration::from_secs(1))
                .is_none()
        );
    }
}
