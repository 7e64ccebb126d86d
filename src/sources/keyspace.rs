//! The keyspace source: pattern-subscribes to a target's keyevent channels
//! and counts, per keyspace rule, the events that match it.
//!
//! This is the hot path: the reader only parses the channel name, looks up
//! the rules listening for that event and bumps their counters. Rules see
//! the cumulative counts on a tick, never per event.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TargetConfig};
use crate::event::{Event, KeyspaceCounts};
use crate::redis::connect;
use crate::rules::Rule;
use crate::rules::model::KeyspaceSelector;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct KeyspaceSpec {
    pub target: String,
    pub connection: redis::ConnectionInfo,
    /// `notify-keyspace-events` flags to ensure, if the config asks.
    pub flags: Option<String>,
    pub selectors: Vec<(String, KeyspaceSelector)>,
    pub tick: Duration,
    pub connect_timeout: Duration,
}

impl KeyspaceSpec {
    /// The spec for a target, or `None` when nothing needs its events.
    pub fn from_config(config: &Config, target: &TargetConfig, rules: &[std::sync::Arc<Rule>]) -> Option<Self> {
        let selectors: Vec<_> = rules
            .iter()
            .filter(|r| r.applies_to(&target.name))
            .filter_map(|r| r.keyspace.clone().map(|k| (r.name.clone(), k)))
            .collect();
        if selectors.is_empty() {
            return None;
        }
        Some(KeyspaceSpec {
            target: target.name.clone(),
            connection: connect::connection_info(target).ok()?,
            flags: target.keyspace_events.clone(),
            selectors,
            tick: config.engine.keyspace_tick,
            connect_timeout: config.engine.connect_timeout,
        })
    }
}

/// Matches keyevent messages to rules and counts them.
pub struct KeyspaceCounter {
    selectors: Vec<(String, KeyspaceSelector)>,
    /// Rule indexes by event name, and those that take every event.
    by_event: HashMap<String, Vec<usize>>,
    any_event: Vec<usize>,
    counts: Vec<u64>,
    /// Messages whose channel was not a keyevent channel.
    pub malformed: u64,
}

impl KeyspaceCounter {
    pub fn new(selectors: Vec<(String, KeyspaceSelector)>) -> Self {
        let mut by_event: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_event = Vec::new();
        for (i, (_, s)) in selectors.iter().enumerate() {
            if s.events.is_empty() {
                any_event.push(i);
            }
            for e in &s.events {
                by_event.entry(e.clone()).or_default().push(i);
            }
        }
        KeyspaceCounter {
            counts: vec![0; selectors.len()],
            selectors,
            by_event,
            any_event,
            malformed: 0,
        }
    }

    /// The channel patterns to subscribe to: one per event named by a rule,
    /// or every event when a rule takes them all.
    pub fn patterns(&self) -> Vec<String> {
        if !self.any_event.is_empty() {
            return vec!["__keyevent@*__:*".into()];
        }
        let events: BTreeSet<&String> = self.by_event.keys().collect();
        events.into_iter().map(|e| format!("__keyevent@*__:{e}")).collect()
    }

    /// Counts one message: `channel` is `__keyevent@<db>__:<event>`, the
    /// payload is the key.
    pub fn observe(&mut self, channel: &[u8], key: &[u8]) {
        let Some((db, event)) = parse_keyevent_channel(channel) else {
            self.malformed += 1;
            return;
        };
        let Some(event) = std::str::from_utf8(event).ok() else {
            self.malformed += 1;
            return;
        };
        if let Some(idx) = self.by_event.get(event) {
            for &i in idx {
                if self.selectors[i].1.matches(db, event, key) {
                    self.counts[i] += 1;
                }
            }
        }
        for &i in &self.any_event {
            if self.selectors[i].1.matches(db, event, key) {
                self.counts[i] += 1;
            }
        }
    }

    pub fn snapshot(&self, target: &str) -> KeyspaceCounts {
        KeyspaceCounts {
            target: target.to_owned(),
            counts: self
                .selectors
                .iter()
                .zip(&self.counts)
                .map(|((name, _), c)| (name.clone(), *c))
                .collect(),
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

/// Subscribes until `shutdown`, reconnecting with backoff. Counts survive
/// reconnects, so the evaluator's windows stay consistent.
pub fn spawn_keyspace_source(
    spec: KeyspaceSpec,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut counter = KeyspaceCounter::new(spec.selectors.clone());
        let mut ticker = tokio::time::interval(spec.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut backoff = FIRST_BACKOFF;
        let mut connected_once = false;
        loop {
            match subscribe(&spec, &counter).await {
                Ok(pubsub) => {
                    backoff = FIRST_BACKOFF;
                    tracing::info!(target = %spec.target, reconnect = connected_once, "Keyspace subscription active");
                    connected_once = true;
                    let mut stream = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => return,
                            msg = stream.next() => match msg {
                                Some(msg) => counter.observe(msg.get_channel_name().as_bytes(), msg.get_payload_bytes()),
                                None => {
                                    tracing::warn!(target = %spec.target, "Keyspace subscription lost; reconnecting");
                                    break;
                                }
                            },
                            _ = ticker.tick() => {
                                if !emit(&events, &counter, &spec.target) { return; }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(target = %spec.target, error = %crate::secrets::redact(&e.to_string()), backoff_ms = backoff.as_millis() as u64, "Keyspace subscription failed");
                }
            }
            // Back off, still ticking so the rules' windows keep sliding.
            let until = tokio::time::Instant::now() + backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(until) => break,
                    _ = ticker.tick() => {
                        if !emit(&events, &counter, &spec.target) { return; }
                    }
                }
            }
        }
    })
}

async fn subscribe(spec: &KeyspaceSpec, counter: &KeyspaceCounter) -> redis::RedisResult<redis::aio::PubSub> {
    if let Some(flags) = &spec.flags {
        ensure_flags(spec, flags).await;
    }
    let client = redis::Client::open(spec.connection.clone())?;
    let mut pubsub = tokio::time::timeout(spec.connect_timeout, client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    for pattern in counter.patterns() {
        pubsub.psubscribe(pattern).await?;
    }
    Ok(pubsub)
}

/// Sends the counts without ever blocking the reader. False once the
/// engine has stopped listening.
fn emit(events: &mpsc::Sender<Event>, counter: &KeyspaceCounter, target: &str) -> bool {
    match events.try_send(Event::KeyspaceCounts(counter.snapshot(target))) {
        Ok(()) => true,
        // Counts are cumulative: the next tick carries everything this one had.
        Err(mpsc::error::TrySendError::Full(_)) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
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
