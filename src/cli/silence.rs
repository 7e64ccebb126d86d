//! `redops silence add|list|expire`: maintenance windows. A silence mutes
//! the notifications of alerts whose labels match all its matchers. With
//! `--url` the commands go to a running engine's API.

use std::process::ExitCode;
use std::time::Duration;

use super::alerts::open_store;
use super::remote::{Remote, RemoteArg};
use super::{ConfigArg, EXIT_FAILED, EXIT_USAGE};
use crate::alerts::store::{Silence, now_ms};
use crate::matcher::Matcher;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: SilenceCommand,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub remote: RemoteArg,
}

#[derive(Debug, clap::Subcommand)]
pub enum SilenceCommand {
    /// Add a silence: `redops silence add target=cache severity=~warning|info --duration 2h --comment "..."`.
    Add {
        /// label=value, label!=value, label=~regex or label!~regex (all must match).
        #[arg(required = true)]
        matchers: Vec<String>,
        #[arg(long, default_value = "1h")]
        duration: String,
        #[arg(long)]
        comment: String,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Active silences (with --all, expired ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    Expire { id: i64 },
}

pub fn main(args: Args) -> ExitCode {
    if let Some(remote) = args.remote.remote("redops silence") {
        return main_remote(args.command, &remote);
    }
    let store = match open_store(&args.config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let fail = |e: crate::store::StoreError| {
        eprintln!("redops: {e}");
        ExitCode::from(EXIT_FAILED)
    };
    match args.command {
        SilenceCommand::Add {
            matchers,
            duration,
            comment,
            by,
        } => {
            let (matchers, duration) = match parse_add(&matchers, &duration) {
                Ok(parsed) => parsed,
                Err(code) => return code,
            };
            let start = now_ms();
            match store.add_silence(&matchers, start, start + duration.as_millis() as i64, &by, &comment) {
                Ok(id) => added(id, &matchers, duration),
                Err(e) => fail(e),
            }
        }
        SilenceCommand::List { all, json } => match store.silences(all) {
            Ok(list) => print_list(&list, all, json),
            Err(e) => fail(e),
        },
        SilenceCommand::Expire { id } => match store.expire_silence(id) {
            Ok(true) => expired(id),
            Ok(false) => {
                eprintln!("redops silence expire: no active silence {id}; see `redops silence list`");
                ExitCode::from(EXIT_FAILED)
            }
            Err(e) => fail(e),
        },
    }
}

/// The same commands through a running engine's API.
fn main_remote(command: SilenceCommand, remote: &Remote) -> ExitCode {
    match command {
        SilenceCommand::Add {
            matchers,
            duration: text,
            comment,
            by,
        } => {
            let (parsed, duration) = match parse_add(&matchers, &text) {
                Ok(parsed) => parsed,
                Err(code) => return code,
            };
            let body = serde_json::json!({ "matchers": matchers, "duration": text, "comment": comment, "by": by });
            match remote.post::<serde_json::Value>("/api/v1/silences", &body) {
                Ok(answer) => added(answer["id"].as_i64().unwrap_or_default(), &parsed, duration),
                Err(code) => code,
            }
        }
        SilenceCommand::List { all, json } => {
            match remote.get::<Vec<Silence>>(&format!("/api/v1/silences?all={all}")) {
                Ok(list) => print_list(&list, all, json),
                Err(code) => code,
            }
        }
        SilenceCommand::Expire { id } => match remote.delete::<serde_json::Value>(&format!("/api/v1/silences/{id}")) {
            Ok(_) => expired(id),
            Err(code) => code,
        },
    }
}

#[allow(clippy::result_large_err)]
fn parse_add(matchers: &[String], duration: &str) -> Result<(Vec<Matcher>, Duration), ExitCode> {
    let parsed: Result<Vec<Matcher>, String> = matchers.iter().map(|m| Matcher::parse(m)).collect();
    match (parsed, crate::config::duration::parse(duration)) {
        (Ok(m), Ok(d)) if d > Duration::ZERO => Ok((m, d)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("redops silence add: {e}");
            Err(ExitCode::from(EXIT_USAGE))
        }
        _ => {
            eprintln!("redops silence add: the duration must be more than zero");
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

fn added(id: i64, matchers: &[Matcher], duration: Duration) -> ExitCode {
    let shown: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    println!(
        "silence {id}: {} for {}",
        shown.join(" "),
        humantime::format_duration(duration)
    );
    ExitCode::SUCCESS
}

fn expired(id: i64) -> ExitCode {
    println!("silence {id} expired");
    ExitCode::SUCCESS
}

fn print_list(list: &[Silence], all: bool, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string_pretty(list).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    if list.is_empty() {
        println!("no {}silences", if all { "" } else { "active " });
    }
    let now = now_ms();
    for s in list {
        let shown: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
        let left = if s.ends_ms > now {
            format!(
                "ends in {}",
                humantime::format_duration(Duration::from_secs(((s.ends_ms - now) / 1000) as u64))
            )
        } else {
            "expired".into()
        };
        println!(
            "{:>4}  {:<40} {left}  by {}: {}",
            s.id,
            shown.join(" "),
            s.created_by,
            s.comment
        );
    }
    ExitCode::SUCCESS
}
