//! The Prometheus family each sample metric is exported as.
//!
//! A metric redis_exporter also has gets redis_exporter's name, type and
//! labels, so that a Grafana board built on redis_exporter works against
//! redops: `used_memory` is `redis_memory_used_bytes`, the lifetime
//! `commands_processed_total` is the counter `redis_commands_processed_total`,
//! `db0_keys` is `redis_db_keys{db="db0"}`. Every other metric a sample
//! carries (redops's own rates and ratios, probes, Sentinel group and
//! cluster metrics, trends) passes through as `redops_<name>`, with its
//! unit spelled out in base units as Prometheus names want them: a
//! `_total` metric is a counter, `_pct` becomes a 0–1 `_ratio`, `_per_sec`
//! `_per_second`, `_ms` `_seconds`. So a metric added to the sample
//! vocabulary appears here without an edit; add a line to [`EXPORTER`] only
//! when redis_exporter has it under another name. The map is documented in
//! `docs/metrics.md`.

use std::borrow::Cow;

use crate::event::metric_names::KEYSPACE_STAT_METRICS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// Where one sample metric goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family's name; a counter's without `_total`, which the encoder
    /// adds.
    pub name: Cow<'static, str>,
    pub kind: Kind,
    pub help: Cow<'static, str>,
    /// What the sample's value is multiplied by: 0.001 for ms, 0.01 for %.
    pub scale: f64,
    /// `db0` for a per-database metric: the `db` label.
    pub db: Option<String>,
}

/// One line of the map: the sample's name, the family, its type, scale and
/// HELP. Names and units are redis_exporter's (`exporter/exporter.go`,
/// `exporter/info.go` of oliver006/redis_exporter).
struct Known {
    sample: &'static str,
    family: &'static str,
    kind: Kind,
    scale: f64,
    help: &'static str,
}

const fn gauge(sample: &'static str, family: &'static str, help: &'static str) -> Known {
    Known {
        sample,
        family,
        kind: Kind::Gauge,
        scale: 1.0,
        help,
    }
}

const fn counter(sample: &'static str, family: &'static str, help: &'static str) -> Known {
    Known {
        sample,
        family,
        kind: Kind::Counter,
        scale: 1.0,
        help,
    }
}

const fn scaled(sample: &'static str, family: &'static str, scale: f64, help: &'static str) -> Known {
    Known {
        sample,
        family,
        kind: Kind::Gauge,
        scale,
        help,
    }
}

/// Sample metrics redis_exporter also has, under its names; then redops's
/// own that need more than the generic rule (a ratio in %, HELP worth
/// writing out).
const EXPORTER: &[Known] = &[
    gauge(
        "redis_up",
        "redis_up",
        "Whether redops's last sample of the target succeeded (1) or not (0).",
    ),
    gauge(
        "uptime_seconds",
        "redis_uptime_in_seconds",
        "Seconds since the server started (INFO uptime_in_seconds).",
    ),
    gauge(
        "used_memory",
        "redis_memory_used_bytes",
        "Memory Redis allocated (INFO used_memory).",
    ),
    gauge(
        "used_memory_rss",
        "redis_memory_used_rss_bytes",
        "Memory the OS gave the server (INFO used_memory_rss).",
    ),
    gauge(
        "used_memory_peak",
        "redis_memory_used_peak_bytes",
        "Highest used_memory since start (INFO used_memory_peak).",
    ),
    gauge(
        "maxmemory",
        "redis_memory_max_bytes",
        "The maxmemory limit; 0 means none.",
    ),
    gauge(
        "mem_fragmentation_ratio",
        "redis_mem_fragmentation_ratio",
        "RSS over used memory (INFO mem_fragmentation_ratio).",
    ),
    gauge(
        "connected_clients",
        "redis_connected_clients",
        "Client connections, replicas excluded.",
    ),
    gauge(
        "blocked_clients",
        "redis_blocked_clients",
        "Clients waiting in a blocking call (BLPOP, XREAD BLOCK, ...).",
    ),
    gauge("maxclients", "redis_config_maxclients", "The maxclients limit."),
    gauge(
        "connected_replicas",
        "redis_connected_slaves",
        "Replicas attached to this server (INFO connected_slaves).",
    ),
    gauge(
        "master_link_up",
        "redis_master_link_up",
        "On a replica, whether its link to the master is up (1) or not (0).",
    ),
    gauge(
        "rdb_last_bgsave_ok",
        "redis_rdb_last_bgsave_status",
        "Whether the last RDB snapshot succeeded (1) or failed (0).",
    ),
    gauge(
        "rdb_changes_since_last_save",
        "redis_rdb_changes_since_last_save",
        "Writes not yet in an RDB snapshot.",
    ),
    gauge(
        "rdb_last_save_timestamp_seconds",
        "redis_rdb_last_save_timestamp_seconds",
        "Unix time of the last successful RDB snapshot (INFO rdb_last_save_time).",
    ),
    gauge("process_id", "redis_process_id", "The server's process id."),
    counter(
        "commands_processed_total",
        "redis_commands_processed",
        "Commands the server processed since start (INFO total_commands_processed).",
    ),
    counter(
        "connections_received_total",
        "redis_connections_received",
        "Connections the server accepted since start (INFO total_connections_received).",
    ),
    counter(
        "rejected_connections_total",
        "redis_rejected_connections",
        "Connections refused because maxclients was reached (INFO rejected_connections).",
    ),
    counter(
        "keyspace_hits_total",
        "redis_keyspace_hits",
        "Key lookups that found the key (INFO keyspace_hits).",
    ),
    counter(
        "keyspace_misses_total",
        "redis_keyspace_misses",
        "Key lookups that did not find the key (INFO keyspace_misses).",
    ),
    counter(
        "evicted_keys_total",
        "redis_evicted_keys",
        "Keys evicted to stay under maxmemory (INFO evicted_keys).",
    ),
    counter(
        "expired_keys_total",
        "redis_expired_keys",
        "Keys removed because their TTL ran out (INFO expired_keys).",
    ),
    counter(
        "net_input_bytes_total",
        "redis_net_input_bytes",
        "Bytes read from the network (INFO total_net_input_bytes).",
    ),
    counter(
        "net_output_bytes_total",
        "redis_net_output_bytes",
        "Bytes written to the network (INFO total_net_output_bytes).",
    ),
    counter(
        "cpu_sys_seconds_total",
        "redis_cpu_sys_seconds",
        "System CPU the server used (INFO used_cpu_sys).",
    ),
    counter(
        "cpu_user_seconds_total",
        "redis_cpu_user_seconds",
        "User CPU the server used (INFO used_cpu_user).",
    ),
    scaled(
        "memory_used_pct",
        "redops_memory_used_ratio",
        0.01,
        "Memory used against maxmemory, or against the system's memory without a limit, 0-1 (rule metric memory_used_pct / 100).",
    ),
    scaled(
        "clients_used_pct",
        "redops_clients_used_ratio",
        0.01,
        "Connections used against maxclients, 0-1 (rule metric clients_used_pct / 100).",
    ),
    scaled(
        "hit_ratio",
        "redops_hit_ratio",
        0.01,
        "Share of key lookups that hit in the last sample interval, 0-1 (rule metric hit_ratio / 100).",
    ),
    gauge(
        "sample_duration_seconds",
        "redops_sample_duration_seconds",
        "Seconds the last sample of the target took: INFO and its probes.",
    ),
];

