//! A cluster as one of its nodes sees it: `CLUSTER INFO`, the nodes with
//! their flags (`CLUSTER NODES`) and the shards (`CLUSTER SHARDS`, Redis 7;
//! built from the nodes on older servers). Parsing only; the questions are
//! asked by [`super::Discoverer`].

use std::collections::BTreeMap;

use redis::Value;
use serde::Serialize;

use super::slot::SLOTS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Replica => "replica",
        }
    }
}

/// `CLUSTER INFO`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterInfo {
    pub state_ok: bool,
    pub slots_assigned: u64,
    pub slots_ok: u64,
    pub slots_pfail: u64,
    pub slots_fail: u64,
    pub known_nodes: u64,
    /// Masters serving at least one slot.
    pub size: u64,
    pub current_epoch: u64,
}

impl ClusterInfo {
    pub fn parse(text: &str) -> ClusterInfo {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let number = |name: &str| field(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        ClusterInfo {
            state_ok: field("cluster_state") == Some("ok"),
            slots_assigned: number("cluster_slots_assigned"),
            slots_ok: number("cluster_slots_ok"),
            slots_pfail: number("cluster_slots_pfail"),
            slots_fail: number("cluster_slots_fail"),
            known_nodes: number("cluster_known_nodes"),
            size: number("cluster_size"),
            current_epoch: number("cluster_current_epoch"),
        }
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    pub id: String,
    /// `host:port` for clients; empty for a node without an address yet.
    pub addr: String,
    pub role: Role,
    /// The master's node id, for a replica.
    pub master_id: Option<String>,
    /// Flags other than the role: `myself`, `fail?` (pfail), `fail`,
    /// `handshake`, `noaddr`, `nofailover`.
    pub flags: Vec<String>,
    pub config_epoch: u64,
    /// The cluster bus link to this node is up (from the answering node's side).
    pub link_connected: bool,
    /// Slot ranges served, for a master; importing/migrating slots left out.
    pub slots: Vec<(u16, u16)>,
}

impl NodeView {
    /// Some node suspects this one is down (`fail?`).
    pub fn pfail(&self) -> bool {
        self.flags.iter().any(|f| f == "fail?")
    }

    /// The cluster agreed this node is down (`fail`).
    pub fn fail(&self) -> bool {
        self.flags.iter().any(|f| f == "fail")
    }

    pub fn is_up(&self) -> bool {
        !self.pfail() && !self.fail() && !self.addr.is_empty()
    }

    pub fn slot_count(&self) -> u64 {
        self.slots.iter().map(|(a, b)| u64::from(b - a) + 1).sum()
    }
}

/// A master and its replicas, serving a set of slots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardView {
    /// The shard's id from `CLUSTER SHARDS` (Redis ≥ 7.2), else its master's
    /// node id.
    pub id: String,
    /// A stable, readable name: the slot ranges (`0-5460`), which a failover
    /// does not change; the id's first 8 characters for a shard without slots.
    pub name: String,
    pub slots: Vec<(u16, u16)>,
    /// The master's address; `None` when the shard has no reachable master.
    pub master: Option<String>,
    pub master_id: Option<String>,
    pub replicas: Vec<String>,
}

/// The whole cluster as one node answered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    pub cluster: String,
    /// The node that answered.
    pub source: String,
    pub info: ClusterInfo,
    pub nodes: Vec<NodeView>,
    pub shards: Vec<ShardView>,
    /// Seeds or known nodes that did not answer before one did.
    pub unreachable: Vec<(String, String)>,
}

impl ClusterView {
    pub fn node(&self, addr: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.addr == addr)
    }

    pub fn node_by_id(&self, id: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The addresses of the masters that serve slots, in slot order.
    pub fn masters(&self) -> Vec<&str> {
        self.shards.iter().filter_map(|s| s.master.as_deref()).collect()
    }

    /// The shard serving `slot`.
    pub fn shard_of_slot(&self, slot: u16) -> Option<&ShardView> {
        self.shards
            .iter()
            .find(|s| s.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
    }

    /// The shard a node belongs to (as master or replica).
    pub fn shard_of_node(&self, addr: &str) -> Option<&ShardView> {
        self.shards
            .iter()
            .find(|s| s.master.as_deref() == Some(addr) || s.replicas.iter().any(|r| r == addr))
    }

    /// Slots no master serves.
    pub fn uncovered_slots(&self) -> u64 {
        let served: u64 = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::Master)
            .map(NodeView::slot_count)
            .sum();
        u64::from(SLOTS).saturating_sub(served)
    }

    /// The slot layout, for comparing two clusters (a backup set and the
    /// live cluster): each shard's ranges, sorted.
    pub fn slot_layout(&self) -> Vec<Vec<(u16, u16)>> {
        let mut layout: Vec<Vec<(u16, u16)>> = self.shards.iter().map(|s| s.slots.clone()).collect();
        layout.retain(|s| !s.is_empty());
        layout.sort();
        layout
    }
}

