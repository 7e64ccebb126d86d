//! What the instances share besides the lease, so that a takeover neither
//! repeats nor loses an action:
//!
//! - **Run claims.** Before a playbook runs, the leader claims it: a hash
//!   `{prefix}:run:<fingerprint>:<alert start>` (holder, token, run id, the
//!   invocation, `state = running`), created only if absent and only while
//!   the lease and the epoch are still ours, and listed in
//!   `{prefix}:runs:open`. A second claim for one alert firing fails,
//!   whoever leads by then. When the run ends its claim is closed, by the
//!   token that made it only. A claim still open under a token older than
//!   the current leader's was left by a leader that lost the lease mid-run:
//!   the new leader takes it over (compare-and-set on the token, so once)
//!   and runs it again, as a retry of the lost run.
//! - **Sent marks.** After a receiver accepted a notification the leader
//!   writes `{prefix}:sent:<receiver>:<idempotency key>`; followers drop
//!   their copies that are marked, and a new leader skips them.
//! - **Alert episodes.** Each instance sees an alert fire at a slightly
//!   different instant, and the idempotency key and the run claim hold that
//!   instant. The first instance to fire records its start in
//!   `{prefix}:episode:<fingerprint>`; the others adopt it while that firing
//!   is open (or when theirs is close), so every instance names one firing
//!   with one key and one claim.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Fence, Keys, Leadership, Link};
use crate::alerts::{Alert, AlertStatus};
use crate::invocation::{Action, Invocation};
use crate::outbox::Entry;

/// After a query goes unanswered, the ledger's next queries within this
/// many of its timeouts fail at once instead of each waiting out its own:
/// a hung lease store costs an alert burst one timeout, not one an alert
/// and two a delivery.
const UNANSWERED_PAUSE: u32 = 3;

/// How long a claim, a sent mark and an episode stay in Redis: far longer
/// than a notification is retried or an alert firing is remembered.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Claims a run only while the lease is ours and the epoch is our token.
const CLAIM: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return -1
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
redis.call('HSET', KEYS[3], 'holder', ARGV[1], 'token', ARGV[2], 'run', ARGV[4], 'inv', ARGV[5], 'state', 'running')
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], KEYS[3])
return 1
";

/// Takes over a claim left open under an older lease: returns the lost
/// run's id and the invocation, or 0 when there is nothing to take (done,
/// gone, or already ours), -1 when we do not lead.
const RECLAIM: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return -1
end
local claim = redis.call('HMGET', KEYS[3], 'state', 'token', 'run', 'inv')
if claim[1] ~= 'running' then
  redis.call('SREM', KEYS[4], KEYS[3])
  return 0
end
if tonumber(claim[2]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[3], 'holder', ARGV[1], 'token', ARGV[2], 'run', ARGV[3], 'retry_of', claim[3])
return {claim[3], claim[4]}
";

/// Closes a claim, only by the holder and token that hold it now: a run
/// fenced after a takeover leaves the claim to its retry.
const FINISH: &str = r"
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'state', ARGV[3])
  redis.call('SREM', KEYS[2], KEYS[1])
  return 1
end
return 0
";

/// A firing: returns the episode start to use. The recorded start is
/// adopted when it is close to ours, or while that firing is open (nobody
/// resolved it) and began before ours; never the one this instance ended
/// last (`ARGV[3]`). Otherwise ours starts a new episode.
const EPISODE_FIRING: &str = r"
local mine = tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'start'))
if cur and cur ~= tonumber(ARGV[3]) then
  local open = redis.call('HEXISTS', KEYS[1], 'resolved') == 0
  if math.abs(cur - mine) <= tonumber(ARGV[2]) or (open and cur <= mine) then
    return cur
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'start', mine)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return mine
";

/// A resolve: closes the recorded episode when ours is it (or close to it)
/// and returns its start; otherwise ours.
const EPISODE_RESOLVED: &str = r"
local mine = tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'start'))
if cur and math.abs(cur - mine) <= tonumber(ARGV[2]) then
  redis.call('HSETNX', KEYS[1], 'resolved', ARGV[3])
  return cur
