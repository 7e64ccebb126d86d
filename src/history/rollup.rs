//! Rollups: many samples of one metric folded into one bucket of
//! min/avg/max/last and a count. The same fold turns raw samples into
//! 1-minute buckets and 1-minute buckets into hourly ones, and groups
//! buckets again when a chart asks for fewer points.

use serde::Serialize;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;

/// One metric over one interval starting at `at_ms`. A raw sample is a
/// bucket of count 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    pub at_ms: i64,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub last: f64,
    pub count: u64,
}

impl Bucket {
    pub fn sample(at_ms: i64, value: f64) -> Bucket {
        Bucket {
            at_ms,
            min: value,
            avg: value,
            max: value,
            last: value,
            count: 1,
        }
    }

    /// Folds `later` (which starts no earlier) into `self`, weighting the
    /// averages by their counts so an hour is the mean of its samples, not
    /// of its minutes.
    pub fn merge(&mut self, later: &Bucket) {
        let total = self.count + later.count;
        self.avg = (self.avg * self.count as f64 + later.avg * later.count as f64) / total as f64;
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self.last = later.last;
        self.count = total;
    }
}

/// The start of the `width_ms` interval holding `at_ms`.
pub fn floor(at_ms: i64, width_ms: i64) -> i64 {
    at_ms.div_euclid(width_ms) * width_ms
}

/// Groups time-ordered buckets into intervals of `width_ms`, each keyed by
/// its interval's start.
pub fn regroup(buckets: impl IntoIterator<Item = Bucket>, width_ms: i64) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for b in buckets {
        let start = floor(b.at_ms, width_ms);
        match out.last_mut() {
            Some(open) if open.at_ms == start => open.merge(&b),
            _ => out.push(Bucket { at_ms: start, ..b }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_averages_its_samples_not_its_minutes() {
        let minutes = [
            Bucket {
                count: 1,
                ..Bucket::sample(0, 10.0)
            },
            Bucket {
                at_ms: MINUTE_MS,
                min: 1.0,
                avg: 2.0,
                max: 3.0,
                last: 3.0,
                count: 3,
            },
        ];
        let hour = regroup(minutes, HOUR_MS);
        assert_eq!(hour.len(), 1);
        assert_eq!(hour[0].at_ms, 0);
        assert_eq!(hour[0].count, 4);
        assert_eq!(hour[0].avg, (10.0 + 6.0) / 4.0);
        assert_eq!((hour[0].min, hour[0].max, hour[0].last), (1.0, 10.0, 3.0));
    }

    #[test]
    fn samples_fall_into_the_minute_that_holds_them() {
        let samples = [(59_999, 1.0), (60_000, 2.0), (119_999, 4.0), (120_000, 8.0)];
        let minutes = regroup(samples.map(|(t, v)| Bucket::sample(t, v)), MINUTE_MS);
        let starts: Vec<i64> = minutes.iter().map(|b| b.at_ms).collect();
        assert_eq!(starts, [0, 60_000, 120_000]);
        assert_eq!((minutes[1].avg, minutes[1].last, minutes[1].count), (3.0, 4.0, 2));
    }
}
