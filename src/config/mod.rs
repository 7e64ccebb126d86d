//! The engine's configuration (`config/redops.toml`): targets, receivers,
//! playbook limits and engine settings.
//!
//! Every struct denies unknown keys and names its defaults. Loading collects
//! all problems with their `file:line:col` before giving up.

pub mod alertmanager;
pub mod backup;
pub mod cluster;
mod connection;
pub mod document;
pub mod duration;
pub mod exec;
pub mod ha;
pub mod notify;
pub mod playbooks;
pub mod sentinel;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeValue;

use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::secrets::Secret;
pub use backup::BackupConfig;
pub use cluster::ClusterConfig;
pub use exec::ExecConfig;
pub use ha::HaConfig;
pub use notify::{EmailConfig, EscalationConfig, IncidentConfig, NotifyConfig, RouteConfig};
pub use playbooks::PlaybookConfig;
pub use sentinel::SentinelGroupConfig;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config was read from; relative paths in it resolve here.
    pub path: PathBuf,
    pub engine: EngineConfig,
    pub targets: Vec<TargetConfig>,
    pub sentinels: Vec<SentinelGroupConfig>,
    /// `[[cluster]]`: Redis Clusters, discovered from seed nodes.
    pub clusters: Vec<ClusterConfig>,
    pub receivers: BTreeMap<String, ReceiverConfig>,
    pub routes: Vec<RouteConfig>,
    pub escalations: BTreeMap<String, EscalationConfig>,
    pub notify: NotifyConfig,
    /// `[[incident]]`: which alerts fold into which cause's page.
    pub incidents: Vec<IncidentConfig>,
    pub api: ApiConfig,
    pub playbooks: PlaybookConfig,
    pub backup: BackupConfig,
    /// `[exec.NAME]`: the only programs a playbook's `exec(NAME, args)` may run.
    pub exec: BTreeMap<String, ExecConfig>,
    /// `[ha]`: leader election among instances sharing this config.
    pub ha: HaConfig,
    /// `[[alertmanager.route]]`: Alertmanager alerts that run playbooks.
    pub alertmanager: alertmanager::AlertmanagerConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub rules_dir: PathBuf,
    pub playbooks_dir: PathBuf,
    pub state_dir: PathBuf,
    #[serde(with = "duration")]
    pub sample_interval: Duration,
    /// How soon changed keyspace counts are evaluated: at most once per
    /// tick while counts move (and once a second while they do not), never
    /// per event. 10 ms keeps detection within tens of milliseconds; an
    /// idle reader does not wake for it.
    #[serde(with = "duration")]
    pub keyspace_tick: Duration,
    /// Which keyspace reader subscribes (see [`KeyspaceReader`]).
    pub keyspace_reader: KeyspaceReader,
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    #[serde(with = "duration")]
    pub command_timeout: Duration,
}

impl EngineConfig {
    fn default_of(name: &str) -> Duration {
        let d = EngineConfig::default();
        match name {
            "sample_interval" => d.sample_interval,
            "keyspace_tick" => d.keyspace_tick,
            "connect_timeout" => d.connect_timeout,
            _ => d.command_timeout,
        }
    }
}

/// How keyspace notifications are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum KeyspaceReader {
    /// redops's own RESP reader on a plain TCP connection: frames parsed in
    /// place and counted as they are read (~3× less CPU an event).
    /// `rediss://` and Unix socket targets use redis-rs all the same.
    #[default]
    #[serde(rename = "resp")]
    Resp,
    /// redis-rs's RESP3 pushes through a bounded queue (Redis >= 6).
    #[serde(rename = "redis-rs")]
    RedisRs,
}

