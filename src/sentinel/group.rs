//! The Sentinel group source: listens to every Sentinel of a group, turns
//! their events into one notice per incident, discovers the master and
//! replicas, samples each node as a target of its own (`group/host:port`),
//! and samples the group itself (quorum, reachable Sentinels, split brain).
//!
//! After a lost Sentinel connection it reconciles: if the master changed
//! while nobody was listening, it emits the `+switch-master` itself, marked
//! as reconciled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::discovery::{Discoverer, GroupView, sentinel_connection_info};
use crate::config::{Config, SentinelGroupConfig, TargetConfig};
use crate::event::keyspace::KeyspaceRule;
use crate::event::sentinel::{self as events, SentinelEvent, parse_addr};
use crate::event::{Event, MetricValue, Metrics, Sample, SentinelNotice, TargetChange};
use crate::redis::connect;
use crate::sources::node_set::NodeSet;

/// Copies of one incident from several Sentinels arrive within milliseconds;
/// anything with the same key inside this window is the same incident.
const DEDUP_WINDOW: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a Sentinel subscriber tells the group task.
enum Heard {
    Event {
        sentinel: String,
        event: SentinelEvent,
    },
    /// Subscribed; `again` after a lost connection, when events may have
    /// been missed.
    Subscribed {
        sentinel: String,
        again: bool,
    },
}

struct Told {
    at: Instant,
    by: Vec<String>,
}

pub struct GroupSource {
    group: SentinelGroupConfig,
    config: Arc<Config>,
    events: mpsc::Sender<Event>,
    discoverer: Discoverer,
    /// Each node's sampler and keyspace reader.
    nodes: NodeSet,
    node_conns: HashMap<String, MultiplexedConnection>,
    known_master: Option<String>,
    /// Incidents told within [`DEDUP_WINDOW`]: when first told, and by
    /// which Sentinels.
    seen: HashMap<String, Told>,
    /// Copies of an incident dropped because another Sentinel told it first.
    pub duplicates: u64,
    /// Events that did not parse, kept raw and passed on.
    pub raw: u64,
}

pub fn spawn_sentinel_group(
    group: SentinelGroupConfig,
    config: Arc<Config>,
    keyspace_rules: Vec<KeyspaceRule>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (heard_tx, mut heard_rx) = mpsc::channel(1024);
        for addr in &group.sentinels {
            if let Some(info) = sentinel_connection_info(&group, addr) {
                tokio::spawn(subscribe(addr.clone(), info, heard_tx.clone(), shutdown.clone()));
            }
        }
        drop(heard_tx);
        let interval = config.engine.sample_interval;
        let mut source = GroupSource::new(group, config, keyspace_rules, events);
        // The group's own alerts (failovers, quorum) carry its name as a
        // label, as its nodes' do: `[[incident]] same = ["group"]` joins them.
        let mut labels = source.group.labels.clone();
        labels.insert("group".into(), source.group.name.clone());
        source
            .emit(Event::Target(TargetChange {
                target: source.group.name.clone(),
                labels,
                present: true,
            }))
            .await;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                heard = heard_rx.recv() => match heard {
                    Some(Heard::Event { sentinel, event }) => {
                        if source.on_event(&sentinel, event, false).await {
                            // Follow the new master now, not at the next sample.
                            source.refresh().await;
                        }
                    }
                    Some(Heard::Subscribed { sentinel, again }) => {
                        if again {
                            tracing::info!(group = %source.group.name, sentinel, "Reconnected to Sentinel; reconciling");
                            source.refresh().await;
                        }
                    }
                    None => break,
                },
                _ = ticker.tick() => source.refresh().await,
            }
        }
        source.stop_nodes();
    })
}

