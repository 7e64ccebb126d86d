//! Alert changes get their shared start off the evaluation loop: the loop
//! submits them and goes on detecting; each alert's alignment runs in its
//! own lane, and the aligned actions come back on a channel for dispatch.
//!
//! Order holds where it matters: within one fingerprint a lane runs its
//! actions one after the other, so a firing is dispatched before its
//! resolve, and an alert before the invocation of its playbook. Different
//! alerts do not wait for each other, so a slow or unreachable lease store
//! costs each alert at most one ledger timeout, not one per alert before it.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Ledger;
use crate::invocation::{Action, Invocation};

pub struct Aligner {
    ledger: Ledger,
    /// The last alignment submitted per fingerprint, while it runs.
    lanes: HashMap<String, JoinHandle<()>>,
    aligned: mpsc::UnboundedSender<Vec<Action>>,
}

impl Aligner {
    /// The aligner, and where the aligned actions come out.
    pub fn new(ledger: Ledger) -> (Aligner, mpsc::UnboundedReceiver<Vec<Action>>) {
        let (aligned, rx) = mpsc::unbounded_channel();
        let aligner = Aligner {
            ledger,
            lanes: HashMap::new(),
            aligned,
        };
        (aligner, rx)
    }

    /// Queues `actions` for alignment; returns at once.
    pub fn submit(&mut self, actions: Vec<Action>) {
        self.lanes.retain(|_, lane| !lane.is_finished());
        // One group per fingerprint, in the order they came.
        let mut groups: Vec<(String, Vec<Action>)> = Vec::new();
        for action in actions {
            let fingerprint = match &action {
                Action::Alert { alert, .. } | Action::RunPlaybook(Invocation { alert: Some(alert), .. }) => {
                    alert.fingerprint.clone()
                }
                // A scheduled run has no alert to align and nothing to wait for.
                Action::RunPlaybook(_) => {
                    let _ = self.aligned.send(vec![action]);
                    continue;
                }
            };
            match groups.iter_mut().find(|(f, _)| *f == fingerprint) {
                Some((_, group)) => group.push(action),
                None => groups.push((fingerprint, vec![action])),
            }
        }
        for (fingerprint, group) in groups {
            let before = self.lanes.remove(&fingerprint);
            let (ledger, out) = (self.ledger.clone(), self.aligned.clone());
            let lane = tokio::spawn(async move {
                if let Some(before) = before {
                    let _ = before.await;
                }
                let _ = out.send(ledger.align(group).await);
            });
            self.lanes.insert(fingerprint, lane);
        }
    }

    /// Waits for every alignment in flight; the receiver then yields what
    /// is left and ends.
    pub async fn drain(self) {
        for (_, lane) in self.lanes {
            let _ = lane.await;
        }
    }
}
