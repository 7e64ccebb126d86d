//! Runs playbook invocations apart from evaluation: each on a blocking
//! thread, at most one at a time per (rule, target).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::context::{HostSettings, RunContext, RunLease, RunRecord};
use super::engine::{PlaybookEngine, PlaybookSet};
use super::runs::{RunStore, Trigger};
use crate::config::Config;
use crate::invocation::Invocation;
use crate::invocation::RunOutcome;
use crate::notify::Notifier;
use crate::policy::CommandPolicy;

/// What a run needs to reach its target.
#[derive(Clone)]
pub struct TargetRuntime {
    pub labels: BTreeMap<String, String>,
    pub connection: Option<redis::ConnectionInfo>,
    /// The cluster a `<cluster>` or `<cluster>/<host:port>` target is of.
    pub cluster: Option<crate::config::ClusterConfig>,
}

/// What the runner is asked to run. Rule and schedule invocations carry
/// only the invocation; a run asked for through the API also carries the id
/// its caller was given, its trigger and whether it is a dry run.
pub struct RunRequest {
    pub invocation: Invocation,
    /// `None`: inferred from the invocation (alert, schedule or manual).
    pub trigger: Option<Trigger>,
    /// `None`: a fresh id when the run starts.
    pub run_id: Option<String>,
    /// A dry run even if the engine performs side effects; an engine
    /// started with `--dry-run` never performs them, whatever this says.
    pub dry_run: bool,
}

/// Under `[ha]`: a run this leader took over from one that lost the lease
/// before finishing it. Its claim is already ours.
#[derive(Debug, Clone)]
struct Retry {
    /// The id of the run the last leader did not finish.
    pub of: String,
    pub token: u64,
    pub key: String,
}

impl From<crate::ha::Orphan> for (RunRequest, Option<Retry>) {
    fn from(o: crate::ha::Orphan) -> Self {
        let request = RunRequest {
            invocation: o.invocation,
            trigger: None,
            run_id: Some(o.run_id),
            dry_run: false,
        };
        let retry = Retry {
            of: o.retry_of,
            token: o.token,
            key: o.key,
        };
        (request, Some(retry))
    }
}

/// How a run under `[ha]` holds the lease: the token its side effects are
/// fenced with, and the claim to close when it ends (rule runs only).
struct Held {
    lease: RunLease,
    claim: Option<String>,
}

impl RunRequest {
    fn trigger(&self) -> Trigger {
        self.trigger.unwrap_or(if self.invocation.alert.is_some() {
            Trigger::Alert
        } else if self.invocation.rule.is_empty() {
            Trigger::Manual
        } else {
            Trigger::Schedule
        })
    }
}

impl From<Invocation> for RunRequest {
    fn from(invocation: Invocation) -> Self {
        RunRequest {
            invocation,
            trigger: None,
            run_id: None,
            dry_run: false,
        }
    }
}

pub struct Runner {
    groups: Vec<crate::config::SentinelGroupConfig>,
    clusters: Vec<crate::config::ClusterConfig>,
    engine: Arc<PlaybookEngine>,
    /// Swapped whole on reload; a run keeps the `Arc<Playbook>` it started with.
    playbooks: Arc<std::sync::RwLock<PlaybookSet>>,
    targets: HashMap<String, TargetRuntime>,
    policy: Arc<CommandPolicy>,
    receivers: Arc<HashSet<String>>,
    notifier: Notifier,
    dry_run: bool,
    timeout: Duration,
    command_timeout: Duration,
    running: Arc<Mutex<HashSet<(String, String)>>>,
    backups: crate::backup::BackupSettings,
    host: Arc<HostSettings>,
    /// Where each run gets its row when it starts.
    runs: Option<RunStore>,
    /// Under `[ha]`: rule-driven runs happen on the leader only, once claimed.
    ha: Option<crate::ha::Ledger>,
    /// How often a leader looks for runs a lost leader left unfinished.
    orphan_scan: Duration,
}

impl Runner {
    pub fn new(
        config: &Config,
        engine: Arc<PlaybookEngine>,
        playbooks: PlaybookSet,
        notifier: Notifier,
        dry_run: bool,
    ) -> Self {
        let targets = config
            .targets
            .iter()
            .map(|t| {
                let connection = t.connection_info().ok();
                (
                    t.name.clone(),
                    TargetRuntime {
                        labels: t.labels.clone(),
                        connection,
                        cluster: None,
                    },
                )
            })
            .collect();
        Runner {
            groups: config.sentinels.clone(),
            clusters: config.clusters.clone(),
            engine,
            playbooks: Arc::new(std::sync::RwLock::new(playbooks)),
            targets,
            policy: Arc::new(CommandPolicy::playbook_with_renames(
                &config.playbooks.allow_commands,
                &config.playbooks.renamed_commands,
            )),
            receivers: Arc::new(config.receivers.keys().cloned().collect()),
            notifier,
            dry_run,
            timeout: config.playbooks.timeout,
            command_timeout: config.engine.command_timeout,
            running: Arc::default(),
            backups: crate::backup::BackupSettings::from_config(config),
            host: Arc::new(HostSettings::from_config(config)),
            runs: None,
            ha: None,
            orphan_scan: config.ha.renew_every(),
        }
    }

