//! Sample history against real servers: a running engine records real
//! samples, forecasts `memory_full_in_days` from the history it finds and
//! lets a rule fire on it; `GET /api/v1/history` charts it; `redops analyze`
//! and `redops report capacity` read a history whose numbers the test knows.

mod harness;

use std::path::Path;
use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, run_redops, wait_until};
use redops::history::rollup::{Bucket, HOUR_MS, MINUTE_MS, floor};
use redops::history::{HistoryStore, Tier};
use redops::store::Store;

const DAY_MS: f64 = 86_400_000.0;

fn history_in(dir: &Path) -> HistoryStore {
    HistoryStore::open(Store::open(&dir.join("state")).unwrap()).unwrap()
}

fn info_field(redis: &TestRedis, field: &str) -> f64 {
    let info: String = redis::cmd("INFO").query(&mut redis.conn()).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO has no {field}"))
}

/// Rollups of `value(at_ms)` every `width_ms` over `[from_ms, to_ms)`, each
/// standing for `count` samples.
fn buckets(from_ms: i64, to_ms: i64, width_ms: i64, count: u64, value: impl Fn(i64) -> f64) -> Vec<Bucket> {
    (from_ms..to_ms)
        .step_by(width_ms as usize)
        .map(|at| Bucket {
            count,
            ..Bucket::sample(at, value(at))
        })
        .collect()
}

fn number_in(text: &str, before: &str) -> f64 {
    let head = text.split(before).next().unwrap_or("");
    head.rsplit(' ')
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number before {before:?} in {text:?}"))
}

