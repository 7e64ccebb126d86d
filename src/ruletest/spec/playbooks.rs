//! The `[[playbook_test]]` of a test file, and its canned Redis replies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{duration, unknown_name};
use crate::alerts::{Alert, AlertStatus, Severity};
use crate::config::PlaybookConfig;
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::playbooks::Playbook;
use crate::ruletest::playbook_test::{AuditMatch, CannedReply, PlaybookExpect, PlaybookTest, Reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlaybookTestSpec {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    playbook: Option<Spanned<String>>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    target_labels: BTreeMap<String, String>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    alert: Option<AlertInputSpec>,
    #[serde(default)]
    redis: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    receivers: Vec<String>,
    #[serde(default = "yes")]
    dry_run: bool,
    #[serde(default)]
    allow_commands: Vec<String>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    expect_outcome: Option<OutcomeSpec>,
    #[serde(default)]
    expect_error_contains: Option<String>,
    #[serde(default)]
    expect_result_contains: Option<String>,
    #[serde(default)]
    expect_audit: Option<Vec<String>>,
    #[serde(default)]
    audit_match: AuditMatch,
    #[serde(default)]
    expect_no_audit: Vec<String>,
    #[serde(default)]
    expect_findings_contains: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum OutcomeSpec {
    Succeeded,
    Failed,
    TimedOut,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertInputSpec {
    rule: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default = "warning")]
    severity: Severity,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    runbook: Option<String>,
}

fn warning() -> Severity {
    Severity::Warning
}

pub(super) fn playbook_test(
    file: &SourceFile,
    spec: PlaybookTestSpec,
    playbooks: &BTreeMap<String, Arc<Playbook>>,
    diags: &mut Diagnostics,
) -> Option<PlaybookTest> {
    let errors_before = diags.error_count();
    let names: Vec<&str> = playbooks.keys().map(String::as_str).collect();
    let playbook = match &spec.playbook {
        Some(p) => {
            let found = playbooks.get(p.get_ref()).cloned();
            if found.is_none() {
                diags.push(unknown_name(file, p.span(), "playbook", p.get_ref(), &names));
            }
            found
        }
        None if playbooks.len() == 1 => playbooks.values().next().cloned(),
        None => {
            if !playbooks.is_empty() {
                diags.push(
                    Diagnostic::error(file, spec.name.span(), "which playbook does this test run?")
                        .with_hint(format!("add playbook = \"...\", one of: {}", names.join(", "))),
                );
            }
            None
        }
    };
    let timeout = match &spec.timeout {
        Some(t) => duration(file, t, diags),
        None => Some(PlaybookConfig::default().timeout),
    };
    let mut replies = Vec::new();
    for (line, value) in spec.redis {
        let words = crate::policy::split_command_line(&line);
        let span = value.span();
        match reply(&words, value.into_inner()) {
            Ok(reply) if !words.is_empty() => replies.push(CannedReply { words, reply }),
            Ok(_) => diags.push(Diagnostic::error(file, span, "a canned reply needs a command, e.g. \"INFO memory\"")),
            Err(message) => diags.push(
                Diagnostic::error(file, span, format!("redis `{line}`: {message}"))
                    .with_hint("a reply is a string, a number, a boolean, an array, a table (INFO fields), { error = \"...\" }, { nil = true } or { replies = [...] }"),
            ),
        }
    }
    let checks_something = spec.expect_outcome.is_some()
        || spec.expect_error_contains.is_some()
        || spec.expect_result_contains.is_some()
        || spec.expect_audit.is_some()
        || !spec.expect_no_audit.is_empty()
        || !spec.expect_findings_contains.is_empty();
    if !checks_something {
        diags.push(
            Diagnostic::error(
                file,
                spec.name.span(),
                format!("test `{}` expects nothing", spec.name.get_ref()),
            )
            .with_hint("add expect_outcome, expect_audit, expect_findings_contains, ..."),
        );
    }
    let target = spec.target.unwrap_or_else(|| "test".into());
    let alert = spec.alert.map(|a| {
        let target = a.target.unwrap_or_else(|| target.clone());
        let mut labels = spec.target_labels.clone();
        labels.extend(a.labels);
        labels.insert("rule".into(), a.rule.clone());
        labels.insert("target".into(), target.clone());
        labels.insert("severity".into(), a.severity.to_string());
        Alert {
            fingerprint: crate::alerts::fingerprint(&a.rule, &target),
            summary: a.summary.unwrap_or_else(|| format!("{} on {target}", a.rule)),
            rule: a.rule,
            target,
            severity: a.severity,
            status: AlertStatus::Firing,
            labels,
            value: a.value,
            starts_at: std::time::UNIX_EPOCH + Duration::from_secs(1_704_067_200),
            ends_at: None,
            runbook: a.runbook,
            description: None,
            annotations: Default::default(),
        }
    });
    if diags.error_count() > errors_before {
        return None;
    }
    Some(PlaybookTest {
        name: spec.name.get_ref().clone(),
        line: file.line_col(spec.name.span().start).0,
        playbook: playbook?,
        target,
        target_labels: spec.target_labels,
        params: spec.params,
        alert,
        replies,
        receivers: spec.receivers,
        dry_run: spec.dry_run,
        allow_commands: spec.allow_commands,
        timeout: timeout?,
        expect: PlaybookExpect {
            outcome: spec.expect_outcome.map(|o| {
                match o {
                    OutcomeSpec::Succeeded => "succeeded",
                    OutcomeSpec::Failed => "failed",
                    OutcomeSpec::TimedOut => "timed_out",
                }
                .to_owned()
            }),
            error_contains: spec.expect_error_contains,
            result_contains: spec.expect_result_contains,
            audit: spec.expect_audit,
            audit_match: spec.audit_match,
            no_audit: spec.expect_no_audit,
            findings_contains: spec.expect_findings_contains,
        },
    })
}

/// A canned reply from its TOML. A table answers `INFO` as the fields of
/// its text; for other commands it is a map, unless it is one of the forms
/// `{ error = "..." }`, `{ nil = true }` or `{ replies = [...] }`.
fn reply(words: &[String], value: toml::Value) -> Result<Reply, String> {
    use redis::Value as V;
    let is_info = words.first().is_some_and(|w| w.eq_ignore_ascii_case("INFO"));
    Ok(match value {
        toml::Value::Table(t) if t.len() == 1 && t.contains_key("error") => match &t["error"] {
            toml::Value::String(e) => Reply::Error(e.clone()),
            _ => return Err("`error` is the error text the server answers".into()),
        },
        toml::Value::Table(t) if t.len() == 1 && t.contains_key("nil") => Reply::Value(V::Nil),
        toml::Value::Table(mut t) if t.len() == 1 && t.contains_key("replies") => match t.remove("replies") {
            Some(toml::Value::Array(items)) if !items.is_empty() => {
                Reply::Sequence(items.into_iter().map(|i| reply(words, i)).collect::<Result<_, _>>()?)
            }
            _ => return Err("`replies` is a non-empty array, one reply per call".into()),
        },
        toml::Value::Table(t) if is_info => {
            let mut text = String::new();
            for (k, v) in t {
                let v = match v {
                    toml::Value::String(s) => s,
                    toml::Value::Boolean(b) => u8::from(b).to_string(),
                    toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Datetime(_) => v.to_string(),
                    _ => return Err(format!("INFO field `{k}` must be a string, a number or a boolean")),
                };
                text.push_str(&format!("{k}:{v}\r\n"));
            }
            Reply::Value(V::BulkString(text.into_bytes()))
        }
        other => Reply::Value(value_of(other)?),
    })
}

fn value_of(value: toml::Value) -> Result<redis::Value, String> {
    use redis::Value as V;
    Ok(match value {
        toml::Value::String(s) => V::BulkString(s.into_bytes()),
        toml::Value::Integer(i) => V::Int(i),
        toml::Value::Float(f) => V::Double(f),
        toml::Value::Boolean(b) => V::Boolean(b),
        toml::Value::Datetime(d) => V::BulkString(d.to_string().into_bytes()),
        toml::Value::Array(items) => V::Array(items.into_iter().map(value_of).collect::<Result<_, _>>()?),
        toml::Value::Table(t) => V::Map(
            t.into_iter()
                .map(|(k, v)| Ok((V::BulkString(k.into_bytes()), value_of(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_tables_become_info_text() {
        let words = vec!["INFO".to_owned(), "memory".to_owned()];
        let value: toml::Value =
            toml::from_str::<toml::Table>("v = { mem_fragmentation_ratio = 2.3, used_memory_human = \"14M\" }")
                .unwrap()
                .remove("v")
                .unwrap();
        let Reply::Value(redis::Value::BulkString(text)) = reply(&words, value).unwrap() else {
            panic!("not a bulk string");
        };
        let info = crate::redis::info::parse(&String::from_utf8(text).unwrap());
        let fields: Vec<(&str, &str)> = info.fields().collect();
        assert_eq!(
            fields,
            [("mem_fragmentation_ratio", "2.3"), ("used_memory_human", "14M")]
        );
    }
}
