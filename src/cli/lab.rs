//! `redops lab up|down|status|chaos`: a local Sentinel topology.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct LabArgs {}

pub fn lab(_args: LabArgs) -> ExitCode {
    eprintln!("redops lab: not built yet");
    ExitCode::from(super::EXIT_USAGE)
}
