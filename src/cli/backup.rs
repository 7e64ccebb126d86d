//! `redops backup create|list|verify|cleanup`: the guide's `backup_redis
//! --type full --compress`, `--list --days-back 7`, `--verify --backup-id`
//! and `--cleanup --retention-days 14`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{ConfigArg, EXIT_FAILED, EXIT_USAGE};
use crate::backup::{BackupError, BackupRecord, Backups, Kind, Progress, SetEntry, Unit};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: BackupCommand,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Take a backup of a target now.
    Create(CreateArgs),
    /// The cataloged backups, newest first; a cluster's backup set is one
    /// entry listing its per-master members.
    List(ListArgs),
    /// Check a backup end to end: file checksum, decryption, decompression,
    /// then the RDB's CRC-64 or the full backup's checksums. Exit 1 if it fails.
    Verify(VerifyArgs),
    /// Delete backups older than the retention. The newest backup of each
    /// target and kind is always kept; a cluster's backup sets go whole,
    /// never a member alone, and its newest set is always kept.
    Cleanup(CleanupArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A `[[target]]`, a `[[sentinel]]` group (its current master) or a
    /// `[[cluster]]` (a set of one RDB per master) of the config.
    #[arg(long)]
    pub target: String,
    /// `rdb`: the server's snapshot, taken like `redis-cli --rdb`. `full`:
    /// every key's DUMP payload and TTL, restorable with `redops restore`.
    #[arg(long = "type", value_parser = ["rdb", "full"])]
    pub kind: String,
    /// Compress with zstd (the default).
    #[arg(long, overrides_with = "no_compress")]
    pub compress: bool,
    /// Store the payload uncompressed.
    #[arg(long, overrides_with = "compress")]
    pub no_compress: bool,
    /// Print the new backup's catalog row as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only backups taken in the last N days.
    #[arg(long)]
    pub days_back: Option<u64>,
    /// Only backups of this target.
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[arg(long)]
    pub backup_id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Delete backups older than N days.
    #[arg(long)]
    pub retention_days: u64,
    /// Only backups of this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Only backups of this kind.
    #[arg(long = "type", value_parser = ["rdb", "full"])]
    pub kind: Option<String>,
    /// Say what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> ExitCode {
    let Some(config) = load_config(&args.config) else {
        return ExitCode::from(EXIT_USAGE);
    };
    let backups = match Backups::open(&config.engine.state_dir, &config.backup) {
        Ok(b) => b,
        Err(e) => return fail("backup", &e),
    };
    match args.command {
        BackupCommand::Create(a) => create(&config, &backups, a),
        BackupCommand::List(a) => list(&backups, a),
        BackupCommand::Verify(a) => verify(&backups, a),
        BackupCommand::Cleanup(a) => cleanup(&backups, a),
    }
}

pub(crate) fn load_config(arg: &ConfigArg) -> Option<Config> {
    arg.load().ok().map(|(config, _)| config)
}

/// Prints the error (secrets blanked) and picks the exit code.
pub(crate) fn fail(command: &str, e: &BackupError) -> ExitCode {
    eprintln!("redops {command}: {}", crate::secrets::redact(&e.to_string()));
    if e.is_usage() || matches!(e, BackupError::EncryptionRequired) {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

fn create(config: &Config, backups: &Backups, args: CreateArgs) -> ExitCode {
    let kind = Kind::parse(&args.kind).expect("clap allows only rdb and full");
    if let Some(cluster) = config.clusters.iter().find(|c| c.name == args.target) {
        return create_set(config, backups, cluster, kind, &args);
    }
    let target = match crate::backup::resolve_target(config, &args.target) {
        Ok(t) => t,
        Err(e) => return fail("backup create", &e),
    };
    let started = Instant::now();
    let mut progress = progress();
    match backups.create(&target, kind, !args.no_compress, progress.as_mut()) {
        Ok(record) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&record.to_json()).unwrap_or_default()
                );
            } else {
                println!("backup created: {}", record.id);
                println!("  target    {} ({})", record.target, target.addr());
                println!("  kind      {}", record.kind);
                println!("  path      {}", record.path.display());
                println!("  size      {} ({})", HumanBytes(record.size), sealing(&record));
                println!("  sha256    {}", record.checksum);
                println!("  took      {:.1}s", started.elapsed().as_secs_f64());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail("backup create", &e),
    }
}

