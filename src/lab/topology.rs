//! A Sentinel topology on loopback: one master, one replica, three Sentinels.
//!
//! [`Topology::start`] owns its processes, as tests want: dropping it kills
//! them. `redops lab` instead [`Topology::detach`]es them into a [`LabState`],
//! saved as `<dir>/lab.json`, which later commands load to check, restart,
//! break ([`super::chaos`]) or stop the same processes. [`up`] (and
//! [`ensure_up`], for `redops run --lab`) brings a lab directory to a running
//! lab with the shipped rules, playbooks and a ready-to-use `redops.toml`.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cluster::ClusterLab;
use super::cluster_state;
use super::embedded;
use super::process::{LabError, RedisProcess, RedisSpec, STOP_GRACE, signal};

pub const MASTER_NAME: &str = "mymaster";
pub const DEFAULT_LAB_DIR: &str = "state/lab";
pub const STATE_FILE: &str = "lab.json";
pub const CONFIG_FILE: &str = "redops.toml";
pub const MAXMEMORY: &str = "64mb";

const QUORUM: u32 = 2;
// Short enough that a failover finishes in seconds, long enough that a busy
// laptop does not fail over by itself. Above Sentinel's one-second ping and
// reconnect period: at 1000 ms every Sentinel saw each newly promoted master
// down for a moment, about a second after the switch, and now and then
// failed over again.
const DOWN_AFTER_MS: u32 = 2000;
const FAILOVER_TIMEOUT_MS: u32 = 5000;
const SENTINELS: usize = 3;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);

/// Which lab a directory holds: the Sentinel lab, or a Redis Cluster lab
/// ([`super::cluster_state`]). lab.json files written before clusters are
/// Sentinel labs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabKind {
    #[default]
    Sentinel,
    Cluster,
}

impl LabKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LabKind::Sentinel => "sentinel",
            LabKind::Cluster => "cluster",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Redis,
    Sentinel,
}

/// A running topology whose processes die with it.
#[derive(Debug)]
pub struct Topology {
    dir: PathBuf,
    master: RedisProcess,
    replica: RedisProcess,
    sentinels: Vec<RedisProcess>,
}

impl Topology {
    /// Starts the processes in the caller's process group, so a Ctrl-C on a
    /// test run stops them too, and returns once the Sentinels agree on the
    /// master and see the replica and each other: a failover right after works.
    pub fn start(dir: &Path) -> Result<Topology, LabError> {
        Self::launch(dir, false)
    }

    /// As [`Topology::start`], with every process in its own process group,
    /// for a lab that outlives the command that started it.
    pub fn start_detachable(dir: &Path) -> Result<Topology, LabError> {
        Self::launch(dir, true)
    }

