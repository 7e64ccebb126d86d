//! The events of a cluster, from comparing what discovery saw last with
//! what it sees now: failovers, failed and recovered nodes, nodes that
//! joined or left, the cluster's state and slot coverage.
//!
//! Consecutive discoveries may be answered by different nodes, and a node
//! that has not heard of a failover yet still names the old master. A
//! failover is therefore told only when the shard's new master carries a
//! newer config epoch than the master it replaces, so a stale answer can
//! neither undo nor repeat it.

use std::collections::{BTreeMap, HashMap};

use super::view::{ClusterView, NodeView};
use crate::event::cluster::ClusterNotice;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Up,
    Pfail,
    Fail,
}

fn health(node: &NodeView) -> Health {
    if node.fail() {
        Health::Fail
    } else if node.pfail() {
        Health::Pfail
    } else {
        Health::Up
    }
}

/// What the events are computed against: the last view, remembered per
/// shard and per node.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Shard name → (master node id, its config epoch, its address).
    masters: HashMap<String, (String, u64, String)>,
    /// Node id → (address, health).
    nodes: HashMap<String, (String, Health)>,
    state_ok: Option<bool>,
    uncovered: Option<u64>,
    /// A failover told for a shard, counted for the cluster's sample.
    pub failovers: u64,
}

/// Slots no master that is up serves: unassigned, or held by a master the
/// cluster marked `fail` (its slots stay listed until a replica takes them).
pub fn slots_uncovered(view: &ClusterView) -> u64 {
    let served: u64 = view
        .nodes
        .iter()
        .filter(|n| n.role == super::Role::Master && !n.fail())
        .map(NodeView::slot_count)
        .sum();
    u64::from(super::slot::SLOTS).saturating_sub(served)
}

/// The name of the shard a node belongs to. A failed master is no longer
/// its shard's `master`, nor a replica: its node id, or its master's, still
/// says which shard it was in.
pub fn shard_of(view: &ClusterView, node: &NodeView) -> Option<String> {
    view.shard_of_node(&node.addr)
        .or_else(|| {
            let id = node.master_id.as_deref().unwrap_or(&node.id);
            view.shards.iter().find(|s| s.master_id.as_deref() == Some(id))
        })
        .map(|s| s.name.clone())
}