/// A cluster's backup: a set of one RDB per master.
fn create_set(
    config: &Config,
    backups: &Backups,
    cluster: &crate::config::ClusterConfig,
    kind: Kind,
    args: &CreateArgs,
) -> ExitCode {
    if kind != Kind::Rdb {
        let e = BackupError::Usage(format!(
            "`{}` is a cluster: its backup is a set of one RDB snapshot per master; use --type rdb",
            cluster.name
        ));
        return fail("backup create", &e);
    }
    let view = match discover(config, cluster) {
        Ok(v) => v,
        Err(e) => return fail("backup create", &e),
    };
    let started = Instant::now();
    let mut progress = progress();
    match backups.create_cluster_set(cluster, &view, !args.no_compress, progress.as_mut()) {
        Ok(set) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&set.to_json()).unwrap_or_default());
            } else {
                println!("backup set created: {}", set.id);
                println!("  cluster   {}", set.cluster);
                println!("  layout    {}", crate::backup::cluster_set::show_layout(&set.layout));
                for m in &set.members {
                    println!("  shard {:<16} {} ({})", m.shard, m.backup, m.master);
                }
                println!("  took      {:.1}s", started.elapsed().as_secs_f64());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail("backup create", &e),
    }
}

/// The cluster's topology now, asked of its nodes.
pub(crate) fn discover(
    config: &Config,
    cluster: &crate::config::ClusterConfig,
) -> Result<crate::cluster::ClusterView, BackupError> {
    let timeout = config.engine.connect_timeout.max(Duration::from_millis(500));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BackupError::Io {
            context: "cannot start the async runtime".into(),
            source: e,
        })?;
    runtime
        .block_on(crate::cluster::Discoverer::new(cluster.clone(), timeout).discover())
        .map_err(BackupError::Usage)
}

fn list(backups: &Backups, args: ListArgs) -> ExitCode {
    let since = args
        .days_back
        .map(|d| SystemTime::now() - Duration::from_secs(d.saturating_mul(86_400).min(1 << 40)));
    let listed = backups.list(since, args.target.as_deref()).and_then(|records| {
        let sets = backups.list_sets(since, args.target.as_deref())?;
        Ok((records, sets))
    });
    let (records, sets) = match listed {
        Ok(l) => l,
        Err(e) => return fail("backup list", &e),
    };
    // A set's members are shown in their set, not one by one.
    let members = match backups.list_sets(None, None) {
        Ok(all) => all
            .into_iter()
            .flat_map(|e| e.set.members.into_iter().map(|m| m.backup))
            .collect::<std::collections::HashSet<_>>(),
        Err(e) => return fail("backup list", &e),
    };
    let records: Vec<BackupRecord> = records.into_iter().filter(|r| !members.contains(&r.id)).collect();
    if args.json {
        let mut rows: Vec<(i64, &str, serde_json::Value)> = records
            .iter()
            .map(|r| (r.created_ms, r.id.as_str(), r.to_json()))
            .collect();
        rows.extend(sets.iter().map(|e| (e.set.created_ms, e.set.id.as_str(), e.to_json())));
        rows.sort_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)));
        let rows: Vec<_> = rows.into_iter().map(|(_, _, row)| row).collect();
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else {
        if !records.is_empty() || sets.is_empty() {
            print_table(&records);
        }
        print_sets(&sets);
    }
    ExitCode::SUCCESS
}

/// Each set as one entry, its members indented below it.
fn print_sets(sets: &[SetEntry]) {
    for entry in sets {
        let set = &entry.set;
        println!(
            "\nset {}  cluster {}  created {}  {} member(s), {}  layout {}",
            set.id,
            set.cluster,
            crate::backup::catalog::rfc3339(set.created_ms),
            set.members.len(),
            HumanBytes(entry.size()),
            crate::backup::cluster_set::show_layout(&set.layout)
        );
        for m in &set.members {
            match entry.records.iter().find(|r| r.id == m.backup) {
                Some(r) => println!(
                    "  shard {:<16} {}  {}  {:>10}  {}",
                    m.shard,
                    m.master,
                    r.id,
                    HumanBytes(r.size).to_string(),
                    sealing(r)
                ),
                None => println!(
                    "  shard {:<16} {}  {}  MISSING from the catalog",
                    m.shard, m.master, m.backup
                ),
            }
        }
    }
}