end
return mine
";

/// Where this instance stands with one alert's episode.
#[derive(Debug, Clone, Copy)]
enum Episode {
    /// Firing, under this shared start.
    Firing(i64),
    /// Resolved; a new firing is a new episode, even if it starts close by.
    Ended(i64),
}

/// Whether a run may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours under `token`: run it, fenced by that token, and close `key`
    /// when it ends.
    Claimed { token: u64, key: String },
    /// Claimed before, by us or an earlier leader: it already ran.
    Taken,
    /// We do not hold the lease (any more).
    NotLeader,
}

/// A run a leader that lost the lease left unfinished, now claimed by this
/// one to be run again.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub invocation: Invocation,
    /// The id the run gets here.
    pub run_id: String,
    /// The lost run's id.
    pub retry_of: String,
    pub token: u64,
    pub key: String,
}

/// An invocation as a claim stores it, for a new leader to run it again.
#[derive(Serialize, Deserialize)]
struct StoredInvocation {
    playbook: String,
    rule: String,
    target: String,
    params: std::collections::BTreeMap<String, toml::Value>,
    alert: Option<Alert>,
}

impl From<&Invocation> for StoredInvocation {
    fn from(inv: &Invocation) -> Self {
        StoredInvocation {
            playbook: inv.playbook.clone(),
            rule: inv.rule.clone(),
            target: inv.target.clone(),
            params: inv.params.clone(),
            alert: inv.alert.clone(),
        }
    }
}

impl From<StoredInvocation> for Invocation {
    fn from(s: StoredInvocation) -> Self {
        Invocation {
            playbook: s.playbook,
            rule: s.rule,
            target: s.target,
            params: s.params,
            alert: s.alert,
        }
    }
}

#[derive(Clone)]
pub struct Ledger {
    id: String,
    keys: Keys,
    link: Link,
    leadership: Leadership,
    fence: Fence,
    timeout: Duration,
    /// How far apart instances see one thing: they fire one alert, and
    /// write their copies of one notification, within this of each other.
    episode_window: Duration,
    /// Per fingerprint, the episode this instance fired or ended last.
    episodes: Arc<Mutex<HashMap<String, Episode>>>,
    /// Until when queries fail at once: the store just left one unanswered.
    unanswered_until: Arc<Mutex<Option<tokio::time::Instant>>>,
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

impl Ledger {
    pub(super) fn new(
        id: String,
        keys: Keys,
        link: Link,
        leadership: Leadership,
        fence: Fence,
        timeout: Duration,
        episode_window: Duration,
    ) -> Self {
        Ledger {
            id,
            keys,
            link,
            leadership,
            fence,
            timeout,
            episode_window,
            episodes: Arc::default(),
            unanswered_until: Arc::default(),
        }
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// This instance's id in the lease.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who holds the lease now, and where its API listens if it said so.
    pub async fn leader(&self) -> Result<Option<(String, Option<String>)>, String> {
        let mut get = redis::cmd("GET");
        get.arg(&self.keys.leader);
        let Some(id) = self.query::<Option<String>>(&get).await? else {
            return Ok(None);
        };
        let mut api = redis::cmd("GET");
        api.arg(self.keys.api(&id));
        let addr = self.query::<Option<String>>(&api).await.ok().flatten();
        Ok(Some((id, addr)))
    }

    fn open_runs_key(&self) -> String {
        format!("{}:runs:open", self.keys.prefix)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let unanswered = || self.unanswered_until.lock().unwrap_or_else(|e| e.into_inner());
        if unanswered().is_some_and(|until| tokio::time::Instant::now() < until) {
            return Err(format!(
                "the HA lease store left a query unanswered within the last {} ms; not asked",
                (self.timeout * UNANSWERED_PAUSE).as_millis()
            ));
        }
        let mut conn = self.link.get().ok_or("the HA lease store is not connected")?;
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(r) => r.map_err(|e| crate::secrets::redact(&e.to_string())),
            Err(_) => {
                *unanswered() = Some(tokio::time::Instant::now() + self.timeout * UNANSWERED_PAUSE);
                Err(format!("no reply within {} ms", self.timeout.as_millis()))
            }
        }
    }

