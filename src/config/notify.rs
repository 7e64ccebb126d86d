//! Notification settings: email receivers, routes, escalation policies,
//! and the outbox.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::secrets::Secret;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://host:port` (STARTTLS unless `tls = "none"`) or
    /// `smtps://host:port` (TLS from the first byte).
    pub smtp: String,
    /// `starttls` (default for smtp://), `implicit` (default for smtps://),
    /// or `none` for a local relay on a trusted network.
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// A PEM file of extra CAs to trust, e.g. a relay's private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<Secret>,
    #[serde(default)]
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    /// `{{ name }}` templates over the alert's fields; defaults read well on a phone.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default = "default_email_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_give_up_after", with = "duration")]
    pub give_up_after: Duration,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Implicit,
    None,
}

fn default_email_timeout() -> Duration {
    Duration::from_secs(10)
}

pub fn default_give_up_after() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// `[[route]]`: which alerts go where, and how they are grouped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Label equality matchers; an empty table matches every alert.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// Label regex matchers (anchored).
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    #[serde(default)]
    pub receivers: Vec<String>,
    /// An escalation policy that pages step by step until acknowledged.
    #[serde(default)]
    pub escalation: Option<String>,
    /// Keep matching later routes after this one.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Alerts with the same values of these labels are sent together.
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// How long the first alert of a new group waits for others. 0 s: none.
    #[serde(default, with = "duration")]
    pub group_wait: Duration,
    /// How often a group that already notified sends what changed since.
    #[serde(default = "default_group_interval", with = "duration")]
    pub group_interval: Duration,
    /// How often a still-firing alert is sent again.
    #[serde(default = "default_repeat_interval", with = "duration")]
    pub repeat_interval: Duration,
}

fn default_group_by() -> Vec<String> {
    vec!["rule".into(), "target".into()]
}

fn default_group_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}

/// `[escalation.NAME]`: steps that page further until someone acknowledges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    pub steps: Vec<EscalationStep>,
    /// After the last step, notify its receivers again this often until
    /// acknowledged or resolved.
    #[serde(default, with = "duration::option")]
    pub repeat: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    #[serde(with = "duration")]
    pub after: Duration,
    pub notify: Vec<String>,
}

/// `[notify]`: behaviour shared by every receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Receives an alert when a notification is given up (dead-lettered).
    pub fallback_receiver: Option<String>,
    /// A firing critical alert mutes lower-severity alerts of the same
    /// family (the `family` label, else the rule name without its last
    /// `_word`) on the same target.
    pub inhibit_within_family: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            fallback_receiver: None,
            inhibit_within_family: true,
        }
    }
}

/// `[[incident]]`: alerts that one cause explains are folded into the
/// cause's notification instead of paging on their own (docs/notifications.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentConfig {
    /// The rule whose alert is the incident: the one page.
    pub cause: String,
    /// Rules whose alerts the cause explains; `"*"` for every other rule.
    pub explains: Vec<String>,
    /// Labels the folded alert must share with the cause (and have).
    #[serde(default)]
    pub same: Vec<String>,
    /// How long an explained alert that fires before its cause waits for
    /// it before paging on its own. 0 s: only alerts after the cause fold.
    #[serde(default, with = "duration")]
    pub hold: Duration,
    /// How long after the cause fires (with `while_firing`, after it
    /// resolves) explained alerts still fold into it.
    #[serde(default = "default_incident_window", with = "duration")]
    pub window: Duration,
    /// Fold for as long as the cause fires, then `window` more.
    #[serde(default)]
    pub while_firing: bool,
}

fn default_incident_window() -> Duration {
    Duration::from_secs(60)
}

/// What redops folds when a config names no `[[incident]]` (write
/// `incident = []` to fold nothing): one page per Sentinel failover, and
/// one page per target that is down.
pub fn default_incidents() -> Vec<IncidentConfig> {
    let rules = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    vec![
        IncidentConfig {
            cause: "sentinel_failover".into(),
            explains: rules(&[
                "redis_down",
                "master_sdown",
                "master_odown",
                "replica_link_down",
                "keyspace_subscriber_disconnected",
                "keyspace_events_lost",
            ]),
            same: rules(&["group"]),
            // Sentinel's default down-after-milliseconds (30 s) plus the
            // election: the old master's redis_down comes that much earlier.
            hold: Duration::from_secs(45),
            window: default_incident_window(),
            while_firing: false,
        },
        // A cluster failover explains what was said of the master it
        // replaced and of its shard meanwhile: nodes of a shard share its
        // `shard` label (its slot ranges, which a failover keeps).
        IncidentConfig {
            cause: "cluster_failover".into(),
            explains: rules(&[
                "redis_down",
                "cluster_node_fail",
                "cluster_node_pfail",
                "replica_link_down",
                "keyspace_subscriber_disconnected",
                "keyspace_events_lost",
            ]),
            same: rules(&["cluster", "shard"]),
            // The cluster's node timeout plus the election: the old
            // master's redis_down comes that much before the failover.
            hold: Duration::from_secs(45),
            window: default_incident_window(),
            while_firing: false,
        },
        // The cluster losing slots explains the cluster's state and slot
        // alerts, all on target `<cluster>`.
        IncidentConfig {
            cause: "cluster_state_fail".into(),
            explains: rules(&["cluster_slots_not_ok", "cluster_shard_without_replica"]),
            same: rules(&["cluster"]),
            hold: Duration::from_secs(15),
            window: default_incident_window(),
            while_firing: true,
        },
        // While a target is down, it explains everything else said of it...
        IncidentConfig {
            cause: "redis_down".into(),
            explains: rules(&["*"]),
            same: rules(&["target"]),
            hold: Duration::ZERO,
            window: Duration::ZERO,
            while_firing: true,
        },
        // ...and, for a while after it is back, the echoes of the outage:
        // its keyspace subscription was dropped and made again.
        IncidentConfig {
            cause: "redis_down".into(),
            explains: rules(&["keyspace_subscriber_disconnected", "keyspace_events_lost"]),
            same: rules(&["target"]),
            hold: Duration::ZERO,
            window: default_incident_window(),
            while_firing: true,
        },
    ]
}
