//! `redops report capacity --weeks 4 [--json]`: the guide's
//! `redis_admin --capacity-report`. Per target, its memory and connection
//! capacity matrices: the current value, the growth per week fitted over the
//! last `--weeks` of history, the days until full at that growth, and the
//! matrix's recommended action. Exit 1 if any row is critical.

use std::process::ExitCode;

use serde::Serialize;

use crate::status::Status;

use super::{ConfigArg, EXIT_FAILED};
use crate::history::HistoryStore;
use crate::history::rollup::HOUR_MS;
use crate::history::trend::{Fit, TrendWindow};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub report: Report,
}

#[derive(Debug, clap::Subcommand)]
pub enum Report {
    /// Memory and connection capacity by the guide's planning matrices.
    Capacity(CapacityArgs),
}

#[derive(Debug, clap::Args)]
pub struct CapacityArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The weeks of history the growth is fitted over.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=13))]
    pub weeks: u32,
    /// Machine-readable output (documented in docs/operations.md).
    #[arg(long)]
    pub json: bool,
}

/// A forecast this close makes any row at least a warning, whatever the
/// matrix says: `memory_full_soon` fires at the same horizon.
const FULL_SOON_DAYS: f64 = 14.0;

#[derive(Debug, Serialize)]
pub struct CapacityReport {
    pub weeks: u32,
    pub status: Status,
    pub targets: Vec<TargetCapacity>,
}

