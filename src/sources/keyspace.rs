//! The keyspace source: pattern-subscribes to a target's keyevent channels
//! and counts, per keyspace rule, the events that match it.
//!
//! This is the hot path, split in two so that neither waits on the other:
//! - the *reader* is redis-rs's connection task. Each keyevent reaches it as
//!   a RESP3 push, which it hands to a bounded queue and never waits: when
//!   the queue is full the event is dropped and counted in
//!   `events_lost_total`. Nothing queues unboundedly in between, so a reader
//!   that falls behind is bounded by Redis's `client-output-buffer-limit
//!   pubsub` and, when Redis drops it, the disconnect is counted in
//!   `keyspace_disconnects_total` and the subscription is made again.
//! - the *counter* (this task) matches each event against every rule in one
//!   pass ([`SelectorSet`]) and bumps their counters. Rules see cumulative
//!   counts, soon after they change (at most once a `keyspace_tick`) and at
//!   least once a second, never per event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use redis::aio::{AsyncPushSender, SendError};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TargetConfig};
use crate::event::keyspace::{KeyspaceRule, KeyspaceSelector, SelectorSet};
use crate::event::{Event, KeyspaceCounts};
use crate::redis::connect;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Counts go out at least this often, changed or not: windows must slide
/// down (and alerts clear) while nothing happens.
const KEEPALIVE: Duration = Duration::from_secs(1);
/// Events between the reader and the counter. At 200k events/s this is
/// ~160 ms of slack for a counter that loses its core; each queued event
/// holds its channel name and key (~100 bytes).
const QUEUE: usize = 32_768;
/// Events counted between two looks at the clock, so that counts go out on
/// time during a storm.
const BATCH: usize = 256;

#[derive(Clone)]
pub struct KeyspaceSpec {
    pub target: String,
    pub connection: redis::ConnectionInfo,
    /// `notify-keyspace-events` flags to ensure, if the config asks.
    pub flags: Option<String>,
    pub selectors: Vec<(String, KeyspaceSelector)>,
    pub tick: Duration,
    pub connect_timeout: Duration,
    /// Shared with the target's sampler, which reports them as metrics.
    pub stats: Arc<KeyspaceStats>,
}

impl KeyspaceSpec {
    /// The spec for a target, or `None` when nothing needs its events.
    pub fn from_config(config: &Config, target: &TargetConfig, rules: &[KeyspaceRule]) -> Option<Self> {
        let selectors: Vec<_> = rules
            .iter()
            .filter(|r| r.applies_to(&target.name))
            .map(|r| (r.rule.clone(), r.selector.clone()))
            .collect();
        if selectors.is_empty() {
            return None;
        }
        Some(KeyspaceSpec {
            target: target.name.clone(),
            connection: target.connection_info().ok()?,
            flags: target.keyspace_events.clone(),
            selectors,
            tick: config.engine.keyspace_tick,
            connect_timeout: config.engine.connect_timeout,
            stats: Arc::default(),
        })
    }
}

/// What a target's keyspace subscription lost, for the sampler to report.
/// It keeps when the last loss happened too, so that a rule can say "lost
/// in the last 10 minutes" without a look-back function: one of those would
/// make the evaluator keep a history of every metric of every target.
#[derive(Debug)]
pub struct KeyspaceStats {
    since: std::time::Instant,
    events_lost: AtomicU64,
    disconnects: AtomicU64,
    /// Milliseconds after `since` of the last loss, plus one; 0 is never.
    last_loss_ms: AtomicU64,
    last_disconnect_ms: AtomicU64,
}

impl Default for KeyspaceStats {
    fn default() -> Self {
        KeyspaceStats {
            since: std::time::Instant::now(),
            events_lost: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            last_loss_ms: AtomicU64::new(0),
            last_disconnect_ms: AtomicU64::new(0),
        }
    }
}

impl KeyspaceStats {
    fn record_lost(&self) {
        self.events_lost.fetch_add(1, Relaxed);
        self.last_loss_ms.store(self.now_ms(), Relaxed);
    }