    fn launch(dir: &Path, own_group: bool) -> Result<Topology, LabError> {
        let data_node = |name: &str| -> Result<RedisSpec, LabError> {
            let node_dir = dir.join(name);
            // A fresh lab starts empty; a replica's synced RDB would otherwise
            // be loaded by whichever node is started in its directory.
            match fs::remove_file(node_dir.join("dump.rdb")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(LabError::io(format!(
                        "Failed to remove {}",
                        node_dir.join("dump.rdb").display()
                    ))(e));
                }
                _ => {}
            }
            Ok(RedisSpec::new(node_dir)
                .with("maxmemory", MAXMEMORY)
                .with("maxmemory-policy", "allkeys-lru")
                .with("save", "\"\"")
                .with("appendonly", "no")
                // Redis 7 waits 5 s for more replicas before a diskless sync.
                .with("repl-diskless-sync-delay", "0")
                .in_own_process_group(own_group))
        };
        let master = RedisProcess::start(data_node("master")?)?;
        tracing::info!(addr = %master.addr(), "Started the master");
        let replica =
            RedisProcess::start(data_node("replica-1")?.with("replicaof", format!("127.0.0.1 {}", master.port())))?;
        tracing::info!(addr = %replica.addr(), "Started the replica");
        // Sentinels started after the first sync see the replica in their
        // first INFO of the master instead of 10 s later.
        wait_for(SETTLE_TIMEOUT, || match synced_master(&replica.addr()) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("the replica has not synced with the master".to_string()),
            Err(e) => Err(e.to_string()),
        })?;
        let mut sentinels = Vec::with_capacity(SENTINELS);
        for i in 1..=SENTINELS {
            let spec = RedisSpec::new(dir.join(format!("sentinel-{i}")))
                .as_sentinel()
                .with("sentinel resolve-hostnames", "no")
                .with("sentinel announce-hostnames", "no")
                .with("sentinel announce-ip", "127.0.0.1")
                .with(
                    "sentinel monitor",
                    format!("{MASTER_NAME} 127.0.0.1 {} {QUORUM}", master.port()),
                )
                .with(
                    "sentinel down-after-milliseconds",
                    format!("{MASTER_NAME} {DOWN_AFTER_MS}"),
                )
                .with(
                    "sentinel failover-timeout",
                    format!("{MASTER_NAME} {FAILOVER_TIMEOUT_MS}"),
                )
                .with("sentinel parallel-syncs", format!("{MASTER_NAME} 1"))
                .in_own_process_group(own_group);
            sentinels.push(RedisProcess::start(spec)?);
        }
        let topology = Topology {
            dir: dir.to_path_buf(),
            master,
            replica,
            sentinels,
        };
        tracing::info!(sentinels = ?topology.sentinel_addrs(), "Started the Sentinels, waiting for them to agree");
        wait_settled(
            &topology.sentinel_addrs(),
            &[topology.master_addr(), topology.replica_addr()],
        )?;
        Ok(topology)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The master as started; after a failover ask [`current_master`].
    pub fn master(&self) -> &RedisProcess {
        &self.master
    }

    pub fn replica(&self) -> &RedisProcess {
        &self.replica
    }

    pub fn sentinels(&self) -> &[RedisProcess] {
        &self.sentinels
    }

    pub fn master_addr(&self) -> String {
        self.master.addr()
    }

    pub fn replica_addr(&self) -> String {
        self.replica.addr()
    }

    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisProcess::addr).collect()
    }

    /// Writes `<dir>/redops.toml`, watching this topology's Sentinel group.
    pub fn write_config(&self, dir: &Path) -> Result<PathBuf, LabError> {
        write_config(dir, &self.sentinel_addrs())
    }

    /// Lets every process outlive this value and records them in
    /// `<dir>/lab.json`.
    pub fn detach(self) -> Result<LabState, LabError> {
        let mut named = vec![
            ("master".to_string(), &self.master),
            ("replica-1".to_string(), &self.replica),
        ];
        named.extend(
            self.sentinels
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("sentinel-{}", i + 1), s)),
        );
        let mut nodes = Vec::new();
        for (name, process) in named {
            nodes.push(LabNode {
                name,
                kind: if process.spec().sentinel {
                    NodeKind::Sentinel
                } else {
                    NodeKind::Redis
                },
                port: process.port(),
                pid: process.pid().ok_or(LabError::NotRunning { port: process.port() })?,
                dir: process.dir().to_path_buf(),
            });
        }
        let state = LabState::new(&self.dir, LabKind::Sentinel, nodes);
        // Saved before letting go, so a failed write still kills the processes.
        state.save()?;
        let Topology {
            master,
            replica,
            sentinels,
            ..
        } = self;
        for process in [master, replica].into_iter().chain(sentinels) {
            process.detach();
        }
        Ok(state)
    }
}

/// `<dir>/lab.json`: what later `redops lab` commands need to find, restart
/// and stop the processes of a detached topology.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    #[serde(skip)]
    dir: PathBuf,
    #[serde(default)]
    pub kind: LabKind,
    pub master_name: String,
    /// Data nodes first, then Sentinels. Names are the roles at start; the
    /// current role is in [`LabState::status`].
    pub nodes: Vec<LabNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabNode {
    pub name: String,
    pub kind: NodeKind,
    pub port: u16,
    pub pid: u32,
    pub dir: PathBuf,
}

impl LabNode {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The pid exists and is not a zombie; it may be paused.
    pub fn is_alive(&self) -> bool {
        pid_alive(self.pid)
    }

    /// Answers on its port as the recorded pid, and returns its role:
    /// `master`, `replica` or `sentinel`.
    pub fn probe(&self) -> Option<String> {
        let mut conn = connect(&self.addr()).ok()?;
        let info: String = redis::cmd("INFO").query(&mut conn).ok()?;
        if info_field(&info, "process_id")?.parse::<u32>().ok()? != self.pid {
            return None;
        }
        let role = match self.kind {
            NodeKind::Sentinel => "sentinel",
            NodeKind::Redis => match info_field(&info, "role")? {
                "slave" => "replica",
                other => other,
            },
        };
        Some(role.to_string())
    }

