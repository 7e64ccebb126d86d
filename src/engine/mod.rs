//! The running engine: sources feed events to the evaluator; its actions go
//! to the playbook runner and the notifier, which run apart from evaluation
//! so that a slow webhook or a long playbook never delays detection.
//!
//! - [`wiring`] builds every service and stops them in order;
//! - [`step`] is the loop's decision core, a state machine without I/O:
//!   the loop below only gathers its inputs and performs its effects;
//! - [`reload`] watches files and SIGHUP and reloads;
//! - [`internal`] holds the alerts redops raises about itself.
//!
//! Under `[ha]`, alert changes get the start all instances share from the
//! ledger off the loop ([`crate::ha::Aligner`]): detection never waits on
//! the lease store.
//!
//! Stopping is orderly: sources stop first, then playbooks in flight finish,
//! then notifications still queued get a bounded chance to go out.

mod internal;
pub mod reload;
pub mod step;
mod wiring;

use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alerts::fingerprint;
use crate::api::state::EngineView;
use crate::invocation::Action;
use crate::loader::Loaded;
use crate::notify::PlaybookSummary;
use crate::rules::Evaluator;
use crate::rules::history::history_retention;
use step::{Effect, Input, Step};
use wiring::Wiring;

/// Where the HA ledger's aligned actions come back.
type Aligned = mpsc::UnboundedReceiver<Vec<Action>>;

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
    let mut w = Wiring::build(config, &rules, playbooks, playbook_engine, &options)?;
    let target_labels = w.config.targets.iter().map(|t| (t.name.clone(), t.labels.clone()));
    let evaluator = Evaluator::new(rules.clone(), expr, target_labels, history_retention(&rules));
    let mut core = Step::new(evaluator, w.aligner.is_some());
    let (restored, unsent) = w.restored_alerts();
    let effects = core.restore(&restored, unsent, Instant::now());
    perform(effects, &mut w);

    // Watching before saying "started": a change written from then on is seen.
    let (reload_tx, mut reload_rx) = mpsc::channel::<String>(1);
    let _watcher = reload::watch(
        &w.config.path,
        &[w.config.engine.rules_dir.clone(), w.config.engine.playbooks_dir.clone()],
        reload_tx.clone(),
    )
    .map_err(|e| tracing::warn!(error = %e, "Hot reload from file changes is off; SIGHUP still reloads"))
    .ok();
    reload::spawn_sighup(reload_tx);
    tracing::info!(
        targets = w.config.targets.len(),
        rules = rules.len(),
        receivers = w.notifier.receiver_names().len(),
        sentinel_groups = w.config.sentinels.len(),
        dry_run = options.dry_run,
        "Engine started"
    );
    let mut aligned = w.aligned.take();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let input = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(why) = reload_rx.recv() => {
                let reloaded = reload::reload(&w.config, &why, &mut reload::Reloadable {
                    playbooks: &w.playbooks,
                    router: &mut w.router,
                    notifier: &w.notifier,
                    receivers: &mut w.receivers,
                    targets: &mut w.targets,
                    view: &w.view,
                });
                Input::Reloaded(reloaded)
            }
            _ = tick.tick() => Input::Tick,
            Some(actions) = recv(&mut aligned) => Input::Aligned(actions),
            event = w.events.recv() => {
                let Some(mut event) = event else { break };
                // Records the sample and adds its trend metrics
                // (`memory_full_in_days`, ...) before the view and the rules
                // see it.
                w.history.observe(&mut event);
                observe(&w.view, &event);
                w.view.count_event(&event, core.rules());
                Input::Event(event)
            }
            Some(record) = w.records.recv() => Input::PlaybookRecord(record),
        };
        let reloading = matches!(input, Input::Reloaded(_));
        let effects = core.step(input, Instant::now(), SystemTime::now());
        if reloading {
            w.view.set_reload_ok(core.reload_ok());
        }
        perform(effects, &mut w);
    }

    // What the ledger is still aligning goes out before the notifier stops.
    if let Some(aligner) = w.aligner.take() {
        aligner.drain().await;
        while let Some(actions) = recv(&mut aligned).await {
            let effects = core.step(Input::Aligned(actions), Instant::now(), SystemTime::now());
            perform(effects, &mut w);
        }
    }
    w.shutdown().await;
    Ok(())
}

/// The next aligned actions; pending forever without `[ha]`, `None` once
/// the aligner is gone and everything it aligned was read.
async fn recv(aligned: &mut Option<Aligned>) -> Option<Vec<Action>> {
    match aligned {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Does what the core decided.
fn perform(effects: Vec<Effect>, w: &mut Wiring) {
    let now = Instant::now();
    for effect in effects {
        match effect {
            Effect::Align(actions) => match &mut w.aligner {
                Some(aligner) => aligner.submit(actions),
                // Stopping: the aligner drained already.
                None => perform(actions.into_iter().map(Effect::from).collect(), w),
            },
            Effect::Alert { alert, notify } => {
                let state = match alert.status {
                    crate::alerts::AlertStatus::Firing => "firing",
                    crate::alerts::AlertStatus::Resolved => "resolved",
                };
                w.view.counters.alert_changes.inc([state, alert.severity.as_str()]);
                w.router.on_alert(alert, &notify, now);
            }
            Effect::Internal(alert) => w.router.on_alert(alert, &[], now),
            Effect::Invoke(inv) => {
                if let Err(e) = w.invocations.try_send(inv.into()) {
                    w.view
                        .counters
                        .playbook_invocations_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(error = %e, "Playbook invocation dropped: runner queue full");
                }
            }
            Effect::RecordRun(record) => {
                let outcome = record.outcome.label();
                w.view.counters.playbook_runs.inc([outcome]);
                w.view
                    .counters
                    .playbook_durations
                    .observe(outcome, record.duration_ms as f64 / 1000.0);
                tracing::debug!(run_id = %record.id, outcome, "Playbook run recorded");
                w.run_store.record(&record);
                if let Some(rule) = &record.rule {
                    w.router.on_playbook(
                        &fingerprint(rule, &record.target),
                        record.alert_started_at,
                        PlaybookSummary {
                            name: record.playbook.clone(),
                            run_id: record.id.clone(),
                            outcome: record.outcome.clone(),
                            findings: record.findings.clone(),
                        },
                    );
                }
            }
            Effect::RefreshRouter => w.router.refresh(now),
        }
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
