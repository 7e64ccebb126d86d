//! Trends by least-squares linear regression: how fast a metric grows, and
//! when at that pace it reaches its limit.
//!
//! The fit is weighted by each point's sample count, so a 1-minute rollup of
//! twelve samples counts as much as those twelve samples would: the history
//! can mix rollups and raw samples without the recent raw ones dominating.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::rollup::{Bucket, MINUTE_MS, floor};
use crate::event::{MetricValue, Metrics};

const DAY_MS: f64 = 86_400_000.0;

/// A fitted line: `value(t) = value_at_end + slope_per_day * (t - end) / 1 day`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub slope_per_day: f64,
    /// The line's value at the last point's time: the current level with the
    /// noise of the last sample smoothed out.
    pub value_at_end: f64,
    /// From the first point to the last.
    pub span_ms: f64,
}

impl Fit {
    pub fn growth_per_week(&self) -> f64 {
        self.slope_per_day * 7.0
    }

    /// Days until the line reaches `limit`: absent when there is no limit
    /// (`limit <= 0`, e.g. `maxmemory 0`) or the line is flat or falling; 0
    /// when it is already there.
    pub fn days_until(&self, limit: f64) -> Option<f64> {
        if limit <= 0.0 || self.slope_per_day <= 0.0 {
            return None;
        }
        Some(((limit - self.value_at_end) / self.slope_per_day).max(0.0))
    }
}

/// A point of a series: mean time of its samples, mean value, how many
/// samples it stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at_ms: f64,
    pub value: f64,
    pub weight: f64,
}

impl Point {
    /// A rollup's samples are taken to be spread evenly over its interval.
    pub fn of_bucket(b: &Bucket, width_ms: i64) -> Point {
        Point {
            at_ms: b.at_ms as f64 + width_ms as f64 / 2.0,
            value: b.avg,
            weight: b.count as f64,
        }
    }
}

/// Weighted least squares over time-ordered `points`. None with fewer than
/// two distinct times.
pub fn fit(points: &[Point]) -> Option<Fit> {
    let (first, last) = (points.first()?, points.last()?);
    let weight: f64 = points.iter().map(|p| p.weight).sum();
    if weight <= 0.0 {
        return None;
    }
    // Times in days from the last point keep the sums well conditioned.
    let x = |p: &Point| (p.at_ms - last.at_ms) / DAY_MS;
    let mean_x = points.iter().map(|p| p.weight * x(p)).sum::<f64>() / weight;
    let mean_y = points.iter().map(|p| p.weight * p.value).sum::<f64>() / weight;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for p in points {
        let dx = x(p) - mean_x;
        sxy += p.weight * dx * (p.value - mean_y);
        sxx += p.weight * dx * dx;
    }
    if sxx <= f64::EPSILON * weight {
        return None;
    }
    let slope_per_day = sxy / sxx;
    Some(Fit {
        slope_per_day,
        value_at_end: mean_y - slope_per_day * mean_x,
        span_ms: last.at_ms - first.at_ms,
    })
}

/// How much history a trend needs and looks at.
#[derive(Debug, Clone, Copy)]
pub struct TrendWindow {
    /// Points older than this fall out of the fit.
    pub window: Duration,
    /// Below this span there is no trend: a few minutes of a daily cycle
    /// would extrapolate to nonsense.
    pub min_span: Duration,
}

impl Default for TrendWindow {
    fn default() -> Self {
        TrendWindow {
            window: Duration::from_secs(24 * 3600),
            min_span: Duration::from_secs(3600),
        }
    }
}

/// One metric's recent history as 1-minute points, the newest possibly
/// still filling.
#[derive(Debug, Default)]
struct Series {
    minutes: VecDeque<(i64, Accumulator)>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Accumulator {
    time_sum: f64,
    value_sum: f64,
    count: f64,
}

impl Series {
    fn add(&mut self, point: Point) {
        let minute = floor(point.at_ms as i64, MINUTE_MS);
        let acc = match self.minutes.back_mut() {
            Some((m, acc)) if *m == minute => acc,
            Some((m, _)) if *m > minute => return, // late: the fit has moved on
            _ => {
                self.minutes.push_back((minute, Accumulator::default()));
                &mut self.minutes.back_mut().expect("just pushed").1
            }
        };
        acc.time_sum += point.at_ms * point.weight;
        acc.value_sum += point.value * point.weight;
        acc.count += point.weight;
    }

