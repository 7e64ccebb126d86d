//! The running engine: sources feed events to the evaluator; its actions go
//! to the playbook runner and the notifier, which run apart from evaluation
//! so that a slow webhook or a long playbook never delays detection.
//!
//! Stopping is orderly: sources stop first, then playbooks in flight finish,
//! then notifications still queued get a bounded chance to go out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alerts::store::AlertStore;
use crate::alerts::{Alert, fingerprint};
use crate::api::state::EngineView;
use crate::cluster::source::spawn_cluster_source;
use crate::config::ReceiverConfig;
use crate::invocation::Action;
use crate::loader::Loaded;
use crate::notify::router::Router;
use crate::notify::{Notifier, PlaybookSummary};
use crate::outbox::Outbox;
use crate::playbooks::RunRecord;
use crate::playbooks::runner::{RunRequest, Runner};
use crate::rules::history::history_retention;
use crate::rules::{Evaluator, keyspace_rules};
use crate::sentinel::group::spawn_sentinel_group;
use crate::sources::schedule::{Schedule, ScheduleStore, spawn_schedules};
use crate::sources::targets::TargetSources;
use crate::store::Store;

/// Events queued between the sources and the evaluator.
const EVENT_QUEUE: usize = 65_536;
/// Playbook invocations queued for the runner.
const INVOCATION_QUEUE: usize = 1024;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Record playbook side effects instead of performing them.
    pub dry_run: bool,
}

