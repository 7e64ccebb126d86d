//! Named metrics derived from successive INFO samples.
//!
//! Rules are written against these names (`memory_used_pct > 85`), so the
//! names are a public contract: [`crate::event::metric_names`] lists them for `redops check`,
//! and `docs/rules.md` documents each one. Counters that only grow
//! (`keyspace_hits`, `total_commands_processed`, ...) are turned into rates
//! and ratios over the last interval, because lifetime totals hide a problem
//! that started an hour ago on a server that has been up for a month.

use std::time::Duration;

use crate::event::{MetricValue, Metrics};
use crate::redis::info::Info;

/// Server limits read with `CONFIG GET maxmemory maxclients` by the caller.
/// They are the fallback for servers whose INFO lacks the field (`maxclients`
/// appeared in INFO with 6.2); 0 means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub maxmemory: u64,
    pub maxclients: u64,
}

/// Turns one target's INFO samples into metrics; keeps the previous sample's
/// counters so that rates cover the last interval. One per target.
#[derive(Debug, Default)]
pub struct MetricsDeriver {
    prev: Option<Counters>,
}

impl MetricsDeriver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Metrics of `info`. `elapsed_since_prev` is the time since the previous
    /// call's sample was taken; without it rates are left out.
    ///
    /// A sample that cannot continue the previous one (a restart, a
    /// `CONFIG RESETSTAT`, a different server behind the same address) is
    /// treated like the first: rates and `hit_ratio` are left out rather than
    /// reported negative or huge, and it becomes the new baseline.
    pub fn derive(
        &mut self,
        info: &Info,
        limits: &Limits,
        elapsed_since_prev: Option<Duration>,
        now_unix_secs: u64,
    ) -> Metrics {
        let mut m = Metrics::new();
        put(&mut m, "redis_up", Some(1.0));
        put_u64(&mut m, "uptime_seconds", info.get_u64("uptime_in_seconds"));
        derive_memory(&mut m, info, limits);
        derive_clients(&mut m, info, limits);
        derive_replication(&mut m, info);
        derive_persistence(&mut m, info, now_unix_secs);
        derive_keyspace(&mut m, info);
        crate::redis::info_values::put_info_values(&mut m, info);

        let current = Counters::read(info);
        let baseline = self.prev.as_ref().filter(|prev| current.continues(prev));
        derive_rates(&mut m, info, baseline, &current, elapsed_since_prev);
        self.prev = Some(current);
        m
    }
}

/// The monotonic counters of one sample.
#[derive(Debug, Clone, Default)]
struct Counters {
    run_id: Option<String>,
    uptime_seconds: Option<u64>,
    commands: Option<u64>,
    hits: Option<u64>,
    misses: Option<u64>,
    evicted: Option<u64>,
    expired: Option<u64>,
    rejected: Option<u64>,
}

impl Counters {
    fn read(info: &Info) -> Self {
        Counters {
            run_id: info.get("run_id").map(str::to_owned),
            uptime_seconds: info.get_u64("uptime_in_seconds"),
            commands: info.get_u64("total_commands_processed"),
            hits: info.get_u64("keyspace_hits"),
            misses: info.get_u64("keyspace_misses"),
            evicted: info.get_u64("evicted_keys"),
            expired: info.get_u64("expired_keys"),
            rejected: info.get_u64("rejected_connections"),
        }
    }

    fn monotonic(&self) -> [Option<u64>; 7] {
        [
            self.uptime_seconds,
            self.commands,
            self.hits,
            self.misses,
            self.evicted,
            self.expired,
            self.rejected,
        ]
    }

    /// Whether `self` can be a later reading of the same counters as `prev`.
    /// A changed `run_id` catches a restart even when the new process has
    /// already counted past the old totals.
    fn continues(&self, prev: &Counters) -> bool {
        if let (Some(now), Some(before)) = (&self.run_id, &prev.run_id)
            && now != before
        {
            return false;
        }
        self.monotonic()
            .into_iter()
            .zip(prev.monotonic())
            .all(|pair| match pair {
                (Some(now), Some(before)) => now >= before,
                _ => true,
            })
    }
}

