//! The test file as written (TOML) and its loading into tests ready to run.
//! Every problem is reported at once and located at `file:line:col`, like
//! `redops check`'s: a test file is code too.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::playbook_test::{AuditMatch, CannedReply, PlaybookExpect, PlaybookTest, Reply};
use super::rule_test::{
    AlertState, EventInput, Expect, ExpectedAlert, ExpectedRun, RuleTest, TargetInput, TextMatch, TimedEvent,
    sentinel_target,
};
use super::series::{self, Point, Series};
use crate::alerts::{Alert, AlertStatus, Severity};
use crate::config::{PlaybookConfig, document};
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::event::SentinelNotice;
use crate::playbooks::{Playbook, PlaybookEngine};
use crate::rules::expr::ExprEngine;
use crate::rules::load::{References, parse_rule_file};
use crate::rules::{Rule, SourceKind};
use crate::sentinel::events::{SentinelEvent, parse_line};

/// How far apart series values are when the file does not say.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// A loaded test file: its rules and playbooks, and its tests.
pub struct TestFile {
    pub path: PathBuf,
    pub rules: Vec<Arc<Rule>>,
    pub expr: Arc<ExprEngine>,
    pub playbook_engine: PlaybookEngine,
    pub rule_tests: Vec<RuleTest>,
    pub playbook_tests: Vec<PlaybookTest>,
}

const ROOT_KEYS: &[&str] = &[
    "rule_files",
    "playbook_files",
    "evaluation_interval",
    "test",
    "playbook_test",
];

const TEST_KEYS: &[&str] = &["name", "evaluation_interval", "targets", "events", "expect"];

