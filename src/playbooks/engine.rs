//! The one Rhai engine every playbook runs on: built with limits, the host
//! API registered once, each script compiled once to an AST.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rhai::{Dynamic, Engine, EvalAltResult, Scope};

use super::api;
use super::context::{self, RunContext, RunRecord};
use crate::config::PlaybookConfig;
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::invocation::RunOutcome;

/// How many operations run between two looks at the wall clock.
const DEADLINE_CHECK_EVERY: u64 = 256;

#[derive(Debug)]
pub struct Playbook {
    pub name: String,
    pub path: PathBuf,
    pub ast: rhai::AST,
    pub digest: String,
}

/// The loaded playbooks, by name (the file stem).
#[derive(Debug, Default, Clone)]
pub struct PlaybookSet {
    by_name: HashMap<String, Arc<Playbook>>,
}

impl PlaybookSet {
    pub fn get(&self, name: &str) -> Option<Arc<Playbook>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort();
        names
    }
}

pub struct PlaybookEngine {
    engine: Engine,
}

impl PlaybookEngine {
    pub fn new(limits: &PlaybookConfig) -> Self {
        let mut engine = Engine::new();
        engine.set_max_operations(limits.max_operations);
        engine.set_max_call_levels(64);
        engine.set_max_expr_depths(128, 64);
        engine.set_max_string_size(1024 * 1024);
        engine.set_max_array_size(100_000);
        engine.set_max_map_size(100_000);
        engine.disable_symbol("eval");
        // Playbooks are one file each: `import` must not load code from disk.
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        engine.on_progress(|ops| {
            // `Some` stops the script with ErrorTerminated.
            (ops % DEADLINE_CHECK_EVERY == 0 && context::past_deadline()).then(|| Dynamic::from("deadline"))
        });
        engine.on_print(|text| api::log::write("info", text));
        engine.on_debug(|text, _, _| api::log::write("debug", text));
        api::register(&mut engine);
        PlaybookEngine { engine }
    }

    /// Compiles every `*.rhai` of `dir`; the file stem is the playbook's name.
    pub fn load_dir(&self, dir: &Path, diags: &mut Diagnostics) -> PlaybookSet {
        let mut set = PlaybookSet::default();
        for path in crate::files::files_with_extension(dir, "rhai", diags) {
            let file = match SourceFile::read(&path) {
                Ok(f) => f,
                Err(e) => {
                    diags.push(Diagnostic::file_error(&path, format!("cannot read playbook: {e}")));
                    continue;
                }
            };
            if let Some(p) = self.compile(&file, diags) {
                set.by_name.insert(p.name.clone(), Arc::new(p));
            }
        }
        set
    }

    pub fn compile(&self, file: &SourceFile, diags: &mut Diagnostics) -> Option<Playbook> {
        let name = file.path.file_stem()?.to_string_lossy().into_owned();
        match self.engine.compile(&*file.text) {
            Ok(ast) => Some(Playbook {
                name,
                path: file.path.clone(),
                ast,
                digest: {
                    use sha2::{Digest, Sha256};
                    hex::encode(&Sha256::digest(file.text.as_bytes())[..8])
                },
            }),
            Err(e) => {
                let (line, col) = (e.1.line().unwrap_or(1), e.1.position().unwrap_or(1));
                let offset = offset_of(&file.text, line, col);
                diags.push(
                    Diagnostic::error(file, offset..offset + 1, format!("playbook `{name}`: {}", e.0))
                        .with_hint("playbooks are Rhai scripts; see docs/playbook-api.md"),
                );
                None
            }
        }
    }

    /// Runs a playbook to completion on the calling (blocking) thread.
    pub fn run(&self, playbook: &Playbook, ctx: RunContext) -> RunRecord {
        let started = Instant::now();
        let started_at = SystemTime::now();
        let mut scope = Scope::new();
        scope.push_constant("target", ctx.target.clone());
        scope.push_constant("target_labels", api::to_dynamic_map(&ctx.target_labels));
        scope.push_constant(
            "alert",
            ctx.alert
                .as_ref()
                .and_then(|a| rhai::serde::to_dynamic(a).ok())
                .unwrap_or(Dynamic::UNIT),
        );
        scope.push_constant("params", api::params_to_dynamic(&ctx.params));
        scope.push_constant("dry_run", ctx.dry_run);
        api::push_objects(&mut scope);
        let (id, name, target, rule, dry_run) = (
            ctx.run_id.clone(),
            ctx.playbook.clone(),
            ctx.target.clone(),
            ctx.rule.clone(),
            ctx.dry_run,
        );
        let alert_started_at = ctx.alert.as_ref().map(|a| a.starts_at);
        context::install(ctx);
        let result = self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, &playbook.ast);
        let state = context::uninstall();
        let elapsed = started.elapsed();
        let outcome = match result {
            Ok(v) if v.is_unit() => RunOutcome::Succeeded { result: String::new() },
            // What a playbook returns is stored, served by the API and sent
            // as its alert's update: it must not carry a secret either.
            Ok(v) => RunOutcome::Succeeded {
                result: crate::secrets::redact(&v.to_string()),
            },
            Err(e) => match *e {
                EvalAltResult::ErrorTerminated(..) => RunOutcome::TimedOut {
                    after_ms: elapsed.as_millis() as u64,
                },
                EvalAltResult::ErrorTooManyOperations(..) => RunOutcome::Failed {
                    error: "stopped: the playbook exceeded [playbooks] max_operations".into(),
                },
                other => RunOutcome::Failed {
                    error: crate::secrets::redact(&other.to_string()),
                },
            },
        };
        let (audit, audit_dropped, findings) = state
            .map(|s| (s.audit, s.audit_dropped, s.findings))
            .unwrap_or_default();
        let findings = findings.iter().map(|f| crate::secrets::redact(f)).collect();
        RunRecord {
            id,
            playbook: name,
            target,
            rule,
            dry_run,
            started_at,
            duration_ms: elapsed.as_millis() as u64,
            outcome,
            findings,
            audit,
            audit_dropped,
            alert_started_at,
        }
    }
}

fn offset_of(text: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for l in text.split_inclusive('\n').take(line.saturating_sub(1)) {
        offset += l.len();
    }
    let rest = &text[offset.min(text.len())..];
    offset
        + rest
            .chars()
            .take(col.saturating_sub(1))
            .map(char::len_utf8)
            .sum::<usize>()
}
