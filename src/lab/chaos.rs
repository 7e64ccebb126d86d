//! `redops lab chaos`: the incidents the shipped rules detect, caused on a
//! running lab. Each works on the current master, as the Sentinels name it,
//! so they still work after a failover; `shard-failover` and `node-down`
//! are a cluster lab's ([`super::cluster_chaos`]).

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use super::cluster_chaos;
use super::process::{LabError, signal};
use super::topology::{LabKind, LabState, MAXMEMORY, ask_master, connect, info_field, synced_master, wait_for};

/// `memory` stops here: past the shipped `memory_critical` threshold (85 %).
const FILL_PCT: u64 = 90;
const FILL_VALUE_BYTES: usize = 64 * 1024;
const FILL_BATCH: usize = 8;
/// Past the shipped `eviction_storm` threshold (1,000 a minute) with room to spare.
const EVICTIONS_WANTED: u64 = 2_000;
const EVICTION_VALUE_BYTES: usize = 1024;
const EVICTION_BATCH: usize = 1_000;
const EVICTION_DEADLINE: Duration = Duration::from_secs(60);
const FAILOVER_WAIT: Duration = Duration::from_secs(30);
const REJOIN_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChaosKind {
    /// Fill the master past 90 % of maxmemory, with eviction turned off.
    Memory,
    /// Make the master evict more than 2,000 keys in a few seconds.
    Evictions,
    /// Kill the master; Sentinel promotes the replica; the old master rejoins as a replica.
    Failover,
    /// Kill the master and the replica; `redops lab up` brings them back.
    Outage,
    /// Cluster lab: CLUSTER FAILOVER on a replica; it takes over its shard.
    ShardFailover,
    /// Cluster lab: kill a master; the cluster promotes its replica; `redops lab up` restarts it.
    NodeDown,
}

