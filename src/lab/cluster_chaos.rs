//! `redops lab chaos shard-failover|node-down` on a cluster lab: the
//! incidents the cluster rules detect. Both work on the shard that serves
//! slot 0, as the cluster names its master now, so they repeat after a
//! failover.
//!
//! The lab runs `CLUSTER FAILOVER` itself: the policy that denies it is
//! for playbooks.

use std::thread;
use std::time::{Duration, Instant};

use super::chaos::ChaosOutcome;
use super::cluster_state::{NodeLine, cluster_nodes, masters, shard_name, wait_cluster_ok};
use super::process::{LabError, signal};
use super::topology::{LabState, connect, synced_master, wait_for};

const FAILOVER_WAIT: Duration = Duration::from_secs(30);
/// Past Redis's manual failover timeout (5 s).
const MANUAL_FAILOVER_WAIT: Duration = Duration::from_secs(6);

/// The shard of slot 0 per the first node that answers: its master and a
/// replica that is not down.
fn first_shard(state: &LabState) -> Result<(NodeLine, Option<NodeLine>), LabError> {
    let mut last = String::from("the lab has no node");
    for addr in state.data_addrs() {
        match cluster_nodes(&addr) {
            Ok(nodes) => {
                let Some(master) = masters(&nodes).first().map(|m| (*m).clone()) else {
                    last = format!("{addr} sees no master serving slots");
                    continue;
                };
                let replica = nodes
                    .iter()
                    .find(|n| !n.master && !n.down && n.master_id.as_deref() == Some(master.id.as_str()))
                    .cloned();
                return Ok((master, replica));
            }
            Err(e) => last = e,
        }
    }
    Err(LabError::NotConverged {
        timeout: Duration::ZERO,
        detail: last,
    })
}

/// Waits until every node in `addrs` that answers names a master other than
/// `old` for `slots`, and returns it.
fn wait_new_master(addrs: &[String], old: &NodeLine, timeout: Duration) -> Result<String, LabError> {
    let shard = shard_name(&old.slots);
    let mut new_master = String::new();
    wait_for(timeout, || {
        let mut named = Vec::new();
        for addr in addrs {
            let Ok(nodes) = cluster_nodes(addr) else { continue };
            let master = masters(&nodes)
                .into_iter()
                .find(|m| m.slots.first() == old.slots.first())
                .map(|m| m.addr.clone());
            named.push(master);
        }
        match named.first() {
            Some(Some(first)) if *first != old.addr && named.iter().all(|m| m.as_ref() == Some(first)) => {
                new_master = first.clone();
                Ok(())
            }
            _ => Err(format!("the nodes name {named:?} as the master of {shard}")),
        }
    })
    .map_err(|e| LabError::NoClusterFailover {
        shard: shard.clone(),
        timeout,
        detail: e.to_string(),
    })?;
    Ok(new_master)
}

/// A manual failover waits for the replica to catch up with its master; one
/// that has not synced yet (a master demoted a moment ago) never does, and
/// an automatic one is slower to elect it.
fn wait_synced(replica: &NodeLine, master: &NodeLine) -> Result<(), LabError> {
    wait_for(FAILOVER_WAIT, || match synced_master(&replica.addr) {
        Ok(Some(m)) if m == master.addr => Ok(()),
        Ok(_) => Err(format!("{} has not synced with {}", replica.addr, master.addr)),
        Err(e) => Err(e.to_string()),
    })
}

/// `CLUSTER FAILOVER` on the replica of slot 0's shard: a manual failover
/// that loses no write, the old master becomes its replica.
pub fn shard_failover(state: &LabState) -> Result<ChaosOutcome, LabError> {
    // A node that was down a moment ago may still be flagged so: wait for a
    // replica every node sees up rather than fail at once.
    let mut found = None;
    wait_for(FAILOVER_WAIT, || match first_shard(state) {
        Ok((master, Some(replica))) => {
            found = Some((master, replica));
            Ok(())
        }
        Ok((master, None)) => Err(format!("master {} has no replica up to promote", master.addr)),
        Err(e) => Err(e.to_string()),
    })?;
    let (master, replica) = found.expect("set when wait_for succeeds");
    let shard = shard_name(&master.slots);
    wait_synced(&replica, &master)?;
    let started = Instant::now();
    let mut conn = connect(&replica.addr).map_err(LabError::redis(format!(
        "Failed to connect to the replica {}",
        replica.addr
    )))?;
    // A master votes for a replica of the same shard once per two
    // node timeouts: a failover right after another loses its election,
    // and the replica gives up after 5 s. Asking again wins the next one.
    let mut first = true;
    let new_master = loop {
        let asked = redis::cmd("CLUSTER").arg("FAILOVER").query::<()>(&mut conn);
        match asked {
            Err(e) if first => {
                return Err(LabError::redis(format!(
                    "Failed to run CLUSTER FAILOVER on {}",
                    replica.addr
                ))(e));
            }
            // The last attempt may have won after all: the replica is a
            // master now, and the wait below sees it.
            Err(e) => tracing::info!(error = %e, "CLUSTER FAILOVER refused on a retry"),
            Ok(()) => {}
        }
        first = false;
        tracing::info!(shard = %shard, replica = %replica.addr, "Asked the replica to take over its shard");
        match wait_new_master(&state.data_addrs(), &master, MANUAL_FAILOVER_WAIT) {
            Ok(new_master) => break new_master,
            Err(e) if started.elapsed() >= FAILOVER_WAIT => return Err(e),
            Err(e) => tracing::info!(error = %e, "The manual failover did not happen, asking again"),
        }
    };
    wait_cluster_ok(&state.data_addrs(), FAILOVER_WAIT)?;
    Ok(ChaosOutcome::ShardFailover {
        shard,
        old_master: master.addr,
        new_master,
        took: started.elapsed(),
    })
}

/// Kills the master of slot 0's shard; the cluster promotes its replica
/// after `cluster-node-timeout`. The node stays down: `redops lab up`
/// restarts it, and it rejoins as a replica.
pub fn node_down(state: &LabState) -> Result<ChaosOutcome, LabError> {
    let (master, replica) = first_shard(state)?;
    let shard = shard_name(&master.slots);
    // Without a synced replica the kill is an outage, not a failover.
    if let Some(replica) = &replica {
        wait_synced(replica, &master)?;
    }
    let node = state
        .data_nodes()
        .find(|n| n.addr() == master.addr)
        .cloned()
        .ok_or_else(|| LabError::UnknownMaster {
            addr: master.addr.clone(),
        })?;
    signal(node.pid, "KILL").map_err(LabError::io(format!("Failed to kill the master {}", master.addr)))?;
    tracing::info!(master = %master.addr, pid = node.pid, "Killed the master, waiting for the cluster to promote its replica");
    let started = Instant::now();
    // Until the kernel closes its port, the dead master would still be asked.
    let deadline = Instant::now() + Duration::from_secs(5);
    while connect(&master.addr).is_ok() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let others: Vec<String> = state.data_addrs().into_iter().filter(|a| *a != master.addr).collect();
    let new_master = wait_new_master(&others, &master, FAILOVER_WAIT)?;
    wait_cluster_ok(&others, FAILOVER_WAIT)?;
    Ok(ChaosOutcome::NodeDown {
        killed: master.addr,
        shard,
        new_master,
        took: started.elapsed(),
    })
}
