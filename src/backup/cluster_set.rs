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

use super::{BackupError, BackupRecord, Backups, Kind, Progress, Target, Verified, ms_of};
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
        let row = stmt
            .query_row(params![id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .optional()?;
        Ok(row.map(|(id, cluster, created_ms, layout, members)| ClusterSet {
            id,
            cluster,
            created_ms,
            // Only this module writes the columns.
            layout: serde_json::from_str(&layout).unwrap_or_default(),
            members: serde_json::from_str(&members).unwrap_or_default(),
        }))
    }
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