/// The per-database metrics, `db<N>_<suffix>`: suffix, family, scale, HELP.
const PER_DB: &[(&str, &str, f64, &str)] = &[
    (
        "_keys",
        "redis_db_keys",
        1.0,
        "Keys in the database (INFO keyspace keys).",
    ),
    (
        "_expires",
        "redis_db_keys_expiring",
        1.0,
        "Keys with a TTL in the database (INFO keyspace expires).",
    ),
    (
        "_avg_ttl_ms",
        "redis_db_avg_ttl_seconds",
        0.001,
        "Redis's estimate of the remaining TTL of expiring keys in the database (INFO keyspace avg_ttl).",
    ),
];

/// The family of the sample metric `name`.
pub fn family(name: &str) -> Family {
    if let Some(k) = EXPORTER.iter().find(|k| k.sample == name) {
        return Family {
            name: Cow::Borrowed(k.family),
            kind: k.kind,
            help: Cow::Borrowed(k.help),
            scale: k.scale,
            db: None,
        };
    }
    if let Some(family) = per_db(name) {
        return family;
    }
    passed_through(name)
}

fn per_db(name: &str) -> Option<Family> {
    let rest = name.strip_prefix("db")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (db, suffix) = rest.split_at(digits);
    db.parse::<u32>().ok()?;
    let (_, family, scale, help) = PER_DB.iter().find(|(s, ..)| *s == suffix)?;
    Some(Family {
        name: Cow::Borrowed(*family),
        kind: Kind::Gauge,
        help: Cow::Borrowed(*help),
        scale: *scale,
        db: Some(format!("db{db}")),
    })
}

/// `redops_<name>`, units spelled out in base units.
fn passed_through(name: &str) -> Family {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    // What the keyspace subscription lost is redops's figure:
    // `events_lost_total` is `redops_keyspace_events_lost_total`.
    let clean = if KEYSPACE_STAT_METRICS.contains(&name) {
        format!("keyspace_{}", clean.replace("keyspace_", ""))
    } else {
        clean
    };
    let help = format!("redops's sample metric {name} of each target (docs/metrics.md).");
    let (stem, kind, scale) = if let Some(stem) = clean.strip_suffix("_total") {
        (stem.to_owned(), Kind::Counter, 1.0)
    } else if let Some(stem) = clean.strip_suffix("_pct") {
        (format!("{stem}_ratio"), Kind::Gauge, 0.01)
    } else if let Some(stem) = clean.strip_suffix("_per_sec") {
        (format!("{stem}_per_second"), Kind::Gauge, 1.0)
    } else if let Some(stem) = clean.strip_suffix("_ms") {
        (format!("{stem}_seconds"), Kind::Gauge, 0.001)
    } else {
        (clean, Kind::Gauge, 1.0)
    };
    Family {
        name: Cow::Owned(format!("redops_{stem}")),
        kind,
        help: Cow::Owned(help),
        scale,
        db: None,
    }
}