pub async fn run(loaded: Loaded, options: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Loaded {
        config,
        rules,
        playbooks,
        playbook_engine,
        expr,
        ..
    } = loaded;
    let sources_stop = CancellationToken::new();
    let effects_stop = CancellationToken::new();

    let (events_tx, mut events_rx) = mpsc::channel(EVENT_QUEUE);
    let mut sources = Vec::new();
    let mut targets = TargetSources::new(events_tx.clone(), sources_stop.clone());
    targets
        .apply(&config, &keyspace_rules(&rules))
        .map_err(anyhow::Error::msg)?;
    let shared_config = Arc::new(config.clone());
    for group in &config.sentinels {
        sources.push(spawn_sentinel_group(
            group.clone(),
            shared_config.clone(),
            keyspace_rules(&rules),
            events_tx.clone(),
            sources_stop.clone(),
        ));
    }
    for cluster in &config.clusters {
        sources.push(spawn_cluster_source(
            cluster.clone(),
            shared_config.clone(),
            keyspace_rules(&rules),
            events_tx.clone(),
            sources_stop.clone(),
        ));
    }
    let events_tx_for_schedules = events_tx.clone();
    drop(events_tx);

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
    let mut ha = crate::ha::Ha::spawn(&config, view.counters.clone()).map_err(anyhow::Error::msg)?;
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
    let every_target: Vec<String> = config
        .targets
        .iter()
        .map(|t| t.name.clone())
        .chain(config.sentinels.iter().map(|g| g.name.clone()))
        .chain(config.clusters.iter().map(|c| c.name.clone()))
        .collect();
    let schedules: Vec<Schedule> = rules
        .iter()
        .filter_map(|r| {
            let spec = r.schedule.as_ref()?;
            Some(Schedule {
                rule: r.name.clone(),
                cron: spec.cron.clone(),
                tz: spec.tz,
                catch_up: spec.catch_up,
                targets: if r.targets.is_empty() {
                    every_target.clone()
                } else {
                    r.targets.clone()
                },
            })
        })
        .collect();
    if !schedules.is_empty() {
        sources.push(spawn_schedules(
            schedules,
            ScheduleStore::open(store.clone())?,
            events_tx_for_schedules.clone(),
            sources_stop.clone(),
        ));
    }
    drop(events_tx_for_schedules);
    let (invocations_tx, invocations_rx) = mpsc::channel::<RunRequest>(INVOCATION_QUEUE);
    let (records_tx, mut records_rx) = mpsc::channel::<RunRecord>(INVOCATION_QUEUE);
    let run_store = crate::playbooks::runs::RunStore::open(store.clone())?;
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
                .map_err(|e| tracing::error!(error = %e, "Backup catalog unreadable: GET /api/v1/backups answers 503"))
                .ok(),
            runner: Some(crate::api::runs::RunnerHandle {
                playbooks: live_playbooks.clone(),
                requests: invocations_tx.downgrade(),
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
                    requests: invocations_tx.downgrade(),
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

    let target_labels = config.targets.iter().map(|t| (t.name.clone(), t.labels.clone()));
    let retention = history_retention(&rules);
    let mut evaluator = Evaluator::new(rules.clone(), expr, target_labels, retention);
    // Alerts firing when redops last stopped go on firing, not fire again.
    let rows: Vec<(crate::alerts::store::AlertRow, Alert)> = alert_store
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
    evaluator.restore(&restored, Instant::now());
    // A crash between recording an alert and queueing its notification
    // leaves it with nobody notified: route it now rather than lose it. One
    // already in the outbox (the crash came between queueing it and
    // recording who was told) goes out from there, once.
    let outbox = notifier.outbox().clone();
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
    router.restore(restored);
    for alert in unsent {
        tracing::warn!(rule = %alert.rule, target = %alert.target, "Alert restored without a sent notification; sending it now");
        for action in shared(ha.as_ref(), vec![Action::Alert(alert)]).await {
            dispatch(action, &evaluator, &mut router, &view, &invocations_tx);
        }
    }
    tokio::spawn(prune_outbox(notifier.outbox().clone(), effects_stop.clone()));
    // Watching before saying "started": a change written from then on is seen.
    let (reload_tx, mut reload_rx) = mpsc::channel::<String>(1);
    let _watcher = crate::reload::watch(
        &config.path,
        &[config.engine.rules_dir.clone(), config.engine.playbooks_dir.clone()],
        reload_tx.clone(),
    )
    .map_err(|e| tracing::warn!(error = %e, "Hot reload from file changes is off; SIGHUP still reloads"))
    .ok();
    spawn_sighup(reload_tx);
    let all_receivers = notifier.receiver_names();
    tracing::info!(
        targets = config.targets.len(),
        rules = rules.len(),
        receivers = all_receivers.len(),
        sentinel_groups = config.sentinels.len(),
        dry_run = options.dry_run,
        "Engine started"
    );
    let mut reload_failed: Option<Alert> = None;
    // What the receivers' workers deliver with now: a reload rebuilds those
    // whose settings changed.
    let mut live_receivers = config.receivers.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(why) = reload_rx.recv() => {
                let actions = reload(&config, &why, &mut Reloadable {
                    evaluator: &mut evaluator,
                    playbooks: &live_playbooks,
                    router: &mut router,
                    notifier: &notifier,
                    receivers: &mut live_receivers,
                    targets: &mut targets,
                    view: &view,
                }, &mut reload_failed);
                view.set_reload_ok(reload_failed.is_none());
                for action in shared(ha.as_ref(), actions).await {
                    dispatch(action, &evaluator, &mut router, &view, &invocations_tx);
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                for action in shared(ha.as_ref(), evaluator.tick(now, SystemTime::now())).await {
                    dispatch(action, &evaluator, &mut router, &view, &invocations_tx);
                }
                router.refresh(now);
            }
            event = events_rx.recv() => {
                let Some(mut event) = event else { break };
                // Records the sample and adds its trend metrics
                // (`memory_full_in_days`, ...) before the view and the rules
                // see it.
                history.observe(&mut event);
                observe(&view, &event);
                view.count_event(&event, evaluator.rules());
                let actions = evaluator.on_event(&event, Instant::now(), SystemTime::now());
                for action in shared(ha.as_ref(), actions).await {
                    dispatch(action, &evaluator, &mut router, &view, &invocations_tx);
                }
            }
            Some(record) = records_rx.recv() => {
                let outcome = record.outcome.label();
                view.counters.playbook_runs.inc([outcome]);
                view.counters.playbook_durations.observe(outcome, record.duration_ms as f64 / 1000.0);
                tracing::debug!(run_id = %record.id, outcome = record.outcome.label(), "Playbook run recorded");
                run_store.record(&record);
                if let Some(rule) = &record.rule {
                    router.on_playbook(&fingerprint(rule, &record.target), record.alert_started_at, PlaybookSummary {
                        name: record.playbook.clone(),
                        run_id: record.id.clone(),
                        outcome: record.outcome.clone(),
                        findings: record.findings.clone(),
                    });
                }
            }
        }
    }

    tracing::info!("Engine stopping: sources");
    sources_stop.cancel();
    for s in sources {
        let _ = s.await;
    }
    targets.join().await;
    drop(history);
    let _ = tokio::task::spawn_blocking(move || history_writer.join()).await;
    tracing::info!("Engine stopping: playbooks in flight");
    drop(invocations_tx);
    let _ = runner_task.await;
    tracing::info!("Engine stopping: notifications");
    // Whatever is not delivered yet stays in the outbox for the next start.
    effects_stop.cancel();
    drop(router);
    drop(notifier);
    notifier_handle.join().await;
    if let Some(ha) = ha {
        ha.stop().await;
    }
    tracing::info!("Engine stopped");
    Ok(())
}

/// Under `[ha]`, gives each alert the start all instances share, so that
/// they name one firing with one idempotency key; otherwise as is.
async fn shared(ha: Option<&crate::ha::Ha>, actions: Vec<Action>) -> Vec<Action> {
    match ha {
        Some(ha) if !actions.is_empty() => ha.ledger.align(actions).await,
        _ => actions,
    }
}

/// Keeps the API's view of targets current.
fn observe(view: &EngineView, event: &crate::event::Event) {
    use crate::event::Event;
    match event {
        Event::Sample(s) => view.record_sample(&s.target, None, &s.metrics),
        Event::Target(t) if t.present => {
            view.record_sample(&t.target, Some(&t.labels), &Default::default());
        }
        Event::Target(t) => view.remove(&t.target),
        _ => {}
    }
}

fn dispatch(
    action: Action,
    evaluator: &Evaluator,
    router: &mut Router,
    view: &EngineView,
    invocations: &mpsc::Sender<RunRequest>,
) {
    match action {
        Action::Alert(alert) => {
            let state = match alert.status {
                crate::alerts::AlertStatus::Firing => "firing",
                crate::alerts::AlertStatus::Resolved => "resolved",
            };
            view.counters.alert_changes.inc([state, alert.severity.as_str()]);
            let notify = evaluator
                .rules()
                .iter()
                .find(|r| r.name == alert.rule)
                .map(|r| r.notify.clone())
                .unwrap_or_default();
            router.on_alert(alert, &notify, Instant::now());
        }
        Action::RunPlaybook(inv) => {
            if let Err(e) = invocations.try_send(inv.into()) {
                view.counters
                    .playbook_invocations_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "Playbook invocation dropped: runner queue full");
            }
        }
    }
}

