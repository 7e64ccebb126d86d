//! INFO fields a sample carries as Redis reports them: the lifetime
//! counters and the server's identity.
//!
//! Rules mostly want the rates and ratios of [`super::metrics`], which
//! describe the last interval. Prometheus wants the opposite: the raw
//! cumulative counters, so that `rate()` works over any window and
//! survives a missed scrape. `/metrics` exports these under redis_exporter's
//! names (`docs/metrics.md`); a rule may read them too.

use crate::event::{MetricValue, Metrics};
use crate::redis::info::Info;

/// Counters Redis only ever increases (until a restart or `CONFIG
/// RESETSTAT`): the sample's name, and INFO's field.
pub const COUNTERS: &[(&str, &str)] = &[
    ("commands_processed_total", "total_commands_processed"),
    ("connections_received_total", "total_connections_received"),
    ("rejected_connections_total", "rejected_connections"),
    ("keyspace_hits_total", "keyspace_hits"),
    ("keyspace_misses_total", "keyspace_misses"),
    ("evicted_keys_total", "evicted_keys"),
    ("expired_keys_total", "expired_keys"),
    ("net_input_bytes_total", "total_net_input_bytes"),
    ("net_output_bytes_total", "total_net_output_bytes"),
    ("cpu_sys_seconds_total", "used_cpu_sys"),
    ("cpu_user_seconds_total", "used_cpu_user"),
];

/// Numbers read as they are: the sample's name, and INFO's field.
pub const GAUGES: &[(&str, &str)] = &[
    ("rdb_last_save_timestamp_seconds", "rdb_last_save_time"),
    ("process_id", "process_id"),
];

/// Text that says which server this is, for `redis_instance_info`: the
/// sample's name, and INFO's fields (Redis 7 spells `redis_mode` as
/// `server_mode` on some builds).
pub const IDENTITY: &[(&str, &[&str])] = &[
    ("redis_version", &["redis_version"]),
    ("redis_build_id", &["redis_build_id"]),
    ("redis_mode", &["redis_mode", "server_mode"]),
    ("os", &["os"]),
    ("maxmemory_policy", &["maxmemory_policy"]),
    ("tcp_port", &["tcp_port"]),
    ("run_id", &["run_id"]),
    ("master_replid", &["master_replid"]),
];

/// Puts every field of [`COUNTERS`], [`GAUGES`] and [`IDENTITY`] that
/// `info` has into `m`; a field the server does not report is absent.
pub fn put_info_values(m: &mut Metrics, info: &Info) {
    for (name, field) in COUNTERS.iter().chain(GAUGES) {
        if let Some(v) = info.get_f64(field) {
            m.insert((*name).to_owned(), MetricValue::Num(v));
        }
    }
    for (name, fields) in IDENTITY {
        if let Some(v) = fields.iter().find_map(|f| info.get(f)).filter(|v| !v.is_empty()) {
            m.insert((*name).to_owned(), MetricValue::Text(v.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::info::parse;

    const MASTER: &str = include_str!("../../tests/fixtures/info_all_master.txt");

    #[test]
    fn a_real_masters_counters_and_identity() {
        let mut m = Metrics::new();
        put_info_values(&mut m, &parse(MASTER));
        let num = |n: &str| m.get(n).and_then(MetricValue::as_f64);
        let text = |n: &str| match m.get(n) {
            Some(MetricValue::Text(s)) => Some(s.as_str()),
            _ => None,
        };
        assert_eq!(num("net_input_bytes_total"), Some(1605.0));
        assert_eq!(num("cpu_sys_seconds_total"), Some(0.020940));
        assert_eq!(num("process_id"), Some(7425.0));
        assert!(num("commands_processed_total").is_some_and(|v| v > 0.0));
        assert!(num("rdb_last_save_timestamp_seconds").is_some_and(|v| v > 1.7e9));
        assert_eq!(text("redis_mode"), Some("standalone"));
        assert_eq!(text("tcp_port"), Some("32781"));
        assert_eq!(text("maxmemory_policy"), Some("allkeys-lru"));
        assert_eq!(text("master_replid"), Some("5fe699540bb58c48fb4b025b3d45feda9d153cab"));
    }

    #[test]
    fn missing_fields_are_absent_not_zero() {
        let mut m = Metrics::new();
        put_info_values(&mut m, &parse("role:master\r\nkeyspace_hits:7\r\n"));
        assert_eq!(m.get("keyspace_hits_total"), Some(&MetricValue::Num(7.0)));
        assert_eq!(m.len(), 1, "{m:?}");
    }
}
