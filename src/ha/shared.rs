//! Silences and acknowledgements every instance shares under `[ha]`, so that
//! one made on any instance (its CLI or its API) mutes or stops the
//! escalation on all of them, and survives a takeover.
//!
//! Each instance keeps them in its own state store, where its router reads
//! them. Once a second it merges its store with two hashes in the lease
//! Redis:
//!
//! - `{prefix}:silences`: a silence under an id made of what it is (its
//!   matchers, start, author and comment), so every copy of one silence has
//!   one id without a counter to share; its end is the earliest any instance
//!   knows, so an expiry made anywhere wins;
//! - `{prefix}:acks`: per alert fingerprint, who acknowledged which firing
//!   (its shared start, see [`super::ledger`]); an instance where that firing
//!   is not acknowledged yet records it.
//!
//! Both merges are idempotent and only ever end silences or add acks, so
//! instances that race converge on the next round.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Keys, Link};
use crate::alerts::store::{AlertStore, now_ms};
use crate::matcher::Matcher;

/// Ended silences and acks stay this long in Redis, then go.
const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SharedSilence {
    matchers: Vec<String>,
    starts_ms: i64,
    ends_ms: i64,
    created_by: String,
    comment: String,
}

impl SharedSilence {
    fn of(s: &crate::alerts::store::Silence) -> Self {
        SharedSilence {
            matchers: s.matchers.iter().map(ToString::to_string).collect(),
            starts_ms: s.starts_ms,
            ends_ms: s.ends_ms,
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
        }
    }

    /// The same on every instance that holds a copy; the end is not part
    /// of it, since expiring changes it.
    fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in self.matchers.iter().chain([&self.created_by, &self.comment]) {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(self.starts_ms.to_le_bytes());
        hex::encode(&h.finalize()[..12])
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SharedAck {
    /// The firing acknowledged.
    starts_ms: i64,
    by: String,
    comment: Option<String>,
    acked_ms: i64,
}

/// What one round changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Silences added to or ended in the local store.
    pub silences_in: usize,
    /// Silences written to Redis.
    pub silences_out: usize,
    pub acks_in: usize,
    pub acks_out: usize,
}

pub(super) struct SharedAlertState {
    keys: Keys,
    link: Link,
    timeout: Duration,
}

impl SharedAlertState {
    pub(super) fn new(keys: Keys, link: Link, timeout: Duration) -> Self {
        SharedAlertState { keys, link, timeout }
    }

    fn silences_key(&self) -> String {
        format!("{}:silences", self.keys.prefix)
    }

    fn acks_key(&self) -> String {
        format!("{}:acks", self.keys.prefix)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut conn = self.link.get().ok_or("the HA lease store is not connected")?;
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(r) => r.map_err(|e| crate::secrets::redact(&e.to_string())),
            Err(_) => Err(format!("no reply within {} ms", self.timeout.as_millis())),
        }
    }

