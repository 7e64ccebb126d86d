//! What each receiver format sends: redops's generic JSON, Slack blocks,
//! PagerDuty Events API v2, Alertmanager's `/api/v2/alerts`, and email text.

use serde_json::{Value, json};

use super::{AlertNotice, Notification, SCHEMA_VERSION};
use crate::alerts::{Alert, AlertStatus, Severity};
use crate::config::WebhookFormat;
use crate::template::{Template, Value as TemplateValue, Vars, labels_value};

/// The JSON bodies to POST for one notification, in order. Most formats
/// send one; PagerDuty takes one event per alert.
pub fn bodies(format: WebhookFormat, n: &Notification, routing_key: Option<&str>) -> Vec<Value> {
    match format {
        WebhookFormat::Generic => vec![generic(n)],
        WebhookFormat::Slack => vec![slack(n)],
        WebhookFormat::Pagerduty => pagerduty(n, routing_key.unwrap_or_default()),
        WebhookFormat::Alertmanager => vec![alertmanager(n)],
    }
}

/// redops's own schema, version 1 (docs/notifications.md).
pub fn generic(n: &Notification) -> Value {
    let mut body = serde_json::to_value(n).unwrap_or_default();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("version".into(), SCHEMA_VERSION.into());
    }
    body
}

fn status_word(a: &Alert) -> &'static str {
    match a.status {
        AlertStatus::Firing => "FIRING",
        AlertStatus::Resolved => "RESOLVED",
    }
}

/// One line a human reads first: status, severity, rule, target, summary.
pub fn headline(a: &Alert) -> String {
    format!(
        "[{}] {} {} on {}: {}",
        status_word(a),
        a.severity.as_str().to_uppercase(),
        a.rule,
        a.target,
        a.summary
    )
}

/// What redops did and where to look: the playbook outcome, the value, the runbook.
pub fn details(notice: &AlertNotice) -> Vec<String> {
    let a = &notice.alert;
    let mut lines = Vec::new();
    if let Some(v) = &a.value {
        lines.push(format!("Value: {v}"));
    }
    if let Some(p) = &notice.playbook {
        let mut line = format!("Playbook {}: {}", p.name, p.outcome.label());
        if !p.findings.is_empty() {
            line.push_str(" — ");
            line.push_str(&p.findings.join("; "));
        }
        lines.push(line);
    }
    if let Some(by) = &notice.acked_by {
        lines.push(format!("Acknowledged by {by}"));
    }
    if let Some(explains) = explains(notice) {
        lines.push(format!("Explains: {explains}"));
    }
    for (key, text) in &a.annotations {
        lines.push(format!("{}: {text}", annotation_title(key)));
    }
    if let Some(r) = &a.runbook {
        lines.push(format!("Runbook: {r}"));
    }
    lines.push(format!("Since {}", humantime::format_rfc3339_seconds(a.starts_at)));
    lines
}

/// `description` reads `Description`, `runbook_hint` reads `Runbook hint`.
fn annotation_title(key: &str) -> String {
    let words = key.replace(['_', '-'], " ");
    let mut chars = words.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The alerts an incident's cause folded, one phrase each with its status.
fn explains(notice: &AlertNotice) -> Option<String> {
    if notice.folded.is_empty() {
        return None;
    }
    let folded: Vec<String> = notice
        .folded
        .iter()
        .map(|f| {
            let status = match f.status {
                AlertStatus::Firing => "firing",
                AlertStatus::Resolved => "resolved",
            };
            format!("{} on {} ({}, {status})", f.rule, f.target, f.severity)
        })
        .collect();
    Some(folded.join("; "))
}

fn slack(n: &Notification) -> Value {
    let section = |text: String| json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } });
    let (fallback, blocks): (String, Vec<Value>) = match n {
        Notification::Alert(notice) => {
            let a = &notice.alert;
            let head = headline(a);
            (
                head.clone(),
                vec![
                    section(format!("*{}*", escape_slack(&head))),
                    json!({ "type": "context", "elements": details(notice).iter()
                        .map(|d| json!({ "type": "mrkdwn", "text": escape_slack(d) })).collect::<Vec<_>>() }),
                ],
            )
        }
        Notification::Group { alerts, .. } => {
            let lines: Vec<String> = alerts
                .iter()
                .map(|n| format!("• {}", escape_slack(&headline(&n.alert))))
                .collect();
            (format!("{} alerts", alerts.len()), vec![section(lines.join("\n"))])
        }
        Notification::Message {
            playbook, target, body, ..
        } => {
            let text = body
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string());
            let line = format!("{playbook} on {target}: {text}");
            (line.clone(), vec![section(escape_slack(&line))])
        }
        Notification::DeadLetter { receiver, error, .. } => {
            let line = format!("A notification to {receiver} was given up: {error}");
            (line.clone(), vec![section(escape_slack(&line))])
        }
    };
    json!({ "text": fallback, "blocks": blocks })
}

