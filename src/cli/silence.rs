//! `redops silence`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> ExitCode {
    eprintln!("redops silence: not built yet");
    ExitCode::from(super::EXIT_USAGE)
}
