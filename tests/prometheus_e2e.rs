//! `/metrics` against the real tools: `promtool check metrics` accepts a
//! live engine's exposition, redis_exporter's names and labels are there
//! with the values of the real server, a real Prometheus scrapes it (in
//! OpenMetrics, which it asks for), and every metric the shipped Grafana
//! dashboard queries is one redops exports and every query is PromQL that
//! Prometheus runs.

mod harness;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, wait_until};

const TOKEN: &str = "prometheus-test-token-0123456789";
const DASHBOARD: &str = include_str!("../config/grafana/redops.json");

/// A running engine with a target, a rule that fires, a webhook that gets
/// it, and one finished playbook run: every family has series.
struct Engine {
    _traffic: Traffic,
    redis: TestRedis,
    _hook: WebhookReceiver,
    _dir: tempfile::TempDir,
    redops: Redops,
    port: u16,
}

impl Engine {
    fn start() -> Engine {
        let redis = TestRedis::start(&[]);
        let hook = WebhookReceiver::start();
        let port = redops::lab::process::free_port().unwrap();
        let config = format!(
            "[[target]]\nname = \"cache\"\nurl = \"{}\"\nlabels = {{ service = \"django-cache\" }}\n\n\
             [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
             [api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"${{REDOPS_TEST_API_TOKEN}}\"\n",
            redis.url(0),
            hook.url()
        );
        let rules = "[[rule]]\nname = \"always\"\nsource = \"sample\"\nwhen = \"redis_up == 1\"\nseverity = \"warning\"\nsummary = \"up\"\n";
        let dir = engine_dir("200ms", &config, &[("always", rules)], &[("noop", "\"nothing to do\"")]);
        let mut redops = Redops::start_with_env(dir.path(), &[], &[("REDOPS_TEST_API_TOKEN", TOKEN)]);
        redops.wait_log("API listening", Duration::from_secs(10));
        hook.wait_for(Duration::from_secs(10), |r| !alerts(r, "always", "firing").is_empty());
        let engine = Engine {
            _traffic: Traffic::start(&redis),
            redis,
            _hook: hook,
            _dir: dir,
            redops,
            port,
        };
        let http = reqwest::blocking::Client::new();
        let run = http
            .post(format!("{}/api/v1/playbooks/noop/run", engine.base()))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "target": "cache" }))
            .send()
            .unwrap();
        assert_eq!(run.status(), 202);
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            let text = engine.metrics();
            text.contains("redops_playbook_run_duration_seconds_count{outcome=\"succeeded\"} 1")
                && text.contains("redops_deliveries_total{receiver=\"hook\",outcome=\"delivered\"}")
                // Rates and the hit ratio need a second sample with lookups.
                && text.contains("redops_hit_ratio{")
        });
        assert!(ready, "{}", engine.metrics());
        engine
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn metrics(&self) -> String {
        reqwest::blocking::get(format!("{}/metrics", self.base()))
            .unwrap()
            .text()
            .unwrap()
    }

    /// The `instance` label of the target's series: its `host:port`.
    fn instance(&self) -> String {
        format!("127.0.0.1:{}", self.redis.port())
    }
}

