//! The `log` receiver: each notification becomes a line of redops's log.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Notification;

pub async fn run(name: String, mut rx: mpsc::Receiver<Notification>, shutdown: CancellationToken) {
    loop {
        let n = tokio::select! {
            biased;
            n = rx.recv() => match n {
                Some(n) => n,
                None => return,
            },
            _ = shutdown.cancelled() => break,
        };
        write(&name, &n);
    }
    // A log line cannot fail: write out whatever is still queued.
    while let Ok(n) = rx.try_recv() {
        write(&name, &n);
    }
}

fn write(name: &str, n: &Notification) {
    match n {
        Notification::Alert { alert, playbook, .. } => tracing::warn!(
            receiver = %name,
            status = ?alert.status,
            rule = %alert.rule,
            target = %alert.target,
            severity = %alert.severity,
            value = alert.value.as_deref().unwrap_or(""),
            playbook = playbook.as_ref().map(|p| p.outcome.label()).unwrap_or(""),
            "ALERT {}",
            alert.summary
        ),
        Notification::Message {
            playbook, target, body, ..
        } => tracing::info!(receiver = %name, playbook, target, "MESSAGE {body}"),
    }
}