#[test]
fn a_running_engine_forecasts_memory_full_from_history_and_real_samples() {
    let redis = TestRedis::start(&[("maxmemory", "64mb"), ("maxclients", "200")]);
    let hook = WebhookReceiver::start();
    let port = redops::lab::process::free_port().unwrap();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\n",
        redis.url(0),
        hook.url()
    );
    let rule = "[[rule]]\nname = \"memory_full_soon\"\nsource = \"sample\"\nwhen = \"memory_full_in_days < 14\"\n\
                severity = \"warning\"\nsummary = \"full in {{ memory_full_in_days }} days\"\n";
    let dir = engine_dir("200ms", &config, &[("capacity", rule)], &[]);

    // Three hours of 1-minute rollups on a line that ends at the server's
    // used_memory now and would reach maxmemory in 10 days.
    let maxmemory = 64.0 * 1024.0 * 1024.0;
    let used_now = info_field(&redis, "used_memory");
    let per_day = (maxmemory - used_now) / 10.0;
    let now = redops::history::now_ms();
    let end = floor(now, MINUTE_MS);
    let history = history_in(dir.path());
    let line = |at: i64| used_now - per_day * (now - at) as f64 / DAY_MS;
    let minutes = |value: &dyn Fn(i64) -> f64| buckets(end - 3 * HOUR_MS, end, MINUTE_MS, 300, |at| value(at + 30_000));
    history
        .insert_buckets(Tier::Minute, "cache", "used_memory", &minutes(&line))
        .unwrap();
    history
        .insert_buckets(Tier::Minute, "cache", "maxmemory", &minutes(&|_| maxmemory))
        .unwrap();

    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("API listening", Duration::from_secs(10));
    let received = hook.wait_for(Duration::from_secs(15), |r| {
        !alerts(r, "memory_full_soon", "firing").is_empty()
    });
    let fired = alerts(&received, "memory_full_soon", "firing");
    assert!(!fired.is_empty(), "no alert; {}\n{}", hook.describe(), redops.output());
    let summary = fired[0].body["summary"].as_str().unwrap().to_owned();
    let days = number_in(&summary, " days");
    assert!((days - 10.0).abs() / 10.0 < 0.05, "{summary}");

    // The target's live metrics carry the forecast too.
    let http = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let targets: serde_json::Value = http
        .get(format!("{base}/api/v1/targets"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let text = targets.to_string();
    assert!(text.contains("memory_full_in_days"), "{text}");

    // The last hour comes from the real samples, a week from the rollups.
    let mut hour = serde_json::Value::Null;
    let charted = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        hour = http
            .get(format!(
                "{base}/api/v1/history?target=cache&metric=used_memory&range=1h"
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        // Seeded minutes answer for the hour until real samples arrive.
        let real = |p: &serde_json::Value| p[0].as_i64().is_some_and(|at| at >= now);
        hour["points"]
            .as_array()
            .is_some_and(|p| p.iter().filter(|p| real(p)).count() >= 3)
    });
    assert!(charted, "{hour}");
    assert_eq!(
        (hour["target"].as_str(), hour["range"].as_str()),
        (Some("cache"), Some("1h"))
    );
    let newest = hour["points"].as_array().unwrap().last().unwrap().clone();
    let (at, value) = (newest[0].as_i64().unwrap(), newest[1].as_f64().unwrap());
    assert!((now - 10_000..now + 60_000).contains(&at), "{newest}");
    assert!((value - used_now).abs() < 1024.0 * 1024.0, "{value} vs {used_now}");
    let week: serde_json::Value = http
        .get(format!(
            "{base}/api/v1/history?target=cache&metric=used_memory&range=7d"
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let points = week["points"].as_array().unwrap();
    assert!(points.len() >= 180 && points.len() <= 500, "{}", points.len());
    let first = points[0][1].as_f64().unwrap();
    assert!((first - line(end - 3 * HOUR_MS + 30_000)).abs() < 1.0, "{first}");

    let bad = http
        .get(format!("{base}/api/v1/history?target=cache&metric=nope&range=1h"))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    let error = bad.json::<serde_json::Value>().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("memory_used_pct"), "{error}");
    let bad_range = http
        .get(format!(
            "{base}/api/v1/history?target=cache&metric=used_memory&range=2y"
        ))
        .send()
        .unwrap();
    assert_eq!(bad_range.status(), 400);

    // Stopping flushes the samples of the last second too.
    let charted_before_stop = history
        .series("cache", "connected_clients", now, now + 60_000)
        .unwrap()
        .len();
    assert!(redops.terminate().success(), "{}", redops.output());
    let clients = history
        .series("cache", "connected_clients", now - 60_000, now + 60_000)
        .unwrap();
    assert!(
        clients.len() >= 3 && clients.len() >= charted_before_stop,
        "{clients:?}"
    );
    assert!(clients.iter().all(|b| b.count == 1 && b.avg >= 1.0), "{clients:?}");
    assert_eq!(
        history.latest("cache", "maxclients").unwrap().map(|(_, v)| v),
        Some(200.0)
    );
}

/// A month of history with known numbers: memory from 36 % to 60 % of
/// 1 GiB (6 points a week), 900 of 1000 clients, a hit ratio falling one
/// point a day, and load peaking at the hour (UTC) it returns: four hours
/// before the current one, so that the last 24 hours hold it whole at any
/// time of day (a fixed 14:00 failed from 14:00 to 15:00 UTC, when the
/// window held neither yesterday's whole nor today's).
fn seed_month(history: &HistoryStore, now: i64) -> i64 {
    let gib = 1024.0 * 1024.0 * 1024.0;
    let end = floor(now, HOUR_MS);
    let start = end - 28 * 24 * HOUR_MS;
    let weeks_ago = |at: i64| (end - at) as f64 / (7.0 * DAY_MS);
    let pct = move |at: i64| 60.0 - 6.0 * weeks_ago(at);
    let hourly = |value: &dyn Fn(i64) -> f64| buckets(start, end, HOUR_MS, 720, |at| value(at + HOUR_MS / 2));
    let put = |target: &str, metric: &str, value: &dyn Fn(i64) -> f64| {
        history
            .insert_buckets(Tier::Hour, target, metric, &hourly(value))
            .unwrap();
    };
    put("cache", "memory_used_pct", &pct);
    put("cache", "used_memory", &|at| pct(at) / 100.0 * gib);
    put("cache", "maxmemory", &|_| gib);
    put("cache", "connected_clients", &|_| 900.0);
    put("cache", "maxclients", &|_| 1000.0);
    put("cache", "hit_ratio", &|at| 95.0 + (end - at) as f64 / DAY_MS);
    let hour_of_day = |at: i64| at.rem_euclid(DAY_MS as i64) / HOUR_MS;
    let busy = hour_of_day(end - 4 * HOUR_MS);
    put("cache", "ops_per_sec", &|at| {
        if hour_of_day(at) == busy { 1000.0 } else { 100.0 }
    });
    // A node with history only (as a Sentinel group's replica would be).
    put("lab/10.0.0.2:6379", "memory_used_pct", &|_| 20.0);
    put("lab/10.0.0.2:6379", "used_memory", &|_| 0.2 * gib);
    put("lab/10.0.0.2:6379", "maxmemory", &|_| gib);
    busy
}

fn cli_json(args: &[&str], config: &Path) -> (Option<i32>, serde_json::Value) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--json", "--config", config.to_str().unwrap()]);
    let out = run_redops(&all, &[]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

#[test]
fn analyze_and_capacity_report_read_a_known_history() {
    let redis = TestRedis::start(&[("enable-debug-command", "yes"), ("slowlog-log-slower-than", "10000")]);
    for _ in 0..3 {
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("0.02")
            .query(&mut redis.conn())
            .unwrap();
    }
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n\n[api]\nenabled = false\n",
        redis.url(0)
    );
    let dir = engine_dir("1s", &config, &[], &[]);
    let path = dir.path().join("redops.toml");
    let history = history_in(dir.path());
    let seeded_at = redops::history::now_ms();
    let busy = seed_month(&history, seeded_at);

    let (code, analysis) = cli_json(&["analyze", "--hours", "24"], &path);
    assert_eq!(code, Some(0), "{analysis}");
    assert_eq!(analysis["hours"], 24);
    let cache = &analysis["targets"][0];
    assert_eq!(cache["target"], "cache", "{analysis}");
    let memory = &cache["metrics"]["memory_used_pct"];
    // The newest hour's middle is half an hour before `end`; the oldest
    // hour wholly in the window 22.5 or 23.5 hours before.
    let at_hours_ago = |h: f64| 60.0 - 6.0 * h / 168.0;
    assert!(
        (memory["max"].as_f64().unwrap() - at_hours_ago(0.5)).abs() < 1e-9,
        "{memory}"
    );
    let min = memory["min"].as_f64().unwrap();
    assert!((at_hours_ago(23.5)..=at_hours_ago(22.5)).contains(&min), "{memory}");
    assert_eq!(memory["samples"].as_u64().unwrap() % 720, 0, "{memory}");
    assert_eq!(cache["peak_hours"]["ops_per_sec"][0]["hour_utc"], busy, "{cache}");
    assert_eq!(cache["peak_hours"]["ops_per_sec"][0]["avg"], 1000.0);
    let slope = cache["hit_ratio_trend"]["slope_per_day"].as_f64().unwrap();
    assert!((slope + 1.0).abs() < 0.01, "falling a point a day: {slope}");
    let slowlog = &cache["slowlog"];
    assert_eq!(slowlog["error"], serde_json::Value::Null, "{slowlog}");
    assert_eq!(slowlog["top_commands"][0]["command"], "DEBUG", "{slowlog}");
    assert_eq!(slowlog["top_commands"][0]["calls"], 3, "{slowlog}");
    assert!(
        slowlog["top_commands"][0]["total_us"].as_u64().unwrap() >= 60_000,
        "{slowlog}"
    );
    let node = &analysis["targets"][1];
    assert_eq!(node["target"], "lab/10.0.0.2:6379");
    assert_eq!(node["slowlog"], serde_json::Value::Null, "not configured: no slow log");

    let (code, report) = cli_json(&["report", "capacity", "--weeks", "4"], &path);
    assert_eq!(code, Some(1), "900 of 1000 clients is critical: {report}");
    assert_eq!(report["status"], "critical");
    let cache = &report["targets"][0];
    let sampled_at = cache["sampled_at_ms"].as_i64().unwrap();
    assert_eq!(
        sampled_at,
        floor(seeded_at, HOUR_MS) - HOUR_MS,
        "the newest hourly row: {cache}"
    );
    let memory = &cache["memory"];
    assert!((memory["used_pct"].as_f64().unwrap() - 59.98).abs() < 0.01, "{memory}");
    let growth = memory["growth_pct_per_week"].as_f64().unwrap();
    assert!((growth - 6.0).abs() / 6.0 < 0.01, "{memory}");
    let days = memory["days_until_full"].as_f64().unwrap();
    let expected = 40.0 / (6.0 / 7.0);
    assert!((days - expected).abs() / expected < 0.05, "{days} vs {expected}");
    assert_eq!(memory["action"], "Increase capacity soon");
    assert_eq!(memory["status"], "warning");
    let connections = &cache["connections"];
    assert_eq!(connections["used_pct"], 90.0, "{connections}");
    assert_eq!(connections["action"], "Optimize connections immediately");
    assert_eq!(connections["status"], "critical");
    assert_eq!(
        connections["days_until_full"],
        serde_json::Value::Null,
        "flat: never full"
    );
    let node = &report["targets"][1];
    assert_eq!(node["memory"]["action"], "Monitor trends", "{node}");
    assert_eq!(
        node["connections"]["status"], "unknown",
        "no connection history: {node}"
    );
    assert_eq!(node["status"], "unknown", "{node}");

    // Clients fall to 300: the report is a warning and exits 0.
    let now = redops::history::now_ms();
    let samples: Vec<redops::history::store::SampleRow> = (0..3)
        .map(|i| redops::history::store::SampleRow {
            target: "cache".into(),
            metric: "connected_clients",
            at_ms: now - i * 5_000,
            value: 300.0,
        })
        .collect();
    history.insert_samples(&samples).unwrap();
    let (code, report) = cli_json(&["report", "capacity"], &path);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        (report["weeks"].as_u64(), report["status"].as_str()),
        (Some(4), Some("warning"))
    );
    assert_eq!(report["targets"][0]["connections"]["action"], "Monitor growth");

    let text = run_redops(&["report", "capacity", "--config", path.to_str().unwrap()], &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Increase capacity soon") && text.contains("overall: warning"),
        "{text}"
    );
    let text = run_redops(&["analyze", "--config", path.to_str().unwrap()], &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("peak hours (UTC) by ops_per_sec: {busy:02}:00")),
        "{text}"
    );
}

