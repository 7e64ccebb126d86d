//! `notify(receiver, #{ ... })`: a playbook tells humans what it found.

use rhai::{Dynamic, Engine, EvalAltResult, Map};

use crate::notify::Notification;
use crate::playbooks::context;

pub fn register(engine: &mut Engine) {
    engine.register_fn("receivers", || -> Result<rhai::Array, Box<EvalAltResult>> {
        let mut names: Vec<String> = context::with_run(|run| run.ctx.receivers.iter().cloned().collect())?;
        names.sort();
        Ok(names.into_iter().map(Into::into).collect())
    });
    engine.register_fn("notify", |receiver: &str, message: Map| notify(receiver, message));
    engine.register_fn("notify", |receiver: &str, text: &str| {
        let mut m = Map::new();
        m.insert("text".into(), text.into());
        notify(receiver, m)
    });
}

fn notify(receiver: &str, message: Map) -> Result<(), Box<EvalAltResult>> {
    context::with_run(|run| {
        if !run.ctx.receivers.contains(receiver) {
            let mut known: Vec<&str> = run.ctx.receivers.iter().map(String::as_str).collect();
            known.sort();
            return Err(format!(
                "notify: no receiver named `{receiver}` (configured: {})",
                known.join(", ")
            ));
        }
        let body = rhai::serde::from_dynamic::<serde_json::Value>(&Dynamic::from_map(message))
            .map_err(|e| format!("notify: the message cannot be sent as JSON: {e}"))?;
        let detail = format!("notify {receiver}: {}", crate::secrets::redact(&body.to_string()));
        if run.ctx.dry_run {
            run.record("notify", detail, true, "not sent (dry run)".into());
            return Ok(());
        }
        let n = Notification::Message {
            playbook: run.ctx.playbook.clone(),
            run_id: run.ctx.run_id.clone(),
            target: run.ctx.target.clone(),
            body,
        };
        let sent = run
            .ctx
            .notifier
            .send_about(run.ctx.alert.as_ref(), &[receiver.to_owned()], &n);
        run.record("notify", detail, false, sent);
        Ok(())
    })?
    .map_err(Into::into)
}
