//! A Redis Cluster on loopback: masters with their replicas, every slot
//! assigned, built with `CLUSTER MEET`, `CLUSTER ADDSLOTSRANGE` and
//! `CLUSTER REPLICATE` (no `redis-cli --cluster`).
//!
//! [`ClusterLab::start`] owns its processes: dropping it kills them, as
//! tests want. `redops lab up --cluster` starts one with
//! [`ClusterLab::start_detachable`] and [`ClusterLab::detach`]es it into a
//! [`LabState`] (see [`super::cluster_state`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::{LabError, RedisProcess, RedisSpec, free_port};
use super::topology::{LabKind, LabNode, LabState, NodeKind, connect, info_field, wait_for};

/// The lab's shape: three masters, so that one can fail and a majority
/// still agrees on the failover, each with one replica to promote.
pub const LAB_MASTERS: usize = 3;
pub const LAB_REPLICAS_PER_MASTER: usize = 1;

pub const SLOTS: u16 = 16384;
/// Long enough that a busy test machine does not fail over by itself, short
/// enough that a killed master is replaced within a few seconds.
pub const NODE_TIMEOUT_MS: u32 = 2000;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running cluster whose processes die with it.
#[derive(Debug)]
pub struct ClusterLab {
    dir: PathBuf,
    /// Masters first (in slot order), then the replicas; `replica_of[i]` is
    /// the index of the master node `i` was started to replicate.
    nodes: Vec<RedisProcess>,
    replica_of: Vec<Option<usize>>,
}

impl ClusterLab {
    /// Starts `masters` masters with `replicas` replicas each, assigns the
    /// slots evenly, and returns once every node reports `cluster_state:ok`
    /// and every replica has synced: a failover right after works.
    pub fn start(dir: &Path, masters: usize, replicas: usize) -> Result<ClusterLab, LabError> {
        Self::launch(dir, masters, replicas, |spec| spec)
    }

    /// As [`ClusterLab::start`], with extra directives on every node (for
    /// example `requirepass` and `masterauth`).
    pub fn start_with(
        dir: &Path,
        masters: usize,
        replicas: usize,
        customize: impl Fn(RedisSpec) -> RedisSpec,
    ) -> Result<ClusterLab, LabError> {
        Self::launch(dir, masters, replicas, customize)
    }

    /// The lab's cluster ([`LAB_MASTERS`] masters with
    /// [`LAB_REPLICAS_PER_MASTER`] replica each), every node in its own
    /// process group so that it outlives the command that started it.
    pub fn start_detachable(dir: &Path) -> Result<ClusterLab, LabError> {
        Self::launch(dir, LAB_MASTERS, LAB_REPLICAS_PER_MASTER, |spec| {
            spec.in_own_process_group(true)
        })
    }

    /// Lets every node outlive this value and records them in
    /// `<dir>/lab.json` as `master-N` and `replica-N` (of `master-N`): the
    /// roles at start.
    pub fn detach(self) -> Result<LabState, LabError> {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (i, process) in self.nodes.iter().enumerate() {
            let name = match self.replica_of[i] {
                None => format!("master-{}", i + 1),
                Some(master) => {
                    let n = self.replica_of[..i].iter().filter(|m| **m == Some(master)).count();
                    match n {
                        0 => format!("replica-{}", master + 1),
                        n => format!("replica-{}-{}", master + 1, n + 1),
                    }
                }
            };
            nodes.push(LabNode {
                name,
                kind: NodeKind::Redis,
                port: process.port(),
                pid: process.pid().ok_or(LabError::NotRunning { port: process.port() })?,
                dir: process.dir().to_path_buf(),
            });
        }
        let state = LabState::new(&self.dir, LabKind::Cluster, nodes);
        // Saved before letting go, so a failed write still kills the processes.
        state.save()?;
        for process in self.nodes {
            process.detach();
        }
        Ok(state)
    }

