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
    /// Bring the local lab up (a master, a replica, three Sentinels) if it is
    /// not, and run on it with the shipped rules and playbooks.
    /// (`--config` and REDOPS_CONFIG are ignored with it.)
    #[arg(long)]
    pub lab: bool,
    /// Where the lab lives, with `--lab`.
    #[arg(long, env = "REDOPS_LAB_DIR", default_value = crate::lab::topology::DEFAULT_LAB_DIR)]
    pub lab_dir: std::path::PathBuf,
}

pub fn run(args: RunArgs) -> ExitCode {
    let config_path = if args.lab {
        eprintln!("redops: bringing the lab up in {}", args.lab_dir.display());
        match crate::lab::topology::ensure_up(&args.lab_dir) {
            Ok(path) => path,
            Err(e) => {
                eprintln!("redops: cannot bring the lab up: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    } else {
        args.config.config.clone()
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