    /// Stores each run as `running` when it starts; its record completes it.
    /// Runs rule and schedule invocations only while leading, each once
    /// claimed in the HA ledger. Runs asked for by hand run where asked.
    pub fn with_ha(mut self, ledger: crate::ha::Ledger) -> Self {
        self.ha = Some(ledger);
        self
    }

    /// Under HA, how this run may go ahead: a rule's invocation once
    /// claimed for this leader, a retry with the claim it took over, a run
    /// asked for by hand under the lease held now. `Err` says why not (and
    /// is `None` when only a log line is due). Blocks on the claim.
    fn admit(&self, request: &RunRequest, retry: Option<&Retry>, run_id: &str) -> Result<Option<Held>, Option<String>> {
        let Some(ledger) = &self.ha else {
            return Ok(None);
        };
        let fence = ledger.fence().clone();
        let held = |token, claim, retry_of| {
            Ok(Some(Held {
                lease: RunLease {
                    fence: fence.clone(),
                    token,
                    retry_of,
                },
                claim,
            }))
        };
        let inv = &request.invocation;
        if let Some(retry) = retry {
            tracing::warn!(playbook = %inv.playbook, rule = %inv.rule, target = %inv.target, run_id, retry_of = %retry.of, token = retry.token, "HA: running again a playbook run the last leader did not finish");
            return held(retry.token, Some(retry.key.clone()), Some(retry.of.clone()));
        }
        if inv.rule.is_empty() {
            return match ledger.fence().current() {
                Some(token) => held(token, None, None),
                None => Err(Some(
                    "not started: this instance is not the HA leader (any more); ask the leader".into(),
                )),
            };
        }
        match tokio::runtime::Handle::current().block_on(ledger.claim(inv, run_id)) {
            Ok(crate::ha::Claim::Claimed { token, key }) => held(token, Some(key), None),
            Ok(crate::ha::Claim::Taken) => {
                tracing::info!(playbook = %inv.playbook, rule = %inv.rule, target = %inv.target, "HA: playbook already ran for this firing; not run again");
                Err(None)
            }
            Ok(crate::ha::Claim::NotLeader) => {
                tracing::info!(playbook = %inv.playbook, rule = %inv.rule, target = %inv.target, "HA: no longer the leader; playbook left to the new one");
                Err(None)
            }
            Err(e) => {
                tracing::error!(playbook = %inv.playbook, rule = %inv.rule, target = %inv.target, error = %e, "HA: cannot claim the run; not run, to never run it twice");
                Err(None)
            }
        }
    }

