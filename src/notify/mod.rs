//! Notifications: what is sent, to whom, and the receivers that send it.
//!
//! The engine turns alert changes into [`Notification`]s; playbooks add
//! messages of their own with `notify()`. The [`Notifier`] hands each to a
//! per-receiver worker that delivers in order and retries with backoff, so a
//! slow receiver never delays detection or another receiver.

pub mod log;
pub mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alert;
use crate::config::ReceiverConfig;
use crate::playbooks::context::RunOutcome;

/// Notifications queued per receiver before new ones are refused (and counted).
const RECEIVER_QUEUE: usize = 10_000;

/// The version of the generic JSON schema (see docs/notifications.md).
pub const SCHEMA_VERSION: &str = "1";

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// An alert fired or resolved.
    Alert {
        #[serde(flatten)]
        alert: Alert,
        /// The outcome of the rule's playbook, when it ran before the notification.
        #[serde(skip_serializing_if = "Option::is_none")]
        playbook: Option<PlaybookSummary>,
        #[serde(skip)]
        receivers: Vec<String>,
    },
    /// A message a playbook sent with `notify(receiver, #{...})`.
    Message {
        receiver: String,
        playbook: String,
        run_id: String,
        target: String,
        body: serde_json::Value,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct PlaybookSummary {
    pub name: String,
    pub outcome: RunOutcome,
    pub findings: Vec<String>,
}

impl Notification {
    fn receivers(&self) -> Vec<String> {
        match self {
            Notification::Alert { receivers, .. } => receivers.clone(),
            Notification::Message { receiver, .. } => vec![receiver.clone()],
        }
    }

    /// A key that is the same for every retry of this notification, so a
    /// receiver that supports it can drop duplicates.
    pub fn idempotency_key(&self) -> String {
        match self {
            Notification::Alert { alert, .. } => format!(
                "{}-{:?}-{}",
                alert.fingerprint,
                alert.status,
                alert
                    .starts_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
            )
            .to_lowercase(),
            Notification::Message { run_id, body, .. } => {
                use sha2::{Digest, Sha256};
                let digest = Sha256::digest(body.to_string().as_bytes());
                format!("{run_id}-{}", hex::encode(&digest[..6]))
            }
        }
    }
}

/// Hands notifications to one worker per receiver.
#[derive(Clone)]
pub struct Notifier {
    queues: HashMap<String, mpsc::Sender<Notification>>,
}

pub struct NotifierHandle {
    tasks: JoinSet<()>,
}

impl Notifier {
    /// Starts a worker per receiver. Workers stop when `shutdown` fires and
    /// then spend at most `drain` delivering what is still queued.
    pub fn spawn(
        receivers: &std::collections::BTreeMap<String, ReceiverConfig>,
        shutdown: CancellationToken,
        drain: Duration,
    ) -> (Notifier, NotifierHandle) {
        let mut queues = HashMap::new();
        let mut tasks = JoinSet::new();
        for (name, config) in receivers {
            let (tx, rx) = mpsc::channel(RECEIVER_QUEUE);
            queues.insert(name.clone(), tx);
            match config {
                ReceiverConfig::Webhook(cfg) => {
                    let worker = webhook::WebhookWorker::new(name.clone(), cfg.clone());
                    tasks.spawn(worker.run(rx, shutdown.clone(), drain));
                }
                ReceiverConfig::Log(_) => {
                    tasks.spawn(log::run(name.clone(), rx, shutdown.clone()));
                }
            }
        }
        (Notifier { queues }, NotifierHandle { tasks })
    }

    pub fn receiver_names(&self) -> Vec<String> {
        self.queues.keys().cloned().collect()
    }

    /// Queues a notification for each of its receivers. Never blocks: a full
    /// queue drops the notification for that receiver, with an error log.
    pub fn send(&self, notification: Notification) {
        for receiver in notification.receivers() {
            let Some(queue) = self.queues.get(&receiver) else {
                tracing::error!(receiver, "Notification for an unknown receiver dropped");
                continue;
            };
            if let Err(e) = queue.try_send(notification.clone()) {
                tracing::error!(receiver, error = %e, "Notification dropped: receiver queue full or closed");
            }
        }
    }
}

impl NotifierHandle {
    /// Waits for every worker to finish draining.
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The generic JSON body of a notification.
pub fn generic_body(n: &Notification) -> serde_json::Value {
    let mut body = serde_json::to_value(n).unwrap_or_default();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("version".into(), SCHEMA_VERSION.into());
    }
    body
}