fn put(m: &mut Metrics, name: &str, value: Option<f64>) {
    if let Some(v) = value {
        m.insert(name.to_owned(), MetricValue::Num(v));
    }
}

fn put_u64(m: &mut Metrics, name: &str, value: Option<u64>) {
    put(m, name, value.map(|v| v as f64));
}

fn pct(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64 * 100.0)
}

fn derive_memory(m: &mut Metrics, info: &Info, limits: &Limits) {
    let used = info.get_u64("used_memory");
    let maxmemory = info.get_u64("maxmemory").unwrap_or(limits.maxmemory);
    put_u64(m, "used_memory", used);
    put_u64(m, "used_memory_rss", info.get_u64("used_memory_rss"));
    put_u64(m, "used_memory_peak", info.get_u64("used_memory_peak"));
    put_u64(m, "maxmemory", Some(maxmemory));
    put(m, "mem_fragmentation_ratio", info.get_f64("mem_fragmentation_ratio"));

    // Without maxmemory Redis grows until the host runs out, so the host's
    // memory is the limit that matters. In a container this is the host's,
    // not the cgroup's, so such targets should set maxmemory.
    let capacity = if maxmemory > 0 {
        Some(maxmemory)
    } else {
        info.get_u64("total_system_memory")
    };
    if let (Some(used), Some(capacity)) = (used, capacity) {
        put(m, "memory_used_pct", pct(used, capacity));
    }
}

fn derive_clients(m: &mut Metrics, info: &Info, limits: &Limits) {
    let connected = info.get_u64("connected_clients");
    let maxclients = info.get_u64("maxclients").unwrap_or(limits.maxclients);
    put_u64(m, "connected_clients", connected);
    put_u64(m, "blocked_clients", info.get_u64("blocked_clients"));
    if maxclients > 0 {
        put_u64(m, "maxclients", Some(maxclients));
        put(m, "clients_used_pct", connected.and_then(|c| pct(c, maxclients)));
    }
}

fn derive_replication(m: &mut Metrics, info: &Info) {
    let role = match info.get("role") {
        Some("slave") => Some("replica"),
        other => other,
    };
    put_u64(m, "connected_replicas", info.get_u64("connected_slaves"));
    match role {
        Some("replica") => {
            let up = info.get("master_link_status") == Some("up");
            put(m, "master_link_up", Some(if up { 1.0 } else { 0.0 }));
        }
        Some("master") => {
            // A replica still in its full sync reports offset 0; counting it
            // would report the whole stream as lag on every new replica.
            let lag = info.get_u64("master_repl_offset").map(|master_offset| {
                info.replicas
                    .iter()
                    .filter(|r| r.state == "online")
                    .map(|r| master_offset.saturating_sub(r.offset))
                    .max()
                    .unwrap_or(0)
            });
            put_u64(m, "replication_lag_bytes", lag);
        }
        _ => {}
    }
    if let Some(role) = role {
        m.insert("role".to_owned(), MetricValue::Text(role.to_owned()));
    }
}

fn derive_persistence(m: &mut Metrics, info: &Info, now_unix_secs: u64) {
    let bgsave_ok = info.get("rdb_last_bgsave_status").map(|s| s == "ok");
    put(m, "rdb_last_bgsave_ok", bgsave_ok.map(|ok| if ok { 1.0 } else { 0.0 }));
    put_u64(
        m,
        "rdb_changes_since_last_save",
        info.get_u64("rdb_changes_since_last_save"),
    );
    // Saturating: the redops host's clock may be behind the server's.
    let since = info
        .get_u64("rdb_last_save_time")
        .map(|saved| now_unix_secs.saturating_sub(saved));
    put_u64(m, "seconds_since_last_save", since);
}

