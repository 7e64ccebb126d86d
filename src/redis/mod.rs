//! Talking to Redis: INFO parsing and the metrics derived from it.

pub mod connect;
pub mod info;
pub mod info_values;
pub mod metrics;
