//! `redops lab up|down|status|chaos`: a local master, replica and three
//! Sentinels, or with `up --cluster` a Redis Cluster of three masters and
//! three replicas, from the `redis-server` on the PATH, to try redops on.
//!
//! Progress goes to stderr (the log), results to stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::EXIT_FAILED;
use crate::lab::chaos::{self, ChaosKind, ChaosOutcome};
use crate::lab::process::LabError;
use crate::lab::topology::{self, DEFAULT_LAB_DIR, LabKind, LabState, LabStatus, UpChange};

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Where the lab keeps its servers' files, lab.json and redops.toml.
    #[arg(long, env = "REDOPS_LAB_DIR", default_value = DEFAULT_LAB_DIR, global = true)]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start the lab, or restart what is down; write its rules, playbooks and redops.toml.
    Up {
        /// A Redis Cluster (3 masters, 3 replicas) instead of the Sentinel lab.
        #[arg(long)]
        cluster: bool,
    },
    /// Stop every process of the lab.
    Down,
    /// Show each process and the master the Sentinels name; exit 1 if any is down.
    Status {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Cause an incident on the running lab.
    Chaos {
        #[arg(value_enum)]
        kind: ChaosKind,
    },
}

pub fn lab(args: LabArgs) -> ExitCode {
    let dir = args.dir.as_path();
    let result = match args.command {
        LabCommand::Up { cluster } => up(dir, cluster.then_some(LabKind::Cluster)),
        LabCommand::Down => down(dir),
        LabCommand::Status { json } => status(dir, json),
        LabCommand::Chaos { kind } => cause(dir, kind),
    };
    result.unwrap_or_else(|e| {
        eprintln!("redops lab: {e}");
        ExitCode::from(EXIT_FAILED)
    })
}

fn up(dir: &Path, want: Option<LabKind>) -> Result<ExitCode, LabError> {
    let lab = topology::up(dir, want)?;
    match &lab.change {
        UpChange::AlreadyUp => println!("The lab in {} is already up", dir.display()),
        UpChange::Restarted(names) => println!("Restarted {} in {}", names.join(", "), dir.display()),
        UpChange::Started => println!("Started a lab in {}", dir.display()),
    }
    print_nodes(&lab.state.status());
    println!("Config: {}", lab.config.display());
    // Every command given no --config uses a running lab's config (see
    // cli::config_arg); a lab elsewhere than the default needs --lab-dir.
    let lab_dir = if dir == Path::new(DEFAULT_LAB_DIR) {
        String::new()
    } else {
        format!(" --lab-dir {}", dir.display())
    };
    match lab.state.kind {
        LabKind::Sentinel => {
            println!("Next:   redops run --lab{lab_dir}");
            println!("        redops sentinel validate --lab{lab_dir}   (or status, alerts list, playbook run, ...)");
        }
        LabKind::Cluster => {
            println!("Next:   redops run --lab --cluster{lab_dir}");
            println!("        redops cluster validate --lab{lab_dir}   (or cluster status, status, ...)");
            println!("        {}   (or node-down)", lab_command(dir, "chaos shard-failover"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn down(dir: &Path) -> Result<ExitCode, LabError> {
    match LabState::load(dir)? {
        None => println!("No lab in {}", dir.display()),
        Some(state) => {
            let stopped = state.stop()?;
            println!("Stopped the lab in {} ({} processes)", dir.display(), stopped.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status(dir: &Path, json: bool) -> Result<ExitCode, LabError> {
    let status = match LabState::load(dir)? {
        Some(state) => state.status(),
        None if json => LabStatus {
            dir: dir.to_path_buf(),
            config: dir.join(topology::CONFIG_FILE),
            kind: LabKind::default(),
            up: false,
            master: None,
            cluster_state_ok: None,
            masters: Vec::new(),
            nodes: Vec::new(),
        },
        None => {
            eprintln!(
                "No lab in {}: start one with `{}`",
                dir.display(),
                lab_command(dir, "up")
            );
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("lab status serializes")
        );
    } else {
        let summary = if status.up { "up" } else { "partly down" };
        println!("The lab in {} is {summary}", dir.display());
        print_nodes(&status);
        if !status.up {
            println!("Restart what is down with `{}`", lab_command(dir, "up"));
        }
    }
    Ok(if status.up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

fn cause(dir: &Path, kind: ChaosKind) -> Result<ExitCode, LabError> {
    let Some(mut state) = LabState::load(dir)? else {
        eprintln!(
            "No lab in {}: start one with `{}`",
            dir.display(),
            lab_command(dir, "up")
        );
        return Ok(ExitCode::from(EXIT_FAILED));
    };
    let outcome = chaos::chaos(&mut state, kind)?;
    println!("{outcome}");
    if let ChaosOutcome::Outage { .. } | ChaosOutcome::NodeDown { .. } = outcome {
        println!("Bring them back with `{}`", lab_command(dir, "up"));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_nodes(status: &LabStatus) {
    match (status.kind, &status.master, status.cluster_state_ok) {
        (LabKind::Sentinel, Some(master), _) => println!("Master (per Sentinel): {master}"),
        (LabKind::Sentinel, None, _) => println!("Master (per Sentinel): unknown, no Sentinel answers"),
        (LabKind::Cluster, _, Some(ok)) => println!(
            "Cluster state: {}, masters: {}",
            if ok { "ok" } else { "fail" },
            status.masters.join(", ")
        ),
        (LabKind::Cluster, _, None) => println!("Cluster state: unknown, no node answers"),
    }
    for node in &status.nodes {
        let role = node.role.as_deref().unwrap_or("DOWN");
        println!("  {:<11} {:<16} pid {:<8} {role}", node.name, node.addr, node.pid);
    }
}

pub(super) fn lab_command(dir: &Path, sub: &str) -> String {
    if dir == Path::new(DEFAULT_LAB_DIR) {
        format!("redops lab {sub}")
    } else {
        format!("redops lab {sub} --dir {}", dir.display())
    }
}