    /// The disconnects so far, this one included.
    fn record_disconnect(&self) -> u64 {
        self.last_disconnect_ms.store(self.now_ms(), Relaxed);
        self.disconnects.fetch_add(1, Relaxed) + 1
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn seconds_since(&self, last_ms: &AtomicU64) -> Option<f64> {
        let last = last_ms.load(Relaxed);
        (last > 0).then(|| self.now_ms().saturating_sub(last) as f64 / 1000.0)
    }

    /// `(metric name, value)` pairs, as they appear in the target's samples.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        let [lost, disconnects, since_lost, since_disconnect] = crate::event::metric_names::KEYSPACE_STAT_METRICS;
        let mut metrics = vec![
            (lost, self.events_lost.load(Relaxed) as f64),
            (disconnects, self.disconnects.load(Relaxed) as f64),
        ];
        metrics.extend(self.seconds_since(&self.last_loss_ms).map(|s| (since_lost, s)));
        metrics.extend(
            self.seconds_since(&self.last_disconnect_ms)
                .map(|s| (since_disconnect, s)),
        );
        metrics
    }
}

/// Matches keyevent messages to rules and counts them.
pub struct KeyspaceCounter {
    names: Vec<String>,
    matcher: SelectorSet,
    patterns: Vec<String>,
    counts: Vec<u64>,
    /// Whether a count moved since the last snapshot.
    changed: bool,
    /// Messages whose channel was not a keyevent channel.
    pub malformed: u64,
}

impl KeyspaceCounter {
    pub fn new(selectors: Vec<(String, KeyspaceSelector)>) -> Self {
        let matcher = SelectorSet::new(selectors.iter().map(|(_, s)| s));
        let patterns = if selectors.iter().any(|(_, s)| s.events.is_empty()) {
            vec!["__keyevent@*__:*".to_owned()]
        } else {
            let events: BTreeSet<&String> = selectors.iter().flat_map(|(_, s)| &s.events).collect();
            events.into_iter().map(|e| format!("__keyevent@*__:{e}")).collect()
        };
        KeyspaceCounter {
            counts: vec![0; selectors.len()],
            names: selectors.into_iter().map(|(name, _)| name).collect(),
            matcher,
            patterns,
            changed: false,
            malformed: 0,
        }
    }

    /// The channel patterns to subscribe to: one per event named by a rule,
    /// or every event when a rule takes them all.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Counts one message: `channel` is `__keyevent@<db>__:<event>`, the
    /// payload is the key.
    pub fn observe(&mut self, channel: &[u8], key: &[u8]) {
        let Some((db, event)) = parse_keyevent_channel(channel) else {
            self.malformed += 1;
            return;
        };
        let Ok(event) = std::str::from_utf8(event) else {
            self.malformed += 1;
            return;
        };
        let counts = &mut self.counts;
        let changed = &mut self.changed;
        self.matcher.for_each_match(db, event, key, |i| {
            counts[i] += 1;
            *changed = true;
        });
    }

    /// Whether a count moved since the last snapshot.
    pub fn changed(&self) -> bool {
        self.changed
    }

    pub fn snapshot(&self, target: &str) -> KeyspaceCounts {
        KeyspaceCounts {
            target: target.to_owned(),
            counts: self.names.iter().cloned().zip(self.counts.iter().copied()).collect(),
        }
    }
}

/// `__keyevent@3__:expired` → `(3, "expired")`.
pub fn parse_keyevent_channel(channel: &[u8]) -> Option<(u32, &[u8])> {
    let rest = channel.strip_prefix(b"__keyevent@")?;
    let end = rest.iter().position(|&b| b == b'_')?;
    let db = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let event = rest[end..].strip_prefix(b"__:")?;
    Some((db, event))
}