/// Lookups, hits and misses, all the time: the hit ratio exists only for a
/// sample interval that had lookups.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(redis: &TestRedis) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut conn = redis.conn();
        redis.cli(&["SET", "present", "1"]);
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let _: Result<(Option<String>, Option<String>), _> =
                    redis::pipe().get("present").get("absent").query(&mut conn);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every metric name in an exposition: TYPE lines and sample lines.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') || line.is_empty() => None,
            None => line.split(['{', ' ']).next(),
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_exposition_covers_the_engine_and_passes_promtool() {
    let Some(promtool) = harness::required_tool("promtool") else {
        return;
    };
    let mut engine = Engine::start();
    let text = engine.metrics();
    let series = format!("{{target=\"cache\",instance=\"{}\"}}", engine.instance());
    for needle in [
        "redops_events_received_total{source=\"sample\",target=\"cache\"}".to_owned(),
        "redops_rule_evaluations_total{rule=\"always\"}".to_owned(),
        "redops_alert_changes_total{state=\"firing\",severity=\"warning\"} 1".to_owned(),
        "redops_alerts{state=\"firing\",severity=\"warning\"} 1".to_owned(),
        "redops_playbook_runs_total{outcome=\"succeeded\"} 1".to_owned(),
        "redops_playbook_run_duration_seconds_bucket{outcome=\"succeeded\",le=\"+Inf\"} 1".to_owned(),
        "redops_deliveries_total{receiver=\"hook\",outcome=\"delivered\"}".to_owned(),
        "# TYPE redops_outbox_pending gauge".to_owned(),
        "redops_config_last_reload_successful 1".to_owned(),
        format!("redops_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        format!("redops_sample_duration_seconds{series}"),
        format!("redops_memory_used_ratio{series}"),
        format!("redops_hit_ratio{series}"),
        format!("redops_ops_per_second{series}"),
        format!("redis_up{series} 1"),
        format!("redis_connected_clients{series}"),
        format!("redis_commands_processed_total{series}"),
        format!(
            "redis_instance_info{{target=\"cache\",instance=\"{}\",role=\"master\",redis_version=\"",
            engine.instance()
        ),
        "# TYPE process_cpu_seconds_total counter".to_owned(),
        "\nprocess_resident_memory_bytes ".to_owned(),
        "\nprocess_start_time_seconds ".to_owned(),
        "\nprocess_open_fds ".to_owned(),
    ] {
        assert!(text.contains(&needle), "missing {needle}:\n{text}");
    }
    every_family_has_help(&text);
    promtool_check(&promtool, &text);
    assert!(engine.redops.terminate().success());
}

/// The names a Grafana board built on redis_exporter queries.
const REDIS_EXPORTER_NAMES: &[(&str, &str)] = &[
    ("redis_up", "gauge"),
    ("redis_uptime_in_seconds", "gauge"),
    ("redis_memory_used_bytes", "gauge"),
    ("redis_memory_used_rss_bytes", "gauge"),
    ("redis_memory_max_bytes", "gauge"),
    ("redis_mem_fragmentation_ratio", "gauge"),
    ("redis_connected_clients", "gauge"),
    ("redis_blocked_clients", "gauge"),
    ("redis_config_maxclients", "gauge"),
    ("redis_connected_slaves", "gauge"),
    ("redis_commands_processed_total", "counter"),
    ("redis_connections_received_total", "counter"),
    ("redis_keyspace_hits_total", "counter"),
    ("redis_keyspace_misses_total", "counter"),
    ("redis_evicted_keys_total", "counter"),
    ("redis_expired_keys_total", "counter"),
    ("redis_rejected_connections_total", "counter"),
    ("redis_net_input_bytes_total", "counter"),
    ("redis_cpu_user_seconds_total", "counter"),
    ("redis_db_keys", "gauge"),
    ("redis_db_keys_expiring", "gauge"),
    ("redis_rdb_last_save_timestamp_seconds", "gauge"),
    ("redis_rdb_last_bgsave_status", "gauge"),
    ("redis_rdb_changes_since_last_save", "gauge"),
    ("redis_instance_info", "gauge"),
];

#[test]
fn redis_exporter_names_types_and_the_instance_label_with_the_servers_values() {
    let mut engine = Engine::start();
    // Keys the server counts now; the traffic only reads.
    let mut conn = engine.redis.conn();
    for i in 0..37 {
        let _: () = redis::cmd("SET").arg(format!("k{i}")).arg(i).query(&mut conn).unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("ttl")
        .arg(1)
        .arg("EX")
        .arg(3600)
        .query(&mut conn)
        .unwrap();
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    let instance = engine.instance();
    let db0 = |family: &str| format!("{family}{{target=\"cache\",instance=\"{instance}\",db=\"db0\"}}");
    let mut text = String::new();
    let caught_up = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        text = engine.metrics();
        value(&text, &db0("redis_db_keys")) == Some(dbsize as f64)
    });
    assert!(caught_up, "redis_db_keys is not DBSIZE = {dbsize}:\n{text}");
    assert_eq!(value(&text, &db0("redis_db_keys_expiring")), Some(1.0), "{text}");

    for (name, kind) in REDIS_EXPORTER_NAMES {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "no {kind} {name}:\n{text}"
        );
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("{name}{{"))).collect();
        assert!(!lines.is_empty(), "no series of {name}:\n{text}");
        for line in lines {
            assert!(line.contains(&format!("instance=\"{instance}\"")), "{line}");
        }
    }
    // Counters are INFO's cumulative values, not rates.
    let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
    let processed: f64 = info
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let exported = value(
        &text,
        &format!("redis_commands_processed_total{{target=\"cache\",instance=\"{instance}\"}}"),
    )
    .expect("redis_commands_processed_total");
    assert!(exported > 37.0 && exported <= processed, "{exported} of {processed}");
    // The ratios run 0 to 1.
    let memory = value(
        &text,
        &format!("redops_memory_used_ratio{{target=\"cache\",instance=\"{instance}\"}}"),
    )
    .expect("redops_memory_used_ratio");
    assert!(memory > 0.0 && memory < 1.0, "{memory}");
    assert!(engine.redops.terminate().success());
}