    /// The claim key of an invocation: one alert firing, or one tick of a
    /// schedule (to the second).
    fn run_key(&self, inv: &Invocation) -> String {
        match &inv.alert {
            Some(a) => format!("{}:run:{}:{}", self.keys.prefix, a.fingerprint, ms(a.starts_at)),
            None => format!(
                "{}:run:{}:{}:{}",
                self.keys.prefix,
                inv.rule,
                inv.target,
                ms(SystemTime::now()) / 1000
            ),
        }
    }

    /// Claims a run for this leader, as `run_id`. An error (Redis
    /// unreachable) means the run must not start: it would risk running
    /// twice.
    pub async fn claim(&self, inv: &Invocation, run_id: &str) -> Result<Claim, String> {
        let Some(token) = self.fence.current() else {
            return Ok(Claim::NotLeader);
        };
        let stored = serde_json::to_string(&StoredInvocation::from(inv))
            .map_err(|e| format!("the invocation cannot be stored with its claim: {e}"))?;
        let key = self.run_key(inv);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLAIM)
            .arg(4)
            .arg(&self.keys.leader)
            .arg(&self.keys.epoch)
            .arg(&key)
            .arg(self.open_runs_key())
            .arg(&self.id)
            .arg(token)
            .arg(RETENTION.as_millis() as u64)
            .arg(run_id)
            .arg(stored);
        Ok(match self.query::<i64>(&cmd).await? {
            1 => Claim::Claimed { token, key },
            0 => Claim::Taken,
            _ => Claim::NotLeader,
        })
    }

