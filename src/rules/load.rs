//! Reading `rules/*.toml`: every file, every rule, every problem at once.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::de::DeValue;

use super::expr::ExprEngine;
use super::model::{Rule, RuleSpec, ScheduleSpec, SentinelSelector, SourceKind};
use crate::event::keyspace::KeyspaceSelector;

/// How long a Sentinel alert stays firing without an event that resolves it.
const DEFAULT_RESOLVE_AFTER: Duration = Duration::from_secs(600);
use crate::config::{Config, document};
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::files::files_with_extension;
use crate::glob::Glob;
use crate::template::Template;

/// What the rules may refer to: they are checked against it while loading.
pub struct References<'a> {
    pub playbooks: Vec<&'a str>,
    pub targets: Vec<&'a str>,
    pub receivers: Vec<&'a str>,
}

impl<'a> References<'a> {
    pub fn from_config(config: &'a Config, playbooks: Vec<&'a str>) -> Self {
        References {
            playbooks,
            targets: config
                .targets
                .iter()
                .map(|t| t.name.as_str())
                .chain(config.sentinels.iter().map(|g| g.name.as_str()))
                .chain(config.clusters.iter().map(|c| c.name.as_str()))
                .collect(),
            receivers: config.receivers.keys().map(String::as_str).collect(),
        }
    }
}

pub fn load_rules(dir: &Path, refs: &References<'_>, expr: &ExprEngine, diags: &mut Diagnostics) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for path in files_with_extension(dir, "toml", diags) {
        let file = match SourceFile::read(&path) {
            Ok(f) => f,
            Err(e) => {
                diags.push(Diagnostic::file_error(&path, format!("cannot read rule file: {e}")));
                continue;
            }
        };
        for (rule, name_span) in parse_rules(&file, refs, expr, diags) {
            if let Some(first) = seen.get(&rule.name) {
                diags.push(
                    Diagnostic::error(&file, name_span, format!("two rules are named `{}`", rule.name)).with_hint(
                        format!("the first is at {first}; rule names must be unique, they identify alerts"),
                    ),
                );
                continue;
            }
            let (line, col) = file.line_col(name_span.start);
            seen.insert(rule.name.clone(), format!("{}:{line}:{col}", path.display()));
            rules.push(rule);
        }
    }
    rules
}

/// Parses one rule file. Each `[[rule]]` is checked on its own, so all of a
/// file's problems are reported together.
pub fn parse_rule_file(
    file: &SourceFile,
    refs: &References<'_>,
    expr: &ExprEngine,
    diags: &mut Diagnostics,
) -> Vec<Rule> {
    parse_rules(file, refs, expr, diags)
        .into_iter()
        .map(|(rule, _)| rule)
        .collect()
}

/// The rules of one file, each with the span of its name.
fn parse_rules(
    file: &SourceFile,
    refs: &References<'_>,
    expr: &ExprEngine,
    diags: &mut Diagnostics,
) -> Vec<(Rule, Range<usize>)> {
    let Some(root) = document::parse(file, diags) else {
        return Vec::new();
    };
    let mut rules = Vec::new();
    let mut names_here: HashMap<String, Range<usize>> = HashMap::new();
    for (key, value) in root.into_inner() {
        if key.get_ref() != "rule" {
            diags.push(
                Diagnostic::error(
                    file,
                    key.span(),
                    format!("unknown key `{}` in a rule file", key.get_ref()),
                )
                .with_hint("a rule file holds [[rule]] tables only"),
            );
            continue;
        }
        for item in crate::config::array_items(file, value, "[[rule]]", diags) {
            let digest = digest_of(&item);
            let Some(spec) = document::deserialize::<RuleSpec>(file, item, diags) else {
                continue;
            };
            if let Some(first) = names_here.get(spec.name.get_ref()) {
                let (line, _) = file.line_col(first.start);
                diags.push(
                    Diagnostic::error(
                        file,
                        spec.name.span(),
                        format!("two rules are named `{}`", spec.name.get_ref()),
                    )
                    .with_hint(format!("the first is on line {line}; rule names must be unique")),
                );
                continue;
            }
            let name_span = spec.name.span();
            names_here.insert(spec.name.get_ref().clone(), name_span.clone());
            if let Some(rule) = compile(file, spec, digest, refs, expr, diags) {
                rules.push((rule, name_span));
            }
        }
    }
    rules
}

