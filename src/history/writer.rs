//! The writer thread: batches samples into one transaction a second, rolls
//! complete minutes and hours up, prunes what is past retention, and refits
//! the trends the event loop adds to samples.
//!
//! A thread rather than a task: every step is blocking SQLite work, and on a
//! thread of its own it can never hold up the runtime that runs detection.

use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::rollup::{HOUR_MS, MINUTE_MS, floor};
use super::store::{HistoryStore, SampleRow, SeriesKey, Tier};
use super::trend::{Point, TrendWindow, Trends};
use super::{PublishedTrends, Recorded};
use crate::store::StoreError;

/// How often samples are committed.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A minute is rolled up this long after it ends, so that a sample taken
/// just before the boundary and queued across it still counts.
const ROLLUP_GRACE_MS: i64 = 2_000;
/// Raw samples kept in memory when the database refuses writes, so a
/// short outage (a full disk being cleaned) loses nothing.
const MAX_PENDING: usize = 200_000;
/// The metrics a trend fit reads; see [`super::trend::TargetTrend::add`].
const TREND_INPUTS: [&str; 4] = ["used_memory", "connected_clients", "maxmemory", "maxclients"];

pub struct Writer {
    store: HistoryStore,
    window: TrendWindow,
    pending: Vec<SampleRow>,
    trends: Trends,
    published: PublishedTrends,
    /// Every series written or found at start: what pruning walks.
    series: BTreeSet<SeriesKey>,
    /// Targets whose series are all in `series`.
    targets: BTreeSet<String>,
    /// Raw samples before this are rolled into minutes.
    minutes_done: Option<i64>,
    /// Minutes before this are rolled into hours.
    hours_done: Option<i64>,
    next_prune_raw: i64,
    next_prune_rollups: i64,
}

impl Writer {
    /// Catches up on rollups left by the last run and seeds the trends from
    /// the history already kept, so a restart does not start them over.
    pub fn new(
        store: HistoryStore,
        window: TrendWindow,
        published: PublishedTrends,
        now_ms: i64,
    ) -> Result<Writer, StoreError> {
        let minutes_done = match store.newest(Tier::Minute)? {
            Some(last) => Some(last + MINUTE_MS),
            None => store.oldest(Tier::Raw)?.map(|t| floor(t, MINUTE_MS)),
        };
        let hours_done = match store.newest(Tier::Hour)? {
            Some(last) => Some(last + HOUR_MS),
            None => store.oldest(Tier::Minute)?.map(|t| floor(t, HOUR_MS)),
        };
        let series = store.series_keys()?.into_iter().collect();
        let mut w = Writer {
            series,
            targets: BTreeSet::new(),
            store,
            window,
            pending: Vec::new(),
            trends: Trends::new(),
            published,
            minutes_done,
            hours_done,
            next_prune_raw: now_ms,
            next_prune_rollups: now_ms,
        };
        w.roll_up(now_ms)?;
        w.seed_trends(now_ms)?;
        w.publish(now_ms);
        Ok(w)
    }

    fn seed_trends(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let from = now_ms - self.window.window.as_millis() as i64;
        for target in self.store.targets()? {
            let trend = self.trends.entry(target.clone()).or_default();
            for metric in TREND_INPUTS {
                for (tier, b) in self.store.series_by_tier(&target, metric, from, now_ms + 1)? {
                    trend.add(metric, Point::of_bucket(&b, tier.width_ms()));
                }
            }
        }
        Ok(())
    }

