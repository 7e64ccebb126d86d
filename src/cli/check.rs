//! `redops check`: validate everything, report every problem at once.

use std::process::ExitCode;

use super::{ConfigArg, EXIT_FAILED, EXIT_USAGE};
use crate::diagnostics::Diagnostics;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Output format: `text` for people, `json` for CI.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// The same as `--format json`, as every other command spells it.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Fail (exit 1) on warnings too, for CI.
    #[arg(long)]
    pub strict: bool,
}

pub fn check(args: CheckArgs) -> ExitCode {
    let path = match args.config.resolve() {
        Ok(resolved) => resolved.path,
        Err(code) => return code,
    };
    let (diags, summary) = match crate::loader::load(&path) {
        Ok(loaded) => {
            let summary = format!(
                "{}: {} target(s), {} rule(s), {} playbook(s), {} receiver(s)",
                path.display(),
                loaded.config.targets.len(),
                loaded.rules.len(),
                loaded.playbooks.names().len(),
                loaded.config.receivers.len()
            );
            (loaded.warnings, Some(summary))
        }
        Err(d) => (d, None),
    };
    let failed_strict = args.strict && !diags.has_errors() && diags.warning_count() > 0;
    let format = if args.json { "json" } else { args.format.as_str() };
    report(&diags, format, summary.as_deref().filter(|_| !failed_strict));
    if diags.has_errors() {
        ExitCode::from(EXIT_USAGE)
    } else if failed_strict {
        if format == "text" {
            eprintln!("failed: --strict counts warnings as failures");
        }
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn report(diags: &Diagnostics, format: &str, summary: Option<&str>) {
    if format == "json" {
        let out = serde_json::json!({
            "ok": summary.is_some(),
            "errors": diags.error_count(),
            "warnings": diags.warning_count(),
            "diagnostics": diags.iter().collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    if !diags.is_empty() {
        eprintln!("{}", diags.render());
    }
    if let Some(summary) = summary {
        println!("ok: {summary}");
    }
}