    pub fn config_path(&self) -> PathBuf {
        self.spec().config_path()
    }

    fn spec(&self) -> RedisSpec {
        let spec = RedisSpec::new(&self.dir).on_port(self.port).in_own_process_group(true);
        match self.kind {
            NodeKind::Sentinel => spec.as_sentinel(),
            NodeKind::Redis => spec,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub kind: LabKind,
    /// Every node answers.
    pub up: bool,
    /// The master per the Sentinels; `None` if none answers (and in a cluster lab).
    pub master: Option<String>,
    /// A cluster lab's `cluster_state` per the first node that answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_state_ok: Option<bool>,
    /// A cluster lab's masters, in slot order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<String>,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub kind: NodeKind,
    pub addr: String,
    pub pid: u32,
    pub up: bool,
    /// `master`, `replica` or `sentinel`, when up.
    pub role: Option<String>,
}

impl LabState {
    pub(crate) fn new(dir: &Path, kind: LabKind, nodes: Vec<LabNode>) -> LabState {
        LabState {
            dir: dir.to_path_buf(),
            kind,
            master_name: match kind {
                LabKind::Sentinel => MASTER_NAME.to_string(),
                LabKind::Cluster => String::new(),
            },
            nodes,
        }
    }

    /// `Ok(None)` when `dir` holds no lab.
    pub fn load(dir: &Path) -> Result<Option<LabState>, LabError> {
        let path = dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io(format!("Failed to read {}", path.display()))(e)),
        };
        let mut state: LabState = serde_json::from_str(&text).map_err(|source| LabError::BadState { path, source })?;
        state.dir = dir.to_path_buf();
        Ok(Some(state))
    }