    /// Queues one sample for the next commit and feeds the trends.
    pub fn add(&mut self, r: Recorded) {
        let trend = self.trends.entry(r.target.clone()).or_default();
        for &(metric, value) in &r.values {
            trend.add(
                metric,
                Point {
                    at_ms: r.at_ms as f64,
                    value,
                    weight: 1.0,
                },
            );
        }
        if !self.targets.contains(&r.target) {
            self.targets.insert(r.target.clone());
            let every_metric = super::METRICS.iter().map(|m| (r.target.clone(), (*m).to_owned()));
            self.series.extend(every_metric);
        }
        if self.pending.len() + r.values.len() > MAX_PENDING {
            tracing::error!(
                dropped = r.values.len(),
                "History store refusing writes for too long: samples left out of history"
            );
            return;
        }
        self.pending
            .extend(r.values.into_iter().map(|(metric, value)| SampleRow {
                target: r.target.clone(),
                metric,
                at_ms: r.at_ms,
                value,
            }));
    }

    /// One flush: commit, roll up, prune when due, refit and publish trends.
    /// On a database error the samples stay queued for the next step.
    pub fn step(&mut self, now_ms: i64) -> Result<(), StoreError> {
        self.publish(now_ms);
        if !self.pending.is_empty() {
            self.store.insert_samples(&self.pending)?;
            self.pending.clear();
        }
        self.roll_up(now_ms)?;
        if now_ms >= self.next_prune_raw {
            let series: Vec<SeriesKey> = self.series.iter().cloned().collect();
            self.store.prune(&[Tier::Raw], &series, now_ms)?;
            self.next_prune_raw = now_ms + MINUTE_MS;
        }
        // Rollups age out a row a minute or an hour: once an hour will do.
        if now_ms >= self.next_prune_rollups {
            let series: Vec<SeriesKey> = self.series.iter().cloned().collect();
            self.store.prune(&[Tier::Minute, Tier::Hour], &series, now_ms)?;
            self.next_prune_rollups = now_ms + HOUR_MS;
        }
        Ok(())
    }

    fn roll_up(&mut self, now_ms: i64) -> Result<(), StoreError> {
        if self.minutes_done.is_none() {
            self.minutes_done = self.store.oldest(Tier::Raw)?.map(|t| floor(t, MINUTE_MS));
        }
        let minute_until = floor(now_ms - ROLLUP_GRACE_MS, MINUTE_MS);
        if let Some(from) = self.minutes_done.filter(|from| *from < minute_until) {
            self.store.roll_up(Tier::Raw, Tier::Minute, from, minute_until)?;
            self.minutes_done = Some(minute_until);
        }
        if self.hours_done.is_none() {
            self.hours_done = self.store.oldest(Tier::Minute)?.map(|t| floor(t, HOUR_MS));
        }
        let Some(minutes_done) = self.minutes_done else {
            return Ok(());
        };
        let hour_until = floor(minutes_done, HOUR_MS);
        if let Some(from) = self.hours_done.filter(|from| *from < hour_until) {
            self.store.roll_up(Tier::Minute, Tier::Hour, from, hour_until)?;
            self.hours_done = Some(hour_until);
        }
        Ok(())
    }

    fn publish(&mut self, now_ms: i64) {
        let oldest = now_ms - self.window.window.as_millis() as i64;
        let fitted: Vec<_> = self
            .trends
            .iter_mut()
            .map(|(target, trend)| {
                trend.trim(oldest);
                (target.clone(), trend.metrics(&self.window))
            })
            .collect();
        let mut published = self.published.write().unwrap_or_else(|e| e.into_inner());
        published.clear();
        published.extend(fitted);
    }
}

/// The running writer thread.
pub struct WriterHandle {
    thread: JoinHandle<()>,
}

