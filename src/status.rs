//! How bad something is, in the words of the guide's dashboards and
//! reports: `ok`, `unknown` (no data to judge by), `warning`, `critical`.
//! Ordered, so the worst of several is their maximum; `/health/redis`,
//! `redops status` and `redops report capacity` all judge with it.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Ok,
    Unknown,
    Warning,
    Critical,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Unknown => "unknown",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// The most urgent of `statuses`; `ok` when there are none.
    pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
        statuses.into_iter().max().unwrap_or_default()
    }

    /// A metric that is bad when high: over `critical` is critical, over
    /// `warning` a warning; no value judges nothing (ok).
    pub fn above(value: Option<f64>, warning: f64, critical: f64) -> Status {
        match value {
            Some(v) if v > critical => Status::Critical,
            Some(v) if v > warning => Status::Warning,
            _ => Status::Ok,
        }
    }

    /// A metric that is bad when low (a hit ratio).
    pub fn below(value: Option<f64>, warning: f64, critical: f64) -> Status {
        match value {
            Some(v) if v < critical => Status::Critical,
            Some(v) if v < warning => Status::Warning,
            _ => Status::Ok,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn the_worst_is_the_most_urgent_and_unknown_outranks_ok() {
        assert_eq!(Status::worst([]), Status::Ok);
        assert_eq!(Status::worst([Status::Ok, Status::Unknown]), Status::Unknown);
        assert_eq!(Status::worst([Status::Warning, Status::Unknown]), Status::Warning);
        assert_eq!(Status::worst([Status::Critical, Status::Warning]), Status::Critical);
        assert_eq!(serde_json::to_value(Status::Critical).unwrap(), "critical");
    }

    #[test]
    fn thresholds_are_strict_and_no_value_is_ok() {
        assert_eq!(Status::above(Some(85.0), 70.0, 85.0), Status::Warning);
        assert_eq!(Status::above(Some(85.1), 70.0, 85.0), Status::Critical);
        assert_eq!(Status::below(Some(79.0), 90.0, 80.0), Status::Critical);
        assert_eq!(Status::below(None, 90.0, 80.0), Status::Ok);
    }
}
