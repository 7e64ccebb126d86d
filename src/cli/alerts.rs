//! `redops alerts list|ack`: what is firing, and acknowledging it, which
//! stops its escalation. Works on the state store, with or without a
//! running engine; the engine notices acks within a second. With `--url`
//! it asks a running engine's API instead.

use std::process::ExitCode;

use super::remote::{Remote, RemoteArg};
use super::{ConfigArg, EXIT_FAILED};
use crate::alerts::store::{AlertRow, AlertStore};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AlertsCommand,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub remote: RemoteArg,
}

#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// Firing alerts (with --all, resolved ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an alert by its id (a prefix of its fingerprint is enough).
    Ack {
        id: String,
        /// Why, for the record and for the people notified.
        #[arg(long)]
        comment: Option<String>,
        /// Who acknowledges (default: $USER).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

pub fn open_store(config: &ConfigArg) -> Result<AlertStore, ExitCode> {
    super::open_state(config, AlertStore::open)
}

pub fn main(args: Args) -> ExitCode {
    if let Some(remote) = args.remote.remote("redops alerts") {
        return main_remote(args.command, &remote);
    }
    let store = match open_store(&args.config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match args.command {
        AlertsCommand::List { all, json } => match store.list(all) {
            Ok(rows) => print_list(&rows, all, json),
            Err(e) => {
                eprintln!("redops: {e}");
                ExitCode::from(EXIT_FAILED)
            }
        },
        AlertsCommand::Ack { id, comment, by } => match store.ack(&id, &by, comment.as_deref()) {
            Ok(Ok(fingerprint)) => acknowledged(&fingerprint, &by),
            Ok(Err(why)) => {
                eprintln!("redops alerts ack: {why}");
                ExitCode::from(EXIT_FAILED)
            }
            Err(e) => {
                eprintln!("redops: {e}");
                ExitCode::from(EXIT_FAILED)
            }
        },
    }
}

/// The same commands through a running engine's API.
fn main_remote(command: AlertsCommand, remote: &Remote) -> ExitCode {
    match command {
        AlertsCommand::List { all, json } => match remote.get::<Vec<AlertRow>>(&format!("/api/v1/alerts?all={all}")) {
            Ok(rows) => print_list(&rows, all, json),
            Err(code) => code,
        },
        AlertsCommand::Ack { id, comment, by } => {
            let body = serde_json::json!({ "by": by, "comment": comment });
            match remote.post::<serde_json::Value>(&format!("/api/v1/alerts/{id}/ack"), &body) {
                Ok(answer) => acknowledged(answer["acknowledged"].as_str().unwrap_or(&id), &by),
                Err(code) => code,
            }
        }
    }
}

fn acknowledged(fingerprint: &str, by: &str) -> ExitCode {
    println!("acknowledged {fingerprint} as {by}; its escalation stops");
    ExitCode::SUCCESS
}

fn print_list(rows: &[AlertRow], all: bool, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    if rows.is_empty() {
        println!("no {}alerts", if all { "" } else { "firing " });
    }
    for a in rows {
        let since = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(a.starts_ms as u64),
        );
        let ack = a
            .acked_by
            .as_ref()
            .map(|b| format!("  acked by {b}"))
            .unwrap_or_default();
        let silenced = if a.silenced { "  silenced" } else { "" };
        println!(
            "{}  {:<8} {:<9} {:<24} {:<28} since {since}{ack}{silenced}\n            {}",
            &a.fingerprint[..a.fingerprint.len().min(10)],
            a.status,
            a.severity,
            a.rule,
            a.target,
            a.summary
        );
    }
    ExitCode::SUCCESS
}
