//! `log.info(msg)`, `log.warn(msg)`, `log.error(msg)`: what a playbook
//! reports. Each line goes to the engine's log and into the run's findings,
//! which notifications quote.

use rhai::Engine;

use crate::playbooks::context;

#[derive(Debug, Clone, Copy)]
pub struct LogApi;

/// Findings longer than this are cut: they end up in pages and emails.
const MAX_FINDING_LEN: usize = 2000;

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<LogApi>("Log");
    engine.register_fn("info", |_: &mut LogApi, msg: &str| write("info", msg));
    engine.register_fn("warn", |_: &mut LogApi, msg: &str| write("warn", msg));
    engine.register_fn("error", |_: &mut LogApi, msg: &str| write("error", msg));
}

pub fn write(level: &str, msg: &str) {
    let msg = crate::secrets::redact(msg);
    let _ = context::with_run(|run| {
        let (playbook, target) = (run.ctx.playbook.as_str(), run.ctx.target.as_str());
        match level {
            "error" => tracing::error!(playbook, target, "{msg}"),
            "warn" => tracing::warn!(playbook, target, "{msg}"),
            "debug" => tracing::debug!(playbook, target, "{msg}"),
            _ => tracing::info!(playbook, target, "{msg}"),
        }
        if level != "debug" {
            let mut line = if level == "info" {
                msg.clone()
            } else {
                format!("{level}: {msg}")
            };
            if line.len() > MAX_FINDING_LEN {
                let cut = (0..=MAX_FINDING_LEN)
                    .rev()
                    .find(|i| line.is_char_boundary(*i))
                    .unwrap_or(0);
                line.truncate(cut);
                line.push('…');
            }
            run.findings.push(line);
        }
    });
}
