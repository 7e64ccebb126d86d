//! The election: a lease in Redis (`SET {prefix}:leader <id> NX PX ttl`),
//! renewed by its holder with a compare-and-pexpire script, with a fencing
//! token from `INCR {prefix}:epoch` on every acquisition.
//!
//! The leader steps down *before* its lease can expire: when a renewal says
//! the lease is no longer ours, or when renewals have failed for `ttl`
//! minus a margin, measured on the monotonic clock from the moment the last
//! good renewal was sent. Redis starts the lease's clock no earlier than
//! that, so the lease outlives our belief in it and two instances never
//! both believe they lead.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Fence, Keys, Link, Role};
use crate::config::{Config, SentinelGroupConfig};
use crate::sentinel::discovery::Discoverer;

/// Takes the lease if free, fencing token strictly above any we saw (after
/// a failover the new master may hold an older epoch than the old one).
/// Returns `{token, 0}` on success, `{0, pttl}` when someone else holds it.
const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  local floor = tonumber(ARGV[3])
  if token <= floor then
    token = floor + 1
    redis.call('SET', KEYS[2], token)
  end
  return {token, 0}
end
return {0, redis.call('PTTL', KEYS[1])}
";

/// Extends the lease only while it is still ours.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Frees the lease at an orderly stop, so a follower need not wait it out.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Where the lease lives.
enum Holder {
    Target(redis::ConnectionInfo),
    /// The group's master, asked of its Sentinels at every (re)connect.
    Group(Box<SentinelGroupConfig>, Discoverer),
}

pub struct Election {
    id: String,
    keys: Keys,
    ttl: Duration,
    renew_every: Duration,
    /// How long before the lease's expiry the leader gives up acting.
    margin: Duration,
    op_timeout: Duration,
    connect_timeout: Duration,
    holder: Holder,
    link: Link,
    role: watch::Sender<Role>,
    /// What every side effect checks: the token and `valid_until`.
    fence: Fence,
    /// This instance's API address, written next to the lease when it
    /// leads, so that a follower can name where to send a playbook run.
    api_addr: Option<String>,
    /// While leading: the instant our belief in the lease ends.
    valid_until: Option<Instant>,
    highest_token: u64,
    /// The master the group's lease was last taken on, to log a move.
    lease_addr: Option<String>,
    /// Set while the lease store cannot be reached, so that an outage is
    /// logged when it starts and ends, not at every retry.
    unreachable_since: Option<Instant>,
}

/// How long a published API address is kept: an instance that leads again
/// writes it again.
const API_ADDR_TTL_MS: u64 = 24 * 3600 * 1000;

/// Retrying a lost connection: often enough to keep the lease, no storm.
const RETRY: Duration = Duration::from_millis(250);

