//! `[playbooks]`: the limits of a run and what the command policy lets a
//! playbook do beyond its defaults (docs/playbook-api.md#command-policy).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, find_key};
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::policy;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaybookConfig {
    /// Wall-clock deadline of one run.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Rhai operations one run may execute.
    pub max_operations: u64,
    /// Command forms the default policy denies that playbooks may run anyway,
    /// e.g. `["FLUSHDB"]`, `["CONFIG SET appendonly"]` or `["CLIENT KILL"]`.
    pub allow_commands: Vec<String>,
    /// The server's `rename-command`s, standard name → the name it has now,
    /// e.g. `{ CONFIG = "CFG_9f8e" }`: a renamed command is judged by every
    /// rule of the command it is.
    pub renamed_commands: BTreeMap<String, String>,
    /// The hosts `http.get`/`http.post` may reach (`"host"` or
    /// `"host:port"`); `None`: any host, and `redops check` warns.
    pub http_allow: Option<Vec<String>>,
    /// Whether `backup.restore(id, #{pre_backup: false})` may skip the
    /// backup of the target taken before a restore.
    pub allow_restore_without_backup: bool,
    /// Keys one `redis.scan(...)` returns at most before it stops.
    pub scan_limit: usize,
}

impl Default for PlaybookConfig {
    fn default() -> Self {
        PlaybookConfig {
            timeout: Duration::from_secs(30),
            max_operations: 5_000_000,
            allow_commands: Vec::new(),
            renamed_commands: BTreeMap::new(),
            http_allow: None,
            allow_restore_without_backup: false,
            scan_limit: 100_000,
        }
    }
}

/// How `allow_commands` entries are written.
pub const ALLOW_HINT: &str = "entries are written as the table of docs/playbook-api.md#command-policy names them, \
                              e.g. \"CONFIG SET appendonly\"";

impl PlaybookConfig {
    pub fn validate(&self, file: &SourceFile, diags: &mut Diagnostics) {
        // An entry that allows nothing is a warning of `redops check`
        // (rules::lint); one that cannot be made sense of refuses the config.
        let at = find_key(file, "allow_commands");
        for entry in &self.allow_commands {
            if let Some(policy::EntryProblem::Invalid(why)) = policy::allow_entry_problem(entry, &self.renamed_commands)
            {
                diags.push(Diagnostic::error(file, at.clone(), format!("allow_commands: {why}")).with_hint(ALLOW_HINT));
            }
        }
        for (standard, new) in &self.renamed_commands {
            if let Some(why) = policy::renamed_entry_problem(standard, new) {
                diags.push(
                    Diagnostic::error(
                        file,
                        find_key(file, "renamed_commands"),
                        format!("renamed_commands: {why}"),
                    )
                    .with_hint("as redis.conf's `rename-command CONFIG CFG_9f8e`: renamed_commands = { CONFIG = \"CFG_9f8e\" }"),
                );
            }
        }
        if let Some(hosts) = &self.http_allow
            && let Err(why) = policy::HttpAllow::parse(hosts)
        {
            diags.push(
                Diagnostic::error(file, find_key(file, "http_allow"), format!("http_allow: {why}"))
                    .with_hint("e.g. http_allow = [\"hooks.example.com\", \"127.0.0.1:8080\"]"),
            );
        }
    }
}
