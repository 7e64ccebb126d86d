//! Hot reload: watch the config file and the rules and playbooks
//! directories (the directories, so that editors that save by renaming a
//! temporary file are seen), debounce, and ask the engine to reload.
//! SIGHUP asks too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

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