    pub fn save(&self) -> Result<(), LabError> {
        let path = self.dir.join(STATE_FILE);
        let json = serde_json::to_string_pretty(self).expect("lab state serializes");
        // Written whole and renamed, so a crash never leaves half a file that
        // would hide running processes from `redops lab down`.
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        fs::write(&tmp, json + "\n").map_err(LabError::io(format!("Failed to write {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(LabError::io(format!("Failed to write {}", path.display())))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    pub fn node(&self, name: &str) -> Option<&LabNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn data_nodes(&self) -> impl Iterator<Item = &LabNode> {
        self.nodes.iter().filter(|n| n.kind == NodeKind::Redis)
    }

    pub fn data_addrs(&self) -> Vec<String> {
        self.data_nodes().map(LabNode::addr).collect()
    }

    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Sentinel)
            .map(LabNode::addr)
            .collect()
    }

    /// The master's address per the first Sentinel that answers.
    pub fn master_addr(&self) -> Result<String, LabError> {
        current_master(&self.sentinel_addrs())
    }

    /// Every node answers as the recorded pid.
    pub fn is_up(&self) -> bool {
        self.down_nodes().is_empty()
    }

    pub fn down_nodes(&self) -> Vec<&LabNode> {
        self.nodes.iter().filter(|n| n.probe().is_none()).collect()
    }

    pub fn status(&self) -> LabStatus {
        let nodes: Vec<NodeStatus> = self
            .nodes
            .iter()
            .map(|node| {
                let role = node.probe();
                NodeStatus {
                    name: node.name.clone(),
                    kind: node.kind,
                    addr: node.addr(),
                    pid: node.pid,
                    up: role.is_some(),
                    role,
                }
            })
            .collect();
        let (master, cluster_state_ok, masters) = match self.kind {
            LabKind::Sentinel => (self.master_addr().ok(), None, Vec::new()),
            LabKind::Cluster => match cluster_state::cluster_state(&self.data_addrs()) {
                Some((ok, masters)) => (None, Some(ok), masters),
                None => (None, None, Vec::new()),
            },
        };
        LabStatus {
            dir: self.dir.clone(),
            config: self.config_path(),
            kind: self.kind,
            up: nodes.iter().all(|n| n.up),
            master,
            cluster_state_ok,
            masters,
            nodes,
        }
    }

    /// Starts every node that does not answer, data nodes before Sentinels,
    /// from the config files they left behind (Sentinels keep their state
    /// there), waits for the Sentinels to agree again, and returns the names.
    pub fn restart_down(&mut self) -> Result<Vec<String>, LabError> {
        let down: Vec<String> = self.down_nodes().into_iter().map(|n| n.name.clone()).collect();
        for name in &down {
            self.relaunch(name)?;
            tracing::info!(node = %name, "Restarted");
        }
        if !down.is_empty() {
            match self.kind {
                LabKind::Sentinel => wait_settled(&self.sentinel_addrs(), &self.data_addrs())?,
                // A node restarted from its nodes.conf rejoins by itself.
                LabKind::Cluster => cluster_state::wait_cluster_ok(&self.data_addrs(), SETTLE_TIMEOUT * 2)?,
            }
        }
        Ok(down)
    }

    /// Kills the node if it still runs (a paused or hung server holds its
    /// port), starts it again from its config file and saves the new pid.
    ///
    /// Panics if the lab has no node called `name`.
    pub fn relaunch(&mut self, name: &str) -> Result<(), LabError> {
        let index = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no lab node named {name}"));
        let node = &self.nodes[index];
        if owns_pid(node.pid) {
            signal(node.pid, "KILL").map_err(LabError::io(format!("Failed to kill {name} (pid {})", node.pid)))?;
            wait_dead(&[node.pid], STOP_GRACE);
        }
        let process = RedisProcess::relaunch(node.spec())?;
        let port = process.port();
        self.nodes[index].pid = process.detach().ok_or(LabError::NotRunning { port })?;
        self.save()
    }

    /// Stops the Sentinels, then the data nodes, so the Sentinels do not
    /// fail over from a master that is only shutting down: SIGTERM, then
    /// SIGKILL to whatever still runs after [`STOP_GRACE`]. Removes lab.json
    /// and returns the pids stopped.
    pub fn stop(self) -> Result<Vec<u32>, LabError> {
        let mut stopped = Vec::new();
        for kind in [NodeKind::Sentinel, NodeKind::Redis] {
            let pids: Vec<u32> = self
                .nodes
                .iter()
                .filter(|n| n.kind == kind && owns_pid(n.pid))
                .map(|n| n.pid)
                .collect();
            stop_pids(&pids)?;
            stopped.extend(pids);
        }
        let path = self.dir.join(STATE_FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LabError::io(format!("Failed to remove {}", path.display()))(e));
            }
            _ => {}
        }
        Ok(stopped)
    }

    pub fn write_config(&self) -> Result<PathBuf, LabError> {
        match self.kind {
            LabKind::Sentinel => write_config(&self.dir, &self.sentinel_addrs()),
            LabKind::Cluster => cluster_state::write_config(&self.dir, &self.data_addrs()),
        }
    }
}

/// What [`up`] had to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpChange {
    AlreadyUp,
    /// These nodes were down and were started again.
    Restarted(Vec<String>),
    Started,
}

#[derive(Debug)]
pub struct LabUp {
    pub state: LabState,
    pub change: UpChange,
    pub config: PathBuf,
}

/// Brings the lab in `dir` up: nothing if it is up, restarts what is down if
/// part of it is (so `chaos outage` is undone with the Sentinels' state
/// intact), or starts a fresh one when there is none or a restart fails.
/// Then writes the shipped rules and playbooks and `redops.toml`, so an
/// upgraded binary updates them.
///
/// `want` is the kind of lab asked for; `None` takes the lab the directory
/// holds, a Sentinel lab when it holds none. A lab of the other kind is
/// an error rather than stopped: it may hold someone's experiment.
pub fn up(dir: &Path, want: Option<LabKind>) -> Result<LabUp, LabError> {
    fs::create_dir_all(dir).map_err(LabError::io(format!("Failed to create {}", dir.display())))?;
    let existing = LabState::load(dir)?;
    let kind = match (&existing, want) {
        (Some(state), Some(want)) if state.kind != want => {
            return Err(LabError::OtherLab {
                dir: dir.to_path_buf(),
                running: state.kind.as_str().to_string(),
                wanted: want.as_str().to_string(),
            });
        }
        (Some(state), _) => state.kind,
        (None, want) => want.unwrap_or_default(),
    };
    let start_fresh = |dir: &Path| match kind {
        LabKind::Sentinel => Topology::start_detachable(dir)?.detach(),
        LabKind::Cluster => ClusterLab::start_detachable(dir)?.detach(),
    };
    let (state, change) = match existing {
        Some(state) if state.is_up() => (state, UpChange::AlreadyUp),
        Some(mut state) => match state.restart_down() {
            // Down a moment ago, answering now: nothing was restarted.
            Ok(names) if names.is_empty() => (state, UpChange::AlreadyUp),
            Ok(names) => (state, UpChange::Restarted(names)),
            Err(e @ LabError::MissingBinary { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "Failed to restart the lab, starting a fresh one");
                state.stop()?;
                (start_fresh(dir)?, UpChange::Started)
            }
        },
        None => (start_fresh(dir)?, UpChange::Started),
    };
    embedded::write_to(dir)?;
    let config = state.write_config()?;
    Ok(LabUp { state, change, config })
}