fn derive_keyspace(m: &mut Metrics, info: &Info) {
    let mut total: u64 = 0;
    for db in &info.keyspace {
        total = total.saturating_add(db.keys);
        put_u64(m, &format!("db{}_keys", db.db), Some(db.keys));
        put_u64(m, &format!("db{}_expires", db.db), Some(db.expires));
        put_u64(m, &format!("db{}_avg_ttl_ms", db.db), Some(db.avg_ttl_ms));
    }
    // Redis prints no line for an empty database, so no lines means 0 keys.
    put_u64(m, "total_keys", Some(total));
}

fn derive_rates(
    m: &mut Metrics,
    info: &Info,
    baseline: Option<&Counters>,
    current: &Counters,
    elapsed: Option<Duration>,
) {
    let Some(prev) = baseline else {
        put(m, "ops_per_sec", info.get_f64("instantaneous_ops_per_sec"));
        return;
    };
    let delta = |before: Option<u64>, now: Option<u64>| now?.checked_sub(before?);

    let hits = delta(prev.hits, current.hits);
    let misses = delta(prev.misses, current.misses);
    if let (Some(hits), Some(misses)) = (hits, misses) {
        let lookups = hits as f64 + misses as f64;
        if lookups > 0.0 {
            put(m, "hit_ratio", Some(hits as f64 / lookups * 100.0));
        }
    }

    let Some(secs) = elapsed.map(|d| d.as_secs_f64()).filter(|s| *s > 0.0) else {
        put(m, "ops_per_sec", info.get_f64("instantaneous_ops_per_sec"));
        return;
    };
    let rate = |before, now| delta(before, now).map(|d| d as f64 / secs);
    put(m, "ops_per_sec", rate(prev.commands, current.commands));
    put(m, "evicted_per_sec", rate(prev.evicted, current.evicted));
    put(m, "expired_per_sec", rate(prev.expired, current.expired));
    put(m, "rejected_connections_per_sec", rate(prev.rejected, current.rejected));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::metric_names::{METRIC_NAMES, is_known_metric};
    use crate::redis::info::parse;

    const MASTER: &str = include_str!("../../tests/fixtures/info_all_master.txt");
    const REPLICA: &str = include_str!("../../tests/fixtures/info_all_replica.txt");
    /// `rdb_last_save_time` of both fixtures plus 100 s.
    const NOW: u64 = 1_795_669_129;
    const FIVE_SECS: Option<Duration> = Some(Duration::from_secs(5));

    fn num(m: &Metrics, name: &str) -> Option<f64> {
        m.get(name).and_then(MetricValue::as_f64)
    }

    fn text<'a>(m: &'a Metrics, name: &str) -> Option<&'a str> {
        match m.get(name) {
            Some(MetricValue::Text(s)) => Some(s),
            _ => None,
        }
    }

    /// A sample with the given counters, as the master fixture's run.
    fn counters(uptime: u64, commands: u64, hits: u64, misses: u64, evicted: u64) -> Info {
        parse(&format!(
            "run_id:aaaa\nuptime_in_seconds:{uptime}\ntotal_commands_processed:{commands}\n\
             instantaneous_ops_per_sec:42\nkeyspace_hits:{hits}\nkeyspace_misses:{misses}\n\
             evicted_keys:{evicted}\nexpired_keys:{}\nrejected_connections:{}\n",
            evicted * 2,
            evicted / 10,
        ))
    }

    fn derive_one(text: &str, limits: Limits) -> Metrics {
        MetricsDeriver::new().derive(&parse(text), &limits, None, NOW)
    }

    #[test]
    fn first_sample_of_a_real_master() {
        let m = derive_one(MASTER, Limits::default());
        assert_eq!(num(&m, "redis_up"), Some(1.0));
        assert_eq!(num(&m, "uptime_seconds"), Some(14.0));
        assert_eq!(text(&m, "role"), Some("master"));
        assert_eq!(num(&m, "used_memory"), Some(1_159_088.0));
        assert_eq!(num(&m, "used_memory_rss"), Some(12_627_968.0));
        assert_eq!(num(&m, "used_memory_peak"), Some(1_159_088.0));
        assert_eq!(num(&m, "maxmemory"), Some(268_435_456.0));
        let expected = 1_159_088.0 / 268_435_456.0 * 100.0;
        assert_eq!(num(&m, "memory_used_pct"), Some(expected));
        assert_eq!(num(&m, "mem_fragmentation_ratio"), Some(11.28));
        assert_eq!(num(&m, "connected_clients"), Some(1.0));
        assert_eq!(num(&m, "maxclients"), Some(10_000.0));
        assert_eq!(num(&m, "clients_used_pct"), Some(0.01));
        assert_eq!(num(&m, "blocked_clients"), Some(0.0));
        assert_eq!(num(&m, "connected_replicas"), Some(1.0));
        assert_eq!(num(&m, "replication_lag_bytes"), Some(0.0));
        assert_eq!(num(&m, "master_link_up"), None);
        assert_eq!(num(&m, "rdb_last_bgsave_ok"), Some(1.0));
        assert_eq!(num(&m, "rdb_changes_since_last_save"), Some(14.0));
        assert_eq!(num(&m, "seconds_since_last_save"), Some(100.0));
        assert_eq!(num(&m, "total_keys"), Some(12.0));
        assert_eq!(num(&m, "db0_keys"), Some(3.0));
        assert_eq!(num(&m, "db1_keys"), Some(7.0));
        assert_eq!(num(&m, "db1_expires"), Some(6.0));
        assert_eq!(num(&m, "db4_avg_ttl_ms"), Some(1_209_589_299.0));
        assert_eq!(num(&m, "db2_keys"), None);
    }

    #[test]
    fn first_sample_has_instantaneous_ops_and_no_deltas() {
        let m = derive_one(MASTER, Limits::default());
        assert_eq!(num(&m, "ops_per_sec"), Some(1.0));
        for name in [
            "hit_ratio",
            "evicted_per_sec",
            "expired_per_sec",
            "rejected_connections_per_sec",
        ] {
            assert!(!m.contains_key(name), "{name}");
        }
    }

    #[test]
    fn real_replica_with_maxmemory_0_uses_system_memory() {
        let m = derive_one(REPLICA, Limits::default());
        assert_eq!(text(&m, "role"), Some("replica"));
        assert_eq!(num(&m, "master_link_up"), Some(1.0));
        assert_eq!(num(&m, "replication_lag_bytes"), None);
        assert_eq!(num(&m, "connected_replicas"), Some(0.0));
        assert_eq!(num(&m, "maxmemory"), Some(0.0));
        let expected = 1_039_712.0 / 25_276_502_016.0 * 100.0;
        assert_eq!(num(&m, "memory_used_pct"), Some(expected));
        assert_eq!(num(&m, "db1_avg_ttl_ms"), Some(0.0));
    }

    #[test]
    fn replica_with_link_down() {
        let m = derive_one("role:slave\r\nmaster_link_status:down\r\n", Limits::default());
        assert_eq!(text(&m, "role"), Some("replica"));
        assert_eq!(num(&m, "master_link_up"), Some(0.0));
    }

    #[test]
    fn memory_used_pct_absent_when_no_limit_is_known() {
        let m = derive_one("used_memory:100\r\nmaxmemory:0\r\n", Limits::default());
        assert_eq!(num(&m, "maxmemory"), Some(0.0));
        assert!(!m.contains_key("memory_used_pct"));
    }

    #[test]
    fn limits_fill_in_fields_older_servers_lack() {
        let limits = Limits {
            maxmemory: 1000,
            maxclients: 200,
        };
        let m = derive_one("used_memory:250\r\nconnected_clients:50\r\n", limits);
        assert_eq!(num(&m, "maxmemory"), Some(1000.0));
        assert_eq!(num(&m, "memory_used_pct"), Some(25.0));
        assert_eq!(num(&m, "maxclients"), Some(200.0));
        assert_eq!(num(&m, "clients_used_pct"), Some(25.0));
    }

    #[test]
    fn info_fields_win_over_limits() {
        let limits = Limits {
            maxmemory: 1000,
            maxclients: 200,
        };
        let m = derive_one(
            "used_memory:250\r\nmaxmemory:500\r\nconnected_clients:50\r\nmaxclients:100\r\n",
            limits,
        );
        assert_eq!(num(&m, "memory_used_pct"), Some(50.0));
        assert_eq!(num(&m, "clients_used_pct"), Some(50.0));
    }

    #[test]
    fn clients_used_pct_absent_without_maxclients() {
        let m = derive_one("connected_clients:50\r\n", Limits::default());
        assert_eq!(num(&m, "connected_clients"), Some(50.0));
        assert!(!m.contains_key("maxclients"));
        assert!(!m.contains_key("clients_used_pct"));
    }

    #[test]
    fn deltas_between_two_samples() {
        let mut d = MetricsDeriver::new();
        let limits = Limits::default();
        d.derive(&counters(100, 1000, 100, 10, 0), &limits, None, NOW);
        let m = d.derive(&counters(105, 1500, 190, 20, 50), &limits, FIVE_SECS, NOW);
        assert_eq!(num(&m, "hit_ratio"), Some(90.0));
        assert_eq!(num(&m, "ops_per_sec"), Some(100.0));
        assert_eq!(num(&m, "evicted_per_sec"), Some(10.0));
        assert_eq!(num(&m, "expired_per_sec"), Some(20.0));
        assert_eq!(num(&m, "rejected_connections_per_sec"), Some(1.0));
    }

    #[test]
    fn hit_ratio_is_over_the_interval_not_the_lifetime() {
        let mut d = MetricsDeriver::new();
        let limits = Limits::default();
        // A lifetime of hits, then an interval of only misses.
        d.derive(&counters(100, 0, 1_000_000, 0, 0), &limits, None, NOW);
        let m = d.derive(&counters(105, 0, 1_000_000, 100, 0), &limits, FIVE_SECS, NOW);
        assert_eq!(num(&m, "hit_ratio"), Some(0.0));
    }

    #[test]
    fn hit_ratio_absent_without_lookups_in_the_interval() {
        let mut d = MetricsDeriver::new();
        let limits = Limits::default();
        d.derive(&counters(100, 10, 5, 5, 0), &limits, None, NOW);
        let m = d.derive(&counters(105, 20, 5, 5, 0), &limits, FIVE_SECS, NOW);
        assert!(!m.contains_key("hit_ratio"));
        assert_eq!(num(&m, "ops_per_sec"), Some(2.0));
    }

    #[test]
    fn without_elapsed_rates_are_left_out_but_hit_ratio_is_not() {
        let mut d = MetricsDeriver::new();
        let limits = Limits::default();
        d.derive(&counters(100, 1000, 0, 0, 0), &limits, None, NOW);
        let m = d.derive(&counters(105, 1500, 3, 1, 50), &limits, None, NOW);
        assert_eq!(num(&m, "hit_ratio"), Some(75.0));
        assert_eq!(num(&m, "ops_per_sec"), Some(42.0));
        assert!(!m.contains_key("evicted_per_sec"));
        let m = d.derive(&counters(110, 1600, 3, 1, 50), &limits, Some(Duration::ZERO), NOW);
        assert!(!m.contains_key("evicted_per_sec"));
    }

    #[test]
    fn restart_skips_rates_and_resets_the_baseline() {
        let mut d = MetricsDeriver::new();
        let limits = Limits::default();
        d.derive(&counters(10_000, 900_000, 5000, 500, 300), &limits, None, NOW);
        let m = d.derive(&counters(3, 20, 10, 0, 0), &limits, FIVE_SECS, NOW);
        assert!(!m.contains_key("hit_ratio"));
        assert!(!m.contains_key("evicted_per_sec"));
        assert!(!m.contains_key("expired_per_sec"));
        assert!(!m.contains_key("rejected_connections_per_sec"));
        assert_eq!(num(&m, "ops_per_sec"), Some(42.0));

        let m = d.derive(&counters(8, 520, 19, 1, 10), &limits, FIVE_SECS, NOW);
        assert_eq!(num(&m, "ops_per_sec"), Some(100.0));
        assert_eq!(num(&m, "hit_ratio"), Some(90.0));
        assert_eq!(num(&m, "evicted_per_sec"), Some(2.0));
    }

    #[test]
    fn a_decreased_counter_is_a_reset_even_when_uptime_grew() {
        // CONFIG RESETSTAT zeroes the counters of a running server.
        let mut d = MetricsDeriver::new();
        let limits = Limits::default();
        d.derive(&counters(100, 1000, 100, 10, 0), &limits, None, NOW);
        let m = d.derive(&counters(105, 1500, 3, 1, 0), &limits, FIVE_SECS, NOW);
        assert!(!m.contains_key("hit_ratio"));
        assert!(!m.contains_key("evicted_per_sec"));
        assert_eq!(num(&m, "ops_per_sec"), Some(42.0));
    }

    #[test]
    fn a_new_run_id_is_a_reset_even_when_counters_grew() {
        let mut d = MetricsDeriver::new();
        let limits = Limits::default();
        d.derive(&counters(100, 10, 0, 0, 0), &limits, None, NOW);
        let other = MASTER.replace("uptime_in_seconds:14", "uptime_in_seconds:200");
        let m = d.derive(&parse(&other), &limits, FIVE_SECS, NOW);
        assert!(!m.contains_key("evicted_per_sec"));
        assert_eq!(num(&m, "ops_per_sec"), Some(1.0));
    }

    #[test]
    fn replication_lag_is_the_worst_online_replica() {
        let m = derive_one(
            "role:master\r\nconnected_slaves:3\r\nmaster_repl_offset:5000\r\n\
             slave0:ip=10.0.0.1,port=6379,state=online,offset=4900,lag=0\r\n\
             slave1:ip=10.0.0.2,port=6379,state=online,offset=3000,lag=1\r\n\
             slave2:ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0\r\n",
            Limits::default(),
        );
        assert_eq!(num(&m, "replication_lag_bytes"), Some(2000.0));
        assert_eq!(num(&m, "connected_replicas"), Some(3.0));
    }

    #[test]
    fn replication_lag_is_0_without_replicas() {
        let m = derive_one(
            "role:master\r\nconnected_slaves:0\r\nmaster_repl_offset:5000\r\n",
            Limits::default(),
        );
        assert_eq!(num(&m, "replication_lag_bytes"), Some(0.0));
    }

    #[test]
    fn failed_bgsave_and_a_clock_behind_the_server() {
        let m = derive_one(
            "rdb_last_bgsave_status:err\r\nrdb_last_save_time:2000000000\r\n",
            Limits::default(),
        );
        assert_eq!(num(&m, "rdb_last_bgsave_ok"), Some(0.0));
        assert_eq!(num(&m, "seconds_since_last_save"), Some(0.0));
    }

    #[test]
    fn empty_keyspace_is_0_keys() {
        let m = derive_one("role:master\r\n# Keyspace\r\n", Limits::default());
        assert_eq!(num(&m, "total_keys"), Some(0.0));
    }

    #[test]
    fn every_emitted_metric_is_known() {
        let mut d = MetricsDeriver::new();
        let limits = Limits::default();
        d.derive(&parse(MASTER), &limits, None, NOW);
        let later = MASTER
            .replace("keyspace_hits:1", "keyspace_hits:9")
            .replace("uptime_in_seconds:14", "uptime_in_seconds:19");
        let mut names: Vec<String> = d.derive(&parse(&later), &limits, FIVE_SECS, NOW).into_keys().collect();
        names.extend(derive_one(REPLICA, limits).into_keys());
        for name in &names {
            assert!(is_known_metric(name), "{name}");
        }
        for name in METRIC_NAMES.iter() {
            assert!(names.iter().any(|n| n == name), "{name} never emitted");
        }
    }
}