/// Fewer masters than this cannot lose one and keep a majority to agree on
/// a failover.
pub const MIN_MASTERS: usize = 3;

impl ClusterView {
    /// What `redops cluster validate` reports, one sentence each, naming
    /// the shard or node: an empty list is a healthy cluster.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.info.state_ok {
            problems.push(format!(
                "cluster_state is fail (as {} sees it): the cluster refuses queries",
                self.source
            ));
        }
        // A failed master still lists its slots; nobody serves them either.
        let masterless: u64 = self
            .shards
            .iter()
            .filter(|s| s.master.is_none())
            .flat_map(|s| &s.slots)
            .map(|(a, b)| u64::from(b - a) + 1)
            .sum();
        let uncovered = self.uncovered_slots() + masterless;
        if uncovered > 0 {
            problems.push(format!(
                "{uncovered} slot(s) uncovered: no master serves them, their keys cannot be read or written"
            ));
        }
        if self.info.slots_fail > 0 {
            problems.push(format!("{} slot(s) served by a failed master", self.info.slots_fail));
        }
        if self.info.slots_pfail > 0 {
            problems.push(format!(
                "{} slot(s) served by a master suspected down (pfail)",
                self.info.slots_pfail
            ));
        }
        let masters = self.shards.iter().filter(|s| !s.slots.is_empty()).count();
        if masters < MIN_MASTERS {
            problems.push(format!(
                "only {masters} master(s) serve slots: run at least {MIN_MASTERS} so that one can fail and a majority still agrees on the failover"
            ));
        }
        for shard in &self.shards {
            problems.extend(self.shard_problems(shard));
        }
        for node in &self.nodes {
            let what = match (node.role, &node.addr) {
                (role, addr) if addr.is_empty() => format!("{} {} (no address)", role.as_str(), node.id),
                (role, addr) => format!("{} {addr}", role.as_str()),
            };
            if node.fail() {
                problems.push(format!("node {what} is down (fail)"));
            } else if node.pfail() {
                problems.push(format!("node {what} is suspected down (pfail)"));
            }
        }
        problems
    }

    fn shard_problems(&self, shard: &ShardView) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(master) = &shard.master else {
            problems.push(format!("shard {}: no master is up", shard.name));
            return problems;
        };
        if shard.replicas.is_empty() {
            problems.push(format!(
                "shard {}: master {master} is without a replica: losing it loses the shard's slots",
                shard.name
            ));
            return problems;
        }
        let down: Vec<&str> = shard
            .replicas
            .iter()
            .filter(|r| self.node(r).is_some_and(|n| !n.is_up()))
            .map(String::as_str)
            .collect();
        if down.len() == shard.replicas.len() {
            problems.push(format!(
                "shard {}: every replica is down ({}), master {master} is without a replica",
                shard.name,
                down.join(", ")
            ));
        }
        problems
    }

    /// Where `other`, the same cluster as another node answered, disagrees
    /// with this view on the shards' masters or on the cluster's state.
    pub fn disagreements(&self, other: &ClusterView) -> Vec<String> {
        let mut out = Vec::new();
        let masters = |v: &ClusterView| -> BTreeMap<String, Option<String>> {
            v.shards
                .iter()
                .filter(|s| !s.slots.is_empty())
                .map(|s| (s.name.clone(), s.master.clone()))
                .collect()
        };
        let (ours, theirs) = (masters(self), masters(other));
        for (shard, master) in &theirs {
            if let Some(our) = ours.get(shard)
                && our != master
            {
                out.push(format!(
                    "node {} says shard {shard}'s master is {}, node {} says {}",
                    other.source,
                    master.as_deref().unwrap_or("none"),
                    self.source,
                    our.as_deref().unwrap_or("none")
                ));
            }
        }
        if self.info.state_ok != other.info.state_ok {
            let state = |ok: bool| if ok { "ok" } else { "fail" };
            out.push(format!(
                "node {} reports cluster_state:{}, node {} reports {}",
                other.source,
                state(other.info.state_ok),
                self.source,
                state(self.info.state_ok)
            ));
        }
        out
    }
}

