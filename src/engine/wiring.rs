//! Builds every service the running engine needs, in the order they depend
//! on each other, and stops them in the order that loses nothing: sources
//! first, then playbooks in flight, then the notifications still queued.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Options;
use super::internal::state_dir_alert;
use crate::alerts::Alert;
use crate::alerts::store::AlertStore;
use crate::api::state::EngineView;
use crate::cluster::source::spawn_cluster_source;
use crate::config::{Config, ReceiverConfig};
use crate::event::Event;
use crate::ha::{Aligner, Ha};
use crate::invocation::Action;
use crate::notify::router::Router;
use crate::notify::{Notifier, NotifierHandle};
use crate::outbox::Outbox;
use crate::playbooks::engine::PlaybookEngine;
use crate::playbooks::runner::{RunRequest, Runner};
use crate::playbooks::runs::RunStore;
use crate::playbooks::{PlaybookSet, RunRecord};
use crate::rules::{Rule, keyspace_rules};
use crate::sentinel::group::spawn_sentinel_group;
use crate::sources::schedule::{Schedule, ScheduleStore, spawn_schedules};
use crate::sources::targets::TargetSources;
use crate::store::Store;

/// Events queued between the sources and the evaluator.
const EVENT_QUEUE: usize = 65_536;
/// Playbook invocations queued for the runner.
const INVOCATION_QUEUE: usize = 1024;

/// Every running service, and the ends of the channels the loop reads.
pub struct Wiring {
    pub config: Config,
    pub view: EngineView,
    pub router: Router,
    pub notifier: Notifier,
    pub targets: TargetSources,
    pub history: crate::history::Recorder,
    pub events: mpsc::Receiver<Event>,
    pub invocations: mpsc::Sender<RunRequest>,
    pub records: mpsc::Receiver<RunRecord>,
    pub run_store: RunStore,
    /// The playbooks the runner runs; a reload swaps them.
    pub playbooks: Arc<RwLock<PlaybookSet>>,
    /// What the receivers' workers deliver with now: a reload rebuilds
    /// those whose settings changed.
    pub receivers: BTreeMap<String, ReceiverConfig>,
    /// Under `[ha]`: alert changes get their shared start here, off the loop.
    pub aligner: Option<Aligner>,
    pub aligned: Option<mpsc::UnboundedReceiver<Vec<Action>>>,
    ha: Option<Ha>,
    alerts: AlertStore,
    sources: Vec<JoinHandle<()>>,
    sources_stop: CancellationToken,
    effects_stop: CancellationToken,
    history_writer: crate::history::writer::WriterHandle,
    runner_task: JoinHandle<()>,
    notifier_handle: NotifierHandle,
}

