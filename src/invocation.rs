//! What detection hands to the effects: the evaluator's actions (an alert
//! changed, run a playbook), and how a playbook run ended. The rules, the
//! playbook runner, the notifier and the HA ledger meet at these types
//! instead of importing each other.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::alerts::Alert;

/// What evaluation asks the effects side to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// An alert started firing or resolved; `notify` are the receivers its
    /// rule names, told besides the matching routes.
    Alert {
        alert: Alert,
        notify: Vec<String>,
    },
    RunPlaybook(Invocation),
}

#[derive(Debug, Clone)]
pub struct Invocation {
    pub playbook: String,
    pub rule: String,
    pub target: String,
    pub params: BTreeMap<String, toml::Value>,
    pub alert: Option<Alert>,
}

/// How a playbook run ended.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded { result: String },
    Failed { error: String },
    TimedOut { after_ms: u64 },
}

impl RunOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            RunOutcome::Succeeded { .. } => "succeeded",
            RunOutcome::Failed { .. } => "failed",
            RunOutcome::TimedOut { .. } => "timed_out",
        }
    }
}
