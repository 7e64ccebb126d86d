//! `redops runs list|show`: the playbook runs the engine and `redops
//! playbook run` stored, with their audit trails; with `--url`, those of a
//! running engine, through its API.

use std::process::ExitCode;

use super::remote::RemoteArg;
use super::{ConfigArg, EXIT_FAILED};
use crate::playbooks::runs::{RunRow, RunStore};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RunsCommand,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub remote: RemoteArg,
}

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// The newest runs first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One run, with its findings and audit trail.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

fn open_store(config: &ConfigArg) -> Result<RunStore, ExitCode> {
    super::open_state(config, RunStore::open)
}

/// Where the runs are read: the local state store, or a running engine.
enum Source {
    Local(RunStore),
    Remote(super::remote::Remote),
}

impl Source {
    fn list(&self, limit: usize) -> Result<Vec<RunRow>, ExitCode> {
        match self {
            Source::Local(store) => store.list(limit).map_err(|e| {
                eprintln!("redops: {e}");
                ExitCode::from(EXIT_FAILED)
            }),
            Source::Remote(remote) => remote.get_noting_leader(&format!("/api/v1/runs?limit={limit}")),
        }
    }

    fn get(&self, id: &str) -> Result<RunRow, ExitCode> {
        match self {
            Source::Local(store) => match store.get(id) {
                Ok(Some(r)) => Ok(r),
                Ok(None) => {
                    eprintln!("redops runs show: no run `{id}` (`redops runs list` shows the ids)");
                    Err(ExitCode::from(EXIT_FAILED))
                }
                Err(e) => {
                    eprintln!("redops: {e}");
                    Err(ExitCode::from(EXIT_FAILED))
                }
            },
            Source::Remote(remote) => remote.get(&format!("/api/v1/runs/{id}")),
        }
    }
}

pub fn main(args: Args) -> ExitCode {
    let source = match args.remote.remote("redops runs") {
        Some(remote) => Source::Remote(remote),
        None => match open_store(&args.config) {
            Ok(s) => Source::Local(s),
            Err(code) => return code,
        },
    };
    match args.command {
        RunsCommand::List { limit, json } => {
            let rows = match source.list(limit) {
                Ok(r) => r,
                Err(code) => return code,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            if rows.is_empty() {
                println!("no playbook runs recorded");
            }
            for r in &rows {
                println!("{}", summary(r));
            }
            ExitCode::SUCCESS
        }
        RunsCommand::Show { id, json } => {
            let row = match source.get(&id) {
                Ok(r) => r,
                Err(code) => return code,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&row).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            println!("{}", summary(&row));
            if let Some(rule) = &row.rule {
                println!("  rule: {rule}");
            }
            if row.params.as_object().is_some_and(|p| !p.is_empty()) {
                println!("  params: {}", row.params);
            }
            if !row.detail.is_empty() {
                println!("  {}", row.detail);
            }
            let findings: Vec<String> = row
                .findings
                .as_array()
                .map(|a| a.iter().map(|f| f.as_str().unwrap_or_default().to_owned()).collect())
                .unwrap_or_default();
            let audit = row.audit.as_array().cloned().unwrap_or_default();
            let str_of = |e: &serde_json::Value, k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
            let entries: Vec<(String, String, bool, String)> = audit
                .iter()
                .map(|e| {
                    let dry = e.get("dry_run").and_then(|v| v.as_bool()).unwrap_or(false);
                    (str_of(e, "kind"), str_of(e, "detail"), dry, str_of(e, "outcome"))
                })
                .collect();
            print_findings_and_audit(
                &findings,
                entries
                    .iter()
                    .map(|(k, d, dry, o)| (k.as_str(), d.as_str(), *dry, o.as_str())),
                row.audit_dropped as usize,
            );
            ExitCode::SUCCESS
        }
    }
}

fn summary(r: &RunRow) -> String {
    let started = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.started_ms.max(0) as u64),
    );
    let took = r.duration_ms.map(|d| format!(" in {d} ms")).unwrap_or_default();
    let dry = if r.dry_run { " (dry run)" } else { "" };
    format!(
        "{}  {started}  {} on {}  {} ({}){dry}{took}",
        r.id, r.playbook, r.target, r.outcome, r.trigger
    )
}

/// Findings, then the audit trail, as `redops playbook run` and `redops
/// runs show` both print them.
pub fn print_findings_and_audit<'a>(
    findings: &[String],
    audit: impl Iterator<Item = (&'a str, &'a str, bool, &'a str)>,
    dropped: usize,
) {
    if !findings.is_empty() {
        println!("findings:");
        for f in findings {
            println!("  {f}");
        }
    }
    let mut header = false;
    for (kind, detail, dry_run, outcome) in audit {
        if !header {
            println!("audit:");
            header = true;
        }
        let dry = if dry_run { " [dry run]" } else { "" };
        println!("  {kind:<8} {detail}{dry}: {outcome}");
    }
    if dropped > 0 {
        println!("  … {dropped} more entries not kept");
    }
}
