//! Schedules: rules with `source = "schedule"` run their playbook on a cron
//! expression in a time zone (the guide's "Automated Monitoring Tasks" and
//! "Automated Backup Schedule"). The last run of each is stored, so a run
//! missed while redops was down happens once at start when `catch_up =
//! "once"` (the default).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use rusqlite::{OptionalExtension, params};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cron::CatchUp;
use crate::event::{Event, ScheduleTick};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct Schedule {
    pub rule: String,
    pub cron: Cron,
    pub tz: Tz,
    pub catch_up: CatchUp,
    /// The targets each run covers.
    pub targets: Vec<String>,
}

impl Schedule {
    /// The first run strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// Whether a run fell due between the last run and now.
    pub fn missed_since(&self, last_run: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.next_after(last_run).is_some_and(|next| next <= now)
    }
}

/// Last runs, so catch-up survives restarts.
#[derive(Clone)]
pub struct ScheduleStore {
    store: Store,
}

impl ScheduleStore {
    /// The table is made by the store's migrations.
    pub fn open(store: Store) -> Result<Self, StoreError> {
        Ok(ScheduleStore { store })
    }

    pub fn last_run(&self, rule: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: Option<i64> = self
            .store
            .conn()
            .query_row(
                "SELECT last_ms FROM schedule_runs WHERE rule = ?1",
                params![rule],
                |r| r.get(0),
            )
            .optional()?;
        Ok(ms.and_then(|m| Utc.timestamp_millis_opt(m).single()))
    }

    pub fn record(&self, rule: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.store.conn().execute(
            "INSERT INTO schedule_runs (rule, last_ms) VALUES (?1, ?2)
             ON CONFLICT (rule) DO UPDATE SET last_ms = ?2",
            params![rule, at.timestamp_millis()],
        )?;
        Ok(())
    }
}

/// What to run at start: the schedules that missed a run while redops was
/// down and want it caught up. A schedule never run before starts fresh.
pub fn catch_ups(schedules: &[Schedule], store: &ScheduleStore, now: DateTime<Utc>) -> Vec<String> {
    schedules
        .iter()
        .filter(|s| s.catch_up == CatchUp::Once)
        .filter(|s| {
            store
                .last_run(&s.rule)
                .ok()
                .flatten()
                .is_some_and(|last| s.missed_since(last, now))
        })
        .map(|s| s.rule.clone())
        .collect()
}

pub fn spawn_schedules(
    schedules: Vec<Schedule>,
    store: ScheduleStore,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let fire = |rule: &str, catch_up: bool| {
            let schedule = schedules.iter().find(|s| s.rule == rule).expect("a known schedule");
            if let Err(e) = store.record(rule, Utc::now()) {
                tracing::error!(rule, error = %e, "Cannot record the schedule's run; a restart may repeat it");
            }
            schedule
                .targets
                .iter()
                .map(|t| {
                    Event::Schedule(ScheduleTick {
                        target: t.clone(),
                        rule: rule.to_owned(),
                        catch_up,
                    })
                })
                .collect::<Vec<_>>()
        };
        for rule in catch_ups(&schedules, &store, Utc::now()) {
            tracing::info!(rule, "Catching up a scheduled run missed while redops was down");
            for e in fire(&rule, true) {
                let _ = events.send(e).await;
            }
        }
        for s in &schedules {
            if store.last_run(&s.rule).ok().flatten().is_none() {
                let _ = store.record(&s.rule, Utc::now());
            }
        }
        loop {
            let now = Utc::now();
            let Some((at, rule)) = schedules
                .iter()
                .filter_map(|s| s.next_after(now).map(|at| (at, s.rule.clone())))
                .min()
            else {
                return;
            };
            let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // Sleep in bounded steps: a wall-clock jump is noticed
                // within a minute instead of sleeping past the run.
                _ = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
            }
            if Utc::now() < at {
                continue;
            }
            tracing::info!(rule, "Scheduled run");
            for e in fire(&rule, false) {
                if events.send(e).await.is_err() {
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron::{CronError, parse};

    fn schedule(cron: &str, tz: Option<&str>) -> Schedule {
        let (cron, tz) = parse(cron, tz).unwrap();
        Schedule {
            rule: "r".into(),
            cron,
            tz,
            catch_up: CatchUp::Once,
            targets: vec!["cache".into()],
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn runs_fall_on_time_in_their_time_zone() {
        // The guide's full backup, daily at 03:30 in Berlin: 01:30 UTC in summer.
        let s = schedule("30 3 * * *", Some("Europe/Berlin"));
        assert_eq!(
            s.next_after(at("2026-07-01T00:00:00Z")),
            Some(at("2026-07-01T01:30:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-07-01T01:30:00Z")),
            Some(at("2026-07-02T01:30:00Z"))
        );
        // Hourly RDB backups, on the hour.
        let hourly = schedule("0 * * * *", None);
        assert_eq!(
            hourly.next_after(at("2026-07-01T10:59:59Z")),
            Some(at("2026-07-01T11:00:00Z"))
        );
        // Cleanup on Sundays.
        let sunday = schedule("0 4 * * 0", None);
        assert_eq!(
            sunday.next_after(at("2026-11-26T12:00:00Z")),
            Some(at("2026-11-29T04:00:00Z"))
        );
    }

    #[test]
    fn a_missed_run_is_caught_up_once() {
        let store = ScheduleStore::open(Store::in_memory()).unwrap();
        let mut s = schedule("0 * * * *", None);
        s.rule = "hourly".into();
        let schedules = vec![s];
        // Never run: nothing to catch up, whatever the time.
        assert!(catch_ups(&schedules, &store, at("2026-07-01T12:00:00Z")).is_empty());
        store.record("hourly", at("2026-07-01T09:00:00Z")).unwrap();
        // Down from 09:00 to 12:10: three runs missed, one catch-up.
        assert_eq!(
            catch_ups(&schedules, &store, at("2026-07-01T12:10:00Z")),
            vec!["hourly"]
        );
        store.record("hourly", at("2026-07-01T12:10:00Z")).unwrap();
        assert!(catch_ups(&schedules, &store, at("2026-07-01T12:20:00Z")).is_empty());
        // `skip` never catches up.
        let mut skipping = schedules.clone();
        skipping[0].catch_up = CatchUp::Skip;
        assert!(catch_ups(&skipping, &store, at("2026-07-02T00:00:00Z")).is_empty());
    }

    #[test]
    fn bad_expressions_and_zones_are_explained() {
        let error = parse("61 * * * *", None).unwrap_err();
        assert!(matches!(&error, CronError::Expression { expression, .. } if expression == "61 * * * *"));
        assert!(
            error.to_string().starts_with("invalid cron expression `61 * * * *`: "),
            "{error}"
        );
        assert_eq!(
            parse("0 * * * *", Some("Mars/Olympus")).unwrap_err(),
            CronError::TimeZone("Mars/Olympus".into())
        );
    }
}