/// Parses `CLUSTER NODES`.
pub fn parse_nodes(text: &str) -> Vec<NodeView> {
    text.lines().filter_map(parse_node_line).collect()
}

fn parse_node_line(line: &str) -> Option<NodeView> {
    let mut fields = line.split_whitespace();
    let id = fields.next()?.to_owned();
    let address = fields.next()?;
    let flags = fields.next()?;
    let master = fields.next()?;
    let _ping_sent = fields.next()?;
    let _pong_recv = fields.next()?;
    let config_epoch = fields.next()?.parse().unwrap_or(0);
    let link = fields.next()?;
    // `ip:port@cport[,hostname]`; `:0@0` for a node without an address.
    let client = address.split(['@', ',']).next().unwrap_or("");
    let addr = if client.starts_with(':') {
        String::new()
    } else {
        client.to_owned()
    };
    let mut role = Role::Master;
    let mut other_flags = Vec::new();
    for flag in flags.split(',') {
        match flag {
            "master" => role = Role::Master,
            "slave" | "replica" => role = Role::Replica,
            "noflags" | "" => {}
            other => other_flags.push(other.to_owned()),
        }
    }
    let slots = fields
        .filter(|f| !f.starts_with('['))
        .filter_map(|f| match f.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => f.parse().ok().map(|s| (s, s)),
        })
        .collect();
    Some(NodeView {
        id,
        addr,
        role,
        master_id: (master != "-").then(|| master.to_owned()),
        flags: other_flags,
        config_epoch,
        link_connected: link == "connected",
        slots,
    })
}

/// The shards of a cluster from its nodes alone (servers before Redis 7).
pub fn shards_from_nodes(nodes: &[NodeView]) -> Vec<ShardView> {
    let mut shards: Vec<ShardView> = nodes
        .iter()
        .filter(|n| n.role == Role::Master && (!n.slots.is_empty() || has_replica(nodes, &n.id)))
        .map(|m| ShardView {
            id: m.id.clone(),
            name: shard_name(&m.id, &m.slots),
            slots: m.slots.clone(),
            master: (!m.fail() && !m.addr.is_empty()).then(|| m.addr.clone()),
            master_id: Some(m.id.clone()),
            replicas: replicas_of(nodes, &m.id),
        })
        .collect();
    shards.sort_by_key(|s| s.slots.first().copied());
    shards
}

fn has_replica(nodes: &[NodeView], master: &str) -> bool {
    nodes.iter().any(|n| n.master_id.as_deref() == Some(master))
}

fn replicas_of(nodes: &[NodeView], master: &str) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.role == Role::Replica && n.master_id.as_deref() == Some(master) && !n.addr.is_empty())
        .map(|n| n.addr.clone())
        .collect()
}

