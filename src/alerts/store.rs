//! Alerts, acknowledgements, escalations and silences in the state store,
//! shared by the engine and the command line (`redops alerts`, `redops
//! silence`), and surviving restarts.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Alert, AlertStatus};
use crate::matcher::Matcher;
use crate::store::{Store, StoreError};

pub fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

pub fn now_ms() -> i64 {
    ms(SystemTime::now())
}

#[derive(Clone)]
pub struct AlertStore {
    store: Store,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AlertRow {
    pub fingerprint: String,
    pub rule: String,
    pub target: String,
    pub severity: String,
    pub status: String,
    pub summary: String,
    pub starts_ms: i64,
    pub ends_ms: Option<i64>,
    pub acked_by: Option<String>,
    pub acked_ms: Option<i64>,
    pub ack_comment: Option<String>,
    /// Receivers that got this alert's firing notification.
    pub notified: Vec<String>,
    pub silenced: bool,
    /// The alert's rendered annotations, for the API and the dashboard.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    #[serde(skip)]
    pub alert_json: String,
}

#[derive(Debug, Clone)]
pub struct Escalation {
    pub fingerprint: String,
    pub starts_ms: i64,
    pub policy: String,
    pub next_step: usize,
    pub last_step_ms: i64,
    pub acked: bool,
    pub ack_notified: bool,
    /// How long silences held the escalation, in ms: its steps fall due
    /// this much later than the policy says.
    pub held_ms: i64,
    /// Since when a silence holds it, while one does.
    pub held_since_ms: Option<i64>,
}

impl Escalation {
    /// The start of the escalation's timeline: the alert's start, moved on
    /// by the time silences held it.
    pub fn timeline_start_ms(&self) -> i64 {
        self.starts_ms + self.held_ms
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Silence {
    pub id: i64,
    pub matchers: Vec<Matcher>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }
}

const SELECT_ALERT: &str = "SELECT fingerprint, rule, target, severity, status, summary, starts_ms, ends_ms, acked_by,
    acked_ms, ack_comment, notified, silenced, alert_json FROM alerts";

fn row_to_alert(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    let notified: String = r.get(11)?;
    let alert_json: String = r.get(13)?;
    let annotations = serde_json::from_str::<super::Alert>(&alert_json)
        .map(|a| a.annotations)
        .unwrap_or_default();
    Ok(AlertRow {
        fingerprint: r.get(0)?,
        rule: r.get(1)?,
        target: r.get(2)?,
        severity: r.get(3)?,
        status: r.get(4)?,
        summary: r.get(5)?,
        starts_ms: r.get(6)?,
        ends_ms: r.get(7)?,
        acked_by: r.get(8)?,
        acked_ms: r.get(9)?,
        ack_comment: r.get(10)?,
        notified: serde_json::from_str(&notified).unwrap_or_default(),
        silenced: r.get(12)?,
        annotations,
        alert_json,
    })
}

impl AlertStore {
    /// The tables are made by the store's migrations.
    pub fn open(store: Store) -> Result<AlertStore, StoreError> {
        Ok(AlertStore { store })
    }

    /// Records an alert change. A new firing (a new `starts_at`) clears the
    /// previous incident's acknowledgement and receivers.
    pub fn record(&self, alert: &Alert, silenced: bool) -> Result<(), StoreError> {
        let json = serde_json::to_string(alert).unwrap_or_default();
        let status = match alert.status {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        };
        let starts = ms(alert.starts_at);
        self.store.conn().execute(
            "INSERT INTO alerts (fingerprint, rule, target, severity, status, summary, starts_ms, ends_ms,
                                 silenced, alert_json, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (fingerprint) DO UPDATE SET
                rule = ?2, target = ?3, severity = ?4, status = ?5, summary = ?6, ends_ms = ?8,
                silenced = ?9, alert_json = ?10, updated_ms = ?11,
                acked_by = CASE WHEN starts_ms = ?7 THEN acked_by END,
                acked_ms = CASE WHEN starts_ms = ?7 THEN acked_ms END,
                ack_comment = CASE WHEN starts_ms = ?7 THEN ack_comment END,
                notified = CASE WHEN starts_ms = ?7 THEN notified ELSE '[]' END,
                starts_ms = ?7",
            params![
                alert.fingerprint,
                alert.rule,
                alert.target,
                alert.severity.as_str(),
                status,
                alert.summary,
                starts,
                alert.ends_at.map(ms),
                silenced,
                json,
                now_ms()
            ],
        )?;
        Ok(())
    }

