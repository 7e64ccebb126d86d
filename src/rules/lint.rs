//! The warnings of `redops check`: rules that load but probably do not do
//! what their author meant — a metric no source produces, a `for` shorter
//! than a sample, a percentage past 100, a `clear` the wrong way round —,
//! playbooks and receivers nothing reaches, and playbooks that may call any
//! host because `[playbooks] http_allow` is not set.
//!
//! Expressions are read as tokens, not evaluated: the checks look at the
//! simple forms (`metric > 85`, `a > 1 && b > 2`) and say nothing about the
//! rest, so a warning is always about something written plainly.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use self::expression::{Expression, Region, Tok, Token, comparisons, conjunction, is_keyword, number, tokenize};
use super::expr::HISTORY_FUNCTIONS;
use super::model::{Rule, RuleKind, SourceKind};
use crate::config::{Config, document};
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::event::metric_names::{METRIC_NAMES, is_known_metric};

mod expression;
mod receivers;

/// Variables of a keyspace rule (besides `target`).
pub const KEYSPACE_VARIABLES: &[&str] = &["count", "window_secs"];

/// Variables of a health rule (besides `target`).
pub const HEALTH_VARIABLES: &[&str] = &["redis_up", "consecutive_failures", "reason"];

/// Variables of a sentinel rule: what the evaluator adds to every notice,
/// then every key `SentinelEvent::fields` can give.
pub const SENTINEL_VARIABLES: &[&str] = &[
    "event",
    "group",
    "sentinel",
    "reconciled",
    "master",
    "old_ip",
    "old_port",
    "old_addr",
    "new_ip",
    "new_port",
    "new_addr",
    "kind",
    "instance",
    "ip",
    "port",
    "addr",
    "master_ip",
    "master_port",
    "master_addr",
    "agreeing",
    "quorum",
    "epoch",
    "leader",
    "path",
    "signal",
    "exit_code",
    "pid",
    "option",
    "value",
    "role",
    "runid",
    "count",
    "detail",
    "payload",
    "reason",
];

/// The metrics of a Sentinel group's own sample (`group_metrics` in
/// `src/sentinel/group.rs`; keep the two in step).
pub const GROUP_METRICS: &[&str] = &[
    "sentinels_configured",
    "sentinels_reachable",
    "sentinels_agree",
    "quorum_ok",
    "replicas",
    "replicas_up",
    "replicas_link_down",
    "config_epoch",
    "master",
    "masters_seen",
    "max_replication_lag_bytes",
    "sentinel_events_raw_total",
    "sentinel_events_duplicate_total",
];

/// The loaded playbooks by name, with their files: all the lint reads of
/// them, so that the rules need nothing of the playbook engine.
pub type PlaybookFiles = std::collections::BTreeMap<String, std::path::PathBuf>;

/// Adds a warning to `diags` for each probable mistake in `rules`, the
/// playbooks and the receivers. Reads the rule and config files again to
/// locate what it reports.
pub fn lint(config: &Config, rules: &[Rule], playbooks: &PlaybookFiles, diags: &mut Diagnostics) {
    let probes: BTreeSet<&str> = config
        .targets
        .iter()
        .flat_map(|t| t.probes.keys())
        .chain(config.sentinels.iter().flat_map(|g| g.probes.keys()))
        .chain(config.clusters.iter().flat_map(|c| c.probes.keys()))
        .map(String::as_str)
        .collect();
    let scopes = Scopes::new(&probes);
    let mut files: Vec<&PathBuf> = Vec::new();
    for rule in rules {
        if !files.contains(&&rule.file) {
            files.push(&rule.file);
        }
    }
    let by_name: HashMap<&str, &Rule> = rules.iter().map(|r| (r.name.as_str(), r)).collect();
    for path in files {
        let Ok(file) = SourceFile::read(path) else { continue };
        for spans in rule_spans(&file) {
            if let Some(rule) = by_name.get(spans.name.as_str()) {
                lint_rule(&file, rule, &spans, &scopes, config.engine.sample_interval, diags);
            }
        }
    }
    unused_playbooks(config, rules, playbooks, diags);
    unreached_receivers(config, rules, playbooks, diags);
    unknown_incident_rules(config, rules, diags);
    if config.playbooks.http_allow.is_none() {
        http_without_allowlist(playbooks, diags);
    }
    allow_entries_that_allow_nothing(config, diags);
    receivers::alertmanager_lapses(config, diags);
}

