//! `redops cluster status|validate`: a Redis Cluster's shards, masters,
//! replicas and slots as its nodes report them, and what is wrong with it,
//! in the manner of `redops sentinel status|validate`.

use std::process::ExitCode;
use std::time::Duration;

use super::{ConfigArg, ConfigSource, EXIT_FAILED, EXIT_USAGE};
use crate::cluster::{ClusterView, Discoverer};
use crate::config::ClusterConfig;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// State, slots ok/pfail/fail, each shard's master and replicas, epochs.
    Status {
        /// Only this cluster (default: every `[[cluster]]` of the config).
        name: Option<String>,
    },
    /// Exit 1 naming each problem: cluster_state fail, uncovered slots, a
    /// master without a replica, failed nodes, nodes that disagree, fewer
    /// than 3 masters.
    Validate {
        /// Only this cluster (default: every `[[cluster]]` of the config).
        name: Option<String>,
    },
}

/// One cluster as its first answering node reports it, or why none did.
pub struct ClusterReport {
    pub name: String,
    pub view: Result<ClusterView, String>,
    pub problems: Vec<String>,
}

impl ClusterReport {
    pub fn to_json(&self) -> serde_json::Value {
        match &self.view {
            Ok(view) => serde_json::json!({
                "cluster": self.name,
                "view": view,
                "problems": self.problems,
                "ok": self.problems.is_empty(),
            }),
            Err(e) => serde_json::json!({
                "cluster": self.name,
                "error": e,
                "problems": self.problems,
                "ok": false,
            }),
        }
    }
}

/// Discovers `cluster`; with `every_node`, also asks each node it found
/// and adds where their views disagree with the first one's.
pub async fn report(cluster: ClusterConfig, timeout: Duration, every_node: bool) -> ClusterReport {
    let name = cluster.name.clone();
    let view = Discoverer::new(cluster.clone(), timeout).discover().await;
    let problems = match &view {
        Err(e) => vec![e.clone()],
        Ok(view) => {
            let mut problems = view.problems();
            for (addr, error) in &view.unreachable {
                problems.push(format!("node {addr} did not answer: {error}"));
            }
            if every_node {
                for node in view.nodes.iter().filter(|n| n.is_up() && n.addr != view.source) {
                    let one = ClusterConfig {
                        seeds: vec![node.addr.clone()],
                        ..cluster.clone()
                    };
                    if let Ok(other) = Discoverer::new(one, timeout).discover().await
                        && other.source == node.addr
                    {
                        problems.extend(view.disagreements(&other));
                    }
                }
            }
            problems
        }
    };
    ClusterReport { name, view, problems }
}

pub fn cluster(args: ClusterArgs) -> ExitCode {
    let (validate, name) = match &args.command {
        ClusterCommand::Status { name } => (false, name.clone()),
        ClusterCommand::Validate { name } => (true, name.clone()),
    };
    let (config, resolved) = match args.config.load() {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let clusters: Vec<ClusterConfig> = config
        .clusters
        .iter()
        .filter(|c| name.as_ref().is_none_or(|n| &c.name == n))
        .cloned()
        .collect();
    if clusters.is_empty() {
        let hint = match resolved.source {
            ConfigSource::Default => "; pass --config FILE, or start a lab with `redops lab up --cluster`",
            _ => "",
        };
        eprintln!(
            "redops cluster: {} has no [[cluster]]{}{hint}",
            resolved.path.display(),
            name.as_ref().map(|n| format!(" named `{n}`")).unwrap_or_default()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let timeout = config.engine.connect_timeout.max(Duration::from_millis(500));
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        eprintln!("redops cluster: cannot start the async runtime");
        return ExitCode::from(EXIT_FAILED);
    };
    let reports: Vec<ClusterReport> = runtime.block_on(async {
        let mut reports = Vec::new();
        for c in clusters {
            reports.push(report(c, timeout, validate).await);
        }
        reports
    });
    if args.json {
        let out: Vec<_> = reports.iter().map(ClusterReport::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for r in &reports {
            match &r.view {
                Ok(view) => print_view(view),
                Err(_) => println!("cluster {}  unreachable", r.name),
            }
            if validate {
                if r.problems.is_empty() {
                    println!("  ok: no problems found");
                }
                for p in &r.problems {
                    println!("  PROBLEM: {p}");
                }
            } else if let Err(e) = &r.view {
                println!("  {e}");
            }
            println!();
        }
    }
    let failed = if validate {
        reports.iter().any(|r| !r.problems.is_empty())
    } else {
        reports.iter().any(|r| r.view.is_err())
    };
    if failed {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_view(v: &ClusterView) {
    let i = &v.info;
    println!(
        "cluster {}  state={}  (as {} sees it)",
        v.cluster,
        if i.state_ok { "ok" } else { "fail" },
        v.source
    );
    println!(
        "  slots      assigned={} ok={} pfail={} fail={} uncovered={}",
        i.slots_assigned,
        i.slots_ok,
        i.slots_pfail,
        i.slots_fail,
        v.uncovered_slots()
    );
    println!(
        "  nodes      known={} masters={}  current_epoch={}",
        i.known_nodes, i.size, i.current_epoch
    );
    let state = |addr: &str| match v.node(addr) {
        Some(n) if n.fail() => "down (fail)",
        Some(n) if n.pfail() => "down? (pfail)",
        Some(n) if n.is_up() => "up",
        _ => "unknown",
    };
    let epoch = |addr: &str| v.node(addr).map_or("?".into(), |n| n.config_epoch.to_string());
    for shard in &v.shards {
        println!("  shard {}", shard.name);
        match &shard.master {
            Some(m) => println!("    master   {m}  {}  epoch={}", state(m), epoch(m)),
            None => println!("    master   none up"),
        }
        for r in &shard.replicas {
            println!("    replica  {r}  {}", state(r));
        }
    }
    for (addr, e) in &v.unreachable {
        println!("  unreachable {addr}: {e}");
    }
}