impl Election {
    pub(super) fn new(
        config: &Config,
        keys: Keys,
        link: Link,
        role: watch::Sender<Role>,
        fence: Fence,
    ) -> Result<Self, String> {
        let ha = &config.ha;
        let name = ha.lease_on.as_deref().ok_or("ha.lease_on is not set")?;
        let holder = if let Some(target) = config.target(name) {
            Holder::Target(target.connection_info()?)
        } else if let Some(group) = config.sentinels.iter().find(|g| g.name == name) {
            let discoverer = Discoverer::new(group.clone(), config.engine.connect_timeout);
            Holder::Group(Box::new(group.clone()), discoverer)
        } else {
            return Err(format!("ha.lease_on: no target or sentinel group named `{name}`"));
        };
        let renew_every = ha.renew_every();
        Ok(Election {
            id: ha.instance_id(),
            keys,
            ttl: ha.lease_ttl,
            renew_every,
            margin: ha.lease_ttl / 5,
            op_timeout: config.engine.command_timeout.min(renew_every / 2),
            connect_timeout: config.engine.connect_timeout.min(renew_every),
            holder,
            link,
            role,
            fence,
            api_addr: config.ha.published_api(&config.api),
            valid_until: None,
            highest_token: 0,
            lease_addr: None,
            unreachable_since: None,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Steps until `stop`, then gives the lease up if we hold it.
    pub async fn run(mut self, stop: CancellationToken) {
        tracing::info!(instance = %self.id, ttl_ms = self.ttl.as_millis() as u64, "HA election started");
        loop {
            let wait = self.step().await;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
        }
        self.release().await;
    }

    /// One round: (re)connect if needed, then renew the lease we hold or try
    /// to take a free one. Returns how long to wait before the next round.
    /// A leader's round never outlasts its belief in the lease: a slow
    /// Sentinel or a hung connection cannot keep it leading past that.
    pub async fn step(&mut self) -> Duration {
        let budget = self
            .valid_until
            .map_or(self.ttl, |until| until.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(budget, self.round()).await {
            Ok(wait) => wait,
            Err(_) => {
                self.link.clear();
                self.unreachable("no answer in time")
            }
        }
    }

    async fn round(&mut self) -> Duration {
        let conn = match self.link.get() {
            Some(conn) => conn,
            None => match self.connect().await {
                Ok(conn) => conn,
                Err(e) => return self.unreachable(&e),
            },
        };
        if self.valid_until.is_some() {
            self.renew(conn).await
        } else {
            self.acquire(conn).await
        }
    }

    async fn renew(&mut self, mut conn: MultiplexedConnection) -> Duration {
        let Role::Leader { token } = *self.role.borrow() else {
            return Duration::ZERO;
        };
        let sent = Instant::now();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RENEW)
            .arg(2)
            .arg(&self.keys.leader)
            .arg(&self.keys.epoch)
            .arg(&self.id)
            .arg(self.ttl.as_millis() as u64)
            .arg(token);
        match self.query::<i64>(&cmd, &mut conn).await {
            Ok(1) => {
                let until = sent + self.ttl - self.margin;
                self.valid_until = Some(until);
                self.fence.grant(token, until);
                self.renew_every
            }
            Ok(_) => {
                self.step_down("the lease is no longer ours");
                Duration::ZERO
            }
            Err(e) => self.unreachable(&e),
        }
    }

    async fn acquire(&mut self, mut conn: MultiplexedConnection) -> Duration {
        let sent = Instant::now();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ACQUIRE)
            .arg(2)
            .arg(&self.keys.leader)
            .arg(&self.keys.epoch)
            .arg(&self.id)
            .arg(self.ttl.as_millis() as u64)
            .arg(self.highest_token);
        match self.query::<(u64, i64)>(&cmd, &mut conn).await {
            Ok((token, _)) if token > 0 => {
                self.highest_token = token;
                let until = sent + self.ttl - self.margin;
                self.valid_until = Some(until);
                self.fence.grant(token, until);
                self.role.send_replace(Role::Leader { token });
                tracing::info!(instance = %self.id, token, lease_on = self.lease_addr.as_deref().unwrap_or("target"), "HA: became the leader");
                self.publish_api(conn).await;
                self.renew_every
            }
            // Wake just after the holder's lease would run out, so a dead
            // leader is replaced within its TTL, not TTL plus a poll.
            Ok((_, pttl)) if pttl > 0 => Duration::from_millis(pttl as u64 + 20).min(self.renew_every),
            Ok(_) => RETRY,
            Err(e) => self.unreachable(&e),
        }
    }

    async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
        conn: &mut MultiplexedConnection,
    ) -> Result<T, String> {
        let result = tokio::time::timeout(self.op_timeout, cmd.query_async::<T>(conn)).await;
        if matches!(result, Ok(Ok(_)))
            && let Some(since) = self.unreachable_since.take()
        {
            tracing::info!(instance = %self.id, down_ms = since.elapsed().as_millis() as u64, "HA lease store reachable again");
            if self.role.send_replace(Role::Follower) == Role::Isolated {
                tracing::info!(instance = %self.id, "HA: no longer isolated; a follower until the election says otherwise");
            }
        }
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
                    self.link.clear();
                }
                // A replica after a failover: READONLY. Rediscover the master.
                if e.code() == Some("READONLY") {
                    self.link.clear();
                }
                Err(crate::secrets::redact(&e.to_string()))
            }
            Err(_) => {
                self.link.clear();
                Err(format!("no reply within {} ms", self.op_timeout.as_millis()))
            }
        }
    }

    /// The lease store cannot be reached: keep leading only while the lease
    /// we last renewed is surely still ours.
    fn unreachable(&mut self, error: &str) -> Duration {
        if self.unreachable_since.is_none() {
            self.unreachable_since = Some(Instant::now());
            tracing::warn!(instance = %self.id, error, "HA lease store unreachable; retrying");
        } else {
            tracing::debug!(instance = %self.id, error, "HA lease store still unreachable");
        }
        match self.valid_until {
            Some(until) if Instant::now() >= until => {
                self.step_down("renewals failed for longer than the lease allows");
                RETRY
            }
            Some(until) => RETRY.min(until.saturating_duration_since(Instant::now())),
            None => {
                self.isolate_after_long_outage();
                RETRY
            }
        }
    }

    /// Past twice the TTL without the lease store, no instance may be able
    /// to lead. Nothing goes out from here: two instances on either side of
    /// a partition would both page; the pages wait in the outbox for a
    /// leader (this one or another, whose sent marks then drop them here).
    fn isolate_after_long_outage(&mut self) {
        let long = self
            .unreachable_since
            .is_some_and(|since| since.elapsed() >= self.ttl * 2);
        if long && self.role.send_replace(Role::Isolated) != Role::Isolated {
            tracing::warn!(instance = %self.id, "HA: lease store unreachable for twice the lease TTL; notifications wait in the outbox and no playbook runs until a leader exists again");
        }
    }

    /// Where the leader's API listens, for a follower's refusal of a
    /// playbook run to name. Best effort: the refusal names the leader's
    /// id either way.
    async fn publish_api(&mut self, mut conn: MultiplexedConnection) {
        let Some(addr) = self.api_addr.clone() else {
            return;
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.api(&self.id))
            .arg(addr)
            .arg("PX")
            .arg(API_ADDR_TTL_MS);
        if let Err(e) = self.query::<()>(&cmd, &mut conn).await {
            tracing::debug!(instance = %self.id, error = %e, "HA: API address not published");
        }
    }

    fn step_down(&mut self, why: &str) {
        // Fenced first: from here no side effect of ours goes out.
        self.fence.clear();
        if self.valid_until.take().is_some() {
            self.role.send_replace(Role::Follower);
            tracing::warn!(instance = %self.id, why, "HA: stepped down; now a follower");
        }
    }

    async fn connect(&mut self) -> Result<MultiplexedConnection, String> {
        let info = match &mut self.holder {
            Holder::Target(info) => info.clone(),
            Holder::Group(group, discoverer) => {
                let view = discoverer.discover().await;
                let addr = view
                    .master
                    .ok_or_else(|| format!("no Sentinel of group `{}` names a master", group.name))?;
                if self.lease_addr.as_ref().is_some_and(|old| *old != addr) {
                    tracing::info!(instance = %self.id, master = %addr, "HA: the lease follows the group's new master");
                }
                self.lease_addr = Some(addr.clone());
                master_info(group, &addr)?
            }
        };
        let conn = crate::redis::connect::connect_async(&info, self.connect_timeout, self.op_timeout)
            .await
            .map_err(|e| crate::secrets::redact(&e.to_string()))?;
        self.link.set(conn.clone());
        Ok(conn)
    }

    /// At an orderly stop: stop acting first, then free the lease.
    async fn release(&mut self) {
        let was_leader = self.valid_until.is_some();
        self.step_down("redops is stopping");
        let Some(mut conn) = self.link.get().filter(|_| was_leader) else {
            return;
        };
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE).arg(1).arg(&self.keys.leader).arg(&self.id);
        match self.query::<i64>(&cmd, &mut conn).await {
            Ok(_) => tracing::info!(instance = %self.id, "HA lease released"),
            Err(e) => tracing::warn!(instance = %self.id, error = %e, "HA lease not released; it expires by itself"),
        }
    }
}

fn master_info(group: &SentinelGroupConfig, addr: &str) -> Result<redis::ConnectionInfo, String> {
    group.node_config(addr).connection_info()
}
