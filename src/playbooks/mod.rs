//! Playbooks: Rhai scripts run apart from evaluation, under limits and a
//! command policy.

pub mod policy;
