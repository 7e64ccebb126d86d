//! `redops status`: the guide's `health_check --component redis`. Per
//! target: role, memory %, hit ratio, fragmentation, clients, ops/s, the
//! age of the last backup and the firing alerts, each judged by the guide's
//! thresholds; per Redis Cluster: its state, shards and problems. Exit 1
//! if anything is critical.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{ConfigArg, EXIT_FAILED};
use crate::api::state::{TargetView, guide_checks};
use crate::event::{MetricValue, Metrics};
use crate::redis::metrics::{Limits, MetricsDeriver};
use crate::status::Status;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Machine-readable output (documented in docs/operations.md).
    #[arg(long)]
    pub json: bool,
}

/// Two INFO samples a second apart: rates and the hit ratio need a delta.
async fn sample(target: &crate::config::TargetConfig, timeout: Duration) -> Result<Metrics, String> {
    let info = target.connection_info()?;
    let mut conn = crate::redis::connect::connect_async(&info, timeout, timeout)
        .await
        .map_err(|e| crate::secrets::redact(&e.to_string()))?;
    let mut deriver = MetricsDeriver::new();
    let mut metrics = Metrics::new();
    for round in 0..2 {
        if round == 1 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let text: String = redis::cmd("INFO")
            .query_async(&mut conn)
            .await
            .map_err(|e| crate::secrets::redact(&e.to_string()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let elapsed = (round == 1).then_some(Duration::from_secs(1));
        metrics = deriver.derive(&crate::redis::info::parse(&text), &Limits::default(), elapsed, now);
    }
    Ok(metrics)
}

pub fn main(args: Args) -> ExitCode {
    let config = match args.config.load() {
        Ok((config, _)) => config,
        Err(code) => return code,
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        eprintln!("redops status: cannot start the async runtime");
        return ExitCode::from(EXIT_FAILED);
    };
    let timeout = config.engine.connect_timeout;
    let mut targets: Vec<crate::config::TargetConfig> = config.targets.clone();
    // A Sentinel group is reported as its current master.
    for g in &config.sentinels {
        if let Some(addr) = crate::sentinel::discovery::master_addr_blocking(g, timeout) {
            targets.push(crate::config::TargetConfig {
                name: g.name.clone(),
                ..g.node_config(&addr)
            });
        }
    }
    let samples: Vec<(String, Result<Metrics, String>)> = runtime.block_on(async {
        let mut out = Vec::new();
        for t in &targets {
            out.push((t.name.clone(), sample(t, timeout).await));
        }
        out
    });
    let clusters: Vec<super::cluster::ClusterReport> = runtime.block_on(async {
        let mut out = Vec::new();
        for c in &config.clusters {
            out.push(super::cluster::report(c.clone(), timeout, false).await);
        }
        out
    });
    let store = crate::store::Store::open(&config.engine.state_dir).ok();
    let firing = store
        .clone()
        .and_then(|s| crate::alerts::store::AlertStore::open(s).ok())
        .and_then(|a| a.list(false).ok())
        .unwrap_or_default();
    let backups = store
        .and_then(|s| crate::backup::catalog::Catalog::open(s).ok())
        .and_then(|c| c.list(None, None).ok())
        .unwrap_or_default();
    let now_ms = crate::alerts::store::now_ms();

    let mut overall = Status::Ok;
    let mut report = Vec::new();
    for (name, result) in &samples {
        let (status, checks, metrics, error) = match result {
            Ok(m) => {
                let view = TargetView {
                    labels: Default::default(),
                    up: true,
                    sampled_at: SystemTime::now(),
                    metrics: m.clone(),
                    instance: None,
                };
                let checks = guide_checks(&view);
                (Status::worst(checks.iter().map(|c| c.status)), checks, m.clone(), None)
            }
            Err(e) => (Status::Critical, Vec::new(), Metrics::new(), Some(e.clone())),
        };
        overall = overall.max(status);
        let last_backup_age = backups
            .iter()
            .filter(|b| &b.target == name)
            .map(|b| (now_ms - b.created_ms) / 1000)
            .min();
        let alerts: Vec<_> = firing
            .iter()
            .filter(|a| &a.target == name || a.target.starts_with(&format!("{name}/")))
            .collect();
        report.push(json!({
            "target": name,
            "status": status,
            "error": error,
            "role": metrics.get("role").map(ToString::to_string),
            "checks": checks,
            "connected_clients": metrics.get("connected_clients").and_then(MetricValue::as_f64),
            "clients_used_pct": metrics.get("clients_used_pct").and_then(MetricValue::as_f64),
            "ops_per_sec": metrics.get("ops_per_sec").and_then(MetricValue::as_f64),
            "last_backup_age_seconds": last_backup_age,
            "firing_alerts": alerts.iter().map(|a| json!({ "rule": a.rule, "severity": a.severity, "summary": a.summary })).collect::<Vec<_>>(),
        }));
    }
    let mut cluster_report = Vec::new();
    for c in &clusters {
        let status = cluster_verdict(c);
        overall = overall.max(status);
        let mut entry = c.to_json();
        entry["status"] = json!(status);
        entry["firing_alerts"] = firing
            .iter()
            .filter(|a| a.target == c.name || a.target.starts_with(&format!("{}/", c.name)))
            .map(|a| json!({ "target": a.target, "rule": a.rule, "severity": a.severity, "summary": a.summary }))
            .collect();
        cluster_report.push(entry);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "status": overall, "targets": report, "clusters": cluster_report }))
                .unwrap_or_default()
        );
    } else {
        print_report(&report, &cluster_report, overall.as_str());
    }
    if overall == Status::Critical {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn paint(status: &str, text: &str) -> String {
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        return text.to_owned();
    }
    let code = match status {
        "critical" => "31",
        "warning" => "33",
        _ => "32",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// A cluster that refuses queries (state fail, slots without a master, no
/// node answering) is critical; any other problem `validate` names, a warning.
fn cluster_verdict(report: &super::cluster::ClusterReport) -> Status {
    match &report.view {
        Err(_) => Status::Critical,
        Ok(view) if !view.info.state_ok || view.uncovered_slots() > 0 => Status::Critical,
        Ok(_) if !report.problems.is_empty() => Status::Warning,
        Ok(_) => Status::Ok,
    }
}

fn print_clusters(clusters: &[serde_json::Value]) {
    for c in clusters {
        let status = c["status"].as_str().unwrap_or("?");
        let view = &c["view"];
        println!(
            "{} cluster {}  state={}",
            paint(status, &format!("[{}]", status.to_uppercase())),
            c["cluster"].as_str().unwrap_or("?"),
            match view["info"]["state_ok"].as_bool() {
                Some(true) => "ok",
                Some(false) => "fail",
                None => "unknown",
            }
        );
        if let Some(e) = c["error"].as_str() {
            println!("    unreachable: {e}");
            continue;
        }
        for shard in view["shards"].as_array().into_iter().flatten() {
            let replicas: Vec<&str> = shard["replicas"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str())
                .collect();
            println!(
                "    shard {:<14} master {:<21} replicas {}",
                shard["name"].as_str().unwrap_or("?"),
                shard["master"].as_str().unwrap_or("none"),
                if replicas.is_empty() {
                    "none".to_string()
                } else {
                    replicas.join(", ")
                }
            );
        }
        for p in c["problems"].as_array().into_iter().flatten() {
            println!("    PROBLEM {}", p.as_str().unwrap_or(""));
        }
        for a in c["firing_alerts"].as_array().into_iter().flatten() {
            println!(
                "    FIRING {} {} on {}: {}",
                a["severity"].as_str().unwrap_or(""),
                a["rule"].as_str().unwrap_or(""),
                a["target"].as_str().unwrap_or(""),
                a["summary"].as_str().unwrap_or("")
            );
        }
    }
}

fn print_report(report: &[serde_json::Value], clusters: &[serde_json::Value], overall: &str) {
    for t in report {
        let status = t["status"].as_str().unwrap_or("?");
        println!(
            "{} {}  role={}",
            paint(status, &format!("[{}]", status.to_uppercase())),
            t["target"].as_str().unwrap_or("?"),
            t["role"].as_str().unwrap_or("?")
        );
        if let Some(e) = t["error"].as_str() {
            println!("    unreachable: {e}");
            continue;
        }
        for c in t["checks"].as_array().into_iter().flatten() {
            let s = c["status"].as_str().unwrap_or("ok");
            let value = c["value"].as_f64().map_or("n/a".into(), |v| format!("{v:.2}"));
            println!(
                "    {:<24} {:>8}  {}  ({})",
                c["metric"].as_str().unwrap_or(""),
                value,
                paint(s, s),
                c["thresholds"].as_str().unwrap_or("")
            );
        }
        let num = |k: &str| t[k].as_f64().map_or("n/a".into(), |v| format!("{v:.0}"));
        println!(
            "    clients {} ({}% of maxclients), ops/s {}",
            num("connected_clients"),
            num("clients_used_pct"),
            num("ops_per_sec")
        );
        match t["last_backup_age_seconds"].as_i64() {
            Some(age) => println!(
                "    last backup {} ago",
                humantime::format_duration(Duration::from_secs(age.max(0) as u64))
            ),
            None => println!("    last backup: none recorded"),
        }
        for a in t["firing_alerts"].as_array().into_iter().flatten() {
            println!(
                "    FIRING {} {}: {}",
                a["severity"].as_str().unwrap_or(""),
                a["rule"].as_str().unwrap_or(""),
                a["summary"].as_str().unwrap_or("")
            );
        }
    }
    print_clusters(clusters);
    println!("overall: {}", paint(overall, overall));
}