impl ChaosKind {
    fn name(self) -> &'static str {
        match self {
            ChaosKind::Memory => "memory",
            ChaosKind::Evictions => "evictions",
            ChaosKind::Failover => "failover",
            ChaosKind::Outage => "outage",
            ChaosKind::ShardFailover => "shard-failover",
            ChaosKind::NodeDown => "node-down",
        }
    }

    /// The lab this incident needs.
    fn lab(self) -> LabKind {
        match self {
            ChaosKind::ShardFailover | ChaosKind::NodeDown => LabKind::Cluster,
            _ => LabKind::Sentinel,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChaosOutcome {
    Memory {
        master: String,
        used_memory: u64,
        maxmemory: u64,
        keys: u64,
        key_pattern: String,
    },
    Evictions {
        master: String,
        evicted: u64,
        keys: u64,
        took: Duration,
    },
    Failover {
        old_master: String,
        new_master: String,
        took: Duration,
        /// The old master synced as a replica of the new one in time.
        rejoined: bool,
    },
    Outage {
        killed: Vec<String>,
    },
    ShardFailover {
        shard: String,
        old_master: String,
        new_master: String,
        took: Duration,
    },
    NodeDown {
        killed: String,
        shard: String,
        new_master: String,
        took: Duration,
    },
}

/// Causes `kind` on the lab, which must be up. `failover` saves the old
/// master's new pid in `state`.
pub fn chaos(state: &mut LabState, kind: ChaosKind) -> Result<ChaosOutcome, LabError> {
    let down: Vec<String> = state.down_nodes().into_iter().map(|n| n.name.clone()).collect();
    if !down.is_empty() {
        return Err(LabError::NotUp { down: down.join(", ") });
    }
    if kind.lab() != state.kind {
        return Err(LabError::ChaosNotForLab {
            chaos: kind.name().to_string(),
            needs: kind.lab().as_str().to_string(),
            lab: state.kind.as_str().to_string(),
        });
    }
    match kind {
        ChaosKind::ShardFailover => cluster_chaos::shard_failover(state),
        ChaosKind::NodeDown => cluster_chaos::node_down(state),
        ChaosKind::Memory => fill_memory(state),
        ChaosKind::Evictions => evict(state),
        ChaosKind::Failover => fail_over(state),
        ChaosKind::Outage => outage(state),
    }
}

fn fill_memory(state: &LabState) -> Result<ChaosOutcome, LabError> {
    let master = state.master_addr()?;
    let mut conn = connect(&master).map_err(LabError::redis(format!("Failed to connect to the master {master}")))?;
    let failed = |what: &str| LabError::redis(format!("Failed to {what} on {master}"));
    let maxmemory = ensure_maxmemory(&mut conn).map_err(failed("read maxmemory"))?;
    // With allkeys-lru the server would evict to stay under maxmemory; the
    // incident is a cache that has filled up and is about to refuse writes.
    config_set(&mut conn, "maxmemory-policy", "noeviction").map_err(failed("turn eviction off"))?;

    let tag = rand::random::<u32>();
    let key_pattern = "lab:chaos:memory:*".to_string();
    let value = vec![b'm'; FILL_VALUE_BYTES];
    let target = maxmemory / 100 * FILL_PCT;
    let mut keys = 0u64;
    let mut used = used_memory(&mut conn).map_err(failed("read INFO"))?;
    while used <= target {
        let mut pipe = redis::pipe();
        for _ in 0..FILL_BATCH {
            pipe.cmd("SET")
                .arg(format!("lab:chaos:memory:{tag:08x}:{keys}"))
                .arg(&value)
                .ignore();
            keys += 1;
        }
        pipe.query::<()>(&mut conn).map_err(failed("write"))?;
        used = used_memory(&mut conn).map_err(failed("read INFO"))?;
    }
    Ok(ChaosOutcome::Memory {
        master,
        used_memory: used,
        maxmemory,
        keys,
        key_pattern,
    })
}

fn evict(state: &LabState) -> Result<ChaosOutcome, LabError> {
    let master = state.master_addr()?;
    let mut conn = connect(&master).map_err(LabError::redis(format!("Failed to connect to the master {master}")))?;
    let failed = |what: &str| LabError::redis(format!("Failed to {what} on {master}"));
    let maxmemory = ensure_maxmemory(&mut conn).map_err(failed("read maxmemory"))?;
    // Also undoes `chaos memory`.
    config_set(&mut conn, "maxmemory-policy", "allkeys-lru").map_err(failed("set maxmemory-policy"))?;

    let tag = rand::random::<u32>();
    let value = vec![b'e'; EVICTION_VALUE_BYTES];
    // Bounds the run if something keeps the server from evicting.
    let max_keys = maxmemory / EVICTION_VALUE_BYTES as u64 * 4;
    let started = Instant::now();
    let before = evicted_keys(&mut conn).map_err(failed("read INFO"))?;
    let mut evicted = 0;
    let mut keys = 0u64;
    while evicted <= EVICTIONS_WANTED && keys < max_keys && started.elapsed() < EVICTION_DEADLINE {
        let mut pipe = redis::pipe();
        for _ in 0..EVICTION_BATCH {
            pipe.cmd("SET")
                .arg(format!("lab:chaos:evictions:{tag:08x}:{keys}"))
                .arg(&value)
                .ignore();
            keys += 1;
        }
        pipe.query::<()>(&mut conn).map_err(failed("write"))?;
        evicted = evicted_keys(&mut conn)
            .map_err(failed("read INFO"))?
            .saturating_sub(before);
    }
    Ok(ChaosOutcome::Evictions {
        master,
        evicted,
        keys,
        took: started.elapsed(),
    })
}

fn fail_over(state: &mut LabState) -> Result<ChaosOutcome, LabError> {
    let old_master = state.master_addr()?;
    let node = state
        .data_nodes()
        .find(|n| n.addr() == old_master)
        .cloned()
        .ok_or_else(|| LabError::UnknownMaster {
            addr: old_master.clone(),
        })?;
    signal(node.pid, "KILL").map_err(LabError::io(format!("Failed to kill the master {old_master}")))?;
    tracing::info!(master = %old_master, pid = node.pid, "Killed the master, waiting for Sentinel to fail over");
    let started = Instant::now();
    let new_master = wait_for_new_master(&state.sentinel_addrs(), &old_master)?;
    let took = started.elapsed();
    tracing::info!(master = %new_master, "Sentinel switched masters, restarting the old one");

    // Sentinel would make the old master a replica too, but only after it had
    // served as an empty second master for 8 to 20 s.
    let (host, port) = new_master.rsplit_once(':').expect("Sentinel addresses are host:port");
    let config = node.config_path();
    let mut file = OpenOptions::new()
        .append(true)
        .open(&config)
        .map_err(LabError::io(format!("Failed to open {}", config.display())))?;
    writeln!(file, "replicaof {host} {port}").map_err(LabError::io(format!("Failed to write {}", config.display())))?;
    state.relaunch(&node.name)?;
    let rejoined = wait_for(REJOIN_WAIT, || match synced_master(&old_master) {
        Ok(Some(master)) if master == new_master => Ok(()),
        Ok(_) => Err("not synced".to_string()),
        Err(e) => Err(e.to_string()),
    })
    .is_ok();
    Ok(ChaosOutcome::Failover {
        old_master,
        new_master,
        took,
        rejoined,
    })
}

/// Waits until every Sentinel names the same master, other than `old`.
fn wait_for_new_master(sentinels: &[String], old: &str) -> Result<String, LabError> {
    let mut new_master = String::new();
    wait_for(FAILOVER_WAIT, || {
        let views: Vec<Option<String>> = sentinels.iter().map(|s| ask_master(s).ok()).collect();
        match views.first() {
            Some(Some(first)) if first != old && views.iter().all(|v| v.as_ref() == Some(first)) => {
                new_master = first.clone();
                Ok(())
            }
            _ => Err(format!("Sentinels name {views:?}")),
        }
    })
    .map_err(|_| LabError::NoFailover {
        master: old.to_string(),
        timeout: FAILOVER_WAIT,
    })?;
    Ok(new_master)
}

fn outage(state: &LabState) -> Result<ChaosOutcome, LabError> {
    let mut killed = Vec::new();
    for node in state.data_nodes() {
        signal(node.pid, "KILL").map_err(LabError::io(format!("Failed to kill {}", node.addr())))?;
        killed.push(node.addr());
    }
    // Returning before the kernel closes the ports would let a `lab status`
    // right after still see them up.
    let deadline = Instant::now() + Duration::from_secs(5);
    for addr in &killed {
        while connect(addr).is_ok() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(ChaosOutcome::Outage { killed })
}

/// The lab sets maxmemory; if someone removed it, filling up would never end.
fn ensure_maxmemory(conn: &mut redis::Connection) -> redis::RedisResult<u64> {
    let (_, value): (String, u64) = redis::cmd("CONFIG").arg("GET").arg("maxmemory").query(conn)?;
    if value > 0 {
        return Ok(value);
    }
    tracing::warn!(maxmemory = MAXMEMORY, "maxmemory was 0, setting it back");
    config_set(conn, "maxmemory", MAXMEMORY)?;
    let (_, value): (String, u64) = redis::cmd("CONFIG").arg("GET").arg("maxmemory").query(conn)?;
    Ok(value)
}

fn config_set(conn: &mut redis::Connection, name: &str, value: &str) -> redis::RedisResult<()> {
    redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query(conn)
}

fn used_memory(conn: &mut redis::Connection) -> redis::RedisResult<u64> {
    info_number(conn, "memory", "used_memory")
}

fn evicted_keys(conn: &mut redis::Connection) -> redis::RedisResult<u64> {
    info_number(conn, "stats", "evicted_keys")
}

fn info_number(conn: &mut redis::Connection, section: &str, field: &str) -> redis::RedisResult<u64> {
    let info: String = redis::cmd("INFO").arg(section).query(conn)?;
    info_field(&info, field)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| redis::RedisError::from(std::io::Error::other(format!("INFO {section} has no {field}"))))
}

const MIB: f64 = 1024.0 * 1024.0;

impl fmt::Display for ChaosOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChaosOutcome::Memory {
                master,
                used_memory,
                maxmemory,
                keys,
                key_pattern,
            } => {
                let port = master.rsplit_once(':').map_or("6379", |(_, port)| port);
                writeln!(
                    f,
                    "Filled the master {master} to {}% of maxmemory ({:.1} of {:.1} MiB) with {keys} keys {key_pattern}",
                    used_memory * 100 / (*maxmemory).max(1),
                    *used_memory as f64 / MIB,
                    *maxmemory as f64 / MIB,
                )?;
                writeln!(f, "Eviction is off (noeviction): writes fail once it is full. To undo:")?;
                writeln!(f, "  redis-cli -p {port} config set maxmemory-policy allkeys-lru")?;
                write!(
                    f,
                    "  redis-cli -p {port} --scan --pattern '{key_pattern}' | xargs redis-cli -p {port} del"
                )
            }
            ChaosOutcome::Evictions {
                master,
                evicted,
                keys,
                took,
            } => write!(
                f,
                "The master {master} evicted {evicted} keys in {:.1}s while {keys} keys of 1 KiB were written",
                took.as_secs_f64()
            ),
            ChaosOutcome::Failover {
                old_master,
                new_master,
                took,
                rejoined,
            } => {
                writeln!(f, "Killed the master {old_master}")?;
                writeln!(
                    f,
                    "Sentinel failed over in {:.1}s: the master is now {new_master}",
                    took.as_secs_f64()
                )?;
                if *rejoined {
                    write!(f, "Restarted {old_master}: it is a replica of {new_master}")
                } else {
                    write!(f, "Restarted {old_master}: it has not synced with {new_master} yet")
                }
            }
            ChaosOutcome::ShardFailover {
                shard,
                old_master,
                new_master,
                took,
            } => write!(
                f,
                "Shard {shard} failed over in {:.1}s: the master is now {new_master}, {old_master} is its replica",
                took.as_secs_f64()
            ),
            ChaosOutcome::NodeDown {
                killed,
                shard,
                new_master,
                took,
            } => write!(
                f,
                "Killed the master {killed} of shard {shard}\nThe cluster promoted {new_master} in {:.1}s",
                took.as_secs_f64()
            ),
            ChaosOutcome::Outage { killed } => {
                write!(
                    f,
                    "Killed every data node: {}; the Sentinels stay up",
                    killed.join(", ")
                )
            }
        }
    }
}