impl GroupSource {
    fn new(
        group: SentinelGroupConfig,
        config: Arc<Config>,
        keyspace_rules: Vec<KeyspaceRule>,
        events: mpsc::Sender<Event>,
    ) -> Self {
        let timeout = config.engine.connect_timeout;
        GroupSource {
            discoverer: Discoverer::new(group.clone(), timeout),
            nodes: NodeSet::new(config.clone(), keyspace_rules, events.clone(), None),
            group,
            config,
            events,
            node_conns: HashMap::new(),
            known_master: None,
            seen: HashMap::new(),
            duplicates: 0,
            raw: 0,
        }
    }

    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    /// One event from one Sentinel: dropped if another Sentinel already
    /// told it, otherwise passed on. True when the master switched.
    async fn on_event(&mut self, sentinel: &str, event: SentinelEvent, reconciled: bool) -> bool {
        if self.is_duplicate(sentinel, &event) {
            self.duplicates += 1;
            tracing::debug!(group = %self.group.name, sentinel, event = event.name(), "Duplicate Sentinel event dropped");
            return false;
        }
        if let SentinelEvent::Raw { reason, .. } = &event {
            self.raw += 1;
            tracing::warn!(group = %self.group.name, sentinel, reason = %reason, "Unparsed Sentinel event kept raw");
        }
        let fields = event.fields();
        let switched_to = (event.name() == "+switch-master")
            .then(|| Some(format!("{}:{}", fields.get("new_ip")?, fields.get("new_port")?)))
            .flatten();
        let target = event.target_in(&self.group.name);
        tracing::info!(group = %self.group.name, sentinel, event = event.name(), reconciled, "Sentinel event");
        self.emit(Event::Sentinel(SentinelNotice {
            target,
            group: self.group.name.clone(),
            event,
            sentinel: sentinel.to_owned(),
            reconciled,
        }))
        .await;
        match switched_to {
            Some(new_master) => {
                self.known_master = Some(new_master);
                true
            }
            None => false,
        }
    }

    /// Whether another Sentinel already told this incident.
    ///
    /// A `+switch-master` is a copy when redops already follows the master
    /// it names: a failover back to an earlier master, however soon, is
    /// news. Other events are copies when another Sentinel told the same key
    /// within [`DEDUP_WINDOW`]. A Sentinel never tells one incident twice,
    /// so the same key from a Sentinel that already told it is a new
    /// incident (the same master failing over again a few seconds later).
    /// Its opposite (`-odown` after `+odown`) ends the incident: another
    /// Sentinel's `+odown` after that is news, not a copy of the first.
    fn is_duplicate(&mut self, sentinel: &str, event: &SentinelEvent) -> bool {
        if let SentinelEvent::SwitchMaster { new, .. } = event {
            return self.known_master.as_deref() == Some(format!("{}:{}", new.host, new.port).as_str());
        }
        let now = Instant::now();
        self.seen.retain(|_, told| now.duration_since(told.at) < DEDUP_WINDOW);
        let Some(key) = event.dedup_key() else {
            return false;
        };
        match self.seen.get_mut(&key) {
            Some(told) if !told.by.iter().any(|s| s == sentinel) => {
                told.by.push(sentinel.to_owned());
                true
            }
            _ => {
                if let Some(opposite) = opposite(&key) {
                    self.seen.remove(&opposite);
                }
                let by = vec![sentinel.to_owned()];
                self.seen.insert(key, Told { at: now, by });
                false
            }
        }
    }

    /// Discovers the group, reconciles a missed failover, follows the nodes
    /// and samples the group.
    async fn refresh(&mut self) {
        let view = self.discoverer.discover().await;
        if view.sentinels_reachable() == 0 {
            tracing::warn!(group = %self.group.name, "No Sentinel of the group answers");
        }
        // While a failover spreads, a Sentinel that has not heard of it yet
        // must not undo the switch just received: reconcile only with what
        // every reachable Sentinel says.
        if let Some(master) = view.master.clone().filter(|_| view.sentinels_agree()) {
            match self.known_master.clone() {
                Some(known) if known != master => self.reconcile(&known, &master).await,
                None => self.known_master = Some(master),
                _ => {}
            }
        }
        self.follow(&view).await;
        let metrics = self.group_metrics(&view).await;
        self.emit(Event::Sample(Sample {
            target: self.group.name.clone(),
            at: SystemTime::now(),
            metrics,
        }))
        .await;
    }

