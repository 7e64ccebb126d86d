//! Reading `rules/*.toml`: every file, every rule, every problem at once.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::de::DeValue;

use super::expr::{Compiled, ExprEngine};
use super::model::{Hold, Rule, RuleKind, ScheduleSpec, SentinelSelector, SourceKind};
use super::spec::{self, ConditionSpec, EventSpec, KeyspaceSpec, RuleSpec, ScheduleFields, SourceSpec};
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
            let Some(spec) = spec::read(file, item, diags) else {
                continue;
            };
            let name = &spec.common.name;
            if let Some(first) = names_here.get(name.get_ref()) {
                let (line, _) = file.line_col(first.start);
                diags.push(
                    Diagnostic::error(file, name.span(), format!("two rules are named `{}`", name.get_ref()))
                        .with_hint(format!("the first is on line {line}; rule names must be unique")),
                );
                continue;
            }
            let name_span = name.span();
            names_here.insert(name.get_ref().clone(), name_span.clone());
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

/// What every step of compiling one rule reports against.
struct Cx<'a> {
    file: &'a SourceFile,
    name: &'a str,
    name_span: Range<usize>,
    expr: &'a ExprEngine,
}

impl Cx<'_> {
    fn error_at_name(&self, message: String, hint: &str) -> Diagnostic {
        Diagnostic::error(self.file, self.name_span.clone(), message).with_hint(hint)
    }
}

/// A compiled `when`, with its text.
type When = (Compiled, String);

fn compile(
    file: &SourceFile,
    spec: RuleSpec,
    digest: String,
    refs: &References<'_>,
    expr: &ExprEngine,
    diags: &mut Diagnostics,
) -> Option<Rule> {
    let errors_before = diags.error_count();
    let RuleSpec { common, source } = spec;
    let source_kind = source.kind();
    let name = common.name.get_ref().clone();
    let cx = Cx {
        file,
        name: &name,
        name_span: common.name.span(),
        expr,
    };

    let compiled = match source {
        SourceSpec::Sample(condition) => {
            let example = "e.g. when = \"memory_used_pct > 85\"";
            condition_rule(&cx, condition, example, diags).map(|(when, hold)| (when, RuleKind::Sample(hold)))
        }
        SourceSpec::Health(condition) => {
            let example = "e.g. when = \"redis_up == 0\"";
            condition_rule(&cx, condition, example, diags).map(|(when, hold)| (when, RuleKind::Health(hold)))
        }
        SourceSpec::Keyspace(condition, keyspace) => {
            let rule = condition_rule(&cx, condition, "e.g. when = \"count > 1000\"", diags);
            let selector = keyspace_selector(&cx, keyspace, diags);
            rule.map(|(when, hold)| (when, RuleKind::Keyspace { hold, selector }))
        }
        SourceSpec::Sentinel(events) => {
            event_rule(&cx, SourceKind::Sentinel, events, diags).map(|(when, s)| (when, RuleKind::Sentinel(s)))
        }
        SourceSpec::Cluster(events) => {
            event_rule(&cx, SourceKind::Cluster, events, diags).map(|(when, s)| (when, RuleKind::Cluster(s)))
        }
        SourceSpec::Schedule(schedule) => {
            let has_playbook = common.playbook.is_some();
            schedule_rule(&cx, schedule, has_playbook, diags).map(|(when, s)| (when, RuleKind::Schedule(s)))
        }
    };

    if let Some(p) = &common.playbook
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
    check_refs(file, &name, "target", &common.targets, &refs.targets, diags);
    check_refs(file, &name, "receiver", &common.notify, &refs.receivers, diags);
    let summary_text = common
        .summary
        .as_ref()
        .map_or("{{ rule }} on {{ target }}", |s| s.get_ref().as_str())
        .to_owned();
    let summary = compile_template(
        file,
        &name,
        "summary",
        common.summary.as_ref(),
        &summary_text,
        &cx.name_span,
        source_kind,
        diags,
    );
    let annotations = compile_annotations(file, &common, source_kind, &cx.name_span, diags);

    if diags.error_count() > errors_before {
        return None;
    }
    let ((when, when_text), kind) = compiled?;
    Some(Rule {
        value_metric: first_identifier(&when_text),
        name,
        when,
        when_text,
        severity: common.severity,
        playbook: common.playbook.map(|p| p.into_inner()),
        params: common.params,
        cooldown: common.cooldown.unwrap_or_default(),
        summary: summary?,
        labels: common.labels,
        targets: common.targets.into_iter().map(|t| t.into_inner()).collect(),
        notify: common.notify.into_iter().map(|t| t.into_inner()).collect(),
        runbook: common.runbook,
        description: common.description,
        annotations: annotations?,
        file: file.path.clone(),
        digest,
        kind,
    })
}

/// A sample, keyspace or health rule: a `when` that must hold for `for`.
fn condition_rule(cx: &Cx<'_>, spec: ConditionSpec, example: &str, diags: &mut Diagnostics) -> Option<(When, Hold)> {
    let when = match &spec.when {
        Some(w) => compile_expr(cx.file, w, cx.expr, diags).map(|ast| (ast, w.get_ref().clone())),
        None => {
            diags.push(cx.error_at_name(format!("rule `{}` has no `when` condition", cx.name), example));
            None
        }
    };
    let clear = match &spec.clear {
        Some(c) => Some(compile_expr(cx.file, c, cx.expr, diags)?),
        None => None,
    };
    let hold = Hold {
        for_: spec.for_.unwrap_or_default(),
        keep_firing_for: spec.keep_firing_for.unwrap_or_default(),
        clear,
        clear_text: spec.clear.map(|c| c.into_inner()),
    };
    Some((when?, hold))
}