/// The span of the first `key =` in the file, for settings checked after
/// deserialization; the start of the file when it is not written there.
pub(crate) fn find_key(file: &SourceFile, key: &str) -> std::ops::Range<usize> {
    let mut offset = 0;
    for line in file.text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            let start = offset + (line.len() - trimmed.len());
            return start..start + key.len();
        }
        offset += line.len();
    }
    0..0
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            rules_dir: "rules".into(),
            playbooks_dir: "playbooks".into(),
            state_dir: "state".into(),
            sample_interval: Duration::from_secs(5),
            keyspace_tick: Duration::from_millis(10),
            keyspace_reader: KeyspaceReader::default(),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    /// `redis://host:port/db`. A password belongs in `password`, from the
    /// environment, not in the URL; one written there is redacted all the same.
    #[serde(deserialize_with = "crate::secrets::redis_url")]
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// Keyspace notification flags redops ensures with CONFIG SET, e.g. "Exe".
    #[serde(default)]
    pub keyspace_events: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Read-only commands run on each sample whose integer reply becomes a
    /// metric, e.g. `celery_backlog = "LLEN celery"`.
    #[serde(default)]
    pub probes: BTreeMap<String, String>,
    /// PEM file of the CA that signs a `rediss://` server's certificate, for
    /// a private CA the system trust store does not hold. Relative to the
    /// config file.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ReceiverConfig {
    Webhook(WebhookConfig),
    Email(EmailConfig),
    /// Writes each notification to redops's own log: for the lab, and as a
    /// last-resort record next to real receivers.
    Log(LogReceiverConfig),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogReceiverConfig {}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Its path and query are redacted as secrets: chat hooks carry their
    /// token there.
    #[serde(deserialize_with = "crate::secrets::webhook_url")]
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    #[serde(default = "default_webhook_timeout", with = "duration")]
    pub timeout: Duration,
    /// Extra headers, e.g. an authorization token from the environment.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// How long a failing delivery is retried before it is given up.
    #[serde(default = "notify::default_give_up_after", with = "duration")]
    pub give_up_after: Duration,
    /// Signs each body with HMAC-SHA256 (`X-Redops-Signature`).
    #[serde(default)]
    pub hmac_secret: Option<Secret>,
    /// PagerDuty's integration (routing) key.
    #[serde(default)]
    pub routing_key: Option<Secret>,
    /// `format = "alertmanager"` only: how often every firing alert the
    /// receiver got is sent again, acknowledged or not, so Alertmanager
    /// does not resolve it after its `resolve_timeout`.
    #[serde(default, with = "duration::option")]
    pub resend_interval: Option<Duration>,
}

/// Alertmanager's own default `resolve_timeout`.
pub const ALERTMANAGER_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

impl WebhookConfig {
    /// How often firing alerts are sent again whatever the routes say:
    /// only to an Alertmanager, every minute unless set.
    pub fn resend_interval(&self) -> Option<Duration> {
        (self.format == WebhookFormat::Alertmanager).then(|| self.resend_interval.unwrap_or(Duration::from_secs(60)))
    }
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// redops's own versioned JSON (docs/notifications.md).
    #[default]
    Generic,
    /// Slack incoming-webhook blocks.
    Slack,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// An Alertmanager's `/api/v2/alerts`.
    Alertmanager,
}

/// `[api]`: the HTTP API, metrics and dashboard.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub enabled: bool,
    /// Loopback by default; any other address requires `token`.
    pub listen: String,
    /// Bearer token for everything that changes state, from the environment.
    pub token: Option<Secret>,
    /// Request bodies larger than this get 413.
    pub max_body_bytes: usize,
}

impl ApiConfig {
    /// Why the API cannot start as configured.
    pub fn check_bind(&self) -> Result<std::net::SocketAddr, String> {
        let addr: std::net::SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "[api] listen = \"{}\" is not an address like 127.0.0.1:9187",
                self.listen
            )
        })?;
        let has_token = self.token.as_ref().is_some_and(|t| !t.expose().is_empty());
        if !addr.ip().is_loopback() && !has_token {
            return Err(format!(
                "[api] listen = \"{}\" is not loopback and [api] token is not set: refusing to expose the API \
                 without authentication (set token = \"${{REDOPS_API_TOKEN}}\", or listen on 127.0.0.1)",
                self.listen
            ));
        }
        Ok(addr)
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            listen: "127.0.0.1:9187".into(),
            token: None,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Why a config cannot be used, and what could be read of it anyway.
#[derive(Debug)]
pub struct ConfigErrors {
    pub diagnostics: Diagnostics,
    /// `None` when the file could not be read or is not valid TOML.
    pub partial: Option<Box<PartialConfig>>,
}

