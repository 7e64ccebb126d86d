//! `redops restore --list | --backup-id ID [--target T] --confirm
//! [--no-pre-backup]`: the guide's `restore_redis`.
//!
//! Only `full` backups restore remotely; for an `rdb` backup the command
//! prints the steps to put it in place as the server's dump file.

use std::process::ExitCode;
use std::time::Instant;

use indicatif::HumanBytes;

use super::backup::{fail, load_config, print_table, progress};
use super::{ConfigArg, EXIT_FAILED, EXIT_USAGE};
use crate::backup::{BackupError, Backups, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// List the backups that can be restored.
    #[arg(long, conflicts_with = "backup_id")]
    pub list: bool,
    /// The backup to restore (see `--list`).
    #[arg(long, required_unless_present = "list")]
    pub backup_id: Option<String>,
    /// Where to restore it: a `[[target]]` or `[[sentinel]]` group of the
    /// config. Defaults to the target the backup was taken of.
    #[arg(long)]
    pub target: Option<String>,
    /// Really do it. Without it, say what would happen and exit 2.
    #[arg(long)]
    pub confirm: bool,
    /// Skip the full backup of the target taken before restoring (NOT RECOMMENDED).
    #[arg(long)]
    pub no_pre_backup: bool,
    /// `--list` as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> ExitCode {
    let Some(config) = load_config(&args.config) else {
        return ExitCode::from(EXIT_USAGE);
    };
    let backups = match Backups::open(&config.engine.state_dir, &config.backup) {
        Ok(b) => b,
        Err(e) => return fail("restore", &e),
    };
    if args.list {
        return list(&backups, args.json);
    }
    let id = args
        .backup_id
        .as_deref()
        .expect("clap requires --backup-id without --list");
    match backups.get_set(id) {
        Ok(Some(set)) => return restore_set(&config, &backups, &set, args.target.as_deref()),
        Ok(None) => {}
        Err(e) => return fail("restore", &e),
    }
    let record = match backups.get(id) {
        Ok(r) => r,
        Err(e) => return fail("restore", &e),
    };
    if record.kind == Kind::Rdb {
        return fail("restore", &BackupError::RdbRestore(Box::new(record)));
    }
    let target_name = args.target.clone().unwrap_or_else(|| record.target.clone());
    let target = match crate::backup::resolve_target(&config, &target_name) {
        Ok(t) => t,
        Err(e) => return fail("restore", &e),
    };
    let pre_backup = !args.no_pre_backup;
    if !args.confirm {
        eprintln!("redops restore: not confirmed, nothing was done. With --confirm this would:");
        eprintln!(
            "  1. verify backup {} ({}, {}, taken {} of `{}`) and stop if it fails",
            record.id,
            record.kind,
            HumanBytes(record.size),
            crate::backup::catalog::rfc3339(record.created_ms),
            record.target
        );
        if pre_backup {
            eprintln!(
                "  2. take a full backup of `{}` ({}) first, to undo the restore with",
                target.name,
                target.addr()
            );
        } else {
            eprintln!(
                "  2. take NO backup of `{}` first (--no-pre-backup): NOT RECOMMENDED",
                target.name
            );
        }
        eprintln!(
            "  3. RESTORE every key of the backup into `{}` ({}) with REPLACE: keys of the same name are \
             overwritten, keys the backup does not hold are left alone, keys whose TTL ran out since the \
             backup are skipped",
            target.name,
            target.addr()
        );
        eprintln!("Run again with --confirm to proceed.");
        return ExitCode::from(EXIT_USAGE);
    }
    if !pre_backup {
        eprintln!("redops restore: WARNING: no pre-restore backup (--no-pre-backup)");
    }
    let started = Instant::now();
    let mut progress = progress();
    match backups.restore(id, &target, pre_backup, progress.as_mut()) {
        Ok(report) => {
            if let Some(pre) = &report.pre_backup {
                println!("pre-restore backup: {} ({})", pre.id, HumanBytes(pre.size));
            }
            let s = &report.stats;
            println!(
                "restored {} key(s) of {} into `{}` ({}) in {:.1}s; {} skipped as expired since the backup; {} failed",
                s.restored,
                record.id,
                target.name,
                target.addr(),
                started.elapsed().as_secs_f64(),
                s.expired,
                s.failed
            );
            for e in &s.errors {
                eprintln!("  failed: {}", crate::secrets::redact(e));
            }
            if s.failed > 0 {
                ExitCode::from(EXIT_FAILED)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e @ BackupError::Verify { .. }) => {
            eprintln!(
                "redops restore: refusing to restore: {}",
                crate::secrets::redact(&e.to_string())
            );
            ExitCode::from(EXIT_FAILED)
        }
        Err(e) => fail("restore", &e),
    }
}

fn list(backups: &Backups, json: bool) -> ExitCode {
    let records = match backups.list(None, None) {
        Ok(r) => r,
        Err(e) => return fail("restore", &e),
    };
    if json {
        let rows: Vec<_> = records
            .iter()
            .map(|r| {
                let mut row = r.to_json();
                row["restorable"] = (r.kind == Kind::Full).into();
                row
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else {
        print_table(&records);
        if records.iter().any(|r| r.kind == Kind::Rdb) {
            println!("\n`full` backups restore with --backup-id ID --confirm; `rdb` ones print the manual steps.");
        }
    }
    ExitCode::SUCCESS
}

/// A cluster backup set: refused onto a cluster with another slot layout;
/// on the same layout, the steps to put each member in place (RDBs do not
/// restore over the network), and exit 2 as for a single RDB.
fn restore_set(
    config: &crate::config::Config,
    backups: &Backups,
    set: &crate::backup::ClusterSet,
    target: Option<&str>,
) -> ExitCode {
    let name = target.unwrap_or(&set.cluster);
    let Some(cluster) = config.clusters.iter().find(|c| c.name == name) else {
        let e = BackupError::Usage(format!(
            "backup set `{}` is of a cluster: restore it onto a [[cluster]] of the config, not `{name}`",
            set.id
        ));
        return fail("restore", &e);
    };
    let live = match super::backup::discover(config, cluster) {
        Ok(v) => v,
        Err(e) => return fail("restore", &e),
    };
    match backups.restore_set(&set.id, &live) {
        Ok(steps) => {
            eprintln!("redops restore: {steps}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => fail("restore", &e),
    }
}