/// Merges the flags redops needs into the server's current ones.
fn merged_flags(current: &str, wanted: &str) -> Option<String> {
    // `A` is an alias for "g$lshzxetd"; compare on expanded sets.
    let expand = |s: &str| -> BTreeSet<char> {
        s.chars()
            .flat_map(|c| {
                if c == 'A' {
                    "g$lshzxetd".chars().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect()
    };
    let have = expand(current);
    let want = expand(wanted);
    if want.is_subset(&have) {
        return None;
    }
    Some(have.union(&want).collect())
}

async fn ensure_flags(spec: &KeyspaceSpec, flags: &str) {
    let result: redis::RedisResult<Option<String>> = async {
        let mut conn = connect::connect_async(&spec.connection, spec.connect_timeout, spec.connect_timeout).await?;
        let current: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(&mut conn)
            .await?;
        let current = current.get(1).cloned().unwrap_or_default();
        let Some(merged) = merged_flags(&current, flags) else {
            return Ok(None);
        };
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg(&merged)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(Some(merged))
    }
    .await;
    match result {
        Ok(Some(merged)) => tracing::info!(target = %spec.target, flags = %merged, "Keyspace notification flags set"),
        Ok(None) => tracing::debug!(target = %spec.target, "Keyspace notification flags already set"),
        Err(e) => tracing::warn!(
            target = %spec.target,
            wanted = flags,
            error = %crate::secrets::redact(&e.to_string()),
            "Cannot set notify-keyspace-events: add the wanted flags to the server's notify-keyspace-events (or allow CONFIG for redops); until then keyspace rules only see events the server already publishes"
        ),
    }
}

/// A keyevent as the reader hands it to the counter.
struct KeyEvent {
    channel: Vec<u8>,
    key: Vec<u8>,
}

impl KeyEvent {
    /// A `pmessage` push is `[pattern, channel, payload]`.
    fn from_pmessage(data: Vec<Value>) -> Option<Self> {
        let mut data = data.into_iter().skip(1);
        match (data.next(), data.next()) {
            (Some(Value::BulkString(channel)), Some(Value::BulkString(key))) => Some(KeyEvent { channel, key }),
            _ => None,
        }
    }
}

/// The reader's half. It runs inside redis-rs's connection task, so it
/// must never wait: it moves each event into the bounded queue or, when
/// the counter is that far behind, drops and counts it.
struct PushReader {
    queue: mpsc::Sender<KeyEvent>,
    stats: Arc<KeyspaceStats>,
    /// Told when the connection ends, whoever ended it.
    lost_connection: Arc<Notify>,
}

impl AsyncPushSender for PushReader {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::PMessage => {
                if let Some(event) = KeyEvent::from_pmessage(info.data)
                    && let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(event)
                {
                    self.stats.record_lost();
                }
            }
            PushKind::Disconnection => self.lost_connection.notify_one(),
            _ => {}
        }
        Ok(())
    }
}

/// Subscribes until `shutdown`, reconnecting with backoff. Counts survive
/// reconnects, so the evaluator's windows stay consistent.
pub fn spawn_keyspace_source(
    spec: KeyspaceSpec,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move { KeyspaceSource::new(spec, events).run(shutdown).await })
}

/// How a subscription ended.
enum Ended {
    /// Shutdown, or the engine stopped listening.
    Stopped,
    /// The connection dropped: Redis closed it (`CLIENT KILL`, the pubsub
    /// output buffer limit), or the network did.
    Lost,
}

struct KeyspaceSource {
    spec: KeyspaceSpec,
    counter: KeyspaceCounter,
    events: mpsc::Sender<Event>,
    queue_tx: mpsc::Sender<KeyEvent>,
    queue: mpsc::Receiver<KeyEvent>,
    last_emit: Instant,
    /// Events lost as of the last log line about them.
    lost_logged: u64,
}

