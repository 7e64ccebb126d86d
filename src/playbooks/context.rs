//! What one playbook run sees and what it leaves behind: its context (target,
//! alert, params, limits) and its record (outcome and audit trail).
//!
//! Rhai host functions are plain functions, so the state of the run in
//! progress lives in a thread-local installed for the duration of the run;
//! each run has a blocking thread to itself.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::alerts::Alert;
use crate::invocation::RunOutcome;
use crate::notify::Notifier;
use crate::policy::CommandPolicy;

/// Audit entries beyond this are counted, not kept: a SCAN loop must not
/// turn a run record into megabytes.
const MAX_AUDIT_ENTRIES: usize = 1000;

pub struct RunContext {
    pub run_id: String,
    pub playbook: String,
    pub target: String,
    pub target_labels: BTreeMap<String, String>,
    pub connection: Option<redis::ConnectionInfo>,
    /// Set when the target is a cluster (`<cluster>`) or one of its nodes
    /// (`<cluster>/<host:port>`): commands are then routed by key slot.
    pub cluster: Option<crate::config::ClusterConfig>,
    pub rule: Option<String>,
    pub alert: Option<Alert>,
    pub params: BTreeMap<String, toml::Value>,
    pub dry_run: bool,
    pub deadline: Instant,
    pub command_timeout: Duration,
    pub policy: Arc<CommandPolicy>,
    pub receivers: Arc<HashSet<String>>,
    pub notifier: Notifier,
    /// `None` in every real run. `redops test` sets it to answer Redis
    /// commands from canned replies and to keep time virtual.
    pub scripted: Option<Arc<dyn ScriptedWorld>>,
    /// Where `backup.*` keeps archives and how it seals them; `None` where
    /// a run has no state directory (then `backup.*` fails, saying so).
    pub backups: Option<crate::backup::BackupSettings>,
    /// What `redis.scan`, `exec` and `escalate` may do, from the config.
    pub host: Arc<HostSettings>,
    /// Under `[ha]`: the lease this run was started under. `None` outside
    /// HA (a single engine, `redops playbook run`, `redops test`).
    pub ha: Option<RunLease>,
}

/// The lease a run acts under, checked before each of its side effects.
#[derive(Clone)]
pub struct RunLease {
    pub fence: crate::ha::Fence,
    /// The token the run was claimed (or started) under.
    pub token: u64,
    /// Set on a run a new leader took over from one that lost the lease:
    /// the lost run's id.
    pub retry_of: Option<String>,
}

/// The parts of the config the host API needs beyond the target.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// `[playbooks] scan_limit`.
    pub scan_limit: usize,
    /// `[exec.NAME]`, the only programs `exec` runs.
    pub exec: BTreeMap<String, crate::config::ExecConfig>,
    /// The receivers of each escalation policy's first step, for `escalate`.
    pub escalations: BTreeMap<String, Vec<String>>,
    /// `[playbooks] http_allow`: the hosts `http.*` may reach; `None`, any.
    pub http_allow: Option<crate::policy::HttpAllow>,
    /// `[playbooks] allow_restore_without_backup`.
    pub allow_restore_without_backup: bool,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            scan_limit: crate::config::PlaybookConfig::default().scan_limit,
            exec: BTreeMap::new(),
            escalations: BTreeMap::new(),
            http_allow: None,
            allow_restore_without_backup: false,
        }
    }
}

impl HostSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        HostSettings {
            scan_limit: config.playbooks.scan_limit,
            exec: config.exec.clone(),
            escalations: config
                .escalations
                .iter()
                .map(|(name, e)| {
                    (
                        name.clone(),
                        e.steps.first().map(|s| s.notify.clone()).unwrap_or_default(),
                    )
                })
                .collect(),
            // The config's checks refuse a list that does not parse; were
            // one to get this far, it would allow no host rather than all.
            http_allow: config
                .playbooks
                .http_allow
                .as_ref()
                .map(|hosts| crate::policy::HttpAllow::parse(hosts).unwrap_or_default()),
            allow_restore_without_backup: config.playbooks.allow_restore_without_backup,
        }
    }
}