impl Wiring {
    pub fn build(
        config: Config,
        rules: &[Arc<Rule>],
        playbooks: PlaybookSet,
        playbook_engine: Arc<PlaybookEngine>,
        options: &Options,
    ) -> anyhow::Result<Wiring> {
        let sources_stop = CancellationToken::new();
        let effects_stop = CancellationToken::new();

        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let mut sources = Vec::new();
        let mut targets = TargetSources::new(events_tx.clone(), sources_stop.clone());
        targets
            .apply(&config, &keyspace_rules(rules))
            .map_err(anyhow::Error::msg)?;
        let shared_config = Arc::new(config.clone());
        for group in &config.sentinels {
            sources.push(spawn_sentinel_group(
                group.clone(),
                shared_config.clone(),
                keyspace_rules(rules),
                events_tx.clone(),
                sources_stop.clone(),
            ));
        }
        for cluster in &config.clusters {
            sources.push(spawn_cluster_source(
                cluster.clone(),
                shared_config.clone(),
                keyspace_rules(rules),
                events_tx.clone(),
                sources_stop.clone(),
            ));
        }

        let mut store_problem = None;
        let store = match Store::open(&config.engine.state_dir) {
            Ok(s) => s,
            Err(e) => {
                // Detection and delivery matter more than durability: go on in
                // memory, loudly.
                tracing::error!(error = %e, "State directory unusable: running WITHOUT durable state (outbox, alerts, silences live in memory only)");
                store_problem = Some(e.to_string());
                Store::in_memory()
            }
        };
        let outbox = Outbox::open(store.clone())?;
        let alert_store = AlertStore::open(store.clone())?;
        let history_store = crate::history::open_for_engine(&config.engine.state_dir, &store)?;
        let (history, history_writer) =
            crate::history::spawn(history_store.clone(), crate::history::TrendWindow::default())?;
        let view = EngineView::default();
        let mut ha = Ha::spawn(&config, view.counters.clone()).map_err(anyhow::Error::msg)?;
        if let Some(ha) = &mut ha {
            ha.prune_outbox(outbox.clone());
            ha.share_alert_state(alert_store.clone());
        }
        let (notifier, notifier_handle) = Notifier::spawn_gated(
            &config.receivers,
            outbox,
            config.notify.fallback_receiver.clone(),
            ha.as_ref().map(|h| h.ledger.clone()),
            effects_stop.clone(),
        )
        .map_err(anyhow::Error::msg)?;
        let mut router = Router::new(&config, notifier.clone(), alert_store.clone());
        if let Some(problem) = store_problem {
            router.on_alert(state_dir_alert(&problem), &[], Instant::now());
        }
        for t in &config.targets {
            view.record_sample(&t.name, Some(&t.labels), &Default::default());
            if let Ok(info) = t.connection_info() {
                view.set_instance(&t.name, &crate::redis::connect::address(&info));
            }
        }
        let every_target = every_target(&config);
        let schedules = schedules(rules, &every_target);
        if !schedules.is_empty() {
            sources.push(spawn_schedules(
                schedules,
                ScheduleStore::open(store.clone())?,
                events_tx.clone(),
                sources_stop.clone(),
            ));
        }
        drop(events_tx);

        let (invocations, invocations_rx) = mpsc::channel::<RunRequest>(INVOCATION_QUEUE);
        let (records_tx, records) = mpsc::channel::<RunRecord>(INVOCATION_QUEUE);
        let run_store = RunStore::open(store.clone())?;
        let interrupted = run_store.mark_interrupted().unwrap_or(0);
        if interrupted > 0 {
            tracing::warn!(
                runs = interrupted,
                "Playbook runs cut short by the last stop marked interrupted"
            );
        }
        let runner = Runner::new(&config, playbook_engine, playbooks, notifier.clone(), options.dry_run)
            .with_run_store(run_store.clone());
        let runner = match &ha {
            Some(ha) => runner.with_ha(ha.ledger.clone()),
            None => runner,
        };
        let live_playbooks = runner.playbooks();
        let runner_task = tokio::spawn(runner.run(invocations_rx, records_tx));
        if config.api.enabled {
            let addr = config.api.check_bind().map_err(anyhow::Error::msg)?;
            let app = crate::api::router(crate::api::ApiDeps {
                config: config.api.clone(),
                view: view.clone(),
                alerts: alert_store.clone(),
                outbox: Some(notifier.outbox().clone()),
                deliveries: notifier.deliveries(),
                runs: Some(run_store.clone()),
                backups: crate::backup::Catalog::open(store.clone())
                    .map_err(
                        |e| tracing::error!(error = %e, "Backup catalog unreadable: GET /api/v1/backups answers 503"),
                    )
                    .ok(),
                runner: Some(crate::api::runs::RunnerHandle {
                    playbooks: live_playbooks.clone(),
                    requests: invocations.downgrade(),
                    targets: every_target.clone(),
                    ha: ha.as_ref().map(|h| h.ledger.clone()),
                }),
                sentinels: crate::api::sentinels::SentinelGroups::new(
                    &config.sentinels,
                    config.engine.command_timeout,
                    config.engine.sample_interval,
                ),
            })
            .merge(crate::api::history::routes(history_store))
            .merge(crate::api::alertmanager::routes(
                &config,
                crate::api::alertmanager::AlertmanagerDeps {
                    runner: crate::api::runs::RunnerHandle {
                        playbooks: live_playbooks.clone(),
                        requests: invocations.downgrade(),
                        targets: every_target.clone(),
                        ha: ha.as_ref().map(|h| h.ledger.clone()),
                    },
                    runs: Some(run_store.clone()),
                    view: view.clone(),
                },
            ));
            let stop = effects_stop.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::api::serve(addr, app, stop).await {
                    tracing::error!(%addr, error = %e, "API not available: cannot listen");
                }
            });
        }
        tokio::spawn(prune_outbox(notifier.outbox().clone(), effects_stop.clone()));
        let (aligner, aligned) = match &ha {
            Some(ha) => {
                let (aligner, aligned) = Aligner::new(ha.ledger.clone());
                (Some(aligner), Some(aligned))
            }
            None => (None, None),
        };
        Ok(Wiring {
            receivers: config.receivers.clone(),
            config,
            view,
            router,
            notifier,
            targets,
            history,
            events,
            invocations,
            records,
            run_store,
            playbooks: live_playbooks,
            aligner,
            aligned,
            ha,
            alerts: alert_store,
            sources,
            sources_stop,
            effects_stop,
            history_writer,
            runner_task,
            notifier_handle,
        })
    }

    /// The alerts firing when redops last stopped, and of those the ones
    /// nobody was told of: a crash between recording an alert and queueing
    /// its notification. One already in the outbox (the crash came between
    /// queueing it and recording who was told) goes out from there, once.
    pub fn restored_alerts(&mut self) -> (Vec<Alert>, Vec<Alert>) {
        let rows: Vec<(crate::alerts::store::AlertRow, Alert)> = self
            .alerts
            .list(false)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|row| Some((serde_json::from_str(&row.alert_json).ok()?, row)))
            .map(|(alert, row)| (row, alert))
            .collect();
        let restored: Vec<Alert> = rows.iter().map(|(_, a)| a.clone()).collect();
        if !restored.is_empty() {
            tracing::info!(alerts = restored.len(), "Restored firing alerts from the state store");
        }
        let outbox = self.notifier.outbox().clone();
        let queued = |alert: &Alert| {
            let key = crate::notify::Notification::Alert(Box::new(crate::notify::AlertNotice::new(alert.clone())))
                .idempotency_key();
            outbox.queued(&key).unwrap_or(false)
        };
        let unsent: Vec<Alert> = rows
            .into_iter()
            .filter(|(row, alert)| row.notified.is_empty() && !row.silenced && !queued(alert))
            .map(|(_, alert)| alert)
            .collect();
        for alert in &unsent {
            tracing::warn!(rule = %alert.rule, target = %alert.target, "Alert restored without a sent notification; sending it now");
        }
        self.router.restore(restored.clone());
        (restored, unsent)
    }

    /// Sources stop first, then playbooks in flight finish, then whatever
    /// is not delivered yet gets a bounded chance and otherwise stays in the
    /// outbox for the next start; the lease goes last.
    pub async fn shutdown(self) {
        tracing::info!("Engine stopping: sources");
        self.sources_stop.cancel();
        for s in self.sources {
            let _ = s.await;
        }
        self.targets.join().await;
        drop(self.history);
        let writer = self.history_writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        tracing::info!("Engine stopping: playbooks in flight");
        drop(self.invocations);
        let _ = self.runner_task.await;
        tracing::info!("Engine stopping: notifications");
        self.effects_stop.cancel();
        drop(self.router);
        drop(self.notifier);
        self.notifier_handle.join().await;
        if let Some(ha) = self.ha {
            ha.stop().await;
        }
        tracing::info!("Engine stopped");
    }
}