/// The text metrics that label `redis_instance_info`, as redis_exporter
/// names its labels, besides `role` and `process_id`.
pub const INSTANCE_INFO_TEXT: &[&str] = &[
    "redis_version",
    "redis_build_id",
    "redis_mode",
    "os",
    "maxmemory_policy",
    "tcp_port",
    "run_id",
    "master_replid",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> (String, Kind, f64, Option<String>) {
        let f = family(name);
        (f.name.into_owned(), f.kind, f.scale, f.db)
    }

    #[test]
    fn redis_exporter_names_for_what_it_also_has() {
        assert_eq!(named("redis_up"), ("redis_up".into(), Kind::Gauge, 1.0, None));
        assert_eq!(named("used_memory").0, "redis_memory_used_bytes");
        assert_eq!(named("maxmemory").0, "redis_memory_max_bytes");
        assert_eq!(named("uptime_seconds").0, "redis_uptime_in_seconds");
        assert_eq!(named("connected_replicas").0, "redis_connected_slaves");
        assert_eq!(
            named("commands_processed_total"),
            ("redis_commands_processed".into(), Kind::Counter, 1.0, None)
        );
        assert_eq!(
            named("db0_keys"),
            ("redis_db_keys".into(), Kind::Gauge, 1.0, Some("db0".into()))
        );
        assert_eq!(
            named("db12_expires"),
            ("redis_db_keys_expiring".into(), Kind::Gauge, 1.0, Some("db12".into()))
        );
        assert_eq!(
            named("db4_avg_ttl_ms"),
            (
                "redis_db_avg_ttl_seconds".into(),
                Kind::Gauge,
                0.001,
                Some("db4".into())
            )
        );
    }

    #[test]
    fn percentages_become_ratios_from_0_to_1() {
        assert_eq!(
            named("memory_used_pct"),
            ("redops_memory_used_ratio".into(), Kind::Gauge, 0.01, None)
        );
        assert_eq!(named("hit_ratio"), ("redops_hit_ratio".into(), Kind::Gauge, 0.01, None));
        // A percentage the map does not know, say a cluster's.
        assert_eq!(
            named("cluster_slots_ok_pct"),
            ("redops_cluster_slots_ok_ratio".into(), Kind::Gauge, 0.01, None)
        );
    }

    #[test]
    fn everything_else_passes_through_under_redops_names() {
        assert_eq!(
            named("ops_per_sec"),
            ("redops_ops_per_second".into(), Kind::Gauge, 1.0, None)
        );
        assert_eq!(
            named("celery-backlog"),
            ("redops_celery_backlog".into(), Kind::Gauge, 1.0, None)
        );
        assert_eq!(
            named("sentinel_events_sdown_total"),
            ("redops_sentinel_events_sdown".into(), Kind::Counter, 1.0, None)
        );
        assert_eq!(
            named("events_lost_total"),
            ("redops_keyspace_events_lost".into(), Kind::Counter, 1.0, None)
        );
        assert_eq!(
            named("seconds_since_keyspace_disconnect").0,
            "redops_keyspace_seconds_since_disconnect"
        );
        assert_eq!(named("db1_avg_ttl").0, "redops_db1_avg_ttl");
        assert_eq!(named("dbx_keys").0, "redops_dbx_keys");
        assert!(family("celery-backlog").help.contains("celery-backlog"));
    }

    #[test]
    fn docs_metrics_md_maps_every_known_name() {
        let doc = include_str!("../../../docs/metrics.md");
        for k in EXPORTER {
            let family = match k.kind {
                Kind::Counter => format!("`{}_total`", k.family),
                Kind::Gauge => format!("`{}`", k.family),
            };
            let row = format!("| `{}` | {family} |", k.sample);
            assert!(doc.contains(&row), "docs/metrics.md has no row {row}");
        }
        for (suffix, family, ..) in PER_DB {
            assert!(
                doc.contains(&format!("| `db<N>{suffix}` | `{family}{{db=\"dbN\"}}` |")),
                "{family}"
            );
        }
    }

    #[test]
    fn every_sample_metric_has_a_family_with_help() {
        for name in crate::event::metric_names::METRIC_NAMES.iter() {
            let f = family(name);
            assert!(f.name.starts_with("redis_") || f.name.starts_with("redops_"), "{name}");
            assert!(!f.help.is_empty(), "{name}");
            assert!(
                f.kind == Kind::Counter || !f.name.ends_with("_total"),
                "{name}: a gauge named _total"
            );
        }
    }
}
