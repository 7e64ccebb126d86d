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

/// Parses a cron expression (5 fields, or 6 with seconds) and a time zone.
pub fn parse(cron: &str, timezone: Option<&str>) -> Result<(Cron, Tz), String> {
    let parsed = Cron::from_str(cron).map_err(|e| format!("invalid cron expression `{cron}`: {e}"))?;
    let tz = match timezone {
        Some(name) => Tz::from_str(name)
            .map_err(|_| format!("unknown time zone `{name}` (write e.g. \"Europe/Berlin\" or \"UTC\")"))?,
        None => Tz::UTC,
    };
    Ok((parsed, tz))
}