#[derive(Debug, Serialize)]
pub struct TargetCapacity {
    pub target: String,
    pub status: Status,
    /// When the newest sample behind the current values was taken: a
    /// target no longer sampled shows old values, not no values.
    pub sampled_at_ms: Option<i64>,
    pub memory: MemoryRow,
    pub connections: ConnectionRow,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct MemoryRow {
    pub used_memory: Option<f64>,
    pub maxmemory: Option<f64>,
    pub used_pct: Option<f64>,
    /// Percentage points of the limit per week.
    pub growth_pct_per_week: Option<f64>,
    pub growth_bytes_per_week: Option<f64>,
    pub days_until_full: Option<f64>,
    pub action: &'static str,
    pub status: Status,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ConnectionRow {
    pub connected_clients: Option<f64>,
    pub maxclients: Option<f64>,
    pub used_pct: Option<f64>,
    pub growth_per_week: Option<f64>,
    pub days_until_full: Option<f64>,
    pub action: &'static str,
    pub status: Status,
}

pub fn main(args: Args) -> ExitCode {
    let Report::Capacity(args) = args.report;
    let (config, history) = match super::analyze::open_history(&args.config) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let report = match capacity(&config, &history, args.weeks, crate::history::now_ms()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redops report capacity: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print_report(&report);
    }
    if report.status == Status::Critical {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn capacity(
    config: &crate::config::Config,
    history: &HistoryStore,
    weeks: u32,
    now_ms: i64,
) -> Result<CapacityReport, crate::store::StoreError> {
    let from_ms = now_ms - i64::from(weeks) * 7 * 24 * HOUR_MS;
    let min_span = TrendWindow::default().min_span.as_millis() as f64;
    let mut targets = Vec::new();
    for name in super::analyze::report_targets(config, history)? {
        let latest = |m: &str| history.latest(&name, m).map(|v| v.map(|(_, v)| v));
        let sampled_at_ms = ["used_memory", "connected_clients"]
            .into_iter()
            .map(|m| history.latest(&name, m).map(|v| v.map(|(at, _)| at)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .max();
        let trend = |m: &str| history.trend(&name, m, from_ms, now_ms + 1, min_span);
        let memory = memory_row(
            latest("used_memory")?,
            latest("maxmemory")?,
            latest("memory_used_pct")?,
            trend("used_memory")?,
            trend("memory_used_pct")?,
        );
        let connections = connection_row(
            latest("connected_clients")?,
            latest("maxclients")?,
            trend("connected_clients")?,
        );
        targets.push(TargetCapacity {
            target: name,
            status: memory.status.max(connections.status),
            sampled_at_ms,
            memory,
            connections,
        });
    }
    Ok(CapacityReport {
        weeks,
        status: Status::worst(targets.iter().map(|t| t.status)),
        targets,
    })
}

/// The guide's memory matrix. Growth is in percentage points of the limit a
/// week. The guide names no action between 5 and 10 %/week; redops takes
/// the more cautious one.
pub fn memory_action(used_pct: f64, growth_pct_per_week: Option<f64>) -> (&'static str, Status) {
    match (used_pct, growth_pct_per_week) {
        (p, _) if p > 85.0 => ("Emergency capacity increase", Status::Critical),
        (p, _) if p >= 70.0 => ("Increase capacity immediately", Status::Warning),
        (p, Some(g)) if p >= 50.0 && g >= 5.0 => ("Increase capacity soon", Status::Warning),
        (p, _) if p >= 50.0 => ("Plan for growth", Status::Ok),
        _ => ("Monitor trends", Status::Ok),
    }
}

/// The guide's connection matrix, written for `maxclients 10000` and scaled
/// to the server's own limit: under 50 %, 50–80 %, over 80 %.
pub fn connection_action(used_pct: f64) -> (&'static str, Status) {
    match used_pct {
        p if p > 80.0 => ("Optimize connections immediately", Status::Critical),
        p if p >= 50.0 => ("Plan connection pooling", Status::Warning),
        _ => ("Monitor growth", Status::Ok),
    }
}

/// A forecast inside [`FULL_SOON_DAYS`] raises an `ok` row to `warning`.
fn full_soon(status: Status, days: Option<f64>) -> Status {
    match days {
        Some(d) if d < FULL_SOON_DAYS => status.max(Status::Warning),
        _ => status,
    }
}

fn memory_row(
    used: Option<f64>,
    maxmemory: Option<f64>,
    used_pct: Option<f64>,
    bytes_trend: Option<Fit>,
    pct_trend: Option<Fit>,
) -> MemoryRow {
    let growth_pct_per_week = pct_trend.map(|f| f.growth_per_week());
    let days_until_full = bytes_trend.and_then(|f| f.days_until(maxmemory.unwrap_or(0.0)));
    let (action, status) = match used_pct {
        Some(p) => memory_action(p, growth_pct_per_week),
        None => ("No memory samples in the history yet", Status::Unknown),
    };
    MemoryRow {
        used_memory: used,
        maxmemory,
        used_pct,
        growth_pct_per_week,
        growth_bytes_per_week: bytes_trend.map(|f| f.growth_per_week()),
        days_until_full,
        action,
        status: full_soon(status, days_until_full),
    }
}

fn connection_row(clients: Option<f64>, maxclients: Option<f64>, trend: Option<Fit>) -> ConnectionRow {
    let limit = maxclients.filter(|m| *m > 0.0);
    let used_pct = clients.zip(limit).map(|(c, m)| c / m * 100.0);
    let days_until_full = trend.and_then(|f| f.days_until(limit.unwrap_or(0.0)));
    let (action, status) = match used_pct {
        Some(p) => connection_action(p),
        None => ("No connection samples in the history yet", Status::Unknown),
    };
    ConnectionRow {
        connected_clients: clients,
        maxclients,
        used_pct,
        growth_per_week: trend.map(|f| f.growth_per_week()),
        days_until_full,
        action,
        status: full_soon(status, days_until_full),
    }
}

fn print_report(report: &CapacityReport) {
    let num = |v: Option<f64>, unit: &str| v.map_or("n/a".to_owned(), |v| format!("{v:.1}{unit}"));
    let bytes = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.1} MiB", v / 1_048_576.0));
    println!("Capacity report, growth fitted over the last {} week(s)", report.weeks);
    for t in &report.targets {
        let m = &t.memory;
        let c = &t.connections;
        println!("\n[{}] {}", t.status.as_str().to_uppercase(), t.target);
        println!(
            "    memory       {} of {} ({}), growth {}/week ({}), full in {} -> {} [{}]",
            bytes(m.used_memory),
            bytes(m.maxmemory),
            num(m.used_pct, "%"),
            num(m.growth_pct_per_week, " points"),
            bytes(m.growth_bytes_per_week),
            num(m.days_until_full, " days"),
            m.action,
            m.status
        );
        println!(
            "    connections  {} of {} ({}), growth {}/week, full in {} -> {} [{}]",
            num(c.connected_clients, ""),
            num(c.maxclients, ""),
            num(c.used_pct, "%"),
            num(c.growth_per_week, ""),
            num(c.days_until_full, " days"),
            c.action,
            c.status
        );
    }
    println!("\noverall: {}", report.status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_matrix_of_the_guide() {
        assert_eq!(memory_action(10.0, Some(50.0)), ("Monitor trends", Status::Ok));
        assert_eq!(memory_action(60.0, Some(2.0)), ("Plan for growth", Status::Ok));
        assert_eq!(memory_action(60.0, None), ("Plan for growth", Status::Ok));
        assert_eq!(
            memory_action(60.0, Some(12.0)),
            ("Increase capacity soon", Status::Warning)
        );
        assert_eq!(
            memory_action(60.0, Some(7.0)),
            ("Increase capacity soon", Status::Warning)
        );
        assert_eq!(
            memory_action(75.0, Some(-1.0)),
            ("Increase capacity immediately", Status::Warning)
        );
        assert_eq!(
            memory_action(90.0, None),
            ("Emergency capacity increase", Status::Critical)
        );
    }

    #[test]
    fn the_connection_matrix_scales_to_maxclients() {
        assert_eq!(connection_action(40.0), ("Monitor growth", Status::Ok));
        assert_eq!(connection_action(65.0), ("Plan connection pooling", Status::Warning));
        assert_eq!(
            connection_action(85.0),
            ("Optimize connections immediately", Status::Critical)
        );
        let row = connection_row(Some(900.0), Some(1000.0), None);
        assert_eq!((row.used_pct, row.status), (Some(90.0), Status::Critical));
        let unknown = connection_row(Some(900.0), Some(0.0), None);
        assert_eq!((unknown.used_pct, unknown.status), (None, Status::Unknown));
    }

    #[test]
    fn full_within_two_weeks_warns_even_at_low_usage() {
        // 900 of 3000 bytes (30 %), growing 210 a day: full in 10 days.
        let growing = Fit {
            slope_per_day: 210.0,
            value_at_end: 900.0,
            span_ms: 86_400_000.0,
        };
        let row = memory_row(Some(900.0), Some(3000.0), Some(30.0), Some(growing), None);
        assert_eq!(row.days_until_full, Some(10.0));
        assert_eq!((row.action, row.status), ("Monitor trends", Status::Warning));
    }
}
