//! Hot reload: a file watcher on the config file and the rules and
//! playbooks directories (the directories, so that editors that save by
//! renaming a temporary file are seen) and SIGHUP ask for a reload;
//! [`reload`] loads everything again and hands the running services what
//! they can take at once. The rules go to the core as [`Reloaded`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::observe;
use super::step::Reloaded;
use crate::api::state::EngineView;
use crate::config::{Config, ReceiverConfig};
use crate::notify::Notifier;
use crate::notify::router::Router;
use crate::playbooks::PlaybookSet;
use crate::rules::keyspace_rules;
use crate::sources::targets::TargetSources;

/// Changes closer together than this become one reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

pub type Watcher = Debouncer<notify_debouncer_full::notify::RecommendedWatcher, RecommendedCache>;

/// Starts watching; the returned watcher must be kept alive. A change sends
/// a short description of what changed.
pub fn watch(config_path: &Path, dirs: &[PathBuf], changed: mpsc::Sender<String>) -> Result<Watcher, String> {
    let config_file = config_path.to_path_buf();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        // Only changes count: opening or reading a file (a `cat`, any
        // redops command loading the config, the reload itself) must not.
        let relevant: Vec<String> = events
            .iter()
            .filter(|e| {
                use notify_debouncer_full::notify::EventKind;
                matches!(
                    e.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                ) && !matches!(
                    e.kind,
                    EventKind::Modify(notify_debouncer_full::notify::event::ModifyKind::Metadata(_))
                )
            })
            .flat_map(|e| e.paths.iter())
            .filter(|p| *p == &config_file || p.extension().is_some_and(|x| x == "toml" || x == "rhai"))
            .map(|p| p.display().to_string())
            .collect();
        if let Some(first) = relevant.first() {
            // Full: a reload is already queued and will see this change too.
            let _ = changed.try_send(first.clone());
        }
    })
    .map_err(|e| format!("cannot watch for changes: {e}"))?;
    let config_dir = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for dir in std::iter::once(config_dir).chain(dirs.iter().map(PathBuf::as_path)) {
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    }
    Ok(debouncer)
}

/// SIGHUP asks for a reload too.
pub fn spawn_sighup(tx: mpsc::Sender<String>) {
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

/// What a reload swaps or adjusts in the running services.
pub struct Reloadable<'a> {
    pub playbooks: &'a std::sync::RwLock<PlaybookSet>,
    pub router: &'a mut Router,
    pub notifier: &'a Notifier,
    /// The settings each receiver's worker delivers with.
    pub receivers: &'a mut BTreeMap<String, ReceiverConfig>,
    pub targets: &'a mut TargetSources,
    pub view: &'a EngineView,
}

/// Loads everything again and hands the services what changed; the rules
/// and the events of started or stopped targets are for the core. On a
/// failure nothing changes: the last good set keeps running.
pub fn reload(running: &Config, why: &str, live: &mut Reloadable) -> Reloaded {
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
            let mut target_events = Vec::new();
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
                    }
                    target_events = changes.events;
                }
                Err(e) => tracing::error!(error = %e, "Targets not changed: cannot start their sources"),
            }
            tracing::info!(
                changed = why,
                rules = new.rules.len(),
                playbooks = new.playbooks.names().len(),
                "Reloaded"
            );
            Reloaded::Loaded {
                rules: new.rules,
                target_events,
            }
        }
        Err(diags) => {
            tracing::error!(
                changed = why,
                errors = diags.error_count(),
                "Reload failed; the last good rules and playbooks keep running:\n{}",
                diags.render()
            );
            let first_error = diags
                .iter()
                .next()
                .map(|d| format!("{}: {}", d.location(), d.message))
                .unwrap_or_default();
            Reloaded::Failed {
                first_error,
                errors: diags.error_count(),
            }
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
