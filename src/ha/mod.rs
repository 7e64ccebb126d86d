//! High availability: two or three instances with the same config elect a
//! leader through a lease in a Redis they watch (`[ha]`, off by default).
//!
//! Every instance runs its sources and evaluator, so a follower holds the
//! same alert state as the leader and is ready to take over. Only the
//! leader acts:
//!
//! - [`election`] holds or seeks the lease and publishes the [`Role`] through
//!   a cheap [`Leadership`] handle;
//! - the playbook runner skips invocations on a follower and claims each run
//!   in the [`Ledger`] before it starts, so no alert firing runs twice; a
//!   claim lives only as long as its leader's lease: a new leader re-runs,
//!   once, what a leader that lost the lease left unfinished (a retry);
//! - every side effect (a Redis write, `exec`, an HTTP call, a backup, a
//!   delivery) passes the [`Fence`] just before it acts, so a leader that
//!   was paused or cut off past its lease acts no more;
//! - every instance writes notifications to its own outbox, but only the
//!   leader's workers deliver; the leader marks what it delivered, followers
//!   drop those copies, and a new leader skips them. What was in flight when
//!   a leader died is sent again, once, with the same idempotency key. With
//!   no leader at all (the lease store unreachable), pages wait in the
//!   outboxes until there is one again.

pub mod align;
pub mod election;
pub mod fence;
pub mod ledger;
pub mod shared;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use align::Aligner;
pub use election::Election;
pub use fence::{Fence, Fenced};
pub use ledger::{Claim, Ledger, Orphan};

use crate::config::Config;
use crate::outbox::Outbox;
use crate::telemetry::Counters;

/// What this instance may do right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Evaluates, records and stays ready; does not act.
    Follower,
    /// Acts. `token` rises with every acquisition of the lease, so a claim
    /// made under an older leader is told apart.
    Leader { token: u64 },
    /// Cut off from the lease store for longer than twice the lease TTL,
    /// so nobody may be leading. Acts no more than a follower: were it to
    /// deliver, both sides of a partition would page. Its pages wait in its
    /// outbox until a leader exists again.
    Isolated,
}

/// A cheap, cloneable view of this instance's role.
#[derive(Clone)]
pub struct Leadership {
    rx: watch::Receiver<Role>,
}

impl Leadership {
    pub fn role(&self) -> Role {
        *self.rx.borrow()
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role(), Role::Leader { .. })
    }

    /// Waits for the role to change; returns false once the election has
    /// stopped for good.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

/// The keys of the lease.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    leader: String,
    epoch: String,
}

impl Keys {
    /// Where instance `id` says its API listens.
    fn api(&self, id: &str) -> String {
        format!("{}:api:{id}", self.prefix)
    }

    fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            leader: format!("{prefix}:leader"),
            epoch: format!("{prefix}:epoch"),
        }
    }
}

/// The connection to the Redis holding the lease, shared by the election
/// (which makes it, and drops it on an error) and the ledger.
#[derive(Clone, Default)]
pub(crate) struct Link(Arc<Mutex<Option<MultiplexedConnection>>>);

impl Link {
    fn get(&self) -> Option<MultiplexedConnection> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, conn: MultiplexedConnection) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
    }

    fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The running election and the follower's outbox pruning.
pub struct Ha {
    pub ledger: Ledger,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    prune_every: Duration,
    keys: Keys,
    link: Link,
    timeout: Duration,
}

impl Ha {
    /// Starts the election when `[ha]` is enabled. `counters` get the role
    /// and the fencing token for /metrics.
    pub fn spawn(config: &Config, counters: Arc<Counters>) -> Result<Option<Ha>, String> {
        if !config.ha.enabled {
            return Ok(None);
        }
        let keys = Keys::new(&config.ha.key_prefix);
        let link = Link::default();
        let (role_tx, role_rx) = watch::channel(Role::Follower);
        let leadership = Leadership { rx: role_rx };
        let fence = Fence::default();
        let election = Election::new(config, keys.clone(), link.clone(), role_tx, fence.clone())?;
        let renew_every = config.ha.renew_every();
        let ledger = Ledger::new(
            election.id().to_owned(),
            keys.clone(),
            link.clone(),
            leadership.clone(),
            fence,
            config.engine.command_timeout.min(Duration::from_secs(1)),
            config.engine.sample_interval * 2 + Duration::from_secs(1),
        );
        let stop = CancellationToken::new();
        counters.ha_enabled.store(true, Ordering::Relaxed);
        let tasks = vec![
            tokio::spawn(election.run(stop.clone())),
            tokio::spawn(publish_role(leadership, counters)),
        ];
        Ok(Some(Ha {
            ledger,
            stop,
            tasks,
            prune_every: renew_every,
            keys,
            link,
            timeout: config.engine.command_timeout.min(Duration::from_secs(1)),
        }))
    }

    /// Once a second, merges the silences and acks of `store` with those
    /// of the other instances ([`shared`]).
    pub fn share_alert_state(&mut self, store: crate::alerts::store::AlertStore) {
        let shared = shared::SharedAlertState::new(self.keys.clone(), self.link.clone(), self.timeout);
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(SHARE_EVERY) => {}
                    _ = stop.cancelled() => return,
                }
                match shared.step(&store).await {
                    Ok(merged) => {
                        if merged != shared::Merged::default() {
                            tracing::debug!(?merged, "HA: silences and acks merged with the other instances");
                        }
                        failing = false;
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "HA: cannot share silences and acks with the other instances; retrying every second");
                    }
                    Err(_) => {}
                }
            }
        }));
    }

    /// On a follower, drops from `outbox` what the leader already delivered.
    pub fn prune_outbox(&mut self, outbox: Outbox) {
        let (ledger, stop, every) = (self.ledger.clone(), self.stop.clone(), self.prune_every);
        self.tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                if ledger.fence().holds() {
                    continue;
                }
                match drop_delivered(&ledger, &outbox).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(entries = n, "HA: outbox copies delivered by the leader dropped"),
                    Err(e) => tracing::debug!(error = %e, "HA: cannot compare the outbox with the leader's deliveries"),
                }
            }
        }));
    }

    /// Last to stop, after effects drained: steps down and frees the lease
    /// so that a follower takes over at once.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// How often silences and acks are merged: as often as the router reads them.
const SHARE_EVERY: Duration = Duration::from_secs(1);

/// Pending entries per round: a follower's backlog is small unless the
/// leader is down, and then nothing is marked anyway.
const PRUNE_BATCH: usize = 500;

/// Marks the pending entries some leader delivered; returns how many.
async fn drop_delivered(ledger: &Ledger, outbox: &Outbox) -> Result<usize, String> {
    let entries = outbox.pending_entries(PRUNE_BATCH).map_err(|e| e.to_string())?;
    let sent = ledger.sent(&entries).await?;
    let mut dropped = 0;
    for (entry, _) in entries.iter().zip(sent).filter(|(_, sent)| *sent) {
        outbox.delivered_by_peer(entry.id).map_err(|e| e.to_string())?;
        dropped += 1;
    }
    Ok(dropped)
}

async fn publish_role(mut leadership: Leadership, counters: Arc<Counters>) {
    loop {
        let (leader, token) = match leadership.role() {
            Role::Leader { token } => (1, token),
            Role::Follower | Role::Isolated => (0, 0),
        };
        counters.ha_leader.store(leader, Ordering::Relaxed);
        if leader == 1 {
            counters.ha_fencing_token.store(token, Ordering::Relaxed);
        }
        if !leadership.changed().await {
            return;
        }
    }
}
