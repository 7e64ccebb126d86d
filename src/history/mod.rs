//! Sample history: a chosen set of numeric metrics of every sample, kept in
//! the state database at three resolutions (raw for an hour, 1-minute
//! rollups for 7 days, hourly for 90 days), and the trends fitted to it.
//!
//! ```text
//!  event loop ── Recorder::observe ──(bounded channel)──> writer thread
//!      ^                                                   │ every second: one transaction,
//!      └──── trend metrics (memory_full_in_days, ...) <────┘ rollups, pruning, trend fits
//! ```
//!
//! The event loop only copies numbers into a channel and reads the latest
//! trend metrics from a shared map: SQLite, rollups and regressions all run
//! on the writer thread, so history never delays detection. If the writer
//! falls behind, samples are dropped from history (counted), never from
//! evaluation.
//!
//! - [`store`]: the tables and the reads that merge their resolutions.
//! - [`rollup`]: the min/avg/max/last/count fold.
//! - [`trend`]: weighted least squares, growth per week, days until full.
//! - [`writer`]: the writer thread's one-step loop.

pub mod rollup;
pub mod store;
pub mod trend;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::UNIX_EPOCH;

use crate::event::{Event, Metrics, Sample};
pub use store::{HistoryStore, Tier};
pub use trend::TrendWindow;

/// The metrics kept in history, marked in the metric list of
/// `redis::metrics`.
pub use crate::event::metric_names::HISTORY_METRICS as METRICS;

/// Samples queued for the writer; at 16 metrics a sample this is minutes of
/// a large fleet.
const QUEUE: usize = 8192;

/// The numbers of one sample, on their way to the writer.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub target: String,
    pub at_ms: i64,
    pub values: Vec<(&'static str, f64)>,
}

impl Recorded {
    /// The kept metrics of `sample`; None when it has none (a Sentinel
    /// group's own sample, a down target's `redis_up = 0`).
    pub fn of(sample: &Sample) -> Option<Recorded> {
        let values: Vec<(&'static str, f64)> = METRICS
            .iter()
            .filter_map(|&name| Some((name, sample.metrics.get(name)?.as_f64()?)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        if values.is_empty() {
            return None;
        }
        let at_ms = sample.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Some(Recorded {
            target: sample.target.clone(),
            at_ms,
            values,
        })
    }
}

/// The latest trend metrics per target, written by the writer thread.
pub type PublishedTrends = Arc<RwLock<BTreeMap<String, Metrics>>>;

/// The event loop's end: hands samples to the writer, adds trend metrics to
/// samples before rules see them.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Recorded>,
    trends: PublishedTrends,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Records a sample and gives it its target's trend metrics. Other
    /// events pass untouched.
    pub fn observe(&self, event: &mut Event) {
        let Event::Sample(sample) = event else { return };
        let Some(recorded) = Recorded::of(sample) else { return };
        match self.tx.try_send(recorded) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "History writer behind: samples left out of history");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
        let trends = self.trends.read().unwrap_or_else(|e| e.into_inner());
        if let Some(metrics) = trends.get(&sample.target) {
            sample
                .metrics
                .extend(metrics.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }

    /// Samples left out of history because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Starts the writer thread over `store`. The thread flushes and stops when
/// every [`Recorder`] clone is dropped; [`writer::WriterHandle::join`] waits
/// for that.
pub fn spawn(
    store: HistoryStore,
    window: TrendWindow,
) -> Result<(Recorder, writer::WriterHandle), crate::store::StoreError> {
    let trends = PublishedTrends::default();
    let w = writer::Writer::new(store, window, trends.clone(), now_ms())?;
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let handle = writer::WriterHandle::spawn(w, rx);
    Ok((
        Recorder {
            tx,
            trends,
            dropped: Arc::default(),
        },
        handle,
    ))
}

/// The history store the engine writes: a connection of its own to the
/// state database, so that history writes never wait on the connection that
/// alerts and the outbox use; the shared store when the state directory
/// cannot be opened again (the engine then runs in memory).
pub fn open_for_engine(
    state_dir: &std::path::Path,
    shared: &crate::store::Store,
) -> Result<HistoryStore, crate::store::StoreError> {
    let own = crate::store::Store::open(state_dir).unwrap_or_else(|_| shared.clone());
    HistoryStore::open(own)
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MetricValue;

    fn sample_event(target: &str, metrics: &[(&str, MetricValue)]) -> Event {
        Event::Sample(Sample {
            target: target.into(),
            at: std::time::SystemTime::now(),
            metrics: metrics.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        })
    }

    #[test]
    fn stopping_commits_what_the_last_second_queued() {
        let store = HistoryStore::open(crate::store::Store::in_memory()).unwrap();
        let (recorder, writer) = spawn(store.clone(), TrendWindow::default()).unwrap();
        let started = std::time::Instant::now();
        let mut event = sample_event(
            "cache",
            &[
                ("used_memory", MetricValue::Num(1234.0)),
                ("role", MetricValue::Text("master".into())),
                ("db0_keys", MetricValue::Num(5.0)),
            ],
        );
        recorder.observe(&mut event);
        drop(recorder);
        writer.join();
        assert!(
            started.elapsed() < writer::FLUSH_EVERY,
            "joined before the periodic flush"
        );
        assert_eq!(
            store.latest("cache", "used_memory").unwrap().map(|(_, v)| v),
            Some(1234.0)
        );
        let kept: Vec<String> = store.series_keys().unwrap().into_iter().map(|(_, m)| m).collect();
        assert_eq!(kept, ["used_memory"], "text and per-database metrics are not kept");
    }

    #[test]
    fn samples_get_their_targets_trend_and_down_samples_nothing() {
        // No writer: the test plays it, publishing a trend for `cache`.
        let (tx, queued) = std::sync::mpsc::sync_channel(1);
        let recorder = Recorder {
            tx,
            trends: PublishedTrends::default(),
            dropped: Arc::default(),
        };
        let trend: Metrics = [("memory_full_in_days".to_owned(), MetricValue::Num(9.5))].into();
        recorder.trends.write().unwrap().insert("cache".into(), trend);

        let mut up = sample_event("cache", &[("used_memory", MetricValue::Num(1.0))]);
        recorder.observe(&mut up);
        let Event::Sample(up) = up else { unreachable!() };
        assert_eq!(up.metrics.get("memory_full_in_days"), Some(&MetricValue::Num(9.5)));

        let mut down = sample_event("cache", &[("redis_up", MetricValue::Num(0.0))]);
        recorder.observe(&mut down);
        let Event::Sample(down) = down else { unreachable!() };
        assert_eq!(down.metrics.len(), 1, "{:?}", down.metrics);

        let mut other = sample_event("jobs", &[("used_memory", MetricValue::Num(1.0))]);
        recorder.observe(&mut other);
        let Event::Sample(other) = other else { unreachable!() };
        assert!(!other.metrics.contains_key("memory_full_in_days"));
        // The queue holds one: the first sample is queued, the next counted.
        assert_eq!(queued.try_iter().count(), 1);
        assert_eq!(recorder.dropped(), 1);
    }
}
