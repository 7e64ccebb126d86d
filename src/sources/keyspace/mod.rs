//! The keyspace source: pattern-subscribes to a target's keyevent channels
//! and counts, per keyspace rule, the events that match it.
//!
//! This is the hot path. Two readers feed the same counter
//! ([`KeyspaceCounter`], every rule matched in one pass by a
//! [`SelectorSet`]); `[engine] keyspace_reader` picks one:
//! - `resp` (the default, [`reader`]): a plain TCP connection of its own,
//!   parsed in place from one read buffer ([`resp`]) and counted as it is
//!   read, with no queue and no allocation per event.
//! - `redis-rs` ([`push`]): redis-rs's RESP3 pushes through a bounded queue;
//!   also what `rediss://` and Unix socket targets use whatever the setting.
//!
//! Either way a reader that falls behind is bounded by Redis's
//! `client-output-buffer-limit pubsub`: when Redis drops it, the disconnect
//! is counted in `keyspace_disconnects_total` and the subscription is made
//! again. Rules see cumulative counts, soon after they change (at most once
//! a `keyspace_tick`) and at least once a second, never per event: an emit
//! carries the counts that moved since the last one, and once a second all
//! of them, so a rule is evaluated a tick after its count moves and at
//! least once a second (for windows that slide and `for` that elapses).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, KeyspaceReader, TargetConfig};
use crate::event::keyspace::{KeyspaceRule, KeyspaceSelector, MatcherId, SelectorSet};
use crate::event::{Event, KeyspaceCounts};
use crate::redis::connect;

mod push;
mod reader;
pub use reader::THREAD_NAME as READER_THREAD;
pub mod resp;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Counts go out at least this often, changed or not: windows must slide
/// down (and alerts clear) while nothing happens.
const KEEPALIVE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct KeyspaceSpec {
    pub target: String,
    pub connection: redis::ConnectionInfo,
    /// `notify-keyspace-events` flags to ensure, if the config asks.
    pub flags: Option<String>,
    pub selectors: Vec<(String, KeyspaceSelector)>,
    pub tick: Duration,
    pub connect_timeout: Duration,
    /// Which reader subscribes; `Resp` falls back to redis-rs for targets
    /// it cannot reach over plain TCP.
    pub reader: KeyspaceReader,
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
            reader: config.engine.keyspace_reader,
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
    names: Vec<Arc<str>>,
    matcher: SelectorSet,
    patterns: Vec<String>,
    counts: Vec<u64>,
    /// The counts as last sent: an emit carries those that moved since.
    sent: Vec<u64>,
    /// The last channel read, with its database and matcher: in a storm
    /// one channel carries every event, parsed once.
    last_channel: Vec<u8>,
    last_parsed: Option<(u32, MatcherId)>,
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
            sent: vec![0; selectors.len()],
            names: selectors.into_iter().map(|(name, _)| name.into()).collect(),
            matcher,
            patterns,
            last_channel: Vec::new(),
            last_parsed: None,
            malformed: 0,
        }
    }

    /// The channel patterns to subscribe to: one per event named by a rule,
    /// or every event when a rule takes them all.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Counts one message: `channel` is `__keyevent@<db>__:<event>`, the
    /// payload is the key. The rules' totals take it at the next
    /// [`Self::changed`] or [`Self::snapshot`].
    pub fn observe(&mut self, channel: &[u8], key: &[u8]) {
        let (db, matcher) = match self.last_parsed {
            Some(parsed) if self.last_channel == channel => parsed,
            _ => {
                let Some((db, event)) = parse_keyevent_channel(channel) else {
                    self.malformed += 1;
                    return;
                };
                if std::str::from_utf8(event).is_err() {
                    self.malformed += 1;
                    return;
                }
                let parsed = (db, self.matcher.matcher_for(event));
                self.last_channel.clear();
                self.last_channel.extend_from_slice(channel);
                self.last_parsed = Some(parsed);
                parsed
            }
        };
        self.matcher.count(matcher, db, key, &mut self.counts);
    }

    /// Whether a count moved since the last [`Self::sent`].
    pub fn changed(&mut self) -> bool {
        self.matcher.flush(&mut self.counts);
        self.counts != self.sent
    }

    /// The counts that moved since the last [`Self::sent`], or all of
    /// them.
    pub fn snapshot(&mut self, target: &str, all: bool) -> KeyspaceCounts {
        self.matcher.flush(&mut self.counts);
        KeyspaceCounts {
            target: target.to_owned(),
            counts: self
                .names
                .iter()
                .zip(self.counts.iter().zip(&self.sent))
                .filter(|(_, (count, sent))| all || count != sent)
                .map(|(name, (count, _))| (name.clone(), *count))
                .collect(),
        }
    }

    /// The last snapshot reached the engine.
    pub fn sent(&mut self) {
        self.sent.copy_from_slice(&self.counts);
    }
}