    /// The master moved while no `+switch-master` reached us: say so.
    async fn reconcile(&mut self, old: &str, new: &str) {
        let (Some((old_ip, old_port)), Some((new_ip, new_port))) = (parse_addr(old), parse_addr(new)) else {
            return;
        };
        let payload = format!("{} {old_ip} {old_port} {new_ip} {new_port}", self.group.master);
        let event = events::parse(b"+switch-master", payload.as_bytes());
        tracing::warn!(group = %self.group.name, old, new, "Master changed while redops was not listening; emitting the failover");
        // Already refreshing: the caller follows the new master with this view.
        self.on_event("reconcile", event, true).await;
        self.known_master = Some(new.to_owned());
    }

    /// Starts sampling nodes that appeared and stops those that left.
    async fn follow(&mut self, view: &GroupView) {
        if view.sentinels_reachable() == 0 {
            return; // No news is not a reason to drop every node.
        }
        let wanted = view.nodes();
        for (addr, _) in &wanted {
            if self.nodes.contains(addr) {
                continue;
            }
            let target = self.node_config(addr);
            // Keyspace notifications are node-local: every node's are read,
            // so counting goes on wherever the master moves.
            self.nodes.start(addr, &target);
            self.nodes.read_keyspace(addr, &target);
            tracing::info!(group = %self.group.name, node = %addr, "Following node");
            self.emit(Event::Target(TargetChange {
                target: target.name.clone(),
                labels: target.labels.clone(),
                present: true,
            }))
            .await;
        }
        let gone: Vec<String> = self
            .nodes
            .addrs()
            .filter(|a| !wanted.iter().any(|(w, _)| w == *a))
            .cloned()
            .collect();
        for addr in gone {
            self.nodes.stop(&addr);
            self.node_conns.remove(&addr);
            tracing::info!(group = %self.group.name, node = %addr, "Node left the group");
            self.emit(Event::Target(TargetChange {
                target: self.group.node_target(&addr),
                labels: BTreeMap::new(),
                present: false,
            }))
            .await;
        }
    }

    fn node_config(&self, addr: &str) -> TargetConfig {
        self.group.node_config(addr)
    }

    async fn group_metrics(&mut self, view: &GroupView) -> Metrics {
        let num = |v: f64| MetricValue::Num(v);
        let mut m = Metrics::new();
        m.insert("sentinels_configured".into(), num(view.sentinels.len() as f64));
        m.insert("sentinels_reachable".into(), num(view.sentinels_reachable() as f64));
        m.insert(
            "sentinels_agree".into(),
            num(f64::from(u8::from(view.sentinels_agree()))),
        );
        m.insert("quorum_ok".into(), num(f64::from(u8::from(view.quorum_ok))));
        m.insert("replicas".into(), num(view.replicas.len() as f64));
        m.insert(
            "replicas_up".into(),
            num(view.replicas.iter().filter(|r| r.is_up()).count() as f64),
        );
        m.insert(
            "replicas_link_down".into(),
            num(view.replicas.iter().filter(|r| r.is_up() && !r.link_ok).count() as f64),
        );
        if let Some(epoch) = view.config_epoch {
            m.insert("config_epoch".into(), num(epoch as f64));
        }
        if let Some(master) = &view.master {
            m.insert("master".into(), MetricValue::Text(master.clone()));
        }
        let mut masters_seen = 0;
        let mut master_offset = None;
        for (addr, _) in view.nodes() {
            let Some(info) = self.role(&addr).await else { continue };
            if info.0 == "master" {
                masters_seen += 1;
                if Some(&addr) == view.master.as_ref() {
                    master_offset = info.1;
                }
            }
        }
        m.insert("masters_seen".into(), num(masters_seen as f64));
        m.insert("sentinel_events_raw_total".into(), num(self.raw as f64));
        m.insert("sentinel_events_duplicate_total".into(), num(self.duplicates as f64));
        if let Some(offset) = master_offset {
            let lag = view
                .replicas
                .iter()
                .filter(|r| r.is_up())
                .filter_map(|r| r.repl_offset)
                .map(|o| offset.saturating_sub(o))
                .max()
                .unwrap_or(0);
            m.insert("max_replication_lag_bytes".into(), num(lag as f64));
        }
        m
    }

