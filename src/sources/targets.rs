//! The sources of the configured `[[target]]`s, kept by name so that a hot
//! reload can start, restart or stop one target's sampler and keyspace
//! subscription without touching the others.
//!
//! A target restarts when its config changed, when the settings its sources
//! run with changed (`sample_interval`, `keyspace_tick`, timeouts), or when
//! the keyspace rules that apply to it changed their selectors: the
//! subscription is built from them.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TargetConfig};
use crate::event::keyspace::KeyspaceRule;
use crate::event::{Event, TargetChange};
use crate::sources::keyspace::{KeyspaceSpec, spawn_keyspace_source};
use crate::sources::sampler::{SamplerSpec, spawn_sampler};

struct Running {
    /// What the sources were started from; a different one restarts them.
    digest: String,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

pub struct TargetSources {
    events: mpsc::Sender<Event>,
    /// The engine's: stopping it stops every target.
    stop: CancellationToken,
    running: BTreeMap<String, Running>,
}

/// What [`TargetSources::apply`] changed. Added and removed targets are
/// given as the [`Event::Target`]s the evaluator and the API view need.
#[derive(Debug, Default)]
pub struct Changes {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub events: Vec<Event>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.restarted.is_empty() && self.stopped.is_empty()
    }
}

impl TargetSources {
    pub fn new(events: mpsc::Sender<Event>, stop: CancellationToken) -> Self {
        TargetSources {
            events,
            stop,
            running: BTreeMap::new(),
        }
    }

    /// Makes the running sources match `config` and the keyspace `rules`. A target whose
    /// sources cannot be built (a bad URL) is an error and nothing changes:
    /// `redops check` rejects such a config before it gets here.
    pub fn apply(&mut self, config: &Config, rules: &[KeyspaceRule]) -> Result<Changes, String> {
        let mut wanted = BTreeMap::new();
        for target in &config.targets {
            let sampler = SamplerSpec::from_config(config, target)?;
            let keyspace = KeyspaceSpec::from_config(config, target, rules);
            wanted.insert(
                target.name.clone(),
                (digest(config, target, rules), target, sampler, keyspace),
            );
        }
        let mut changes = Changes::default();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(old) = self.running.remove(&name) {
                old.stop.cancel();
            }
            changes.events.push(Event::Target(TargetChange {
                target: name.clone(),
                labels: BTreeMap::new(),
                present: false,
            }));
            changes.stopped.push(name);
        }
        for (name, (digest, target, sampler, keyspace)) in wanted {
            let restart = match self.running.get(&name) {
                Some(r) if r.digest == digest => continue,
                Some(_) => true,
                None => false,
            };
            if let Some(old) = self.running.remove(&name) {
                old.stop.cancel();
            }
            let stop = self.stop.child_token();
            let mut sampler = sampler;
            let mut tasks = Vec::new();
            if let Some(keyspace) = keyspace {
                // The sampler reports the subscription's counters.
                sampler.keyspace_stats = Some(keyspace.stats.clone());
                tasks.push(spawn_keyspace_source(keyspace, self.events.clone(), stop.clone()));
            }
            tasks.push(spawn_sampler(sampler, self.events.clone(), stop.clone()));
            self.running.insert(name.clone(), Running { digest, stop, tasks });
            // New labels, or a new target: the evaluator and the view learn them.
            changes.events.push(Event::Target(TargetChange {
                target: name.clone(),
                labels: target.labels.clone(),
                present: true,
            }));
            if restart {
                changes.restarted.push(name);
            } else {
                changes.started.push(name);
            }
        }
        Ok(changes)
    }

    /// Waits for every target's sources to end, once the engine's stop
    /// token is cancelled.
    pub async fn join(self) {
        for (_, running) in self.running {
            for task in running.tasks {
                let _ = task.await;
            }
        }
    }
}

/// Everything a target's sources are built from, as text.
fn digest(config: &Config, target: &TargetConfig, rules: &[KeyspaceRule]) -> String {
    let e = &config.engine;
    let selectors: Vec<_> = rules
        .iter()
        .filter(|r| r.applies_to(&target.name))
        .map(|r| (&r.rule, &r.selector))
        .collect();
    // Debug hides the password; a changed one must still reconnect. Its
    // hash is all the digest keeps.
    let password = target.password.as_ref().map(|p| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(p.expose().as_bytes()))
    });
    format!(
        "{target:?}|{password:?}|{:?}|{:?}|{:?}|{:?}|{selectors:?}",
        e.sample_interval, e.keyspace_tick, e.connect_timeout, e.command_timeout
    )
}