#[test]
fn openmetrics_for_a_scraper_that_asks_for_it() {
    let mut engine = Engine::start();
    let response = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", engine.base()))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
        )
        .send()
        .unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE redis_commands_processed counter\n"), "{text}");
    assert!(text.contains("# TYPE redis_instance info\n"), "{text}");
    assert!(text.contains("\nredis_commands_processed_total{"), "{text}");
    assert!(engine.redops.terminate().success());
}

/// The value of the sample line that starts with `series` (its name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))?
        .parse()
        .ok()
}

/// Every `# TYPE` line follows a `# HELP` line of the same family with text.
fn every_family_has_help(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split(' ').next().unwrap();
            let help = i.checked_sub(1).map(|h| lines[h]).unwrap_or_default();
            let said = help.strip_prefix(&format!("# HELP {family} ")).unwrap_or_default();
            assert!(!said.trim().is_empty(), "{family} has no HELP: {help:?}");
        }
    }
}

/// `promtool check metrics`: no error and no lint finding.
fn promtool_check(promtool: &Path, text: &str) {
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{said}\n---\n{text}"
    );
    assert!(
        said.trim().is_empty(),
        "promtool has lint findings:\n{said}\n---\n{text}"
    );
}

#[test]
fn a_sentinel_groups_metrics_pass_promtool_with_group_and_instance_labels_and_the_role_in_the_info() {
    let Some(promtool) = harness::required_tool("promtool") else {
        return;
    };
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = redops::lab::topology::Topology::start(lab_dir.path()).unwrap();
    let port = redops::lab::process::free_port().unwrap();
    let sentinels: Vec<String> = lab.sentinel_addrs().iter().map(|a| format!("\"{a}\"")).collect();
    let config = format!(
        "[[sentinel]]\nname = \"lab\"\nmaster = \"{}\"\nsentinels = [{}]\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n",
        redops::lab::topology::MASTER_NAME,
        sentinels.join(", ")
    );
    let dir = engine_dir("300ms", &config, &[], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("API listening", Duration::from_secs(10));
    let master = format!(
        "redis_instance_info{{target=\"lab/{0}\",instance=\"{0}\",group=\"lab\",role=\"master\"",
        lab.master_addr()
    );
    let replica = format!(
        "redis_instance_info{{target=\"lab/{0}\",instance=\"{0}\",group=\"lab\",role=\"slave\"",
        lab.replica_addr()
    );
    let link = format!(
        "redis_master_link_up{{target=\"lab/{0}\",instance=\"{0}\",group=\"lab\"}} 1",
        lab.replica_addr()
    );
    let mut text = String::new();
    let seen = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
            .unwrap()
            .text()
            .unwrap();
        text.contains(&master)
            && text.contains(&replica)
            && text.contains(&link)
            && text.contains("redops_quorum_ok{target=\"lab\",instance=\"lab\",group=\"lab\"} 1")
    });
    assert!(seen, "{master} / {replica} / {link} / quorum not in:\n{text}");
    promtool_check(&promtool, &text);
    assert!(redops.terminate().success());
}

