//! Backups and restores: the guide's `backup_redis` and `restore_redis`.
//!
//! ```text
//!  target ──SYNC (rdb.rs)──────────────┐
//!         ──SCAN+DUMP+PTTL (remote.rs)─┴─> payload ──zstd, age (archive.rs)──> <state_dir>/backups/<id>.*
//!                                                                               └─> row in the catalog (catalog.rs)
//!  archive ──sha256, age -d, zstd -d──> CRC-64 (rdb) / format checksum (logical.rs) ──> verified
//!  full archive ──RESTORE … REPLACE (remote.rs)──> target
//! ```
//!
//! Two kinds: `rdb`, the server's own snapshot taken over the replication
//! protocol (point in time, restored by placing it as the dump file), and
//! `full`, every key's `DUMP` payload and expiry (restored remotely).
//! [`Backups`] is what the CLI and the playbook API call.

pub mod archive;
pub mod catalog;
pub mod cluster_set;
pub mod crc64;
pub mod encryption;
pub mod logical;
pub mod rdb;
pub mod remote;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::ConnectionInfo;

pub use archive::{ArchiveError, Keys, Sealing};
pub use catalog::{BackupRecord, Catalog};
pub use cluster_set::{ClusterSet, SetEntry, SetMember};
pub use logical::FormatError;
pub use rdb::RdbError;
pub use remote::RestoreStats;

use crate::config::{BackupConfig, Config};
use crate::store::{Store, StoreError};

/// Read buffer between an opened archive and the logical-format parser.
const READ_BUFFER: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The server's RDB snapshot.
    Rdb,
    /// Every key's `DUMP` payload and expiry: restorable remotely.
    Full,
}

impl Kind {
    pub fn parse(text: &str) -> Option<Kind> {
        match text.trim().to_ascii_lowercase().as_str() {
            "rdb" => Some(Kind::Rdb),
            "full" => Some(Kind::Full),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rdb => "rdb",
            Kind::Full => "full",
        }
    }

