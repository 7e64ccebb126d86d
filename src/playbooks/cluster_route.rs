//! How a run whose target is a cluster reaches its nodes: the topology,
//! asked of the cluster when first needed (CLUSTER INFO, NODES, SHARDS on a
//! blocking connection, since runs have a blocking thread each), a
//! connection per node, and a command routed by its first key's slot to
//! the shard's master, following one `MOVED` (after asking the cluster
//! again) or `ASK` redirect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use super::command_key::first_key;
use super::context::ScriptedWorld;
use crate::cluster::{ClusterInfo, ClusterView, key_slot, view};
use crate::config::ClusterConfig;

#[derive(Debug)]
pub enum RouteError {
    /// The command cannot be routed (no key and no node, a slot without a
    /// master, a node not in the cluster).
    NoRoute(String),
    /// Redacted.
    Connect(String),
    /// The server's error or the connection's (redacted).
    Command(String),
}

pub struct ClusterRoute {
    config: ClusterConfig,
    /// `redops test`: every command, the topology's included, is answered
    /// by the script; routing and the audit's nodes stay the real ones.
    scripted: Option<Arc<dyn ScriptedWorld>>,
    /// The node the run's target names (`<cluster>/<host:port>`): where a
    /// command without a key goes when the playbook names no node.
    default_node: Option<String>,
    view: Option<ClusterView>,
    conns: HashMap<String, redis::Connection>,
}

