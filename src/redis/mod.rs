//! Talking to Redis: INFO parsing and the metrics derived from it.

pub mod info;
pub mod metrics;