pub(crate) fn print_table(records: &[BackupRecord]) {
    if records.is_empty() {
        println!("no backups");
        return;
    }
    let id_width = records.iter().map(|r| r.id.len()).max().unwrap_or(2).max(2);
    let target_width = records.iter().map(|r| r.target.len()).max().unwrap_or(6).max(6);
    println!(
        "{:id_width$}  {:target_width$}  {:4}  {:20}  {:>10}  {:9}  VERIFIED",
        "ID", "TARGET", "KIND", "CREATED", "SIZE", "SEALING"
    );
    for r in records {
        let verified = match (&r.verified_ms, &r.verify_error) {
            (Some(at), _) => crate::backup::catalog::rfc3339(*at),
            (None, Some(e)) => format!("FAILED: {}", first_line(e)),
            (None, None) => "never".to_owned(),
        };
        println!(
            "{:id_width$}  {:target_width$}  {:4}  {:20}  {:>10}  {:9}  {}",
            r.id,
            r.target,
            r.kind.as_str(),
            crate::backup::catalog::rfc3339(r.created_ms),
            HumanBytes(r.size).to_string(),
            sealing(r),
            verified
        );
    }
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or_default();
    let cut = (0..=line.len().min(80))
        .rev()
        .find(|i| line.is_char_boundary(*i))
        .unwrap_or(0);
    &line[..cut]
}

fn sealing(r: &BackupRecord) -> &'static str {
    match (r.compressed, r.encrypted) {
        (true, true) => "zstd+age",
        (true, false) => "zstd",
        (false, true) => "age",
        (false, false) => "plain",
    }
}