impl KeyspaceSource {
    fn new(spec: KeyspaceSpec, events: mpsc::Sender<Event>) -> Self {
        let (queue_tx, queue) = mpsc::channel(QUEUE);
        KeyspaceSource {
            counter: KeyspaceCounter::new(spec.selectors.clone()),
            spec,
            events,
            queue_tx,
            queue,
            last_emit: Instant::now(),
            lost_logged: 0,
        }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        let mut connected_once = false;
        let mut failures = 0u32;
        loop {
            let lost = Arc::new(Notify::new());
            match self.subscribe(lost.clone()).await {
                Ok(connection) => {
                    backoff = FIRST_BACKOFF;
                    failures = 0;
                    tracing::info!(target = %self.spec.target, reconnect = connected_once, "Keyspace subscription active");
                    connected_once = true;
                    let ended = self.count_until_lost(&lost, &shutdown).await;
                    drop(connection);
                    match ended {
                        Ended::Stopped => return,
                        Ended::Lost => {
                            let n = self.spec.stats.record_disconnect();
                            tracing::warn!(target = %self.spec.target, keyspace_disconnects_total = n, "Keyspace subscription lost (closed by the server or the network): events published until it is back are not counted; subscribing again");
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    let error = crate::secrets::redact(&e.to_string());
                    let backoff_ms = backoff.as_millis() as u64;
                    if failures == 1 {
                        tracing::warn!(target = %self.spec.target, error = %error, backoff_ms, "Keyspace subscription failed (it needs Redis >= 6 for RESP3); retrying");
                    } else {
                        tracing::debug!(target = %self.spec.target, error = %error, backoff_ms, "Keyspace subscription failed");
                    }
                }
            }
            let until = Instant::now() + backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            if !self.wait_until(until, &shutdown).await {
                return;
            }
        }
    }

    /// A RESP3 connection whose pushes go to a fresh [`PushReader`],
    /// subscribed to the counter's patterns, with the flags ensured first
    /// (again on each reconnect: a restarted server forgot them).
    async fn subscribe(&self, lost: Arc<Notify>) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        if let Some(flags) = &self.spec.flags {
            ensure_flags(&self.spec, flags).await;
        }
        let info = &self.spec.connection;
        let resp3 = info.clone().set_redis_settings(
            info.redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3),
        );
        let reader = PushReader {
            queue: self.queue_tx.clone(),
            stats: self.spec.stats.clone(),
            lost_connection: lost,
        };
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.spec.connect_timeout))
            .set_response_timeout(Some(self.spec.connect_timeout))
            .set_push_sender(reader);
        let mut connection = redis::Client::open(resp3)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        connection.psubscribe(self.counter.patterns()).await?;
        Ok(connection)
    }

    /// Counts queued events in batches, emitting between batches when due,
    /// until the connection is lost or the engine stops.
    async fn count_until_lost(&mut self, lost: &Notify, shutdown: &CancellationToken) -> Ended {
        // Grows to `BATCH` on first use: an idle subscription allocates nothing.
        let mut batch = Vec::new();
        loop {
            let due = self.next_emit();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ended::Stopped,
                // Before the queue: during a storm counts still go out on time.
                _ = tokio::time::sleep_until(due) => {
                    if !self.emit() {
                        return Ended::Stopped;
                    }
                }
                _ = lost.notified() => {
                    // What the reader queued before the end was received: count it.
                    while let Ok(event) = self.queue.try_recv() {
                        self.counter.observe(&event.channel, &event.key);
                    }
                    return Ended::Lost;
                }
                _ = self.queue.recv_many(&mut batch, BATCH) => {
                    for event in batch.drain(..) {
                        self.counter.observe(&event.channel, &event.key);
                    }
                }
            }
        }
    }

    /// Keeps emitting while not subscribed, so windows keep sliding. False
    /// when the engine stops first.
    async fn wait_until(&mut self, until: Instant, shutdown: &CancellationToken) -> bool {
        loop {
            let due = self.next_emit();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => return true,
                _ = tokio::time::sleep_until(due) => {
                    if !self.emit() {
                        return false;
                    }
                }
            }
        }
    }

    /// A tick after the last emit when a count moved, else the keepalive.
    fn next_emit(&self) -> Instant {
        let wait = if self.counter.changed() {
            self.spec.tick
        } else {
            KEEPALIVE
        };
        self.last_emit + wait
    }

    /// Sends the counts without ever blocking. False once the engine has
    /// stopped listening.
    fn emit(&mut self) -> bool {
        self.last_emit = Instant::now();
        self.log_losses();
        match self
            .events
            .try_send(Event::KeyspaceCounts(self.counter.snapshot(&self.spec.target)))
        {
            Ok(()) => {
                self.counter.changed = false;
                true
            }
            // Counts are cumulative: the next emit, a tick later, carries everything.
            Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// One line per emit at most, and only when more events were lost.
    fn log_losses(&mut self) {
        let total = self.spec.stats.events_lost.load(Relaxed);
        if total > self.lost_logged {
            tracing::warn!(target = %self.spec.target, lost = total - self.lost_logged, events_lost_total = total, "Keyspace events dropped: the counter fell behind the reader");
            self.lost_logged = total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glob::Glob;

    fn selector(events: &[&str], keys: &str) -> KeyspaceSelector {
        KeyspaceSelector {
            events: events.iter().map(|s| s.to_string()).collect(),
            keys: Glob::new(keys),
            window: Duration::from_secs(60),
            db: None,
        }
    }

    #[test]
    fn counts_matching_events_per_rule() {
        let mut c = KeyspaceCounter::new(vec![
            ("storm".into(), selector(&["evicted"], "cache:*")),
            ("all".into(), selector(&[], "*")),
        ]);
        assert_eq!(c.patterns(), ["__keyevent@*__:*"]);
        c.observe(b"__keyevent@1__:evicted", b"cache:a");
        c.observe(b"__keyevent@1__:evicted", b"session:a");
        c.observe(b"__keyevent@0__:set", b"cache:b");
        c.observe(b"garbage", b"x");
        let snap = c.snapshot("t");
        assert_eq!(snap.counts, [("storm".to_string(), 1), ("all".to_string(), 3)]);
        assert_eq!(c.malformed, 1);
    }

    #[test]
    fn only_a_counted_event_is_a_change() {
        let mut c = KeyspaceCounter::new(vec![("storm".into(), selector(&["evicted"], "cache:*"))]);
        c.observe(b"__keyevent@1__:evicted", b"session:a");
        c.observe(b"__keyevent@1__:expired", b"cache:a");
        assert!(!c.changed(), "no rule counts these");
        c.observe(b"__keyevent@1__:evicted", b"cache:a");
        assert!(c.changed());
    }

    fn pmessage(key: &str) -> PushInfo {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        PushInfo {
            kind: PushKind::PMessage,
            data: vec![bulk("__keyevent@*__:set"), bulk("__keyevent@0__:set"), bulk(key)],
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (queue, mut rx) = mpsc::channel(2);
        let stats = Arc::new(KeyspaceStats::default());
        let reader = PushReader {
            queue,
            stats: stats.clone(),
            lost_connection: Arc::new(Notify::new()),
        };
        for key in ["a", "b", "c", "d", "e"] {
            reader.send(pmessage(key)).unwrap();
        }
        let metrics = stats.metrics();
        assert_eq!(
            &metrics[..2],
            [("events_lost_total", 3.0), ("keyspace_disconnects_total", 0.0)]
        );
        assert_eq!(metrics[2].0, "seconds_since_events_lost");
        assert!(metrics[2].1 < 5.0, "{metrics:?}");
        assert_eq!(metrics.len(), 3, "no disconnect yet: {metrics:?}");
        let first = rx.try_recv().unwrap();
        assert_eq!(
            (&first.channel[..], &first.key[..]),
            (&b"__keyevent@0__:set"[..], &b"a"[..])
        );
        // Room again: nothing more is lost.
        reader.send(pmessage("f")).unwrap();
        assert_eq!(stats.metrics()[0], ("events_lost_total", 3.0));
    }

    #[tokio::test]
    async fn the_reader_tells_the_counter_when_the_connection_ends() {
        let (queue, _rx) = mpsc::channel(2);
        let lost = Arc::new(Notify::new());
        let reader = PushReader {
            queue,
            stats: Arc::default(),
            lost_connection: lost.clone(),
        };
        reader
            .send(PushInfo {
                kind: PushKind::PSubscribe,
                data: vec![],
            })
            .unwrap();
        reader
            .send(PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            })
            .unwrap();
        // The permit waits for the counter even if it was busy counting.
        tokio::time::timeout(Duration::from_secs(1), lost.notified())
            .await
            .expect("no disconnect notice");
    }

    #[test]
    fn channel_parsing_rejects_hostile_names() {
        assert_eq!(
            parse_keyevent_channel(b"__keyevent@12__:expired"),
            Some((12, &b"expired"[..]))
        );
        for bad in [
            &b""[..],
            b"__keyevent@",
            b"__keyevent@x__:e",
            b"__keyspace@0__:k",
            b"__keyevent@99999999999__:e",
        ] {
            assert_eq!(parse_keyevent_channel(bad), None);
        }
    }

    #[test]
    fn flags_are_merged_not_replaced() {
        assert_eq!(merged_flags("", "Exe"), Some("Eex".into()));
        assert_eq!(merged_flags("AKE", "Ex"), None);
        assert_eq!(merged_flags("Kx", "Ee").as_deref(), Some("EKex"));
    }
}
