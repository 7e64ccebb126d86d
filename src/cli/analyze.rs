//! `redops analyze --hours 24 [--json]`: the guide's `redis_admin --analyze`.
//! Per target, from the sample history the engine keeps: min/avg/max of
//! each kept metric, the peak hours of the day for load and memory, the
//! hit-ratio trend; and, fetched live, a summary of the slow log.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::{ConfigArg, EXIT_FAILED};
use crate::config::{Config, TargetConfig};
use crate::history::rollup::{Bucket, HOUR_MS};
use crate::history::trend::{Point, fit};
use crate::history::{HistoryStore, METRICS, Tier};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// How far back to look.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=2160))]
    pub hours: u32,
    /// Machine-readable output (documented in docs/operations.md).
    #[arg(long)]
    pub json: bool,
}

/// Slow log entries read from each target.
const SLOWLOG_ENTRIES: usize = 128;
/// Peak hours reported per metric.
const PEAK_HOURS: usize = 3;
/// Commands reported from the slow log.
const TOP_COMMANDS: usize = 5;

#[derive(Debug, Serialize)]
pub struct Report {
    pub hours: u32,
    pub from_ms: i64,
    pub to_ms: i64,
    pub targets: Vec<TargetAnalysis>,
}

#[derive(Debug, Serialize)]
pub struct TargetAnalysis {
    pub target: String,
    pub metrics: BTreeMap<&'static str, Summary>,
    pub peak_hours: BTreeMap<&'static str, Vec<PeakHour>>,
    pub hit_ratio_trend: Option<HitRatioTrend>,
    pub slowlog: Option<Slowlog>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub last: f64,
    pub samples: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct PeakHour {
    /// Hour of the day, UTC.
    pub hour_utc: u8,
    pub avg: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct HitRatioTrend {
    /// Percentage points a day; negative is falling.
    pub slope_per_day: f64,
    /// The fitted line at the window's first and last sample.
    pub start: f64,
    pub end: f64,
}

#[derive(Debug, Serialize, Default)]
pub struct Slowlog {
    /// Entries in the window, of the last [`SLOWLOG_ENTRIES`] the server keeps.
    pub entries: usize,
    pub top_commands: Vec<SlowCommand>,
    /// Why the slow log could not be read.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SlowCommand {
    pub command: String,
    pub calls: u64,
    pub total_us: u64,
    pub max_us: u64,
}

pub fn main(args: Args) -> ExitCode {
    let (config, history) = match open_history(&args.config) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let to_ms = crate::history::now_ms();
    let from_ms = to_ms - i64::from(args.hours) * HOUR_MS;
    let report = match analyze(&config, &history, from_ms, to_ms, args.hours) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redops analyze: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print_report(&report);
    }
    ExitCode::SUCCESS
}

/// The config and the history in its state store, or the exit code after
/// saying what is wrong.
pub(super) fn open_history(arg: &ConfigArg) -> Result<(Config, HistoryStore), ExitCode> {
    let (config, _) = arg.load()?;
    let history = crate::store::Store::open(&config.engine.state_dir)
        .and_then(HistoryStore::open)
        .map_err(|e| {
            eprintln!("redops: {e}");
            ExitCode::from(EXIT_FAILED)
        })?;
    Ok((config, history))
}

/// The configured targets, then any other target with history (a Sentinel
/// group's nodes), each once.
pub(super) fn report_targets(config: &Config, history: &HistoryStore) -> Result<Vec<String>, crate::store::StoreError> {
    let mut names: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    for name in history.targets()? {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

pub fn analyze(
    config: &Config,
    history: &HistoryStore,
    from_ms: i64,
    to_ms: i64,
    hours: u32,
) -> Result<Report, crate::store::StoreError> {
    let mut targets = Vec::new();
    for name in report_targets(config, history)? {
        let mut series = BTreeMap::new();
        for &metric in METRICS.iter() {
            let buckets = history.series_by_tier(&name, metric, from_ms, to_ms)?;
            if !buckets.is_empty() {
                series.insert(metric, buckets);
            }
        }
        let configured = config.targets.iter().find(|t| t.name == name);
        let slowlog = configured.map(|t| slowlog(t, config.engine.connect_timeout, from_ms));
        targets.push(analyze_target(name, &series, slowlog));
    }
    Ok(Report {
        hours,
        from_ms,
        to_ms,
        targets,
    })
}

fn analyze_target(
    target: String,
    series: &BTreeMap<&'static str, Vec<(Tier, Bucket)>>,
    slowlog: Option<Slowlog>,
) -> TargetAnalysis {
    let buckets = |m: &str| -> Option<Vec<Bucket>> { Some(series.get(m)?.iter().map(|(_, b)| *b).collect()) };
    let metrics = series
        .keys()
        .filter_map(|m| Some((*m, summarize(&buckets(m)?)?)))
        .collect();
    let peak_hours = ["ops_per_sec", "used_memory"]
        .into_iter()
        .filter_map(|m| Some((m, peak_hours(&buckets(m)?))))
        .collect();
    let hit_ratio_trend = series.get("hit_ratio").and_then(|b| hit_ratio_trend(b));
    TargetAnalysis {
        target,
        metrics,
        peak_hours,
        hit_ratio_trend,
        slowlog,
    }
}

pub fn summarize(buckets: &[Bucket]) -> Option<Summary> {
    let (first, rest) = buckets.split_first()?;
    let mut all = *first;
    for b in rest {
        all.merge(b);
    }
    Some(Summary {
        min: all.min,
        avg: all.avg,
        max: all.max,
        last: all.last,
        samples: all.count,
    })
}

/// The hours of the day (UTC) with the highest average, highest first.
pub fn peak_hours(buckets: &[Bucket]) -> Vec<PeakHour> {
    let mut by_hour: BTreeMap<u8, Bucket> = BTreeMap::new();
    for b in buckets {
        let hour = (b.at_ms.rem_euclid(86_400_000) / HOUR_MS) as u8;
        by_hour.entry(hour).and_modify(|acc| acc.merge(b)).or_insert(*b);
    }
    let mut hours: Vec<PeakHour> = by_hour
        .into_iter()
        .map(|(hour_utc, b)| PeakHour { hour_utc, avg: b.avg })
        .collect();
    hours.sort_by(|a, b| b.avg.total_cmp(&a.avg));
    hours.truncate(PEAK_HOURS);
    hours
}

fn hit_ratio_trend(buckets: &[(Tier, Bucket)]) -> Option<HitRatioTrend> {
    let points: Vec<Point> = buckets
        .iter()
        .map(|(tier, b)| Point::of_bucket(b, tier.width_ms()))
        .collect();
    let f = fit(&points)?;
    Some(HitRatioTrend {
        slope_per_day: f.slope_per_day,
        start: f.value_at_end - f.slope_per_day * f.span_ms / 86_400_000.0,
        end: f.value_at_end,
    })
}

/// `SLOWLOG GET 128` from the server, the entries since `from_ms` grouped by
/// command.
fn slowlog(target: &TargetConfig, timeout: Duration, from_ms: i64) -> Slowlog {
    let read = || -> Result<redis::Value, String> {
        let info = target.connection_info()?;
        let mut conn = crate::redis::connect::connect_blocking(&info, timeout).map_err(|e| e.to_string())?;
        redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(SLOWLOG_ENTRIES)
            .query(&mut conn)
            .map_err(|e| e.to_string())
    };
    match read() {
        Ok(reply) => summarize_slowlog(&reply, from_ms / 1000),
        Err(e) => Slowlog {
            error: Some(crate::secrets::redact(&e)),
            ..Slowlog::default()
        },
    }
}

/// Groups a `SLOWLOG GET` reply's entries at or after `since_secs` by
/// command name, biggest total duration first.
pub fn summarize_slowlog(reply: &redis::Value, since_secs: i64) -> Slowlog {
    let int = |v: Option<&redis::Value>| match v {
        Some(redis::Value::Int(n)) => Some(*n),
        _ => None,
    };
    let mut by_command: BTreeMap<String, SlowCommand> = BTreeMap::new();
    let mut entries = 0;
    let redis::Value::Array(items) = reply else {
        return Slowlog::default();
    };
    for item in items {
        let redis::Value::Array(fields) = item else { continue };
        let (Some(at), Some(duration)) = (int(fields.get(1)), int(fields.get(2))) else {
            continue;
        };
        if at < since_secs {
            continue;
        }
        let name = match fields.get(3) {
            Some(redis::Value::Array(args)) => match args.first() {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).to_uppercase(),
                _ => continue,
            },
            _ => continue,
        };
        entries += 1;
        let duration = duration.max(0) as u64;
        let c = by_command.entry(name.clone()).or_insert(SlowCommand {
            command: name,
            calls: 0,
            total_us: 0,
            max_us: 0,
        });
        c.calls += 1;
        c.total_us += duration;
        c.max_us = c.max_us.max(duration);
    }
    let mut top_commands: Vec<SlowCommand> = by_command.into_values().collect();
    top_commands.sort_by(|a, b| b.total_us.cmp(&a.total_us).then_with(|| a.command.cmp(&b.command)));
    top_commands.truncate(TOP_COMMANDS);
    Slowlog {
        entries,
        top_commands,
        error: None,
    }
}

fn print_report(report: &Report) {
    let at = |ms: i64| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64));
    println!(
        "Analysis of the last {} hour(s): {} to {}",
        report.hours,
        at(report.from_ms),
        at(report.to_ms)
    );
    for t in &report.targets {
        println!("\n{}", t.target);
        if t.metrics.is_empty() {
            println!("    no history in this window (is the engine running?)");
        }
        for (name, s) in &t.metrics {
            println!(
                "    {name:<30} min {:>14}  avg {:>14}  max {:>14}  ({} samples)",
                fmt_num(s.min),
                fmt_num(s.avg),
                fmt_num(s.max),
                s.samples
            );
        }
        for (name, peaks) in &t.peak_hours {
            let hours: Vec<String> = peaks
                .iter()
                .map(|p| format!("{:02}:00 ({})", p.hour_utc, fmt_num(p.avg)))
                .collect();
            println!("    peak hours (UTC) by {name}: {}", hours.join(", "));
        }
        if let Some(h) = &t.hit_ratio_trend {
            println!(
                "    hit ratio trend: {:+.2} points/day ({:.1}% -> {:.1}%)",
                h.slope_per_day, h.start, h.end
            );
        }
        match &t.slowlog {
            Some(Slowlog { error: Some(e), .. }) => println!("    slow log: unavailable: {e}"),
            Some(s) => {
                println!("    slow log: {} entries in the window", s.entries);
                for c in &s.top_commands {
                    println!(
                        "        {:<16} {:>5} calls  total {:>10} us  max {:>10} us",
                        c.command, c.calls, c.total_us, c.max_us
                    );
                }
            }
            None => {}
        }
    }
}

