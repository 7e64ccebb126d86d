//! The names of the metrics a sample carries: what rules are written
//! against (`memory_used_pct > 85`), so a public contract. `redops check`
//! and the rules lint read them here; the sampler, the keyspace reader and
//! the trends emit them.

/// Whether the sample history keeps a metric: what operators chart and plan
/// capacity with. Text metrics (`role`) and flags are left out to keep the
/// tables small.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kept {
    InHistory,
    NotInHistory,
}

/// Every metric `redis::metrics::MetricsDeriver::derive` can emit, except the per-database
/// `db<N>_keys`, `db<N>_expires` and `db<N>_avg_ttl_ms`: the one list of
/// them. Mark a metric `InHistory` to start keeping it.
const METRICS: &[(&str, Kept)] = &[
    ("redis_up", Kept::NotInHistory),
    ("uptime_seconds", Kept::NotInHistory),
    ("role", Kept::NotInHistory),
    ("memory_used_pct", Kept::InHistory),
    ("used_memory", Kept::InHistory),
    ("used_memory_rss", Kept::InHistory),
    ("used_memory_peak", Kept::NotInHistory),
    ("maxmemory", Kept::InHistory),
    ("mem_fragmentation_ratio", Kept::InHistory),
    ("hit_ratio", Kept::InHistory),
    ("ops_per_sec", Kept::InHistory),
    ("evicted_per_sec", Kept::InHistory),
    ("expired_per_sec", Kept::InHistory),
    ("rejected_connections_per_sec", Kept::InHistory),
    ("connected_clients", Kept::InHistory),
    ("maxclients", Kept::InHistory),
    ("clients_used_pct", Kept::InHistory),
    ("blocked_clients", Kept::InHistory),
    ("connected_replicas", Kept::NotInHistory),
    ("master_link_up", Kept::NotInHistory),
    ("replication_lag_bytes", Kept::InHistory),
    ("rdb_last_bgsave_ok", Kept::NotInHistory),
    ("rdb_changes_since_last_save", Kept::NotInHistory),
    ("seconds_since_last_save", Kept::NotInHistory),
    ("total_keys", Kept::InHistory),
];

/// INFO's fields as Redis reports them (`redis::info_values`): lifetime
/// counters, which `/metrics` exports as Prometheus counters, and the
/// server's identity for `redis_instance_info`. Rules want the interval's
/// rates above; these are for `/metrics` first.
const INFO_VALUES: &[(&str, Kept)] = &[
    ("commands_processed_total", Kept::NotInHistory),
    ("connections_received_total", Kept::NotInHistory),
    ("rejected_connections_total", Kept::NotInHistory),
    ("keyspace_hits_total", Kept::NotInHistory),
    ("keyspace_misses_total", Kept::NotInHistory),
    ("evicted_keys_total", Kept::NotInHistory),
    ("expired_keys_total", Kept::NotInHistory),
    ("net_input_bytes_total", Kept::NotInHistory),
    ("net_output_bytes_total", Kept::NotInHistory),
    ("cpu_sys_seconds_total", Kept::NotInHistory),
    ("cpu_user_seconds_total", Kept::NotInHistory),
    ("rdb_last_save_timestamp_seconds", Kept::NotInHistory),
    ("process_id", Kept::NotInHistory),
    ("redis_version", Kept::NotInHistory),
    ("redis_build_id", Kept::NotInHistory),
    ("redis_mode", Kept::NotInHistory),
    ("os", Kept::NotInHistory),
    ("maxmemory_policy", Kept::NotInHistory),
    ("tcp_port", Kept::NotInHistory),
    ("run_id", Kept::NotInHistory),
    ("master_replid", Kept::NotInHistory),
];

/// The names of [`METRICS`] and [`INFO_VALUES`], for `redops check`.
pub static METRIC_NAMES: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| METRICS.iter().chain(INFO_VALUES).map(|(name, _)| *name).collect());

/// The metrics the sample history keeps (`history::METRICS`).
pub static HISTORY_METRICS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    METRICS
        .iter()
        .chain(INFO_VALUES)
        .filter(|(_, kept)| *kept == Kept::InHistory)
        .map(|(name, _)| *name)
        .collect()
});

const DB_METRIC_SUFFIXES: &[&str] = &["_keys", "_expires", "_avg_ttl_ms"];

/// True for a name `derive` can emit, including `db<N>_keys|expires|avg_ttl_ms`,
/// or one the engine adds from the sample history (`memory_full_in_days`, ...).
/// Probe metrics are named by the user and are checked against their own
/// declarations, not here.
pub fn is_known_metric(name: &str) -> bool {
    METRIC_NAMES.contains(&name) || is_db_metric(name) || TREND_METRICS.contains(&name)
}

fn is_db_metric(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("db") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (db, suffix) = rest.split_at(digits);
    db.parse::<u32>().is_ok() && DB_METRIC_SUFFIXES.contains(&suffix)
}

/// The names `history::trend::TargetTrend::metrics` can give a sample; rules may use them.
pub const TREND_METRICS: &[&str] = &[
    "memory_full_in_days",
    "used_memory_growth_per_week",
    "memory_growth_pct_per_week",
    "clients_full_in_days",
    "connected_clients_growth_per_week",
];

/// The sample metrics of `sources::keyspace::KeyspaceStats`, for `redops check`: the two
/// totals, and the seconds since the last loss of each kind (absent until
/// one happens).
pub const KEYSPACE_STAT_METRICS: [&str; 4] = [
    "events_lost_total",
    "keyspace_disconnects_total",
    "seconds_since_events_lost",
    "seconds_since_keyspace_disconnect",
];

/// The metrics of a cluster's own sample, on target `<cluster>`
/// (`cluster::metrics::cluster_metrics`; keep the two in step).
pub const CLUSTER_METRICS: &[&str] = &[
    "cluster_state_ok",
    "cluster_slots_assigned",
    "cluster_slots_ok",
    "cluster_slots_pfail",
    "cluster_slots_fail",
    "cluster_slots_uncovered",
    "cluster_known_nodes",
    "cluster_size",
    "cluster_current_epoch",
    "cluster_masters_without_replica",
    "cluster_shards_replicas_down",
    "cluster_memory_skew_pct",
    "cluster_keys_skew_pct",
    "cluster_nodes_failed",
    "cluster_nodes_pfail",
    "cluster_nodes_unreachable",
];

/// The metrics a cluster node's sample adds from `CLUSTER LINKS` (Redis ≥ 7).
pub const CLUSTER_LINK_METRICS: &[&str] = &[
    "cluster_links",
    "cluster_links_send_buffer_max_bytes",
    "cluster_links_send_buffer_bytes",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_metric_names() {
        for name in [
            "memory_used_pct",
            "redis_up",
            "db0_keys",
            "db15_expires",
            "db4_avg_ttl_ms",
            "memory_full_in_days",
            "clients_full_in_days",
        ] {
            assert!(is_known_metric(name), "{name}");
        }
        for name in [
            "memory_used_percent",
            "hit_rate",
            "db_keys",
            "dbx_keys",
            "db1_avg_ttl",
            "db1_keys_",
            "db99999999999_keys",
            "db-1_keys",
            "keys",
            "",
        ] {
            assert!(!is_known_metric(name), "{name}");
        }
    }
}
