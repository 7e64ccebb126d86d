use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use redops::cli::LogFormat;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = redops::cli::Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("redops=info"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(redops::logging::stderr);
    match cli.log_format {
        // Redacted by the same writer: JSON escapes are matched too.
        LogFormat::Json => log.json().with_current_span(false).init(),
        LogFormat::Text => log
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
    redops::cli::main(cli)
}
