//! A backup set of a cluster: one RDB snapshot per master, each an ordinary
//! catalogued backup of its node (`<cluster>/<host:port>`), and one row
//! that ties them together with the slot layout they were taken under and
//! the shard each came from.
//!
//! An RDB holds only the keys of its master's slots, so a set is only
//! meaningful on a cluster whose slots are split the same way: a restore
//! onto another layout is refused before anything is touched.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{BackupError, BackupRecord, Backups, CleanupReport, Kind, Progress, Target, Verified, ms_of};
use crate::cluster::ClusterView;
use crate::config::ClusterConfig;
use crate::store::{Store, StoreError};

/// Each shard's slot ranges, sorted (as [`ClusterView::slot_layout`]).
pub type SlotLayout = Vec<Vec<(u16, u16)>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMember {
    /// The shard's name: its slot ranges.
    pub shard: String,
    /// The master the snapshot was taken of.
    pub master: String,
    /// The member's id in the backups catalog.
    pub backup: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSet {
    pub id: String,
    pub cluster: String,
    pub created_ms: i64,
    pub layout: SlotLayout,
    pub members: Vec<SetMember>,
}

/// A set with its members' catalog rows, as `backup list` and `cleanup`
/// show it: one entry.
#[derive(Debug, Clone)]
pub struct SetEntry {
    pub set: ClusterSet,
    /// The members' rows, in the set's order; a member whose row is gone is
    /// missing here (and fails the set's verification).
    pub records: Vec<BackupRecord>,
}

impl SetEntry {
    /// Bytes of every member's archive.
    pub fn size(&self) -> u64 {
        self.records.iter().map(|r| r.size).sum()
    }

    /// A row of `backup list --json`: `kind = "set"`, the cluster as its
    /// target, and each member's catalog row beside its shard.
    pub fn to_json(&self) -> serde_json::Value {
        let mut row = self.set.to_json();
        row["kind"] = "set".into();
        row["target"] = self.set.cluster.clone().into();
        row["size"] = self.size().into();
        row["members"] = self
            .set
            .members
            .iter()
            .map(|m| {
                let record = self.records.iter().find(|r| r.id == m.backup);
                serde_json::json!({
                    "shard": m.shard,
                    "master": m.master,
                    "backup": record.map_or_else(|| serde_json::json!({"id": m.backup, "missing": true}), BackupRecord::to_json),
                })
            })
            .collect::<Vec<_>>()
            .into();
        row
    }
}

impl ClusterSet {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "cluster": self.cluster,
            "created": super::catalog::rfc3339(self.created_ms),
            "layout": show_layout(&self.layout),
            "members": self.members,
        })
    }
}

