//! The history tables in the state database: raw samples for an hour,
//! 1-minute rollups for 7 days, hourly rollups for 90 days.
//!
//! Each table is keyed `(target, metric, at_ms)` without a rowid, so a
//! chart's range read is one index walk and a row costs its columns and
//! little else. Reads merge the tiers: the finest tier that covers a moment
//! answers for it.

use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use super::rollup::{Bucket, HOUR_MS, MINUTE_MS, floor, regroup};
use crate::store::{Store, StoreError};

/// The three resolutions, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Raw,
    Minute,
    Hour,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Raw, Tier::Minute, Tier::Hour];

    fn table(self) -> &'static str {
        match self {
            Tier::Raw => "history_raw",
            Tier::Minute => "history_minute",
            Tier::Hour => "history_hour",
        }
    }

    /// How long rows of this tier are kept.
    pub fn retention(self) -> Duration {
        match self {
            Tier::Raw => Duration::from_secs(3600),
            Tier::Minute => Duration::from_secs(7 * 86_400),
            Tier::Hour => Duration::from_secs(90 * 86_400),
        }
    }

    /// The interval one row covers (0: a single sample).
    pub fn width_ms(self) -> i64 {
        match self {
            Tier::Raw => 0,
            Tier::Minute => MINUTE_MS,
            Tier::Hour => HOUR_MS,
        }
    }
}

/// A series: `(target, metric)`.
pub type SeriesKey = (String, String);

/// One raw sample of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    pub target: String,
    pub metric: &'static str,
    pub at_ms: i64,
    pub value: f64,
}

/// Reads and writes the history tables. Cheap to clone.
#[derive(Clone)]
pub struct HistoryStore {
    store: Store,
}

impl HistoryStore {
    /// The tables are made by the store's migrations.
    pub fn open(store: Store) -> Result<HistoryStore, StoreError> {
        Ok(HistoryStore { store })
    }

