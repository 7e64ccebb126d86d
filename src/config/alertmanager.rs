//! `[alertmanager]`: which alerts an Alertmanager posts to
//! `POST /api/v1/alertmanager` run which playbook, on which target.
//!
//! ```toml
//! [[alertmanager.route]]
//! match = ["alertname=RedisOutOfConfiguredMaxmemory", "instance=~.*:6379"]
//! playbook = "optimize_memory"
//! target = "{{ labels.instance }}"   # or a target's name
//! params = { aggressive = true }
//! cooldown = "15m"
//! ```
//!
//! Routes are tried in order; the first whose matchers all match an alert's
//! labels runs. Playbook names and fixed targets are checked by
//! [`check_references`] once the playbooks are loaded.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::duration;
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::matcher::Matcher;
use crate::template::Template;

/// Alertmanager groups many alerts into one post; 1 MiB holds hundreds.
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerConfig {
    pub routes: Vec<AlertmanagerRoute>,
    /// Payloads larger than this get 413.
    pub max_body_bytes: usize,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            routes: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// One `[[alertmanager.route]]`.
#[derive(Debug, Clone)]
pub struct AlertmanagerRoute {
    /// Its place among the routes, from 1: how responses and logs name it.
    pub number: usize,
    pub matchers: Vec<Matcher>,
    pub playbook: String,
    /// A target's name, or a template over `labels.*` and `annotations.*`
    /// that renders to a target's name or its `host:port`.
    pub target: Template,
    pub target_text: String,
    pub params: BTreeMap<String, toml::Value>,
    /// After a run on a target, further alerts of this route on that target
    /// run nothing for this long.
    pub cooldown: Option<Duration>,
    /// Records the playbook's side effects instead of performing them.
    pub dry_run: bool,
    playbook_span: Range<usize>,
    target_span: Range<usize>,
}

impl PartialEq for AlertmanagerRoute {
    fn eq(&self, other: &Self) -> bool {
        let text = |r: &AlertmanagerRoute| r.matchers.iter().map(ToString::to_string).collect::<Vec<_>>();
        text(self) == text(other)
            && (
                &self.playbook,
                &self.target_text,
                &self.params,
                self.cooldown,
                self.dry_run,
            ) == (
                &other.playbook,
                &other.target_text,
                &other.params,
                other.cooldown,
                other.dry_run,
            )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(rename = "match")]
    matchers: Spanned<Vec<Spanned<String>>>,
    playbook: Spanned<String>,
    target: Spanned<String>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    #[serde(default, with = "duration::option")]
    cooldown: Option<Duration>,
    #[serde(default)]
    dry_run: bool,
}

/// Reads the `[alertmanager]` table, reporting every problem with its place.
pub(super) fn parse(file: &SourceFile, value: Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> AlertmanagerConfig {
    let mut config = AlertmanagerConfig::default();
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        diags.push(Diagnostic::error(
            file,
            span,
            "`alertmanager` must be a table, e.g. [[alertmanager.route]]",
        ));
        return config;
    };
    for (key, item) in table {
        match key.get_ref().as_ref() {
            "route" => {
                for item in super::array_items(file, item, "[[alertmanager.route]]", diags) {
                    let Some(raw) = super::document::deserialize::<RawRoute>(file, item, diags) else {
                        continue;
                    };
                    if let Some(route) = route(file, raw, config.routes.len() + 1, diags) {
                        config.routes.push(route);
                    }
                }
            }
            "max_body_bytes" => {
                if let Some(n) = super::document::deserialize::<usize>(file, item, diags) {
                    config.max_body_bytes = n;
                }
            }
            other => diags.push(
                Diagnostic::error(file, key.span(), format!("unknown key `{other}` in [alertmanager]"))
                    .with_hint("valid keys here: route, max_body_bytes"),
            ),
        }
    }
    config
}

fn route(file: &SourceFile, raw: RawRoute, number: usize, diags: &mut Diagnostics) -> Option<AlertmanagerRoute> {
    let errors = diags.error_count();
    let mut matchers = Vec::new();
    for m in raw.matchers.get_ref() {
        match Matcher::parse(m.get_ref()) {
            Ok(matcher) => matchers.push(matcher),
            Err(e) => diags.push(Diagnostic::error(file, m.span(), e)),
        }
    }
    if raw.matchers.get_ref().is_empty() {
        diags.push(
            Diagnostic::error(file, raw.matchers.span(), "an alertmanager route needs at least one matcher")
                .with_hint("e.g. match = [\"alertname=RedisOutOfConfiguredMaxmemory\"]; a route matching every alert would run its playbook for any page"),
        );
    }
    let target = match Template::parse(raw.target.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            // +1: past the opening quote.
            let start = raw.target.span().start + 1 + e.offset.unwrap_or(0);
            diags.push(Diagnostic::error(file, start..start + 2, e.message));
            None
        }
    };
    if let Some(t) = &target {
        for var in t.variables() {
            if !(var == "labels" || var == "annotations") {
                diags.push(
                    Diagnostic::error(
                        file,
                        raw.target.span(),
                        format!("`{{{{ {var} }}}}` is not something an Alertmanager alert has"),
                    )
                    .with_hint("use `{{ labels.NAME }}` or `{{ annotations.NAME }}`, e.g. \"{{ labels.instance }}\""),
                );
            }
        }
    }
    if diags.error_count() > errors {
        return None;
    }
    Some(AlertmanagerRoute {
        number,
        matchers,
        playbook: raw.playbook.get_ref().clone(),
        target: target?,
        target_text: raw.target.get_ref().clone(),
        params: raw.params,
        cooldown: raw.cooldown,
        dry_run: raw.dry_run,
        playbook_span: raw.playbook.span(),
        target_span: raw.target.span(),
    })
}

/// Each route's playbook must exist, and a target written without a
/// template must be a configured one: reported in the config file, where
/// the route is written.
pub fn check_references(config: &super::Config, playbooks: &[&str], targets: &[&str], diags: &mut Diagnostics) {
    let routes = &config.alertmanager.routes;
    if routes.is_empty() {
        return;
    }
    let Ok(file) = SourceFile::read(&config.path) else {
        return;
    };
    for route in routes {
        if !playbooks.contains(&route.playbook.as_str()) {
            let mut d = Diagnostic::error(
                &file,
                route.playbook_span.clone(),
                format!(
                    "alertmanager route {} names playbook `{}`, which does not exist",
                    route.number, route.playbook
                ),
            );
            d = match super::document::closest(&route.playbook, playbooks) {
                Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                None => d.with_hint(format!("available playbooks: {}", playbooks.join(", "))),
            };
            diags.push(d);
        }
        let fixed = route.target.variables().is_empty();
        if fixed && !targets.contains(&route.target_text.as_str()) {
            diags.push(
                Diagnostic::error(
                    &file,
                    route.target_span.clone(),
                    format!(
                        "alertmanager route {} names target `{}`, which is not configured",
                        route.number, route.target_text
                    ),
                )
                .with_hint(format!(
                    "configured targets: {}; or write a template such as \"{{{{ labels.instance }}}}\"",
                    targets.join(", ")
                )),
            );
        }
    }
}