/// `0-5460 | 5461-10922 | 10923-16383`: one shard's ranges per part.
pub fn show_layout(layout: &SlotLayout) -> String {
    layout
        .iter()
        .map(|ranges| {
            ranges
                .iter()
                .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The table of sets, beside the backups catalog in the state database.
#[derive(Clone)]
pub struct ClusterSets {
    store: Store,
}

impl ClusterSets {
    pub fn open(store: Store) -> Result<ClusterSets, StoreError> {
        store.conn().execute_batch(
            "CREATE TABLE IF NOT EXISTS backup_sets (
                id TEXT PRIMARY KEY,
                cluster TEXT NOT NULL,
                created INTEGER NOT NULL,
                layout TEXT NOT NULL,
                members TEXT NOT NULL
            );",
        )?;
        Ok(ClusterSets { store })
    }

    fn insert(&self, set: &ClusterSet) -> Result<(), StoreError> {
        let json = |v: serde_json::Result<String>| v.unwrap_or_else(|_| "[]".into());
        self.store.conn().execute(
            "INSERT INTO backup_sets (id, cluster, created, layout, members) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                set.id,
                set.cluster,
                set.created_ms,
                json(serde_json::to_string(&set.layout)),
                json(serde_json::to_string(&set.members))
            ],
        )?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<ClusterSet>, StoreError> {
        let conn = self.store.conn();
        let mut stmt =
            conn.prepare_cached("SELECT id, cluster, created, layout, members FROM backup_sets WHERE id = ?1")?;
        Ok(stmt.query_row(params![id], set_of_row).optional()?)
    }

    /// Newest first; `since_ms` and `cluster` narrow it.
    pub fn list(&self, since_ms: Option<i64>, cluster: Option<&str>) -> Result<Vec<ClusterSet>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, cluster, created, layout, members FROM backup_sets
             WHERE created >= ?1 AND (?2 IS NULL OR cluster = ?2)
             ORDER BY created DESC, id DESC",
        )?;
        let rows = stmt.query_map(params![since_ms.unwrap_or(i64::MIN), cluster], set_of_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.store
            .conn()
            .execute("DELETE FROM backup_sets WHERE id = ?1", params![id])?;
        Ok(())
    }
}

fn set_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClusterSet> {
    let layout: String = r.get(3)?;
    let members: String = r.get(4)?;
    Ok(ClusterSet {
        id: r.get(0)?,
        cluster: r.get(1)?,
        created_ms: r.get(2)?,
        // Only this module writes the columns.
        layout: serde_json::from_str(&layout).unwrap_or_default(),
        members: serde_json::from_str(&members).unwrap_or_default(),
    })
}

impl Backups {
    /// Takes an RDB snapshot of every master `view` names, one after the
    /// other, and catalogs them as one set. If one fails, the snapshots
    /// already taken are removed: half a cluster is no backup of it.
    pub fn create_cluster_set(
        &self,
        cluster: &ClusterConfig,
        view: &ClusterView,
        compress: bool,
        progress: &mut dyn Progress,
    ) -> Result<ClusterSet, BackupError> {
        let shards: Vec<_> = view.shards.iter().filter(|s| !s.slots.is_empty()).collect();
        if let Some(orphan) = shards.iter().find(|s| s.master.is_none()) {
            return Err(BackupError::Usage(format!(
                "cluster `{}`: shard {} has no master to snapshot; a set needs every shard",
                cluster.name, orphan.name
            )));
        }
        let created = SystemTime::now();
        let mut members = Vec::new();
        let mut taken: Vec<BackupRecord> = Vec::new();
        for shard in shards {
            let master = shard.master.clone().expect("checked above");
            let target = Target {
                name: cluster.node_target(&master),
                connection: cluster
                    .node_config(&master)
                    .connection_info()
                    .map_err(BackupError::Usage)?,
            };
            match self.create(&target, Kind::Rdb, compress, progress) {
                Ok(record) => {
                    members.push(SetMember {
                        shard: shard.name.clone(),
                        master,
                        backup: record.id.clone(),
                    });
                    taken.push(record);
                }
                Err(e) => {
                    self.discard(&taken);
                    return Err(e);
                }
            }
        }
        let set = ClusterSet {
            id: self.set_id(&cluster.name, created)?,
            cluster: cluster.name.clone(),
            created_ms: ms_of(created),
            layout: view.slot_layout(),
            members,
        };
        if let Err(e) = self.sets.insert(&set) {
            self.discard(&taken);
            return Err(e.into());
        }
        tracing::info!(id = %set.id, cluster = %set.cluster, members = set.members.len(), layout = %show_layout(&set.layout), "Cluster backup set created");
        Ok(set)
    }

    fn discard(&self, records: &[BackupRecord]) {
        for r in records {
            let _ = std::fs::remove_file(&r.path);
            let _ = self.catalog.delete(&r.id);
        }
    }

    fn set_id(&self, cluster: &str, at: SystemTime) -> Result<String, BackupError> {
        let stamp: String = humantime::format_rfc3339_seconds(at)
            .to_string()
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        let safe: String = cluster
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = format!("{safe}-set-{stamp}");
        for n in 1..1000 {
            let id = if n == 1 { base.clone() } else { format!("{base}-{n}") };
            if self.sets.get(&id)?.is_none() && !self.catalog.exists(&id)? {
                return Ok(id);
            }
        }
        Err(BackupError::Usage(format!("too many backup sets named {base}")))
    }

    /// The sets, newest first, each with its members' rows; `since` and
    /// `cluster` narrow it.
    pub fn list_sets(&self, since: Option<SystemTime>, cluster: Option<&str>) -> Result<Vec<SetEntry>, BackupError> {
        let sets = self.sets.list(since.map(ms_of), cluster)?;
        sets.into_iter()
            .map(|set| {
                let mut records = Vec::new();
                for m in &set.members {
                    records.extend(self.catalog.get(&m.backup)?);
                }
                Ok(SetEntry { set, records })
            })
            .collect()
    }

    /// The catalog ids of every set's members: retention never takes one
    /// of them alone.
    pub(super) fn set_members(&self) -> Result<std::collections::HashSet<String>, BackupError> {
        Ok(self
            .sets
            .list(None, None)?
            .into_iter()
            .flat_map(|s| s.members.into_iter().map(|m| m.backup))
            .collect())
    }

    /// Retention for sets, as for single backups but a set at a time: the
    /// newest set of each cluster is kept whatever its age; an older one
    /// past `cutoff_ms` goes whole, files, member rows and its own row. If
    /// a member's file cannot be deleted, every row stays (the set is still
    /// listed, and fails verification if a file is gone) and the error is
    /// reported: the next cleanup finishes it.
    pub(super) fn cleanup_sets(
        &self,
        cutoff_ms: i64,
        cluster: Option<&str>,
        dry_run: bool,
        report: &mut CleanupReport,
    ) -> Result<(), BackupError> {
        let mut newest = std::collections::HashSet::new();
        for entry in self.list_sets(None, cluster)? {
            let is_newest = newest.insert(entry.set.cluster.clone());
            if entry.set.created_ms >= cutoff_ms {
                continue;
            }
            if is_newest {
                report.kept_newest_sets.push(entry);
                continue;
            }
            if !dry_run {
                let failed: Vec<String> = entry
                    .records
                    .iter()
                    .filter_map(|r| match std::fs::remove_file(&r.path) {
                        Ok(()) => None,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(e) => Some(format!(
                            "set {}: member {}: cannot delete {}: {e}",
                            entry.set.id,
                            r.id,
                            r.path.display()
                        )),
                    })
                    .collect();
                if !failed.is_empty() {
                    report.errors.extend(failed);
                    continue;
                }
                for r in &entry.records {
                    self.catalog.delete(&r.id)?;
                }
                self.sets.delete(&entry.set.id)?;
                tracing::info!(id = %entry.set.id, cluster = %entry.set.cluster, members = entry.records.len(), "Backup set removed by retention");
            }
            report.removed_sets.push(entry);
        }
        Ok(())
    }

    /// The set with this id, if `id` names one.
    pub fn get_set(&self, id: &str) -> Result<Option<ClusterSet>, BackupError> {
        Ok(self.sets.get(id)?)
    }

    /// Verifies every member; the set passes only if each does. Every member
    /// is checked even after one fails, so the error names them all.
    pub fn verify_set(&self, id: &str, progress: &mut dyn Progress) -> Result<Vec<Verified>, BackupError> {
        let set = self.get_set(id)?.ok_or_else(|| BackupError::NotFound(id.to_owned()))?;
        let mut passed = Vec::new();
        let mut failed = Vec::new();
        for m in &set.members {
            match self.verify(&m.backup, progress) {
                Ok(v) => passed.push(v),
                Err(e) => failed.push(format!("shard {} ({}): {e}", m.shard, m.backup)),
            }
        }
        if failed.is_empty() {
            Ok(passed)
        } else {
            Err(BackupError::Verify {
                id: id.to_owned(),
                why: format!(
                    "{} of {} member(s) failed: {}",
                    failed.len(),
                    set.members.len(),
                    failed.join("; ")
                ),
            })
        }
    }

    /// What restoring a set onto the live cluster `live` takes. A set whose
    /// slot layout differs from the live cluster's is refused (its RDBs hold
    /// keys of slots the receiving masters do not serve); on the same
    /// layout, each member is an RDB, placed as its shard's master's dump
    /// file, so the answer is the steps, shard by shard.
    pub fn restore_set(&self, id: &str, live: &ClusterView) -> Result<String, BackupError> {
        let set = self.get_set(id)?.ok_or_else(|| BackupError::NotFound(id.to_owned()))?;
        check_layout(&set, live)?;
        self.verify_set(id, &mut super::Silent)?;
        let mut steps = format!(
            "backup set `{}` of cluster `{}` matches the slot layout of `{}` ({}). Its members are RDB \
             snapshots, which cannot be loaded over the network; restore each shard's master with its \
             member's steps (replicas resynchronise by themselves):",
            set.id,
            set.cluster,
            live.cluster,
            show_layout(&set.layout)
        );
        for m in &set.members {
            let member = self.get(&m.backup)?;
            let now = live
                .shards
                .iter()
                .find(|s| s.name == m.shard)
                .and_then(|s| s.master.clone())
                .unwrap_or_else(|| "no master now".into());
            steps.push_str(&format!(
                "\n\nshard {} (master now {now}, snapshot of {}):\n{}",
                m.shard,
                m.master,
                super::rdb_restore_steps(&member)
            ));
        }
        Ok(steps)
    }
}

/// Refuses a set whose slot layout is not the live cluster's, naming both.
pub fn check_layout(set: &ClusterSet, live: &ClusterView) -> Result<(), BackupError> {
    let now = live.slot_layout();
    if now == set.layout {
        return Ok(());
    }
    Err(BackupError::Usage(format!(
        "backup set `{}` cannot be restored onto cluster `{}`: its slot layout differs. The set was taken of \
         `{}` with {} shard(s): {}; `{}` has {} shard(s): {}. Each member holds only its shard's slots, so \
         restore it onto a cluster whose slots are split the same way",
        set.id,
        live.cluster,
        set.cluster,
        set.layout.len(),
        show_layout(&set.layout),
        live.cluster,
        now.len(),
        show_layout(&now)
    )))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::BackupConfig;

    const DAY_MS: i64 = 86_400_000;

    /// A set of three members, catalogued with a file each; `masters` are
    /// the ports of the masters the members were taken of.
    fn add_set(backups: &Backups, dir: &Path, id: &str, cluster: &str, created_ms: i64, masters: [u16; 3]) {
        let mut members = Vec::new();
        for (i, port) in masters.into_iter().enumerate() {
            let master = format!("127.0.0.1:{port}");
            let member = format!("{id}-m{i}");
            let path = dir.join(format!("{member}.rdb"));
            std::fs::write(&path, b"REDIS").unwrap();
            backups
                .catalog
                .insert(&BackupRecord {
                    id: member.clone(),
                    target: format!("{cluster}/{master}"),
                    kind: Kind::Rdb,
                    path,
                    size: 5,
                    checksum: "ab".repeat(32),
                    compressed: false,
                    encrypted: false,
                    created_ms,
                    verified_ms: None,
                    verify_error: None,
                })
                .unwrap();
            members.push(SetMember {
                shard: format!("shard{i}"),
                master,
                backup: member,
            });
        }
        let layout = vec![vec![(0, 5460)], vec![(5461, 10922)], vec![(10923, 16383)]];
        let set = ClusterSet {
            id: id.into(),
            cluster: cluster.into(),
            created_ms,
            layout,
            members,
        };
        backups.sets.insert(&set).unwrap();
    }

    fn ids(entries: &[SetEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.set.id.as_str()).collect()
    }

    #[test]
    fn retention_takes_whole_sets_and_keeps_each_clusters_newest() {
        let state = tempfile::tempdir().unwrap();
        let files = tempfile::tempdir().unwrap();
        let backups = Backups::open(state.path(), &BackupConfig::default()).unwrap();
        let now = ms_of(SystemTime::now());
        add_set(
            &backups,
            files.path(),
            "old",
            "c1",
            now - 30 * DAY_MS,
            [7000, 7001, 7002],
        );
        // Taken after a failover: its first member is the only backup of
        // 7003, which a per-target retention would keep, halving the set.
        add_set(
            &backups,
            files.path(),
            "older",
            "c1",
            now - 40 * DAY_MS,
            [7003, 7001, 7002],
        );
        add_set(&backups, files.path(), "new", "c1", now - DAY_MS, [7000, 7001, 7002]);
        add_set(
            &backups,
            files.path(),
            "lone",
            "c2",
            now - 30 * DAY_MS,
            [8000, 8001, 8002],
        );
        let week = Duration::from_secs(7 * 86_400);

        let dry = backups.cleanup(week, None, None, true).unwrap();
        assert_eq!(ids(&dry.removed_sets), ["old", "older"]);
        assert_eq!(
            ids(&backups.list_sets(None, None).unwrap()),
            ["new", "old", "lone", "older"]
        );

        let report = backups.cleanup(week, None, None, false).unwrap();
        assert_eq!(ids(&report.removed_sets), ["old", "older"]);
        assert_eq!(ids(&report.kept_newest_sets), ["lone"]);
        assert!(report.removed.is_empty(), "no member goes alone: {:?}", report.removed);
        assert_eq!(report.freed_bytes(), 6 * 5);
        for entry in &report.removed_sets {
            for r in &entry.records {
                assert!(!r.path.exists(), "{} left on disk", r.path.display());
                assert!(backups.catalog.get(&r.id).unwrap().is_none());
            }
        }
        let left = backups.list_sets(None, None).unwrap();
        assert_eq!(ids(&left), ["new", "lone"]);
        for entry in &left {
            assert_eq!(entry.records.len(), 3, "{} lost a member", entry.set.id);
            assert!(entry.records.iter().all(|r| r.path.exists()));
        }
        // Sets are rdb backups: a `full` cleanup leaves them alone.
        let full = backups.cleanup(Duration::ZERO, None, Some(Kind::Full), false).unwrap();
        assert!(full.removed_sets.is_empty());
        assert_eq!(ids(&backups.list_sets(None, Some("c2")).unwrap()), ["lone"]);
    }
}
