//! The runs audit store: every playbook run, in the state store, so that
//! `redops runs` can say what ran, why, and what it did.
//!
//! A run gets its row when it starts, with outcome `running`, and the row is
//! completed when it ends. A row still `running` when the engine starts was
//! cut short by a crash: it is marked `interrupted`.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::context::{RunContext, RunRecord};
use crate::alerts::store::ms;
use crate::store::{Store, StoreError};

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Alert,
    Schedule,
    Manual,
    /// `POST /api/v1/playbooks/{name}/run`.
    Api,
    /// An alert an Alertmanager posted to `POST /api/v1/alertmanager`.
    Alertmanager,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Alert => "alert",
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Api => "api",
            Trigger::Alertmanager => "alertmanager",
        }
    }
}

#[derive(Clone)]
pub struct RunStore {
    store: Store,
}

/// One stored run, as `redops runs` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunRow {
    pub id: String,
    pub playbook: String,
    pub target: String,
    pub rule: Option<String>,
    pub trigger: String,
    pub params: serde_json::Value,
    pub dry_run: bool,
    pub started_ms: i64,
    pub duration_ms: Option<i64>,
    /// `running`, `succeeded`, `failed`, `timed_out` or `interrupted`.
    pub outcome: String,
    /// The playbook's result, or the error that ended it.
    pub detail: String,
    pub findings: serde_json::Value,
    /// Absent from the API's list, which counts it in `audit_entries`.
    #[serde(default)]
    pub audit: serde_json::Value,
    pub audit_dropped: i64,
    /// Under `[ha]`: the run of a leader that lost the lease mid-run, which
    /// this one ran again.
    pub retry_of: Option<String>,
}

const COLUMNS: &str = "id, playbook, target, rule, trigger, params, dry_run, started_ms, duration_ms, outcome, detail, \
    findings, audit, audit_dropped, retry_of";

fn json(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

fn to_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        playbook: r.get(1)?,
        target: r.get(2)?,
        rule: r.get(3)?,
        trigger: r.get(4)?,
        params: json(r.get(5)?),
        dry_run: r.get(6)?,
        started_ms: r.get(7)?,
        duration_ms: r.get(8)?,
        outcome: r.get(9)?,
        detail: r.get(10)?,
        findings: json(r.get(11)?),
        audit: json(r.get(12)?),
        audit_dropped: r.get(13)?,
        retry_of: r.get(14)?,
    })
}

fn params_json(params: &BTreeMap<String, toml::Value>) -> String {
    serde_json::to_string(params).unwrap_or_else(|_| "{}".into())
}

impl RunStore {
    /// The table is made by the store's migrations.
    pub fn open(store: Store) -> Result<RunStore, StoreError> {
        Ok(RunStore { store })
    }

    /// The row of a run that has just started.
    pub fn start(&self, ctx: &RunContext, trigger: Trigger) -> Result<(), StoreError> {
        self.store.conn().execute(
            "INSERT OR REPLACE INTO playbook_runs (id, playbook, target, rule, trigger, params, dry_run, started_ms, \
             outcome, retry_of) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running', ?9)",
            params![
                ctx.run_id,
                ctx.playbook,
                ctx.target,
                ctx.rule,
                trigger.label(),
                crate::secrets::redact(&params_json(&ctx.params)),
                ctx.dry_run,
                ms(std::time::SystemTime::now()),
                ctx.ha.as_ref().and_then(|h| h.retry_of.as_deref()),
            ],
        )?;
        Ok(())
    }

