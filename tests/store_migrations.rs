//! Upgrades of the state database: one written before the schema was
//! versioned (tests/fixtures/state-v0.sql) opens with its rows intact and
//! the columns added since; one written by a newer redops is refused.

mod harness;

use std::path::Path;

use harness::{engine_dir, run_redops};
use redops::alerts::store::AlertStore;
use redops::backup::Catalog;
use redops::history::{HistoryStore, Tier};
use redops::outbox::Outbox;
use redops::playbooks::runs::RunStore;
use redops::sources::schedule::ScheduleStore;
use redops::store::{DB_FILE, Store, StoreError, migrations};

const V0: &str = include_str!("fixtures/state-v0.sql");

fn write_db(state_dir: &Path, sql: &str, user_version: u32) {
    std::fs::create_dir_all(state_dir).unwrap();
    let conn = rusqlite::Connection::open(state_dir.join(DB_FILE)).unwrap();
    conn.execute_batch(sql).unwrap();
    conn.pragma_update(None, "user_version", user_version).unwrap();
}

fn user_version(state_dir: &Path) -> u32 {
    let conn = rusqlite::Connection::open(state_dir.join(DB_FILE)).unwrap();
    migrations::version(&conn).unwrap()
}

#[test]
fn a_database_from_before_versioning_upgrades_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    write_db(dir.path(), V0, 0);

    let store = Store::open(dir.path()).expect("a v0 database opens");
    assert_eq!(user_version(dir.path()), migrations::latest());

    // Every table's rows survived.
    let alerts = AlertStore::open(store.clone()).unwrap();
    let alert = alerts.get("a1b2c3d4e5f60718").unwrap().expect("the alert row");
    assert_eq!(alert.rule, "memory_critical");
    assert_eq!(alert.acked_by.as_deref(), Some("alice"));
    assert_eq!(alert.notified, ["hook", "pager"]);
    let escalations = alerts.active_escalations().unwrap();
    assert_eq!(escalations.len(), 1);
    assert!(escalations[0].acked);
    let silences = alerts.silences(false).unwrap();
    assert_eq!(silences.len(), 1);
    assert_eq!(silences[0].created_by, "bob");
    assert_eq!(silences[0].matchers[0].value, "cache");

    let outbox = Outbox::open(store.clone()).unwrap();
    let pending = outbox.head("hook").unwrap().expect("the pending notification");
    assert_eq!(pending.attempts, 2);
    assert!(pending.payload.contains("pending from v0"));

    let schedules = ScheduleStore::open(store.clone()).unwrap();
    let last = schedules.last_run("hourly_rdb").unwrap().expect("the last run");
    assert_eq!(last.timestamp_millis(), 1_764_655_200_000);

    let catalog = Catalog::open(store.clone()).unwrap();
    let backup = catalog.get("cache-20251202T060000Z").unwrap().expect("the backup");
    assert_eq!(backup.size, 4096);
    assert_eq!(backup.verified_ms, Some(1_764_655_260_000));

    let history = HistoryStore::open(store.clone()).unwrap();
    assert_eq!(
        history.latest("cache", "memory_used_pct").unwrap(),
        Some((1_764_657_600_000, 91.0))
    );
    let counts = history.row_counts().unwrap();
    assert!(counts.contains(&(Tier::Minute, 1)), "{counts:?}");

    // The run reads back through today's query, which names `retry_of`, a
    // column v0 did not have: the upgrade added it, and it can be written.
    let runs = RunStore::open(store.clone()).unwrap();
    let run = runs.get("run-0001").unwrap().expect("the run row");
    assert_eq!(run.outcome, "succeeded");
    assert_eq!(run.retry_of, None);
    store
        .conn()
        .execute(
            "UPDATE playbook_runs SET retry_of = 'run-0000' WHERE id = 'run-0001'",
            [],
        )
        .unwrap();
    assert_eq!(runs.list(10).unwrap()[0].retry_of.as_deref(), Some("run-0000"));

    // Opening again leaves it as it is.
    drop((alerts, outbox, schedules, catalog, history, runs, store));
    Store::open(dir.path()).expect("reopens");
    assert_eq!(user_version(dir.path()), migrations::latest());
}

#[test]
fn a_database_from_a_newer_redops_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let newer = migrations::latest() + 1;
    write_db(dir.path(), V0, newer);

    let err = match Store::open(dir.path()) {
        Err(e) => e,
        Ok(_) => panic!("a database from a newer redops must not open"),
    };
    assert!(matches!(err, StoreError::Schema { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("schema version {newer}")), "{text}");
    assert!(text.contains("newer redops"), "{text}");
    assert!(text.contains(DB_FILE), "names the file: {text}");
    // Left as it was.
    assert_eq!(user_version(dir.path()), newer);

    // The command line says the same and exits non-zero.
    let engine = engine_dir(
        "1s",
        "[[target]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:1\"\n",
        &[],
        &[],
    );
    write_db(&engine.path().join("state"), V0, newer);
    let config = engine.path().join("redops.toml");
    let out = run_redops(&["alerts", "list", "--config", config.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("newer redops"), "{stderr}");
}
