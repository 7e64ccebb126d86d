//! The command line: one file per subcommand.
//!
//! Exit codes: 0 success, 1 a check or operation failed, 2 usage or config error.

pub mod alerts;
pub mod analyze;
pub mod backup;
pub mod check;
pub mod cluster;
pub mod completions;
pub mod config_arg;
pub mod import;
pub mod lab;
pub mod playbook;
pub mod remote;
pub mod report;
pub mod restore;
pub mod run;
pub mod runs;
pub mod sentinel;
pub mod silence;
pub mod status;
pub mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "redops",
    version,
    about = "Event-driven automation engine for Redis operations"
)]
pub struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object a line) for Loki, Elasticsearch and the like.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "REDOPS_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine until SIGINT or SIGTERM.
    Run(run::RunArgs),
    /// Validate the config, every rule and every playbook.
    Check(check::CheckArgs),
    /// A local master, replica and three Sentinels (or, with --cluster, a Redis Cluster) to try redops on.
    Lab(lab::LabArgs),
    /// The Sentinel groups as their Sentinels see them.
    Sentinel(sentinel::SentinelArgs),
    /// The Redis Clusters: shards, masters, replicas, slots; `validate` names what is wrong.
    Cluster(cluster::ClusterArgs),
    /// Run rule and playbook unit tests in virtual time, without Redis.
    Test(test::Args),
    /// Run one playbook by hand.
    Playbook(playbook::Args),
    /// Recorded playbook runs and their audit trails.
    Runs(runs::Args),
    /// Create, list, verify and clean up backups.
    Backup(backup::Args),
    /// Restore a backup.
    Restore(restore::Args),
    /// List and acknowledge alerts.
    Alerts(alerts::Args),
    /// Silence notifications for a maintenance window.
    Silence(silence::Args),
    /// Health of every target by the guide's thresholds; exit 1 if critical.
    Status(status::Args),
    /// Min/avg/max, peak hours, hit-ratio trend and slow log of every target.
    Analyze(analyze::Args),
    /// Reports; `report capacity`: the guide's capacity planning matrices.
    Report(report::Args),
    /// Translate other tools' alerting rules: `import prometheus FILE.yml`.
    Import(import::Args),
    /// Shell completions, printed: bash, zsh, fish, elvish or powershell.
    Completions(completions::CompletionsArgs),
    /// The manual page redops(1), printed (or every page, with --dir).
    Man(completions::ManArgs),
}

pub use config_arg::{ConfigArg, ConfigSource, DEFAULT_CONFIG, ResolvedConfig};

/// Loads the config and opens one part of its state store, printing what
/// went wrong and giving the exit code when either fails.
pub fn open_state<T>(
    config: &ConfigArg,
    open: impl FnOnce(crate::store::Store) -> Result<T, crate::store::StoreError>,
) -> Result<T, ExitCode> {
    let (config, _) = config.load()?;
    crate::store::Store::open(&config.engine.state_dir)
        .and_then(open)
        .map_err(|e| {
            eprintln!("redops: {e}");
            ExitCode::from(EXIT_FAILED)
        })
}

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::check(args),
        Command::Lab(args) => lab::lab(args),
        Command::Sentinel(args) => sentinel::sentinel(args),
        Command::Cluster(args) => cluster::cluster(args),
        Command::Test(args) => test::main(args),
        Command::Playbook(args) => playbook::main(args),
        Command::Runs(args) => runs::main(args),
        Command::Backup(args) => backup::main(args),
        Command::Restore(args) => restore::main(args),
        Command::Alerts(args) => alerts::main(args),
        Command::Silence(args) => silence::main(args),
        Command::Status(args) => status::main(args),
        Command::Analyze(args) => analyze::main(args),
        Command::Report(args) => report::main(args),
        Command::Import(args) => import::main(args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    }
}