    async fn hash<T: for<'de> Deserialize<'de>>(&self, key: String) -> Result<HashMap<String, T>, String> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(key);
        let raw: HashMap<String, String> = self.query(&cmd).await?;
        Ok(raw
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_str(&v).ok()?)))
            .collect())
    }

    async fn write(&self, key: String, set: Vec<(String, String)>, delete: Vec<String>) -> Result<(), String> {
        if !set.is_empty() {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&key);
            for (field, value) in set {
                cmd.arg(field).arg(value);
            }
            self.query::<()>(&cmd).await?;
        }
        if !delete.is_empty() {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(&key).arg(delete);
            self.query::<()>(&cmd).await?;
        }
        Ok(())
    }

    /// One round: merges the local store's silences and acks with the
    /// shared ones, both ways.
    pub async fn step(&self, store: &AlertStore) -> Result<Merged, String> {
        let now = now_ms();
        let mut merged = Merged::default();
        let text = |e: crate::store::StoreError| e.to_string();

        let shared: HashMap<String, SharedSilence> = self.hash(self.silences_key()).await?;
        let mut local: HashMap<String, (i64, SharedSilence)> = HashMap::new();
        for s in store.silences(true).map_err(text)? {
            let copy = SharedSilence::of(&s);
            local.insert(copy.id(), (s.id, copy));
        }
        for (id, s) in &shared {
            match local.get(id) {
                None if s.ends_ms > now => {
                    let matchers: Result<Vec<Matcher>, String> = s.matchers.iter().map(|m| Matcher::parse(m)).collect();
                    let Ok(matchers) = matchers else { continue };
                    let local_id = store
                        .add_silence(&matchers, s.starts_ms, s.ends_ms, &s.created_by, &s.comment)
                        .map_err(text)?;
                    tracing::info!(silence = local_id, by = %s.created_by, "HA: silence made on another instance applied here");
                    merged.silences_in += 1;
                }
                Some((local_id, l)) if l.ends_ms > s.ends_ms => {
                    store.end_silence_at(*local_id, s.ends_ms).map_err(text)?;
                    tracing::info!(
                        silence = local_id,
                        "HA: silence expired on another instance expired here"
                    );
                    merged.silences_in += 1;
                }
                _ => {}
            }
        }
        let mut set = Vec::new();
        for (id, (_, l)) in &local {
            let newer = match shared.get(id) {
                None => l.ends_ms > now,
                Some(s) => s.ends_ms > l.ends_ms,
            };
            if newer {
                set.push((id.clone(), serde_json::to_string(l).unwrap_or_default()));
            }
        }
        merged.silences_out = set.len();
        let stale = shared
            .iter()
            .filter(|(_, s)| s.ends_ms < now - RETENTION_MS)
            .map(|(id, _)| id.clone())
            .collect();
        self.write(self.silences_key(), set, stale).await?;

        let acks: HashMap<String, SharedAck> = self.hash(self.acks_key()).await?;
        let mut set = Vec::new();
        for row in store.list(false).map_err(text)? {
            let shared = acks.get(&row.fingerprint).filter(|a| a.starts_ms == row.starts_ms);
            match (&row.acked_by, shared) {
                (None, Some(a)) => {
                    if let Ok(Ok(_)) = store.ack(&row.fingerprint, &a.by, a.comment.as_deref()) {
                        tracing::info!(rule = %row.rule, target = %row.target, by = %a.by, "HA: acknowledgement made on another instance applied here");
                        merged.acks_in += 1;
                    }
                }
                (Some(by), None) => {
                    let ack = SharedAck {
                        starts_ms: row.starts_ms,
                        by: by.clone(),
                        comment: row.ack_comment.clone(),
                        acked_ms: row.acked_ms.unwrap_or(now),
                    };
                    set.push((row.fingerprint.clone(), serde_json::to_string(&ack).unwrap_or_default()));
                }
                _ => {}
            }
        }
        merged.acks_out = set.len();
        let stale = acks
            .iter()
            .filter(|(_, a)| a.acked_ms < now - RETENTION_MS)
            .map(|(f, _)| f.clone())
            .collect();
        self.write(self.acks_key(), set, stale).await?;
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_keeps_its_id_when_it_ends_and_differs_by_what_it_is() {
        let s = SharedSilence {
            matchers: vec!["rule=a".into()],
            starts_ms: 1,
            ends_ms: 10,
            created_by: "ann".into(),
            comment: "maint".into(),
        };
        let ended = SharedSilence {
            ends_ms: 2,
            ..s.clone()
        };
        assert_eq!(s.id(), ended.id());
        let other = SharedSilence {
            matchers: vec!["rule=b".into()],
            ..s.clone()
        };
        assert_ne!(s.id(), other.id());
        let later = SharedSilence {
            starts_ms: 2,
            ..s.clone()
        };
        assert_ne!(s.id(), later.id());
    }
}