    /// Closes the claim of a run that ended (`outcome` is its label). A run
    /// fenced after a takeover no longer holds its claim and leaves it be.
    pub async fn finish(&self, key: &str, token: u64, outcome: &str) -> Result<bool, String> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(FINISH)
            .arg(2)
            .arg(key)
            .arg(self.open_runs_key())
            .arg(&self.id)
            .arg(token)
            .arg(outcome);
        Ok(self.query::<i64>(&cmd).await? == 1)
    }

    /// Takes over the runs leaders before us claimed and did not finish:
    /// each is ours to run again, once. Empty unless we lead.
    pub async fn orphans(&self, new_run_id: impl Fn() -> String) -> Result<Vec<Orphan>, String> {
        let Some(token) = self.fence.current() else {
            return Ok(Vec::new());
        };
        let mut members = redis::cmd("SMEMBERS");
        members.arg(self.open_runs_key());
        let keys: Vec<String> = self.query(&members).await?;
        let mut orphans = Vec::new();
        for key in keys {
            let run_id = new_run_id();
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(RECLAIM)
                .arg(4)
                .arg(&self.keys.leader)
                .arg(&self.keys.epoch)
                .arg(&key)
                .arg(self.open_runs_key())
                .arg(&self.id)
                .arg(token)
                .arg(&run_id);
            match self.query::<redis::Value>(&cmd).await? {
                redis::Value::Int(-1) => break,
                redis::Value::Array(items) => {
                    let text = |v: Option<&redis::Value>| match v {
                        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                        _ => String::new(),
                    };
                    let (retry_of, stored) = (text(items.first()), text(items.get(1)));
                    match serde_json::from_str::<StoredInvocation>(&stored) {
                        Ok(stored) => orphans.push(Orphan {
                            invocation: stored.into(),
                            run_id,
                            retry_of,
                            token,
                            key,
                        }),
                        Err(e) => {
                            tracing::error!(claim = %key, lost_run = %retry_of, error = %e, "HA: a run left unfinished by the last leader cannot be read back; it is not run again");
                            let _ = self.finish(&key, token, "unreadable").await;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(orphans)
    }

    fn sent_key(&self, receiver: &str, idempotency_key: &str) -> String {
        format!("{}:sent:{receiver}:{idempotency_key}", self.keys.prefix)
    }

    /// Records when `receiver` accepted the notification.
    pub async fn mark_sent(&self, receiver: &str, idempotency_key: &str) -> Result<(), String> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.sent_key(receiver, idempotency_key))
            .arg(ms(SystemTime::now()))
            .arg("PX")
            .arg(RETENTION.as_millis() as u64);
        self.query::<()>(&cmd).await
    }

    /// Which outbox entries some leader already delivered: one with the
    /// same receiver and key, delivered no earlier than the entry was
    /// written, give or take the time instances differ in writing their
    /// copies. A repeat of a still-firing alert keeps its key but is
    /// written much later, so it is not taken for the first send.
    pub async fn sent(&self, entries: &[Entry]) -> Result<Vec<bool>, String> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for e in entries {
            cmd.arg(self.sent_key(&e.receiver, &e.idempotency_key));
        }
        let values: Vec<Option<i64>> = self.query(&cmd).await?;
        let slack = self.episode_window.as_millis() as i64;
        Ok(values
            .iter()
            .zip(entries)
            .map(|(at, e)| at.is_some_and(|at| at + slack >= e.created_ms))
            .collect())
    }

    /// Gives every alert in `actions` the episode start all instances share.
    /// When Redis cannot say, the local start stays: at worst a receiver
    /// gets the notification twice, never not at all.
    pub async fn align(&self, mut actions: Vec<Action>) -> Vec<Action> {
        for action in &mut actions {
            let alert = match action {
                Action::Alert { alert, .. } => alert,
                Action::RunPlaybook(Invocation { alert: Some(alert), .. }) => alert,
                Action::RunPlaybook(_) => continue,
            };
            if let Err(e) = self.align_alert(alert).await {
                tracing::warn!(rule = %alert.rule, target = %alert.target, error = %e, "HA: alert start not shared; a duplicate notification is possible");
            }
        }
        actions
    }

    /// Sets the alert's start to the shared one. On an error the local start
    /// stays, and this instance's view of the episode still moves on, so a
    /// later firing is never taken for this one.
    async fn align_alert(&self, alert: &mut Alert) -> Result<(), String> {
        let known = self
            .episodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&alert.fingerprint)
            .copied();
        let (result, episode): (_, fn(i64) -> Episode) = match (alert.status, known) {
            // Again the firing just aligned: its playbook invocation.
            (AlertStatus::Firing, Some(Episode::Firing(start))) => (Ok(start), Episode::Firing),
            (AlertStatus::Firing, known) => {
                let ended = match known {
                    Some(Episode::Ended(start)) => start,
                    _ => -1,
                };
                (self.episode_firing(alert, ended).await, Episode::Firing)
            }
            (AlertStatus::Resolved, known) => {
                let mine = match known {
                    Some(Episode::Firing(start)) => start,
                    _ => ms(alert.starts_at),
                };
                (self.episode_resolved(alert, mine).await, Episode::Ended)
            }
        };
        let start = *result.as_ref().unwrap_or(&ms(alert.starts_at));
        alert.starts_at = UNIX_EPOCH + Duration::from_millis(start.max(0) as u64);
        self.episodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(alert.fingerprint.clone(), episode(start));
        result.map(|_| ())
    }

    fn episode_key(&self, alert: &Alert) -> String {
        format!("{}:episode:{}", self.keys.prefix, alert.fingerprint)
    }

    async fn episode_firing(&self, alert: &Alert, ended: i64) -> Result<i64, String> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(EPISODE_FIRING)
            .arg(1)
            .arg(self.episode_key(alert))
            .arg(ms(alert.starts_at))
            .arg(self.episode_window.as_millis() as u64)
            .arg(ended)
            .arg(RETENTION.as_millis() as u64);
        self.query(&cmd).await
    }

    async fn episode_resolved(&self, alert: &Alert, mine: i64) -> Result<i64, String> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(EPISODE_RESOLVED)
            .arg(1)
            .arg(self.episode_key(alert))
            .arg(mine)
            .arg(self.episode_window.as_millis() as u64)
            .arg(ms(SystemTime::now()));
        self.query(&cmd).await
    }
}
