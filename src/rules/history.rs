//! A short, bounded ring of past values per metric of one target, read by
//! the look-back functions (`delta`, `rate`, ...).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// At most this many points are kept per metric, whatever the retention.
const MAX_POINTS: usize = 2048;

#[derive(Debug, Default, Clone)]
pub struct History {
    retention: Duration,
    series: HashMap<String, VecDeque<(Instant, f64)>>,
}

impl History {
    pub fn new(retention: Duration) -> Self {
        History {
            retention,
            series: HashMap::new(),
        }
    }

    pub fn record(&mut self, metric: &str, at: Instant, value: f64) {
        if self.retention.is_zero() {
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
                .is_some_and(|(t, _)| at.duration_since(*t) > self.retention)
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
