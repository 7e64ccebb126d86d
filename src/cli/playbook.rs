//! `redops playbook run NAME --target T`: runs one playbook by hand, as the
//! engine would (same limits, policy, dry run and audit), prints what it
//! did, and stores the run for `redops runs`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::{ConfigArg, EXIT_FAILED, EXIT_USAGE};
use crate::config::Config;
use crate::diagnostics::Diagnostics;
use crate::invocation::Invocation;
use crate::invocation::RunOutcome;
use crate::notify::Notifier;
use crate::outbox::Outbox;
use crate::playbooks::runner::Runner;
use crate::playbooks::runs::{RunStore, Trigger};
use crate::playbooks::{PlaybookEngine, RunRecord};

/// How long notifications a run queued get to go out before the command
/// exits; what is left waits in the outbox for the engine.
const DELIVERY_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: PlaybookCommand,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, clap::Subcommand)]
pub enum PlaybookCommand {
    /// Run one playbook against a target or a Sentinel group.
    Run {
        /// The playbook's name (its file name without `.rhai`).
        name: String,
        /// A configured target, a Sentinel group (its master), or `group/host:port`.
        #[arg(long)]
        target: String,
        /// A parameter for the playbook, `key=value`; repeatable. Values read
        /// as TOML (numbers, booleans), else as text.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Send reads, record writes without sending them.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn main(args: Args) -> ExitCode {
    let PlaybookCommand::Run {
        name,
        target,
        params,
        dry_run,
        json,
    } = args.command;
    let config = match args.config.load() {
        Ok((config, _)) => config,
        Err(code) => return code,
    };
    let params = match parse_params(&params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("redops playbook run: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let group = target.split_once('/').map_or(target.as_str(), |(g, _)| g);
    if !config.targets.iter().any(|t| t.name == target)
        && !config.sentinels.iter().any(|g| g.name == group)
        && !config.clusters.iter().any(|c| c.name == group)
    {
        let mut known: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        known.extend(config.sentinels.iter().map(|g| g.name.as_str()));
        known.extend(config.clusters.iter().map(|c| c.name.as_str()));
        eprintln!(
            "redops playbook run: no target, Sentinel group or cluster named `{target}` (configured: {})",
            known.join(", ")
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let engine = Arc::new(PlaybookEngine::new(&config.playbooks));
    let mut diags = Diagnostics::default();
    let playbooks = engine.load_dir(&config.engine.playbooks_dir, &mut diags);
    if playbooks.get(&name).is_none() {
        if diags.has_errors() {
            eprintln!("{}", diags.render());
        }
        eprintln!(
            "redops playbook run: no playbook named `{name}` in {} (found: {})",
            config.engine.playbooks_dir.display(),
            playbooks.names().join(", ")
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redops: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let result = runtime.block_on(run(config, engine, playbooks, name, target, params, dry_run));
    let record = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redops playbook run: {}", crate::secrets::redact(&format!("{e:#}")));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&record).unwrap_or_default());
    } else {
        print_record(&record);
    }
    match record.outcome {
        RunOutcome::Succeeded { .. } => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_FAILED),
    }
}

async fn run(
    config: Config,
    engine: Arc<PlaybookEngine>,
    playbooks: crate::playbooks::PlaybookSet,
    name: String,
    target: String,
    params: BTreeMap<String, toml::Value>,
    dry_run: bool,
) -> anyhow::Result<RunRecord> {
    use anyhow::Context as _;
    let store = crate::store::Store::open(&config.engine.state_dir).context("Failed to open the state store")?;
    let runs = RunStore::open(store.clone()).context("Failed to open the runs store")?;
    let outbox = Outbox::open(store).context("Failed to open the outbox")?;
    let stop = tokio_util::sync::CancellationToken::new();
    let (notifier, workers) = Notifier::spawn(
        &config.receivers,
        outbox.clone(),
        config.notify.fallback_receiver.clone(),
        stop.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let runner = Runner::new(&config, engine, playbooks, notifier.clone(), dry_run).with_run_store(runs.clone());
    let invocation = Invocation {
        playbook: name,
        rule: String::new(),
        target,
        params,
        alert: None,
    };
    let record = tokio::task::spawn_blocking(move || runner.run_triggered(invocation, Trigger::Manual))
        .await
        .context("The playbook run panicked")?;
    runs.finish(&record, Trigger::Manual)
        .context("Failed to store the run")?;
    let queued = record.audit.iter().any(|e| e.outcome == "queued");
    let deadline = tokio::time::Instant::now() + DELIVERY_GRACE;
    while queued
        && tokio::time::Instant::now() < deadline
        && outbox.pending().map(|p| p.iter().any(|(_, n)| *n > 0)).unwrap_or(false)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    drop(notifier);
    workers.join().await;
    Ok(record)
}

fn parse_params(raw: &[String]) -> Result<BTreeMap<String, toml::Value>, String> {
    raw.iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("--param `{p}` is not KEY=VALUE"))?;
            let value = toml::from_str::<BTreeMap<String, toml::Value>>(&format!("v = {v}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(v.to_owned()));
            Ok((k.trim().to_owned(), value))
        })
        .collect()
}

fn print_record(r: &RunRecord) {
    let (label, detail) = match &r.outcome {
        RunOutcome::Succeeded { result } => ("succeeded", result.clone()),
        RunOutcome::Failed { error } => ("failed", error.clone()),
        RunOutcome::TimedOut { after_ms } => ("timed out", format!("stopped at its deadline after {after_ms} ms")),
    };
    let dry = if r.dry_run { " (dry run)" } else { "" };
    println!(
        "run {}: {} on {}{dry}: {label} in {} ms",
        r.id, r.playbook, r.target, r.duration_ms
    );
    if !detail.is_empty() {
        println!("  {detail}");
    }
    super::runs::print_findings_and_audit(
        &r.findings,
        r.audit
            .iter()
            .map(|e| (e.kind, e.detail.as_str(), e.dry_run, e.outcome.as_str())),
        r.audit_dropped,
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn params_read_as_toml_else_as_text() {
        let p = super::parse_params(&["watch=30".into(), "scope=critical".into(), "force=true".into()]).unwrap();
        assert_eq!(p["watch"], toml::Value::Integer(30));
        assert_eq!(p["scope"], toml::Value::String("critical".into()));
        assert_eq!(p["force"], toml::Value::Boolean(true));
        assert!(super::parse_params(&["nope".into()]).is_err());
    }
}