/// For `redops run --lab`: brings the lab up if needed and returns the path
/// of its `redops.toml`.
pub fn ensure_up(dir: &Path) -> Result<PathBuf, LabError> {
    Ok(up(dir, None)?.config)
}

/// The `redops.toml` of the lab in `dir` while any of its processes runs,
/// for commands that are given no `--config`. Only `lab.json` and the pids
/// are looked at, never the network: it runs before every such command, and
/// a lab that is partly down (`chaos outage`) is still the one to inspect.
/// `None` when there is no lab or when none of its processes is left (after
/// a reboot, say).
pub fn running_config(dir: &Path) -> Result<Option<PathBuf>, LabError> {
    Ok(LabState::load(dir)?
        .filter(|state| state.nodes.iter().any(|n| owns_pid(n.pid)))
        .map(|state| state.config_path()))
}

pub fn render_config(sentinel_addrs: &[String]) -> String {
    let source = format!(
        "[[sentinel]]\nname = \"lab\"\nmaster = \"{MASTER_NAME}\"\nsentinels = [{}]\n",
        quoted_list(sentinel_addrs)
    );
    lab_config("redops lab up", &source)
}

/// `"a", "b"`: addresses as a TOML array's items.
pub(crate) fn quoted_list(addrs: &[String]) -> String {
    addrs
        .iter()
        .map(|addr| format!("\"{addr}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lab's engine config around `source`, the `[[sentinel]]` or
/// `[[cluster]]` block it watches; `command` is what writes it.
pub(crate) fn lab_config(command: &str, source: &str) -> String {
    format!(
        r#"# Written by `{command}`, which rewrites it: edit a copy.

[engine]
rules_dir = "rules"
playbooks_dir = "playbooks"
state_dir = "state"
sample_interval = "1s"

{source}keyspace_events = "Ee"
labels = {{ env = "lab" }}

[api]
# Another address with REDOPS_LAB_API_LISTEN: two labs, or a test, on one machine.
listen = "${{REDOPS_LAB_API_LISTEN:-127.0.0.1:9187}}"

[receiver.log]
type = "log"

[receiver.webhook]
type = "webhook"
url = "${{REDOPS_WEBHOOK_URL:-http://127.0.0.1:9099/redops}}"

[playbooks]
# warm_cache's http.get reaches the local application only.
http_allow = ["127.0.0.1", "localhost"]
"#
    )
}

/// Writes `<dir>/redops.toml` for a Sentinel group at `sentinel_addrs`.
pub fn write_config(dir: &Path, sentinel_addrs: &[String]) -> Result<PathBuf, LabError> {
    let path = dir.join(CONFIG_FILE);
    fs::write(&path, render_config(sentinel_addrs))
        .map_err(LabError::io(format!("Failed to write {}", path.display())))?;
    Ok(path)
}

pub(crate) fn connect(addr: &str) -> redis::RedisResult<redis::Connection> {
    let conn = redis::Client::open(format!("redis://{addr}"))?.get_connection_with_timeout(IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(conn)
}

pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// The master's address per the first of `sentinels` that answers.
pub fn current_master(sentinels: &[String]) -> Result<String, LabError> {
    let mut last_error = None;
    for addr in sentinels {
        match ask_master(addr) {
            Ok(master) => return Ok(master),
            Err(e) => last_error = Some(e),
        }
    }
    Err(LabError::Redis {
        context: "No Sentinel answered".to_string(),
        source: last_error.unwrap_or_else(|| redis::RedisError::from(std::io::Error::other("the lab has none"))),
    })
}

pub(crate) fn ask_master(sentinel: &str) -> redis::RedisResult<String> {
    let (host, port): (String, String) = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(MASTER_NAME)
        .query(&mut connect(sentinel)?)?;
    Ok(format!("{host}:{port}"))
}

/// Polls `check` until it returns `Ok`; on timeout fails with its last reason.
pub(crate) fn wait_for(timeout: Duration, mut check: impl FnMut() -> Result<(), String>) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(detail) if Instant::now() >= deadline => return Err(LabError::NotConverged { timeout, detail }),
            Err(_) => thread::sleep(POLL),
        }
    }
}

fn wait_settled(sentinels: &[String], data_nodes: &[String]) -> Result<(), LabError> {
    wait_for(SETTLE_TIMEOUT, || unsettled(sentinels, data_nodes).map_or(Ok(()), Err))
}

/// Why the Sentinels could not run a failover yet, or `None` when each sees
/// the same healthy master, a healthy replica and the other two Sentinels,
/// and a replica has synced with that master.
///
/// The replica's own INFO says whether it synced: a Sentinel's copy of it
/// can be 10 s old.
fn unsettled(sentinels: &[String], data_nodes: &[String]) -> Option<String> {
    let mut masters = BTreeSet::new();
    for addr in sentinels {
        let mut conn = match connect(addr) {
            Ok(conn) => conn,
            Err(e) => return Some(format!("Sentinel {addr}: {e}")),
        };
        let master: HashMap<String, String> =
            match redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME).query(&mut conn) {
                Ok(master) => master,
                Err(e) => return Some(format!("Sentinel {addr}: {e}")),
            };
        let field = |name: &str| master.get(name).map(String::as_str).unwrap_or("");
        if field("flags") != "master" {
            return Some(format!("Sentinel {addr} flags the master {}", field("flags")));
        }
        let others: usize = field("num-other-sentinels").parse().unwrap_or(0);
        if others < SENTINELS - 1 {
            return Some(format!(
                "Sentinel {addr} knows {others} of the other {} Sentinels",
                SENTINELS - 1
            ));
        }
        let replicas: Vec<HashMap<String, String>> =
            match redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME).query(&mut conn) {
                Ok(replicas) => replicas,
                Err(e) => return Some(format!("Sentinel {addr}: {e}")),
            };
        if !replicas
            .iter()
            .any(|r| r.get("flags").map(String::as_str) == Some("slave"))
        {
            return Some(format!("Sentinel {addr} sees no healthy replica"));
        }
        masters.insert(format!("{}:{}", field("ip"), field("port")));
    }
    let master = match masters.len() {
        1 => masters.pop_first()?,
        _ => return Some(format!("the Sentinels disagree on the master: {masters:?}")),
    };
    let synced = data_nodes
        .iter()
        .any(|addr| synced_master(addr).ok().flatten().as_ref() == Some(&master));
    (!synced).then(|| format!("no replica has synced with the master {master}"))
}

