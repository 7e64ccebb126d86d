//! Importing other tools' alerting rules as redops rules.
//!
//! [`prometheus`]: Prometheus rule files over redis_exporter metrics, read
//! with [`promql`] (expressions), [`annotation`] (templates) and
//! `metric_map` (the exporter's names and redops's).

pub mod annotation;
mod metric_map;
pub mod prometheus;
pub mod promql;
