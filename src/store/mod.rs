//! The state store: one SQLite database in the state directory, in WAL mode,
//! readable and writable by redops's user only. Each concern (outbox,
//! alerts, backups catalog, ...) keeps its queries in a file of its own;
//! the tables are all made in one place, by the versioned
//! [`migrations`] that opening the store applies.

pub mod migrations;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

pub const DB_FILE: &str = "redops.db";

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the state database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("state database {path}: {source}")]
    Schema {
        path: PathBuf,
        source: migrations::MigrationError,
    },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
}

impl Store {
    /// Opens (creating if needed) `<state_dir>/redops.db`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.to_owned(),
            source,
        })?;
        restrict(state_dir, 0o700);
        let path = state_dir.join(DB_FILE);
        let mut conn = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Before anything else writes: a database from a newer redops is
        // refused as it is.
        let before = migrations::migrate(&mut conn).map_err(|source| StoreError::Schema {
            path: path.clone(),
            source,
        })?;
        if before != migrations::latest() {
            tracing::info!(path = %path.display(), from = before, to = migrations::latest(), "State database schema upgraded");
        }
        // WAL: readers (the CLI) never block the engine's writes; NORMAL
        // sync is durable across a process crash, which is what kill -9 is.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The engine's tables are small and read mostly by key: a 512 KiB
        // page cache per connection (SQLite's default is 2 MiB) keeps the
        // resident size of a long-running engine flat.
        conn.pragma_update(None, "cache_size", -512)?;
        for file in [
            path.clone(),
            state_dir.join(format!("{DB_FILE}-wal")),
            state_dir.join(format!("{DB_FILE}-shm")),
        ] {
            restrict(&file, 0o600);
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// An in-memory store, for tests and for running without a state dir.
    pub fn in_memory() -> Store {
        let mut conn = Connection::open_in_memory().expect("SQLite can always open an in-memory database");
        migrations::migrate(&mut conn).expect("the schema applies to an empty database");
        Store {
            conn: Arc::new(Mutex::new(conn)),
            path: PathBuf::from(":memory:"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for one short transaction at a time.
    pub fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) {}