/// What a reload swaps or adjusts in the running engine.
struct Reloadable<'a> {
    evaluator: &'a mut Evaluator,
    playbooks: &'a std::sync::RwLock<crate::playbooks::PlaybookSet>,
    router: &'a mut Router,
    notifier: &'a Notifier,
    /// The settings each receiver's worker delivers with.
    receivers: &'a mut BTreeMap<String, ReceiverConfig>,
    targets: &'a mut TargetSources,
    view: &'a EngineView,
}

/// Loads everything again and swaps it in, or keeps the last good set and
/// raises `config_reload_failed` until a reload succeeds.
fn reload(
    running: &crate::config::Config,
    why: &str,
    live: &mut Reloadable,
    failed: &mut Option<Alert>,
) -> Vec<Action> {
    let now = Instant::now();
    match crate::loader::load(&running.path) {
        Ok(new) => {
            let pending = needs_restart(running, &new.config);
            if pending.contains(&RECEIVERS_ADDED_OR_REMOVED) {
                // Routes may name receivers that only a restart starts.
                tracing::warn!(
                    changed = %pending.join(", "),
                    "These config sections changed and take effect at the next restart; routes, escalations, \
                     [notify] and the settings of receivers also wait for it"
                );
            } else {
                apply_receivers(&new.config.receivers, live);
                live.router.reconfigure(&new.config, now);
                if !pending.is_empty() {
                    tracing::warn!(
                        changed = %pending.join(", "),
                        "These config sections changed and take effect at the next restart"
                    );
                }
            }
            *live.playbooks.write().unwrap_or_else(|e| e.into_inner()) = new.playbooks.clone();
            let rules = new.rules.len();
            let mut actions = live.evaluator.replace_rules(new.rules.clone(), SystemTime::now());
            match live.targets.apply(&new.config, &keyspace_rules(&new.rules)) {
                Ok(changes) => {
                    if !changes.is_empty() {
                        tracing::info!(
                            started = ?changes.started,
                            restarted = ?changes.restarted,
                            stopped = ?changes.stopped,
                            "Targets changed"
                        );
                    }
                    for event in &changes.events {
                        observe(live.view, event);
                        actions.extend(live.evaluator.on_event(event, now, SystemTime::now()));
                    }
                }
                Err(e) => tracing::error!(error = %e, "Targets not changed: cannot start their sources"),
            }
            tracing::info!(
                changed = why,
                rules,
                playbooks = new.playbooks.names().len(),
                "Reloaded"
            );
            if let Some(mut alert) = failed.take() {
                alert.status = crate::alerts::AlertStatus::Resolved;
                alert.ends_at = Some(SystemTime::now());
                live.router.on_alert(alert, &[], now);
            }
            actions
        }
        Err(diags) => {
            tracing::error!(
                changed = why,
                errors = diags.error_count(),
                "Reload failed; the last good rules and playbooks keep running:\n{}",
                diags.render()
            );
            let first = diags
                .iter()
                .next()
                .map(|d| format!("{}: {}", d.location(), d.message))
                .unwrap_or_default();
            let alert = reload_alert(&first, diags.error_count(), failed.as_ref());
            let changed = failed.as_ref().is_none_or(|a| a.summary != alert.summary);
            if changed {
                live.router.on_alert(alert.clone(), &[], now);
            }
            *failed = Some(alert);
            Vec::new()
        }
    }
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

/// Rebuilds the sender of each receiver whose settings changed (a rotated
/// password, HMAC key, header token or routing key, a new URL), so that its
/// next delivery uses them. One that cannot be built keeps its running
/// settings, loudly.
fn apply_receivers(new: &BTreeMap<String, ReceiverConfig>, live: &mut Reloadable) {
    let mut rebuilt = Vec::new();
    for (name, config) in new {
        if live.receivers.get(name) == Some(config) {
            continue;
        }
        match live.notifier.replace_receiver(name, config) {
            Ok(()) => {
                live.receivers.insert(name.clone(), config.clone());
                rebuilt.push(name.as_str());
            }
            Err(e) => tracing::error!(
                receiver = %name,
                error = %e,
                "Receiver not changed: its new settings cannot be used; it delivers with the running ones"
            ),
        }
    }
    if !rebuilt.is_empty() {
        tracing::info!(receivers = ?rebuilt, "Receivers changed; their next deliveries use the new settings");
    }
}

/// Named by [`needs_restart`] when the set of receivers changed: their
/// workers start with the engine.
const RECEIVERS_ADDED_OR_REMOVED: &str = "[receiver.*] added or removed";

/// The sections of a reloaded config that the running engine cannot take
/// without a restart, when they changed. Targets, routes, escalation
/// policies, `[notify]` and the settings of existing receivers are taken at
/// once (see [`TargetSources::apply`], [`Router::reconfigure`] and
/// [`apply_receivers`]).
///
/// Sections compare by value, secrets included: their `Debug` text shows
/// every secret as `Secret(***)`, so a rotated API token, Sentinel password
/// or backup passphrase would look unchanged.
fn needs_restart(running: &crate::config::Config, new: &crate::config::Config) -> Vec<&'static str> {
    // The samplers reconnect with a target's new URL or password; playbook
    // runs keep the connections built at start.
    let target_connection_changed = running.targets.iter().any(|old| {
        new.target(&old.name).is_some_and(|t| {
            (&t.url, &t.username, &t.password, &t.tls_ca) != (&old.url, &old.username, &old.password, &old.tls_ca)
        })
    });
    [
        ("[[sentinel]]", running.sentinels != new.sentinels),
        ("[[cluster]]", running.clusters != new.clusters),
        (
            RECEIVERS_ADDED_OR_REMOVED,
            !running.receivers.keys().eq(new.receivers.keys()),
        ),
        ("[[target]] url or password, for playbooks", target_connection_changed),
        ("[engine]", running.engine != new.engine),
        ("[api]", running.api != new.api),
        ("[playbooks]", running.playbooks != new.playbooks),
        ("[exec]", running.exec != new.exec),
        ("[backup]", running.backup != new.backup),
        ("[ha]", running.ha != new.ha),
        ("[alertmanager]", running.alertmanager != new.alertmanager),
    ]
    .into_iter()
    .filter_map(|(section, changed)| changed.then_some(section))
    .collect()
}