    /// Completes the run's row; inserts it if the start was never written
    /// (a playbook that did not exist never starts).
    pub fn finish(&self, record: &RunRecord, trigger: Trigger) -> Result<(), StoreError> {
        let detail = match &record.outcome {
            crate::invocation::RunOutcome::Succeeded { result } => result.clone(),
            crate::invocation::RunOutcome::Failed { error } => error.clone(),
            crate::invocation::RunOutcome::TimedOut { after_ms } => {
                format!("stopped at its deadline after {after_ms} ms")
            }
        };
        let findings = serde_json::to_string(&record.findings).unwrap_or_else(|_| "[]".into());
        let audit = serde_json::to_string(&record.audit).unwrap_or_else(|_| "[]".into());
        self.store.conn().execute(
            "INSERT INTO playbook_runs (id, playbook, target, rule, trigger, dry_run, started_ms, duration_ms, outcome, \
             detail, findings, audit, audit_dropped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (id) DO UPDATE SET duration_ms = excluded.duration_ms, outcome = excluded.outcome,
             detail = excluded.detail, findings = excluded.findings, audit = excluded.audit,
             audit_dropped = excluded.audit_dropped",
            params![
                record.id,
                record.playbook,
                record.target,
                record.rule,
                trigger.label(),
                record.dry_run,
                ms(record.started_at),
                record.duration_ms as i64,
                record.outcome.label(),
                detail,
                findings,
                audit,
                record.audit_dropped as i64,
            ],
        )?;
        Ok(())
    }

    /// Records a finished run, logging instead of failing: the run is done
    /// whether or not its record could be written.
    pub fn record(&self, record: &RunRecord) {
        let trigger = if record.rule.is_none() {
            Trigger::Manual
        } else {
            // The start row knows better; `finish` keeps its trigger.
            Trigger::Alert
        };
        if let Err(e) = self.finish(record, trigger) {
            tracing::error!(run_id = %record.id, error = %e, "Cannot store the playbook run");
        }
    }

    /// Marks runs left `running` by an engine that stopped without finishing
    /// them; returns how many.
    pub fn mark_interrupted(&self) -> Result<usize, StoreError> {
        Ok(self.store.conn().execute(
            "UPDATE playbook_runs SET outcome = 'interrupted', detail = 'the engine stopped during the run' \
             WHERE outcome = 'running'",
            [],
        )?)
    }

    /// The newest runs first.
    pub fn list(&self, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM playbook_runs ORDER BY started_ms DESC, id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], to_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn get(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let conn = self.store.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM playbook_runs WHERE id = ?1"),
                [id],
                to_row,
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invocation::RunOutcome;

    fn record(id: &str, outcome: RunOutcome) -> RunRecord {
        RunRecord {
            id: id.into(),
            playbook: "warm_cache".into(),
            target: "cache".into(),
            rule: Some("hit_ratio_low".into()),
            dry_run: false,
            started_at: std::time::SystemTime::now(),
            duration_ms: 12,
            outcome,
            findings: vec!["hit ratio 0.91".into()],
            audit: Vec::new(),
            audit_dropped: 0,
            alert_started_at: None,
        }
    }

    #[test]
    fn a_run_is_stored_and_a_crashed_one_is_marked_interrupted() {
        let runs = RunStore::open(Store::in_memory()).unwrap();
        runs.finish(
            &record("a", RunOutcome::Succeeded { result: "warm".into() }),
            Trigger::Alert,
        )
        .unwrap();
        runs.store
            .conn()
            .execute(
                "INSERT INTO playbook_runs (id, playbook, target, trigger, dry_run, started_ms, outcome) \
                 VALUES ('b', 'backup', 'cache', 'schedule', 0, 1, 'running')",
                [],
            )
            .unwrap();
        assert_eq!(runs.mark_interrupted().unwrap(), 1);
        let a = runs.get("a").unwrap().unwrap();
        assert_eq!((a.outcome.as_str(), a.detail.as_str()), ("succeeded", "warm"));
        assert_eq!(a.findings, serde_json::json!(["hit ratio 0.91"]));
        assert_eq!(runs.get("b").unwrap().unwrap().outcome, "interrupted");
        assert_eq!(runs.list(10).unwrap().len(), 2);
    }
}
