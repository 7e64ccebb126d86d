//! `[[sentinel]]`: a Sentinel group whose master and replicas redops
//! discovers through the Sentinels, samples, and follows across failovers.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secrets::Secret;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelGroupConfig {
    /// The group's name: the target of group-wide alerts and a label on
    /// every node's samples.
    pub name: String,
    /// The master name the Sentinels monitor.
    pub master: String,
    /// `host:port` of each Sentinel.
    pub sentinels: Vec<String>,
    /// Password of the data nodes (master and replicas).
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub username: Option<String>,
    /// Password of the Sentinels themselves, when they require one.
    #[serde(default)]
    pub sentinel_password: Option<Secret>,
    /// Database the nodes are sampled and watched in.
    #[serde(default)]
    pub db: u32,
    /// Keyspace notification flags redops ensures on every node.
    #[serde(default)]
    pub keyspace_events: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub probes: BTreeMap<String, String>,
}

impl SentinelGroupConfig {
    /// The target name of one node of the group: `<group>/<host>:<port>`.
    /// Naming nodes by address keeps an alert on the node it is about when
    /// roles move in a failover.
    pub fn node_target(&self, addr: &str) -> String {
        crate::event::sentinel::node_target(&self.name, addr)
    }

    /// One node of the group as a target: its name, its URL in the group's
    /// database, the group's credentials, keyspace flags and probes, and
    /// the labels `group` and `addr` beside the group's own. Everything that
    /// connects to a node (sampling, playbooks, backups, the HA lease,
    /// `redops status`) starts from this.
    pub fn node_config(&self, addr: &str) -> super::TargetConfig {
        let mut labels = self.labels.clone();
        labels.insert("group".into(), self.name.clone());
        labels.insert("addr".into(), addr.to_owned());
        super::TargetConfig {
            name: self.node_target(addr),
            url: format!("redis://{addr}/{}", self.db),
            username: self.username.clone(),
            password: self.password.clone(),
            keyspace_events: self.keyspace_events.clone(),
            labels,
            probes: self.probes.clone(),
            tls_ca: None,
        }
    }
}
