//! Each construct of the alert expressions people write, and the reasons
//! given for what does not translate.

use super::*;

fn when(expr: &str) -> String {
    match translate(expr) {
        Ok(t) => t.when,
        Err(e) => panic!("{expr}: {e}"),
    }
}

fn refused(expr: &str) -> String {
    match translate(expr) {
        Ok(t) => panic!("{expr} translated to {}", t.when),
        Err(e) => e.0,
    }
}

#[test]
fn gauges_comparisons_and_arithmetic() {
    assert_eq!(when("redis_up == 0"), "redis_up == 0");
    assert_eq!(
        when("redis_memory_used_bytes / redis_memory_max_bytes * 100 > 90 and on(instance) redis_memory_max_bytes > 0"),
        "used_memory / maxmemory * 100 > 90 && maxmemory > 0"
    );
    assert_eq!(
        when("redis_connected_clients / redis_config_maxclients * 100 > 90"),
        "connected_clients / maxclients * 100 > 90"
    );
    // Grouping that Rhai would read differently keeps its parentheses.
    assert_eq!(
        when("redis_connected_clients - (redis_blocked_clients - 1) > 0"),
        "connected_clients - (blocked_clients - 1) > 0"
    );
    assert_eq!(
        when("(redis_connected_clients + 1) * 2 > 10"),
        "(connected_clients + 1) * 2 > 10"
    );
    assert_eq!(
        when("redis_mem_fragmentation_ratio ^ 2 >= 2.25"),
        "mem_fragmentation_ratio ** 2 >= 2.25"
    );
    assert_eq!(when("-redis_connected_clients < -5"), "-connected_clients < -5");
}

#[test]
fn set_operators_and_the_role_info_metric() {
    assert_eq!(
        when("redis_connected_slaves < 1 and on(instance) redis_instance_info{role=\"master\"}"),
        "connected_replicas < 1 && role == \"master\""
    );
    assert_eq!(
        when("redis_up == 0 or redis_master_link_up == 0"),
        "redis_up == 0 || master_link_up == 0"
    );
    assert_eq!(
        when("redis_master_link_up == 0 unless redis_instance_info{role=\"master\"}"),
        "master_link_up == 0 && !(role == \"master\")"
    );
    assert_eq!(
        when("redis_instance_info{role=\"slave\"} and redis_up == 1"),
        "role == \"replica\" && redis_up == 1"
    );
}

#[test]
fn look_back_functions() {
    assert_eq!(
        when("delta(redis_connected_slaves[1m]) < 0"),
        "delta(\"connected_replicas\", \"1m\") < 0"
    );
    assert_eq!(
        when("changes(redis_connected_slaves[1m]) > 1"),
        "changes(\"connected_replicas\", \"1m\") > 1"
    );
    assert_eq!(
        when("avg_over_time(redis_connected_clients[5m]) > 100 and max_over_time(redis_memory_used_bytes[1h]) > 1e9"),
        "avg_over(\"connected_clients\", \"5m\") > 100 && max_over(\"used_memory\", \"1h\") > 1000000000"
    );
    assert_eq!(
        when("min_over_time(redis_up[10m]) == 0"),
        "min_over(\"redis_up\", \"10m\") == 0"
    );
}

#[test]
fn counters_become_redops_rates() {
    let t = translate("increase(redis_rejected_connections_total[1m]) > 0").unwrap();
    assert_eq!(t.when, "avg_over(\"rejected_connections_per_sec\", \"1m\") * 60 > 0");
    assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
    assert_eq!(
        when("rate(redis_evicted_keys_total[5m]) > 10"),
        "avg_over(\"evicted_per_sec\", \"5m\") > 10"
    );
    assert_eq!(
        when("irate(redis_commands_processed_total[1m]) > 50000"),
        "ops_per_sec > 50000"
    );
    assert!(refused("redis_evicted_keys_total > 10").contains("is a counter"));
}

#[test]
fn special_forms() {
    assert_eq!(
        when("time() - redis_rdb_last_save_timestamp_seconds > 60 * 60 * 24"),
        "seconds_since_last_save > 60 * 60 * 24"
    );
    assert_eq!(when("redis_db_keys{db=\"db1\"} < 1000"), "db1_keys < 1000");
    assert_eq!(
        when("redis_db_avg_ttl_seconds{db=\"db0\"} < 60"),
        "db0_avg_ttl_ms * 0.001 < 60"
    );
    assert_eq!(
        when("sum by (instance) (redis_connected_clients) > 10"),
        "connected_clients > 10"
    );
    assert_eq!(when("redis_up{job=\"redis\"} == 0"), "redis_up == 0");
}

#[test]
fn aggregates_across_instances_read_the_sentinel_group() {
    let t = translate("(count(redis_instance_info{role=\"master\"}) or vector(0)) < 1").unwrap();
    assert_eq!(t.when, "masters_seen < 1");
    assert!(t.group);
    assert_eq!(
        when("count(redis_instance_info{role=\"master\"}) > 1"),
        "masters_seen > 1"
    );
    assert_eq!(
        when(
            "count without (instance, job) (redis_connected_slaves) - sum without (instance, job) \
             (redis_connected_slaves) - 1 > 0"
        ),
        "(replicas + 1) - (replicas_up - replicas_link_down) - 1 > 0"
    );
    assert!(refused("count(redis_up) > 1 and redis_up == 1").contains("mixes a node's metrics"));
    assert!(refused("max(redis_connected_clients) > 10").contains("aggregates across instances"));
}

#[test]
fn what_does_not_translate_says_why() {
    assert!(refused("redis_up").contains("not a condition"));
    assert!(refused("absent(redis_up)").contains("absent() has no redops equivalent"));
    assert!(refused("predict_linear(redis_memory_used_bytes[1h], 3600) > 1e9").contains("predict_linear()"));
    assert!(refused("redis_foo_bar > 1").contains("no redops metric for `redis_foo_bar`"));
    assert!(refused("redis_up{instance=\"a:6379\"} == 0").contains("selects series by label"));
    assert!(refused("redis_up offset 5m == 0").contains("offset"));
    assert!(refused("redis_up == bool 0").contains("bool"));
    assert!(refused("rate(redis_connected_clients[5m]) > 1").contains("a gauge"));
    assert!(refused("redis_up ==").contains("does not parse"));
    assert!(refused("redis_up == 0 and on(job) redis_master_link_up == 0").contains("across instances"));
}
