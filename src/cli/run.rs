//! `redops run`: the engine as a daemon.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::{ConfigArg, EXIT_FAILED, EXIT_USAGE};
use crate::engine::{self, Options};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Record playbook side effects instead of performing them.
    #[arg(long)]
    pub dry_run: bool,
    /// With --lab: bring up (or use) the Redis Cluster lab, `redops lab up --cluster`.
    #[arg(long, requires = "lab")]
    pub cluster: bool,
}

pub fn run(args: RunArgs) -> ExitCode {
    // `--lab` here brings the lab up if it is not, and runs on it with the
    // shipped rules and playbooks.
    let resolved = if args.cluster {
        start_cluster_lab(&args.config)
    } else {
        args.config.resolve_starting_lab().map(|r| r.path)
    };
    let config_path = match resolved {
        Ok(path) => path,
        Err(code) => return code,
    };
    let loaded = match crate::loader::load(&config_path) {
        Ok(l) => l,
        Err(diags) => {
            eprintln!("{}", diags.render());
            eprintln!("redops: not starting: fix the errors above (`redops check` lists them too)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for w in loaded.warnings.iter() {
        tracing::warn!(location = %w.location(), "{}", w.message);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redops: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            engine::shutdown_signal().await;
            tracing::info!("Shutdown requested");
            signal.cancel();
        });
        engine::run(loaded, Options { dry_run: args.dry_run }, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redops: {}", crate::secrets::redact(&format!("{e:#}")));
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `run --lab --cluster`: `redops lab up --cluster`, then the lab's config.
fn start_cluster_lab(config: &ConfigArg) -> Result<std::path::PathBuf, ExitCode> {
    eprintln!("redops: bringing the cluster lab up in {}", config.lab_dir.display());
    crate::lab::topology::up(&config.lab_dir, Some(crate::lab::topology::LabKind::Cluster))
        .map(|lab| lab.config)
        .map_err(|e| {
            eprintln!("redops: cannot bring the cluster lab up: {e}");
            ExitCode::from(EXIT_FAILED)
        })
}
