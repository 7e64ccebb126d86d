//! redops: an event-driven automation engine for Redis operations.

pub mod alerts;
pub mod config;
pub mod diagnostics;
pub mod event;
pub mod glob;
pub mod lab;
pub mod playbooks;
pub mod redis;
pub mod rules;
pub mod secrets;
pub mod template;