    /// `ROLE` of a node: its role and, for a master, its replication offset.
    async fn role(&mut self, addr: &str) -> Option<(String, Option<u64>)> {
        if !self.node_conns.contains_key(addr) {
            let info = self.node_config(addr).connection_info().ok()?;
            let timeout = self.config.engine.connect_timeout;
            let conn = connect::connect_async(&info, timeout, timeout).await.ok()?;
            self.node_conns.insert(addr.to_owned(), conn);
        }
        let conn = self.node_conns.get_mut(addr)?;
        match redis::cmd("ROLE").query_async::<redis::Value>(conn).await {
            Ok(redis::Value::Array(items)) => {
                let role = match items.first() {
                    Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(redis::Value::SimpleString(s)) => s.clone(),
                    _ => return None,
                };
                let offset = match items.get(1) {
                    Some(redis::Value::Int(o)) if role == "master" => u64::try_from(*o).ok(),
                    _ => None,
                };
                Some((role, offset))
            }
            _ => {
                self.node_conns.remove(addr);
                None
            }
        }
    }

    fn stop_nodes(&mut self) {
        self.nodes.stop_all();
    }
}

/// The key of the event with the other sign: `-odown …` for `+odown …`.
fn opposite(key: &str) -> Option<String> {
    let (sign, rest) = key.split_at_checked(1)?;
    let flipped = match sign {
        "+" => '-',
        "-" => '+',
        _ => return None,
    };
    Some(format!("{flipped}{rest}"))
}

