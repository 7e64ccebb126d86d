//! Asks a cluster for its topology: the node that answered last, then the
//! seeds, then every node the last answer named, so discovery survives the
//! loss of any node including every seed.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::view::{self, ClusterInfo, ClusterView};
use crate::config::ClusterConfig;
use crate::redis::connect;

pub struct Discoverer {
    cluster: ClusterConfig,
    timeout: Duration,
    conn: Option<(String, MultiplexedConnection)>,
    /// Every node of the last answer, tried after the seeds.
    known: Vec<String>,
}

impl Discoverer {
    pub fn new(cluster: ClusterConfig, timeout: Duration) -> Self {
        Discoverer {
            cluster,
            timeout,
            conn: None,
            known: Vec::new(),
        }
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cluster
    }

    /// One round: the first node that answers describes the cluster. A node
    /// that reports itself failed or cut off (`cluster_state:fail` while
    /// another node is reachable) is still an answer; callers read the state.
    pub async fn discover(&mut self) -> Result<ClusterView, String> {
        let mut candidates: Vec<String> = self.conn.iter().map(|(a, _)| a.clone()).collect();
        for addr in self.cluster.seeds.iter().chain(&self.known) {
            if !candidates.contains(addr) {
                candidates.push(addr.clone());
            }
        }
        let mut unreachable = Vec::new();
        for addr in candidates {
            match self.ask(&addr).await {
                Ok(mut view) => {
                    view.unreachable = unreachable;
                    self.known = view
                        .nodes
                        .iter()
                        .filter(|n| !n.addr.is_empty())
                        .map(|n| n.addr.clone())
                        .collect();
                    return Ok(view);
                }
                Err(e) => {
                    if self.conn.as_ref().is_some_and(|(a, _)| *a == addr) {
                        self.conn = None;
                    }
                    unreachable.push((addr, e));
                }
            }
        }
        let detail = unreachable
            .iter()
            .map(|(a, e)| format!("{a}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(format!(
            "no node of cluster `{}` answered ({detail})",
            self.cluster.name
        ))
    }

    async fn ask(&mut self, addr: &str) -> Result<ClusterView, String> {
        let conn = self.conn_to(addr).await?;
        let info: String = query(conn, redis::cmd("CLUSTER").arg("INFO")).await?;
        let nodes_text: String = query(conn, redis::cmd("CLUSTER").arg("NODES")).await?;
        let nodes = view::parse_nodes(&nodes_text);
        // CLUSTER SHARDS is Redis 7's; an older server (or an unexpected
        // reply) falls back to the shards the nodes imply.
        let shards = match query::<redis::Value>(conn, redis::cmd("CLUSTER").arg("SHARDS")).await {
            Ok(reply) => view::parse_shards(&reply, &nodes),
            Err(_) => None,
        }
        .unwrap_or_else(|| view::shards_from_nodes(&nodes));
        Ok(ClusterView {
            cluster: self.cluster.name.clone(),
            source: addr.to_owned(),
            info: ClusterInfo::parse(&info),
            nodes,
            shards,
            unreachable: Vec::new(),
        })
    }

    async fn conn_to(&mut self, addr: &str) -> Result<&mut MultiplexedConnection, String> {
        if self.conn.as_ref().is_none_or(|(a, _)| a != addr) {
            let info = self.cluster.node_config(addr).connection_info()?;
            let conn = connect::connect_async(&info, self.timeout, self.timeout)
                .await
                .map_err(|e| crate::secrets::redact(&e.to_string()))?;
            self.conn = Some((addr.to_owned(), conn));
        }
        Ok(&mut self.conn.as_mut().expect("set above").1)
    }
}

async fn query<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, cmd: &redis::Cmd) -> Result<T, String> {
    cmd.query_async(conn)
        .await
        .map_err(|e| crate::secrets::redact(&e.to_string()))
}
