//! Receiver settings that load but would not do what they seem to.

use std::ops::Range;

use crate::config::{ALERTMANAGER_RESOLVE_TIMEOUT, Config, ReceiverConfig, document};
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};

/// An Alertmanager resolves an alert it has not been sent again within its
/// `resolve_timeout` (5m by default): a `resend_interval` that long lets
/// alerts that still fire resolve there between two sends.
pub(super) fn alertmanager_lapses(config: &Config, diags: &mut Diagnostics) {
    let lapsing: Vec<(&String, std::time::Duration)> = config
        .receivers
        .iter()
        .filter_map(|(name, r)| match r {
            ReceiverConfig::Webhook(w) => Some((name, w.resend_interval()?)),
            _ => None,
        })
        .filter(|(_, every)| *every >= ALERTMANAGER_RESOLVE_TIMEOUT)
        .collect();
    if lapsing.is_empty() {
        return;
    }
    let Ok(file) = SourceFile::read(&config.path) else {
        return;
    };
    for (name, every) in lapsing {
        let span = resend_interval_span(&file, name).unwrap_or(0..0);
        diags.push(
            Diagnostic::warning(
                &file,
                span,
                format!(
                    "receiver `{name}`: resend_interval = \"{}\" lets firing alerts lapse: Alertmanager resolves an \
                     alert that is not sent again within its resolve_timeout (5m by default)",
                    humantime::format_duration(every)
                ),
            )
            .with_hint("keep it well under resolve_timeout, e.g. \"1m\" (the default)"),
        );
    }
}

/// Where `[receiver.NAME] resend_interval` is written.
fn resend_interval_span(file: &SourceFile, receiver: &str) -> Option<Range<usize>> {
    use toml::de::DeValue;
    let root = document::parse(file, &mut Diagnostics::default())?.into_inner();
    let (_, receivers) = root.into_iter().find(|(k, _)| k.get_ref() == "receiver")?;
    let DeValue::Table(receivers) = receivers.into_inner() else {
        return None;
    };
    let (_, fields) = receivers.into_iter().find(|(k, _)| k.get_ref() == receiver)?;
    let DeValue::Table(fields) = fields.into_inner() else {
        return None;
    };
    fields
        .into_iter()
        .find(|(k, _)| k.get_ref() == "resend_interval")
        .map(|(_, v)| v.span())
}