/// The master the server at `addr` has synced with, if it is a replica that has.
pub(crate) fn synced_master(addr: &str) -> redis::RedisResult<Option<String>> {
    let info: String = redis::cmd("INFO").arg("replication").query(&mut connect(addr)?)?;
    let synced = info_field(&info, "role") == Some("slave") && info_field(&info, "master_link_status") == Some("up");
    Ok(synced
        .then(|| {
            Some(format!(
                "{}:{}",
                info_field(&info, "master_host")?,
                info_field(&info, "master_port")?
            ))
        })
        .flatten())
}

/// The pid runs a redis-server (and has not been reused by something else
/// since lab.json was written), so it is ours to signal.
fn owns_pid(pid: u32) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if Path::new("/proc/self").exists() {
        let cmdline = fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        return String::from_utf8_lossy(&cmdline).contains("redis");
    }
    match std::process::Command::new("ps")
        .args(["-o", "command=", "-p", &pid.to_string()])
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).contains("redis"),
        // Without a way to tell, stopping the lab matters more.
        Err(_) => true,
    }
}

/// Exists and is not a zombie: a killed server whose parent exited may stay
/// a zombie where nothing reaps orphans (some container inits).
pub fn pid_alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // The state follows the command name, which may contain ") ".
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        return !matches!(state, Some('Z' | 'X') | None);
    }
    signal(pid, "0").is_ok()
}