fn state_dir_alert(problem: &str) -> Alert {
    let (rule, target) = ("state_dir_unusable", "redops");
    Alert {
        fingerprint: fingerprint(rule, target),
        rule: rule.into(),
        target: target.into(),
        severity: crate::alerts::Severity::Critical,
        status: crate::alerts::AlertStatus::Firing,
        labels: [("rule", rule), ("target", target), ("severity", "critical")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        summary: format!(
            "redops runs without durable state: {}; notifications pending at a restart would be lost",
            crate::secrets::redact(problem)
        ),
        value: None,
        starts_at: SystemTime::now(),
        ends_at: None,
        runbook: None,
        description: Some("Fix the state directory's permissions or free space, then restart redops.".into()),
    }
}

fn reload_alert(first_error: &str, errors: usize, previous: Option<&Alert>) -> Alert {
    let (rule, target) = ("config_reload_failed", "redops");
    Alert {
        fingerprint: fingerprint(rule, target),
        rule: rule.into(),
        target: target.into(),
        severity: crate::alerts::Severity::High,
        status: crate::alerts::AlertStatus::Firing,
        labels: [("rule", rule), ("target", target), ("severity", "high")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        summary: format!(
            "Reload failed with {errors} error(s), the last good rules keep running; first: {first_error}"
        ),
        value: Some(errors.to_string()),
        starts_at: previous.map_or_else(SystemTime::now, |p| p.starts_at),
        ends_at: None,
        runbook: None,
        description: Some("Run `redops check` for every problem.".into()),
    }
}

fn spawn_sighup(tx: mpsc::Sender<String>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let _ = tx.try_send("SIGHUP".into());
        }
    });
    #[cfg(not(unix))]
    drop(tx);
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::diagnostics::{Diagnostics, SourceFile};

    const CONFIG: &str = r#"