/// A target's full history (16 metrics: an hour of 5 s samples, 7 days of
/// minutes, 90 days of hours) stays within the size docs/operations.md
/// states, and pruning it is quick enough for the writer thread.
#[test]
fn a_full_history_of_one_target_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let history = HistoryStore::open(Store::open(dir.path()).unwrap()).unwrap();
    let now = floor(redops::history::now_ms(), HOUR_MS);
    let days = |n: i64| n * 24 * HOUR_MS;
    for metric in redops::history::METRICS.iter() {
        let minutes = buckets(now - days(7), now, MINUTE_MS, 12, |at| at as f64);
        history.insert_buckets(Tier::Minute, "cache", metric, &minutes).unwrap();
        let hours = buckets(now - days(90), now, HOUR_MS, 720, |at| at as f64);
        history.insert_buckets(Tier::Hour, "cache", metric, &hours).unwrap();
        let raw: Vec<redops::history::store::SampleRow> = (0..720)
            .map(|i| redops::history::store::SampleRow {
                target: "cache".into(),
                metric,
                at_ms: now - HOUR_MS + i * 5_000,
                value: i as f64,
            })
            .collect();
        history.insert_samples(&raw).unwrap();
    }
    let started = std::time::Instant::now();
    let series = history.series_keys().unwrap();
    let pruned = history.prune(&Tier::ALL, &series, now + 1).unwrap();
    let prune_time = started.elapsed();
    let _ = Store::open(dir.path())
        .unwrap()
        .conn()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    let size: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let rows: u64 = history.row_counts().unwrap().iter().map(|(_, n)| n).sum();
    println!("{rows} rows, {size} bytes on disk, {pruned} pruned in {prune_time:?}");
    assert_eq!(
        pruned,
        16 * 3,
        "the oldest row of each tier of each metric is 1 ms too old"
    );
    assert_eq!(rows, 16 * (720 + 7 * 1440 + 90 * 24 - 3));
    assert!(size < 24 * 1024 * 1024, "{size} bytes for one target");
    assert!(prune_time < Duration::from_secs(2), "{prune_time:?}");
}

#[test]
fn the_capacity_report_playbook_reads_its_growth_from_the_history() {
    let redis = TestRedis::start(&[("maxmemory", "1gb")]);
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n\n[api]\nenabled = false\n",
        redis.url(0)
    );
    let playbook = include_str!("../playbooks/capacity_report.rhai");
    let dir = engine_dir("1s", &config, &[], &[("capacity_report", playbook)]);
    let path = dir.path().join("redops.toml");
    // Memory grew 6 points of maxmemory a week for four weeks, to 60 %.
    seed_month(&history_in(dir.path()), redops::history::now_ms());

    let out = run_redops(
        &[
            "playbook",
            "run",
            "capacity_report",
            "--target",
            "cache",
            "--config",
            path.to_str().unwrap(),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("memory growth: 6.0% of maxmemory a week over 28 day(s) of history"),
        "{stdout}"
    );
    // 40 points left at 6 a week.
    assert!(
        stdout.contains("at that pace maxmemory is reached in 47 day(s)"),
        "{stdout}"
    );
}