fn keyspace_selector(cx: &Cx<'_>, spec: KeyspaceSpec, diags: &mut Diagnostics) -> KeyspaceSelector {
    let window = spec.window.unwrap_or_else(|| {
        diags.push(cx.error_at_name(
            format!("keyspace rule `{}` has no `window`", cx.name),
            "events are counted over a sliding window, e.g. window = \"1m\"",
        ));
        Duration::ZERO
    });
    KeyspaceSelector {
        events: spec.events.iter().map(|e| e.to_ascii_lowercase()).collect(),
        keys: Glob::new(spec.keys.as_deref().unwrap_or("*")),
        window,
        db: spec.db,
    }
}

/// A sentinel or cluster rule: fires on each event it names; a `when`
/// only narrows them.
fn event_rule(
    cx: &Cx<'_>,
    source: SourceKind,
    spec: EventSpec,
    diags: &mut Diagnostics,
) -> Option<(When, SentinelSelector)> {
    let (kind, known, example) = match source {
        SourceKind::Sentinel => (
            "Sentinel",
            crate::event::sentinel::KNOWN_EVENTS,
            "e.g. events = [\"+switch-master\"] (globs work: \"+failover-*\")",
        ),
        _ => (
            "cluster",
            crate::event::cluster::CLUSTER_EVENTS,
            "e.g. events = [\"cluster_failover\"] (globs work: \"cluster_node_*\")",
        ),
    };
    if spec.events.is_empty() {
        diags.push(cx.error_at_name(format!("{source} rule `{}` names no `events`", cx.name), example));
    }
    for e in spec.events.iter().chain(&spec.resolve_events) {
        let event = e.get_ref();
        if !event.contains(['*', '?', '[']) && !known.contains(&event.as_str()) {
            let mut d = Diagnostic::error(
                cx.file,
                e.span(),
                format!("rule `{}`: `{event}` is not a {kind} event", cx.name),
            );
            if let Some(best) = document::closest(event, known) {
                d = d.with_hint(format!("did you mean `{best}`?"));
            }
            diags.push(d);
        }
    }
    let when = optional_when(cx, spec.when.as_ref(), diags)?;
    let selector = SentinelSelector {
        events: spec.events.iter().map(|e| Glob::new(e.get_ref())).collect(),
        resolve_events: spec.resolve_events.iter().map(|e| Glob::new(e.get_ref())).collect(),
        resolve_after: spec.resolve_after.unwrap_or(DEFAULT_RESOLVE_AFTER),
    };
    Some((when, selector))
}

/// A schedule rule: runs its playbook on its clock.
fn schedule_rule(
    cx: &Cx<'_>,
    spec: ScheduleFields,
    has_playbook: bool,
    diags: &mut Diagnostics,
) -> Option<(When, ScheduleSpec)> {
    if !has_playbook {
        diags.push(cx.error_at_name(
            format!("schedule rule `{}` has no `playbook` to run", cx.name),
            "e.g. playbook = \"backup\"",
        ));
    }
    let Some(cron) = &spec.cron else {
        diags.push(cx.error_at_name(
            format!("schedule rule `{}` has no `cron`", cx.name),
            "e.g. cron = \"0 * * * *\" (hourly) and timezone = \"Europe/Berlin\"",
        ));
        return None;
    };
    let timezone = spec.timezone.as_ref();
    match crate::cron::parse(cron.get_ref(), timezone.map(|t| t.get_ref().as_str())) {
        Ok((cron, tz)) => Some((
            optional_when(cx, None, diags)?,
            ScheduleSpec {
                cron,
                tz,
                catch_up: spec.catch_up.unwrap_or_default(),
            },
        )),
        Err(e) => {
            let span = match (&e, timezone) {
                (crate::cron::CronError::TimeZone(_), Some(tz)) => tz.span(),
                _ => cron.span(),
            };
            diags.push(Diagnostic::error(cx.file, span, format!("rule `{}`: {e}", cx.name)).with_hint(e.hint()));
            None
        }
    }
}

/// The `when` of a rule that fires without one: `true` when absent.
fn optional_when(cx: &Cx<'_>, when: Option<&toml::Spanned<String>>, diags: &mut Diagnostics) -> Option<When> {
    match when {
        Some(w) => compile_expr(cx.file, w, cx.expr, diags).map(|ast| (ast, w.get_ref().clone())),
        None => Some((cx.expr.compile("true").ok()?, "true".to_owned())),
    }
}

/// The rule's `annotations`, each a template; `description` is the
/// annotation of that name, written as a field.
fn compile_annotations(
    file: &SourceFile,
    spec: &spec::CommonSpec,
    source: SourceKind,
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
        let t = compile_template(file, name, "description", None, text, name_span, source, diags);
        failed |= t.is_none();
        out.extend(t.map(|t| ("description".to_owned(), t)));
    }
    for (key, text) in &spec.annotations {
        if key == "summary" {
            continue;
        }
        let what = format!("annotations.{key}");
        let t = compile_template(file, name, &what, Some(text), text.get_ref(), name_span, source, diags);
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
) -> Option<Compiled> {
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
