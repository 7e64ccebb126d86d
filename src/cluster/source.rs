//! The cluster source: discovers a `[[cluster]]` every sample interval,
//! samples each node as a target of its own (`<cluster>/<host:port>`,
//! labelled with its shard, role and slots), samples the cluster itself
//! (target `<cluster>`), tells what changed between two discoveries
//! ([`super::events`]) and counts keyspace events on every master as one
//! count on the cluster.
//!
//! The nodes' samplers report through this task, which passes their events
//! on: a node whose connection fails or whose role changed makes it
//! discover again at once, so the labels follow a promoted replica without
//! waiting for the next tick. So does a `MOVED` anyone was answered
//! ([`crate::sources::redirects`]) for a slot the last view puts elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::events::Tracker;
use super::metrics::{NodeSample, cluster_metrics};
use super::{ClusterView, Discoverer};
use crate::config::{ClusterConfig, Config, TargetConfig};
use crate::event::keyspace::KeyspaceRule;
use crate::event::{Event, KeyspaceCounts, MetricValue, Sample, TargetChange};
use crate::sources::node_set::NodeSet;
use crate::sources::redirects::{self, Moved};

/// Rediscovering on news at most this often: a node going down is told by
/// its sampler once, but several nodes may tell at once, and a playbook
/// may be redirected many times before the cluster agrees on a new map.
const MIN_REDISCOVER_GAP: Duration = Duration::from_millis(200);

struct Node {
    labels: BTreeMap<String, String>,
    /// The last health its sampler told: a change to down is news.
    up: bool,
}

pub struct ClusterSource {
    cluster: ClusterConfig,
    events: mpsc::Sender<Event>,
    discoverer: Discoverer,
    tracker: Tracker,
    nodes: HashMap<String, Node>,
    /// Each node's sampler, and a keyspace reader on each master; they
    /// report through this task.
    running: NodeSet,
    samples: HashMap<String, NodeSample>,
    /// Last cumulative count per (master, rule), and the cluster's totals.
    keyspace_last: HashMap<(String, Arc<str>), u64>,
    keyspace_totals: BTreeMap<Arc<str>, u64>,
    last_discovery: Option<Instant>,
    /// When news asked to discover again before the next tick.
    rediscover_at: Option<Instant>,
    /// The last discovery's view: a `MOVED` that agrees with it is no news.
    view: Option<ClusterView>,
    discovery_failing: bool,
}

pub fn spawn_cluster_source(
    cluster: ClusterConfig,
    config: Arc<Config>,
    keyspace_rules: Vec<KeyspaceRule>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (node_tx, mut node_rx) = mpsc::channel(1024);
        let mut moved_rx = redirects::listen(&cluster.name);
        let interval = config.engine.sample_interval;
        let mut source = ClusterSource::new(cluster, config, keyspace_rules, events, node_tx);
        // The cluster's own alerts carry its name as a label, as its nodes'
        // do: `[[incident]] same = ["cluster"]` joins them.
        let mut labels = source.cluster.labels.clone();
        labels.insert("cluster".into(), source.cluster.name.clone());
        source
            .emit(Event::Target(TargetChange {
                target: source.cluster.name.clone(),
                labels,
                present: true,
            }))
            .await;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let rediscover_at = source.rediscover_at;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(rediscover_at.unwrap_or_else(Instant::now)), if rediscover_at.is_some() => {
                    source.refresh().await;
                }
                event = node_rx.recv() => {
                    let Some(event) = event else { break };
                    if source.on_node_event(event).await {
                        source.rediscover_soon();
                    }
                }
                Some(moved) = moved_rx.recv() => {
                    if source.is_news(&moved) {
                        tracing::info!(cluster = %source.cluster.name, slot = moved.slot, to = %moved.to, "Slot moved; discovering the cluster again");
                        source.rediscover_soon();
                    }
                }
                _ = ticker.tick() => source.refresh().await,
            }
        }
        source.stop_all();
    })
}

impl ClusterSource {
    fn new(
        cluster: ClusterConfig,
        config: Arc<Config>,
        keyspace_rules: Vec<KeyspaceRule>,
        events: mpsc::Sender<Event>,
        node_events: mpsc::Sender<Event>,
    ) -> Self {
        let timeout = config.engine.connect_timeout;
        ClusterSource {
            discoverer: Discoverer::new(cluster.clone(), timeout),
            running: NodeSet::new(config, keyspace_rules, node_events, Some(cluster.name.clone())),
            cluster,
            events,
            tracker: Tracker::default(),
            nodes: HashMap::new(),
            samples: HashMap::new(),
            keyspace_last: HashMap::new(),
            keyspace_totals: BTreeMap::new(),
            last_discovery: None,
            rediscover_at: None,
            view: None,
            discovery_failing: false,
        }
    }