fn stop_pids(pids: &[u32]) -> Result<(), LabError> {
    for &pid in pids {
        // A paused server keeps SIGTERM pending until it is continued.
        let _ = signal(pid, "CONT");
        let _ = signal(pid, "TERM");
    }
    for pid in wait_dead(pids, STOP_GRACE) {
        tracing::warn!(pid, "redis-server ignored SIGTERM, killing it");
        let _ = signal(pid, "KILL");
    }
    match wait_dead(pids, STOP_GRACE).first() {
        Some(pid) => Err(LabError::io(format!("Failed to stop pid {pid}"))(
            std::io::Error::other("still running after SIGKILL"),
        )),
        None => Ok(()),
    }
}

/// Waits until none of `pids` is alive; returns those still alive at `timeout`.
fn wait_dead(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&pid| pid_alive(pid)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_watches_the_sentinel_group() {
        let addrs = vec![
            "127.0.0.1:1".to_string(),
            "127.0.0.1:2".to_string(),
            "127.0.0.1:3".to_string(),
        ];
        let config: toml::Table = toml::from_str(&render_config(&addrs)).unwrap();
        let sentinel = &config["sentinel"].as_array().unwrap()[0];
        assert_eq!(sentinel["master"].as_str(), Some(MASTER_NAME));
        assert_eq!(
            sentinel["sentinels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect::<Vec<_>>(),
            addrs
        );
        assert_eq!(sentinel["labels"]["env"].as_str(), Some("lab"));
        assert_eq!(config["engine"]["sample_interval"].as_str(), Some("1s"));
        assert_eq!(config["receiver"]["log"]["type"].as_str(), Some("log"));
        assert_eq!(
            config["receiver"]["webhook"]["url"].as_str(),
            Some("${REDOPS_WEBHOOK_URL:-http://127.0.0.1:9099/redops}")
        );
    }

    #[test]
    fn lab_state_round_trips_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LabState::load(dir.path()).unwrap().is_none());
        let state = LabState {
            dir: dir.path().to_path_buf(),
            kind: LabKind::Sentinel,
            master_name: MASTER_NAME.to_string(),
            nodes: vec![LabNode {
                name: "sentinel-1".to_string(),
                kind: NodeKind::Sentinel,
                port: 26379,
                pid: 42,
                dir: dir.path().join("sentinel-1"),
            }],
        };
        state.save().unwrap();
        let loaded = LabState::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.nodes, state.nodes);
        assert_eq!(loaded.dir(), dir.path());
        assert_eq!(loaded.sentinel_addrs(), vec!["127.0.0.1:26379"]);
    }

    #[test]
    fn a_corrupt_state_file_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), "{").unwrap();
        let error = LabState::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("redops lab down"), "{error}");
    }

    #[test]
    fn a_lab_without_a_live_redis_process_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running_config(dir.path()).unwrap(), None, "no lab.json");

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let reaped = child.wait().map(|_| child.id()).unwrap();
        let node = |pid: u32| LabNode {
            name: "master".to_string(),
            kind: NodeKind::Redis,
            port: 6379,
            pid,
            dir: dir.path().join("master"),
        };
        // This test's own pid is alive but is no redis-server: a pid reused
        // after a reboot must not make a stale lab.json look running.
        let state = LabState {
            dir: dir.path().to_path_buf(),
            kind: LabKind::Sentinel,
            master_name: MASTER_NAME.to_string(),
            nodes: vec![node(reaped), node(std::process::id())],
        };
        state.save().unwrap();
        assert_eq!(running_config(dir.path()).unwrap(), None);

        fs::write(dir.path().join(STATE_FILE), "{").unwrap();
        assert!(running_config(dir.path()).is_err(), "a corrupt lab.json is an error");
    }

    #[test]
    fn pid_alive_tells_a_live_process_from_a_reaped_one() {
        assert!(pid_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn info_fields_are_found_by_exact_name() {
        let info = "# Server\r\nprocess_id:12\r\nrole:slave\r\nmaster_link_status:up\r\n";
        assert_eq!(info_field(info, "process_id"), Some("12"));
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_link"), None);
    }
}