[[target]]
name = "cache"
url = "redis://127.0.0.1:6379/0"
password = "target-pass-1"

[[sentinel]]
name = "prod"
master = "mymaster"
sentinels = ["127.0.0.1:26379"]
sentinel_password = "sentinel-pass-1"

[receiver.hook]
type = "webhook"
url = "http://127.0.0.1:9/engine-hook-1"
hmac_secret = "hmac-key-1"

[receiver.mail]
type = "email"
smtp = "smtp://127.0.0.1:25"
tls = "none"
username = "mailer-user-1"
password = "smtp-pass-1"
from = "redops@example.com"
to = ["oncall@example.com"]

[api]
token = "api-token-1"

[backup]
age_passphrase = "backup-pass-1"
"#;

    fn config(text: &str) -> Config {
        let mut diags = Diagnostics::default();
        let config = Config::parse(&SourceFile::new("/etc/redops/redops.toml", text), &mut diags);
        assert!(!diags.has_errors(), "{}", diags.render());
        config.unwrap()
    }

    #[test]
    fn a_rotated_secret_is_a_change_and_names_its_section_unless_applied_live() {
        let running = config(CONFIG);
        assert_eq!(needs_restart(&running, &config(CONFIG)), Vec::<&str>::new());
        for (from, to, section) in [
            ("api-token-1", "api-token-2", Some("[api]")),
            ("backup-pass-1", "backup-pass-2", Some("[backup]")),
            ("sentinel-pass-1", "sentinel-pass-2", Some("[[sentinel]]")),
            (
                "target-pass-1",
                "target-pass-2",
                Some("[[target]] url or password, for playbooks"),
            ),
            // Rebuilt at once by `apply_receivers`.
            ("hmac-key-1", "hmac-key-2", None),
            ("smtp-pass-1", "smtp-pass-2", None),
            ("/engine-hook-1", "/engine-hook-2", None),
            ("[receiver.mail]", "[receiver.email]", Some(RECEIVERS_ADDED_OR_REMOVED)),
        ] {
            let rotated = config(&CONFIG.replace(from, to));
            assert_eq!(
                needs_restart(&running, &rotated),
                section.into_iter().collect::<Vec<_>>(),
                "{from} -> {to}"
            );
        }
        // What comparing by `Debug` missed.
        let rotated = config(&CONFIG.replace("api-token-1", "api-token-2"));
        assert_eq!(format!("{:?}", running.api), format!("{:?}", rotated.api));
        assert_ne!(
            running.receivers,
            config(&CONFIG.replace("hmac-key-1", "hmac-key-2")).receivers
        );
    }
}