    fn launch(
        dir: &Path,
        masters: usize,
        replicas: usize,
        customize: impl Fn(RedisSpec) -> RedisSpec,
    ) -> Result<ClusterLab, LabError> {
        assert!(masters > 0, "a cluster needs a master");
        let total = masters * (1 + replicas);
        let mut nodes = Vec::with_capacity(total);
        let mut replica_of = Vec::with_capacity(total);
        for i in 0..total {
            let node_dir = dir.join(format!("node-{}", i + 1));
            // A fresh cluster: a node that finds its old nodes.conf rejoins
            // the old cluster instead.
            for stale in ["nodes.conf", "dump.rdb"] {
                match fs::remove_file(node_dir.join(stale)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(LabError::io(format!(
                            "Failed to remove {}",
                            node_dir.join(stale).display()
                        ))(e));
                    }
                    _ => {}
                }
            }
            // The bus port defaults to port + 10000, which may be taken or
            // past 65535 for an ephemeral port; name one that is free.
            let bus = free_port().map_err(LabError::io("Failed to find a free port for the cluster bus"))?;
            let spec = RedisSpec::new(node_dir)
                .with("cluster-enabled", "yes")
                .with("cluster-config-file", "nodes.conf")
                .with("cluster-node-timeout", NODE_TIMEOUT_MS.to_string())
                .with("cluster-port", bus.to_string())
                .with("cluster-announce-ip", "127.0.0.1")
                // A replica of a long-dead master may still take over in the lab.
                .with("cluster-replica-validity-factor", "0")
                .with("repl-diskless-sync-delay", "0")
                .with("maxmemory", super::topology::MAXMEMORY)
                .with("maxmemory-policy", "allkeys-lru");
            nodes.push(RedisProcess::start(customize(spec))?);
            replica_of.push((i >= masters).then(|| (i - masters) % masters));
        }
        let lab = ClusterLab {
            dir: dir.to_path_buf(),
            nodes,
            replica_of,
        };
        lab.assign_slots(masters)?;
        lab.meet()?;
        lab.replicate()?;
        lab.wait_ok()?;
        Ok(lab)
    }

    fn conn(&self, i: usize) -> Result<redis::Connection, LabError> {
        let node = &self.nodes[i];
        let mut conn =
            connect(&node.addr()).map_err(LabError::redis(format!("Failed to connect to {}", node.addr())))?;
        if let Some(password) = self.password(i) {
            redis::cmd("AUTH")
                .arg(password)
                .query::<()>(&mut conn)
                .map_err(LabError::redis(format!("Failed to AUTH on {}", node.addr())))?;
        }
        Ok(conn)
    }

    fn password(&self, i: usize) -> Option<String> {
        self.nodes[i]
            .spec()
            .config
            .iter()
            .rev()
            .find(|(k, _)| k == "requirepass")
            .map(|(_, v)| v.trim_matches('"').to_owned())
    }

    fn assign_slots(&self, masters: usize) -> Result<(), LabError> {
        for (i, (first, last)) in slot_ranges(masters).into_iter().enumerate() {
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query::<()>(&mut self.conn(i)?)
                .map_err(LabError::redis(format!("Failed to assign slots {first}-{last}")))?;
        }
        Ok(())
    }

    fn meet(&self) -> Result<(), LabError> {
        let mut first = self.conn(0)?;
        for node in &self.nodes[1..] {
            let bus = node
                .spec()
                .config
                .iter()
                .find(|(k, _)| k == "cluster-port")
                .map(|(_, v)| v.clone())
                .expect("every node is given a cluster-port");
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port())
                .arg(bus)
                .query::<()>(&mut first)
                .map_err(LabError::redis(format!("Failed to MEET {}", node.addr())))?;
        }
        let total = self.nodes.len();
        wait_for(SETTLE_TIMEOUT, || {
            for i in 0..total {
                let known = self.cluster_info(i)?.known_nodes;
                if known < total {
                    return Err(format!("{} knows {known} of {total} nodes", self.nodes[i].addr()));
                }
            }
            Ok(())
        })
    }

    fn replicate(&self) -> Result<(), LabError> {
        for (i, master) in self.replica_of.iter().enumerate() {
            let Some(master) = *master else { continue };
            let id = self.node_id(master)?;
            // A replica must have heard of its master through the bus first.
            wait_for(SETTLE_TIMEOUT, || {
                redis::cmd("CLUSTER")
                    .arg("REPLICATE")
                    .arg(&id)
                    .query::<()>(&mut self.conn(i).map_err(|e| e.to_string())?)
                    .map_err(|e| format!("{} cannot replicate {id} yet: {e}", self.nodes[i].addr()))
            })?;
        }
        Ok(())
    }

    fn wait_ok(&self) -> Result<(), LabError> {
        wait_for(SETTLE_TIMEOUT, || {
            for i in 0..self.nodes.len() {
                let addr = self.nodes[i].addr();
                let info = self.cluster_info(i)?;
                if !info.state_ok {
                    return Err(format!("{addr} reports cluster_state:fail"));
                }
                if self.replica_of[i].is_some() {
                    let replication: String = redis::cmd("INFO")
                        .arg("replication")
                        .query(&mut self.conn(i).map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                    if info_field(&replication, "master_link_status") != Some("up") {
                        return Err(format!("replica {addr} has not synced"));
                    }
                }
            }
            // Every node sees every replica as one (the gossip is eventual).
            for i in 0..self.nodes.len() {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query(&mut self.conn(i).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                let replicas = nodes.lines().filter(|l| l.contains("slave")).count();
                let expected = self.replica_of.iter().filter(|r| r.is_some()).count();
                if replicas != expected {
                    return Err(format!(
                        "{} sees {replicas} of {expected} replicas",
                        self.nodes[i].addr()
                    ));
                }
            }
            Ok(())
        })
    }

    fn node_id(&self, i: usize) -> Result<String, LabError> {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.conn(i)?)
            .map_err(LabError::redis(format!(
                "Failed to ask {} for its id",
                self.nodes[i].addr()
            )))
    }

    fn cluster_info(&self, i: usize) -> Result<ClusterInfoLine, String> {
        let text: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut self.conn(i).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        Ok(ClusterInfoLine {
            state_ok: info_field(&text, "cluster_state") == Some("ok"),
            known_nodes: info_field(&text, "cluster_known_nodes")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every node, masters first in slot order, then the replicas.
    pub fn nodes(&self) -> &[RedisProcess] {
        &self.nodes
    }

    pub fn node(&self, i: usize) -> &RedisProcess {
        &self.nodes[i]
    }

    /// The node started as the replica of master `master` (the `n`th one).
    pub fn replica_of(&self, master: usize, n: usize) -> Option<&RedisProcess> {
        self.replica_of
            .iter()
            .enumerate()
            .filter(|(_, m)| **m == Some(master))
            .nth(n)
            .map(|(i, _)| &self.nodes[i])
    }

    /// The nodes started as masters; after a failover, ask the cluster.
    pub fn initial_masters(&self) -> Vec<&RedisProcess> {
        self.replica_of
            .iter()
            .zip(&self.nodes)
            .filter(|(m, _)| m.is_none())
            .map(|(_, n)| n)
            .collect()
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(RedisProcess::addr).collect()
    }

    /// Waits until every running node reports `cluster_state:ok` again.
    pub fn wait_state_ok(&self, timeout: Duration) -> Result<(), LabError> {
        wait_for(timeout, || {
            for i in 0..self.nodes.len() {
                if !self.nodes[i].is_running() {
                    continue;
                }
                if !self.cluster_info(i)?.state_ok {
                    return Err(format!("{} reports cluster_state:fail", self.nodes[i].addr()));
                }
            }
            Ok(())
        })
    }
}

struct ClusterInfoLine {
    state_ok: bool,
    known_nodes: usize,
}

/// The slots split evenly over `masters`, as `redis-cli --cluster create` does.
pub fn slot_ranges(masters: usize) -> Vec<(u16, u16)> {
    let masters = masters as u32;
    (0..masters)
        .map(|i| {
            let first = (u32::from(SLOTS) * i / masters) as u16;
            let last = (u32::from(SLOTS) * (i + 1) / masters - 1) as u16;
            (first, last)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_ranges_cover_every_slot_once() {
        for masters in 1..=10 {
            let ranges = slot_ranges(masters);
            assert_eq!(ranges.len(), masters);
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges[masters - 1].1, SLOTS - 1);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0, "{ranges:?}");
            }
        }
        assert_eq!(slot_ranges(3), vec![(0, 5460), (5461, 10921), (10922, 16383)]);
    }
}
