//! The backups catalog: one row per archive in the state database, with
//! its checksum and the outcome of its last verification.

use std::path::PathBuf;

use rusqlite::{OptionalExtension, Row, params};

use super::Kind;
use crate::store::{Store, StoreError};

#[derive(Clone)]
pub struct Catalog {
    store: Store,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    pub id: String,
    pub target: String,
    pub kind: Kind,
    pub path: PathBuf,
    /// Bytes of the archive file.
    pub size: u64,
    /// SHA-256 of the archive file, hex.
    pub checksum: String,
    pub compressed: bool,
    pub encrypted: bool,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// When it last passed verification; `None` if never, or if the last
    /// verification failed.
    pub verified_ms: Option<i64>,
    pub verify_error: Option<String>,
}

impl BackupRecord {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "target": self.target,
            "kind": self.kind.as_str(),
            "path": self.path,
            "size": self.size,
            "checksum": self.checksum,
            "compressed": self.compressed,
            "encrypted": self.encrypted,
            "created": rfc3339(self.created_ms),
            "verified": self.verified_ms.map(rfc3339),
            "verify_error": self.verify_error,
        })
    }
}

pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

const COLUMNS: &str = "id, target, kind, path, size, checksum, compressed, encrypted, created, verified, verify_error";

fn from_row(r: &Row<'_>) -> rusqlite::Result<BackupRecord> {
    let kind: String = r.get(2)?;
    let path: String = r.get(3)?;
    Ok(BackupRecord {
        id: r.get(0)?,
        target: r.get(1)?,
        // Only this module writes the column; an unknown value is a row
        // from a newer redops, shown as what it most likely is.
        kind: Kind::parse(&kind).unwrap_or(Kind::Full),
        path: PathBuf::from(path),
        size: r.get::<_, i64>(4)?.max(0) as u64,
        checksum: r.get(5)?,
        compressed: r.get(6)?,
        encrypted: r.get(7)?,
        created_ms: r.get(8)?,
        verified_ms: r.get(9)?,
        verify_error: r.get(10)?,
    })
}

impl Catalog {
    /// The table is made by the store's migrations.
    pub fn open(store: Store) -> Result<Catalog, StoreError> {
        Ok(Catalog { store })
    }

    pub fn insert(&self, r: &BackupRecord) -> Result<(), StoreError> {
        self.store.conn().execute(
            &format!("INSERT INTO backups ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
            params![
                r.id,
                r.target,
                r.kind.as_str(),
                r.path.to_string_lossy(),
                r.size as i64,
                r.checksum,
                r.compressed,
                r.encrypted,
                r.created_ms,
                r.verified_ms,
                r.verify_error
            ],
        )?;
        Ok(())
    }

    pub fn exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.get(id)?.is_some())
    }

    pub fn get(&self, id: &str) -> Result<Option<BackupRecord>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM backups WHERE id = ?1"))?;
        Ok(stmt.query_row(params![id], from_row).optional()?)
    }

    /// Newest first; `since_ms` and `target` narrow it.
    pub fn list(&self, since_ms: Option<i64>, target: Option<&str>) -> Result<Vec<BackupRecord>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM backups
             WHERE created >= ?1 AND (?2 IS NULL OR target = ?2)
             ORDER BY created DESC, id DESC"
        ))?;
        let rows = stmt.query_map(params![since_ms.unwrap_or(i64::MIN), target], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the outcome of a verification at `at_ms`.
    pub fn mark_verified(&self, id: &str, at_ms: i64, error: Option<&str>) -> Result<(), StoreError> {
        self.store.conn().execute(
            "UPDATE backups SET verified = ?2, verify_error = ?3 WHERE id = ?1",
            params![id, error.is_none().then_some(at_ms), error],
        )?;
        Ok(())
    }

    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.store
            .conn()
            .execute("DELETE FROM backups WHERE id = ?1", params![id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, target: &str, created_ms: i64) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            target: target.into(),
            kind: Kind::Rdb,
            path: PathBuf::from(format!("/backups/{id}.rdb.zst")),
            size: 42,
            checksum: "ab".repeat(32),
            compressed: true,
            encrypted: false,
            created_ms,
            verified_ms: None,
            verify_error: None,
        }
    }

    #[test]
    fn rows_round_trip_newest_first_and_verification_is_recorded() {
        let catalog = Catalog::open(Store::in_memory()).unwrap();
        catalog.insert(&record("a", "cache", 1_000)).unwrap();
        catalog.insert(&record("b", "cache", 3_000)).unwrap();
        catalog.insert(&record("c", "sessions", 2_000)).unwrap();
        assert!(catalog.insert(&record("a", "cache", 5)).is_err(), "ids are unique");
        let ids = |v: Vec<BackupRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(catalog.list(None, None).unwrap()), ["b", "c", "a"]);
        assert_eq!(ids(catalog.list(Some(2_000), None).unwrap()), ["b", "c"]);
        assert_eq!(ids(catalog.list(None, Some("cache")).unwrap()), ["b", "a"]);

        catalog.mark_verified("a", 9_000, None).unwrap();
        assert_eq!(catalog.get("a").unwrap().unwrap().verified_ms, Some(9_000));
        catalog.mark_verified("a", 9_500, Some("checksum mismatch")).unwrap();
        let a = catalog.get("a").unwrap().unwrap();
        assert_eq!(
            (a.verified_ms, a.verify_error.as_deref()),
            (None, Some("checksum mismatch"))
        );

        catalog.delete("a").unwrap();
        assert!(catalog.get("a").unwrap().is_none());
        assert_eq!(catalog.get("b").unwrap().unwrap(), record("b", "cache", 3_000));
    }
}