/// `__keyevent@3__:expired` → `(3, "expired")`.
pub fn parse_keyevent_channel(channel: &[u8]) -> Option<(u32, &[u8])> {
    let rest = channel.strip_prefix(b"__keyevent@")?;
    let end = rest.iter().position(|&b| b == b'_')?;
    if end == 0 {
        return None;
    }
    let db = rest[..end].iter().try_fold(0u32, |db, &d| {
        d.is_ascii_digit()
            .then(|| db.checked_mul(10)?.checked_add(u32::from(d - b'0')))?
    })?;
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

/// Sets the flags the config asks for, if it asks; a failure is logged, not
/// fatal: the server may publish them already.
async fn ensure_flags_if_asked(spec: &KeyspaceSpec) {
    if let Some(flags) = &spec.flags {
        ensure_flags(spec, flags).await;
    }
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

/// A live subscription, by reader.
enum Subscription {
    Resp(reader::RespSubscription),
    Push(push::PushSubscription),
}

struct KeyspaceSource {
    spec: KeyspaceSpec,
    counter: KeyspaceCounter,
    events: mpsc::Sender<Event>,
    /// The redis-rs reader's queue, made on its first subscription.
    push_queue: Option<push::Queue>,
    last_emit: Instant,
    /// When an emit last carried every count.
    last_full: Instant,
    /// Events lost as of the last log line about them.
    lost_logged: u64,
}

impl KeyspaceSource {
    fn new(spec: KeyspaceSpec, events: mpsc::Sender<Event>) -> Self {
        KeyspaceSource {
            counter: KeyspaceCounter::new(spec.selectors.clone()),
            spec,
            events,
            push_queue: None,
            last_emit: Instant::now(),
            last_full: Instant::now(),
            lost_logged: 0,
        }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        let mut connected_once = false;
        let mut failures = 0u32;
        let reader = self.reader_name();
        loop {
            match self.subscribe().await {
                Ok(subscription) => {
                    backoff = FIRST_BACKOFF;
                    failures = 0;
                    tracing::info!(target = %self.spec.target, reconnect = connected_once, reader, "Keyspace subscription active");
                    connected_once = true;
                    let ended = match subscription {
                        Subscription::Resp(s) => match self.count_frames_on_thread(s, &shutdown).await {
                            Some((source, ended)) => {
                                self = source;
                                ended
                            }
                            None => return,
                        },
                        Subscription::Push(s) => self.count_pushes_until_lost(&s, &shutdown).await,
                    };
                    match ended {
                        Ended::Stopped => return,
                        Ended::Lost => {
                            let n = self.spec.stats.record_disconnect();
                            tracing::warn!(target = %self.spec.target, keyspace_disconnects_total = n, "Keyspace subscription lost (closed by the server or the network): events published until it is back are not counted; subscribing again");
                        }
                    }
                }
                Err(error) => {
                    failures += 1;
                    let backoff_ms = backoff.as_millis() as u64;
                    if failures == 1 {
                        tracing::warn!(target = %self.spec.target, error = %error, backoff_ms, reader, "Keyspace subscription failed; retrying");
                    } else {
                        tracing::debug!(target = %self.spec.target, error = %error, backoff_ms, reader, "Keyspace subscription failed");
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

    /// `resp`, or `redis-rs` when asked or when the target is not plain TCP.
    fn reader_name(&self) -> &'static str {
        match (self.spec.reader, reader::plain_tcp(&self.spec.connection)) {
            (KeyspaceReader::Resp, Some(_)) => "resp",
            _ => "redis-rs",
        }
    }

    /// A subscription by the configured reader, its error redacted.
    async fn subscribe(&mut self) -> Result<Subscription, String> {
        let redact = |e: &dyn std::fmt::Display| crate::secrets::redact(&e.to_string());
        let addr = reader::plain_tcp(&self.spec.connection).map(|(host, port)| (host.to_owned(), port));
        match (self.spec.reader, addr) {
            (KeyspaceReader::Resp, Some((host, port))) => self
                .subscribe_resp((&host, port))
                .await
                .map(Subscription::Resp)
                .map_err(|e| redact(&e)),
            _ => self
                .subscribe_push()
                .await
                .map(Subscription::Push)
                .map_err(|e| format!("{} (the redis-rs reader needs Redis >= 6 for RESP3)", redact(&e))),
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
    fn next_emit(&mut self) -> Instant {
        let changed = self.counter.changed();
        self.emit_due(changed)
    }

    /// [`Self::next_emit`] with whether a count moved already known.
    fn emit_due(&self, changed: bool) -> Instant {
        self.last_emit + if changed { self.spec.tick } else { KEEPALIVE }
    }

    /// Sends the counts without ever blocking. False once the engine has
    /// stopped listening.
    fn emit(&mut self) -> bool {
        let now = Instant::now();
        self.last_emit = now;
        self.log_losses();
        let all = now >= self.last_full + KEEPALIVE;
        match self
            .events
            .try_send(Event::KeyspaceCounts(self.counter.snapshot(&self.spec.target, all)))
        {
            Ok(()) => {
                self.counter.sent();
                if all {
                    self.last_full = now;
                }
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
        // Back to a channel read before: parsed again, never taken for
        // the last one.
        c.observe(b"__keyevent@1__:evicted", b"cache:c");
        c.observe(b"garbage", b"y");
        let snap = c.snapshot("t", false);
        assert_eq!(snap.counts, [("storm".into(), 2), ("all".into(), 4)]);
        assert_eq!(c.malformed, 2);
        // Once sent, only what moves since goes in the next one; all of
        // them when asked.
        c.sent();
        c.observe(b"__keyevent@0__:set", b"cache:d");
        assert_eq!(c.snapshot("t", false).counts, [("all".into(), 5)]);
        assert_eq!(c.snapshot("t", true).counts, [("storm".into(), 2), ("all".into(), 5)]);
        c.sent();
        assert!(c.snapshot("t", false).counts.is_empty());
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
