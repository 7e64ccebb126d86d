//! Prometheus rule files → a redops rule file.
//!
//! Reads `groups[].rules[]` (alert, expr, for, keep_firing_for, labels,
//! annotations) and writes one `[[rule]]` per alerting rule. A rule whose
//! expression does not translate is written commented out, with the reason,
//! so the file still loads and the reader sees what is left to do.
//! Recording rules have no redops counterpart and are listed as such.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{annotation, promql};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
    /// Prometheus's evaluation interval: redops evaluates on every sample.
    #[serde(default)]
    #[allow(dead_code)]
    interval: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    limit: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    query_offset: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<Spanned<PromRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromRule {
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    record: Option<String>,
    expr: String,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The file is not a Prometheus rule file; `at` is `file:line:col`.
    #[error("{at}: {message}")]
    Yaml { at: String, message: String },
}

/// One rule that was not translated, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotTranslated {
    pub name: String,
    /// `file:line:col` of the rule.
    pub at: String,
    pub reason: String,
}

/// What an import made.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The redops rule file.
    pub toml: String,
    /// The names of the rules translated.
    pub translated: Vec<String>,
    pub not_translated: Vec<NotTranslated>,
}

pub fn import_file(path: &Path) -> Result<Imported, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.display().to_string(),
        source,
    })?;
    import_str(&path.display().to_string(), &text)
}

/// Imports the rule file `text`, named `file` in messages and comments.
pub fn import_str(file: &str, text: &str) -> Result<Imported, ImportError> {
    let parsed: RuleFile = serde_saphyr::from_str(text).map_err(|e| {
        let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        ImportError::Yaml {
            at: format!("{file}:{line}:{col}"),
            message: yaml_message(&e.to_string()),
        }
    })?;
    let mut out = Imported {
        toml: String::new(),
        translated: Vec::new(),
        not_translated: Vec::new(),
    };
    let mut body = String::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut alerts = 0;
    for group in &parsed.groups {
        for spanned in &group.rules {
            let rule = &spanned.value;
            let at = format!("{file}:{}:{}", spanned.referenced.line(), spanned.referenced.column());
            let Some(alert) = &rule.alert else {
                let name = rule.record.clone().unwrap_or_else(|| "(unnamed)".into());
                let reason = "a recording rule: redops has none; an alert reading its series needs its expression \
                              instead"
                    .to_owned();
                let _ = writeln!(body, "# Recording rule {name} ({at}) not imported: {reason}\n");
                out.not_translated.push(NotTranslated { name, at, reason });
                continue;
            };
            alerts += 1;
            let seen = names.entry(alert.clone()).or_default();
            *seen += 1;
            let name = if *seen == 1 {
                alert.clone()
            } else {
                format!("{alert}_{seen}")
            };
            match render_rule(&name, alert, &group.name, &group.labels, rule, &at) {
                Ok(text) => {
                    body.push_str(&text);
                    out.translated.push(name);
                }
                Err((text, reason)) => {
                    body.push_str(&text);
                    out.not_translated.push(NotTranslated { name, at, reason });
                }
            }
        }
    }
    let _ = writeln!(
        out.toml,
        "# Imported by `redops import prometheus` from {file}.\n\
         # {} of {alerts} alerting rule(s) translated; what was not is commented out with the reason.\n\
         # Check it with `redops check`; docs/migrating-from-prometheus.md says what differs.\n",
        out.translated.len()
    );
    out.toml.push_str(&body);
    Ok(out)
}