/// A `prometheus` server on a free port, scraping `target` every second;
/// killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = redops::lab::process::free_port().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: redops\n    honor_labels: true\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus { child, port, _dir: dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's answer, `None` if Prometheus is not up yet.
    fn query(&self, promql: &str) -> Option<serde_json::Value> {
        reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", promql)])
            .send()
            .ok()?
            .json()
            .ok()
    }

    /// Waits until `promql` returns at least one series; returns them.
    fn wait_for_series(&self, promql: &str) -> Vec<serde_json::Value> {
        let mut last = None;
        let found = wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
            last = self.query(promql);
            last.as_ref()
                .and_then(|v| v["data"]["result"].as_array())
                .is_some_and(|r| !r.is_empty())
        });
        assert!(
            found,
            "no series for {promql}: {last:?}\nprometheus log:\n{}",
            self.log()
        );
        last.unwrap()["data"]["result"].as_array().unwrap().clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_redops_and_runs_every_dashboard_query() {
    let Some(binary) = harness::required_tool("prometheus") else {
        return;
    };
    let mut engine = Engine::start();
    let prometheus = Prometheus::start(&binary, &format!("127.0.0.1:{}", engine.port));
    let up = prometheus.wait_for_series("up{job=\"redops\"} == 1");
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    // OpenMetrics parsed, and with `honor_labels` the server's `instance`
    // is the one redops gave, not redops's own address.
    let memory = prometheus.wait_for_series("redis_memory_used_bytes{target=\"cache\"}");
    assert_eq!(
        memory[0]["metric"]["instance"],
        engine.instance().as_str(),
        "{memory:?}"
    );
    let info = prometheus.wait_for_series("redis_instance_info{target=\"cache\"}");
    assert_eq!(info[0]["metric"]["role"], "master", "{info:?}");
    prometheus.wait_for_series("rate(redis_commands_processed_total{target=\"cache\"}[1m]) > 0");
    prometheus.wait_for_series("redops_playbook_runs_total{outcome=\"succeeded\"}");

    for expr in dashboard_queries() {
        let promql = for_prometheus(&expr);
        let answer = prometheus.query(&promql).expect("Prometheus answers");
        assert_eq!(answer["status"], "success", "{expr} -> {promql}: {answer}");
    }
    assert!(engine.redops.terminate().success());
}

#[test]
fn every_metric_the_grafana_dashboard_queries_is_exported() {
    let mut engine = Engine::start();
    let exported = exported_names(&engine.metrics());
    let queries = dashboard_queries();
    assert!(queries.len() >= 9, "the dashboard has {} queries", queries.len());
    let mut used = BTreeSet::new();
    for expr in &queries {
        for name in metric_names(expr)
            .into_iter()
            .filter(|n| !PROMETHEUS_MADE.contains(&n.as_str()))
        {
            assert!(
                exported.contains(&name),
                "the dashboard queries `{name}` ({expr}), which redops does not export; it exports:\n{exported:#?}"
            );
            used.insert(name);
        }
    }
    for must in [
        "redis_up",
        "redops_memory_used_ratio",
        "redis_keyspace_hits_total",
        "redis_keyspace_misses_total",
        "redis_mem_fragmentation_ratio",
        "redis_connected_clients",
        "redis_commands_processed_total",
        "redops_alerts",
        "redops_playbook_runs_total",
        "redops_deliveries_total",
        "redops_outbox_pending",
    ] {
        assert!(
            used.contains(must),
            "the dashboard does not chart {must}; it uses {used:?}"
        );
    }
    assert!(engine.redops.terminate().success());
}

/// Every `expr` of every panel target, and of the template variables' queries.
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("config/grafana/redops.json is JSON");
    let mut out = Vec::new();
    collect_exprs(&dashboard, &mut out);
    out
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Grafana's variables as Prometheus would see them after substitution.
fn for_prometheus(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$target", ".+")
}

/// Series Prometheus makes itself for every scrape.
const PROMETHEUS_MADE: &[&str] = &["up", "scrape_duration_seconds"];

/// PromQL words that are not metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "count_values",
    "inf",
    "nan",
];

/// The metric names in a PromQL expression: identifiers outside label
/// matchers, strings and ranges, that are not functions, keywords, or the
/// label lists of `by (...)` and the like.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_label_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_label_list = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' => {
                // `group_left` may stand without a label list.
                skip_label_list = false;
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$')) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next] == ' ' {
                    next += 1;
                }
                let is_call = chars.get(next) == Some(&'(');
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    skip_label_list = true;
                } else if !is_call && !word.starts_with('$') && !KEYWORDS.contains(&lower.as_str()) {
                    names.push(word);
                }
            }
            c if c.is_ascii_digit() => {
                // A number or a duration such as 5m: not a name.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names("sum by (target) (rate(redops_events_received_total{source=\"sample\"}[5m])) / 2"),
        ["redops_events_received_total"]
    );
    assert_eq!(
        metric_names(
            "histogram_quantile(0.95, sum by (le) (rate(redops_playbook_run_duration_seconds_bucket[$__rate_interval])))"
        ),
        ["redops_playbook_run_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names("redis_a{target=~\"$target\"} * on (target) group_left redis_b or vector(0)"),
        ["redis_a", "redis_b"]
    );
}