/// A `[[test]]`, read key by key so that one bad event or expectation does
/// not hide the problems of the others.
struct RuleTestSpec {
    name: Spanned<String>,
    evaluation_interval: Option<Spanned<String>>,
    targets: BTreeMap<String, TargetSpec>,
    events: Vec<Spanned<EventSpec>>,
    expect: Vec<ExpectSpec>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaybookTestSpec {
    name: Spanned<String>,
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

/// Loads a test file; `None` when it has errors (they are in `diags`).
pub fn load(path: &Path, diags: &mut Diagnostics) -> Option<TestFile> {
    let errors_before = diags.error_count();
    let file = match SourceFile::read(path) {
        Ok(f) => f,
        Err(e) => {
            diags.push(Diagnostic::file_error(path, format!("cannot read test file: {e}")));
            return None;
        }
    };
    let root = document::parse(&file, diags)?;
    let mut rule_files: Vec<Spanned<String>> = Vec::new();
    let mut playbook_files: Vec<Spanned<String>> = Vec::new();
    let mut interval = DEFAULT_INTERVAL;
    let mut rule_specs = Vec::new();
    let mut playbook_specs = Vec::new();
    for (key, value) in root.into_inner() {
        match key.get_ref().as_ref() {
            "rule_files" => rule_files = document::deserialize(&file, value, diags).unwrap_or_default(),
            "playbook_files" => playbook_files = document::deserialize(&file, value, diags).unwrap_or_default(),
            "evaluation_interval" => {
                if let Some(text) = document::deserialize::<Spanned<String>>(&file, value, diags) {
                    interval = duration(&file, &text, diags).unwrap_or(DEFAULT_INTERVAL);
                }
            }
            "test" => {
                for item in crate::config::array_items(&file, value, "[[test]]", diags) {
                    rule_specs.extend(rule_test_spec(&file, item, diags));
                }
            }
            "playbook_test" => {
                for item in crate::config::array_items(&file, value, "[[playbook_test]]", diags) {
                    playbook_specs.extend(document::deserialize::<PlaybookTestSpec>(&file, item, diags));
                }
            }
            other => {
                let mut d = Diagnostic::error(&file, key.span(), format!("unknown key `{other}` in a test file"));
                d = match document::closest(other, ROOT_KEYS) {
                    Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                    None => d.with_hint(format!("valid keys here: {}", ROOT_KEYS.join(", "))),
                };
                diags.push(d);
            }
        }
    }
    if rule_specs.is_empty() && playbook_specs.is_empty() {
        diags.push(
            Diagnostic::error(&file, 0..0, "the file holds no [[test]] and no [[playbook_test]]")
                .with_hint("see docs/testing.md for the format"),
        );
    }
    if let (Some(first), true) = (rule_specs.first(), rule_files.is_empty()) {
        diags.push(
            Diagnostic::error(&file, first.name.span(), "[[test]] needs the rules it tests")
                .with_hint("add rule_files = [\"../../rules/memory.toml\"] (relative to this file) at the top"),
        );
    }
    if let (Some(first), true) = (playbook_specs.first(), playbook_files.is_empty()) {
        diags.push(
            Diagnostic::error(
                &file,
                first.name.span(),
                "[[playbook_test]] needs the playbooks it runs",
            )
            .with_hint(
                "add playbook_files = [\"../../playbooks/optimize_memory.rhai\"] (relative to this file) at the top",
            ),
        );
    }

    let dir = path.parent().unwrap_or(Path::new(""));
    let expr = Arc::new(ExprEngine::new());
    let rules = load_rules(&file, dir, &rule_files, &expr, diags);
    let playbook_engine = PlaybookEngine::new(&PlaybookConfig::default());
    let playbooks = load_playbooks(&file, dir, &playbook_files, &playbook_engine, diags);

    let rule_tests = rule_specs
        .into_iter()
        .filter_map(|spec| rule_test(&file, spec, interval, &rules, diags))
        .collect();
    let playbook_tests = playbook_specs
        .into_iter()
        .filter_map(|spec| playbook_test(&file, spec, &playbooks, diags))
        .collect();
    if diags.error_count() > errors_before {
        return None;
    }
    Some(TestFile {
        path: path.to_owned(),
        rules,
        expr,
        playbook_engine,
        rule_tests,
        playbook_tests,
    })
}

fn rule_test_spec(file: &SourceFile, item: Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> Option<RuleTestSpec> {
    let span = item.span();
    let DeValue::Table(table) = item.into_inner() else {
        diags.push(Diagnostic::error(file, span, "expected a table, written [[test]]"));
        return None;
    };
    let mut name = None;
    let mut evaluation_interval = None;
    let mut targets = BTreeMap::new();
    let mut events = Vec::new();
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
        expect,
    })
}

/// `dir/rel` with `.` and `..` resolved in the text, so diagnostics name
/// `rules/memory.toml` rather than `tests/rules/../../rules/memory.toml`.
fn relative_to(dir: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dir.join(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn duration(file: &SourceFile, text: &Spanned<String>, diags: &mut Diagnostics) -> Option<Duration> {
    match crate::config::duration::parse(text.get_ref()) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.push(Diagnostic::error(file, text.span(), e));
            None
        }
    }
}

/// The names rules in `text` refer to: `redops test` takes the rules'
/// playbooks, targets and receivers as given (checking them is `redops
/// check`'s work, against the config).
fn referenced_names(text: &str) -> BTreeSet<String> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return BTreeSet::new();
    };
    let rules = doc
        .get("rule")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut names = BTreeSet::new();
    for rule in rules.iter().filter_map(toml::Value::as_table) {
        if let Some(p) = rule.get("playbook").and_then(toml::Value::as_str) {
            names.insert(p.to_owned());
        }
        for key in ["targets", "notify"] {
            let list = rule.get(key).and_then(toml::Value::as_array);
            names.extend(list.into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)));
        }
    }
    names
}

fn load_rules(
    file: &SourceFile,
    dir: &Path,
    rule_files: &[Spanned<String>],
    expr: &ExprEngine,
    diags: &mut Diagnostics,
) -> Vec<Arc<Rule>> {
    let mut rules: Vec<Arc<Rule>> = Vec::new();
    for rel in rule_files {
        let path = relative_to(dir, rel.get_ref());
        let rule_file = match SourceFile::read(&path) {
            Ok(f) => f,
            Err(e) => {
                diags.push(Diagnostic::error(
                    file,
                    rel.span(),
                    format!("cannot read rule file {}: {e}", path.display()),
                ));
                continue;
            }
        };
        let names = referenced_names(&rule_file.text);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let refs = References {
            playbooks: names.clone(),
            targets: names.clone(),
            receivers: names,
        };
        for rule in parse_rule_file(&rule_file, &refs, expr, diags) {
            if rules.iter().any(|r| r.name == rule.name) {
                diags.push(Diagnostic::error(
                    file,
                    rel.span(),
                    format!("two rule files define a rule named `{}`", rule.name),
                ));
                continue;
            }
            rules.push(Arc::new(rule));
        }
    }
    rules
}