impl Tracker {
    /// The events between the last view and `view`; remembers `view`. The
    /// first view tells nothing but a cluster already failed.
    pub fn update(&mut self, view: &ClusterView) -> Vec<ClusterNotice> {
        let cluster = view.cluster.clone();
        let node_target = |addr: &str| format!("{cluster}/{addr}");
        let notice = |target: String, event: &str, fields: Vec<(&str, String)>| ClusterNotice {
            target,
            cluster: cluster.clone(),
            event: event.to_owned(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<BTreeMap<_, _>>(),
        };
        let mut out = Vec::new();

        for shard in &view.shards {
            let Some(master_id) = shard.master_id.clone() else {
                continue;
            };
            let Some(node) = view.node_by_id(&master_id) else {
                continue;
            };
            if node.fail() {
                continue; // Its replacement, when elected, is the news.
            }
            let epoch = node.config_epoch;
            match self.masters.get(&shard.name) {
                Some((known_id, known_epoch, old_addr)) if *known_id != master_id && epoch > *known_epoch => {
                    out.push(notice(
                        node_target(&node.addr),
                        "cluster_failover",
                        vec![
                            ("shard", shard.name.clone()),
                            ("old_master", old_addr.clone()),
                            ("new_master", node.addr.clone()),
                            ("addr", node.addr.clone()),
                            ("node_id", master_id.clone()),
                            ("epoch", epoch.to_string()),
                        ],
                    ));
                    self.failovers += 1;
                }
                Some((known_id, known_epoch, _)) if *known_id != master_id || epoch < *known_epoch => continue,
                _ => {}
            }
            self.masters
                .insert(shard.name.clone(), (master_id, epoch, node.addr.clone()));
        }

        let first = self.state_ok.is_none();
        let mut seen = HashMap::new();
        for node in view.nodes.iter().filter(|n| !n.addr.is_empty()) {
            let now = health(node);
            let shard = shard_of(view, node).unwrap_or_default();
            let fields = || {
                vec![
                    ("addr", node.addr.clone()),
                    ("node_id", node.id.clone()),
                    ("shard", shard.clone()),
                    ("role", node.role.as_str().to_owned()),
                ]
            };
            match self.nodes.get(&node.id).map(|(_, h)| *h) {
                None if !first => out.push(notice(node_target(&node.addr), "cluster_node_joined", fields())),
                Some(before) if before != now => {
                    let event = match now {
                        Health::Up => "cluster_node_recovered",
                        Health::Pfail => "cluster_node_pfail",
                        Health::Fail => "cluster_node_fail",
                    };
                    out.push(notice(node_target(&node.addr), event, fields()));
                }
                _ => {}
            }
            seen.insert(node.id.clone(), (node.addr.clone(), now));
        }
        if !first {
            for (id, (addr, _)) in &self.nodes {
                if !seen.contains_key(id) {
                    out.push(notice(
                        node_target(addr),
                        "cluster_node_left",
                        vec![("addr", addr.clone()), ("node_id", id.clone())],
                    ));
                }
            }
        }
        self.nodes = seen;

        let state_ok = view.info.state_ok;
        if self.state_ok != Some(state_ok) && !(first && state_ok) {
            let event = if state_ok {
                "cluster_state_ok"
            } else {
                "cluster_state_fail"
            };
            out.push(notice(cluster.clone(), event, Vec::new()));
        }
        self.state_ok = Some(state_ok);

        let uncovered = slots_uncovered(view);
        let was = self.uncovered.unwrap_or(0);
        if (was == 0) != (uncovered == 0) {
            let event = if uncovered > 0 {
                "cluster_slots_uncovered"
            } else {
                "cluster_slots_covered"
            };
            out.push(notice(
                cluster.clone(),
                event,
                vec![("uncovered", uncovered.to_string())],
            ));
        }
        self.uncovered = Some(uncovered);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::view::{ClusterInfo, parse_nodes, shards_from_nodes};

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

    fn view(lines: &[String], state_ok: bool) -> ClusterView {
        let nodes = parse_nodes(&lines.join("\n"));
        ClusterView {
            cluster: "prod".into(),
            source: "127.0.0.1:7000".into(),
            info: ClusterInfo {
                state_ok,
                ..Default::default()
            },
            shards: shards_from_nodes(&nodes),
            nodes,
            unreachable: Vec::new(),
        }
    }

    fn line(id: &str, port: u16, flags: &str, master: &str, epoch: u64, slots: &str) -> String {
        format!("{id} 127.0.0.1:{port}@1{port} {flags} {master} 0 0 {epoch} connected {slots}")
    }

    fn events(notices: &[ClusterNotice]) -> Vec<String> {
        notices.iter().map(|n| format!("{} {}", n.event, n.target)).collect()
    }

    /// One shard holding every slot: A master, B its replica; C masterless.
    fn healthy() -> ClusterView {
        view(
            &[
                line(A, 7000, "myself,master", "-", 1, "0-16383"),
                line(B, 7001, "slave", A, 1, ""),
            ],
            true,
        )
    }

    #[test]
    fn a_failover_is_told_once_on_the_new_master_and_a_stale_answer_does_not_undo_it() {
        let mut t = Tracker::default();
        assert!(t.update(&healthy()).is_empty());
        let suspected = view(
            &[
                line(A, 7000, "master,fail?", "-", 1, "0-16383"),
                line(B, 7001, "myself,slave", A, 1, ""),
            ],
            true,
        );
        assert_eq!(
            events(&t.update(&suspected)),
            ["cluster_node_pfail prod/127.0.0.1:7000"]
        );
        let failed = view(
            &[
                line(A, 7000, "master,fail", "-", 1, "0-16383"),
                line(B, 7001, "myself,slave", A, 1, ""),
            ],
            false,
        );
        assert_eq!(
            events(&t.update(&failed)),
            [
                "cluster_node_fail prod/127.0.0.1:7000",
                "cluster_state_fail prod",
                "cluster_slots_uncovered prod"
            ]
        );
        let promoted = view(
            &[
                line(A, 7000, "slave,fail", B, 1, ""),
                line(B, 7001, "myself,master", "-", 2, "0-16383"),
            ],
            true,
        );
        let told = t.update(&promoted);
        assert_eq!(
            events(&told),
            [
                "cluster_failover prod/127.0.0.1:7001",
                "cluster_state_ok prod",
                "cluster_slots_covered prod"
            ]
        );
        assert_eq!(told[0].fields["old_master"], "127.0.0.1:7000");
        assert_eq!(told[0].fields["new_master"], "127.0.0.1:7001");
        assert_eq!(told[0].fields["shard"], "0-16383");
        // A node that has not heard of the failover yet: nothing new.
        assert!(t.update(&healthy()).iter().all(|n| n.event != "cluster_failover"));
        assert!(t.update(&promoted).iter().all(|n| n.event != "cluster_failover"));
        assert_eq!(t.failovers, 1);
    }

    #[test]
    fn nodes_joining_and_leaving_are_told_after_the_first_view() {
        let mut t = Tracker::default();
        t.update(&healthy());
        let mut lines = vec![
            line(A, 7000, "myself,master", "-", 1, "0-16383"),
            line(B, 7001, "slave", A, 1, ""),
        ];
        lines.push(line(C, 7002, "master", "-", 0, ""));
        assert_eq!(
            events(&t.update(&view(&lines, true))),
            ["cluster_node_joined prod/127.0.0.1:7002"]
        );
        lines.remove(1);
        assert_eq!(
            events(&t.update(&view(&lines, true))),
            ["cluster_node_left prod/127.0.0.1:7001"]
        );
    }

    #[test]
    fn a_cluster_failed_from_the_start_is_told() {
        let mut t = Tracker::default();
        let failed = view(&[line(A, 7000, "myself,master", "-", 1, "0-100")], false);
        assert_eq!(
            events(&t.update(&failed)),
            ["cluster_state_fail prod", "cluster_slots_uncovered prod"]
        );
    }
}