fn escape_slack(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn pd_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium | Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn pagerduty(n: &Notification, routing_key: &str) -> Vec<Value> {
    let event = |notice: &AlertNotice| {
        let a = &notice.alert;
        let action = if notice.acked_by.is_some() && a.status == AlertStatus::Firing {
            "acknowledge"
        } else if a.status == AlertStatus::Resolved {
            "resolve"
        } else {
            "trigger"
        };
        let mut e = json!({
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": a.fingerprint,
            "payload": {
                "summary": truncate(&headline(a), 1024),
                "source": a.target,
                "severity": pd_severity(a.severity),
                "timestamp": humantime::format_rfc3339_millis(a.starts_at).to_string(),
                "component": a.rule,
                "group": a.labels.get("group").cloned().unwrap_or_default(),
                "custom_details": {
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "value": a.value,
                    "details": details(notice),
                },
            },
        });
        if let Some(r) = &a.runbook {
            e["links"] = json!([{ "href": r, "text": "Runbook" }]);
        }
        e
    };
    match n {
        Notification::Alert(notice) => vec![event(notice)],
        Notification::Group { alerts, .. } => alerts.iter().map(event).collect(),
        Notification::Message {
            playbook,
            target,
            body,
            run_id,
            ..
        } => vec![json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": format!("redops-message-{run_id}"),
            "payload": { "summary": truncate(&format!("{playbook} on {target}: {body}"), 1024), "source": target, "severity": "info" },
        })],
        Notification::DeadLetter {
            receiver,
            error,
            idempotency_key,
            ..
        } => vec![json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": format!("redops-dead-{idempotency_key}"),
            "payload": { "summary": format!("redops gave up a notification to {receiver}: {error}"), "source": "redops", "severity": "error" },
        })],
    }
}

fn alertmanager(n: &Notification) -> Value {
    let one = |notice: &AlertNotice| {
        let a = &notice.alert;
        let mut labels = a.labels.clone();
        labels.insert("alertname".into(), a.rule.clone());
        let mut annotations: serde_json::Map<String, Value> = a
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        annotations.insert("summary".into(), a.summary.clone().into());
        if let Some(v) = &a.value {
            annotations.insert("value".into(), v.clone().into());
        }
        if let Some(r) = &a.runbook {
            annotations.insert("runbook_url".into(), r.clone().into());
        }
        if let Some(p) = &notice.playbook {
            annotations.insert(
                "playbook".into(),
                format!("{}: {} {}", p.name, p.outcome.label(), p.findings.join("; ")).into(),
            );
        }
        if let Some(explains) = explains(notice) {
            annotations.insert("explains".into(), explains.into());
        }
        let mut alert = json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": humantime::format_rfc3339_millis(a.starts_at).to_string(),
        });
        if let Some(end) = a.ends_at {
            alert["endsAt"] = humantime::format_rfc3339_millis(end).to_string().into();
        }
        alert
    };
    match n {
        Notification::Alert(notice) => json!([one(notice)]),
        Notification::Group { alerts, .. } => Value::Array(alerts.iter().map(one).collect()),
        // Alertmanager only takes alerts; messages become info alerts.
        Notification::Message {
            playbook, target, body, ..
        } => json!([{
            "labels": { "alertname": format!("redops_{playbook}"), "target": target, "severity": "info" },
            "annotations": { "summary": body.to_string() },
        }]),
        Notification::DeadLetter { receiver, error, .. } => json!([{
            "labels": { "alertname": "redops_notification_dead", "receiver": receiver, "severity": "high" },
            "annotations": { "summary": error },
        }]),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let cut = (0..=max).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
    s[..cut].to_owned()
}

/// A header value built from alert text: no CR, LF or other control
/// characters can reach the wire, so a key name can never add a header.
pub fn header_safe(s: &str) -> String {
    let cleaned: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    truncate(cleaned.trim(), 200)
}

pub const DEFAULT_SUBJECT: &str = "[{{ status }}] {{ severity }}: {{ rule }} on {{ target }}";
pub const DEFAULT_BODY: &str =
    "{{ summary }}\n\n{{ details }}\n\nLabels: {{ labels }}\nFingerprint: {{ fingerprint }}\n";

/// What an email's templates see: the alert's fields, `details` (the
/// lines every format sends), `labels`, `annotations`, and each label by
/// its own name where no field has it.
fn email_vars(notice: &AlertNotice) -> Vars {
    let a = &notice.alert;
    let mut vars: Vars = a
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), TemplateValue::from(v.as_str())))
        .collect();
    for (name, value) in [
        ("status", status_word(a).to_owned()),
        ("severity", a.severity.as_str().to_uppercase()),
        ("rule", a.rule.clone()),
        ("target", a.target.clone()),
        ("summary", a.summary.clone()),
        ("value", a.value.clone().unwrap_or_default()),
        ("runbook", a.runbook.clone().unwrap_or_default()),
        ("description", a.description.clone().unwrap_or_default()),
        ("fingerprint", a.fingerprint.clone()),
        ("details", details(notice).join("\n")),
    ] {
        vars.insert(name.into(), value.into());
    }
    vars.insert("labels".into(), labels_value(&a.labels));
    vars.insert("annotations".into(), TemplateValue::from_serialize(&a.annotations));
    vars
}

/// Subject and body of an email, from the receiver's templates.
pub fn email(n: &Notification, subject: &Template, body: &Template) -> (String, String) {
    match n {
        Notification::Alert(notice) => {
            let vars = email_vars(notice);
            (
                header_safe(&subject.render_or_raw(&vars, "email subject")),
                body.render_or_raw(&vars, "email body"),
            )
        }
        Notification::Group { alerts, .. } => (
            header_safe(&format!("[redops] {} alerts", alerts.len())),
            alerts
                .iter()
                .map(|n| format!("{}\n  {}", headline(&n.alert), details(n).join("\n  ")))
                .collect::<Vec<_>>()
                .join("\n\n"),
        ),
        Notification::Message {
            playbook, target, body, ..
        } => (
            header_safe(&format!("[redops] {playbook} on {target}")),
            body.get("text")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string()),
        ),
        Notification::DeadLetter {
            receiver,
            error,
            attempts,
            ..
        } => (
            header_safe(&format!("[redops] notification to {receiver} given up")),
            format!("A notification to {receiver} failed {attempts} times and was given up: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_cannot_carry_line_breaks() {
        assert_eq!(
            header_safe("cache:key\r\nBcc: evil@example.com"),
            "cache:key  Bcc: evil@example.com"
        );
    }
}
