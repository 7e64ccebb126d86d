//! The running engine: sources feed events to the evaluator; its actions go
//! to the playbook runner and the notifier, which run apart from evaluation
//! so that a slow webhook or a long playbook never delays detection.
//!
//! Stopping is orderly: sources stop first, then playbooks in flight finish,
//! then notifications still queued get a bounded chance to go out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::loader::{Loaded, history_retention};
use crate::notify::{Notification, Notifier};
use crate::playbooks::RunRecord;
use crate::playbooks::runner::Runner;
use crate::rules::{Action, Evaluator, Invocation};
use crate::sentinel::group::spawn_sentinel_group;
use crate::sources::keyspace::{KeyspaceSpec, spawn_keyspace_source};
use crate::sources::sampler::{SamplerSpec, spawn_sampler};

/// Events queued between the sources and the evaluator.
const EVENT_QUEUE: usize = 65_536;
/// Playbook invocations queued for the runner.
const INVOCATION_QUEUE: usize = 1024;
/// How long queued notifications may take to go out at shutdown.
const NOTIFY_DRAIN: Duration = Duration::from_secs(5);

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
    for target in &config.targets {
        let spec = SamplerSpec::from_config(&config, target).map_err(anyhow::Error::msg)?;
        sources.push(spawn_sampler(spec, events_tx.clone(), sources_stop.clone()));
        if let Some(spec) = KeyspaceSpec::from_config(&config, target, &rules) {
            sources.push(spawn_keyspace_source(spec, events_tx.clone(), sources_stop.clone()));
        }
    }
    let shared_config = Arc::new(config.clone());
    for group in &config.sentinels {
        sources.push(spawn_sentinel_group(
            group.clone(),
            shared_config.clone(),
            rules.clone(),
            events_tx.clone(),
            sources_stop.clone(),
        ));
    }
    drop(events_tx);

    let (notifier, notifier_handle) = Notifier::spawn(&config.receivers, effects_stop.clone(), NOTIFY_DRAIN);
    let (invocations_tx, invocations_rx) = mpsc::channel::<Invocation>(INVOCATION_QUEUE);
    let (records_tx, mut records_rx) = mpsc::channel::<RunRecord>(INVOCATION_QUEUE);
    let runner = Runner::new(&config, playbook_engine, playbooks, notifier.clone(), options.dry_run);
    let runner_task = tokio::spawn(runner.run(invocations_rx, records_tx));

    let target_labels = config.targets.iter().map(|t| (t.name.clone(), t.labels.clone()));
    let retention = history_retention(&rules);
    let mut evaluator = Evaluator::new(rules.clone(), expr, target_labels, retention);
    let all_receivers = notifier.receiver_names();
    tracing::info!(
        targets = config.targets.len(),
        rules = rules.len(),
        receivers = all_receivers.len(),
        dry_run = options.dry_run,
        "Engine started"
    );

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                for action in evaluator.tick(Instant::now(), SystemTime::now()) {
                    dispatch(action, &evaluator, &all_receivers, &notifier, &invocations_tx);
                }
            }
            event = events_rx.recv() => {
                let Some(event) = event else { break };
                for action in evaluator.on_event(&event, Instant::now(), SystemTime::now()) {
                    dispatch(action, &evaluator, &all_receivers, &notifier, &invocations_tx);
                }
            }
            Some(record) = records_rx.recv() => {
                tracing::debug!(run_id = %record.id, outcome = record.outcome.label(), "Playbook run recorded");
            }
        }
    }

    tracing::info!("Engine stopping: sources");
    sources_stop.cancel();
    for s in sources {
        let _ = s.await;
    }
    tracing::info!("Engine stopping: playbooks in flight");
    drop(invocations_tx);
    let _ = runner_task.await;
    tracing::info!("Engine stopping: notifications");
    effects_stop.cancel();
    drop(notifier);
    notifier_handle.join().await;
    tracing::info!("Engine stopped");
    Ok(())
}

fn dispatch(
    action: Action,
    evaluator: &Evaluator,
    all_receivers: &[String],
    notifier: &Notifier,
    invocations: &mpsc::Sender<Invocation>,
) {
    match action {
        Action::Alert(alert) => {
            let rule = evaluator.rules().iter().find(|r| r.name == alert.rule);
            let receivers = match rule {
                Some(r) if !r.notify.is_empty() => r.notify.clone(),
                _ => all_receivers.to_vec(),
            };
            notifier.send(Notification::Alert {
                alert,
                playbook: None,
                receivers,
            });
        }
        Action::RunPlaybook(inv) => {
            if let Err(e) = invocations.try_send(inv) {
                tracing::error!(error = %e, "Playbook invocation dropped: runner queue full");
            }
        }
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