impl WriterHandle {
    pub fn spawn(mut writer: Writer, rx: Receiver<Recorded>) -> WriterHandle {
        let thread = std::thread::Builder::new()
            .name("redops-history".into())
            .spawn(move || {
                let mut next = Instant::now() + FLUSH_EVERY;
                loop {
                    let closed = match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                        Ok(r) => {
                            writer.add(r);
                            false
                        }
                        Err(RecvTimeoutError::Timeout) => false,
                        Err(RecvTimeoutError::Disconnected) => true,
                    };
                    if closed || Instant::now() >= next {
                        if let Err(e) = writer.step(super::now_ms()) {
                            tracing::warn!(error = %e, queued = writer.pending.len(), "History write failed; retrying in a second");
                        }
                        next = Instant::now() + FLUSH_EVERY;
                    }
                    if closed {
                        break;
                    }
                }
            })
            .expect("spawning a thread only fails when the process is out of resources");
        WriterHandle { thread }
    }

    /// Waits for the last flush after every recorder is gone.
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("History writer panicked; the last second of samples may be missing");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MetricValue;
    use crate::store::Store;

    fn recorded(target: &str, at_ms: i64, used: f64) -> Recorded {
        Recorded {
            target: target.into(),
            at_ms,
            values: vec![("used_memory", used), ("maxmemory", 1_000_000.0), ("hit_ratio", 95.0)],
        }
    }

    #[test]
    fn samples_wait_in_memory_while_the_database_refuses_writes() {
        let shared = Store::in_memory();
        let store = HistoryStore::open(shared.clone()).unwrap();
        let t0 = 1_800_000_000_000;
        let mut w = Writer::new(store.clone(), TrendWindow::default(), PublishedTrends::default(), t0).unwrap();
        shared
            .conn()
            .execute_batch("ALTER TABLE history_raw RENAME TO broken")
            .unwrap();
        w.add(recorded("cache", t0, 1.0));
        assert!(w.step(t0 + 1_000).is_err());
        w.add(recorded("cache", t0 + 1_000, 2.0));
        assert!(w.step(t0 + 2_000).is_err());
        shared
            .conn()
            .execute_batch("ALTER TABLE broken RENAME TO history_raw")
            .unwrap();
        w.add(recorded("cache", t0 + 2_000, 3.0));
        w.step(t0 + 3_000).unwrap();
        let kept = store.series("cache", "used_memory", t0, t0 + 3_000).unwrap();
        let values: Vec<f64> = kept.iter().map(|b| b.avg).collect();
        assert_eq!(values, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn steps_commit_roll_up_and_fit_a_trend() {
        let store = HistoryStore::open(Store::in_memory()).unwrap();
        let published = PublishedTrends::default();
        let t0 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR_MS;
        let mut w = Writer::new(store.clone(), TrendWindow::default(), published.clone(), t0).unwrap();
        // 2 hours at one sample every 10 s, growing 1000 bytes a minute.
        for i in 0..720 {
            let at = t0 + i * 10_000;
            w.add(recorded("cache", at, 100_000.0 + 1000.0 * (i as f64) / 6.0));
            if i % 6 == 5 {
                w.step(at + 1).unwrap();
            }
        }
        w.step(t0 + 2 * HOUR_MS + ROLLUP_GRACE_MS).unwrap();
        let counts = store.row_counts().unwrap();
        assert_eq!(counts[1].1, 120 * 3, "every minute of 3 metrics rolled up: {counts:?}");
        assert_eq!(counts[2].1, 2 * 3, "both hours rolled up: {counts:?}");
        // Raw samples older than an hour were pruned.
        assert!(counts[0].1 <= 361 * 3, "{counts:?}");

        let trend = published.read().unwrap()["cache"].clone();
        let days = trend["memory_full_in_days"].as_f64().unwrap();
        let now_value = 100_000.0 + 1000.0 * 719.0 / 6.0;
        let expected = (1_000_000.0 - now_value) / (1000.0 * 1440.0);
        assert!((days - expected).abs() / expected < 0.05, "{days} vs {expected}");
        assert_eq!(trend.get("clients_full_in_days"), None::<&MetricValue>);

        // A restart resumes from the store: the trend is there at once.
        let again = PublishedTrends::default();
        Writer::new(store, TrendWindow::default(), again.clone(), t0 + 2 * HOUR_MS + 5_000).unwrap();
        let seeded = again.read().unwrap()["cache"]["memory_full_in_days"].as_f64().unwrap();
        assert!((seeded - expected).abs() / expected < 0.05, "{seeded} vs {expected}");
    }
}
