//! The events a cluster source tells, found by comparing two consecutive
//! discoveries of the cluster: what `source = "cluster"` rules fire on.

use std::collections::BTreeMap;

/// Every event a cluster source can tell; `redops check` rejects others.
pub const CLUSTER_EVENTS: &[&str] = &[
    "cluster_failover",
    "cluster_node_pfail",
    "cluster_node_fail",
    "cluster_node_recovered",
    "cluster_node_joined",
    "cluster_node_left",
    "cluster_state_fail",
    "cluster_state_ok",
    "cluster_slots_uncovered",
    "cluster_slots_covered",
];

/// Variables of a cluster rule besides `target`: what the evaluator adds to
/// every notice, then the fields events may carry.
pub const CLUSTER_VARIABLES: &[&str] = &[
    "event",
    "cluster",
    "shard",
    "addr",
    "node_id",
    "role",
    "old_master",
    "new_master",
    "epoch",
    "uncovered",
];

/// One cluster event, on the target it is about: the node
/// (`<cluster>/<host:port>`; a failover lands on the new master) or the
/// cluster itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterNotice {
    pub target: String,
    pub cluster: String,
    /// One of [`CLUSTER_EVENTS`].
    pub event: String,
    /// `shard`, `addr`, `old_master`, `new_master`, ... as the event has them.
    pub fields: BTreeMap<String, String>,
}