    /// The payload's file extension, before compression and encryption.
    fn extension(self) -> &'static str {
        match self {
            Kind::Rdb => "rdb",
            Kind::Full => "redops",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a long operation reports as it goes; the CLI draws progress bars
/// from it, the engine ignores it.
pub trait Progress {
    /// A new phase of `total` units, when known.
    fn begin(&mut self, phase: &str, total: Option<u64>, unit: Unit);
    fn advance(&mut self, n: u64);
    fn end(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Keys,
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn begin(&mut self, _: &str, _: Option<u64>, _: Unit) {}
    fn advance(&mut self, _: u64) {}
    fn end(&mut self) {}
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A request that cannot be carried out as asked (exit 2 in the CLI).
    #[error("{0}")]
    Usage(String),
    #[error("no backup with id `{0}` in the catalog (see `redops backup list`)")]
    NotFound(String),
    #[error(
        "[backup] require_encryption is set but no age_recipients or age_passphrase is configured: \
         refusing to write an unencrypted backup"
    )]
    EncryptionRequired,
    #[error("{}", rdb_restore_steps(.0))]
    RdbRestore(Box<BackupRecord>),
    #[error("backup `{id}` failed verification: {why}")]
    Verify { id: String, why: String },
    #[error("{context}: {source}")]
    Redis { context: String, source: redis::RedisError },
    #[error("unexpected reply: {0}")]
    Protocol(String),
    #[error("RDB snapshot: {0}")]
    Rdb(#[from] RdbError),
    #[error("logical backup: {0}")]
    Format(#[from] FormatError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("backup catalog: {0}")]
    Catalog(#[from] StoreError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl BackupError {
    /// Whether the request itself was wrong, rather than the operation failing.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BackupError::Usage(_) | BackupError::NotFound(_) | BackupError::RdbRestore(_)
        )
    }
}

/// A server to back up or restore to, by the name the config gives it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub connection: ConnectionInfo,
}

impl Target {
    pub fn addr(&self) -> String {
        crate::redis::connect::address(&self.connection)
    }
}

/// A `[[target]]` by name, or a `[[sentinel]]` group by name (its current
/// master, asked of the Sentinels) or `group/host:port` (that node).
pub fn resolve_target(config: &Config, name: &str) -> Result<Target, BackupError> {
    if let Some(t) = config.target(name) {
        let connection = t.connection_info().map_err(BackupError::Usage)?;
        return Ok(Target {
            name: name.to_owned(),
            connection,
        });
    }
    let (group_name, node) = match name.split_once('/') {
        Some((g, a)) => (g, Some(a.to_owned())),
        None => (name, None),
    };
    if let Some(cluster) = config.clusters.iter().find(|c| c.name == group_name) {
        // One node of a cluster is a server like any other; the cluster
        // itself is backed up as a set (`Backups::create_cluster_set`).
        let Some(addr) = node else {
            return Err(BackupError::Usage(format!(
                "`{name}` is a cluster: back it up as a set of one RDB per master \
                 (redops backup create --target {name} --type rdb), or name one node as `{name}/host:port`"
            )));
        };
        let connection = cluster
            .node_config(&addr)
            .connection_info()
            .map_err(BackupError::Usage)?;
        return Ok(Target {
            name: name.to_owned(),
            connection,
        });
    }
    let Some(group) = config.sentinels.iter().find(|g| g.name == group_name) else {
        let mut known: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        known.extend(config.sentinels.iter().map(|g| g.name.as_str()));
        known.extend(config.clusters.iter().map(|c| c.name.as_str()));
        return Err(BackupError::Usage(format!(
            "no target, Sentinel group or cluster named `{name}` in {} (known: {})",
            config.path.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    let timeout = config.engine.connect_timeout.max(Duration::from_millis(500));
    let addr = match node {
        Some(a) => a,
        None => crate::sentinel::discovery::master_addr_blocking(group, timeout).ok_or_else(|| {
            BackupError::Usage(format!(
                "no Sentinel of group `{}` named a master for `{}`",
                group.name, group.master
            ))
        })?,
    };
    let connection = group.node_config(&addr).connection_info().map_err(BackupError::Usage)?;
    Ok(Target {
        name: name.to_owned(),
        connection,
    })
}

/// What a backup operation needs from the config, for callers that keep
/// it around (the playbook runner).
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub state_dir: PathBuf,
    pub config: BackupConfig,
}

impl BackupSettings {
    pub fn from_config(config: &Config) -> BackupSettings {
        BackupSettings {
            state_dir: config.engine.state_dir.clone(),
            config: config.backup.clone(),
        }
    }

    pub fn open(&self) -> Result<Backups, BackupError> {
        Backups::open(&self.state_dir, &self.config)
    }
}

/// The backups of one state directory.
pub struct Backups {
    dir: PathBuf,
    config: BackupConfig,
    catalog: Catalog,
    /// Sets of per-master snapshots of a cluster.
    sets: cluster_set::ClusterSets,
}

/// What a cleanup removed, or would remove.
#[derive(Debug, Default)]
pub struct CleanupReport {
    pub removed: Vec<BackupRecord>,
    /// Past the retention but kept: the newest backup of its target and kind.
    pub kept_newest: Vec<BackupRecord>,
    /// Cluster sets removed whole, and sets past the retention kept as the
    /// newest of their cluster.
    pub removed_sets: Vec<SetEntry>,
    pub kept_newest_sets: Vec<SetEntry>,
    /// Files that could not be deleted (their rows are kept).
    pub errors: Vec<String>,
    pub dry_run: bool,
}

impl CleanupReport {
    pub fn freed_bytes(&self) -> u64 {
        self.removed.iter().map(|r| r.size).sum::<u64>() + self.removed_sets.iter().map(SetEntry::size).sum::<u64>()
    }
}

/// What a passed verification found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub record: BackupRecord,
    pub detail: String,
    /// Keys in a `full` backup.
    pub keys: Option<u64>,
}

#[derive(Debug)]
pub struct RestoreReport {
    pub pre_backup: Option<BackupRecord>,
    pub stats: RestoreStats,
}

impl Backups {
    pub fn open(state_dir: &Path, config: &BackupConfig) -> Result<Backups, BackupError> {
        let store = Store::open(state_dir)?;
        // The catalog records absolute paths: the CLI may run from anywhere.
        let state_dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
        Ok(Backups {
            dir: state_dir.join("backups"),
            config: config.clone(),
            sets: cluster_set::ClusterSets::open(store.clone())?,
            catalog: Catalog::open(store)?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn get(&self, id: &str) -> Result<BackupRecord, BackupError> {
        self.catalog
            .get(id)?
            .ok_or_else(|| BackupError::NotFound(id.to_owned()))
    }

    pub fn list(&self, since: Option<SystemTime>, target: Option<&str>) -> Result<Vec<BackupRecord>, BackupError> {
        Ok(self.catalog.list(since.map(ms_of), target)?)
    }

    /// Takes a backup of `target` into a new archive and catalogs it.
    pub fn create(
        &self,
        target: &Target,
        kind: Kind,
        compress: bool,
        progress: &mut dyn Progress,
    ) -> Result<BackupRecord, BackupError> {
        if self.config.require_encryption && !self.config.encrypts() {
            return Err(BackupError::EncryptionRequired);
        }
        let sealing = Sealing::from_config(&self.config, compress)?;
        let created = SystemTime::now();
        let (id, path) = self.new_name(&target.name, kind, created, &sealing)?;
        let mut archive = archive::ArchiveWriter::create(&path, &sealing)?;
        let timeout = self.config.io_timeout;
        let detail = match kind {
            Kind::Rdb => {
                let stats = rdb::fetch(&target.connection, timeout, &mut archive, progress)?;
                format!(
                    "RDB v{} of {} bytes ({}{})",
                    stats.summary.rdb_version,
                    stats.summary.bytes,
                    if stats.diskless { "diskless" } else { "from disk" },
                    if stats.rdb_only { "" } else { ", plain SYNC" }
                )
            }
            Kind::Full => {
                let mut conn = connect(&target.connection, timeout)?;
                let (redis_version, dbs) = remote::server_keyspace(&mut conn)?;
                let header = logical::Header {
                    version: logical::VERSION,
                    created_ms: ms_of(created) as u64,
                    source: format!("{} ({})", target.name, target.addr()),
                    redis_version,
                };
                let write_err = |source| BackupError::Io {
                    context: "cannot write the backup".into(),
                    source,
                };
                let mut writer = logical::Writer::new(&mut archive, &header).map_err(write_err)?;
                let stats = remote::dump(&mut conn, &mut writer, &dbs, self.config.batch_size, progress)?;
                writer.finish().map_err(write_err)?;
                format!(
                    "{} keys in {} database(s){}",
                    stats.keys,
                    stats.dbs.len(),
                    if stats.vanished > 0 {
                        format!(", {} deleted or expired while dumping", stats.vanished)
                    } else {
                        String::new()
                    }
                )
            }
        };
        let sealed = archive.finish()?;
        let record = BackupRecord {
            id,
            target: target.name.clone(),
            kind,
            path: sealed.path,
            size: sealed.size,
            checksum: sealed.sha256,
            compressed: sealing.compression.is_some(),
            encrypted: sealing.encryption.is_some(),
            created_ms: ms_of(created),
            verified_ms: None,
            verify_error: None,
        };
        if let Err(e) = self.catalog.insert(&record) {
            // An archive no catalog row names would never be cleaned up.
            let _ = std::fs::remove_file(&record.path);
            return Err(e.into());
        }
        tracing::info!(id = %record.id, target = %record.target, kind = %kind, size = record.size, encrypted = record.encrypted, %detail, "Backup created");
        Ok(record)
    }

    /// Checks a backup end to end and records the outcome in the catalog:
    /// the file's SHA-256 against the catalog, then decryption and
    /// decompression, then the payload's own checksum (CRC-64 for an RDB,
    /// the format's SHA-256 and each key's CRC-64 for a full backup).
    pub fn verify(&self, id: &str, progress: &mut dyn Progress) -> Result<Verified, BackupError> {
        let record = self.get(id)?;
        let outcome = self.check(&record, progress);
        let error = outcome.as_ref().err().map(String::as_str);
        self.catalog.mark_verified(id, ms_of(SystemTime::now()), error)?;
        match outcome {
            Ok((detail, keys)) => {
                tracing::info!(id, %detail, "Backup verified");
                let record = self.get(id)?;
                Ok(Verified { record, detail, keys })
            }
            Err(why) => {
                tracing::warn!(id, error = %why, "Backup failed verification");
                Err(BackupError::Verify { id: id.to_owned(), why })
            }
        }
    }

    fn check(&self, record: &BackupRecord, progress: &mut dyn Progress) -> Result<(String, Option<u64>), String> {
        let (sha256, size) = archive::file_sha256(&record.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("the archive {} is missing", record.path.display()),
            _ => format!("cannot read {}: {e}", record.path.display()),
        })?;
        if sha256 != record.checksum {
            return Err(format!(
                "the archive's SHA-256 is {sha256} ({size} bytes) but {} ({} bytes) was recorded when it was \
                 written: the file is corrupt or was changed",
                record.checksum, record.size
            ));
        }
        let keys = Keys::from_config(&self.config);
        let reader =
            archive::open(&record.path, record.compressed, record.encrypted, &keys).map_err(|e| e.to_string())?;
        let layers = match (record.compressed, record.encrypted) {
            (true, true) => "decrypted and decompressed; ",
            (true, false) => "decompressed; ",
            (false, true) => "decrypted; ",
            (false, false) => "",
        };
        match record.kind {
            Kind::Rdb => {
                progress.begin("verify", None, Unit::Bytes);
                let summary = rdb::check(reader, progress).map_err(|e| e.to_string())?;
                progress.end();
                let crc = match summary.checksum {
                    Some(crc) => format!("CRC-64 {crc:016x} matches"),
                    None => "the server wrote no checksum (rdbchecksum no): framing checked only".to_owned(),
                };
                Ok((
                    format!(
                        "SHA-256 matches; {layers}RDB v{} of {} bytes; {crc}",
                        summary.rdb_version, summary.bytes
                    ),
                    None,
                ))
            }
            Kind::Full => {
                progress.begin("verify", None, Unit::Keys);
                let reader = BufReader::with_capacity(READ_BUFFER, reader);
                let summary = logical::check(reader, progress).map_err(|e| e.to_string())?;
                progress.end();
                Ok((
                    format!(
                        "SHA-256 matches; {layers}{} keys in {} database(s); format checksum and every DUMP \
                         payload's CRC-64 match",
                        summary.keys,
                        summary.dbs.len()
                    ),
                    Some(summary.keys),
                ))
            }
        }
    }

    /// Restores a `full` backup into `target`: verifies it first (and
    /// refuses it if that fails), takes a full backup of the target first
    /// unless `pre_backup` is false, then `RESTORE … REPLACE`s every key.
    pub fn restore(
        &self,
        id: &str,
        target: &Target,
        pre_backup: bool,
        progress: &mut dyn Progress,
    ) -> Result<RestoreReport, BackupError> {
        let record = self.get(id)?;
        if record.kind == Kind::Rdb {
            return Err(BackupError::RdbRestore(Box::new(record)));
        }
        let verified = self.verify(id, progress)?;
        let pre_backup = if pre_backup {
            let pre = self.create(target, Kind::Full, true, progress)?;
            tracing::info!(id = %pre.id, target = %target.name, "Pre-restore backup taken");
            Some(pre)
        } else {
            None
        };
        let keys = Keys::from_config(&self.config);
        let reader = archive::open(&record.path, record.compressed, record.encrypted, &keys)?;
        let (mut reader, _) = logical::Reader::open(BufReader::with_capacity(READ_BUFFER, reader))?;
        let mut conn = connect(&target.connection, self.config.io_timeout)?;
        let stats = remote::restore(&mut conn, &mut reader, verified.keys, self.config.batch_size, progress)?;
        tracing::info!(id, target = %target.name, restored = stats.restored, expired = stats.expired, failed = stats.failed, "Backup restored");
        Ok(RestoreReport { pre_backup, stats })
    }

    /// Removes backups older than `retention` (of one target and one kind,
    /// if given), files and rows. The newest backup of each target and kind
    /// is kept whatever its age: a cleanup never leaves a target without a
    /// backup. Members of a cluster set are never taken alone: sets follow
    /// the same retention a whole set at a time (`rdb` kind, `target` the
    /// cluster's name).
    pub fn cleanup(
        &self,
        retention: Duration,
        target: Option<&str>,
        kind: Option<Kind>,
        dry_run: bool,
    ) -> Result<CleanupReport, BackupError> {
        let cutoff = ms_of(SystemTime::now()) - retention.as_millis().min(i64::MAX as u128) as i64;
        let all = self.catalog.list(None, target)?;
        let members = self.set_members()?;
        let mut newest = std::collections::HashSet::new();
        let mut report = CleanupReport {
            dry_run,
            ..CleanupReport::default()
        };
        // `all` is newest first: the first of each (target, kind) is the newest.
        let singles = all
            .into_iter()
            .filter(|r| kind.is_none_or(|k| r.kind == k) && !members.contains(&r.id));
        for record in singles {
            let is_newest = newest.insert((record.target.clone(), record.kind));
            if record.created_ms >= cutoff {
                continue;
            }
            if is_newest {
                report.kept_newest.push(record);
                continue;
            }
            if !dry_run {
                match std::fs::remove_file(&record.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        report
                            .errors
                            .push(format!("{}: cannot delete {}: {e}", record.id, record.path.display()));
                        continue;
                    }
                }
                self.catalog.delete(&record.id)?;
                tracing::info!(id = %record.id, target = %record.target, "Backup removed by retention");
            }
            report.removed.push(record);
        }
        if kind.is_none_or(|k| k == Kind::Rdb) {
            self.cleanup_sets(cutoff, target, dry_run, &mut report)?;
        }
        Ok(report)
    }

    /// A fresh id and path: `<target>-<kind>-<UTC time>[-n]`.
    fn new_name(
        &self,
        target: &str,
        kind: Kind,
        at: SystemTime,
        sealing: &Sealing,
    ) -> Result<(String, PathBuf), BackupError> {
        let stamp: String = humantime::format_rfc3339_seconds(at)
            .to_string()
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        let safe: String = target
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = format!("{safe}-{kind}-{stamp}");
        for n in 1..1000 {
            let id = if n == 1 { base.clone() } else { format!("{base}-{n}") };
            let path = self
                .dir
                .join(format!("{id}.{}{}", kind.extension(), sealing.extension()));
            if !path.exists() && !self.catalog.exists(&id)? {
                return Ok((id, path));
            }
        }
        Err(BackupError::Usage(format!(
            "too many backups named {base} in one second"
        )))
    }
}

fn connect(info: &ConnectionInfo, timeout: Duration) -> Result<redis::Connection, BackupError> {
    crate::redis::connect::connect_blocking(info, timeout).map_err(|source| BackupError::Redis {
        context: format!("cannot connect to {}", crate::redis::connect::address(info)),
        source,
    })
}

pub fn ms_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as i64
}

/// What to do instead of a remote restore of an RDB backup.
pub fn rdb_restore_steps(record: &BackupRecord) -> String {
    let path = record.path.display();
    let passphrase_note = if record.encrypted {
        "\n\x20    (encrypted to a passphrase: `age -d` asks for it; leave out -i)"
    } else {
        ""
    };
    let extract = match (record.encrypted, record.compressed) {
        (true, true) => format!("age -d -i <identity file> {path} | zstd -d -o dump.rdb"),
        (true, false) => format!("age -d -i <identity file> -o dump.rdb {path}"),
        (false, true) => format!("zstd -d {path} -o dump.rdb"),
        (false, false) => format!("cp {path} dump.rdb"),
    };
    format!(
        "backup `{id}` is an RDB snapshot: it cannot be loaded over the network. To restore it:\n\
         \x20 1. Extract it:            {extract}{passphrase_note}\n\
         \x20 2. Check it:              redis-check-rdb dump.rdb\n\
         \x20 3. Find the dump file:    redis-cli -h HOST -p PORT CONFIG GET dir; redis-cli ... CONFIG GET dbfilename\n\
         \x20 4. Stop the server without saving, so it does not overwrite the file: \
         redis-cli ... SHUTDOWN NOSAVE (or systemctl stop redis-server)\n\
         \x20 5. Move the old <dir>/<dbfilename> aside, put dump.rdb in its place, owned by the server's user \
         (chown redis:redis; chmod 0660)\n\
         \x20 6. If the server runs with appendonly yes, it loads the AOF, not the RDB: start it once with \
         appendonly no, then CONFIG SET appendonly yes (which rewrites the AOF from the loaded data)\n\
         \x20 7. Start the server and check: redis-cli ... INFO persistence (loading:0), DBSIZE\n\
         \x20 Replicas resynchronise from the restored master by themselves. A `full` backup restores remotely: \
         redops backup create --target {target} --type full",
        id = record.id,
        target = record.target,
    )
}
