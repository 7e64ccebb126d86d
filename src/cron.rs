//! Cron expressions in a time zone, and what to do about a run missed while
//! redops was down: what a `source = "schedule"` rule says, read by the
//! rules when they load and by the schedule source when it runs.

use std::str::FromStr;

use chrono_tz::Tz;
use croner::Cron;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// A run missed while redops was down happens once at start.
    #[default]
    Once,
    /// Missed runs are skipped.
    Skip,
}

/// What is wrong with a schedule: its expression or its time zone, which a
/// rule file writes under different keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("invalid cron expression `{expression}`: {reason}")]
    Expression { expression: String, reason: String },
    #[error("unknown time zone `{0}`")]
    TimeZone(String),
}

impl CronError {
    pub fn hint(&self) -> &'static str {
        match self {
            CronError::Expression { .. } => {
                "five fields: minute hour day-of-month month day-of-week, e.g. \"30 3 * * *\""
            }
            CronError::TimeZone(_) => "an IANA time zone name, e.g. \"Europe/Berlin\" or \"UTC\"",
        }
    }
}

/// Parses a cron expression (5 fields, or 6 with seconds) and a time zone.
pub fn parse(cron: &str, timezone: Option<&str>) -> Result<(Cron, Tz), CronError> {
    let parsed = Cron::from_str(cron).map_err(|e| CronError::Expression {
        expression: cron.to_owned(),
        reason: e.to_string(),
    })?;
    let tz = match timezone {
        Some(name) => Tz::from_str(name).map_err(|_| CronError::TimeZone(name.to_owned()))?,
        None => Tz::UTC,
    };
    Ok((parsed, tz))
}