/// A digest of what a rule says, not where it is written: moving a rule
/// or editing its neighbour must not count as changing it on reload.
fn digest_of(item: &toml::Spanned<DeValue<'_>>) -> String {
    use serde::Deserialize;
    let canonical = toml::Value::deserialize(toml::de::ValueDeserializer::from(item.clone()))
        .map(|v| v.to_string())
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(canonical.as_bytes());
    hex::encode(&h.finalize()[..8])
}

fn compile(
    file: &SourceFile,
    spec: RuleSpec,
    digest: String,
    refs: &References<'_>,
    expr: &ExprEngine,
    diags: &mut Diagnostics,
) -> Option<Rule> {
    let errors_before = diags.error_count();
    let name = spec.name.get_ref().clone();
    let name_span = spec.name.span();

    let when = match &spec.when {
        Some(w) => compile_expr(file, w, expr, diags),
        // A Sentinel rule fires on its events, a schedule on its clock; a
        // condition only narrows them.
        None if matches!(
            spec.source,
            SourceKind::Sentinel | SourceKind::Cluster | SourceKind::Schedule
        ) =>
        {
            expr.compile("true").ok()
        }
        None => {
            diags.push(
                Diagnostic::error(
                    file,
                    name_span.clone(),
                    format!("rule `{name}` has no `when` condition"),
                )
                .with_hint("e.g. when = \"memory_used_pct > 85\" (keyspace rules: when = \"count > 1000\")"),
            );
            None
        }
    };
    let clear = spec.clear.as_ref().and_then(|c| compile_expr(file, c, expr, diags));

    if let Some(p) = &spec.playbook
        && !refs.playbooks.contains(&p.get_ref().as_str())
    {
        let mut d = Diagnostic::error(
            file,
            p.span(),
            format!("rule `{name}` names playbook `{}`, which does not exist", p.get_ref()),
        );
        d = match document::closest(p.get_ref(), &refs.playbooks) {
            Some(best) => d.with_hint(format!("did you mean `{best}`?")),
            None if refs.playbooks.is_empty() => d.with_hint("there are no playbooks; add playbooks/<name>.rhai"),
            None => d.with_hint(format!("available playbooks: {}", refs.playbooks.join(", "))),
        };
        diags.push(d);
    }
    check_refs(file, &name, "target", &spec.targets, &refs.targets, diags);
    check_refs(file, &name, "receiver", &spec.notify, &refs.receivers, diags);

    let summary_text = spec
        .summary
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| "{{ rule }} on {{ target }}".into());
    let summary = compile_template(
        file,
        &name,
        "summary",
        spec.summary.as_ref(),
        &summary_text,
        &name_span,
        spec.source,
        diags,
    );
    let annotations = compile_annotations(file, &spec, &name_span, diags);

    let keyspace = match spec.source {
        SourceKind::Keyspace => {
            let window = spec.window.unwrap_or_else(|| {
                diags.push(
                    Diagnostic::error(
                        file,
                        name_span.clone(),
                        format!("keyspace rule `{name}` has no `window`"),
                    )
                    .with_hint("events are counted over a sliding window, e.g. window = \"1m\""),
                );
                Duration::ZERO
            });
            Some(KeyspaceSelector {
                events: spec.events.iter().map(|e| e.to_ascii_lowercase()).collect(),
                keys: Glob::new(spec.keys.as_deref().unwrap_or("*")),
                window,
                db: spec.db,
            })
        }
        _ => {
            for (set, what) in [
                (
                    !spec.events.is_empty() && !matches!(spec.source, SourceKind::Sentinel | SourceKind::Cluster),
                    "events",
                ),
                (spec.keys.is_some(), "keys"),
                (spec.window.is_some(), "window"),
                (spec.db.is_some(), "db"),
            ] {
                if set {
                    diags.push(
                        Diagnostic::error(
                            file,
                            name_span.clone(),
                            format!("rule `{name}`: `{what}` only applies to keyspace rules"),
                        )
                        .with_hint(format!("this rule has source = \"{}\"", spec.source.as_str())),
                    );
                }
            }
            None
        }
    };

    let sentinel = match spec.source {
        SourceKind::Sentinel | SourceKind::Cluster => {
            let (kind, known, example) = if spec.source == SourceKind::Sentinel {
                (
                    "Sentinel",
                    crate::event::sentinel::KNOWN_EVENTS,
                    "e.g. events = [\"+switch-master\"] (globs work: \"+failover-*\")",
                )
            } else {
                (
                    "cluster",
                    crate::event::cluster::CLUSTER_EVENTS,
                    "e.g. events = [\"cluster_failover\"] (globs work: \"cluster_node_*\")",
                )
            };
            if spec.events.is_empty() {
                diags.push(
                    Diagnostic::error(
                        file,
                        name_span.clone(),
                        format!("{} rule `{name}` names no `events`", spec.source.as_str()),
                    )
                    .with_hint(example),
                );
            }
            for e in spec.events.iter().chain(&spec.resolve_events) {
                if !e.contains(['*', '?', '[']) && !known.contains(&e.as_str()) {
                    let mut d = Diagnostic::error(
                        file,
                        name_span.clone(),
                        format!("rule `{name}`: `{e}` is not a {kind} event"),
                    );
                    if let Some(best) = document::closest(e, known) {
                        d = d.with_hint(format!("did you mean `{best}`?"));
                    }
                    diags.push(d);
                }
            }
            Some(SentinelSelector {
                events: spec.events.iter().map(|e| Glob::new(e)).collect(),
                resolve_events: spec.resolve_events.iter().map(|e| Glob::new(e)).collect(),
                resolve_after: spec.resolve_after.unwrap_or(DEFAULT_RESOLVE_AFTER),
            })
        }
        _ => {
            if !spec.resolve_events.is_empty() || spec.resolve_after.is_some() {
                diags.push(
                    Diagnostic::error(
                        file,
                        name_span.clone(),
                        format!("rule `{name}`: `resolve_events` and `resolve_after` only apply to sentinel and cluster rules"),
                    )
                    .with_hint("other rules resolve when `clear` holds, or `when` no longer does"),
                );
            }
            None
        }
    };

    let schedule = match (spec.source, &spec.cron) {
        (SourceKind::Schedule, Some(cron)) => {
            if spec.playbook.is_none() {
                diags.push(
                    Diagnostic::error(
                        file,
                        name_span.clone(),
                        format!("schedule rule `{name}` has no `playbook` to run"),
                    )
                    .with_hint("e.g. playbook = \"backup\""),
                );
            }
            match crate::cron::parse(cron.get_ref(), spec.timezone.as_deref()) {
                Ok((cron, tz)) => Some(ScheduleSpec {
                    cron,
                    tz,
                    catch_up: spec.catch_up.unwrap_or_default(),
                }),
                Err(e) => {
                    diags.push(
                        Diagnostic::error(file, cron.span(), format!("rule `{name}`: {e}"))
                            .with_hint("five fields: minute hour day-of-month month day-of-week, e.g. \"30 3 * * *\""),
                    );
                    None
                }
            }
        }
        (SourceKind::Schedule, None) => {
            diags.push(
                Diagnostic::error(file, name_span.clone(), format!("schedule rule `{name}` has no `cron`"))
                    .with_hint("e.g. cron = \"0 * * * *\" (hourly) and timezone = \"Europe/Berlin\""),
            );
            None
        }
        (_, cron) => {
            if cron.is_some() || spec.timezone.is_some() || spec.catch_up.is_some() {
                diags.push(
                    Diagnostic::error(
                        file,
                        name_span.clone(),
                        format!("rule `{name}`: `cron`, `timezone` and `catch_up` only apply to schedule rules"),
                    )
                    .with_hint("set source = \"schedule\""),
                );
            }
            None
        }
    };

    if spec.keep_firing_for.is_some() && matches!(spec.source, SourceKind::Sentinel | SourceKind::Schedule) {
        diags.push(
            Diagnostic::error(
                file,
                name_span.clone(),
                format!(
                    "rule `{name}`: `keep_firing_for` does not apply to {} rules",
                    spec.source.as_str()
                ),
            )
            .with_hint(
                "sentinel alerts resolve on `resolve_events` or after `resolve_after`; schedules raise no alert",
            ),
        );
    }

    if diags.error_count() > errors_before {
        return None;
    }
    let when_text = spec
        .when
        .as_ref()
        .map_or_else(|| "true".to_owned(), |w| w.get_ref().clone());
    Some(Rule {
        value_metric: first_identifier(&when_text),
        name,
        source: spec.source,
        when: when?,
        when_text,
        clear,
        clear_text: spec.clear.as_ref().map(|c| c.get_ref().clone()),
        for_: spec.for_.unwrap_or_default(),
        keep_firing_for: spec.keep_firing_for.unwrap_or_default(),
        severity: spec.severity,
        playbook: spec.playbook.map(|p| p.into_inner()),
        params: spec.params,
        cooldown: spec.cooldown.unwrap_or_default(),
        summary: summary?,
        labels: spec.labels,
        keyspace,
        sentinel,
        schedule,
        targets: spec.targets.into_iter().map(|t| t.into_inner()).collect(),
        notify: spec.notify.into_iter().map(|t| t.into_inner()).collect(),
        runbook: spec.runbook,
        description: spec.description,
        annotations: annotations?,
        file: file.path.clone(),
        digest,
    })
}