/// A config with errors, as far as it could be read. It must never run, but
/// it names the rules and playbooks to check, so that one `redops check`
/// reports every problem instead of only the config's.
#[derive(Debug)]
pub struct PartialConfig {
    pub config: Config,
    /// Whether `rules_dir` and `playbooks_dir` are the ones written: not when
    /// `[engine]` is too broken to read them, and reading the default dirs
    /// instead would report problems in files the user never meant.
    pub dirs_known: bool,
    /// Targets and receivers that are written but rejected. Rules naming
    /// them are not wrong, so they must not get a second error.
    pub broken_targets: Vec<String>,
    pub broken_receivers: Vec<String>,
}

/// What a broken `[engine]` still tells.
#[derive(Deserialize)]
struct EngineDirs {
    rules_dir: Option<PathBuf>,
    playbooks_dir: Option<PathBuf>,
}

/// What a broken `[[target]]` still tells.
#[derive(Deserialize)]
struct TargetName {
    name: String,
}

impl Config {
    /// Reads and validates the config file. All problems come back at once.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let mut diags = Diagnostics::default();
        let file = match SourceFile::read(path) {
            Ok(f) => f,
            Err(e) => {
                diags.push(Diagnostic::file_error(path, format!("cannot read config: {e}")));
                return Err(ConfigErrors {
                    diagnostics: diags,
                    partial: None,
                });
            }
        };
        match Self::parse_partial(&file, &mut diags) {
            Some(p) if !diags.has_errors() => Ok(p.config),
            partial => Err(ConfigErrors {
                diagnostics: diags,
                partial: partial.map(Box::new),
            }),
        }
    }

    pub fn parse(file: &SourceFile, diags: &mut Diagnostics) -> Option<Config> {
        Self::parse_partial(file, diags).map(|p| p.config)
    }

    fn parse_partial(file: &SourceFile, diags: &mut Diagnostics) -> Option<PartialConfig> {
        let root = document::parse(file, diags)?.into_inner();
        let mut config = Config {
            path: file.path.clone(),
            engine: EngineConfig::default(),
            targets: Vec::new(),
            sentinels: Vec::new(),
            clusters: Vec::new(),
            receivers: BTreeMap::new(),
            routes: Vec::new(),
            escalations: BTreeMap::new(),
            notify: NotifyConfig::default(),
            incidents: notify::default_incidents(),
            api: ApiConfig::default(),
            playbooks: PlaybookConfig::default(),
            backup: BackupConfig::default(),
            exec: BTreeMap::new(),
            ha: HaConfig::default(),
            alertmanager: Default::default(),
        };
        let mut dirs_known = true;
        let mut broken_targets = Vec::new();
        let mut broken_receivers = Vec::new();
        let mut target_spans = Vec::new();
        let mut sentinel_spans = Vec::new();
        let mut cluster_spans = Vec::new();
        let mut route_spans = Vec::new();
        let mut escalation_spans = BTreeMap::new();
        let mut incidents_written = false;
        for (key, mut value) in root {
            document::interpolate_env(file, &mut value, diags);
            match key.get_ref().as_ref() {
                "engine" => {
                    let copy = value.clone();
                    if let Some(e) = document::deserialize(file, value, diags) {
                        config.engine = e;
                    } else {
                        match document::deserialize::<EngineDirs>(file, copy, &mut Diagnostics::default()) {
                            Some(dirs) => {
                                let defaults = EngineConfig::default();
                                config.engine.rules_dir = dirs.rules_dir.unwrap_or(defaults.rules_dir);
                                config.engine.playbooks_dir = dirs.playbooks_dir.unwrap_or(defaults.playbooks_dir);
                            }
                            None => dirs_known = false,
                        }
                    }
                }
                "playbooks" => {
                    if let Some(p) = document::deserialize(file, value, diags) {
                        config.playbooks = p;
                    }
                }
                "backup" => {
                    if let Some(b) = document::deserialize(file, value, diags) {
                        config.backup = b;
                    }
                }
                "target" => {
                    for item in array_items(file, value, "[[target]]", diags) {
                        let span = item.span();
                        let copy = item.clone();
                        if let Some(t) = document::deserialize::<TargetConfig>(file, item, diags) {
                            target_spans.push(span);
                            config.targets.push(t);
                        } else if let Some(t) =
                            document::deserialize::<TargetName>(file, copy, &mut Diagnostics::default())
                        {
                            broken_targets.push(t.name);
                        }
                    }
                }
                "sentinel" => {
                    for item in array_items(file, value, "[[sentinel]]", diags) {
                        let span = item.span();
                        if let Some(g) = document::deserialize::<SentinelGroupConfig>(file, item, diags) {
                            sentinel_spans.push(span);
                            config.sentinels.push(g);
                        }
                    }
                }
                "cluster" => {
                    for item in array_items(file, value, "[[cluster]]", diags) {
                        let span = item.span();
                        if let Some(c) = document::deserialize::<ClusterConfig>(file, item, diags) {
                            cluster_spans.push(span);
                            config.clusters.push(c);
                        }
                    }
                }
                "route" => {
                    for item in array_items(file, value, "[[route]]", diags) {
                        let span = item.span();
                        if let Some(r) = document::deserialize::<RouteConfig>(file, item, diags) {
                            route_spans.push(span);
                            config.routes.push(r);
                        }
                    }
                }
                "incident" => {
                    // Any `[[incident]]` (or `incident = []`) replaces the defaults.
                    if !incidents_written {
                        config.incidents.clear();
                        incidents_written = true;
                    }
                    for item in array_items(file, value, "[[incident]]", diags) {
                        if let Some(i) = document::deserialize::<IncidentConfig>(file, item, diags) {
                            config.incidents.push(i);
                        }
                    }
                }
                "escalation" => {
                    let span = value.span();
                    match value.into_inner() {
                        DeValue::Table(table) => {
                            for (name, item) in table {
                                let item_span = item.span();
                                if let Some(e) = document::deserialize::<EscalationConfig>(file, item, diags) {
                                    let name = name.into_inner().into_owned();
                                    escalation_spans.insert(name.clone(), item_span);
                                    config.escalations.insert(name, e);
                                }
                            }
                        }
                        _ => diags.push(Diagnostic::error(
                            file,
                            span,
                            "`escalation` must be a table of named policies, e.g. [escalation.critical]",
                        )),
                    }
                }
                "exec" => {
                    if let Some(e) = document::deserialize(file, value, diags) {
                        config.exec = e;
                    }
                }
                "api" => {
                    if let Some(a) = document::deserialize(file, value, diags) {
                        config.api = a;
                    }
                }
                "ha" => {
                    if let Some(h) = document::deserialize(file, value, diags) {
                        config.ha = h;
                    }
                }
                "alertmanager" => config.alertmanager = alertmanager::parse(file, value, diags),
                "notify" => {
                    if let Some(n) = document::deserialize(file, value, diags) {
                        config.notify = n;
                    }
                }
                "receiver" => {
                    let span = value.span();
                    match value.into_inner() {
                        DeValue::Table(table) => {
                            for (name, item) in table {
                                let name = name.into_inner().into_owned();
                                match document::deserialize(file, item, diags) {
                                    Some(r) => {
                                        config.receivers.insert(name, r);
                                    }
                                    None => broken_receivers.push(name),
                                }
                            }
                        }
                        _ => diags.push(Diagnostic::error(
                            file,
                            span,
                            "`receiver` must be a table of named receivers, e.g. [receiver.pager]",
                        )),
                    }
                }
                other => {
                    let options = [
                        "engine",
                        "target",
                        "sentinel",
                        "cluster",
                        "receiver",
                        "route",
                        "escalation",
                        "incident",
                        "notify",
                        "api",
                        "playbooks",
                        "backup",
                        "exec",
                        "ha",
                        "alertmanager",
                    ];
                    let mut d = Diagnostic::error(file, key.span(), format!("unknown section `{other}`"));
                    d = match document::closest(other, &options) {
                        Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                        None => d.with_hint(format!("valid sections: {}", options.join(", "))),
                    };
                    diags.push(d);
                }
            }
        }
        config.validate(file, &target_spans, &sentinel_spans, diags);
        config.validate_clusters(file, &cluster_spans, diags);
        config.validate_notify(file, &route_spans, &escalation_spans, diags);
        Some(PartialConfig {
            config,
            dirs_known,
            broken_targets,
            broken_receivers,
        })
    }

    fn validate(
        &mut self,
        file: &SourceFile,
        target_spans: &[std::ops::Range<usize>],
        sentinel_spans: &[std::ops::Range<usize>],
        diags: &mut Diagnostics,
    ) {
        let base = self.path.parent().unwrap_or(Path::new("."));
        for dir in [
            &mut self.engine.rules_dir,
            &mut self.engine.playbooks_dir,
            &mut self.engine.state_dir,
        ] {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        self.backup.resolve_paths(base);
        self.backup.validate(file, diags);
        self.playbooks.validate(file, diags);
        for ca in self.targets.iter_mut().filter_map(|t| t.tls_ca.as_mut()) {
            if ca.is_relative() {
                *ca = base.join(&*ca);
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (target, span) in self.targets.iter().zip(target_spans) {
            if !seen.insert(target.name.as_str()) {
                diags.push(
                    Diagnostic::error(file, span.clone(), format!("two targets are named `{}`", target.name))
                        .with_hint("target names must be unique; they label every alert"),
                );
            }
            if !(target.url.starts_with("redis://") || target.url.starts_with("rediss://")) {
                diags.push(
                    Diagnostic::error(
                        file,
                        span.clone(),
                        format!("target `{}`: url must start with redis:// or rediss://", target.name),
                    )
                    .with_hint("e.g. url = \"redis://127.0.0.1:6379/1\""),
                );
            }
            if target.tls_ca.is_some()
                && let Err(why) = target.connection_info()
            {
                diags.push(
                    Diagnostic::error(file, span.clone(), why)
                        .with_hint("tls_ca = \"path/to/ca.pem\" with a rediss:// url"),
                );
            }
            if let Some(flags) = &target.keyspace_events
                && let Some(bad) = flags.chars().find(|c| !"KEg$lshzxetdmnA".contains(*c))
            {
                diags.push(
                    Diagnostic::error(
                        file,
                        span.clone(),
                        format!("target `{}`: `{bad}` is not a keyspace event flag", target.name),
                    )
                    .with_hint("flags are those of notify-keyspace-events: K E g $ l s h z x e t d m n A"),
                );
            }
            for (name, probe) in &target.probes {
                if let Err(e) = crate::policy::CommandPolicy::read_only().check_line(probe) {
                    // The policy's message quotes the command upper-cased,
                    // which redaction would not recognise as the secret.
                    let why = if crate::secrets::redact(probe) == *probe {
                        e.to_string()
                    } else {
                        "not allowed by the read-only probe policy (the command is not shown: it holds a value \
                         from the environment)"
                            .to_owned()
                    };
                    diags.push(
                        Diagnostic::error(
                            file,
                            span.clone(),
                            format!("target `{}`: probe `{name}`: {why}", target.name),
                        )
                        .with_hint("probes run under the read-only policy, e.g. \"LLEN celery\""),
                    );
                }
            }
        }
        for (name, value, min) in [
            (
                "sample_interval",
                self.engine.sample_interval,
                Duration::from_millis(100),
            ),
            ("keyspace_tick", self.engine.keyspace_tick, Duration::from_millis(10)),
            (
                "connect_timeout",
                self.engine.connect_timeout,
                Duration::from_millis(10),
            ),
            (
                "command_timeout",
                self.engine.command_timeout,
                Duration::from_millis(10),
            ),
        ] {
            if value < min {
                let at = find_key(file, name);
                diags.push(
                    Diagnostic::error(
                        file,
                        at,
                        format!("engine.{name} must be at least {}", humantime::format_duration(min)),
                    )
                    .with_hint(format!(
                        "e.g. {name} = \"{}\"",
                        humantime::format_duration(EngineConfig::default_of(name))
                    )),
                );
            }
        }
        for target in &self.targets {
            for name in target.probes.keys() {
                if crate::event::metric_names::is_known_metric(name) {
                    diags.push(
                        Diagnostic::error(
                            file,
                            find_key(file, name),
                            format!(
                                "target `{}`: probe `{name}` has the name of a built-in metric",
                                target.name
                            ),
                        )
                        .with_hint("give the probe its own name, e.g. celery_backlog"),
                    );
                }
            }
        }
        let lease_holders: Vec<&str> = self
            .targets
            .iter()
            .map(|t| t.name.as_str())
            .chain(self.sentinels.iter().map(|g| g.name.as_str()))
            .collect();
        self.ha.validate(file, &lease_holders, diags);
        let mut group_names = std::collections::HashSet::new();
        for (group, span) in self.sentinels.iter().zip(sentinel_spans) {
            let mut problem = |msg: String, hint: &str| {
                diags.push(Diagnostic::error(file, span.clone(), msg).with_hint(hint.to_owned()))
            };
            if !group_names.insert(group.name.as_str()) || self.targets.iter().any(|t| t.name == group.name) {
                problem(
                    format!("two targets or groups are named `{}`", group.name),
                    "names label every alert; make them unique",
                );
            }
            if group.sentinels.is_empty() {
                problem(
                    format!("sentinel group `{}` lists no sentinels", group.name),
                    "e.g. sentinels = [\"10.0.0.1:26379\", \"10.0.0.2:26379\", \"10.0.0.3:26379\"]",
                );
            }
            for addr in &group.sentinels {
                if crate::event::sentinel::parse_addr(addr).is_none() {
                    problem(
                        format!("sentinel group `{}`: `{addr}` is not host:port", group.name),
                        "e.g. \"127.0.0.1:26379\"",
                    );
                }
            }
        }
    }

    /// A cluster needs a unique name and seeds written `host:port`.
    fn validate_clusters(
        &mut self,
        file: &SourceFile,
        cluster_spans: &[std::ops::Range<usize>],
        diags: &mut Diagnostics,
    ) {
        let base = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        for ca in self.clusters.iter_mut().filter_map(|c| c.tls_ca.as_mut()) {
            if ca.is_relative() {
                *ca = base.join(&*ca);
            }
        }
        let mut names = std::collections::HashSet::new();
        for (cluster, span) in self.clusters.iter().zip(cluster_spans) {
            let mut problem = |msg: String, hint: &str| {
                diags.push(Diagnostic::error(file, span.clone(), msg).with_hint(hint.to_owned()))
            };
            let taken = self.targets.iter().any(|t| t.name == cluster.name)
                || self.sentinels.iter().any(|g| g.name == cluster.name);
            if !names.insert(cluster.name.as_str()) || taken {
                problem(
                    format!("two targets, groups or clusters are named `{}`", cluster.name),
                    "names label every alert; make them unique",
                );
            }
            if cluster.seeds.is_empty() {
                problem(
                    format!("cluster `{}` lists no seeds", cluster.name),
                    "e.g. seeds = [\"10.0.0.1:6379\", \"10.0.0.2:6379\"]; any node of the cluster will do",
                );
            }
            for addr in &cluster.seeds {
                if crate::event::sentinel::parse_addr(addr).is_none() {
                    problem(
                        format!("cluster `{}`: seed `{addr}` is not host:port", cluster.name),
                        "e.g. \"127.0.0.1:7000\"",
                    );
                }
            }
        }
    }

    /// Routes and escalation policies may only name what exists.
    fn validate_notify(
        &self,
        file: &SourceFile,
        route_spans: &[std::ops::Range<usize>],
        escalation_spans: &BTreeMap<String, std::ops::Range<usize>>,
        diags: &mut Diagnostics,
    ) {
        let receivers: Vec<&str> = self.receivers.keys().map(String::as_str).collect();
        let unknown_receiver = |name: &str, span: &std::ops::Range<usize>, diags: &mut Diagnostics| {
            let mut d = Diagnostic::error(file, span.clone(), format!("no receiver named `{name}`"));
            if let Some(best) = document::closest(name, &receivers) {
                d = d.with_hint(format!("did you mean `{best}`?"));
            }
            diags.push(d);
        };
        for (route, span) in self.routes.iter().zip(route_spans) {
            for r in &route.receivers {
                if !self.receivers.contains_key(r) {
                    unknown_receiver(r, span, diags);
                }
            }
            if let Some(e) = &route.escalation
                && !self.escalations.contains_key(e)
            {
                diags.push(
                    Diagnostic::error(file, span.clone(), format!("no escalation policy named `{e}`"))
                        .with_hint("define it as [escalation.NAME] with steps = [{ after = \"0m\", notify = [...] }]"),
                );
            }
            if route.receivers.is_empty() && route.escalation.is_none() {
                diags.push(
                    Diagnostic::error(file, span.clone(), "a route needs `receivers` or an `escalation`")
                        .with_hint("e.g. receivers = [\"oncall-email\"]"),
                );
            }
            for (label, re) in &route.match_re {
                if let Err(e) = crate::matcher::anchored(re) {
                    diags.push(Diagnostic::error(file, span.clone(), format!("match_re.{label}: {e}")));
                }
            }
        }
        for (name, policy) in &self.escalations {
            let span = escalation_spans.get(name).cloned().unwrap_or(0..0);
            if policy.steps.is_empty() {
                diags.push(Diagnostic::error(
                    file,
                    span.clone(),
                    format!("escalation `{name}` has no steps"),
                ));
            }
            for step in &policy.steps {
                for r in &step.notify {
                    if !self.receivers.contains_key(r) {
                        unknown_receiver(r, &span, diags);
                    }
                }
            }
        }
        if self.api.enabled
            && let Err(e) = self.api.check_bind()
        {
            diags.push(
                Diagnostic::error(file, find_key(file, "listen"), e)
                    .with_hint("the API must never be reachable from the network without authentication"),
            );
        }
        if let Some(f) = &self.notify.fallback_receiver
            && !self.receivers.contains_key(f)
        {
            diags.push(Diagnostic::file_error(
                &self.path,
                format!("[notify] fallback_receiver: no receiver named `{f}`"),
            ));
        }
        for (name, receiver) in &self.receivers {
            if let ReceiverConfig::Email(e) = receiver
                && !(e.smtp.starts_with("smtp://") || e.smtp.starts_with("smtps://"))
            {
                diags.push(
                    Diagnostic::error(
                        file,
                        find_key(file, "smtp"),
                        format!("receiver `{name}`: smtp must be smtp://host:port or smtps://host:port"),
                    )
                    .with_hint(
                        "smtp:// uses STARTTLS (tls = \"none\" for a local relay); smtps:// is TLS from the start",
                    ),
                );
            }
            if let ReceiverConfig::Webhook(w) = receiver
                && w.format == WebhookFormat::Pagerduty
                && w.routing_key.is_none()
            {
                diags.push(
                    Diagnostic::error(
                        file,
                        find_key(file, "format"),
                        format!("receiver `{name}`: PagerDuty needs a routing_key"),
                    )
                    .with_hint("routing_key = \"${PAGERDUTY_ROUTING_KEY}\""),
                );
            }
            if let ReceiverConfig::Webhook(w) = receiver {
                check_resend_interval(file, name, w, diags);
            }
        }
    }

    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }
}

/// `resend_interval` belongs to Alertmanager receivers and must be
/// positive. (One that lets alerts lapse is a lint warning.)
fn check_resend_interval(file: &SourceFile, name: &str, w: &WebhookConfig, diags: &mut Diagnostics) {
    let Some(every) = w.resend_interval else {
        return;
    };
    let span = find_key(file, "resend_interval");
    if w.format != WebhookFormat::Alertmanager {
        diags.push(
            Diagnostic::error(
                file,
                span,
                format!("receiver `{name}`: resend_interval is only for format = \"alertmanager\""),
            )
            .with_hint("other receivers repeat through a [[route]]'s repeat_interval"),
        );
    } else if every.is_zero() {
        diags.push(Diagnostic::error(
            file,
            span,
            format!("receiver `{name}`: resend_interval must be more than 0s"),
        ));
    }
}

pub(crate) fn array_items<'i>(
    file: &SourceFile,
    value: toml::Spanned<DeValue<'i>>,
    what: &str,
    diags: &mut Diagnostics,
) -> Vec<toml::Spanned<DeValue<'i>>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items.iter().cloned().collect(),
        _ => {
            diags.push(Diagnostic::error(
                file,
                span,
                format!("expected an array of tables, written {what}"),
            ));
            Vec::new()
        }
    }
}