/// Every name a playbook may run against: targets, groups, clusters.
fn every_target(config: &Config) -> Vec<String> {
    config
        .targets
        .iter()
        .map(|t| t.name.clone())
        .chain(config.sentinels.iter().map(|g| g.name.clone()))
        .chain(config.clusters.iter().map(|c| c.name.clone()))
        .collect()
}

/// The cron schedules of the rules, each on its targets or on all.
fn schedules(rules: &[Arc<Rule>], every_target: &[String]) -> Vec<Schedule> {
    rules
        .iter()
        .filter_map(|r| {
            let crate::rules::RuleKind::Schedule(spec) = &r.kind else {
                return None;
            };
            Some(Schedule {
                rule: r.name.clone(),
                cron: spec.cron.clone(),
                tz: spec.tz,
                catch_up: spec.catch_up,
                targets: if r.targets.is_empty() {
                    every_target.to_vec()
                } else {
                    r.targets.clone()
                },
            })
        })
        .collect()
}

/// Delivered and dead-lettered notifications are kept this long, for
/// `/metrics` and for whoever investigates a page; then deleted.
const OUTBOX_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Keeps the outbox from growing without bound: hourly, and once at start.
async fn prune_outbox(outbox: Outbox, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let pruning = outbox.clone();
        match tokio::task::spawn_blocking(move || pruning.prune(OUTBOX_KEEP)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(deleted = n, "Outbox pruned of notifications done over 7 days ago"),
            Ok(Err(e)) => tracing::warn!(error = %e, "Cannot prune the outbox"),
            Err(_) => {}
        }
    }
}