/// The rule's `annotations`, each a template; `description` is the
/// annotation of that name, written as a field.
fn compile_annotations(
    file: &SourceFile,
    spec: &RuleSpec,
    name_span: &Range<usize>,
    diags: &mut Diagnostics,
) -> Option<BTreeMap<String, Template>> {
    let name = spec.name.get_ref();
    let mut out = BTreeMap::new();
    let mut failed = false;
    if let (Some(_), Some(written)) = (&spec.description, spec.annotations.get("description")) {
        diags.push(
            Diagnostic::error(
                file,
                written.span(),
                format!("rule `{name}` has both `description` and `annotations.description`"),
            )
            .with_hint("they are the same annotation: keep one"),
        );
        failed = true;
    }
    if let Some(written) = spec.annotations.get("summary") {
        diags.push(
            Diagnostic::error(
                file,
                written.span(),
                format!("rule `{name}`: `summary` is a field of the rule, not an annotation"),
            )
            .with_hint("write summary = \"...\" next to `annotations`; it is sent as the `summary` annotation"),
        );
        failed = true;
    }
    if let Some(text) = &spec.description {
        // `description` has no position of its own: errors point at the rule.
        let t = compile_template(file, name, "description", None, text, name_span, spec.source, diags);
        failed |= t.is_none();
        out.extend(t.map(|t| ("description".to_owned(), t)));
    }
    for (key, text) in &spec.annotations {
        if key == "summary" {
            continue;
        }
        let what = format!("annotations.{key}");
        let t = compile_template(
            file,
            name,
            &what,
            Some(text),
            text.get_ref(),
            name_span,
            spec.source,
            diags,
        );
        failed |= t.is_none();
        out.extend(t.map(|t| (key.clone(), t)));
    }
    (!failed).then_some(out)
}