    /// Writes a batch of raw samples in one transaction.
    pub fn insert_samples(&self, rows: &[SampleRow]) -> Result<(), StoreError> {
        let mut conn = self.store.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO history_raw (target, metric, at_ms, value) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in rows {
                insert.execute(params![r.target, r.metric, r.at_ms, r.value])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Writes rollups of one metric (the writer's, or a synthetic series
    /// seeded by a test or an import).
    pub fn insert_buckets(&self, tier: Tier, target: &str, metric: &str, buckets: &[Bucket]) -> Result<(), StoreError> {
        let mut conn = self.store.conn();
        let tx = conn.transaction()?;
        insert_buckets(&tx, tier, target, metric, buckets)?;
        tx.commit()?;
        Ok(())
    }

    /// Rolls `[from_ms, until_ms)` of `source` up into `into` (raw into
    /// minutes, minutes into hours). Idempotent: a rerun replaces the rows.
    pub fn roll_up(&self, source: Tier, into: Tier, from_ms: i64, until_ms: i64) -> Result<usize, StoreError> {
        let mut conn = self.store.conn();
        let tx = conn.transaction()?;
        let mut written = 0;
        {
            let rows = read_range(&tx, source, None, from_ms, until_ms)?;
            let mut start = 0;
            while start < rows.len() {
                let (target, metric) = (&rows[start].0, &rows[start].1);
                let end = start
                    + rows[start..]
                        .iter()
                        .take_while(|r| &r.0 == target && &r.1 == metric)
                        .count();
                let buckets = regroup(rows[start..end].iter().map(|r| r.2), into.width_ms());
                insert_buckets(&tx, into, target, metric, &buckets)?;
                written += buckets.len();
                start = end;
            }
        }
        tx.commit()?;
        Ok(written)
    }

    /// Deletes, from each series, what each tier no longer keeps; returns
    /// the rows deleted. Each delete walks the primary key from its series'
    /// oldest row, so it costs the rows deleted, not the table's size: the
    /// write lock is held for milliseconds even with weeks of history.
    pub fn prune(&self, tiers: &[Tier], series: &[SeriesKey], now_ms: i64) -> Result<usize, StoreError> {
        let mut conn = self.store.conn();
        let tx = conn.transaction()?;
        let mut deleted = 0;
        for tier in tiers {
            let cutoff = now_ms - tier.retention().as_millis() as i64;
            let mut delete = tx.prepare_cached(&format!(
                "DELETE FROM {} WHERE target = ?1 AND metric = ?2 AND at_ms < ?3",
                tier.table()
            ))?;
            for (target, metric) in series {
                deleted += delete.execute(params![target, metric, cutoff])?;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Every series with rows in any tier. Reads every table: for start-up,
    /// not for a loop.
    pub fn series_keys(&self) -> Result<Vec<SeriesKey>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare(
            "SELECT DISTINCT target, metric FROM history_raw UNION SELECT DISTINCT target, metric FROM history_minute
             UNION SELECT DISTINCT target, metric FROM history_hour ORDER BY 1, 2",
        )?;
        let keys = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(keys)
    }

    /// The newest row's time in `tier`, if any.
    pub fn newest(&self, tier: Tier) -> Result<Option<i64>, StoreError> {
        self.bound(tier, "max")
    }

    /// The oldest row's time in `tier`, if any.
    pub fn oldest(&self, tier: Tier) -> Result<Option<i64>, StoreError> {
        self.bound(tier, "min")
    }

    fn bound(&self, tier: Tier, which: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.store.conn();
        let sql = format!("SELECT {which}(at_ms) FROM {}", tier.table());
        Ok(conn.query_row(&sql, [], |r| r.get::<_, Option<i64>>(0))?)
    }

    /// One metric of one target over `[from_ms, to_ms)`, oldest first, at the
    /// finest resolution kept for each moment.
    pub fn series(&self, target: &str, metric: &str, from_ms: i64, to_ms: i64) -> Result<Vec<Bucket>, StoreError> {
        Ok(self
            .series_by_tier(target, metric, from_ms, to_ms)?
            .into_iter()
            .map(|(_, b)| b)
            .collect())
    }

    /// [`HistoryStore::series`] with the tier each bucket comes from.
    pub fn series_by_tier(
        &self,
        target: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(Tier, Bucket)>, StoreError> {
        let conn = self.store.conn();
        let mut tiers = Vec::new();
        // A coarser row counts only where no finer data exists: it must
        // end before the finer tier's first row (or its interval).
        let mut covered_from = to_ms;
        for tier in Tier::ALL {
            let rows: Vec<(Tier, Bucket)> = read_range(&conn, tier, Some((target, metric)), from_ms, to_ms)?
                .into_iter()
                .map(|r| (tier, r.2))
                .filter(|(_, b)| b.at_ms + tier.width_ms() <= covered_from)
                .collect();
            if let Some((_, first)) = rows.first() {
                covered_from = floor(first.at_ms, tier.width_ms().max(1));
            }
            tiers.push(rows);
        }
        Ok(tiers.into_iter().rev().flatten().collect())
    }

    /// The least-squares trend of one metric over `[from_ms, to_ms)`, from
    /// every tier; `None` with under `min_span_ms` of history.
    pub fn trend(
        &self,
        target: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
        min_span_ms: f64,
    ) -> Result<Option<super::trend::Fit>, StoreError> {
        let points: Vec<super::trend::Point> = self
            .series_by_tier(target, metric, from_ms, to_ms)?
            .iter()
            .map(|(tier, b)| super::trend::Point::of_bucket(b, tier.width_ms()))
            .collect();
        Ok(super::trend::fit(&points).filter(|f| f.span_ms >= min_span_ms))
    }

    /// The most recent value of one metric, with its time.
    pub fn latest(&self, target: &str, metric: &str) -> Result<Option<(i64, f64)>, StoreError> {
        let conn = self.store.conn();
        let mut best: Option<(i64, f64)> = None;
        for tier in Tier::ALL {
            let sql = match tier {
                Tier::Raw => "SELECT at_ms, value FROM history_raw",
                Tier::Minute => "SELECT at_ms, last FROM history_minute",
                Tier::Hour => "SELECT at_ms, last FROM history_hour",
            };
            let row = conn
                .query_row(
                    &format!("{sql} WHERE target = ?1 AND metric = ?2 ORDER BY at_ms DESC LIMIT 1"),
                    params![target, metric],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)),
                )
                .optional()?;
            // A coarser tier answers only for a time after the finer
            // tier's newest sample (seeded rollups, a pruned tier).
            if let Some(row) = row
                && best.is_none_or(|b| row.0 > b.0)
            {
                best = Some(row);
            }
        }
        Ok(best)
    }

    /// Every target with history, sorted.
    pub fn targets(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare(
            "SELECT target FROM history_raw UNION SELECT target FROM history_minute
             UNION SELECT target FROM history_hour ORDER BY target",
        )?;
        let names = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(names)
    }

    /// Rows held per tier, for sizing and `/metrics`.
    pub fn row_counts(&self) -> Result<[(Tier, u64); 3], StoreError> {
        let conn = self.store.conn();
        let count = |tier: Tier| -> Result<(Tier, u64), StoreError> {
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", tier.table()), [], |r| r.get(0))?;
            Ok((tier, n as u64))
        };
        Ok([count(Tier::Raw)?, count(Tier::Minute)?, count(Tier::Hour)?])
    }
}

fn insert_buckets(
    conn: &rusqlite::Connection,
    tier: Tier,
    target: &str,
    metric: &str,
    buckets: &[Bucket],
) -> Result<(), StoreError> {
    assert_ne!(tier, Tier::Raw, "raw samples are written with insert_samples");
    let mut insert = conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {} (target, metric, at_ms, min, avg, max, last, count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        tier.table()
    ))?;
    for b in buckets {
        insert.execute(params![
            target,
            metric,
            b.at_ms,
            b.min,
            b.avg,
            b.max,
            b.last,
            b.count as i64
        ])?;
    }
    Ok(())
}

/// Rows of `tier` in `[from_ms, to_ms)`, ordered by target, metric, time;
/// all pairs, or one.
fn read_range(
    conn: &rusqlite::Connection,
    tier: Tier,
    pair: Option<(&str, &str)>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(String, String, Bucket)>, StoreError> {
    let columns = match tier {
        Tier::Raw => "target, metric, at_ms, value, value, value, value, 1",
        _ => "target, metric, at_ms, min, avg, max, last, count",
    };
    let filter = if pair.is_some() {
        "target = ?3 AND metric = ?4 AND"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {columns} FROM {} WHERE {filter} at_ms >= ?1 AND at_ms < ?2 ORDER BY target, metric, at_ms",
        tier.table()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let map = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            Bucket {
                at_ms: r.get(2)?,
                min: r.get(3)?,
                avg: r.get(4)?,
                max: r.get(5)?,
                last: r.get(6)?,
                count: r.get::<_, i64>(7)? as u64,
            },
        ))
    };
    let rows = match pair {
        Some((target, metric)) => stmt.query_map(params![from_ms, to_ms, target, metric], map)?,
        None => stmt.query_map(params![from_ms, to_ms], map)?,
    };
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> HistoryStore {
        HistoryStore::open(Store::in_memory()).unwrap()
    }

    fn raw(target: &str, metric: &'static str, at_ms: i64, value: f64) -> SampleRow {
        SampleRow {
            target: target.into(),
            metric,
            at_ms,
            value,
        }
    }

    #[test]
    fn raw_samples_roll_up_into_minutes_and_minutes_into_hours() {
        let h = store();
        let rows: Vec<SampleRow> = (0..240)
            .flat_map(|i| {
                [
                    raw("cache", "used_memory", i * 30_000, i as f64),
                    raw("jobs", "used_memory", i * 30_000, 1.0),
                ]
            })
            .collect();
        h.insert_samples(&rows).unwrap();
        // Two hours of 30 s samples: 120 minutes for each target.
        assert_eq!(h.roll_up(Tier::Raw, Tier::Minute, 0, 2 * HOUR_MS).unwrap(), 240);
        assert_eq!(h.roll_up(Tier::Minute, Tier::Hour, 0, 2 * HOUR_MS).unwrap(), 4);
        let hours = h.series("cache", "used_memory", 0, 2 * HOUR_MS).unwrap();
        // series prefers raw where raw exists: drop raw to see the hours.
        assert_eq!(hours.len(), 240);
        let keys = h.series_keys().unwrap();
        assert_eq!(keys.len(), 2, "{keys:?}");
        h.prune(&[Tier::Raw], &keys, 3 * HOUR_MS).unwrap();
        h.prune(&[Tier::Minute], &keys, 7 * 86_400_000 + 2 * HOUR_MS).unwrap();
        let hours = h.series("cache", "used_memory", 0, 2 * HOUR_MS).unwrap();
        assert_eq!(hours.len(), 2);
        assert_eq!(hours[0].count, 120);
        assert_eq!(hours[0].avg, 59.5);
        assert_eq!((hours[1].min, hours[1].max, hours[1].last), (120.0, 239.0, 239.0));
    }

    #[test]
    fn series_uses_the_finest_tier_for_each_moment_without_double_counting() {
        let h = store();
        // Hourly rollups for hours 0..3, minutes for hour 2 onwards, raw for
        // the last 10 minutes of hour 3.
        let bucket = |at_ms, count| Bucket {
            count,
            ..Bucket::sample(at_ms, 1.0)
        };
        let hours: Vec<Bucket> = (0..3).map(|i| bucket(i * HOUR_MS, 720)).collect();
        let minutes: Vec<Bucket> = (120..240).map(|i| bucket(i * MINUTE_MS, 12)).collect();
        h.insert_buckets(Tier::Hour, "c", "m", &hours).unwrap();
        h.insert_buckets(Tier::Minute, "c", "m", &minutes).unwrap();
        let raws: Vec<SampleRow> = (0..120)
            .map(|i| raw("c", "m", 230 * MINUTE_MS + i * 5_000, 1.0))
            .collect();
        h.insert_samples(&raws).unwrap();
        let s = h.series("c", "m", 0, 4 * HOUR_MS).unwrap();
        let samples: u64 = s.iter().map(|b| b.count).sum();
        // 2 hours of hourly rows, 110 minutes, 120 raw samples.
        assert_eq!(samples, 2 * 720 + 110 * 12 + 120);
        assert!(s.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        assert_eq!(h.latest("c", "m").unwrap(), Some((230 * MINUTE_MS + 119 * 5_000, 1.0)));
        assert_eq!(h.targets().unwrap(), ["c"]);
    }

    #[test]
    fn prune_keeps_each_tier_for_its_retention() {
        let h = store();
        let now = 100 * 86_400_000;
        let at = |ago: Duration| now - ago.as_millis() as i64;
        h.insert_samples(&[
            raw("c", "m", at(Duration::from_secs(3599)), 1.0),
            raw("c", "m", at(Duration::from_secs(3601)), 1.0),
        ])
        .unwrap();
        for tier in [Tier::Minute, Tier::Hour] {
            let keep = Bucket::sample(at(tier.retention() - Duration::from_secs(1)), 1.0);
            let drop = Bucket::sample(at(tier.retention() + Duration::from_secs(1)), 1.0);
            h.insert_buckets(tier, "c", "m", &[drop, keep]).unwrap();
        }
        let keys = h.series_keys().unwrap();
        assert_eq!(h.prune(&Tier::ALL, &keys, now).unwrap(), 3);
        let counts = h.row_counts().unwrap();
        assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    }
}