/// Integers without decimals, fractions with two.
pub(super) fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn entry(at: i64, micros: i64, command: &str) -> Value {
        Value::Array(vec![
            Value::Int(1),
            Value::Int(at),
            Value::Int(micros),
            Value::Array(vec![Value::BulkString(command.as_bytes().to_vec())]),
            Value::BulkString(b"127.0.0.1:5000".to_vec()),
            Value::BulkString(Vec::new()),
        ])
    }

    #[test]
    fn the_slow_log_is_grouped_by_command_and_limited_to_the_window() {
        let reply = Value::Array(vec![
            entry(100, 5_000, "keys"),
            entry(101, 7_000, "KEYS"),
            entry(102, 9_000, "HGETALL"),
            entry(50, 1_000_000, "SORT"),
        ]);
        let s = summarize_slowlog(&reply, 100);
        assert_eq!(s.entries, 3);
        assert_eq!(
            s.top_commands,
            [
                SlowCommand {
                    command: "KEYS".into(),
                    calls: 2,
                    total_us: 12_000,
                    max_us: 7_000
                },
                SlowCommand {
                    command: "HGETALL".into(),
                    calls: 1,
                    total_us: 9_000,
                    max_us: 9_000
                },
            ]
        );
    }

    #[test]
    fn peak_hours_are_the_hours_of_day_with_the_highest_average() {
        // Two days of hourly buckets: hour h averages h, except 14:00 at 100.
        let buckets: Vec<Bucket> = (0..48)
            .map(|i| {
                let hour = i % 24;
                let value = if hour == 14 { 100.0 } else { hour as f64 };
                Bucket {
                    count: 60,
                    ..Bucket::sample(i * HOUR_MS, value)
                }
            })
            .collect();
        let peaks = peak_hours(&buckets);
        let hours: Vec<u8> = peaks.iter().map(|p| p.hour_utc).collect();
        assert_eq!(hours, [14, 23, 22]);
        assert_eq!(peaks[0].avg, 100.0);
    }
}