/// Parses one template of a rule. A syntax error or an unknown filter is an
/// error at its place in the file; so is a variable the rule's source never
/// gives (a sample rule's unknown names are warnings: a target's probes
/// add names only the config knows).
#[allow(clippy::too_many_arguments)]
fn compile_template(
    file: &SourceFile,
    rule: &str,
    what: &str,
    written: Option<&toml::Spanned<String>>,
    text: &str,
    name_span: &Range<usize>,
    source: SourceKind,
    diags: &mut Diagnostics,
) -> Option<Template> {
    let span_at = |offset: usize| match written {
        Some(w) => {
            let index = text.get(..offset).map_or(0, |t| t.chars().count());
            let raw = file.text.get(w.span().start..).unwrap_or("");
            let offsets = literal_offsets(raw, text);
            let at = w.span().start + offsets.get(index).or(offsets.last()).copied().unwrap_or(0);
            at..at + 1
        }
        None => name_span.clone(),
    };
    let template = match Template::parse(text) {
        Ok(t) => t,
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    file,
                    span_at(e.offset.unwrap_or(0)),
                    format!("rule `{rule}`: {what}: {}", e.message),
                )
                .with_hint(
                    "templates are Jinja: {{ target }}, {{ labels.env }}, {{ value|humanize }}, \
                     {% if value > 90 %}...{% endif %} (docs/rules.md#templates)",
                ),
            );
            return None;
        }
    };
    let mut unknown_is_error = false;
    for var in template.variables() {
        if template_variable_exists(source, &var) {
            continue;
        }
        let span = span_at(template.offset_of(&var).unwrap_or(0));
        let message = format!(
            "rule `{rule}`: {what}: no {} event has `{var}`, so the template cannot render",
            source.as_str()
        );
        let hint = "rules' templates see `rule`, `target`, `severity`, `value`, `labels` and the variables of \
                    their source (docs/rules.md#templates); `{% if x is defined %}` guards an optional one";
        if source == SourceKind::Sample {
            diags.push(Diagnostic::warning(file, span, message).with_hint(hint));
        } else {
            diags.push(Diagnostic::error(file, span, message).with_hint(hint));
            unknown_is_error = true;
        }
    }
    (!unknown_is_error).then_some(template)
}