/// The world outside a run, scripted: what `redops test` puts in place of
/// Redis and the clock so a playbook runs without a server and without
/// waiting. The policy, dry run and audit trail stay the real ones: only the
/// step that would reach the network or sleep asks the script instead.
pub trait ScriptedWorld: Send + Sync {
    /// The reply to a command that would have been sent to the target, or
    /// the error the server would have answered.
    fn redis(&self, args: &[String]) -> Result<redis::Value, String>;
    /// Seconds since the Unix epoch on the script's clock.
    fn now(&self) -> f64;
    /// Moves the script's clock forward instead of sleeping; returns the
    /// virtual time slept so far in this run.
    fn advance(&self, by: Duration) -> Duration;
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    #[serde(with = "humantime_serde_compat")]
    pub at: SystemTime,
    /// `redis`, `notify`, `log`, `http`, `exec`, `escalate`.
    pub kind: &'static str,
    pub detail: String,
    /// True when the call was recorded instead of performed (dry run).
    pub dry_run: bool,
    /// `ok`, or the error.
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub playbook: String,
    pub target: String,
    pub rule: Option<String>,
    pub dry_run: bool,
    #[serde(with = "humantime_serde_compat")]
    pub started_at: SystemTime,
    pub duration_ms: u64,
    pub outcome: RunOutcome,
    /// What the playbook reported with `log.*`: its findings, in order.
    pub findings: Vec<String>,
    pub audit: Vec<AuditEntry>,
    pub audit_dropped: usize,
    /// When the alert that started the run fired: its outcome belongs to
    /// that firing, not to a later one of the same rule and target.
    #[serde(skip)]
    pub alert_started_at: Option<SystemTime>,
}

pub(crate) struct RunState {
    pub ctx: RunContext,
    pub conn: Option<redis::Connection>,
    /// The run's way into its cluster, when its target is one.
    pub cluster: Option<super::cluster_route::ClusterRoute>,
    /// Between a MULTI the server accepted and its EXEC or DISCARD: a read
    /// sent now would be queued, not answered.
    pub in_multi: bool,
    pub audit: Vec<AuditEntry>,
    pub audit_dropped: usize,
    pub findings: Vec<String>,
}

thread_local! {
    static CURRENT: RefCell<Option<RunState>> = const { RefCell::new(None) };
}

pub(crate) fn install(ctx: RunContext) {
    CURRENT.with(|c| {
        let cluster = ctx.cluster.clone().map(|config| {
            let node = ctx.target.strip_prefix(&format!("{}/", config.name)).map(str::to_owned);
            super::cluster_route::ClusterRoute::new(config, node, ctx.scripted.clone())
        });
        *c.borrow_mut() = Some(RunState {
            ctx,
            conn: None,
            cluster,
            in_multi: false,
            audit: Vec::new(),
            audit_dropped: 0,
            findings: Vec::new(),
        })
    });
}

pub(crate) fn uninstall() -> Option<RunState> {
    CURRENT.with(|c| c.borrow_mut().take())
}

/// Runs `f` with the state of the run on this thread. Host functions are
/// only ever called from inside a run, so a missing state is a bug.
pub(crate) fn with_run<R>(f: impl FnOnce(&mut RunState) -> R) -> Result<R, String> {
    CURRENT.with(|c| match c.borrow_mut().as_mut() {
        Some(state) => Ok(f(state)),
        None => Err("host function called outside a playbook run".into()),
    })
}

/// The fence of the run on this thread ([`RunState::fence`]), for a host
/// function about to act: `Err` is what the playbook gets back.
pub(crate) fn fence(kind: &'static str, detail: &str) -> Result<(), Box<rhai::EvalAltResult>> {
    with_run(|run| run.fence(kind, detail))?.map_err(|fenced| format!("{kind}: {fenced}").into())
}

/// Whether the run on this thread has passed its deadline.
pub(crate) fn past_deadline() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|s| Instant::now() >= s.ctx.deadline))
}

impl RunState {
    pub fn record(&mut self, kind: &'static str, detail: String, dry_run: bool, outcome: String) {
        if self.audit.len() >= MAX_AUDIT_ENTRIES {
            self.audit_dropped += 1;
            return;
        }
        self.audit.push(AuditEntry {
            at: SystemTime::now(),
            kind,
            detail: crate::secrets::redact(&detail),
            dry_run,
            outcome,
        });
    }

    /// Under `[ha]`, refuses a side effect unless this instance still holds
    /// the lease the run started under; the refusal is in the audit, as
    /// `fenced`, and is the error the playbook gets.
    pub fn fence(&mut self, kind: &'static str, detail: &str) -> Result<(), crate::ha::Fenced> {
        let Some(lease) = &self.ctx.ha else {
            return Ok(());
        };
        let result = lease.fence.check(lease.token);
        if let Err(fenced) = &result {
            tracing::warn!(run_id = %self.ctx.run_id, playbook = %self.ctx.playbook, target = %self.ctx.target, token = fenced.token, kind, "HA: side effect refused: this instance no longer holds the lease");
            self.record(kind, detail.to_owned(), false, fenced.to_string());
        }
        result
    }

    /// Time left before the deadline, never zero so a socket timeout is valid.
    pub fn remaining(&self) -> Duration {
        self.ctx
            .deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }
}

mod humantime_serde_compat {
    use std::time::SystemTime;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
    }
}
