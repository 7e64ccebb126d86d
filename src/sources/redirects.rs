//! News of a slot that moved, from whoever was redirected: a playbook's
//! routed `redis.cmd` or a node's sampler (a probe on a key) tells
//! [`report_moved`]; the cluster's source [`listen`]s and discovers again
//! at once when its view still puts the slot elsewhere, instead of at the
//! next sample.
//!
//! Process-wide and keyed by cluster name: playbook runs build their routes
//! on their own threads, far from the engine that spawned the source, and
//! a redirect is news, not a request. A report nobody listens to, or one
//! that finds the queue full, is dropped: the next sample discovers anyway.
//!
//! `ASK` is not news: during a migration the slot still belongs to its
//! master, and discovery would see the same map; the `MOVED` that follows
//! the migration is.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use tokio::sync::mpsc;

/// How many reports may wait for the source; more are the same news.
const QUEUE: usize = 64;

/// A `MOVED <slot> <to>` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub slot: u16,
    /// `host:port` of the node that serves the slot now.
    pub to: String,
}

static LISTENERS: LazyLock<Mutex<HashMap<String, mpsc::Sender<Moved>>>> = LazyLock::new(Mutex::default);

fn listeners() -> std::sync::MutexGuard<'static, HashMap<String, mpsc::Sender<Moved>>> {
    LISTENERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reports about `cluster` from now on; replaces an earlier listener
/// of the same cluster (a source restarted by a reload).
pub fn listen(cluster: &str) -> mpsc::Receiver<Moved> {
    let (tx, rx) = mpsc::channel(QUEUE);
    listeners().insert(cluster.to_owned(), tx);
    rx
}

/// Tells `cluster`'s source that a node answered `MOVED slot to`. Never
/// blocks: callers are a playbook's thread and a sampler's task.
pub fn report_moved(cluster: &str, slot: u16, to: &str) {
    let mut listeners = listeners();
    let Some(tx) = listeners.get(cluster) else { return };
    let moved = Moved {
        slot,
        to: to.to_owned(),
    };
    match tx.try_send(moved) {
        Ok(()) => tracing::debug!(cluster, slot, to, "MOVED reported to the cluster source"),
        Err(mpsc::error::TrySendError::Full(_)) => {}
        Err(mpsc::error::TrySendError::Closed(_)) => {
            listeners.remove(cluster);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reaches_the_clusters_listener_only() {
        let mut a = listen("redirects-test-a");
        let mut b = listen("redirects-test-b");
        report_moved("redirects-test-a", 42, "127.0.0.1:7001");
        report_moved("redirects-test-none", 1, "127.0.0.1:7002");
        assert_eq!(
            a.try_recv().ok(),
            Some(Moved {
                slot: 42,
                to: "127.0.0.1:7001".into()
            })
        );
        assert!(b.try_recv().is_err());
        drop(a);
        // A listener gone: the report is dropped and the entry forgotten.
        report_moved("redirects-test-a", 42, "127.0.0.1:7001");
        assert!(!listeners().contains_key("redirects-test-a"));
    }
}
