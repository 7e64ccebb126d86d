//! redis_exporter's metric names and what redops calls the same thing.
//!
//! redis_exporter exports Redis's counters as counters
//! (`redis_evicted_keys_total`); redops's sampler turns them into rates per
//! second between samples (`evicted_per_sec`), so a counter only translates
//! inside `rate()`/`irate()`/`increase()`. docs/migrating-from-prometheus.md
//! prints these tables: keep the two in step.

/// What an exporter metric is in redops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mapped {
    /// The same gauge under redops's name, times `scale` (units differ).
    Gauge { name: &'static str, scale: f64 },
    /// A counter redops keeps only as its rate per second.
    Counter { rate: &'static str },
}

/// Exporter gauge → redops metric.
pub const GAUGES: &[(&str, &str)] = &[
    ("redis_up", "redis_up"),
    ("redis_uptime_in_seconds", "uptime_seconds"),
    ("redis_connected_clients", "connected_clients"),
    ("redis_blocked_clients", "blocked_clients"),
    ("redis_config_maxclients", "maxclients"),
    ("redis_memory_used_bytes", "used_memory"),
    ("redis_memory_used_rss_bytes", "used_memory_rss"),
    ("redis_memory_used_peak_bytes", "used_memory_peak"),
    ("redis_memory_max_bytes", "maxmemory"),
    ("redis_config_maxmemory", "maxmemory"),
    ("redis_mem_fragmentation_ratio", "mem_fragmentation_ratio"),
    ("redis_connected_slaves", "connected_replicas"),
    ("redis_master_link_up", "master_link_up"),
    ("redis_rdb_last_bgsave_status", "rdb_last_bgsave_ok"),
    ("redis_rdb_changes_since_last_save", "rdb_changes_since_last_save"),
];

/// Exporter counter → the redops rate per second of it.
pub const COUNTERS: &[(&str, &str)] = &[
    ("redis_evicted_keys_total", "evicted_per_sec"),
    ("redis_expired_keys_total", "expired_per_sec"),
    ("redis_rejected_connections_total", "rejected_connections_per_sec"),
    ("redis_commands_processed_total", "ops_per_sec"),
];

/// Per-database exporter metrics (label `db="dbN"`) → redops's `dbN_` suffix
/// and scale.
pub const PER_DB: &[(&str, &str, f64)] = &[
    ("redis_db_keys", "_keys", 1.0),
    ("redis_db_keys_expiring", "_expires", 1.0),
    // The exporter reports seconds, redops keeps Redis's milliseconds.
    ("redis_db_avg_ttl_seconds", "_avg_ttl_ms", 0.001),
];

/// `time() - redis_rdb_last_save_timestamp_seconds` is redops's
/// `seconds_since_last_save`.
pub const LAST_SAVE_TIMESTAMP: &str = "redis_rdb_last_save_timestamp_seconds";

/// The info metric whose `role` label redops has as the `role` text metric.
pub const INSTANCE_INFO: &str = "redis_instance_info";

pub fn lookup(name: &str) -> Option<Mapped> {
    if let Some((_, to)) = GAUGES.iter().find(|(from, _)| *from == name) {
        return Some(Mapped::Gauge { name: to, scale: 1.0 });
    }
    COUNTERS
        .iter()
        .find(|(from, _)| *from == name)
        .map(|(_, rate)| Mapped::Counter { rate })
}
