//! Notifications: what is sent, and the workers that deliver it.
//!
//! The router decides who gets what; [`Notifier::send`] writes it to the
//! durable [`crate::outbox`] first, then wakes the receiver's worker. Each receiver
//! has one worker that delivers in order and retries with backoff, so a
//! slow receiver never delays detection or another receiver.

pub mod email;
pub mod format;
pub mod incident;
pub mod log;
pub mod resend;
pub mod router;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alert;
use crate::config::ReceiverConfig;
use crate::invocation::RunOutcome;
use crate::outbox::{self, Entry, Outbox};
use crate::telemetry::CounterVec;

/// The version of the generic JSON schema (see docs/notifications.md).
pub const SCHEMA_VERSION: &str = "1";

/// One alert as a notification carries it, with what redops already did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertNotice {
    #[serde(flatten)]
    pub alert: Alert,
    /// The outcome of the rule's playbook, once it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<PlaybookSummary>,
    /// Set on the notification that reports an acknowledgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_comment: Option<String>,
    /// The alerts this one explains, folded into its notification instead
    /// of paging on their own (`[[incident]]`), each with its own status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folded: Vec<Alert>,
}

impl AlertNotice {
    pub fn new(alert: Alert) -> Self {
        AlertNotice {
            alert,
            playbook: None,
            acked_by: None,
            ack_comment: None,
            folded: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// An alert fired, resolved, was updated with its playbook's outcome,
    /// or was acknowledged.
    Alert(Box<AlertNotice>),
    /// Several alerts of one group, sent together.
    Group { group: String, alerts: Vec<AlertNotice> },
    /// A message a playbook sent with `notify(receiver, #{...})`.
    Message {
        playbook: String,
        run_id: String,
        target: String,
        body: serde_json::Value,
    },
    /// A notification that was retried until its give-up time, sent to the
    /// fallback receiver.
    DeadLetter {
        receiver: String,
        idempotency_key: String,
        error: String,
        attempts: i64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaybookSummary {
    pub name: String,
    pub run_id: String,
    pub outcome: RunOutcome,
    pub findings: Vec<String>,
}

impl Notification {
    /// The same for every retry and every engine, so a receiver that
    /// supports it drops duplicates.
    pub fn idempotency_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let alert_key = |n: &AlertNotice| {
            let a = &n.alert;
            let starts = a
                .starts_at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            let what = match (&n.acked_by, &n.playbook) {
                (Some(_), _) => "ack".to_owned(),
                (None, Some(p)) => format!("run-{}", p.run_id),
                (None, None) => format!("{:?}", a.status).to_lowercase(),
            };
            format!("{}-{starts}-{what}", a.fingerprint)
        };
        match self {
            Notification::Alert(n) => alert_key(n),
            Notification::Group { group, alerts } => {
                let keys: Vec<String> = alerts.iter().map(alert_key).collect();
                let digest = Sha256::digest(format!("{group}|{}", keys.join("|")).as_bytes());
                format!("group-{}", hex::encode(&digest[..8]))
            }
            Notification::Message { run_id, body, .. } => {
                let digest = Sha256::digest(body.to_string().as_bytes());
                format!("{run_id}-{}", hex::encode(&digest[..6]))
            }
            Notification::DeadLetter { idempotency_key, .. } => format!("dead-{idempotency_key}"),
        }
    }
}

/// Why one delivery attempt failed.
#[derive(Debug)]
pub struct Failure {
    pub error: String,
    pub retry_after: Option<Duration>,
    /// The receiver will never accept this notification (e.g. HTTP 400).
    pub permanent: bool,
}

impl Failure {
    pub fn transient(error: impl Into<String>) -> Self {
        Failure {
            error: error.into(),
            retry_after: None,
            permanent: false,
        }
    }
}

/// A receiver's way of delivering one notification.
pub enum Sender {
    Webhook(webhook::WebhookSender),
    Email(Box<email::EmailSender>),
    Log(log::LogSender),
}

impl Sender {
    fn build(name: &str, config: &ReceiverConfig) -> Result<(Sender, Duration), String> {
        Ok(match config {
            ReceiverConfig::Webhook(c) => (
                Sender::Webhook(webhook::WebhookSender::new(name, c.clone())),
                c.give_up_after,
            ),
            ReceiverConfig::Email(c) => (
                Sender::Email(Box::new(email::EmailSender::new(name, c)?)),
                c.give_up_after,
            ),
            ReceiverConfig::Log(_) => (Sender::Log(log::LogSender::new(name)), Duration::MAX),
        })
    }

    /// The longest one delivery attempt can take.
    fn timeout(&self) -> Duration {
        match self {
            Sender::Webhook(s) => s.timeout(),
            Sender::Email(s) => s.timeout(),
            Sender::Log(_) => Duration::from_secs(1),
        }
    }

    async fn deliver(&self, n: &Notification, key: &str) -> Result<(), Failure> {
        match self {
            Sender::Webhook(s) => s.deliver(n, key).await,
            Sender::Email(s) => s.deliver(n, key).await,
            Sender::Log(s) => {
                s.deliver(n);
                Ok(())
            }
        }
    }
}

/// How a receiver's worker delivers: replaced whole when a reload changes
/// the receiver's settings.
struct Delivery {
    sender: Sender,
    give_up: Duration,
}

/// Writes notifications to the outbox and wakes the receivers' workers.
#[derive(Clone)]
pub struct Notifier {
    outbox: Outbox,
    wakers: Arc<HashMap<String, Arc<Notify>>>,
    /// Each worker's [`Delivery`], for [`Notifier::replace_receiver`].
    deliveries_by_receiver: Arc<HashMap<String, watch::Sender<Arc<Delivery>>>>,
    /// Delivery attempts by receiver and outcome (`delivered`, `retried`,
    /// `dead`), exported on /metrics.
    deliveries: Arc<CounterVec<2>>,
    /// Playbook messages of held or folded alerts wait or stay quiet here.
    gates: incident::Gates,
}

pub struct NotifierHandle {
    tasks: JoinSet<()>,
}

impl Notifier {
    /// Starts one worker per receiver. They resume whatever the outbox
    /// still holds from before a restart.
    pub fn spawn(
        receivers: &BTreeMap<String, ReceiverConfig>,
        outbox: Outbox,
        fallback: Option<String>,
        shutdown: CancellationToken,
    ) -> Result<(Notifier, NotifierHandle), String> {
        Self::spawn_gated(receivers, outbox, fallback, None, shutdown)
    }

    /// As [`Notifier::spawn`]; with `ha`, the workers deliver what every
    /// instance holds a copy of only while this one holds the lease (checked
    /// just before each delivery), skip what an earlier leader delivered,
    /// and record what they deliver for the others.
    pub fn spawn_gated(
        receivers: &BTreeMap<String, ReceiverConfig>,
        outbox: Outbox,
        fallback: Option<String>,
        ha: Option<crate::ha::Ledger>,
        shutdown: CancellationToken,
    ) -> Result<(Notifier, NotifierHandle), String> {
        let mut wakers = HashMap::new();
        let mut slots = HashMap::new();
        let mut workers = Vec::new();
        for (name, config) in receivers {
            let (sender, give_up) = Sender::build(name, config).map_err(|e| format!("receiver `{name}`: {e}"))?;
            let (slot, delivery) = watch::channel(Arc::new(Delivery { sender, give_up }));
            wakers.insert(name.clone(), Arc::new(Notify::new()));
            slots.insert(name.clone(), slot);
            workers.push((name.clone(), delivery));
        }
        match outbox.resume_now() {
            Ok(0) => {}
            Ok(n) => tracing::info!(pending = n, "Resuming notifications left pending before the restart"),
            Err(e) => tracing::error!(error = %e, "Cannot read the outbox"),
        }
        let notifier = Notifier {
            outbox,
            wakers: Arc::new(wakers),
            deliveries_by_receiver: Arc::new(slots),
            deliveries: Arc::default(),
            gates: incident::Gates::default(),
        };
        let mut tasks = JoinSet::new();
        for (name, delivery) in workers {
            let worker = Worker {
                receiver: name.clone(),
                delivery,
                notifier: notifier.clone(),
                fallback: fallback.clone().filter(|f| *f != name),
                ha: ha.clone(),
            };
            tasks.spawn(worker.run(shutdown.clone()));
        }
        Ok((notifier, NotifierHandle { tasks }))
    }

    /// A notifier that only queues: no worker delivers what it sends.
    /// `redops test` reads the outbox to see what routing decided.
    pub fn queue_only(receivers: impl IntoIterator<Item = String>, outbox: Outbox) -> Notifier {
        Notifier {
            outbox,
            wakers: Arc::new(receivers.into_iter().map(|r| (r, Arc::new(Notify::new()))).collect()),
            deliveries_by_receiver: Arc::default(),
            deliveries: Arc::default(),
            gates: incident::Gates::default(),
        }
    }

    /// Rebuilds a running receiver's sender from new settings, e.g. a
    /// rotated password or HMAC key: its next delivery attempt uses them,
    /// one in flight finishes with the old. On an error nothing changes.
    pub fn replace_receiver(&self, name: &str, config: &ReceiverConfig) -> Result<(), String> {
        let slot = self
            .deliveries_by_receiver
            .get(name)
            .ok_or_else(|| format!("receiver `{name}` has no running worker"))?;
        let (sender, give_up) = Sender::build(name, config).map_err(|e| format!("receiver `{name}`: {e}"))?;
        slot.send_replace(Arc::new(Delivery { sender, give_up }));
        Ok(())
    }

    pub fn receiver_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.wakers.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn deliveries(&self) -> Arc<CounterVec<2>> {
        self.deliveries.clone()
    }

    pub fn gates(&self) -> incident::Gates {
        self.gates.clone()
    }

    /// Sends a playbook's message about `alert`: held while the alert is
    /// held for its cause, not sent at all once it is folded into one.
    /// Returns what happened, for the run's audit trail.
    pub fn send_about(&self, alert: Option<&Alert>, receivers: &[String], n: &Notification) -> String {
        let Some(alert) = alert else {
            self.send(receivers, n);
            return "queued".into();
        };
        match self.gates.admit(&alert.fingerprint, receivers, n) {
            incident::Admission::Send => {
                self.send(receivers, n);
                "queued".into()
            }
            incident::Admission::Held => {
                tracing::info!(rule = %alert.rule, target = %alert.target, "Playbook message held with its alert");
                "held with its alert, which waits for its cause".into()
            }
            incident::Admission::Folded { cause } => {
                tracing::info!(rule = %alert.rule, target = %alert.target, cause = %cause, "Playbook message not sent: its alert is folded into an incident");
                "not sent: the alert is folded into an incident".into()
            }
        }
    }

    /// Persists the notification for each receiver, then wakes their
    /// workers. If the outbox cannot be written (a full or read-only disk),
    /// the error is logged and nothing is silently dropped: the caller's
    /// log line says which notification was lost.
    pub fn send(&self, receivers: &[String], n: &Notification) {
        let known: Vec<String> = receivers
            .iter()
            .filter(|r| {
                let ok = self.wakers.contains_key(*r);
                if !ok {
                    tracing::error!(receiver = %r, "Notification for an unknown receiver dropped");
                }
                ok
            })
            .cloned()
            .collect();
        if known.is_empty() {
            return;
        }
        let payload = match serde_json::to_string(n) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "Notification could not be serialized");
                return;
            }
        };
        if let Err(e) = self.outbox.enqueue(&known, &n.idempotency_key(), &payload) {
            tracing::error!(error = %e, receivers = ?known, "Notification NOT queued: the outbox cannot be written");
            return;
        }
        for r in &known {
            self.wakers[r].notify_one();
        }
    }
}