/// The `[[rule]]` of one alert: `Ok` when translated, `Err` with the
/// commented-out rule and the reason when not.
fn render_rule(
    name: &str,
    alert: &str,
    group: &str,
    group_labels: &BTreeMap<String, String>,
    rule: &PromRule,
    at: &str,
) -> Result<String, (String, String)> {
    let mut notes = Vec::new();
    let mut failure = None;
    let when = match promql::translate(&rule.expr) {
        Ok(t) => {
            notes.extend(t.notes);
            if t.group {
                notes.push(
                    "it reads a Sentinel group's own sample, so it fires on the group's target (the [[sentinel]] name)"
                        .into(),
                );
            }
            t.when
        }
        Err(e) => {
            failure = Some(e.0);
            "TODO".into()
        }
    };
    let mut fields: Vec<(&str, toml::Value)> = vec![
        ("name", name.into()),
        ("source", "sample".into()),
        ("when", when.into()),
    ];
    for (key, value) in [("for", &rule.for_), ("keep_firing_for", &rule.keep_firing_for)] {
        let Some(value) = value else { continue };
        match prom_duration(value) {
            Ok(d) => fields.push((key, humantime::format_duration(d).to_string().into())),
            Err(e) => {
                failure.get_or_insert(format!("`{key}: {value}`: {e}"));
            }
        }
    }
    let mut labels = group_labels.clone();
    labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let severity = labels.remove("severity");
    let (severity, note) = severity_of(severity.as_deref());
    notes.extend(note);
    fields.push(("severity", severity.into()));
    // `summary` is the rule's headline and `runbook_url` its runbook; every
    // other annotation (`description` included) keeps its name.
    let (mut summary, mut runbook) = (None, None);
    let mut annotations = toml::Table::new();
    for (key, text) in &rule.annotations {
        if matches!(key.as_str(), "runbook_url" | "runbook") {
            runbook = Some(text.clone());
            continue;
        }
        let t = annotation::translate(text);
        notes.extend(t.notes.into_iter().map(|n| format!("{key}: {n}")));
        match key.as_str() {
            "summary" => summary = Some(t.text),
            _ => {
                annotations.insert(key.clone(), t.text.into());
            }
        }
    }
    for (key, value) in [("summary", summary), ("runbook", runbook)] {
        if let Some(value) = value {
            fields.push((key, value.into()));
        }
    }
    if !annotations.is_empty() {
        fields.push(("annotations", toml::Value::Table(annotations)));
    }
    if !labels.is_empty() {
        let table: toml::Table = labels.into_iter().map(|(k, v)| (k, toml::Value::String(v))).collect();
        fields.push(("labels", toml::Value::Table(table)));
    }

    let mut text = String::new();
    let heading = if name == alert {
        format!("{alert} ({at}, group \"{group}\")")
    } else {
        format!("{alert} ({at}, group \"{group}\"), renamed {name}: rule names are unique in redops")
    };
    let _ = writeln!(text, "# {heading}");
    for line in rule.expr.trim().lines() {
        let _ = writeln!(text, "#   expr: {}", line.trim_end());
    }
    if let Some(reason) = &failure {
        let _ = writeln!(text, "# NOT TRANSLATED: {reason}");
    }
    for note in &notes {
        let _ = writeln!(text, "# note: {note}");
    }
    let comment = if failure.is_some() { "# " } else { "" };
    let _ = writeln!(text, "{comment}[[rule]]");
    for (key, value) in fields {
        let rendered = match value {
            toml::Value::Table(t) => inline_table(&t),
            other => other.to_string(),
        };
        for (i, line) in rendered.lines().enumerate() {
            if i == 0 {
                let _ = writeln!(text, "{comment}{key} = {line}");
            } else {
                let _ = writeln!(text, "{comment}{line}");
            }
        }
    }
    text.push('\n');
    match failure {
        None => Ok(text),
        Some(reason) => Err((text, reason)),
    }
}

fn inline_table(t: &toml::Table) -> String {
    let parts: Vec<String> = t
        .iter()
        .map(|(k, v)| {
            let bare = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let key = if bare {
                k.clone()
            } else {
                toml::Value::String(k.clone()).to_string()
            };
            format!("{key} = {v}")
        })
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

/// redops's severity for a Prometheus `severity` label.
fn severity_of(label: Option<&str>) -> (&'static str, Option<String>) {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("critical") => ("critical", None),
        Some("high") => ("high", None),
        Some("medium") => ("medium", None),
        Some("warning") => ("warning", None),
        Some("info") => ("info", None),
        Some("page") => ("critical", Some("severity \"page\" is written critical".into())),
        Some("error") => ("high", Some("severity \"error\" is written high".into())),
        Some(other) => (
            "warning",
            Some(format!("severity \"{other}\" is not one of redops's; written warning")),
        ),
        None => (
            "warning",
            Some("no severity label; written warning, redops's default".into()),
        ),
    }
}

/// A Prometheus duration: `1h30m`, `5m`, `90s`, `1d`, `2w`, `1y`.
fn prom_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("an empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is not a Prometheus duration (e.g. 5m, 1h30m)"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let secs = match &rest[..unit_len] {
            "ms" => {
                total += Duration::from_millis(n);
                rest = &rest[unit_len..];
                continue;
            }
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            _ => return Err(format!("`{text}` is not a Prometheus duration (e.g. 5m, 1h30m)")),
        };
        total += Duration::from_secs(n.saturating_mul(secs));
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// serde-saphyr's message without the location it repeats (we lead with
/// `file:line:col`).
fn yaml_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first.to_owned(),
    }
}

#[cfg(test)]
mod tests;
