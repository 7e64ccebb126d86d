//! What a rule is once loaded: its expressions compiled, its templates
//! parsed, its references checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rhai::AST;
use serde::Deserialize;

use crate::alerts::Severity;
use crate::event::keyspace::{KeyspaceRule, KeyspaceSelector};
use crate::glob::Glob;
use crate::template::Template;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Periodic INFO samples and probes.
    Sample,
    /// Keyspace notifications counted in a sliding window.
    Keyspace,
    /// Connection state of a target.
    Health,
    /// Events published by the Sentinels of a group.
    Sentinel,
    /// A cron schedule: runs the rule's playbook, raises no alert.
    Schedule,
    /// Changes a cluster source saw between two discoveries (failovers,
    /// failed nodes, cluster state).
    Cluster,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Sample => "sample",
            SourceKind::Keyspace => "keyspace",
            SourceKind::Health => "health",
            SourceKind::Sentinel => "sentinel",
            SourceKind::Schedule => "schedule",
            SourceKind::Cluster => "cluster",
        }
    }
}

/// When a schedule rule runs.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub cron: croner::Cron,
    pub tz: chrono_tz::Tz,
    pub catch_up: crate::cron::CatchUp,
}

/// Which events a sentinel or cluster rule fires and resolves on.
#[derive(Debug, Clone)]
pub struct SentinelSelector {
    /// Event names or globs (`+failover-*`).
    pub events: Vec<Glob>,
    /// Events that resolve the alert, e.g. `-sdown` for a `+sdown` rule.
    pub resolve_events: Vec<Glob>,
    /// Without a resolving event, the alert resolves after this long.
    pub resolve_after: Duration,
}

impl SentinelSelector {
    pub fn fires_on(&self, event: &str) -> bool {
        self.events.iter().any(|g| g.matches(event.as_bytes()))
    }

    pub fn resolves_on(&self, event: &str) -> bool {
        self.resolve_events.iter().any(|g| g.matches(event.as_bytes()))
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub source: SourceKind,
    pub when: AST,
    pub when_text: String,
    pub clear: Option<AST>,
    pub clear_text: Option<String>,
    pub for_: Duration,
    /// How long a firing alert outlives its condition: it resolves once the
    /// condition has stayed clear this long.
    pub keep_firing_for: Duration,
    pub severity: Severity,
    pub playbook: Option<String>,
    pub params: BTreeMap<String, toml::Value>,
    pub cooldown: Duration,
    pub summary: Template,
    pub labels: BTreeMap<String, String>,
    pub keyspace: Option<KeyspaceSelector>,
    pub sentinel: Option<SentinelSelector>,
    pub schedule: Option<ScheduleSpec>,
    /// Targets the rule applies to; empty means all.
    pub targets: Vec<String>,
    /// Receivers to tell; empty means every receiver.
    pub notify: Vec<String>,
    pub runbook: Option<String>,
    pub description: Option<String>,
    /// Templates rendered per alert and sent to every receiver; `description`
    /// is one of them.
    pub annotations: BTreeMap<String, Template>,
    /// The metric whose value an alert reports: the first metric `when` names.
    pub value_metric: Option<String>,
    pub file: PathBuf,
    /// A digest of the rule's definition, so a reload can tell whether it changed.
    pub digest: String,
}

/// What the keyspace sources need of `rules`: the keyspace rules' names,
/// targets and selectors.
pub fn keyspace_rules(rules: &[Arc<Rule>]) -> Vec<KeyspaceRule> {
    rules
        .iter()
        .filter_map(|r| {
            Some(KeyspaceRule {
                rule: r.name.clone(),
                targets: r.targets.clone(),
                selector: r.keyspace.clone()?,
            })
        })
        .collect()
}

impl Rule {
    /// Whether the rule watches `target`. Naming a Sentinel group covers
    /// the group and each of its nodes (`group/host:port`).
    pub fn applies_to(&self, target: &str) -> bool {
        crate::event::names_target(&self.targets, target)
    }
}

/// The rule as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleSpec {
    pub name: toml::Spanned<String>,
    pub source: SourceKind,
    #[serde(default)]
    pub when: Option<toml::Spanned<String>>,
    #[serde(default, rename = "for", with = "crate::config::duration::option")]
    pub for_: Option<Duration>,
    #[serde(default, with = "crate::config::duration::option")]
    pub keep_firing_for: Option<Duration>,
    #[serde(default)]
    pub clear: Option<toml::Spanned<String>>,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    #[serde(default)]
    pub playbook: Option<toml::Spanned<String>>,
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    #[serde(default, with = "crate::config::duration::option")]
    pub cooldown: Option<Duration>,
    #[serde(default)]
    pub summary: Option<toml::Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub keys: Option<String>,
    #[serde(default, with = "crate::config::duration::option")]
    pub window: Option<Duration>,
    #[serde(default)]
    pub db: Option<u32>,
    #[serde(default)]
    pub resolve_events: Vec<String>,
    #[serde(default, with = "crate::config::duration::option")]
    pub resolve_after: Option<Duration>,
    #[serde(default)]
    pub cron: Option<toml::Spanned<String>>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub catch_up: Option<crate::cron::CatchUp>,
    #[serde(default)]
    pub targets: Vec<toml::Spanned<String>>,
    #[serde(default)]
    pub notify: Vec<toml::Spanned<String>>,
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, toml::Spanned<String>>,
}

fn default_severity() -> Severity {
    Severity::Warning
}
