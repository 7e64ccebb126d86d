//! The alerts redops raises about itself: its state directory unusable, a
//! reload that failed. They go to the router directly, with no rule and no
//! receivers of their own: the routes decide who hears of them.

use std::time::SystemTime;

use crate::alerts::{Alert, AlertStatus, Severity, fingerprint};

/// `state_dir_unusable`: redops runs without durable state.
pub(super) fn state_dir_alert(problem: &str) -> Alert {
    let summary = format!(
        "redops runs without durable state: {}; notifications pending at a restart would be lost",
        crate::secrets::redact(problem)
    );
    let mut alert = internal_alert("state_dir_unusable", Severity::Critical, summary, SystemTime::now());
    describe(
        &mut alert,
        "Fix the state directory's permissions or free space, then restart redops.",
    );
    alert
}

/// `config_reload_failed`, firing since the first of a run of failed
/// reloads (`previous`), so that each new failure updates one alert.
pub(super) fn reload_alert(first_error: &str, errors: usize, previous: Option<&Alert>, wall: SystemTime) -> Alert {
    let summary =
        format!("Reload failed with {errors} error(s), the last good rules keep running; first: {first_error}");
    let starts_at = previous.map_or(wall, |p| p.starts_at);
    let mut alert = internal_alert("config_reload_failed", Severity::High, summary, starts_at);
    alert.value = Some(errors.to_string());
    describe(&mut alert, "Run `redops check` for every problem.");
    alert
}

/// Sets the alert's description, which receivers also get as the
/// `description` annotation.
fn describe(alert: &mut Alert, text: &str) {
    alert.description = Some(text.to_owned());
    alert.annotations.insert("description".to_owned(), text.to_owned());
}

fn internal_alert(rule: &str, severity: Severity, summary: String, starts_at: SystemTime) -> Alert {
    let target = "redops";
    Alert {
        fingerprint: fingerprint(rule, target),
        rule: rule.into(),
        target: target.into(),
        severity,
        status: AlertStatus::Firing,
        labels: [("rule", rule), ("target", target), ("severity", severity.as_str())]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        summary,
        value: None,
        starts_at,
        ends_at: None,
        runbook: None,
        description: None,
        annotations: Default::default(),
    }
}
