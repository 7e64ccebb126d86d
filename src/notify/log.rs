//! The `log` receiver: each notification becomes a line of redops's log.

use super::{Notification, format};

pub struct LogSender {
    name: String,
}

impl LogSender {
    pub fn new(name: &str) -> Self {
        LogSender { name: name.to_owned() }
    }

    pub fn deliver(&self, n: &Notification) {
        let receiver = &self.name;
        match n {
            Notification::Alert(notice) => tracing::warn!(
                receiver,
                details = %format::details(notice).join("; "),
                "ALERT {}",
                format::headline(&notice.alert)
            ),
            Notification::Group { alerts, .. } => {
                for notice in alerts {
                    tracing::warn!(receiver, "ALERT {}", format::headline(&notice.alert));
                }
            }
            Notification::Message {
                playbook, target, body, ..
            } => {
                tracing::info!(receiver, playbook, target, "MESSAGE {body}")
            }
            Notification::DeadLetter {
                receiver: to, error, ..
            } => {
                tracing::error!(receiver, to, error, "NOTIFICATION GIVEN UP")
            }
        }
    }
}
