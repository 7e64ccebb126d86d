//! The running sources of a discovered set of nodes (a Sentinel group's
//! master and replicas, a cluster's nodes): one sampler per node, a
//! keyspace reader on the nodes its owner says, both stopped when the node
//! leaves.
//!
//! The owner discovers and decides; this only starts and stops. A node's
//! keyspace losses are counted in one [`KeyspaceStats`] that lives as long
//! as the node is followed: its sampler reports them from the start, and a
//! reader started later on it (a replica promoted in a cluster) counts into
//! them, so `keyspace_events_lost` pages for a discovered node as for a
//! `[[target]]`.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TargetConfig};
use crate::event::Event;
use crate::event::keyspace::KeyspaceRule;
use crate::sources::keyspace::{KeyspaceSpec, KeyspaceStats, spawn_keyspace_source};
use crate::sources::sampler::{SamplerSpec, spawn_sampler};

struct Running {
    /// The sampler's; the keyspace reader's is a child of it.
    stop: CancellationToken,
    keyspace_stats: Option<Arc<KeyspaceStats>>,
    keyspace: Option<CancellationToken>,
}

pub struct NodeSet {
    config: Arc<Config>,
    keyspace_rules: Vec<KeyspaceRule>,
    /// Where the samplers and readers send.
    events: mpsc::Sender<Event>,
    /// The cluster the nodes belong to, if they do (see
    /// [`SamplerSpec::cluster`]).
    cluster: Option<String>,
    nodes: BTreeMap<String, Running>,
}

impl NodeSet {
    pub fn new(
        config: Arc<Config>,
        keyspace_rules: Vec<KeyspaceRule>,
        events: mpsc::Sender<Event>,
        cluster: Option<String>,
    ) -> Self {
        NodeSet {
            config,
            keyspace_rules,
            events,
            cluster,
            nodes: BTreeMap::new(),
        }
    }

    pub fn contains(&self, addr: &str) -> bool {
        self.nodes.contains_key(addr)
    }

    /// The followed nodes, by address.
    pub fn addrs(&self) -> impl Iterator<Item = &String> {
        self.nodes.keys()
    }

    /// Starts sampling the node at `addr` as `target`, unless it is
    /// followed already. A target whose sampler cannot be built is logged
    /// and followed anyway: its keyspace may still be read, and a later
    /// discovery must not try again every time.
    pub fn start(&mut self, addr: &str, target: &TargetConfig) {
        if self.nodes.contains_key(addr) {
            return;
        }
        let stop = CancellationToken::new();
        let keyspace_stats = KeyspaceSpec::from_config(&self.config, target, &self.keyspace_rules)
            .map(|_| Arc::<KeyspaceStats>::default());
        match SamplerSpec::from_config(&self.config, target) {
            Ok(mut spec) => {
                spec.keyspace_stats = keyspace_stats.clone();
                spec.cluster = self.cluster.clone();
                spawn_sampler(spec, self.events.clone(), stop.clone());
            }
            Err(e) => tracing::error!(target = %target.name, error = %e, "Cannot sample node"),
        }
        let running = Running {
            stop,
            keyspace_stats,
            keyspace: None,
        };
        self.nodes.insert(addr.to_owned(), running);
    }

    /// Reads keyspace notifications on a followed node, if a keyspace rule
    /// applies to `target`. True when a reader started (a new one counts
    /// from zero); false when one runs already or none is wanted.
    pub fn read_keyspace(&mut self, addr: &str, target: &TargetConfig) -> bool {
        let Some(running) = self.nodes.get_mut(addr) else {
            return false;
        };
        if running.keyspace.is_some() {
            return false;
        }
        let Some(mut spec) = KeyspaceSpec::from_config(&self.config, target, &self.keyspace_rules) else {
            return false;
        };
        if let Some(stats) = &running.keyspace_stats {
            spec.stats = stats.clone();
        }
        let stop = running.stop.child_token();
        spawn_keyspace_source(spec, self.events.clone(), stop.clone());
        running.keyspace = Some(stop);
        true
    }

    /// The nodes whose keyspace is read.
    pub fn keyspace_readers(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, r)| r.keyspace.is_some())
            .map(|(addr, _)| addr.clone())
            .collect()
    }

    /// Stops reading a node's keyspace; its sampler goes on.
    pub fn stop_keyspace(&mut self, addr: &str) {
        if let Some(stop) = self.nodes.get_mut(addr).and_then(|r| r.keyspace.take()) {
            stop.cancel();
        }
    }

    /// Stops everything of a node; true when it was followed.
    pub fn stop(&mut self, addr: &str) -> bool {
        match self.nodes.remove(addr) {
            Some(running) => {
                running.stop.cancel();
                true
            }
            None => false,
        }
    }

    pub fn stop_all(&mut self) {
        for (_, running) in std::mem::take(&mut self.nodes) {
            running.stop.cancel();
        }
    }
}

impl Drop for NodeSet {
    fn drop(&mut self) {
        self.stop_all();
    }
}