    fn trim(&mut self, oldest_ms: i64) {
        while self.minutes.front().is_some_and(|(m, _)| *m < oldest_ms) {
            self.minutes.pop_front();
        }
    }

    fn fit(&self, min_span: Duration) -> Option<Fit> {
        let points: Vec<Point> = self
            .minutes
            .iter()
            .map(|(_, a)| Point {
                at_ms: a.time_sum / a.count,
                value: a.value_sum / a.count,
                weight: a.count,
            })
            .collect();
        fit(&points).filter(|f| f.span_ms >= min_span.as_millis() as f64)
    }
}

/// The memory and connection trends of one target.
#[derive(Debug, Default)]
pub struct TargetTrend {
    used_memory: Series,
    connected_clients: Series,
    maxmemory: f64,
    maxclients: f64,
}

impl TargetTrend {
    /// Takes the metrics a trend needs from one sample or rollup.
    pub fn add(&mut self, metric: &str, point: Point) {
        match metric {
            "used_memory" => self.used_memory.add(point),
            "connected_clients" => self.connected_clients.add(point),
            "maxmemory" => self.maxmemory = point.value,
            "maxclients" => self.maxclients = point.value,
            _ => {}
        }
    }

    pub fn trim(&mut self, oldest_ms: i64) {
        self.used_memory.trim(oldest_ms);
        self.connected_clients.trim(oldest_ms);
    }

    /// The trend metrics this history supports; none until it spans
    /// `min_span`.
    pub fn metrics(&self, window: &TrendWindow) -> Metrics {
        let mut out = Metrics::new();
        let mut put = |name: &str, v: Option<f64>| {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                out.insert(name.to_owned(), MetricValue::Num(v));
            }
        };
        if let Some(f) = self.used_memory.fit(window.min_span) {
            put("used_memory_growth_per_week", Some(f.growth_per_week()));
            put("memory_full_in_days", f.days_until(self.maxmemory));
            let pct = (self.maxmemory > 0.0).then(|| f.growth_per_week() / self.maxmemory * 100.0);
            put("memory_growth_pct_per_week", pct);
        }
        if let Some(f) = self.connected_clients.fit(window.min_span) {
            put("connected_clients_growth_per_week", Some(f.growth_per_week()));
            put("clients_full_in_days", f.days_until(self.maxclients));
        }
        out
    }
}

