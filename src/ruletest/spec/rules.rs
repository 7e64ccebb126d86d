//! The `[[test]]` of a test file: targets and their series, events and
//! expectations, read key by key and checked against the rules loaded.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::{duration, unknown_name};
use crate::alerts::Severity;
use crate::config::Config;
use crate::config::document;
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::event::SentinelNotice;
use crate::event::sentinel::{SentinelEvent, parse_line};
use crate::matcher::Matcher;
use crate::rules::{Rule, SourceKind};
use crate::ruletest::rule_test::{
    AckInput, AlertState, EventInput, Expect, ExpectedAlert, ExpectedNotification, ExpectedRun, NotificationKind,
    NotificationStatus, RuleTest, SilenceInput, TargetInput, TextMatch, TimedEvent, sentinel_target,
};
use crate::ruletest::series::{self, Point, Series};

const TEST_KEYS: &[&str] = &[
    "name",
    "evaluation_interval",
    "targets",
    "events",
    "silences",
    "acks",
    "expect",
];

/// A `[[test]]`, read key by key so that one bad event or expectation does
/// not hide the problems of the others.
pub(super) struct RuleTestSpec {
    pub(super) name: Spanned<String>,
    evaluation_interval: Option<Spanned<String>>,
    targets: BTreeMap<String, TargetSpec>,
    events: Vec<Spanned<EventSpec>>,
    silences: Vec<Spanned<SilenceSpec>>,
    acks: Vec<Spanned<AckSpec>>,
    expect: Vec<ExpectSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceSpec {
    matchers: Vec<String>,
    #[serde(default)]
    from: Option<Spanned<String>>,
    until: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckSpec {
    at: Spanned<String>,
    rule: String,
    #[serde(default)]
    target: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationSpec {
    receiver: String,
    #[serde(default)]
    kind: Option<NotificationKind>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    status: Option<NotificationStatus>,
    /// The rules of the alerts the notification lists as folded into it.
    #[serde(default)]
    folded: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    summary_match: SummaryMatch,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    series: BTreeMap<String, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventSpec {
    at: Spanned<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    keyspace: Option<KeyspaceSpec>,
    #[serde(default)]
    sentinel: Option<Spanned<String>>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    sentinel_addr: Option<String>,
    #[serde(default)]
    reconciled: bool,
    #[serde(default)]
    health: Option<HealthSpec>,
    #[serde(default)]
    reason: Option<String>,
    /// A schedule rule falling due, by rule name.
    #[serde(default)]
    schedule: Option<Spanned<String>>,
    /// A cluster event (`cluster_failover`, ...) on `target`, with its `fields`.
    #[serde(default)]
    cluster: Option<Spanned<String>>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyspaceSpec {
    rule: Spanned<String>,
    count: u64,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum HealthSpec {
    Up,
    Down,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    at: Spanned<String>,
    #[serde(default)]
    alerts: Option<Vec<Spanned<AlertSpec>>>,
    #[serde(default)]
    playbooks: Option<Vec<Spanned<RunSpec>>>,
    #[serde(default)]
    notifications: Option<Vec<Spanned<NotificationSpec>>>,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum SummaryMatch {
    #[default]
    Exact,
    Contains,
    Regex,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertSpec {
    rule: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default = "firing")]
    state: AlertState,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    summary_match: SummaryMatch,
    #[serde(default)]
    value: Option<String>,
    /// Rendered annotations, each compared exactly.
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn firing() -> AlertState {
    AlertState::Firing
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSpec {
    playbook: String,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    params: Option<BTreeMap<String, toml::Value>>,
}

pub(super) fn rule_test_spec(
    file: &SourceFile,
    item: Spanned<DeValue<'_>>,
    diags: &mut Diagnostics,
) -> Option<RuleTestSpec> {
    let span = item.span();
    let DeValue::Table(table) = item.into_inner() else {
        diags.push(Diagnostic::error(file, span, "expected a table, written [[test]]"));
        return None;
    };
    let mut name = None;
    let mut evaluation_interval = None;
    let mut targets = BTreeMap::new();
    let mut events = Vec::new();
    let mut silences = Vec::new();
    let mut acks = Vec::new();
    let mut expect = Vec::new();
    for (key, value) in table {
        match key.get_ref().as_ref() {
            "name" => name = document::deserialize(file, value, diags),
            "evaluation_interval" => evaluation_interval = document::deserialize(file, value, diags),
            "targets" => {
                let value_span = value.span();
                match value.into_inner() {
                    DeValue::Table(t) => {
                        for (target, spec) in t {
                            if let Some(spec) = document::deserialize::<TargetSpec>(file, spec, diags) {
                                targets.insert(target.into_inner().into_owned(), spec);
                            }
                        }
                    }
                    _ => diags.push(Diagnostic::error(
                        file,
                        value_span,
                        "`targets` is a table of targets, written [test.targets.NAME]",
                    )),
                }
            }
            "events" => {
                for item in crate::config::array_items(file, value, "[[test.events]]", diags) {
                    events.extend(document::deserialize::<Spanned<EventSpec>>(file, item, diags));
                }
            }
            "silences" => silences = document::deserialize(file, value, diags).unwrap_or_default(),
            "acks" => acks = document::deserialize(file, value, diags).unwrap_or_default(),
            "expect" => {
                for item in crate::config::array_items(file, value, "[[test.expect]]", diags) {
                    expect.extend(document::deserialize::<ExpectSpec>(file, item, diags));
                }
            }
            other => {
                let mut d = Diagnostic::error(file, key.span(), format!("unknown key `{other}` in a [[test]]"));
                d = match document::closest(other, TEST_KEYS) {
                    Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                    None => d.with_hint(format!("valid keys here: {}", TEST_KEYS.join(", "))),
                };
                diags.push(d);
            }
        }
    }
    let Some(name) = name else {
        diags.push(Diagnostic::error(file, span, "a [[test]] needs a `name`"));
        return None;
    };
    Some(RuleTestSpec {
        name,
        evaluation_interval,
        targets,
        events,
        silences,
        acks,
        expect,
    })
}

pub(super) fn rule_test(
    file: &SourceFile,
    spec: RuleTestSpec,
    default_interval: Duration,
    rules: &[Arc<Rule>],
    config: Option<&Config>,
    diags: &mut Diagnostics,
) -> Option<RuleTest> {
    let errors_before = diags.error_count();
    let name_span = spec.name.span();
    let interval = match &spec.evaluation_interval {
        Some(text) => duration(file, text, diags).unwrap_or(default_interval),
        None => default_interval,
    };
    if interval.is_zero() {
        diags.push(Diagnostic::error(
            file,
            name_span.clone(),
            "evaluation_interval must be more than 0s",
        ));
    }
    let rule_names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    let mut targets = BTreeMap::new();
    for (name, t) in spec.targets {
        let mut input = TargetInput {
            labels: t.labels,
            series: BTreeMap::new(),
        };
        for (metric, value) in t.series {
            let span = value.span();
            let series = match value.into_inner() {
                toml::Value::String(text) => series::parse(&text).map_err(|e| e.to_string()),
                toml::Value::Integer(i) => Ok(Series::constant(Point::Num(i as f64))),
                toml::Value::Float(f) => Ok(Series::constant(Point::Num(f))),
                toml::Value::Boolean(b) => Ok(Series::constant(Point::Num(f64::from(u8::from(b))))),
                _ => Err("a series is a string (\"50+5x10 90x20\") or a number".into()),
            };
            match series {
                Ok(s) => {
                    input.series.insert(metric, s);
                }
                Err(message) => diags.push(
                    Diagnostic::error(file, span, format!("series `{metric}`: {message}")).with_hint(
                        "terms: `a`, `axN`, `a+bxN`, `a-bxN`, `_` (no value), `stale` (target down); text repeats",
                    ),
                ),
            }
        }
        targets.insert(name, input);
    }

    let sole_target = (targets.len() == 1).then(|| targets.keys().next().cloned()).flatten();
    let mut events = Vec::new();
    for event in spec.events {
        let span = event.span();
        let e = event.into_inner();
        let Some(at) = duration(file, &e.at, diags) else {
            continue;
        };
        let kinds = usize::from(e.keyspace.is_some())
            + usize::from(e.sentinel.is_some())
            + usize::from(e.health.is_some())
            + usize::from(e.schedule.is_some())
            + usize::from(e.cluster.is_some());
        if kinds != 1 {
            diags.push(
                Diagnostic::error(
                    file,
                    span,
                    "an event is one of `keyspace`, `sentinel`, `health`, `schedule` or `cluster`",
                )
                .with_hint("e.g. keyspace = { rule = \"eviction_storm\", count = 2000 }, or health = \"down\""),
            );
            continue;
        }
        let target = e.target.clone().or_else(|| sole_target.clone());
        let input = if let Some(ks) = e.keyspace {
            let rule = rules.iter().find(|r| r.name == *ks.rule.get_ref());
            match rule {
                Some(r) if r.source() == SourceKind::Keyspace => {}
                Some(_) => {
                    diags.push(Diagnostic::error(
                        file,
                        ks.rule.span(),
                        format!("rule `{}` is not a keyspace rule", ks.rule.get_ref()),
                    ));
                    continue;
                }
                None => {
                    diags.push(unknown_name(
                        file,
                        ks.rule.span(),
                        "rule",
                        ks.rule.get_ref(),
                        &rule_names,
                    ));
                    continue;
                }
            }
            let Some(target) = target else {
                diags.push(needs_target(file, span));
                continue;
            };
            EventInput::Keyspace {
                target,
                rule: ks.rule.into_inner(),
                count: ks.count,
            }
        } else if let Some(rule) = e.schedule {
            if !rules
                .iter()
                .any(|r| r.name == *rule.get_ref() && r.source() == SourceKind::Schedule)
            {
                diags.push(unknown_name(
                    file,
                    rule.span(),
                    "schedule rule",
                    rule.get_ref(),
                    &rule_names,
                ));
                continue;
            }
            let Some(target) = target else {
                diags.push(needs_target(file, span));
                continue;
            };
            EventInput::Schedule {
                target,
                rule: rule.into_inner(),
            }
        } else if let Some(name) = e.cluster {
            let known = crate::event::cluster::CLUSTER_EVENTS;
            if !known.contains(&name.get_ref().as_str()) {
                diags.push(unknown_name(file, name.span(), "cluster event", name.get_ref(), known));
                continue;
            }
            let Some(target) = target else {
                diags.push(needs_target(file, span));
                continue;
            };
            // `<cluster>` or `<cluster>/<host:port>`.
            let cluster = target.split('/').next().unwrap_or_default().to_owned();
            EventInput::Cluster(crate::event::cluster::ClusterNotice {
                target,
                cluster,
                event: name.into_inner(),
                fields: e.fields,
            })
        } else if let Some(line) = e.sentinel {
            let event = parse_line(line.get_ref());
            if let SentinelEvent::Raw { reason, .. } = &event {
                diags.push(
                    Diagnostic::error(file, line.span(), format!("not a Sentinel event: {reason}"))
                        .with_hint("write `<channel> <payload>` as Sentinel publishes it, e.g. \"+sdown master mymaster 127.0.0.1 6379\""),
                );
                continue;
            }
            let Some(group) = e.group.clone().or(e.target.clone()).or(sole_target.clone()) else {
                diags.push(
                    Diagnostic::error(file, span, "a Sentinel event needs its `group`")
                        .with_hint("the name of the [[sentinel]] group, e.g. group = \"lab\""),
                );
                continue;
            };
            EventInput::Sentinel(SentinelNotice {
                target: e.target.clone().unwrap_or_else(|| sentinel_target(&group, &event)),
                group,
                event,
                sentinel: e.sentinel_addr.clone().unwrap_or_else(|| "127.0.0.1:26379".into()),
                reconciled: e.reconciled,
            })
        } else {
            let Some(target) = target else {
                diags.push(needs_target(file, span));
                continue;
            };
            EventInput::Health {
                target,
                up: matches!(e.health, Some(HealthSpec::Up)),
                reason: e.reason,
            }
        };
        events.push(TimedEvent { at, input });
    }

    let silences = spec
        .silences
        .into_iter()
        .filter_map(|spec| silence(file, spec, config.is_some(), diags))
        .collect();
    let mut acks = Vec::new();
    for ack in spec.acks {
        let span = ack.span();
        let ack = ack.into_inner();
        if !rule_names.contains(&ack.rule.as_str()) {
            diags.push(unknown_name(file, span, "rule", &ack.rule, &rule_names));
            continue;
        }
        let Some(target) = ack.target.or_else(|| sole_target.clone()) else {
            diags.push(Diagnostic::error(file, span, "this acknowledgement needs a `target`"));
            continue;
        };
        if let Some(at) = duration(file, &ack.at, diags) {
            acks.push(AckInput {
                at,
                rule: ack.rule,
                target,
            });
        }
    }

    if spec.expect.is_empty() {
        diags.push(
            Diagnostic::error(
                file,
                name_span.clone(),
                format!("test `{}` expects nothing", spec.name.get_ref()),
            )
            .with_hint("add a [[test.expect]] with `at` and `alerts` or `playbooks`"),
        );
    }
    let playbook_names: Vec<&str> = rules.iter().filter_map(|r| r.playbook.as_deref()).collect();
    let mut expects = Vec::new();
    for e in spec.expect {
        let line = file.line_col(e.at.span().start).0;
        let at = duration(file, &e.at, diags);
        if e.alerts.is_none() && e.playbooks.is_none() && e.notifications.is_none() {
            diags.push(
                Diagnostic::error(file, e.at.span(), "this expectation checks nothing").with_hint(
                    "give `alerts = [...]` (alerts = [] for none), `playbooks = [...]` or `notifications = [...]`",
                ),
            );
        }
        let notifications = e.notifications.map(|list| {
            list.into_iter()
                .filter_map(|n| expected_notification(file, n, config, diags))
                .collect()
        });
        let alerts = e.alerts.map(|list| {
            list.into_iter()
                .filter_map(|a| expected_alert(file, a, &rule_names, diags))
                .collect()
        });
        let playbooks = e.playbooks.map(|list| {
            list.into_iter()
                .filter_map(|r| {
                    let span = r.span();
                    let r = r.into_inner();
                    if !playbook_names.contains(&r.playbook.as_str()) {
                        diags.push(unknown_name(
                            file,
                            span,
                            "playbook run by these rules",
                            &r.playbook,
                            &playbook_names,
                        ));
                        return None;
                    }
                    Some(ExpectedRun {
                        playbook: r.playbook,
                        rule: r.rule,
                        target: r.target,
                        params: r.params,
                    })
                })
                .collect()
        });
        if let Some(at) = at {
            expects.push(Expect {
                at,
                line,
                alerts,
                playbooks,
                notifications,
            });
        }
    }
    if diags.error_count() > errors_before {
        return None;
    }
    Some(RuleTest {
        name: spec.name.into_inner(),
        line: file.line_col(name_span.start).0,
        interval,
        targets,
        events,
        silences,
        acks,
        expects,
    })
}

fn needs_target(file: &SourceFile, span: Range<usize>) -> Diagnostic {
    Diagnostic::error(file, span, "this event needs a `target`")
        .with_hint("name one of the test's targets; it can be left out when the test has just one")
}

fn expected_alert(
    file: &SourceFile,
    spec: Spanned<AlertSpec>,
    rule_names: &[&str],
    diags: &mut Diagnostics,
) -> Option<ExpectedAlert> {
    let span = spec.span();
    let a = spec.into_inner();
    if !rule_names.contains(&a.rule.as_str()) {
        diags.push(unknown_name(file, span, "rule", &a.rule, rule_names));
        return None;
    }
    if a.state != AlertState::Firing
        && (a.summary.is_some() || !a.labels.is_empty() || a.value.is_some() || !a.annotations.is_empty())
    {
        let message = format!(
            "a {} alert has no summary, labels, value or annotations",
            a.state.as_str()
        );
        diags
            .push(Diagnostic::error(file, span, message).with_hint("check them on a firing alert: state = \"firing\""));
        return None;
    }
    let summary = text_match(file, span, a.summary, a.summary_match, diags).ok()?;
    Some(ExpectedAlert {
        rule: a.rule,
        target: a.target,
        state: a.state,
        severity: a.severity,
        labels: a.labels,
        summary,
        value: a.value,
        annotations: a.annotations,
    })
}

fn text_match(
    file: &SourceFile,
    span: Range<usize>,
    text: Option<String>,
    how: SummaryMatch,
    diags: &mut Diagnostics,
) -> Result<Option<TextMatch>, ()> {
    Ok(match (text, how) {
        (None, _) => None,
        (Some(s), SummaryMatch::Exact) => Some(TextMatch::Exact(s)),
        (Some(s), SummaryMatch::Contains) => Some(TextMatch::Contains(s)),
        (Some(s), SummaryMatch::Regex) => match regex::Regex::new(&s) {
            Ok(r) => Some(TextMatch::Regex(r)),
            Err(e) => {
                diags.push(Diagnostic::error(file, span, format!("summary: invalid regex: {e}")));
                return Err(());
            }
        },
    })
}

fn no_config(file: &SourceFile, span: Range<usize>, what: &str) -> Diagnostic {
    Diagnostic::error(file, span, format!("{what} need the config that routes alerts"))
        .with_hint("add config = \"routing.toml\" (relative to this file) at the top: its receivers, routes, escalations and [notify]")
}

fn silence(
    file: &SourceFile,
    spec: Spanned<SilenceSpec>,
    has_config: bool,
    diags: &mut Diagnostics,
) -> Option<SilenceInput> {
    let span = spec.span();
    if !has_config {
        diags.push(no_config(file, span, "silences"));
        return None;
    }
    let s = spec.into_inner();
    let mut matchers = Vec::new();
    for text in &s.matchers {
        match Matcher::parse(text) {
            Ok(m) => matchers.push(m),
            Err(e) => {
                diags.push(
                    Diagnostic::error(file, span.clone(), format!("matcher `{text}`: {e}"))
                        .with_hint("write label=value, label!=value, label=~regex or label!~regex"),
                );
                return None;
            }
        }
    }
    if matchers.is_empty() {
        diags.push(Diagnostic::error(file, span, "a silence needs at least one matcher"));
        return None;
    }
    let from = match &s.from {
        Some(text) => duration(file, text, diags)?,
        None => Duration::ZERO,
    };
    let until = duration(file, &s.until, diags)?;
    Some(SilenceInput { matchers, from, until })
}

fn expected_notification(
    file: &SourceFile,
    spec: Spanned<NotificationSpec>,
    config: Option<&Config>,
    diags: &mut Diagnostics,
) -> Option<ExpectedNotification> {
    let span = spec.span();
    let Some(config) = config else {
        diags.push(no_config(file, span, "expected notifications"));
        return None;
    };
    let n = spec.into_inner();
    if !config.receivers.contains_key(&n.receiver) {
        let known: Vec<&str> = config.receivers.keys().map(String::as_str).collect();
        diags.push(unknown_name(file, span, "receiver", &n.receiver, &known));
        return None;
    }
    let summary = text_match(file, span, n.summary, n.summary_match, diags).ok()?;
    Some(ExpectedNotification {
        receiver: n.receiver,
        kind: n.kind,
        rule: n.rule,
        target: n.target,
        status: n.status,
        folded: n.folded.map(|mut f| {
            f.sort();
            f
        }),
        summary,
    })
}
