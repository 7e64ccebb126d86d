//! The test file as written (TOML) and its loading into tests ready to run.
//! Every problem is reported at once and located at `file:line:col`, like
//! `redops check`'s: a test file is code too.

mod playbooks;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::playbook_test::PlaybookTest;
use super::rule_test::RuleTest;
use crate::config::{Config, PlaybookConfig, document};
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::playbooks::{Playbook, PlaybookEngine};
use crate::rules::Rule;
use crate::rules::expr::ExprEngine;
use crate::rules::load::{References, parse_rule_file};

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
    /// The config whose receivers, routes, escalations and `[notify]`
    /// settings route the alerts, for expected notifications.
    pub config: Option<Arc<Config>>,
}

const ROOT_KEYS: &[&str] = &[
    "config",
    "rule_files",
    "playbook_files",
    "evaluation_interval",
    "test",
    "playbook_test",
];

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
    let mut config_file: Option<Spanned<String>> = None;
    let mut rule_files: Vec<Spanned<String>> = Vec::new();
    let mut playbook_files: Vec<Spanned<String>> = Vec::new();
    let mut interval = DEFAULT_INTERVAL;
    let mut rule_specs = Vec::new();
    let mut playbook_specs = Vec::new();
    for (key, value) in root.into_inner() {
        match key.get_ref().as_ref() {
            "config" => config_file = document::deserialize(&file, value, diags),
            "rule_files" => rule_files = document::deserialize(&file, value, diags).unwrap_or_default(),
            "playbook_files" => playbook_files = document::deserialize(&file, value, diags).unwrap_or_default(),
            "evaluation_interval" => {
                if let Some(text) = document::deserialize::<Spanned<String>>(&file, value, diags) {
                    interval = duration(&file, &text, diags).unwrap_or(DEFAULT_INTERVAL);
                }
            }
            "test" => {
                for item in crate::config::array_items(&file, value, "[[test]]", diags) {
                    rule_specs.extend(rules::rule_test_spec(&file, item, diags));
                }
            }
            "playbook_test" => {
                for item in crate::config::array_items(&file, value, "[[playbook_test]]", diags) {
                    playbook_specs.extend(document::deserialize::<playbooks::PlaybookTestSpec>(&file, item, diags));
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
    let config = config_file.and_then(|rel| load_config(&file, dir, &rel, diags));
    let rules = load_rules(&file, dir, &rule_files, &expr, diags);
    let playbook_engine = PlaybookEngine::new(&PlaybookConfig::default());
    let playbooks = load_playbooks(&file, dir, &playbook_files, &playbook_engine, diags);

    let rule_tests = rule_specs
        .into_iter()
        .filter_map(|spec| rules::rule_test(&file, spec, interval, &rules, config.as_deref(), diags))
        .collect();
    let playbook_tests = playbook_specs
        .into_iter()
        .filter_map(|spec| playbooks::playbook_test(&file, spec, &playbooks, diags))
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
        config,
    })
}

/// The config a test routes its alerts with. It is read as `redops check`
/// reads it, `${VAR}` included; its errors are reported in it.
fn load_config(file: &SourceFile, dir: &Path, rel: &Spanned<String>, diags: &mut Diagnostics) -> Option<Arc<Config>> {
    let path = relative_to(dir, rel.get_ref());
    let config_file = match SourceFile::read(&path) {
        Ok(f) => f,
        Err(e) => {
            diags.push(Diagnostic::error(
                file,
                rel.span(),
                format!("cannot read config {}: {e}", path.display()),
            ));
            return None;
        }
    };
    let errors_before = diags.error_count();
    let config = Config::parse(&config_file, diags)?;
    (diags.error_count() == errors_before).then(|| Arc::new(config))
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
}