    /// Adds receivers to those that got an alert's firing notification.
    pub fn add_notified(&self, fingerprint: &str, receivers: &[String]) -> Result<(), StoreError> {
        let conn = self.store.conn();
        let current: Option<String> = conn
            .query_row(
                "SELECT notified FROM alerts WHERE fingerprint = ?1",
                params![fingerprint],
                |r| r.get(0),
            )
            .optional()?;
        let mut set: BTreeSet<String> = current.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default();
        set.extend(receivers.iter().cloned());
        conn.execute(
            "UPDATE alerts SET notified = ?2 WHERE fingerprint = ?1",
            params![fingerprint, serde_json::to_string(&set).unwrap_or_default()],
        )?;
        Ok(())
    }

    pub fn get(&self, fingerprint: &str) -> Result<Option<AlertRow>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(&format!("{SELECT_ALERT} WHERE fingerprint = ?1"))?;
        Ok(stmt.query_row(params![fingerprint], row_to_alert).optional()?)
    }

    /// Alerts, firing first then most recent; resolved ones only with `all`.
    pub fn list(&self, all: bool) -> Result<Vec<AlertRow>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT_ALERT} WHERE ?1 OR status = 'firing' ORDER BY status = 'firing' DESC, starts_ms DESC"
        ))?;
        let rows = stmt.query_map(params![all], row_to_alert)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Acknowledges an alert by fingerprint or a unique prefix of it.
    /// Returns the fingerprint acknowledged.
    pub fn ack(&self, id: &str, by: &str, comment: Option<&str>) -> Result<Result<String, String>, StoreError> {
        let matches: Vec<AlertRow> = self
            .list(false)?
            .into_iter()
            .filter(|a| a.fingerprint.starts_with(id))
            .collect();
        let alert = match matches.as_slice() {
            [one] => one,
            [] => {
                return Ok(Err(format!(
                    "no firing alert has an id starting with `{id}`; see `redops alerts list`"
                )));
            }
            _ => {
                return Ok(Err(format!(
                    "`{id}` matches {} alerts; give more of the id",
                    matches.len()
                )));
            }
        };
        let conn = self.store.conn();
        conn.execute(
            "UPDATE alerts SET acked_by = ?2, acked_ms = ?3, ack_comment = ?4 WHERE fingerprint = ?1",
            params![alert.fingerprint, by, now_ms(), comment],
        )?;
        conn.execute(
            "UPDATE escalations SET acked = 1 WHERE fingerprint = ?1 AND starts_ms = ?2",
            params![alert.fingerprint, alert.starts_ms],
        )?;
        Ok(Ok(alert.fingerprint.clone()))
    }

    /// Starts an alert's escalation; `held_ms` moves its timeline on, for
    /// an alert a silence muted from its start.
    pub fn start_escalation(
        &self,
        fingerprint: &str,
        starts_ms: i64,
        policy: &str,
        held_ms: i64,
    ) -> Result<(), StoreError> {
        self.store.conn().execute(
            "INSERT OR IGNORE INTO escalations (fingerprint, starts_ms, policy, held_ms) VALUES (?1, ?2, ?3, ?4)",
            params![fingerprint, starts_ms, policy, held_ms],
        )?;
        Ok(())
    }

    pub fn finish_escalation(&self, fingerprint: &str) -> Result<(), StoreError> {
        self.store.conn().execute(
            "UPDATE escalations SET done = 1 WHERE fingerprint = ?1 AND done = 0",
            params![fingerprint],
        )?;
        Ok(())
    }

    pub fn active_escalations(&self) -> Result<Vec<Escalation>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT fingerprint, starts_ms, policy, next_step, last_step_ms, acked, ack_notified,
                    held_ms, held_since_ms
             FROM escalations WHERE done = 0",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Escalation {
                fingerprint: r.get(0)?,
                starts_ms: r.get(1)?,
                policy: r.get(2)?,
                next_step: r.get::<_, i64>(3)? as usize,
                last_step_ms: r.get(4)?,
                acked: r.get(5)?,
                ack_notified: r.get(6)?,
                held_ms: r.get(7)?,
                held_since_ms: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn update_escalation(&self, e: &Escalation) -> Result<(), StoreError> {
        self.store.conn().execute(
            "UPDATE escalations SET next_step = ?3, last_step_ms = ?4, ack_notified = ?5,
                                    held_ms = ?6, held_since_ms = ?7
             WHERE fingerprint = ?1 AND starts_ms = ?2",
            params![
                e.fingerprint,
                e.starts_ms,
                e.next_step as i64,
                e.last_step_ms,
                e.ack_notified,
                e.held_ms,
                e.held_since_ms
            ],
        )?;
        Ok(())
    }

    /// Marks a firing alert as silenced or not, as silences start and end.
    pub fn set_silenced(&self, fingerprint: &str, silenced: bool) -> Result<(), StoreError> {
        self.store.conn().execute(
            "UPDATE alerts SET silenced = ?2 WHERE fingerprint = ?1",
            params![fingerprint, silenced],
        )?;
        Ok(())
    }

    pub fn add_silence(
        &self,
        matchers: &[Matcher],
        starts_ms: i64,
        ends_ms: i64,
        by: &str,
        comment: &str,
    ) -> Result<i64, StoreError> {
        let conn = self.store.conn();
        conn.execute(
            "INSERT INTO silences (matchers, starts_ms, ends_ms, created_by, comment, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                serde_json::to_string(matchers).unwrap_or_default(),
                starts_ms,
                ends_ms,
                by,
                comment,
                now_ms()
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Silences, newest first; expired ones only with `all`.
    pub fn silences(&self, all: bool) -> Result<Vec<Silence>, StoreError> {
        self.silences_at(all, now_ms())
    }

    /// Silences not expired at `now` (ms since the epoch), newest first;
    /// expired ones too with `all`.
    pub fn silences_at(&self, all: bool, now: i64) -> Result<Vec<Silence>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, matchers, starts_ms, ends_ms, created_by, comment FROM silences
             WHERE ?1 OR ends_ms > ?2 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map(params![all, now], |r| {
            let matchers: String = r.get(1)?;
            Ok(Silence {
                id: r.get(0)?,
                matchers: serde_json::from_str::<Vec<Matcher>>(&matchers)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|m| m.compiled().ok())
                    .collect(),
                starts_ms: r.get(2)?,
                ends_ms: r.get(3)?,
                created_by: r.get(4)?,
                comment: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ends a silence at `ends_ms` if it would end later. False when it
    /// does not (or does not exist).
    pub fn end_silence_at(&self, id: i64, ends_ms: i64) -> Result<bool, StoreError> {
        Ok(self.store.conn().execute(
            "UPDATE silences SET ends_ms = ?2 WHERE id = ?1 AND ends_ms > ?2",
            params![id, ends_ms],
        )? > 0)
    }

    /// Ends a silence now. False when no active silence has that id.
    pub fn expire_silence(&self, id: i64) -> Result<bool, StoreError> {
        let now = now_ms();
        Ok(self.store.conn().execute(
            "UPDATE silences SET ends_ms = ?2 WHERE id = ?1 AND ends_ms > ?2",
            params![id, now],
        )? > 0)
    }
}