/// Where a rule's parts are written.
#[derive(Debug, Deserialize)]
struct RuleSpans {
    name: String,
    #[serde(default)]
    when: Option<Spanned<String>>,
    #[serde(default)]
    clear: Option<Spanned<String>>,
    #[serde(default, rename = "for")]
    for_: Option<Spanned<String>>,
    #[serde(default)]
    keep_firing_for: Option<Spanned<String>>,
}

fn rule_spans(file: &SourceFile) -> Vec<RuleSpans> {
    let mut ignored = Diagnostics::default();
    let Some(root) = document::parse(file, &mut ignored) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in root.into_inner() {
        if key.get_ref() != "rule" {
            continue;
        }
        for item in crate::config::array_items(file, value, "[[rule]]", &mut ignored) {
            out.extend(document::deserialize::<RuleSpans>(file, item, &mut ignored));
        }
    }
    out
}

/// The names each source gives its rules' expressions.
struct Scopes<'a> {
    sample: Vec<&'a str>,
    keyspace: Vec<&'a str>,
    health: Vec<&'a str>,
    sentinel: Vec<&'a str>,
    cluster: Vec<&'a str>,
    schedule: Vec<&'a str>,
}

impl<'a> Scopes<'a> {
    fn new(probes: &BTreeSet<&'a str>) -> Self {
        let with_target = |names: &[&'a str]| -> Vec<&'a str> { names.iter().copied().chain(["target"]).collect() };
        let mut sample = with_target(&METRIC_NAMES);
        sample.extend(GROUP_METRICS);
        sample.extend(crate::event::metric_names::CLUSTER_METRICS);
        sample.extend(crate::event::metric_names::CLUSTER_LINK_METRICS);
        sample.extend(crate::event::metric_names::KEYSPACE_STAT_METRICS);
        sample.extend(probes.iter().copied());
        Scopes {
            sample,
            keyspace: with_target(KEYSPACE_VARIABLES),
            health: with_target(HEALTH_VARIABLES),
            sentinel: with_target(SENTINEL_VARIABLES),
            cluster: with_target(crate::event::cluster::CLUSTER_VARIABLES),
            schedule: with_target(&[]),
        }
    }

    fn of(&self, source: SourceKind) -> &[&'a str] {
        match source {
            SourceKind::Sample => &self.sample,
            SourceKind::Keyspace => &self.keyspace,
            SourceKind::Health => &self.health,
            SourceKind::Sentinel => &self.sentinel,
            SourceKind::Cluster => &self.cluster,
            // A schedule's condition sees only its target.
            SourceKind::Schedule => &self.schedule,
        }
    }

    fn knows(&self, source: SourceKind, name: &str) -> bool {
        self.of(source).contains(&name) || (source == SourceKind::Sample && is_known_metric(name))
    }

    /// Names a look-back function can read: numeric sample metrics.
    fn knows_history(&self, name: &str) -> bool {
        self.sample.contains(&name) || is_known_metric(name)
    }
}

fn lint_rule(
    file: &SourceFile,
    rule: &Rule,
    spans: &RuleSpans,
    scopes: &Scopes<'_>,
    sample_interval: Duration,
    diags: &mut Diagnostics,
) {
    let when = spans.when.as_ref().map(|w| Expression::read(file, w));
    let clear = spans.clear.as_ref().map(|c| Expression::read(file, c));
    for expr in when.iter().chain(&clear) {
        unknown_names(expr, rule, scopes, diags);
        percentages(expr, rule, diags);
    }
    if let (Some(for_), RuleKind::Sample(hold)) = (&spans.for_, &rule.kind)
        && !hold.for_.is_zero()
        && hold.for_ < sample_interval
    {
        let interval = humantime::format_duration(sample_interval);
        diags.push(
            Diagnostic::warning(
                file,
                for_.span(),
                format!(
                    "rule `{}`: `for = \"{}\"` is shorter than [engine] sample_interval ({interval})",
                    rule.name,
                    for_.get_ref()
                ),
            )
            .with_hint(format!(
                "samples come every {interval}, so the alert fires on the second sample, {interval} after the \
                 first; write \"0s\" to fire on the first sample, or \"{interval}\" or more"
            )),
        );
    }
    if let (Some(keep), RuleKind::Sample(hold)) = (&spans.keep_firing_for, &rule.kind)
        && !hold.keep_firing_for.is_zero()
        && hold.keep_firing_for < sample_interval
    {
        let interval = humantime::format_duration(sample_interval);
        diags.push(
            Diagnostic::warning(
                file,
                keep.span(),
                format!(
                    "rule `{}`: `keep_firing_for = \"{}\"` is shorter than [engine] sample_interval ({interval})",
                    rule.name,
                    keep.get_ref()
                ),
            )
            .with_hint(format!(
                "samples come every {interval}, so the alert resolves on the second clear sample either way; \
                 write \"{interval}\" or more to outlast a dip"
            )),
        );
    }
    if let (Some(when), Some(clear)) = (&when, &clear) {
        hysteresis(when, clear, rule, diags);
    }
}

fn unknown_names(expr: &Expression<'_>, rule: &Rule, scopes: &Scopes<'_>, diags: &mut Diagnostics) {
    let tokens = &expr.tokens;
    for (i, token) in tokens.iter().enumerate() {
        let Tok::Ident { name, call, member } = &token.tok else {
            continue;
        };
        if *member || is_keyword(name) {
            continue;
        }
        if *call {
            if HISTORY_FUNCTIONS.contains(&name.as_str()) {
                look_back(expr, rule, scopes, name, &tokens[i + 1..], diags);
            }
            continue;
        }
        if scopes.knows(rule.source(), name) {
            continue;
        }
        let candidates = scopes.of(rule.source());
        let mut d = expr.warning(
            &token.chars,
            format!(
                "rule `{}`: no {} event has `{name}`, so this condition never has data",
                rule.name,
                rule.source().as_str()
            ),
        );
        d = match document::closest(name, candidates) {
            Some(best) => d.with_hint(format!("did you mean `{best}`?")),
            None => d.with_hint(scope_hint(rule.source())),
        };
        diags.push(d);
    }
}

fn scope_hint(source: SourceKind) -> String {
    match source {
        SourceKind::Sample => "sample rules see the INFO metrics of docs/rules.md#metrics, the Sentinel group metrics \
             and the probes declared on targets (probes = { name = \"LLEN queue\" })"
            .into(),
        SourceKind::Keyspace => format!("keyspace rules see {} and `target`", quoted(KEYSPACE_VARIABLES)),
        SourceKind::Health => format!("health rules see {} and `target`", quoted(HEALTH_VARIABLES)),
        SourceKind::Sentinel => "sentinel rules see `event`, `group`, `sentinel`, `reconciled`, `target` and the \
             fields of the event (docs/rules.md)"
            .into(),
        SourceKind::Schedule => "schedule rules see only `target`".into(),
        SourceKind::Cluster => format!(
            "cluster rules see {} and `target`",
            quoted(crate::event::cluster::CLUSTER_VARIABLES)
        ),
    }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// `delta("metric", "5m")`: the metric must be a sample metric and the
/// window a duration, or the call has no answer on every evaluation.
fn look_back(
    expr: &Expression<'_>,
    rule: &Rule,
    scopes: &Scopes<'_>,
    function: &str,
    after: &[Token],
    diags: &mut Diagnostics,
) {
    let args: Vec<&Token> = after.iter().skip(1).take(3).collect();
    if let Some(Token {
        tok: Tok::Str(metric),
        chars,
    }) = args.first()
        && !scopes.knows_history(metric)
    {
        let candidates: Vec<&str> = scopes.sample.to_vec();
        let mut d = expr.warning(
            chars,
            format!(
                "rule `{}`: `{function}` looks back over `{metric}`, which no sample has",
                rule.name
            ),
        );
        d = match document::closest(metric, &candidates) {
            Some(best) => d.with_hint(format!("did you mean `{best}`?")),
            None => d.with_hint("look-back functions read the history of sample metrics and probes"),
        };
        diags.push(d);
    }
    if let (
        Some(Token {
            tok: Tok::Other(','), ..
        }),
        Some(Token {
            tok: Tok::Str(window),
            chars,
        }),
    ) = (args.get(1), args.get(2))
        && humantime::parse_duration(window).is_err()
    {
        diags.push(
            expr.warning(chars, format!("rule `{}`: `{window}` is not a duration", rule.name))
                .with_hint(format!(
                    "`{function}` fails on every evaluation; write a window like \"5m\" or \"1h\""
                )),
        );
    }
}

fn is_percentage(name: &str) -> bool {
    name.ends_with("_pct") || name == "hit_ratio"
}

fn percentages(expr: &Expression<'_>, rule: &Rule, diags: &mut Diagnostics) {
    for cmp in comparisons(&expr.tokens) {
        if !is_percentage(&cmp.metric) || (0.0..=100.0).contains(&cmp.value) {
            continue;
        }
        let region = Region::of(cmp.op, cmp.value);
        let verdict = if !region.overlaps(&Region::between(0.0, 100.0)) {
            ", so it is never true"
        } else if region.covers(0.0, 100.0) {
            ", so it is always true"
        } else {
            ""
        };
        diags.push(
            expr.warning(
                &cmp.chars,
                format!(
                    "rule `{}`: `{}` compares a percentage (0–100) with {}{verdict}",
                    rule.name,
                    expr.slice(&cmp.chars),
                    number(cmp.value)
                ),
            )
            .with_hint(format!("`{}` runs from 0 to 100: 85 means 85 %", cmp.metric)),
        );
    }
}

/// `clear` must not hold where `when` does, or the alert resolves as soon as
/// it fires (the same direction: when `x > 85`, clear `x > 80`) or resolves
/// while still past its threshold (overlapping: when `x > 85`, clear `x < 90`).
fn hysteresis(when: &Expression<'_>, clear: &Expression<'_>, rule: &Rule, diags: &mut Diagnostics) {
    let Some(clear_cmp) = conjunction(&clear.tokens).and_then(|mut c| (c.len() == 1).then(|| c.remove(0))) else {
        return;
    };
    let Some(when_cmps) = conjunction(&when.tokens) else {
        return;
    };
    let Some(when_cmp) = when_cmps.iter().find(|c| c.metric == clear_cmp.metric) else {
        return;
    };
    let (w, c) = (
        Region::of(when_cmp.op, when_cmp.value),
        Region::of(clear_cmp.op, clear_cmp.value),
    );
    // Only thresholds (`<`, `<=`, `>`, `>=`) have a way round.
    let (Some(when_up), Some(clear_up)) = (w.upward(), c.upward()) else {
        return;
    };
    if !w.overlaps(&c) {
        return;
    }
    let (when_text, clear_text) = (when.slice(&when_cmp.chars), clear.slice(&clear_cmp.chars));
    let threshold = number(when_cmp.value);
    let (message, hint) = if when_up == clear_up {
        let flipped = match clear_cmp.op {
            ">" => "<",
            ">=" => "<=",
            "<" => ">",
            _ => ">=",
        };
        let bound = if when_up {
            clear_cmp.value.min(when_cmp.value)
        } else {
            clear_cmp.value.max(when_cmp.value)
        };
        (
            format!(
                "rule `{}`: `clear` ({clear_text}) holds whenever `when` ({when_text}) does: it is the wrong way \
                 round, and the alert resolves on the evaluation after it fires",
                rule.name
            ),
            format!(
                "`clear` says when the alert is over, on the other side of the threshold: e.g. clear = \"{} {flipped} {}\"",
                clear_cmp.metric,
                number(bound)
            ),
        )
    } else {
        let side = if when_up { "at or below" } else { "at or above" };
        (
            format!(
                "rule `{}`: `clear` ({clear_text}) and `when` ({when_text}) both hold between {threshold} and {}: \
                 the alert resolves while still past its threshold, then fires again",
                rule.name,
                number(clear_cmp.value)
            ),
            format!("for hysteresis put clear's threshold {side} when's ({threshold}), a few points past it"),
        )
    };
    diags.push(clear.warning(&clear_cmp.chars, message).with_hint(hint));
}

/// The line that marks a playbook meant to be run by hand only (`redops
/// playbook run`, `redops restore`): no rule needs to name it.
pub const MANUAL_MARKER: &str = "// redops: manual";

fn unused_playbooks(config: &Config, rules: &[Rule], playbooks: &PlaybookFiles, diags: &mut Diagnostics) {
    for (name, path) in playbooks {
        if rules.iter().any(|r| r.playbook.as_deref() == Some(name))
            || config.alertmanager.routes.iter().any(|r| &r.playbook == name)
        {
            continue;
        }
        let Ok(file) = SourceFile::read(path) else {
            continue;
        };
        if file.text.lines().any(|l| l.trim() == MANUAL_MARKER) {
            continue;
        }
        diags.push(
            Diagnostic::warning(&file, 0..0, format!("playbook `{name}` is not run by any rule")).with_hint(format!(
                "name it in a rule (playbook = \"{name}\"), or mark it `{MANUAL_MARKER}` if it is only run by hand"
            )),
        );
    }
}

/// A receiver nothing can notify. Alerts of a rule with `notify` go to those
/// receivers; of a rule without, to the routes, or to every receiver when
/// there are no routes (`Router::on_alert`). Playbooks reach a receiver by
/// name with `notify("name", ...)`, or all of them through `receivers()`.
fn unreached_receivers(config: &Config, rules: &[Rule], playbooks: &PlaybookFiles, diags: &mut Diagnostics) {
    let routed = rules.iter().any(|r| r.notify.is_empty());
    if routed && config.routes.is_empty() {
        return;
    }
    let mut reached: BTreeSet<String> = rules.iter().flat_map(|r| r.notify.iter().cloned()).collect();
    if routed {
        for route in &config.routes {
            reached.extend(route.receivers.iter().cloned());
            if let Some(policy) = route.escalation.as_ref().and_then(|e| config.escalations.get(e)) {
                reached.extend(policy.steps.iter().flat_map(|s| s.notify.iter().cloned()));
            }
        }
    }
    reached.extend(config.notify.fallback_receiver.iter().cloned());
    for path in playbooks.values() {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let tokens = tokenize(&text);
        for (i, t) in tokens.iter().enumerate() {
            match &t.tok {
                Tok::Ident { name, call: true, .. } if name == "receivers" => return,
                Tok::Ident { name, call: true, .. } if name == "notify" => {
                    if let Some(Token { tok: Tok::Str(r), .. }) = tokens.get(i + 2) {
                        reached.insert(r.clone());
                    }
                }
                _ => {}
            }
        }
    }
    let unreached: Vec<&String> = config.receivers.keys().filter(|r| !reached.contains(*r)).collect();
    if unreached.is_empty() {
        return;
    }
    let Ok(file) = SourceFile::read(&config.path) else {
        return;
    };
    let spans = receiver_spans(&file);
    for name in unreached {
        let span = spans.get(name).cloned().unwrap_or(0..0);
        diags.push(
            Diagnostic::warning(&file, span, format!("receiver `{name}` is never notified")).with_hint(format!(
                "no rule's `notify`, no [[route]] that gets alerts, no escalation step and no playbook names \
                 `{name}`; a rule with `notify` bypasses the routes, a rule without goes to them (or to every \
                 receiver when there are none)"
            )),
        );
    }
}

/// An `[[incident]]` the config writes that names a rule no rule file
/// defines folds nothing for it: a typo would page the way it always did.
fn unknown_incident_rules(config: &Config, rules: &[Rule], diags: &mut Diagnostics) {
    let Ok(file) = SourceFile::read(&config.path) else {
        return;
    };
    let mut ignored = Diagnostics::default();
    let Some(root) = document::parse(&file, &mut ignored) else {
        return;
    };
    let Some(written) = root.into_inner().into_iter().find(|(k, _)| k.get_ref() == "incident") else {
        // The defaults name the shipped rules; without them they fold nothing.
        return;
    };
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    let spans = crate::config::array_items(&file, written.1, "[[incident]]", &mut ignored);
    for (incident, item) in config.incidents.iter().zip(spans) {
        let named = std::iter::once(&incident.cause).chain(incident.explains.iter().filter(|r| *r != "*"));
        for rule in named.filter(|r| !names.contains(&r.as_str())) {
            let mut d = Diagnostic::warning(
                &file,
                item.span(),
                format!(
                    "[[incident]] `{}` names rule `{rule}`, which no rule file defines",
                    incident.cause
                ),
            );
            d = match document::closest(rule, &names) {
                Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                None => d.with_hint("its alerts are neither folded nor fold anything"),
            };
            diags.push(d);
        }
    }
}

/// An `allow_commands` entry that names no form the policy denies: a
/// command's bare name (`CONFIG`, a renamed `CFG_9f8e`) allows none of
/// its denied subcommands, which is rarely what its author meant.
fn allow_entries_that_allow_nothing(config: &Config, diags: &mut Diagnostics) {
    let playbooks = &config.playbooks;
    let problems: Vec<String> = playbooks
        .allow_commands
        .iter()
        .filter_map(
            |e| match crate::policy::allow_entry_problem(e, &playbooks.renamed_commands) {
                Some(crate::policy::EntryProblem::AllowsNothing(why)) => Some(why),
                _ => None,
            },
        )
        .collect();
    if problems.is_empty() {
        return;
    }
    let Ok(file) = SourceFile::read(&config.path) else {
        return;
    };
    let at = crate::config::find_key(&file, "allow_commands");
    for why in problems {
        diags.push(
            Diagnostic::warning(&file, at.clone(), format!("allow_commands: {why}"))
                .with_hint(crate::config::playbooks::ALLOW_HINT),
        );
    }
}

/// A playbook that calls `http.get`/`http.post` while `[playbooks]
/// http_allow` is not set: it may reach any host a parameter or a reply
/// names.
fn http_without_allowlist(playbooks: &PlaybookFiles, diags: &mut Diagnostics) {
    for (name, path) in playbooks {
        let Ok(file) = SourceFile::read(path) else {
            continue;
        };
        // Comment lines blanked (same length, so positions hold): a comment
        // that mentions http.post is not a call.
        let code: String = file
            .text
            .split_inclusive('\n')
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    l.chars().map(|c| if c == '\n' { c } else { ' ' }).collect()
                } else {
                    l.to_owned()
                }
            })
            .collect();
        let tokens = tokenize(&code);
        let call = tokens.windows(3).find_map(|w| match (&w[0].tok, &w[1].tok, &w[2].tok) {
            (
                Tok::Ident {
                    name: object,
                    member: false,
                    ..
                },
                Tok::Other('.'),
                Tok::Ident {
                    name: method,
                    call: true,
                    ..
                },
            ) if object == "http" && (method == "get" || method == "post") => {
                Some((method.clone(), w[0].chars.clone()))
            }
            _ => None,
        });
        let Some((method, chars)) = call else { continue };
        let byte = |c: usize| code.char_indices().nth(c).map_or(code.len(), |(b, _)| b);
        diags.push(
            Diagnostic::warning(
                &file,
                byte(chars.start)..byte(chars.end),
                format!("playbook `{name}` calls http.{method}, and [playbooks] http_allow is not set: it may reach any host"),
            )
            .with_hint(
                "name the hosts playbooks may call, e.g. [playbooks] http_allow = [\"hooks.example.com\"] (an empty \
                 list allows none)",
            ),
        );
    }
}

/// The span of each receiver's name in `[receiver.NAME]`.
fn receiver_spans(file: &SourceFile) -> HashMap<String, Range<usize>> {
    let mut ignored = Diagnostics::default();
    let mut out = HashMap::new();
    let Some(root) = document::parse(file, &mut ignored) else {
        return out;
    };
    for (key, value) in root.into_inner() {
        if key.get_ref() != "receiver" {
            continue;
        }
        if let toml::de::DeValue::Table(table) = value.into_inner() {
            for (name, _) in table {
                out.insert(name.get_ref().to_string(), name.span());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
