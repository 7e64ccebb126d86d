//! The state database's schema, as one ordered list of migrations.
//!
//! SQLite's `PRAGMA user_version` holds how many of them a database has
//! had. Opening a database applies the missing ones in order, each in its
//! own transaction with the version bump, so an upgrade interrupted half-way
//! resumes where it stopped. A database with a version above the last one
//! here was written by a newer redops: it is refused, never written to,
//! since this build does not know what its tables mean.
//!
//! Databases from before versioning (user_version 0) got their tables from
//! `CREATE TABLE IF NOT EXISTS` in each module, and some `retry_of` from an
//! ad hoc `ALTER TABLE`: migration 1 is that schema written the same way,
//! so it is a no-op on such a database, and migration 2 adds `retry_of`
//! only where it is missing.
//!
//! Add a migration by appending to [`MIGRATIONS`]; never edit one that has
//! shipped.

use rusqlite::{Connection, TransactionBehavior};

/// One step of the schema.
pub struct Migration {
    /// What it does, for the error that says which step failed.
    pub name: &'static str,
    pub up: Up,
}

pub enum Up {
    Sql(&'static str),
    /// For a step SQL alone cannot make idempotent.
    Code(fn(&Connection) -> rusqlite::Result<()>),
}

/// The schema, oldest step first. Version N is the database after the
/// N-th step.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "tables of redops 0.x before versioning",
        up: Up::Sql(BASELINE),
    },
    Migration {
        name: "playbook_runs.retry_of (HA retries)",
        up: Up::Code(add_retry_of),
    },
    Migration {
        name: "escalations.held_ms and held_since_ms (silences hold escalations)",
        up: Up::Sql(
            "ALTER TABLE escalations ADD COLUMN held_ms INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE escalations ADD COLUMN held_since_ms INTEGER;",
        ),
    },
];

/// The schema version this build writes and reads.
pub fn latest() -> u32 {
    MIGRATIONS.len() as u32
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "schema version {found} is newer than this redops knows (up to {latest}): the database was written by a \
         newer redops; run that version, or point [engine] state_dir at another directory"
    )]
    TooNew { found: u32, latest: u32 },
    #[error("upgrading the schema to version {version} ({name}) failed: {source}")]
    Step {
        version: u32,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
}

pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Brings the database to [`latest`]. Returns the version it had.
pub fn migrate(conn: &mut Connection) -> Result<u32, MigrationError> {
    let before = version(conn)?;
    check_not_newer(before)?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(before as usize) {
        let target = i as u32 + 1;
        // IMMEDIATE takes the write lock before reading the version again:
        // the CLI and the engine may open the same database at once, and
        // only one of them may apply a step.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = version(&tx)?;
        check_not_newer(now)?;
        if now >= target {
            continue;
        }
        let applied = match step.up {
            Up::Sql(sql) => tx.execute_batch(sql),
            Up::Code(f) => f(&tx),
        };
        applied
            .and_then(|()| tx.pragma_update(None, "user_version", target))
            .and_then(|()| tx.commit())
            .map_err(|source| MigrationError::Step {
                version: target,
                name: step.name,
                source,
            })?;
    }
    Ok(before)
}

fn check_not_newer(found: u32) -> Result<(), MigrationError> {
    if found > latest() {
        return Err(MigrationError::TooNew {
            found,
            latest: latest(),
        });
    }
    Ok(())
}

/// Every table as the modules created them before versioning (outbox,
/// playbook runs without `retry_of`, schedules, backups catalog, alerts,
/// escalations, silences, history tiers).
const BASELINE: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    done_ms INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (receiver, state, id);

CREATE TABLE IF NOT EXISTS playbook_runs (
    id TEXT PRIMARY KEY,
    playbook TEXT NOT NULL,
    target TEXT NOT NULL,
    rule TEXT,
    trigger TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    dry_run INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    duration_ms INTEGER,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    findings TEXT NOT NULL DEFAULT '[]',
    audit TEXT NOT NULL DEFAULT '[]',
    audit_dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS playbook_runs_started ON playbook_runs (started_ms);

CREATE TABLE IF NOT EXISTS schedule_runs (rule TEXT PRIMARY KEY, last_ms INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS backups (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    compressed INTEGER NOT NULL,
    encrypted INTEGER NOT NULL,
    created INTEGER NOT NULL,
    verified INTEGER,
    verify_error TEXT
);
CREATE INDEX IF NOT EXISTS backups_target_created ON backups (target, created);

CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    rule TEXT NOT NULL, target TEXT NOT NULL, severity TEXT NOT NULL,
    status TEXT NOT NULL, summary TEXT NOT NULL,
    starts_ms INTEGER NOT NULL, ends_ms INTEGER,
    acked_by TEXT, acked_ms INTEGER, ack_comment TEXT,
    notified TEXT NOT NULL DEFAULT '[]',
    silenced INTEGER NOT NULL DEFAULT 0,
    alert_json TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
    fingerprint TEXT NOT NULL, starts_ms INTEGER NOT NULL,
    policy TEXT NOT NULL, next_step INTEGER NOT NULL DEFAULT 0,
    last_step_ms INTEGER NOT NULL DEFAULT 0,
    acked INTEGER NOT NULL DEFAULT 0, ack_notified INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (fingerprint, starts_ms)
);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    matchers TEXT NOT NULL, starts_ms INTEGER NOT NULL, ends_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL, comment TEXT NOT NULL, created_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS history_raw (
    target TEXT NOT NULL, metric TEXT NOT NULL, at_ms INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (target, metric, at_ms)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_minute (
    target TEXT NOT NULL, metric TEXT NOT NULL, at_ms INTEGER NOT NULL,
    min REAL NOT NULL, avg REAL NOT NULL, max REAL NOT NULL,
    last REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (target, metric, at_ms)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_hour (
    target TEXT NOT NULL, metric TEXT NOT NULL, at_ms INTEGER NOT NULL,
    min REAL NOT NULL, avg REAL NOT NULL, max REAL NOT NULL,
    last REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (target, metric, at_ms)) WITHOUT ROWID;
";

/// Unversioned databases written since HA retries already have the column.
fn add_retry_of(conn: &Connection) -> rusqlite::Result<()> {
    let has = conn
        .prepare("SELECT 1 FROM pragma_table_info('playbook_runs') WHERE name = 'retry_of'")?
        .exists([])?;
    if !has {
        conn.execute_batch("ALTER TABLE playbook_runs ADD COLUMN retry_of TEXT")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn a_new_database_gets_every_step() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        assert_eq!(version(&conn).unwrap(), latest());
        assert!(columns(&conn, "playbook_runs").contains(&"retry_of".to_owned()));
        // Opening again changes nothing.
        assert_eq!(migrate(&mut conn).unwrap(), latest());
        assert_eq!(version(&conn).unwrap(), latest());
    }

    #[test]
    fn an_unversioned_database_that_already_has_retry_of_upgrades() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(BASELINE).unwrap();
        conn.execute_batch("ALTER TABLE playbook_runs ADD COLUMN retry_of TEXT")
            .unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), latest());
        let retry_of = columns(&conn, "playbook_runs")
            .iter()
            .filter(|c| *c == "retry_of")
            .count();
        assert_eq!(retry_of, 1);
    }

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest() + 1).unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, MigrationError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer redops"), "{err}");
        assert!(columns(&conn, "outbox").is_empty(), "nothing was created");
    }
}