impl NotifierHandle {
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The shortest claim on an entry being delivered.
const CLAIM_LEASE_MIN: Duration = Duration::from_secs(30);
/// Honoured up to this: beyond it, retry and be told again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

struct Worker {
    receiver: String,
    /// Read at each attempt, so a reload's new settings apply to the next.
    delivery: watch::Receiver<Arc<Delivery>>,
    notifier: Notifier,
    fallback: Option<String>,
    ha: Option<crate::ha::Ledger>,
}

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        let wake = self.notifier.wakers[&self.receiver].clone();
        let mut leadership = self.ha.as_ref().map(|l| l.leadership().clone());
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let head = match self.notifier.outbox.head(&self.receiver) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(receiver = %self.receiver, error = %e, "Cannot read the outbox; retrying");
                    Some(Entry {
                        id: -1,
                        receiver: String::new(),
                        idempotency_key: String::new(),
                        payload: String::new(),
                        created_ms: 0,
                        next_attempt_ms: outbox::now_ms() + 1000,
                        attempts: 0,
                    })
                }
            };
            let Some(entry) = head else {
                tokio::select! {
                    _ = wake.notified() => continue,
                    _ = shutdown.cancelled() => return,
                }
            };
            if let Some(leadership) = leadership.as_mut()
                && !self.may_deliver(&entry)
            {
                // A follower keeps its copy for the day it leads; the
                // leader's deliveries prune it meanwhile. Cut off from the
                // lease store, nobody may lead: it waits here all the same.
                tokio::select! {
                    alive = leadership.changed() => if !alive { return },
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(FOLLOWER_RECHECK) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
            let wait_ms = entry.next_attempt_ms - outbox::now_ms();
            if wait_ms > 0 || entry.id < 0 {
                // Look again at least every second: the head may be another
                // process's claim, delivered long before its lease ends.
                let nap = Duration::from_millis(wait_ms.clamp(0, 1000) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(nap) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
            match self.notifier.outbox.claim(entry.id, self.claim_lease()) {
                Ok(true) => self.attempt(entry, &shutdown).await,
                Ok(false) => continue, // another process is delivering it
                Err(e) => {
                    tracing::error!(receiver = %self.receiver, error = %e, "Cannot claim a notification; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// How long a claimed entry is ours: longer than any one attempt.
    fn claim_lease(&self) -> Duration {
        self.delivery
            .borrow()
            .sender
            .timeout()
            .saturating_mul(2)
            .max(CLAIM_LEASE_MIN)
    }

    async fn attempt(&self, entry: Entry, shutdown: &CancellationToken) {
        let n: Notification = match serde_json::from_str(&entry.payload) {
            Ok(n) => n,
            Err(e) => {
                let _ = self.notifier.outbox.dead(entry.id, &format!("unreadable: {e}"));
                self.notifier.deliveries.inc([&self.receiver, "dead"]);
                return;
            }
        };
        let ledger = self.ha.as_ref().filter(|l| l.fence().holds());
        if let Some(ledger) = ledger
            && self.delivered_before(ledger, &entry).await
        {
            return;
        }
        // The fence, again just before acting: the lease may have run out
        // while this worker claimed the entry or asked the ledger.
        if !self.may_deliver(&entry) {
            tracing::info!(receiver = %self.receiver, id = entry.id, "HA: delivery held: this instance no longer holds the lease; the entry stays in the outbox");
            if let Err(e) = self.notifier.outbox.release(entry.id) {
                tracing::error!(receiver = %self.receiver, error = %e, "Cannot release the held notification; it is retried after its claim ends");
            }
            return;
        }
        let delivery = Arc::clone(&self.delivery.borrow());
        let result = tokio::select! {
            r = delivery.sender.deliver(&n, &entry.idempotency_key) => r,
            // A delivery in flight at shutdown stays pending for next time.
            _ = shutdown.cancelled() => return,
        };
        let outbox = &self.notifier.outbox;
        match result {
            Ok(()) => {
                tracing::debug!(receiver = %self.receiver, id = entry.id, attempts = entry.attempts + 1, "Notification delivered");
                self.notifier.deliveries.inc([&self.receiver, "delivered"]);
                if let Err(e) = outbox.delivered(entry.id) {
                    tracing::error!(receiver = %self.receiver, error = %e, "Delivered, but cannot record it; it may be sent again");
                }
                if let Some(ledger) = ledger
                    && let Err(e) = ledger.mark_sent(&self.receiver, &entry.idempotency_key).await
                {
                    tracing::warn!(receiver = %self.receiver, error = %e, "HA: delivered, but cannot tell the other instances; a new leader may send it again");
                }
            }
            Err(f) => {
                let age = Duration::from_millis((outbox::now_ms() - entry.created_ms).max(0) as u64);
                if f.permanent || age >= delivery.give_up {
                    let why = if f.permanent {
                        "rejected by the receiver"
                    } else {
                        "given up after retrying"
                    };
                    tracing::error!(receiver = %self.receiver, id = entry.id, attempts = entry.attempts + 1, error = %f.error, "Notification {why}; dead-lettered");
                    let _ = outbox.dead(entry.id, &f.error);
                    self.notifier.deliveries.inc([&self.receiver, "dead"]);
                    if let Some(fallback) = &self.fallback {
                        self.notifier.send(
                            std::slice::from_ref(fallback),
                            &Notification::DeadLetter {
                                receiver: self.receiver.clone(),
                                idempotency_key: entry.idempotency_key.clone(),
                                error: f.error.clone(),
                                attempts: entry.attempts + 1,
                            },
                        );
                    }
                    return;
                }
                let wait = match f.retry_after {
                    Some(ra) => ra.min(MAX_RETRY_AFTER),
                    None => backoff(entry.attempts),
                };
                tracing::warn!(receiver = %self.receiver, id = entry.id, attempt = entry.attempts + 1, error = %f.error, wait_ms = wait.as_millis() as u64, "Delivery failed; retrying");
                self.notifier.deliveries.inc([&self.receiver, "retried"]);
                if let Err(e) = outbox.retry_later(entry.id, wait, &f.error) {
                    tracing::error!(receiver = %self.receiver, error = %e, "Cannot record the retry");
                }
            }
        }
    }
}

impl Worker {
    /// Under `[ha]`, whether this instance may deliver `entry` now: it holds
    /// the lease, or only it holds the entry (which then cannot go out
    /// twice, and would be lost if held). Without `[ha]`, always.
    fn may_deliver(&self, entry: &Entry) -> bool {
        match &self.ha {
            None => true,
            Some(ledger) => entry.id < 0 || ledger.fence().holds() || made_here(entry),
        }
    }

    /// Whether a leader before us delivered this entry; if so it is marked
    /// done here. When Redis cannot say, the entry is sent: a duplicate is
    /// better than a loss.
    async fn delivered_before(&self, ledger: &crate::ha::Ledger, entry: &Entry) -> bool {
        match ledger.sent(std::slice::from_ref(entry)).await {
            Ok(sent) if sent.first() == Some(&true) => {
                tracing::info!(receiver = %self.receiver, id = entry.id, "HA: already delivered by an earlier leader; not sent again");
                if let Err(e) = self.notifier.outbox.delivered_by_peer(entry.id) {
                    tracing::error!(receiver = %self.receiver, error = %e, "Cannot record the notification as delivered");
                }
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(receiver = %self.receiver, error = %e, "HA: cannot tell whether an earlier leader delivered this; sending it");
                false
            }
        }
    }
}

/// How often a follower looks again at a head entry it leaves to the leader.
const FOLLOWER_RECHECK: Duration = Duration::from_secs(1);

/// Whether only this instance holds the entry, so it delivers it whatever
/// its HA role: a playbook's message or outcome, an acknowledgement made
/// here, or a dead letter. Every instance holds its own copy of the rest.
fn made_here(entry: &Entry) -> bool {
    let here = |n: &AlertNotice| n.playbook.is_some() || n.acked_by.is_some();
    match serde_json::from_str::<Notification>(&entry.payload) {
        Ok(Notification::Message { .. } | Notification::DeadLetter { .. }) => true,
        Ok(Notification::Alert(n)) => here(&n),
        Ok(Notification::Group { alerts, .. }) => alerts.iter().any(here),
        Err(_) => false,
    }
}

/// Exponential from 500 ms to 60 s, with ±25 % jitter so that many workers
/// retrying together do not stay in lockstep.
fn backoff(attempts: i64) -> Duration {
    let exp = FIRST_BACKOFF
        .saturating_mul(1u32 << attempts.clamp(0, 16) as u32)
        .min(MAX_BACKOFF);
    let factor = rand::Rng::random_range(&mut rand::rng(), 0.75..1.25);
    exp.mul_f64(factor)
}
