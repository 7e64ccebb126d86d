//! `escalate(alert, level)`: a playbook that could not fix what it was
//! called for sends the alert again, with what it found so far, to the
//! receivers of the first step of `[escalation.<level>]`.

use rhai::{Dynamic, Engine, EvalAltResult};

use crate::alerts::Alert;
use crate::invocation::RunOutcome;
use crate::notify::{AlertNotice, Notification, PlaybookSummary};
use crate::playbooks::context;

pub fn register(engine: &mut Engine) {
    engine.register_fn("escalate", |alert: Dynamic, level: &str| escalate(alert, level));
}

fn escalate(alert: Dynamic, level: &str) -> Result<(), Box<EvalAltResult>> {
    if alert.is_unit() {
        return Err("escalate: this run has no alert to escalate (it was started by a schedule or by hand)".into());
    }
    let alert: Alert =
        rhai::serde::from_dynamic(&alert).map_err(|e| format!("escalate: the first argument is not an alert: {e}"))?;
    context::with_run(|run| {
        let Some(receivers) = run.ctx.host.escalations.get(level).cloned() else {
            let known: Vec<&str> = run.ctx.host.escalations.keys().map(String::as_str).collect();
            let error = format!(
                "no escalation policy named `{level}` (configured: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            );
            run.record(
                "escalate",
                format!("escalate {} to {level}", alert.rule),
                false,
                format!("failed: {error}"),
            );
            return Err(format!("escalate: {error}"));
        };
        let detail = format!("escalate {} to {level}: {}", alert.rule, receivers.join(", "));
        if run.ctx.dry_run {
            run.record("escalate", detail, true, "not sent (dry run)".into());
            return Ok(());
        }
        let mut notice = AlertNotice::new(alert.clone());
        // The summary gives the notification a key of its own: receivers that
        // drop duplicates must not drop the escalation as a repeat of the alert.
        notice.playbook = Some(PlaybookSummary {
            name: run.ctx.playbook.clone(),
            run_id: run.ctx.run_id.clone(),
            outcome: RunOutcome::Failed {
                error: format!("escalated to `{level}`"),
            },
            findings: run.findings.clone(),
        });
        let sent = run
            .ctx
            .notifier
            .send_about(Some(&alert), &receivers, &Notification::Alert(Box::new(notice)));
        run.record("escalate", detail, false, sent);
        Ok(())
    })?
    .map_err(Into::into)
}