fn verify(backups: &Backups, args: VerifyArgs) -> ExitCode {
    let mut progress = progress();
    match backups.get_set(&args.backup_id) {
        Ok(Some(set)) => return verify_set(backups, &set, args.json),
        Ok(None) => {}
        Err(e) => return fail("backup verify", &e),
    }
    match backups.verify(&args.backup_id, progress.as_mut()) {
        Ok(v) => {
            if args.json {
                let mut row = v.record.to_json();
                row["detail"] = v.detail.into();
                println!("{}", serde_json::to_string_pretty(&row).unwrap_or_default());
            } else {
                println!("backup {} verified: {}", v.record.id, v.detail);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail("backup verify", &e),
    }
}

/// Each member of a cluster set, verified in turn.
fn verify_set(backups: &Backups, set: &crate::backup::ClusterSet, json: bool) -> ExitCode {
    let mut progress = progress();
    match backups.verify_set(&set.id, progress.as_mut()) {
        Ok(verified) => {
            if json {
                let mut row = set.to_json();
                row["verified"] = verified
                    .iter()
                    .map(|v| serde_json::json!({"id": v.record.id, "detail": v.detail}))
                    .collect::<Vec<_>>()
                    .into();
                println!("{}", serde_json::to_string_pretty(&row).unwrap_or_default());
            } else {
                println!("backup set {} verified: {} member(s)", set.id, verified.len());
                for (m, v) in set.members.iter().zip(&verified) {
                    println!("  shard {:<16} {}: {}", m.shard, v.record.id, v.detail);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail("backup verify", &e),
    }
}

fn cleanup(backups: &Backups, args: CleanupArgs) -> ExitCode {
    let retention = Duration::from_secs(args.retention_days.saturating_mul(86_400).min(1 << 40));
    let kind = args.kind.as_deref().and_then(Kind::parse);
    let report = match backups.cleanup(retention, args.target.as_deref(), kind, args.dry_run) {
        Ok(r) => r,
        Err(e) => return fail("backup cleanup", &e),
    };
    if args.json {
        let out = serde_json::json!({
            "dry_run": report.dry_run,
            "removed": report.removed.iter().map(BackupRecord::to_json).collect::<Vec<_>>(),
            "kept_newest": report.kept_newest.iter().map(BackupRecord::to_json).collect::<Vec<_>>(),
            "removed_sets": report.removed_sets.iter().map(SetEntry::to_json).collect::<Vec<_>>(),
            "kept_newest_sets": report.kept_newest_sets.iter().map(SetEntry::to_json).collect::<Vec<_>>(),
            "freed_bytes": report.freed_bytes(),
            "errors": report.errors,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        let verb = if report.dry_run { "would delete" } else { "deleted" };
        for r in &report.removed {
            println!("{verb} {} ({}, {})", r.id, HumanBytes(r.size), r.path.display());
        }
        for e in &report.removed_sets {
            println!(
                "{verb} set {} of cluster {} with its {} member(s) ({})",
                e.set.id,
                e.set.cluster,
                e.records.len(),
                HumanBytes(e.size())
            );
        }
        for r in &report.kept_newest {
            println!(
                "kept {}: older than {} days but the newest {} backup of {}",
                r.id, args.retention_days, r.kind, r.target
            );
        }
        for e in &report.kept_newest_sets {
            println!(
                "kept set {}: older than {} days but the newest backup set of cluster {}",
                e.set.id, args.retention_days, e.set.cluster
            );
        }
        println!(
            "{verb} {} backup(s) and {} set(s), {}",
            report.removed.len(),
            report.removed_sets.len(),
            HumanBytes(report.freed_bytes())
        );
    }
    for e in &report.errors {
        eprintln!("redops backup cleanup: {e}");
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

// ---------------------------------------------------------------------------
// Progress

/// Bars on a terminal, a plain line every few seconds otherwise (a log, cron).
pub(crate) fn progress() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars { bar: None })
    } else {
        Box::new(Lines::default())
    }
}

struct Bars {
    bar: Option<ProgressBar>,
}

impl Progress for Bars {
    fn begin(&mut self, phase: &str, total: Option<u64>, unit: Unit) {
        self.end();
        let template = match (unit, total) {
            (Unit::Bytes, Some(_)) => "{msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            (Unit::Bytes, None) => "{msg:10} {spinner} {bytes} {bytes_per_sec}",
            (Unit::Keys, Some(_)) => "{msg:10} [{bar:30}] {human_pos}/{human_len} keys {per_sec} eta {eta}",
            (Unit::Keys, None) => "{msg:10} {spinner} {human_pos} keys {per_sec}",
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr()).with_style(style);
        bar.set_message(phase.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
    }

    fn advance(&mut self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    fn end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

const LINE_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Lines {
    phase: String,
    unit: Option<Unit>,
    total: Option<u64>,
    done: u64,
    started: Option<Instant>,
    last: Option<Instant>,
}

impl Lines {
    fn print(&self) {
        let (Some(unit), Some(started)) = (self.unit, self.started) else {
            return;
        };
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        let amount = match unit {
            Unit::Bytes => format!("{} ({}/s)", HumanBytes(self.done), HumanBytes(rate as u64)),
            Unit::Keys => format!("{} keys ({:.0} keys/s)", self.done, rate),
        };
        let of = match (self.total, unit) {
            (Some(t), Unit::Bytes) => format!(" of {}", HumanBytes(t)),
            (Some(t), Unit::Keys) => format!(" of {t}"),
            (None, _) => String::new(),
        };
        eprintln!("{}: {amount}{of}, {secs:.1}s", self.phase);
    }
}

impl Progress for Lines {
    fn begin(&mut self, phase: &str, total: Option<u64>, unit: Unit) {
        *self = Lines {
            phase: phase.to_owned(),
            unit: Some(unit),
            total,
            done: 0,
            started: Some(Instant::now()),
            last: Some(Instant::now()),
        };
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.last.is_some_and(|l| l.elapsed() >= LINE_EVERY) {
            self.last = Some(Instant::now());
            self.print();
        }
    }

    fn end(&mut self) {
        self.print();
        self.unit = None;
    }
}
