//! `redops test FILE...`: rule and playbook unit tests in virtual time,
//! without Redis (docs/testing.md).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Test files (`*.toml`); a directory stands for every `*.toml` in it.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Run only the tests whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Show the log lines of the evaluator and the playbooks.
    #[arg(long, short)]
    pub verbose: bool,
}

pub fn main(args: Args) -> ExitCode {
    let run = || {
        crate::ruletest::run_files(
            &args.files,
            args.filter.as_deref(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )
    };
    // Alerts firing and playbooks logging are what tests are made of: their
    // log lines would drown the report.
    let summary = if args.verbose {
        run()
    } else {
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), run)
    };
    ExitCode::from(summary.exit_code())
}