    /// The runs leaders before this one left unfinished, now claimed here.
    async fn orphans(&self) -> Vec<(RunRequest, Option<Retry>)> {
        let Some(ledger) = &self.ha else {
            return Vec::new();
        };
        match ledger.orphans(new_run_id).await {
            Ok(orphans) => orphans.into_iter().map(Into::into).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "HA: cannot look for runs the last leader left unfinished; looking again shortly");
                Vec::new()
            }
        }
    }

    pub fn with_run_store(mut self, runs: RunStore) -> Self {
        self.runs = Some(runs);
        self
    }

    /// A handle to swap the playbooks in on reload.
    pub fn playbooks(&self) -> Arc<std::sync::RwLock<PlaybookSet>> {
        self.playbooks.clone()
    }

    /// Runs invocations until `invocations` closes, then waits for the runs
    /// in flight. Each finished run's record goes to `records`.
    pub async fn run<R>(self, mut invocations: mpsc::Receiver<R>, records: mpsc::Sender<RunRecord>)
    where
        R: Into<RunRequest> + Send + 'static,
    {
        let this = Arc::new(self);
        let mut tasks = JoinSet::new();
        let mut orphan_scan = tokio::time::interval(this.orphan_scan);
        orphan_scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let requests = tokio::select! {
                request = invocations.recv() => match request {
                    Some(request) => vec![(request.into(), None)],
                    None => break,
                },
                _ = orphan_scan.tick(), if this.ha.is_some() => this.orphans().await,
            };
            for (request, retry) in requests {
                Self::start(&this, request, retry, &mut tasks, &records).await;
            }
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "Playbook task panicked");
                }
            }
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "Playbook task panicked");
            }
        }
    }

    /// Starts one request on a blocking thread, unless it is left to the
    /// leader or its rule and target have a run in flight.
    async fn start(
        this: &Arc<Self>,
        mut request: RunRequest,
        retry: Option<Retry>,
        tasks: &mut JoinSet<()>,
        records: &mpsc::Sender<RunRecord>,
    ) {
        let inv = &request.invocation;
        if let Some(ledger) = &this.ha
            && !inv.rule.is_empty()
            && retry.is_none()
            && !ledger.leadership().is_leader()
        {
            tracing::debug!(playbook = %inv.playbook, rule = %inv.rule, target = %inv.target, "HA follower: playbook left to the leader");
            return;
        }
        let key = (inv.rule.clone(), inv.target.clone());
        if !this.running.lock().expect("not poisoned").insert(key.clone()) {
            tracing::warn!(playbook = %inv.playbook, rule = %inv.rule, target = %inv.target, "Playbook already running for this rule and target; invocation skipped");
            let why = "not started: this playbook is already running on this target";
            if let Some(record) = this.not_started(request, why) {
                let _ = records.send(record).await;
            }
            return;
        }
        let runner = this.clone();
        let records = records.clone();
        tasks.spawn_blocking(move || {
            let run_id = request.run_id.get_or_insert_with(new_run_id).clone();
            let record = match runner.admit(&request, retry.as_ref(), &run_id) {
                Ok(held) => Some(runner.run_held(request, held)),
                Err(Some(why)) => runner.not_started(request, &why),
                Err(None) => None,
            };
            runner.running.lock().expect("not poisoned").remove(&key);
            if let Some(record) = record {
                let _ = records.blocking_send(record);
            }
        });
    }

    /// A skipped request whose caller holds a run id (an API run) still gets
    /// a stored run saying why, so the id the caller was given leads
    /// somewhere; a skipped rule invocation is only logged, as before.
    fn not_started(&self, request: RunRequest, why: &str) -> Option<RunRecord> {
        let run_id = request.run_id?;
        let inv = request.invocation;
        let record = RunRecord {
            id: run_id,
            playbook: inv.playbook,
            target: inv.target,
            rule: None,
            dry_run: self.dry_run || request.dry_run,
            started_at: std::time::SystemTime::now(),
            duration_ms: 0,
            outcome: RunOutcome::Failed { error: why.to_owned() },
            findings: Vec::new(),
            audit: Vec::new(),
            audit_dropped: 0,
            alert_started_at: None,
        };
        if let Some(runs) = &self.runs
            && let Err(e) = runs.finish(&record, request.trigger.unwrap_or(Trigger::Manual))
        {
            tracing::error!(run_id = %record.id, error = %e, "Cannot store the skipped playbook run");
        }
        Some(record)
    }

    /// Runs one invocation on the calling thread, stored with its trigger.
    pub fn run_triggered(&self, inv: Invocation, trigger: Trigger) -> RunRecord {
        self.run_request(RunRequest {
            invocation: inv,
            trigger: Some(trigger),
            run_id: None,
            dry_run: false,
        })
    }

    /// Runs one request on the calling thread (which may block).
    pub fn run_request(&self, request: RunRequest) -> RunRecord {
        self.run_held(request, None)
    }

    /// Runs one request, under `[ha]` fenced by the lease it holds, and
    /// closes its claim when it ends.
    fn run_held(&self, request: RunRequest, held: Option<Held>) -> RunRecord {
        let trigger = request.trigger();
        let dry_run = self.dry_run || request.dry_run;
        let run_id = request.run_id.unwrap_or_else(new_run_id);
        let inv = request.invocation;
        let found = self
            .playbooks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&inv.playbook);
        let Some(playbook) = found else {
            return RunRecord {
                id: run_id,
                playbook: inv.playbook.clone(),
                target: inv.target,
                rule: (!inv.rule.is_empty()).then_some(inv.rule),
                dry_run,
                started_at: std::time::SystemTime::now(),
                duration_ms: 0,
                outcome: RunOutcome::Failed {
                    error: format!("no playbook named `{}`", inv.playbook),
                },
                findings: Vec::new(),
                audit: Vec::new(),
                audit_dropped: 0,
                alert_started_at: inv.alert.as_ref().map(|a| a.starts_at),
            };
        };
        let target = self.resolve_target(&inv.target);
        tracing::info!(playbook = %inv.playbook, rule = %inv.rule, target = %inv.target, run_id, dry_run, "Playbook started");
        let ctx = RunContext {
            run_id,
            playbook: inv.playbook.clone(),
            target: inv.target.clone(),
            target_labels: target.labels,
            connection: target.connection,
            cluster: target.cluster,
            rule: (!inv.rule.is_empty()).then_some(inv.rule.clone()),
            alert: inv.alert,
            params: inv.params,
            dry_run,
            deadline: std::time::Instant::now() + self.timeout,
            command_timeout: self.command_timeout,
            policy: self.policy.clone(),
            receivers: self.receivers.clone(),
            notifier: self.notifier.clone(),
            scripted: None,
            backups: Some(self.backups.clone()),
            host: self.host.clone(),
            ha: held.as_ref().map(|h| h.lease.clone()),
        };
        if let Some(runs) = &self.runs
            && let Err(e) = runs.start(&ctx, trigger)
        {
            tracing::error!(run_id = %ctx.run_id, error = %e, "Cannot store the start of the playbook run");
        }
        let record = self.engine.run(&playbook, ctx);
        // Closed before the outcome is logged, so that a run logged as over
        // is never taken for one a lost leader left unfinished.
        if let (
            Some(ledger),
            Some(Held {
                lease,
                claim: Some(key),
            }),
        ) = (&self.ha, &held)
        {
            let finish = ledger.finish(key, lease.token, record.outcome.label());
            match tokio::runtime::Handle::current().block_on(finish) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(run_id = %record.id, token = lease.token, "HA: the run's claim was taken over by a newer leader, which runs it again")
                }
                Err(e) => {
                    tracing::warn!(run_id = %record.id, error = %e, "HA: cannot close the run's claim; a new leader may run it again")
                }
            }
        }
        for entry in record.audit.iter().filter(|e| e.dry_run) {
            tracing::info!(playbook = %record.playbook, target = %record.target, run_id = %record.id, action = %entry.detail, "Dry run: not performed");
        }
        match &record.outcome {
            RunOutcome::Succeeded { .. } => {
                tracing::info!(playbook = %record.playbook, target = %record.target, run_id = %record.id, duration_ms = record.duration_ms, "Playbook succeeded")
            }
            RunOutcome::Failed { error } => {
                tracing::error!(playbook = %record.playbook, target = %record.target, run_id = %record.id, error, "Playbook failed")
            }
            RunOutcome::TimedOut { after_ms } => {
                tracing::error!(playbook = %record.playbook, target = %record.target, run_id = %record.id, after_ms, "Playbook stopped at its deadline")
            }
        }
        record
    }
}

