//! The cluster's own sample (target `<cluster>`): its state and slot
//! counts from `CLUSTER INFO`, its shards' redundancy, and how evenly the
//! masters share memory and keys, from the latest samples of the masters.

use std::collections::HashMap;

use super::events::slots_uncovered;
use super::view::{ClusterView, Role};
use crate::event::{MetricValue, Metrics};

/// What the latest sample of one node said, as far as the cluster's own
/// metrics need it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeSample {
    pub used_memory: Option<f64>,
    pub keys: Option<f64>,
}

/// `(max - min) / max` in percent; 0 for fewer than two values or a zero max.
pub fn skew_pct(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    if max <= 0.0 { 0.0 } else { (max - min) / max * 100.0 }
}

/// The metrics of `docs/rules.md#cluster-metrics`, named in
/// `event::metric_names::CLUSTER_METRICS`.
pub fn cluster_metrics(view: &ClusterView, samples: &HashMap<String, NodeSample>) -> Metrics {
    let num = |v: f64| MetricValue::Num(v);
    let count = |n: usize| MetricValue::Num(n as f64);
    let info = &view.info;
    let mut m = Metrics::new();
    m.insert("cluster_state_ok".into(), num(f64::from(u8::from(info.state_ok))));
    m.insert("cluster_slots_assigned".into(), num(info.slots_assigned as f64));
    m.insert("cluster_slots_ok".into(), num(info.slots_ok as f64));
    m.insert("cluster_slots_pfail".into(), num(info.slots_pfail as f64));
    m.insert("cluster_slots_fail".into(), num(info.slots_fail as f64));
    m.insert("cluster_slots_uncovered".into(), num(slots_uncovered(view) as f64));
    m.insert("cluster_known_nodes".into(), num(info.known_nodes as f64));
    m.insert("cluster_size".into(), num(info.size as f64));
    m.insert("cluster_current_epoch".into(), num(info.current_epoch as f64));
    let serving: Vec<_> = view.shards.iter().filter(|s| !s.slots.is_empty()).collect();
    let up = |addr: &str| view.node(addr).is_some_and(|n| n.is_up());
    m.insert(
        "cluster_masters_without_replica".into(),
        count(
            serving
                .iter()
                .filter(|s| s.master.is_some() && s.replicas.is_empty())
                .count(),
        ),
    );
    m.insert(
        "cluster_shards_replicas_down".into(),
        count(
            serving
                .iter()
                .filter(|s| !s.replicas.is_empty() && !s.replicas.iter().any(|r| up(r)))
                .count(),
        ),
    );
    m.insert(
        "cluster_nodes_failed".into(),
        count(view.nodes.iter().filter(|n| n.fail()).count()),
    );
    m.insert(
        "cluster_nodes_pfail".into(),
        count(view.nodes.iter().filter(|n| n.pfail()).count()),
    );
    m.insert("cluster_nodes_unreachable".into(), count(view.unreachable.len()));
    let masters: Vec<NodeSample> = view
        .nodes
        .iter()
        .filter(|n| n.role == Role::Master && !n.slots.is_empty() && n.is_up())
        .filter_map(|n| samples.get(&n.addr).copied())
        .collect();
    let memory: Vec<f64> = masters.iter().filter_map(|s| s.used_memory).collect();
    let keys: Vec<f64> = masters.iter().filter_map(|s| s.keys).collect();
    m.insert("cluster_memory_skew_pct".into(), num(skew_pct(&memory)));
    m.insert("cluster_keys_skew_pct".into(), num(skew_pct(&keys)));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::view::{ClusterInfo, parse_nodes, shards_from_nodes};

    #[test]
    fn skew_is_the_spread_over_the_largest() {
        assert_eq!(skew_pct(&[100.0, 50.0, 75.0]), 50.0);
        assert_eq!(skew_pct(&[100.0]), 0.0);
        assert_eq!(skew_pct(&[0.0, 0.0]), 0.0);
    }

    #[test]
    fn redundancy_and_skew_of_a_cluster() {
        let text = [
            "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191",
            "b 127.0.0.1:7001@17001 master - 0 0 2 connected 8192-16383",
            "c 127.0.0.1:7002@17002 slave,fail a 0 0 1 connected",
        ]
        .join("\n");
        let nodes = parse_nodes(&text);
        let view = ClusterView {
            cluster: "prod".into(),
            info: ClusterInfo {
                state_ok: true,
                ..Default::default()
            },
            shards: shards_from_nodes(&nodes),
            nodes,
            ..Default::default()
        };
        let samples = HashMap::from([
            (
                "127.0.0.1:7000".to_owned(),
                NodeSample {
                    used_memory: Some(300.0),
                    keys: Some(10.0),
                },
            ),
            (
                "127.0.0.1:7001".to_owned(),
                NodeSample {
                    used_memory: Some(100.0),
                    keys: Some(10.0),
                },
            ),
            (
                "127.0.0.1:7002".to_owned(),
                NodeSample {
                    used_memory: Some(1.0),
                    keys: Some(0.0),
                },
            ),
        ]);
        let m = cluster_metrics(&view, &samples);
        let get = |k: &str| m[k].as_f64().unwrap();
        assert_eq!(get("cluster_masters_without_replica"), 1.0);
        assert_eq!(get("cluster_shards_replicas_down"), 1.0);
        assert_eq!(get("cluster_nodes_failed"), 1.0);
        assert_eq!(get("cluster_slots_uncovered"), 0.0);
        assert!((get("cluster_memory_skew_pct") - 66.666).abs() < 0.01);
        assert_eq!(get("cluster_keys_skew_pct"), 0.0);
        for name in crate::event::metric_names::CLUSTER_METRICS {
            assert!(m.contains_key(*name), "{name} documented but not emitted");
        }
    }
}
