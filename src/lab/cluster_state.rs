//! A detached cluster lab (`redops lab up --cluster`): its `redops.toml`,
//! and what `lab status`, `lab up` and `lab chaos` need to know of the
//! cluster: its state, its shards' masters, and when it has settled.
//!
//! The lab sits below [`crate::cluster`] in the layers, so it reads
//! `CLUSTER NODES` itself, taking only the fields it needs.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::LabError;
use super::topology::{CONFIG_FILE, connect, info_field, lab_config, quoted_list, synced_master, wait_for};

/// The `[[cluster]]` name in the lab's config: node targets are `lab/<addr>`.
pub const CLUSTER_NAME: &str = "lab";

/// One line of `CLUSTER NODES`, as much as the lab needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    pub id: String,
    pub addr: String,
    /// The line of the node that answered.
    pub myself: bool,
    pub master: bool,
    pub master_id: Option<String>,
    /// Flagged `fail` or `fail?`.
    pub down: bool,
    pub slots: Vec<(u16, u16)>,
}

pub fn parse_node_lines(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags: Vec<&str> = f[2].split(',').collect();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(NodeLine {
                id: f[0].to_owned(),
                addr: f[1].split(['@', ',']).next().unwrap_or("").to_owned(),
                myself: flags.contains(&"myself"),
                master: flags.contains(&"master"),
                master_id: (f[3] != "-").then(|| f[3].to_owned()),
                down: flags.iter().any(|fl| *fl == "fail" || *fl == "fail?"),
                slots,
            })
        })
        .collect()
}

/// `CLUSTER NODES` from `addr`.
pub fn cluster_nodes(addr: &str) -> Result<Vec<NodeLine>, String> {
    let mut conn = connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut conn)
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(parse_node_lines(&text))
}

/// `cluster_state:ok` on `addr`.
pub fn state_ok(addr: &str) -> Result<bool, String> {
    let mut conn = connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    let text: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut conn)
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(info_field(&text, "cluster_state") == Some("ok"))
}

/// The masters serving slots and not down, in slot order.
pub fn masters(nodes: &[NodeLine]) -> Vec<&NodeLine> {
    let mut masters: Vec<&NodeLine> = nodes
        .iter()
        .filter(|n| n.master && !n.down && !n.slots.is_empty())
        .collect();
    masters.sort_by_key(|n| n.slots.first().copied());
    masters
}

/// The shard name the engine uses: the master's slot ranges (`0-5460`).
pub fn shard_name(slots: &[(u16, u16)]) -> String {
    slots
        .iter()
        .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect::<Vec<_>>()
        .join(",")
}

/// The state and masters per the first of `addrs` that answers.
pub fn cluster_state(addrs: &[String]) -> Option<(bool, Vec<String>)> {
    addrs.iter().find_map(|addr| {
        let ok = state_ok(addr).ok()?;
        let nodes = cluster_nodes(addr).ok()?;
        Some((ok, masters(&nodes).iter().map(|n| n.addr.clone()).collect()))
    })
}

/// Waits until every node of `addrs` that answers reports `cluster_state:ok`,
/// sees every slot served by a master that is not down, and is itself a
/// master with slots or a replica that has synced: a node restarted from
/// its nodes.conf starts as a master without slots until it learns it was
/// replaced, and cannot take over before it has synced.
pub fn wait_cluster_ok(addrs: &[String], timeout: Duration) -> Result<(), LabError> {
    wait_for(timeout, || {
        let answering: Vec<(&String, bool)> = addrs
            .iter()
            .filter_map(|addr| state_ok(addr).ok().map(|ok| (addr, ok)))
            .collect();
        if answering.is_empty() {
            return Err("no node answers".to_string());
        }
        for &(addr, ok) in &answering {
            if !ok {
                return Err(format!("{addr} reports cluster_state:fail"));
            }
            let nodes = cluster_nodes(addr)?;
            // A node flagged fail while it answers is cleared by gossip in a
            // moment; until then it is no candidate for a failover.
            if let Some(flagged) = nodes
                .iter()
                .find(|n| n.down && answering.iter().any(|(a, _)| **a == n.addr))
            {
                return Err(format!("{addr} still flags {} down", flagged.addr));
            }
            let served: u32 = masters(&nodes)
                .iter()
                .flat_map(|m| &m.slots)
                .map(|(a, b)| u32::from(b - a) + 1)
                .sum();
            if served != 16384 {
                return Err(format!("{addr} sees {served} of 16384 slots served"));
            }
            match nodes.iter().find(|n| n.myself) {
                Some(me) if me.master && me.slots.is_empty() => {
                    return Err(format!("{addr} is a master without slots"));
                }
                Some(me) if !me.master && !matches!(synced_master(addr), Ok(Some(_))) => {
                    return Err(format!("replica {addr} has not synced"));
                }
                _ => {}
            }
        }
        Ok(())
    })
}

pub fn render_config(seeds: &[String]) -> String {
    let source = format!(
        "[[cluster]]\nname = \"{CLUSTER_NAME}\"\nseeds = [{}]\n",
        quoted_list(seeds)
    );
    lab_config("redops lab up --cluster", &source)
}

/// Writes `<dir>/redops.toml` for the cluster whose nodes are `seeds`.
pub fn write_config(dir: &Path, seeds: &[String]) -> Result<PathBuf, LabError> {
    let path = dir.join(CONFIG_FILE);
    fs::write(&path, render_config(seeds)).map_err(LabError::io(format!("Failed to write {}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_every_node_as_a_seed() {
        let seeds = vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        let config: toml::Table = toml::from_str(&render_config(&seeds)).unwrap();
        let cluster = &config["cluster"].as_array().unwrap()[0];
        assert_eq!(cluster["name"].as_str(), Some(CLUSTER_NAME));
        let listed: Vec<&str> = cluster["seeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(listed, seeds);
        assert!(config.get("sentinel").is_none());
    }

    #[test]
    fn node_lines_give_masters_in_slot_order_without_the_failed() {
        let text = "\
b 127.0.0.1:2@12 master - 0 0 2 connected 5461-10922
r 127.0.0.1:4@14 slave a 0 0 1 connected
a 127.0.0.1:1@11 myself,master - 0 0 1 connected 0-5460 [5461->-b]
c 127.0.0.1:3@13 master,fail - 0 0 3 disconnected 10923-16383
";
        let nodes = parse_node_lines(text);
        assert_eq!(nodes.len(), 4);
        let masters: Vec<&str> = masters(&nodes).iter().map(|n| n.addr.as_str()).collect();
        assert_eq!(masters, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(nodes[1].master_id.as_deref(), Some("a"));
        assert_eq!(shard_name(&nodes[2].slots), "0-5460");
    }
}
