//! `redops sentinel status|validate`: the guide's `sentinel_admin --status
//! / --masters / --replicas / --validate`.

use std::process::ExitCode;
use std::time::Duration;

use super::{ConfigArg, ConfigSource, EXIT_FAILED, EXIT_USAGE};
use crate::sentinel::discovery::{Discoverer, GroupView};

#[derive(Debug, clap::Args)]
pub struct SentinelArgs {
    #[command(subcommand)]
    pub command: SentinelCommand,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only this group (default: every `[[sentinel]]` group of the config).
    #[arg(long, global = true)]
    pub group: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum SentinelCommand {
    /// Masters, replicas (link, lag), Sentinels, quorum and epoch.
    Status,
    /// Exit 1 naming each problem: fewer than 3 Sentinels, quorum
    /// unreachable, a replica down or unlinked, Sentinels that disagree.
    Validate,
}

pub fn sentinel(args: SentinelArgs) -> ExitCode {
    let (config, resolved) = match args.config.load() {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let groups: Vec<_> = config
        .sentinels
        .iter()
        .filter(|g| args.group.as_ref().is_none_or(|name| &g.name == name))
        .cloned()
        .collect();
    if groups.is_empty() {
        // The default config of a checkout has no group: the user most
        // likely meant a lab that is not running.
        let hint = match resolved.source {
            ConfigSource::Default => "; pass --config FILE, or start a lab with `redops lab up`",
            _ => "",
        };
        eprintln!(
            "redops sentinel: {} has no [[sentinel]] group{}{hint}",
            resolved.path.display(),
            args.group.as_ref().map(|g| format!(" named `{g}`")).unwrap_or_default()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let timeout = config.engine.connect_timeout.max(Duration::from_millis(500));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let Ok(runtime) = runtime else {
        eprintln!("redops sentinel: cannot start the async runtime");
        return ExitCode::from(EXIT_FAILED);
    };
    let views: Vec<GroupView> = runtime.block_on(async {
        let mut views = Vec::new();
        for g in groups {
            views.push(Discoverer::new(g, timeout).discover().await);
        }
        views
    });
    let validate = matches!(args.command, SentinelCommand::Validate);
    let problems: Vec<(String, Vec<String>)> = views.iter().map(|v| (v.group.clone(), v.problems())).collect();
    if args.json {
        let out: Vec<_> = views
            .iter()
            .zip(&problems)
            .map(|(v, (_, p))| serde_json::json!({ "view": v, "problems": p, "ok": p.is_empty() }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for (view, (_, problems)) in views.iter().zip(&problems) {
            print_view(view);
            if validate {
                if problems.is_empty() {
                    println!("  ok: no problems found");
                }
                for p in problems {
                    println!("  PROBLEM: {p}");
                }
            }
            println!();
        }
    }
    if validate && problems.iter().any(|(_, p)| !p.is_empty()) {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_view(v: &GroupView) {
    println!("group {} (master name `{}`)", v.group, v.master_name);
    println!(
        "  master     {}  flags={}  epoch={}",
        v.master.as_deref().unwrap_or("unknown"),
        v.master_flags.as_deref().unwrap_or("?"),
        v.config_epoch.map_or("?".into(), |e| e.to_string())
    );
    for r in &v.replicas {
        println!(
            "  replica    {}  flags={}  link={}  offset={}",
            r.addr,
            r.flags,
            if r.link_ok { "ok" } else { "down" },
            r.repl_offset.map_or("?".into(), |o| o.to_string())
        );
    }
    for s in &v.sentinels {
        let state = if s.reachable { "up" } else { "unreachable" };
        println!(
            "  sentinel   {}  {state}  master={}",
            s.addr,
            s.master.as_deref().unwrap_or("-")
        );
    }
    println!(
        "  quorum     {} ({})",
        v.quorum.map_or("?".into(), |q| q.to_string()),
        v.quorum_message.as_deref().unwrap_or("not checked")
    );
}