fn shard_name(id: &str, slots: &[(u16, u16)]) -> String {
    if slots.is_empty() {
        return id.chars().take(8).collect();
    }
    slots
        .iter()
        .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `CLUSTER SHARDS` (RESP2 flat key/value arrays or RESP3 maps),
/// taking flags and epochs from `nodes` (`CLUSTER NODES`), which `SHARDS`
/// does not carry. `None` when the reply is not shaped like one.
pub fn parse_shards(reply: &Value, nodes: &[NodeView]) -> Option<Vec<ShardView>> {
    let Value::Array(shards) = reply else { return None };
    let mut out = Vec::new();
    for shard in shards {
        let fields = as_map(shard)?;
        let mut slots = Vec::new();
        if let Some(Value::Array(bounds)) = fields.get("slots").copied() {
            for pair in bounds.chunks(2) {
                let [a, b] = pair else { return None };
                slots.push((as_int(a)? as u16, as_int(b)? as u16));
            }
        }
        let shard_id = fields.get("id").copied().and_then(as_string);
        let mut master = None;
        let mut master_id = None;
        let mut replicas = Vec::new();
        if let Some(Value::Array(members)) = fields.get("nodes").copied() {
            for member in members {
                let m = as_map(member)?;
                let id = m.get("id").copied().and_then(as_string)?;
                let ip = m
                    .get("ip")
                    .copied()
                    .or_else(|| m.get("endpoint").copied())
                    .and_then(as_string)
                    .unwrap_or_default();
                let port = m
                    .get("port")
                    .copied()
                    .or_else(|| m.get("tls-port").copied())
                    .and_then(as_int)
                    .unwrap_or(0);
                let addr = format!("{ip}:{port}");
                let healthy = m.get("health").copied().and_then(as_string).as_deref() != Some("fail")
                    && nodes.iter().find(|n| n.id == id).is_none_or(|n| !n.fail());
                match m.get("role").copied().and_then(as_string).as_deref() {
                    Some("master") => {
                        master_id = Some(id);
                        if healthy && port > 0 {
                            master = Some(addr);
                        }
                    }
                    _ if port > 0 => replicas.push(addr),
                    _ => {}
                }
            }
        }
        let id = shard_id.or_else(|| master_id.clone()).unwrap_or_default();
        out.push(ShardView {
            name: shard_name(&id, &slots),
            id,
            slots,
            master,
            master_id,
            replicas,
        });
    }
    out.retain(|s| !s.slots.is_empty() || !s.replicas.is_empty());
    out.sort_by_key(|s| s.slots.first().copied());
    Some(out)
}

fn as_map(value: &Value) -> Option<BTreeMap<String, &Value>> {
    match value {
        Value::Array(items) => items
            .chunks(2)
            .map(|pair| match pair {
                [k, v] => Some((as_string(k)?, v)),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| Some((as_string(k)?, v))).collect(),
        _ => None,
    }
}

fn as_string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        other => as_string(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave,fail? 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,host-1 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";

    #[test]
    fn parses_cluster_nodes() {
        let nodes = parse_nodes(NODES);
        assert_eq!(nodes.len(), 6);
        let me = nodes.iter().find(|n| n.flags.contains(&"myself".to_string())).unwrap();
        assert_eq!(me.addr, "127.0.0.1:30001");
        assert_eq!(me.role, Role::Master);
        assert_eq!(me.slots, vec![(0, 5460)], "migrating slots are left out");
        let suspect = nodes.iter().find(|n| n.addr == "127.0.0.1:30006").unwrap();
        assert!(suspect.pfail() && !suspect.fail() && !suspect.link_connected);
        assert_eq!(suspect.role, Role::Replica);
        assert_eq!(suspect.config_epoch, 6);
    }

    #[test]
    fn shards_from_nodes_pair_masters_and_replicas() {
        let nodes = parse_nodes(NODES);
        let shards = shards_from_nodes(&nodes);
        assert_eq!(shards.len(), 3);
        assert_eq!(shards[0].name, "0-5460");
        assert_eq!(shards[0].master.as_deref(), Some("127.0.0.1:30001"));
        assert_eq!(shards[0].replicas, vec!["127.0.0.1:30004"]);
        assert_eq!(shards[2].replicas, vec!["127.0.0.1:30006"]);
        let view = ClusterView {
            nodes,
            shards,
            ..Default::default()
        };
        assert_eq!(view.uncovered_slots(), 0);
        assert_eq!(view.shard_of_slot(12182).unwrap().name, "10923-16383");
        assert_eq!(view.shard_of_node("127.0.0.1:30005").unwrap().name, "5461-10922");
        assert_eq!(view.masters().len(), 3);
    }

    #[test]
    fn a_failed_master_leaves_its_shard_without_a_master_and_slots_uncovered_stay_counted() {
        let text = NODES.replace(
            "master - 0 1426238316232 2 connected",
            "master,fail - 0 1426238316232 2 disconnected",
        );
        let nodes = parse_nodes(&text);
        let shards = shards_from_nodes(&nodes);
        assert_eq!(shards[1].master, None);
        let text = NODES.replace(" 10923-16383", "");
        let view = ClusterView {
            nodes: parse_nodes(&text),
            ..Default::default()
        };
        assert_eq!(view.uncovered_slots(), 16383 - 10923 + 1);
    }

    fn healthy_view() -> ClusterView {
        let text = NODES.replace("slave,fail?", "slave");
        let nodes = parse_nodes(&text);
        ClusterView {
            source: "127.0.0.1:30001".into(),
            info: ClusterInfo {
                state_ok: true,
                ..Default::default()
            },
            shards: shards_from_nodes(&nodes),
            nodes,
            ..Default::default()
        }
    }

    #[test]
    fn a_healthy_cluster_has_no_problem() {
        assert_eq!(healthy_view().problems(), Vec::<String>::new());
    }

    #[test]
    fn problems_name_the_shard_and_node() {
        let view = ClusterView {
            nodes: parse_nodes(NODES),
            ..healthy_view()
        };
        let problems = view.problems();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("shard 10923-16383") && p.contains("every replica is down")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("127.0.0.1:30006") && p.contains("pfail")),
            "{problems:?}"
        );

        let text = NODES.replace(" 10923-16383", "");
        let nodes = parse_nodes(&text);
        let view = ClusterView {
            info: ClusterInfo::default(),
            shards: shards_from_nodes(&nodes),
            nodes,
            ..healthy_view()
        };
        let problems = view.problems().join("\n");
        assert!(problems.contains("cluster_state is fail"), "{problems}");
        assert!(problems.contains("5461 slot(s) uncovered"), "{problems}");
        assert!(problems.contains("only 2 master(s)"), "{problems}");
    }

    #[test]
    fn a_master_without_replica_is_a_problem() {
        let text: String = NODES
            .lines()
            .filter(|l| !l.starts_with("07c37dfe"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replace("slave,fail?", "slave");
        let nodes = parse_nodes(&text);
        let view = ClusterView {
            shards: shards_from_nodes(&nodes),
            nodes,
            ..healthy_view()
        };
        assert_eq!(
            view.problems(),
            vec!["shard 0-5460: master 127.0.0.1:30001 is without a replica: losing it loses the shard's slots"]
        );
    }

    #[test]
    fn views_that_disagree_on_a_master_say_so() {
        let ours = healthy_view();
        let mut theirs = healthy_view();
        theirs.source = "127.0.0.1:30002".into();
        assert!(ours.disagreements(&theirs).is_empty());
        theirs.shards[0].master = Some("127.0.0.1:30004".into());
        theirs.info.state_ok = false;
        let found = ours.disagreements(&theirs);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("shard 0-5460's master is 127.0.0.1:30004"),
            "{found:?}"
        );
        assert!(found[1].contains("cluster_state:fail"), "{found:?}");
    }

    #[test]
    fn parses_cluster_info() {
        let info = ClusterInfo::parse(
            "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16380\r\ncluster_slots_pfail:4\r\ncluster_slots_fail:0\r\ncluster_known_nodes:6\r\ncluster_size:3\r\ncluster_current_epoch:6\r\n",
        );
        assert!(info.state_ok);
        assert_eq!(
            (info.slots_ok, info.slots_pfail, info.known_nodes, info.size),
            (16380, 4, 6, 3)
        );
        assert_eq!(info.current_epoch, 6);
        assert!(!ClusterInfo::parse("cluster_state:fail\r\n").state_ok);
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_cluster_shards_resp2() {
        let node = |id: &str, port: i64, role: &str| {
            Value::Array(vec![
                bulk("id"),
                bulk(id),
                bulk("port"),
                Value::Int(port),
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("role"),
                bulk(role),
                bulk("health"),
                bulk("online"),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![Value::Int(5461), Value::Int(10922)]),
                bulk("nodes"),
                Value::Array(vec![node("b", 30002, "master"), node("e", 30005, "replica")]),
            ]),
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![Value::Int(0), Value::Int(5460)]),
                bulk("nodes"),
                Value::Array(vec![node("a", 30001, "master")]),
            ]),
        ]);
        let shards = parse_shards(&reply, &[]).unwrap();
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].slots, vec![(0, 5460)]);
        assert_eq!(shards[0].id, "a");
        assert!(shards[0].replicas.is_empty());
        assert_eq!(shards[1].master.as_deref(), Some("127.0.0.1:30002"));
        assert_eq!(shards[1].replicas, vec!["127.0.0.1:30005"]);
        assert!(parse_shards(&Value::Int(1), &[]).is_none());
    }
}
