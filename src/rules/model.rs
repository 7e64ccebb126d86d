//! What a rule is once loaded: its expressions compiled, its templates
//! parsed, its references checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::expr::Compiled;
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
    pub const ALL: [SourceKind; 6] = [
        SourceKind::Sample,
        SourceKind::Keyspace,
        SourceKind::Health,
        SourceKind::Sentinel,
        SourceKind::Schedule,
        SourceKind::Cluster,
    ];

    /// The source a rule names in `source = "..."`.
    pub fn from_name(name: &str) -> Option<SourceKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

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

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// A compiled rule: what every rule has, and in `kind` what its source adds.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// The condition; `true` for an event or schedule rule that gives none.
    pub when: Compiled,
    pub when_text: String,
    pub severity: Severity,
    pub playbook: Option<String>,
    pub params: BTreeMap<String, toml::Value>,
    pub cooldown: Duration,
    pub summary: Template,
    pub labels: BTreeMap<String, String>,
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
    pub kind: RuleKind,
}

/// What a rule's source adds to it. Condition rules (sample, keyspace,
/// health) fire when `when` has held for a while; event rules (sentinel,
/// cluster) fire on each event they name; a schedule runs on its clock.
#[derive(Debug, Clone)]
pub enum RuleKind {
    Sample(Hold),
    Keyspace { hold: Hold, selector: KeyspaceSelector },
    Health(Hold),
    Sentinel(SentinelSelector),
    Cluster(SentinelSelector),
    Schedule(ScheduleSpec),
}

/// How long a condition must hold before its alert fires, and how the
/// alert ends.
#[derive(Debug, Clone, Default)]
pub struct Hold {
    pub for_: Duration,
    /// How long a firing alert outlives its condition: it resolves once the
    /// condition has stayed clear this long.
    pub keep_firing_for: Duration,
    /// Hysteresis: the alert resolves when this holds; without it, when
    /// `when` no longer does.
    pub clear: Option<Compiled>,
    pub clear_text: Option<String>,
}

impl RuleKind {
    pub fn source(&self) -> SourceKind {
        match self {
            RuleKind::Sample(_) => SourceKind::Sample,
            RuleKind::Keyspace { .. } => SourceKind::Keyspace,
            RuleKind::Health(_) => SourceKind::Health,
            RuleKind::Sentinel(_) => SourceKind::Sentinel,
            RuleKind::Cluster(_) => SourceKind::Cluster,
            RuleKind::Schedule(_) => SourceKind::Schedule,
        }
    }

    /// The hold of a condition rule; `None` for event and schedule rules.
    pub fn hold(&self) -> Option<&Hold> {
        match self {
            RuleKind::Sample(hold) | RuleKind::Keyspace { hold, .. } | RuleKind::Health(hold) => Some(hold),
            RuleKind::Sentinel(_) | RuleKind::Cluster(_) | RuleKind::Schedule(_) => None,
        }
    }

    /// The events an event rule fires and resolves on.
    pub fn events(&self) -> Option<&SentinelSelector> {
        match self {
            RuleKind::Sentinel(selector) | RuleKind::Cluster(selector) => Some(selector),
            _ => None,
        }
    }
}

/// What the keyspace sources need of `rules`: the keyspace rules' names,
/// targets and selectors.
pub fn keyspace_rules(rules: &[Arc<Rule>]) -> Vec<KeyspaceRule> {
    rules
        .iter()
        .filter_map(|r| {
            let RuleKind::Keyspace { selector, .. } = &r.kind else {
                return None;
            };
            Some(KeyspaceRule {
                rule: r.name.clone(),
                targets: r.targets.clone(),
                selector: selector.clone(),
            })
        })
        .collect()
}

impl Rule {
    pub fn source(&self) -> SourceKind {
        self.kind.source()
    }

    /// The texts of the rule's expressions: `when`, then `clear` if any.
    pub fn expression_texts(&self) -> impl Iterator<Item = &String> {
        let clear = self.kind.hold().and_then(|h| h.clear_text.as_ref());
        std::iter::once(&self.when_text).chain(clear)
    }

    /// Whether the rule watches `target`. Naming a Sentinel group covers
    /// the group and each of its nodes (`group/host:port`).
    pub fn applies_to(&self, target: &str) -> bool {
        crate::event::names_target(&self.targets, target)
    }
}