fn load_playbooks(
    file: &SourceFile,
    dir: &Path,
    playbook_files: &[Spanned<String>],
    engine: &PlaybookEngine,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Arc<Playbook>> {
    let mut out = BTreeMap::new();
    for rel in playbook_files {
        let path = relative_to(dir, rel.get_ref());
        match SourceFile::read(&path) {
            Ok(source) => {
                if let Some(p) = engine.compile(&source, diags) {
                    out.insert(p.name.clone(), Arc::new(p));
                }
            }
            Err(e) => diags.push(Diagnostic::error(
                file,
                rel.span(),
                format!("cannot read playbook {}: {e}", path.display()),
            )),
        }
    }
    out
}

fn unknown_name(file: &SourceFile, span: Range<usize>, what: &str, name: &str, known: &[&str]) -> Diagnostic {
    let d = Diagnostic::error(file, span, format!("no {what} is named `{name}`"));
    match document::closest(name, known) {
        Some(best) => d.with_hint(format!("did you mean `{best}`?")),
        None if known.is_empty() => d.with_hint(format!("the files this test loads define no {what}")),
        None => d.with_hint(format!("known: {}", known.join(", "))),
    }
}

fn rule_test(
    file: &SourceFile,
    spec: RuleTestSpec,
    default_interval: Duration,
    rules: &[Arc<Rule>],
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
        let kinds =
            usize::from(e.keyspace.is_some()) + usize::from(e.sentinel.is_some()) + usize::from(e.health.is_some());
        if kinds != 1 {
            diags.push(
                Diagnostic::error(file, span, "an event is one of `keyspace`, `sentinel` or `health`")
                    .with_hint("e.g. keyspace = { rule = \"eviction_storm\", count = 2000 }, or health = \"down\""),
            );
            continue;
        }
        let target = e.target.clone().or_else(|| sole_target.clone());
        let input = if let Some(ks) = e.keyspace {
            let rule = rules.iter().find(|r| r.name == *ks.rule.get_ref());
            match rule {
                Some(r) if r.source == SourceKind::Keyspace => {}
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
        if e.alerts.is_none() && e.playbooks.is_none() {
            diags.push(
                Diagnostic::error(file, e.at.span(), "this expectation checks nothing")
                    .with_hint("give `alerts = [...]` (alerts = [] for none) or `playbooks = [...]`"),
            );
        }
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
    if a.state == AlertState::Pending && (a.summary.is_some() || !a.labels.is_empty() || a.value.is_some()) {
        diags.push(
            Diagnostic::error(file, span, "a pending alert has no summary, labels or value yet")
                .with_hint("check them once it fires: state = \"firing\""),
        );
        return None;
    }
    let summary = match (a.summary, a.summary_match) {
        (None, _) => None,
        (Some(s), SummaryMatch::Exact) => Some(TextMatch::Exact(s)),
        (Some(s), SummaryMatch::Contains) => Some(TextMatch::Contains(s)),
        (Some(s), SummaryMatch::Regex) => match regex::Regex::new(&s) {
            Ok(r) => Some(TextMatch::Regex(r)),
            Err(e) => {
                diags.push(Diagnostic::error(file, span, format!("summary: invalid regex: {e}")));
                return None;
            }
        },
    };
    Some(ExpectedAlert {
        rule: a.rule,
        target: a.target,
        state: a.state,
        severity: a.severity,
        labels: a.labels,
        summary,
        value: a.value,
    })
}

fn playbook_test(
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
        let words = crate::playbooks::policy::split_command_line(&line);
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
    fn relative_paths_are_resolved_in_the_text() {
        assert_eq!(
            relative_to(Path::new("tests/rules"), "../../rules/memory.toml"),
            PathBuf::from("rules/memory.toml")
        );
        assert_eq!(
            relative_to(Path::new(""), "../rules/x.toml"),
            PathBuf::from("../rules/x.toml")
        );
    }

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