impl Runner {
    /// How a run reaches its target. A Sentinel group's target is its
    /// current master, asked of the Sentinels when the run starts; a node of
    /// a group (`group/host:port`) is that node.
    pub fn resolve_target(&self, name: &str) -> TargetRuntime {
        if let Some(t) = self.targets.get(name) {
            return t.clone();
        }
        let (group_name, addr) = match name.split_once('/') {
            Some((g, a)) => (g, Some(a.to_owned())),
            None => (name, None),
        };
        if let Some(cluster) = self.clusters.iter().find(|c| c.name == group_name) {
            return cluster_target(cluster, addr.as_deref());
        }
        let Some(group) = self.groups.iter().find(|g| g.name == group_name) else {
            return TargetRuntime {
                labels: BTreeMap::new(),
                connection: None,
                cluster: None,
            };
        };
        let addr = addr.or_else(|| crate::sentinel::discovery::master_addr_blocking(group, self.command_timeout));
        let mut labels = group.labels.clone();
        labels.insert("group".into(), group.name.clone());
        let connection = addr.and_then(|a| {
            labels.insert("addr".into(), a.clone());
            group.node_config(&a).connection_info().ok()
        });
        TargetRuntime {
            labels,
            connection,
            cluster: None,
        }
    }
}

/// A cluster (`<cluster>`) or one of its nodes (`<cluster>/<host:port>`):
/// the run finds the topology itself, when it first needs it.
fn cluster_target(cluster: &crate::config::ClusterConfig, addr: Option<&str>) -> TargetRuntime {
    let mut labels = cluster.labels.clone();
    labels.insert("cluster".into(), cluster.name.clone());
    if let Some(addr) = addr {
        labels.insert("addr".into(), addr.to_owned());
    }
    TargetRuntime {
        labels,
        connection: None,
        cluster: Some(cluster.clone()),
    }
}

/// A fresh run id: time-ordered, so ids sort roughly as runs started.
pub fn new_run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{millis:x}-{:04x}", rand::random::<u16>())
}
