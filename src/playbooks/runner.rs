//! Runs playbook invocations apart from evaluation: each on a blocking
//! thread, at most one at a time per (rule, target).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::context::{HostSettings, RunContext, RunOutcome, RunRecord};
use super::engine::{PlaybookEngine, PlaybookSet};
use super::policy::CommandPolicy;
use super::runs::{RunStore, Trigger};
use crate::config::Config;
use crate::notify::Notifier;
use crate::rules::Invocation;

/// What a run needs to reach its target.
#[derive(Clone)]
pub struct TargetRuntime {
    pub labels: BTreeMap<String, String>,
    pub connection: Option<redis::ConnectionInfo>,
}

pub struct Runner {
    groups: Vec<crate::config::SentinelGroupConfig>,
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
                let connection = crate::redis::connect::connection_info(t).ok();
                (
                    t.name.clone(),
                    TargetRuntime {
                        labels: t.labels.clone(),
                        connection,
                    },
                )
            })
            .collect();
        Runner {
            groups: config.sentinels.clone(),
            engine,
            playbooks: Arc::new(std::sync::RwLock::new(playbooks)),
            targets,
            policy: Arc::new(CommandPolicy::playbook(&config.playbooks.allow_commands)),
            receivers: Arc::new(config.receivers.keys().cloned().collect()),
            notifier,
            dry_run,
            timeout: config.playbooks.timeout,
            command_timeout: config.engine.command_timeout,
            running: Arc::default(),
            backups: crate::backup::BackupSettings::from_config(config),
            host: Arc::new(HostSettings::from_config(config)),
            runs: None,
        }
    }

    /// Stores each run as `running` when it starts; its record completes it.
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
    pub async fn run(self, mut invocations: mpsc::Receiver<Invocation>, records: mpsc::Sender<RunRecord>) {
        let this = Arc::new(self);
        let mut tasks = JoinSet::new();
        while let Some(inv) = invocations.recv().await {
            let key = (inv.rule.clone(), inv.target.clone());
            if !this.running.lock().expect("not poisoned").insert(key.clone()) {
                tracing::warn!(playbook = %inv.playbook, rule = %inv.rule, target = %inv.target, "Playbook already running for this rule and target; invocation skipped");
                continue;
            }
            let runner = this.clone();
            let records = records.clone();
            tasks.spawn_blocking(move || {
                let record = runner.run_blocking(inv);
                runner.running.lock().expect("not poisoned").remove(&key);
                let _ = records.blocking_send(record);
            });
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

    /// Runs one invocation on the calling thread (which may block).
    pub fn run_blocking(&self, inv: Invocation) -> RunRecord {
        let trigger = if inv.alert.is_some() {
            Trigger::Alert
        } else if inv.rule.is_empty() {
            Trigger::Manual
        } else {
            Trigger::Schedule
        };
        self.run_triggered(inv, trigger)
    }

    /// Runs one invocation on the calling thread, stored with its trigger.
    pub fn run_triggered(&self, inv: Invocation, trigger: Trigger) -> RunRecord {
        let run_id = new_run_id();
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
                rule: Some(inv.rule),
                dry_run: self.dry_run,
                started_at: std::time::SystemTime::now(),
                duration_ms: 0,
                outcome: RunOutcome::Failed {
                    error: format!("no playbook named `{}`", inv.playbook),
                },
                findings: Vec::new(),
                audit: Vec::new(),
                audit_dropped: 0,
            };
        };
        let target = self.resolve_target(&inv.target);
        tracing::info!(playbook = %inv.playbook, rule = %inv.rule, target = %inv.target, run_id, dry_run = self.dry_run, "Playbook started");
        let ctx = RunContext {
            run_id,
            playbook: inv.playbook.clone(),
            target: inv.target.clone(),
            target_labels: target.labels,
            connection: target.connection,
            rule: (!inv.rule.is_empty()).then_some(inv.rule.clone()),
            alert: inv.alert,
            params: inv.params,
            dry_run: self.dry_run,
            deadline: std::time::Instant::now() + self.timeout,
            command_timeout: self.command_timeout,
            policy: self.policy.clone(),
            receivers: self.receivers.clone(),
            notifier: self.notifier.clone(),
            scripted: None,
            backups: Some(self.backups.clone()),
            host: self.host.clone(),
        };
        if let Some(runs) = &self.runs
            && let Err(e) = runs.start(&ctx, trigger)
        {
            tracing::error!(run_id = %ctx.run_id, error = %e, "Cannot store the start of the playbook run");
        }
        let record = self.engine.run(&playbook, ctx);
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
        let Some(group) = self.groups.iter().find(|g| g.name == group_name) else {
            return TargetRuntime {
                labels: BTreeMap::new(),
                connection: None,
            };
        };
        let addr = addr.or_else(|| crate::sentinel::discovery::master_addr_blocking(group, self.command_timeout));
        let mut labels = group.labels.clone();
        labels.insert("group".into(), group.name.clone());
        let connection = addr.and_then(|a| {
            labels.insert("addr".into(), a.clone());
            let target = crate::config::TargetConfig {
                name: name.to_owned(),
                url: format!("redis://{a}/{}", group.db),
                username: group.username.clone(),
                password: group.password.clone(),
                keyspace_events: None,
                labels: BTreeMap::new(),
                probes: BTreeMap::new(),
            };
            crate::redis::connect::connection_info(&target).ok()
        });
        TargetRuntime { labels, connection }
    }
}

fn new_run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{millis:x}-{:04x}", rand::random::<u16>())
}