/// Whether a rule of `source` can give its templates `name`.
fn template_variable_exists(source: SourceKind, name: &str) -> bool {
    use super::lint::{GROUP_METRICS, HEALTH_VARIABLES, KEYSPACE_VARIABLES, SENTINEL_VARIABLES};
    use crate::event::metric_names as m;
    if ["rule", "target", "severity", "value", "labels"].contains(&name) {
        return true;
    }
    match source {
        SourceKind::Sample => {
            m::is_known_metric(name)
                || GROUP_METRICS.contains(&name)
                || m::CLUSTER_METRICS.contains(&name)
                || m::CLUSTER_LINK_METRICS.contains(&name)
                || m::KEYSPACE_STAT_METRICS.contains(&name)
        }
        SourceKind::Keyspace => KEYSPACE_VARIABLES.contains(&name),
        SourceKind::Health => HEALTH_VARIABLES.contains(&name),
        SourceKind::Sentinel => SENTINEL_VARIABLES.contains(&name),
        SourceKind::Cluster => crate::event::cluster::CLUSTER_VARIABLES.contains(&name),
        SourceKind::Schedule => false,
    }
}

fn check_refs(
    file: &SourceFile,
    rule: &str,
    what: &str,
    names: &[toml::Spanned<String>],
    known: &[&str],
    diags: &mut Diagnostics,
) {
    for n in names {
        if !known.contains(&n.get_ref().as_str()) {
            let mut d = Diagnostic::error(
                file,
                n.span(),
                format!(
                    "rule `{rule}` names {what} `{}`, which the config does not define",
                    n.get_ref()
                ),
            );
            if let Some(best) = document::closest(n.get_ref(), known) {
                d = d.with_hint(format!("did you mean `{best}`?"));
            }
            diags.push(d);
        }
    }
}

/// Compiles an expression, mapping a Rhai error position back into the file.
fn compile_expr(
    file: &SourceFile,
    text: &toml::Spanned<String>,
    expr: &ExprEngine,
    diags: &mut Diagnostics,
) -> Option<rhai::AST> {
    match expr.compile(text.get_ref()) {
        Ok(ast) => Some(ast),
        Err(e) => {
            let offset = expression_offset(file, text.span().start, text.get_ref(), e.line, e.col);
            diags.push(
                Diagnostic::error(file, offset..offset + 1, format!("invalid expression: {}", e.message)).with_hint(
                    "conditions are Rhai expressions over metrics, e.g. memory_used_pct > 85 && role == \"master\"",
                ),
            );
            None
        }
    }
}

/// Byte offset in the file of (line, col) of `value`, the decoded text of
/// the TOML string whose opening quote is at `start`. The decoded text is not
/// the file's: escapes, a multi-line string's first newline and line-ending
/// backslashes all shift positions, so the literal is walked in step with it.
fn expression_offset(file: &SourceFile, start: usize, value: &str, line: usize, col: usize) -> usize {
    let index = char_index(value, line, col);
    let raw = file.text.get(start..).unwrap_or("");
    let offsets = literal_offsets(raw, value);
    start + offsets.get(index).or(offsets.last()).copied().unwrap_or(0)
}

/// Length of the line-ending backslashes at the start of `text`: each one
/// swallows the newline and the whitespace after it, so no character of the
/// decoded string comes from them.
fn line_ending_backslashes(text: &str) -> usize {
    let mut len = 0;
    while let Some(after) = text[len..].strip_prefix('\\') {
        let spaces = after.len() - after.trim_start_matches([' ', '\t']).len();
        if !after[spaces..].starts_with(['\n', '\r']) {
            break;
        }
        len += 1 + after.len() - after.trim_start_matches([' ', '\t', '\r', '\n']).len();
    }
    len
}

/// Index of the character at 1-based (line, col) of `text`, or its length
/// when the position is past the end (where "incomplete" errors point).
fn char_index(text: &str, line: usize, col: usize) -> usize {
    let mut index = 0;
    for (n, l) in text.split_inclusive('\n').enumerate() {
        let len = l.chars().count();
        if n + 1 == line {
            return index + col.saturating_sub(1).min(len);
        }
        index += len;
    }
    index
}