/// Every target's trend, by target name.
pub type Trends = BTreeMap<String, TargetTrend>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::metric_names::TREND_METRICS;

    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

    fn line(start_ms: f64, step_ms: f64, n: usize, start: f64, per_day: f64) -> Vec<Point> {
        (0..n)
            .map(|i| {
                let at_ms = start_ms + step_ms * i as f64;
                Point {
                    at_ms,
                    value: start + per_day * (at_ms - start_ms) / DAY_MS,
                    weight: 1.0,
                }
            })
            .collect()
    }

    /// A deterministic wobble so the test does not depend on a random seed.
    fn noise(i: usize, amplitude: f64) -> f64 {
        ((i * 7919) % 1000) as f64 / 1000.0 * 2.0 * amplitude - amplitude
    }

    #[test]
    fn a_straight_line_gives_its_slope_and_the_day_it_reaches_the_limit() {
        // 1 GiB growing 50 MiB a day toward 4 GiB, sampled every 5 s for 6 h.
        let per_day = 50.0 * 1024.0 * 1024.0;
        let points = line(1.7e12, 5_000.0, 6 * 720, GIB, per_day);
        let f = fit(&points).unwrap();
        assert!((f.slope_per_day - per_day).abs() / per_day < 1e-9, "{f:?}");
        let now = GIB + per_day * 0.25;
        let expected = (4.0 * GIB - now) / per_day;
        let days = f.days_until(4.0 * GIB).unwrap();
        assert!((days - expected).abs() / expected < 1e-6, "{days} vs {expected}");
    }

    #[test]
    fn a_noisy_series_lands_within_five_percent() {
        // Noise of ±20 MiB on a 100 MiB/day climb over 12 h.
        let per_day = 100.0 * 1024.0 * 1024.0;
        let mut points = line(0.0, 10_000.0, 12 * 360, 2.0 * GIB, per_day);
        for (i, p) in points.iter_mut().enumerate() {
            p.value += noise(i, 20.0 * 1024.0 * 1024.0);
        }
        let f = fit(&points).unwrap();
        let expected = (8.0 * GIB - (2.0 * GIB + per_day * 0.5)) / per_day;
        let days = f.days_until(8.0 * GIB).unwrap();
        assert!((days - expected).abs() / expected < 0.05, "{days} vs {expected}");
    }

    #[test]
    fn no_limit_or_no_growth_means_never_full() {
        let rising = fit(&line(0.0, 60_000.0, 100, 10.0, 5.0)).unwrap();
        assert_eq!(rising.days_until(0.0), None, "maxmemory 0: no limit");
        let flat = fit(&line(0.0, 60_000.0, 100, 10.0, 0.0)).unwrap();
        assert_eq!(flat.days_until(100.0), None);
        let falling = fit(&line(0.0, 60_000.0, 100, 10.0, -5.0)).unwrap();
        assert_eq!(falling.days_until(100.0), None);
        let past = fit(&line(0.0, 60_000.0, 100, 200.0, 5.0)).unwrap();
        assert_eq!(past.days_until(100.0), Some(0.0));
    }

    #[test]
    fn one_point_or_one_instant_has_no_trend() {
        assert_eq!(fit(&[]), None);
        let p = Point {
            at_ms: 5.0,
            value: 1.0,
            weight: 3.0,
        };
        assert_eq!(fit(&[p, Point { value: 9.0, ..p }]), None);
    }

    #[test]
    fn rollups_and_raw_samples_weigh_what_their_samples_weigh() {
        // Two hours as 1-minute rollups of 12 samples, then 60 raw samples:
        // the same line either way.
        let per_day = 1000.0;
        let value = |t: f64| 50.0 + per_day * t / DAY_MS;
        let mut points: Vec<Point> = (0..120)
            .map(|m| {
                let b = Bucket {
                    avg: value(m as f64 * 60_000.0 + 30_000.0),
                    count: 12,
                    ..Bucket::sample(m * 60_000, 0.0)
                };
                Point::of_bucket(&b, MINUTE_MS)
            })
            .collect();
        points.extend(line(7_200_000.0, 5_000.0, 60, value(7_200_000.0), per_day));
        let f = fit(&points).unwrap();
        assert!((f.slope_per_day - per_day).abs() / per_day < 1e-6, "{f:?}");
    }

    #[test]
    fn a_target_trend_needs_its_minimum_span_and_a_limit() {
        let window = TrendWindow::default();
        let mut t = TargetTrend::default();
        t.add(
            "maxmemory",
            Point {
                at_ms: 0.0,
                value: 1000.0,
                weight: 1.0,
            },
        );
        t.add(
            "maxclients",
            Point {
                at_ms: 0.0,
                value: 0.0,
                weight: 1.0,
            },
        );
        // 10 per hour: reaches 1000 from 100 in 90 hours.
        for p in line(0.0, 5_000.0, 12 * 30, 100.0, 240.0) {
            t.add("used_memory", p);
            t.add("connected_clients", p);
        }
        assert!(t.metrics(&window).is_empty(), "30 minutes is short of the 1 h minimum");
        for p in line(1_800_000.0, 5_000.0, 12 * 90, 105.0, 240.0) {
            t.add("used_memory", p);
            t.add("connected_clients", p);
        }
        let m = t.metrics(&window);
        let num = |k: &str| m.get(k).and_then(MetricValue::as_f64);
        let days = num("memory_full_in_days").unwrap();
        let expected = (1000.0 - (100.0 + 240.0 * 2.0 / 24.0)) / 240.0;
        assert!((days - expected).abs() / expected < 0.01, "{days} vs {expected}");
        assert!((num("used_memory_growth_per_week").unwrap() - 1680.0).abs() < 1.0);
        assert!((num("memory_growth_pct_per_week").unwrap() - 168.0).abs() < 0.1);
        assert_eq!(num("clients_full_in_days"), None, "maxclients unknown");
        assert!(m.keys().all(|k| TREND_METRICS.contains(&k.as_str())), "{m:?}");
        assert!(num("connected_clients_growth_per_week").is_some());
    }
}
