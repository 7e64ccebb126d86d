//! `redops import prometheus FILE.yml [--out rules/imported.toml]`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{EXIT_FAILED, EXIT_USAGE};
use crate::import::prometheus;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Translate a Prometheus rule file (over redis_exporter metrics) into
    /// redops rules. Exit 1 when some rule could not be translated: it is
    /// written commented out, with the reason.
    Prometheus(PrometheusArgs),
}

#[derive(Debug, clap::Args)]
pub struct PrometheusArgs {
    /// The Prometheus rule file (`groups[].rules[]`).
    pub file: PathBuf,
    /// Where to write the redops rule file; standard output without it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn main(args: Args) -> ExitCode {
    match args.what {
        What::Prometheus(args) => import_prometheus(args),
    }
}

fn import_prometheus(args: PrometheusArgs) -> ExitCode {
    let imported = match prometheus::import_file(&args.file) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("redops: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match &args.out {
        Some(out) => {
            if let Err(e) = std::fs::write(out, &imported.toml) {
                eprintln!("redops: cannot write {}: {e}", out.display());
                return ExitCode::from(EXIT_FAILED);
            }
        }
        None => print!("{}", imported.toml),
    }
    let total = imported.translated.len() + imported.not_translated.len();
    let written = args
        .out
        .as_ref()
        .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
    eprintln!(
        "{} of {total} rule(s) translated into {written}",
        imported.translated.len()
    );
    for n in &imported.not_translated {
        eprintln!("{}: not translated: {}: {}", n.at, n.name, n.reason);
    }
    if imported.not_translated.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}
