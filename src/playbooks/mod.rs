//! Playbooks: Rhai scripts run apart from evaluation, under limits and a
//! command policy ([`crate::policy`]).

pub mod api;
pub mod cluster_route;
pub mod command_key;
pub mod context;
pub mod engine;
pub mod runner;
pub mod runs;

pub use context::RunRecord;
pub use engine::{Playbook, PlaybookEngine, PlaybookSet};
