//! The group as its Sentinels see it: who is master, which replicas and
//! Sentinels exist, whether the quorum is reachable, and whether every
//! Sentinel agrees. Used by the group source every sample, and by
//! `redops sentinel status|validate`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::Serialize;

use crate::config::SentinelGroupConfig;
use crate::event::sentinel::parse_addr;
use crate::redis::connect;

#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupView {
    pub group: String,
    pub master_name: String,
    /// The master's address as the first reachable Sentinel reports it.
    pub master: Option<String>,
    pub replicas: Vec<ReplicaView>,
    pub sentinels: Vec<SentinelView>,
    pub quorum: Option<u32>,
    /// `SENTINEL CKQUORUM`: enough Sentinels are reachable to agree on a
    /// failover and authorise it.
    pub quorum_ok: bool,
    pub quorum_message: Option<String>,
    pub config_epoch: Option<u64>,
    /// The master's own flags as Sentinel sees them (`master`, `s_down`, ...).
    pub master_flags: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    pub addr: String,
    pub flags: String,
    /// `master-link-status` as the Sentinel last read it from the replica.
    pub link_ok: bool,
    pub repl_offset: Option<u64>,
}

impl ReplicaView {
    pub fn is_up(&self) -> bool {
        !self
            .flags
            .split(',')
            .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SentinelView {
    pub addr: String,
    pub reachable: bool,
    /// The master this Sentinel reports; a disagreement is a problem.
    pub master: Option<String>,
    pub error: Option<String>,
}

impl GroupView {
    /// Every data node: the master first, then the replicas.
    pub fn nodes(&self) -> Vec<(String, &'static str)> {
        let mut nodes: Vec<(String, &'static str)> = self.master.iter().map(|m| (m.clone(), "master")).collect();
        nodes.extend(
            self.replicas
                .iter()
                .filter(|r| Some(&r.addr) != self.master.as_ref())
                .map(|r| (r.addr.clone(), "replica")),
        );
        nodes
    }

    pub fn sentinels_reachable(&self) -> usize {
        self.sentinels.iter().filter(|s| s.reachable).count()
    }

    /// Whether every reachable Sentinel names the same master.
    pub fn sentinels_agree(&self) -> bool {
        let mut seen = self.sentinels.iter().filter_map(|s| s.master.as_ref());
        match seen.next() {
            Some(first) => seen.all(|m| m == first),
            None => true,
        }
    }

    /// What `redops sentinel validate` reports, one line per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let configured = self.sentinels.len();
        if configured < 3 {
            problems.push(format!(
                "only {configured} Sentinel(s) configured: run at least 3 so that one can fail without losing the quorum"
            ));
        }
        for s in self.sentinels.iter().filter(|s| !s.reachable) {
            problems.push(format!(
                "Sentinel {} is unreachable: {}",
                s.addr,
                s.error.as_deref().unwrap_or("no answer")
            ));
        }
        if self.master.is_none() {
            problems.push(format!("no Sentinel knows a master named `{}`", self.master_name));
        }
        if !self.quorum_ok {
            problems.push(format!(
                "quorum unreachable: {}",
                self.quorum_message
                    .as_deref()
                    .unwrap_or("no Sentinel answered CKQUORUM")
            ));
        }
        for r in &self.replicas {
            if !r.is_up() {
                problems.push(format!("replica {} is down ({})", r.addr, r.flags));
            } else if !r.link_ok {
                problems.push(format!("replica {} has its link to the master down", r.addr));
            }
        }
        if !self.sentinels_agree() {
            for s in &self.sentinels {
                if let (Some(m), Some(ours)) = (&s.master, &self.master)
                    && m != ours
                {
                    problems.push(format!(
                        "Sentinel {} says the master is {m}, the others say {ours}",
                        s.addr
                    ));
                }
            }
        }
        problems
    }
}

/// Asks the Sentinels of a group; keeps a connection to each between rounds.
pub struct Discoverer {
    group: SentinelGroupConfig,
    timeout: Duration,
    conns: HashMap<String, MultiplexedConnection>,
}

impl Discoverer {
    pub fn new(group: SentinelGroupConfig, timeout: Duration) -> Self {
        Discoverer {
            group,
            timeout,
            conns: HashMap::new(),
        }
    }

    pub fn sentinel_info(&self, addr: &str) -> Option<redis::ConnectionInfo> {
        sentinel_connection_info(&self.group, addr)
    }

    async fn conn(&mut self, addr: &str) -> Result<&mut MultiplexedConnection, String> {
        if !self.conns.contains_key(addr) {
            let info = self
                .sentinel_info(addr)
                .ok_or_else(|| format!("`{addr}` is not host:port"))?;
            let conn = connect::connect_async(&info, self.timeout, self.timeout)
                .await
                .map_err(|e| crate::secrets::redact(&e.to_string()))?;
            self.conns.insert(addr.to_owned(), conn);
        }
        Ok(self.conns.get_mut(addr).expect("inserted above"))
    }

    async fn query<T: redis::FromRedisValue>(&mut self, addr: &str, cmd: &redis::Cmd) -> Result<T, String> {
        let result = {
            let conn = self.conn(addr).await?;
            cmd.query_async::<T>(conn).await
        };
        result.map_err(|e| {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
                self.conns.remove(addr);
            }
            crate::secrets::redact(&e.to_string())
        })
    }

    /// One round of questions to every Sentinel.
    pub async fn discover(&mut self) -> GroupView {
        let master_name = self.group.master.clone();
        let mut view = GroupView {
            group: self.group.name.clone(),
            master_name: master_name.clone(),
            ..Default::default()
        };
        let mut detailed = false;
        for addr in self.group.sentinels.clone() {
            let get_addr = sentinel_cmd(&["GET-MASTER-ADDR-BY-NAME", &master_name]);
            let reply: Result<Option<(String, String)>, String> = self.query(&addr, &get_addr).await;
            let (reachable, master, error) = match reply {
                Ok(Some((ip, port))) => (true, Some(format!("{ip}:{port}")), None),
                Ok(None) => (true, None, None),
                Err(e) => (false, None, Some(e)),
            };
            view.sentinels.push(SentinelView {
                addr: addr.clone(),
                reachable,
                master: master.clone(),
                error,
            });
            if reachable && !detailed {
                detailed = true;
                view.master = master;
                self.details(&addr, &mut view).await;
            }
        }
        view
    }

    /// Master, replicas and quorum from one Sentinel.
    async fn details(&mut self, addr: &str, view: &mut GroupView) {
        let name = self.group.master.clone();
        if let Ok(fields) = self.query::<Vec<String>>(addr, &sentinel_cmd(&["MASTER", &name])).await {
            let m = pairs(&fields);
            view.quorum = m.get("quorum").and_then(|q| q.parse().ok());
            view.config_epoch = m.get("config-epoch").and_then(|e| e.parse().ok());
            view.master_flags = m.get("flags").cloned();
        }
        if let Ok(replicas) = self
            .query::<Vec<Vec<String>>>(addr, &sentinel_cmd(&["REPLICAS", &name]))
            .await
        {
            view.replicas = replicas
                .iter()
                .map(|r| {
                    let m = pairs(r);
                    ReplicaView {
                        addr: format!(
                            "{}:{}",
                            m.get("ip").map_or("?", String::as_str),
                            m.get("port").map_or("?", String::as_str)
                        ),
                        flags: m.get("flags").cloned().unwrap_or_default(),
                        link_ok: m.get("master-link-status").is_some_and(|s| s == "ok"),
                        repl_offset: m.get("slave-repl-offset").and_then(|o| o.parse().ok()),
                    }
                })
                .collect();
        }
        match self.query::<String>(addr, &sentinel_cmd(&["CKQUORUM", &name])).await {
            Ok(message) => {
                view.quorum_ok = true;
                view.quorum_message = Some(message);
            }
            Err(e) => {
                view.quorum_ok = false;
                view.quorum_message = Some(e);
            }
        }
    }
}

pub fn sentinel_connection_info(group: &SentinelGroupConfig, addr: &str) -> Option<redis::ConnectionInfo> {
    let (host, port) = parse_addr(addr)?;
    let target = crate::config::TargetConfig {
        name: format!("{}/sentinel/{addr}", group.name),
        url: format!("redis://{host}:{port}"),
        username: None,
        password: group.sentinel_password.clone(),
        keyspace_events: None,
        labels: BTreeMap::new(),
        probes: BTreeMap::new(),
        tls_ca: None,
    };
    target.connection_info().ok()
}

/// The master's `host:port`, asked of each Sentinel in turn, blocking: for
/// playbooks, which run on blocking threads.
pub fn master_addr_blocking(group: &SentinelGroupConfig, timeout: Duration) -> Option<String> {
    group.sentinels.iter().find_map(|addr| {
        let info = sentinel_connection_info(group, addr)?;
        let mut conn = connect::connect_blocking(&info, timeout).ok()?;
        let reply: Option<(String, String)> = sentinel_cmd(&["GET-MASTER-ADDR-BY-NAME", &group.master])
            .query(&mut conn)
            .ok()?;
        reply.map(|(ip, port)| format!("{ip}:{port}"))
    })
}

fn sentinel_cmd(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("SENTINEL");
    for a in args {
        cmd.arg(*a);
    }
    cmd
}

/// `[k1, v1, k2, v2, ...]` → map.
fn pairs(flat: &[String]) -> BTreeMap<String, String> {
    flat.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect()
}