/// For each character of `value`, the byte offset in `raw` (a TOML string
/// literal and what follows it) of the text it was decoded from, then the
/// offset of the closing quote.
pub(super) fn literal_offsets(raw: &str, value: &str) -> Vec<usize> {
    let delimiter = ["\"\"\"", "'''", "\"", "'"]
        .into_iter()
        .find(|d| raw.starts_with(d))
        .unwrap_or("");
    let basic = delimiter.starts_with('"');
    let multi_line = delimiter.len() == 3;
    let mut i = delimiter.len();
    if multi_line {
        // TOML drops a newline right after the opening quotes.
        if raw[i..].starts_with("\r\n") {
            i += 2;
        } else if raw[i..].starts_with('\n') {
            i += 1;
        }
    }
    let mut offsets = Vec::with_capacity(value.len() + 1);
    for c in value.chars() {
        if basic && multi_line {
            i += line_ending_backslashes(raw.get(i..).unwrap_or(""));
        }
        let Some(rest) = raw.get(i..).filter(|r| !r.is_empty()) else {
            break;
        };
        offsets.push(i);
        i += match rest.strip_prefix('\\') {
            Some(after) if basic => match after.chars().next() {
                Some('u') => 6,
                Some('U') => 10,
                Some('x') => 4,
                Some(e) => 1 + e.len_utf8(),
                None => 1,
            },
            // A CRLF in the file may have been decoded as a lone LF.
            _ if c == '\n' && rest.starts_with("\r\n") => 2,
            _ => rest.chars().next().map_or(1, char::len_utf8),
        };
    }
    offsets.push(i.min(raw.len()));
    offsets
}

/// The first identifier of an expression that is not a keyword, function or
/// literal: the metric whose value an alert reports.
fn first_identifier(expr: &str) -> Option<String> {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            let is_call = expr[i..].trim_start().starts_with('(');
            if !is_call && !matches!(word, "true" | "false" | "if" | "else" | "in" | "and" | "or" | "not") {
                return Some(word.to_owned());
            }
            continue;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_identifier_skips_calls_strings_and_keywords() {
        assert_eq!(
            first_identifier("memory_used_pct > 85").as_deref(),
            Some("memory_used_pct")
        );
        assert_eq!(
            first_identifier("delta(\"used_memory\", \"1m\") > 0 && hit_ratio < 80").as_deref(),
            Some("hit_ratio")
        );
        assert_eq!(first_identifier("true"), None);
    }

    #[test]
    fn expression_positions_map_into_the_file() {
        let file = SourceFile::new("r.toml", "when = \"a >> > 1\"\n");
        // The expression starts after the quote at byte 7.
        assert_eq!(expression_offset(&file, 7, "a >> > 1", 1, 3), 10);
    }

    /// The file position of the first `!` in `literal` (written after
    /// `when = `), found through the decoded `value`.
    fn bang(literal: &str, value: &str) -> (usize, usize) {
        let file = SourceFile::new("r.toml", format!("when = {literal}\n"));
        let (line, col) = value
            .lines()
            .enumerate()
            .find_map(|(n, l)| l.find('!').map(|c| (n + 1, l[..c].chars().count() + 1)))
            .expect("value has a `!`");
        let offset = expression_offset(&file, 7, value, line, col);
        assert_eq!(&file.text[offset..offset + 1], "!", "{literal}");
        file.line_col(offset)
    }

    #[test]
    fn expression_positions_survive_escapes_and_multi_line_strings() {
        assert_eq!(bang(r#""r == \"m\" !""#, r#"r == "m" !"#), (1, 20));
        assert_eq!(bang(r#""\u00e9 \t!""#, "é \t!"), (1, 18));
        assert_eq!(bang("\"\"\"\na &&\n  b !\n\"\"\"", "a &&\n  b !\n"), (3, 5));
        assert_eq!(bang("'''\r\na &&\r\n  b !'''", "a &&\n  b !"), (3, 5));
        assert_eq!(bang("\"\"\"a && \\\n    b !\"\"\"", "a && b !"), (2, 7));
    }

    #[test]
    fn incomplete_expressions_point_at_the_closing_quote() {
        let file = SourceFile::new("r.toml", "when = \"\"\"\na &&\n\"\"\"\n");
        let offset = expression_offset(&file, 7, "a &&\n", 2, 1);
        assert_eq!(file.line_col(offset), (3, 1));
    }
}