    /// Discovers again now, or once [`MIN_REDISCOVER_GAP`] has passed since
    /// the last discovery.
    fn rediscover_soon(&mut self) {
        let at = self
            .last_discovery
            .map_or_else(Instant::now, |last| last + MIN_REDISCOVER_GAP);
        self.rediscover_at = Some(self.rediscover_at.map_or(at, |pending| pending.min(at)));
    }

    /// Whether a `MOVED` tells something the last view does not: the slot
    /// served by another node than the view's master of it.
    fn is_news(&self, moved: &Moved) -> bool {
        let Some(view) = &self.view else { return true };
        view.shard_of_slot(moved.slot).and_then(|s| s.master.as_deref()) != Some(moved.to.as_str())
    }

    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    /// Passes a node's event on (a master's keyspace counts as the
    /// cluster's sum); true when it says the topology may have changed.
    async fn on_node_event(&mut self, event: Event) -> bool {
        let addr = event
            .target()
            .strip_prefix(self.cluster.name.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or_default()
            .to_owned();
        let mut changed = false;
        match &event {
            Event::Sample(sample) => {
                let num = |name: &str| sample.metrics.get(name).and_then(MetricValue::as_f64);
                if num("redis_up") != Some(0.0) {
                    self.samples.insert(
                        addr.clone(),
                        NodeSample {
                            used_memory: num("used_memory"),
                            keys: num("total_keys"),
                        },
                    );
                }
                if let (Some(MetricValue::Text(role)), Some(node)) = (sample.metrics.get("role"), self.nodes.get(&addr))
                {
                    changed |= node.labels.get("role") != Some(role);
                }
            }
            Event::Health(health) => {
                if let Some(node) = self.nodes.get_mut(&addr) {
                    changed |= node.up && !health.up;
                    node.up = health.up;
                }
            }
            Event::KeyspaceCounts(counts) => {
                self.add_keyspace_counts(&addr, counts);
                let total = KeyspaceCounts {
                    target: self.cluster.name.clone(),
                    counts: self.keyspace_totals.iter().map(|(r, n)| (r.clone(), *n)).collect(),
                };
                self.emit(Event::KeyspaceCounts(total)).await;
                return false;
            }
            _ => {}
        }
        self.emit(event).await;
        changed
    }

    /// Adds what a master counted since its last report to the cluster's
    /// totals, which thereby never go down: a master's reader that starts
    /// over (after a failover, on the new master) counts from zero again.
    fn add_keyspace_counts(&mut self, addr: &str, counts: &KeyspaceCounts) {
        for (rule, cumulative) in &counts.counts {
            let last = self
                .keyspace_last
                .insert((addr.to_owned(), rule.clone()), *cumulative)
                .unwrap_or(0);
            let added = if *cumulative >= last {
                cumulative - last
            } else {
                *cumulative
            };
            *self.keyspace_totals.entry(rule.clone()).or_default() += added;
        }
    }

    /// Discovers the cluster, follows its nodes, tells what changed and
    /// samples the cluster.
    async fn refresh(&mut self) {
        self.last_discovery = Some(Instant::now());
        self.rediscover_at = None;
        let view = match self.discoverer.discover().await {
            Ok(view) => {
                if self.discovery_failing {
                    tracing::info!(cluster = %self.cluster.name, source = %view.source, "Cluster answers again");
                }
                self.discovery_failing = false;
                view
            }
            Err(e) => {
                // The nodes' samplers keep telling that each is down.
                if !self.discovery_failing {
                    tracing::warn!(cluster = %self.cluster.name, error = %e, "Cannot discover the cluster");
                }
                self.discovery_failing = true;
                return;
            }
        };
        let notices = self.tracker.update(&view);
        // Labels first: an alert on a failover carries the new master's
        // `role = "master"` and its shard.
        self.follow(&view).await;
        self.follow_keyspace(&view);
        for notice in notices {
            tracing::info!(cluster = %self.cluster.name, event = %notice.event, target = %notice.target, "Cluster event");
            self.emit(Event::Cluster(notice)).await;
        }
        let metrics = cluster_metrics(&view, &self.samples);
        self.emit(Event::Sample(Sample {
            target: self.cluster.name.clone(),
            at: SystemTime::now(),
            metrics,
        }))
        .await;
        self.view = Some(view);
    }

    /// A node's target: the cluster's node config plus the labels discovery
    /// gives it.
    fn node_config(&self, view: &ClusterView, addr: &str) -> TargetConfig {
        let mut target = self.cluster.node_config(addr);
        let Some(node) = view.node(addr) else { return target };
        target.labels.insert("role".into(), node.role.as_str().into());
        if let Some(shard) = super::events::shard_of(view, node) {
            target.labels.insert("shard".into(), shard.clone());
            target.labels.insert("slots".into(), shard);
        }
        target
    }

    /// Starts sampling nodes that appeared, relabels those whose role or
    /// shard changed, stops those that left.
    async fn follow(&mut self, view: &ClusterView) {
        let wanted: Vec<String> = view
            .nodes
            .iter()
            .filter(|n| !n.addr.is_empty() && !n.flags.iter().any(|f| f == "handshake"))
            .map(|n| n.addr.clone())
            .collect();
        for addr in &wanted {
            let target = self.node_config(view, addr);
            if let Some(node) = self.nodes.get_mut(addr) {
                if node.labels != target.labels {
                    tracing::info!(cluster = %self.cluster.name, node = %addr, role = ?target.labels.get("role"), "Node relabelled");
                    node.labels = target.labels.clone();
                    let change = TargetChange {
                        target: target.name.clone(),
                        labels: target.labels,
                        present: true,
                    };
                    self.emit(Event::Target(change)).await;
                }
                continue;
            }
            self.running.start(addr, &target);
            tracing::info!(cluster = %self.cluster.name, node = %addr, "Following node");
            self.emit(Event::Target(TargetChange {
                target: target.name.clone(),
                labels: target.labels.clone(),
                present: true,
            }))
            .await;
            let node = Node {
                labels: target.labels,
                up: true,
            };
            self.nodes.insert(addr.clone(), node);
        }
        let gone: Vec<String> = self.nodes.keys().filter(|a| !wanted.contains(a)).cloned().collect();
        for addr in gone {
            self.nodes.remove(&addr);
            self.running.stop(&addr);
            self.samples.remove(&addr);
            tracing::info!(cluster = %self.cluster.name, node = %addr, "Node left the cluster");
            self.emit(Event::Target(TargetChange {
                target: self.cluster.node_target(&addr),
                labels: BTreeMap::new(),
                present: false,
            }))
            .await;
        }
    }

    /// Reads keyspace notifications on every master that serves slots, and
    /// only there: they are node-local, and a replica's would count twice.
    fn follow_keyspace(&mut self, view: &ClusterView) {
        let masters: Vec<String> = view.masters().into_iter().map(str::to_owned).collect();
        for addr in self.running.keyspace_readers() {
            if !masters.contains(&addr) {
                self.running.stop_keyspace(&addr);
            }
        }
        for addr in masters {
            let target = self.node_config(view, &addr);
            if self.running.read_keyspace(&addr, &target) {
                // A new reader counts from zero.
                self.keyspace_last.retain(|(a, _), _| *a != addr);
                tracing::info!(cluster = %self.cluster.name, node = %addr, "Reading keyspace events on master");
            }
        }
    }

    fn stop_all(&mut self) {
        self.nodes.clear();
        self.running.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::{Diagnostics, SourceFile};

    fn source() -> ClusterSource {
        let text = "[[cluster]]\nname = \"prod\"\nseeds = [\"127.0.0.1:1\"]\n";
        let file = SourceFile::new("redops.toml", text);
        let mut diags = Diagnostics::default();
        let config = Config::parse(&file, &mut diags).expect("config");
        let cluster = config.clusters[0].clone();
        let (tx, _) = mpsc::channel(64);
        let (node_tx, _) = mpsc::channel(64);
        ClusterSource::new(cluster, Arc::new(config), Vec::new(), tx, node_tx)
    }

    fn counts(n: u64) -> KeyspaceCounts {
        KeyspaceCounts {
            target: String::new(),
            counts: vec![("sets".into(), n)],
        }
    }

    #[test]
    fn keyspace_counts_add_up_across_masters_and_survive_a_reader_starting_over() {
        let mut s = source();
        s.add_keyspace_counts("a:1", &counts(10));
        s.add_keyspace_counts("b:1", &counts(5));
        s.add_keyspace_counts("a:1", &counts(12));
        assert_eq!(s.keyspace_totals["sets"], 17);
        // b's reader started over after a failover: 3 new events.
        s.add_keyspace_counts("b:1", &counts(3));
        assert_eq!(s.keyspace_totals["sets"], 20);
    }
}