/// Listens to one Sentinel, reconnecting with backoff.
async fn subscribe(addr: String, info: redis::ConnectionInfo, heard: mpsc::Sender<Heard>, shutdown: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    let mut subscribed_before = false;
    loop {
        let attempt = async {
            let client = redis::Client::open(info.clone())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe("*").await?;
            redis::RedisResult::Ok(pubsub)
        };
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(5), attempt) => r,
        };
        match result {
            Ok(Ok(pubsub)) => {
                backoff = FIRST_BACKOFF;
                let again = subscribed_before;
                subscribed_before = true;
                if heard
                    .send(Heard::Subscribed {
                        sentinel: addr.clone(),
                        again,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let mut stream = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        msg = stream.next() => match msg {
                            Some(msg) => {
                                let event = events::parse(msg.get_channel_name().as_bytes(), msg.get_payload_bytes());
                                if heard.send(Heard::Event { sentinel: addr.clone(), event }).await.is_err() {
                                    return;
                                }
                            }
                            None => {
                                tracing::warn!(sentinel = %addr, "Sentinel connection lost; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(sentinel = %addr, error = %crate::secrets::redact(&e.to_string()), "Cannot subscribe to Sentinel")
            }
            Err(_) => tracing::debug!(sentinel = %addr, "Subscribing to Sentinel timed out"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::{Diagnostics, SourceFile};

    fn source() -> (GroupSource, mpsc::Receiver<Event>) {
        let text = "[[sentinel]]\nname = \"lab\"\nmaster = \"mymaster\"\nsentinels = [\"127.0.0.1:1\"]\n";
        let file = SourceFile::new("redops.toml", text);
        let mut diags = Diagnostics::default();
        let config = Config::parse(&file, &mut diags).expect("config");
        let group = config.sentinels[0].clone();
        let (tx, rx) = mpsc::channel(64);
        (GroupSource::new(group, Arc::new(config), Vec::new(), tx), rx)
    }

    fn switch(from: u16, to: u16) -> SentinelEvent {
        let payload = format!("mymaster 127.0.0.1 {from} 127.0.0.1 {to}");
        events::parse(b"+switch-master", payload.as_bytes())
    }

    fn switches(rx: &mut mpsc::Receiver<Event>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(event) = rx.try_recv() {
            if let Event::Sentinel(n) = event {
                out.push(format!("{} {}", n.sentinel, n.event.fields()["new_port"]));
            }
        }
        out
    }

    #[tokio::test]
    async fn each_sentinels_copy_of_a_failover_merges_but_a_failover_back_is_news() {
        let (mut source, mut rx) = source();
        source.known_master = Some("127.0.0.1:6379".into());
        for s in ["s1", "s2", "s3"] {
            source.on_event(s, switch(6379, 6380), false).await;
        }
        // Seconds later the master fails back, then over again.
        for s in ["s2", "s1", "s3"] {
            source.on_event(s, switch(6380, 6379), false).await;
        }
        for s in ["s3", "s1"] {
            source.on_event(s, switch(6379, 6380), false).await;
        }
        assert_eq!(switches(&mut rx), ["s1 6380", "s2 6379", "s3 6380"]);
        assert_eq!(source.duplicates, 5);
    }

    #[tokio::test]
    async fn other_copies_merge_within_the_window() {
        let (mut source, mut rx) = source();
        let odown = |quorum: u32| {
            let payload = format!("master mymaster 127.0.0.1 6379 #quorum {quorum}/2");
            events::parse(b"+odown", payload.as_bytes())
        };
        source.on_event("s1", odown(2), false).await;
        source.on_event("s2", odown(3), false).await;
        // s1 telling it again is the master going down again: news, and
        // the other Sentinels' copies of that merge in turn.
        source.on_event("s1", odown(2), false).await;
        source.on_event("s3", odown(2), false).await;
        source.on_event("s2", odown(2), false).await;
        source
            .on_event("s1", events::parse(b"+tilt", b"#tilt mode entered"), false)
            .await;
        source
            .on_event("s2", events::parse(b"+tilt", b"#tilt mode entered"), false)
            .await;
        let mut told = Vec::new();
        while let Ok(Event::Sentinel(n)) = rx.try_recv() {
            told.push(format!("{} {}", n.sentinel, n.event.name()));
        }
        assert_eq!(told, ["s1 +odown", "s1 +odown", "s1 +tilt", "s2 +tilt"]);
        assert_eq!(source.duplicates, 3);
    }

    #[tokio::test]
    async fn an_incident_ended_by_one_sentinel_is_news_when_another_tells_it_again() {
        let (mut source, mut rx) = source();
        let odown = |entered: bool| {
            let (name, payload): (&[u8], &str) = if entered {
                (b"+odown", "master mymaster 127.0.0.1 6379 #quorum 2/2")
            } else {
                (b"-odown", "master mymaster 127.0.0.1 6379")
            };
            events::parse(name, payload.as_bytes())
        };
        // s1 sees the master down for a moment; then s2 sees it down for good.
        source.on_event("s1", odown(true), false).await;
        source.on_event("s1", odown(false), false).await;
        source.on_event("s2", odown(true), false).await;
        source.on_event("s3", odown(true), false).await;
        // It comes back: the first Sentinel to say so is news, the rest copies.
        source.on_event("s2", odown(false), false).await;
        source.on_event("s3", odown(false), false).await;
        let mut told = Vec::new();
        while let Ok(Event::Sentinel(n)) = rx.try_recv() {
            told.push(format!("{} {}", n.sentinel, n.event.name()));
        }
        assert_eq!(told, ["s1 +odown", "s1 -odown", "s2 +odown", "s2 -odown"]);
        assert_eq!(source.duplicates, 2);
    }
}