impl ClusterRoute {
    pub fn new(config: ClusterConfig, default_node: Option<String>, scripted: Option<Arc<dyn ScriptedWorld>>) -> Self {
        ClusterRoute {
            config,
            scripted,
            default_node,
            view: None,
            conns: HashMap::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The topology, asked of the cluster the first time.
    pub fn view(&mut self, timeout: Duration) -> Result<&ClusterView, String> {
        if self.view.is_none() {
            self.refresh(timeout)?;
        }
        Ok(self.view.as_ref().expect("set above"))
    }

    /// Asks the cluster again: the node that answered last, the run's
    /// node, the seeds, then every node the last answer named.
    pub fn refresh(&mut self, timeout: Duration) -> Result<&ClusterView, String> {
        let mut candidates: Vec<String> = Vec::new();
        let last = self.view.as_ref().map(|v| v.source.clone());
        let known: Vec<String> = self
            .view
            .iter()
            .flat_map(|v| v.nodes.iter().filter(|n| n.is_up()).map(|n| n.addr.clone()))
            .collect();
        for addr in last
            .into_iter()
            .chain(self.default_node.clone())
            .chain(self.config.seeds.clone())
            .chain(known)
        {
            if !addr.is_empty() && !candidates.contains(&addr) {
                candidates.push(addr);
            }
        }
        if candidates.is_empty() && self.scripted.is_some() {
            candidates.push("script".into());
        }
        let mut errors = Vec::new();
        for addr in candidates {
            match self.ask(&addr, timeout) {
                Ok(view) => {
                    self.view = Some(view);
                    return Ok(self.view.as_ref().expect("set above"));
                }
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        Err(format!(
            "no node of cluster `{}` answered ({})",
            self.config.name,
            errors.join("; ")
        ))
    }

    fn ask(&mut self, addr: &str, timeout: Duration) -> Result<ClusterView, String> {
        let cluster = |sub: &str| vec!["CLUSTER".to_owned(), sub.to_owned()];
        let text = |v: Value| match v {
            Value::BulkString(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Value::VerbatimString { text, .. } | Value::SimpleString(text) => Ok(text),
            other => Err(format!("unexpected reply {other:?}")),
        };
        let info = text(self.query(addr, &cluster("INFO"), timeout).map_err(describe)?)?;
        let nodes = view::parse_nodes(&text(self.query(addr, &cluster("NODES"), timeout).map_err(describe)?)?);
        // CLUSTER SHARDS is Redis 7's; older servers: the shards the nodes imply.
        let shards = match self.query(addr, &cluster("SHARDS"), timeout) {
            Ok(reply) => view::parse_shards(&reply, &nodes),
            Err(_) => None,
        }
        .unwrap_or_else(|| view::shards_from_nodes(&nodes));
        Ok(ClusterView {
            cluster: self.config.name.clone(),
            source: addr.to_owned(),
            info: ClusterInfo::parse(&info),
            nodes,
            shards,
            unreachable: Vec::new(),
        })
    }

    /// Where a command goes: the node named (`on`, which must be one of the
    /// cluster's), else its first key's shard master, else the run's node.
    pub fn node_for(&mut self, args: &[String], on: Option<&str>, timeout: Duration) -> Result<String, RouteError> {
        let view = self.view(timeout).map_err(RouteError::Connect)?;
        if let Some(addr) = on {
            return match view.node(addr) {
                Some(_) => Ok(addr.to_owned()),
                None => Err(RouteError::NoRoute(format!(
                    "`{addr}` is not a node of cluster `{}` (nodes: {})",
                    view.cluster,
                    view.nodes
                        .iter()
                        .map(|n| n.addr.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            };
        }
        if let Some(key) = first_key(args) {
            let slot = key_slot(key.as_bytes());
            let shard = view.shard_of_slot(slot).ok_or_else(|| {
                RouteError::NoRoute(format!("no shard of cluster `{}` serves slot {slot}", view.cluster))
            })?;
            return shard
                .master
                .clone()
                .ok_or_else(|| RouteError::NoRoute(format!("shard {} (slot {slot}) has no master", shard.name)));
        }
        if let Some(node) = &self.default_node {
            return Ok(node.clone());
        }
        Err(RouteError::NoRoute(format!(
            "`{}` names no key to route by on cluster `{}`: send it to a node with \
             redis.cmd_on(addr, [...]) (the nodes are in cluster.nodes())",
            args[0].to_ascii_uppercase(),
            self.config.name
        )))
    }

    /// Sends a command (the policy already allowed it) where it belongs and
    /// follows one redirect; also says the node that answered.
    pub fn send(
        &mut self,
        args: &[String],
        on: Option<&str>,
        timeout: Duration,
    ) -> (Result<Value, RouteError>, Option<String>) {
        let node = match self.node_for(args, on, timeout) {
            Ok(n) => n,
            Err(e) => return (Err(e), None),
        };
        let mut first = self.query(&node, args, timeout);
        let mut node = node;
        // A master that went away since the map was read: ask again, once,
        // and go where the cluster now says.
        if on.is_none()
            && matches!(first, Err(Redirect::Failed(RouteError::Connect(_))))
            && self.refresh(timeout).is_ok()
            && let Ok(now) = self.node_for(args, None, timeout)
            && now != node
        {
            node = now;
            first = self.query(&node, args, timeout);
        }
        match first {
            Err(Redirect::Moved(to, slot)) => {
                // The slot moved: the whole map is likely stale, here and
                // in the engine's source.
                crate::sources::redirects::report_moved(&self.config.name, slot, &to);
                let _ = self.refresh(timeout);
                let reply = self.query(&to, args, timeout).map_err(RouteError::from);
                (reply, Some(to))
            }
            Err(Redirect::Ask(to)) => {
                let asking = self.query(&to, &["ASKING".to_owned()], timeout);
                let reply = match asking {
                    Ok(_) => self.query(&to, args, timeout).map_err(RouteError::from),
                    Err(e) => Err(RouteError::from(e)),
                };
                (reply, Some(to))
            }
            Err(Redirect::Failed(e)) => (Err(e), Some(node)),
            Ok(v) => (Ok(v), Some(node)),
        }
    }

    fn query(&mut self, addr: &str, args: &[String], timeout: Duration) -> Result<Value, Redirect> {
        if let Some(world) = &self.scripted {
            return world.redis(args).map_err(|e| Redirect::Failed(RouteError::Command(e)));
        }
        if !self.conns.contains_key(addr) {
            let info = self
                .config
                .node_config(addr)
                .connection_info()
                .map_err(|e| Redirect::Failed(RouteError::Connect(crate::secrets::redact(&e))))?;
            let conn = crate::redis::connect::connect_blocking(&info, timeout)
                .map_err(|e| Redirect::Failed(RouteError::Connect(crate::secrets::redact(&e.to_string()))))?;
            self.conns.insert(addr.to_owned(), conn);
        }
        let conn = self.conns.get_mut(addr).expect("connected above");
        let _ = conn.set_read_timeout(Some(timeout));
        let mut cmd = redis::cmd(&args[0]);
        for a in &args[1..] {
            cmd.arg(a);
        }
        cmd.query::<Value>(conn).map_err(|e| {
            if let Some((to, slot)) = e.redirect_node() {
                let to = to.to_owned();
                return if e.code() == Some("ASK") {
                    Redirect::Ask(to)
                } else {
                    Redirect::Moved(to, slot)
                };
            }
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                self.conns.remove(addr);
            }
            Redirect::Failed(RouteError::Command(crate::secrets::redact(&e.to_string())))
        })
    }
}

/// A reply that sends the command elsewhere, or a failure.
enum Redirect {
    Moved(String, u16),
    Ask(String),
    Failed(RouteError),
}

impl From<Redirect> for RouteError {
    /// A second redirect is not followed: it is the error.
    fn from(r: Redirect) -> Self {
        match r {
            Redirect::Moved(to, _) => RouteError::Command(format!("MOVED again, to {to}")),
            Redirect::Ask(to) => RouteError::Command(format!("ASK again, to {to}")),
            Redirect::Failed(e) => e,
        }
    }
}

fn describe(r: Redirect) -> String {
    match RouteError::from(r) {
        RouteError::NoRoute(e) | RouteError::Connect(e) | RouteError::Command(e) => e,
    }
}
