//! Loading everything a run needs — config, playbooks, rules — and checking
//! their references to each other, with every problem reported at once.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::diagnostics::Diagnostics;
use crate::files::files_with_extension;
use crate::playbooks::{PlaybookEngine, PlaybookSet};
use crate::rules::Rule;
use crate::rules::expr::ExprEngine;
use crate::rules::load::{References, load_rules};

pub struct Loaded {
    pub config: Config,
    pub rules: Vec<Arc<Rule>>,
    pub playbooks: PlaybookSet,
    pub playbook_engine: Arc<PlaybookEngine>,
    pub expr: Arc<ExprEngine>,
    /// Warnings found while loading (errors make loading fail).
    pub warnings: Diagnostics,
}

/// Loads the config and, relative to it, the rules and playbooks.
pub fn load(config_path: &Path) -> Result<Loaded, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut broken = (Vec::new(), Vec::new());
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            diags.extend(e.diagnostics);
            match e.partial {
                // A config with errors never runs, but checking the rules and
                // playbooks it names anyway reports every problem in one go.
                Some(p) if p.dirs_known => {
                    broken = (p.broken_targets, p.broken_receivers);
                    p.config
                }
                // Without the dirs there are no rules or playbooks to read.
                _ => return Err(diags),
            }
        }
    };
    let playbook_engine = Arc::new(PlaybookEngine::new(&config.playbooks));
    let playbooks = playbook_engine.load_dir(&config.engine.playbooks_dir, &mut diags);
    let expr = Arc::new(ExprEngine::new());
    // A playbook that does not compile is reported in its own file.
    let broken_playbooks: Vec<String> =
        files_with_extension(&config.engine.playbooks_dir, "rhai", &mut Diagnostics::default())
            .iter()
            .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
            .filter(|name| playbooks.get(name).is_none())
            .collect();
    let mut refs = References::from_config(&config, playbooks.names());
    // Broken definitions are reported where they are written; a rule naming
    // one is not wrong too, and a second error would only mislead.
    refs.playbooks.extend(broken_playbooks.iter().map(String::as_str));
    // A cluster is a target too: its playbooks route by key slot.
    refs.targets.extend(config.clusters.iter().map(|c| c.name.as_str()));
    refs.targets.extend(broken.0.iter().map(String::as_str));
    refs.receivers.extend(broken.1.iter().map(String::as_str));
    let rules = load_rules(&config.engine.rules_dir, &refs, &expr, &mut diags);
    crate::config::alertmanager::check_references(&config, &refs.playbooks, &refs.targets, &mut diags);
    if diags.has_errors() {
        return Err(diags);
    }
    // Only a set that loads whole is linted: with a rule missing, a playbook
    // or receiver it names would be reported as unused.
    let playbook_files = playbooks
        .names()
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), playbooks.get(name)?.path.clone())))
        .collect();
    crate::rules::lint::lint(&config, &rules, &playbook_files, &mut diags);
    Ok(Loaded {
        rules: rules.into_iter().map(Arc::new).collect(),
        config,
        playbooks,
        playbook_engine,
        expr,
        warnings: diags,
    })
}
