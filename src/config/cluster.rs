//! `[[cluster]]`: a Redis Cluster whose shards redops discovers from any of
//! its seed nodes, samples node by node, and follows across failovers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::secrets::Secret;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name: the target of cluster-wide alerts and a label on
    /// every node's samples.
    pub name: String,
    /// `host:port` of any subset of the nodes; discovery asks the first that
    /// answers for the whole topology.
    pub seeds: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// Password of every node (`requirepass` / the ACL user's password).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Connect with TLS (`rediss://`).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA that signs the nodes' certificates, for a private
    /// CA. Relative to the config file.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Keyspace notification flags redops ensures on every master.
    #[serde(default)]
    pub keyspace_events: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub probes: BTreeMap<String, String>,
}

impl ClusterConfig {
    /// The target name of one node: `<cluster>/<host>:<port>`. Naming nodes
    /// by address keeps an alert on the node it is about when roles move.
    pub fn node_target(&self, addr: &str) -> String {
        format!("{}/{addr}", self.name)
    }

    /// The URL of one node. A cluster has only database 0.
    pub fn node_url(&self, addr: &str) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{addr}/0")
    }

    /// One node of the cluster as a target: its name and URL, the cluster's
    /// credentials, TLS, keyspace flags and probes, and the labels `cluster`
    /// and `addr` beside the cluster's own. Discovery adds `shard`, `role`
    /// and `slots`. Everything that connects to a node starts from this.
    pub fn node_config(&self, addr: &str) -> super::TargetConfig {
        let mut labels = self.labels.clone();
        labels.insert("cluster".into(), self.name.clone());
        labels.insert("addr".into(), addr.to_owned());
        super::TargetConfig {
            name: self.node_target(addr),
            url: self.node_url(addr),
            username: self.username.clone(),
            password: self.password.clone(),
            keyspace_events: self.keyspace_events.clone(),
            labels,
            probes: self.probes.clone(),
            tls_ca: self.tls_ca.clone(),
        }
    }
}
