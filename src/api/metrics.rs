//! `GET /metrics` in the Prometheus text format: the engine's own counters,
//! the outbox depth, and every numeric sampled metric of every target,
//! labelled by target, group and role — enough for a team with basic needs
//! to drop redis_exporter.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Api;
use crate::event::MetricValue;
use crate::telemetry::{CounterVec, RUN_DURATION_BUCKETS, RunDurations};

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The sampler's own timing, exported as redops's rather than Redis's.
const SAMPLE_DURATION: &str = "redops_sample_duration_seconds";

/// The family of a sampled metric, and the factor its value is scaled by:
/// `redis_` and the metric's name, with units spelled out and in base units
/// as Prometheus's naming rules (and `promtool check metrics`) want them —
/// `ops_per_sec` is `redis_ops_per_second`, `db0_avg_ttl_ms` is
/// `redis_db0_avg_ttl_seconds`.
fn sampled_family(name: &str) -> (String, f64) {
    if name == "sample_duration_seconds" {
        return (SAMPLE_DURATION.to_owned(), 1.0);
    }
    // What the keyspace subscription lost is redops's figure too:
    // `events_lost_total` is `redops_keyspace_events_lost_total`.
    if crate::event::metric_names::KEYSPACE_STAT_METRICS.contains(&name) {
        return (format!("redops_keyspace_{}", name.replace("keyspace_", "")), 1.0);
    }
    let name = metric_name(name);
    if let Some(stem) = name.strip_suffix("_per_sec") {
        (format!("redis_{stem}_per_second"), 1.0)
    } else if let Some(stem) = name.strip_suffix("_ms") {
        (format!("redis_{stem}_seconds"), 0.001)
    } else {
        (format!("redis_{name}"), 1.0)
    }
}

/// A sample value as the text format spells it (`+Inf`, not `inf`).
fn number(v: f64) -> String {
    match v {
        v if v.is_nan() => "NaN".into(),
        v if v == f64::INFINITY => "+Inf".into(),
        v if v == f64::NEG_INFINITY => "-Inf".into(),
        v => v.to_string(),
    }
}

fn metric_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

pub(super) async fn handler(State(api): State<Api>) -> impl IntoResponse {
    let snapshot = api.view.snapshot();
    let c = &api.view.counters;
    let mut out = String::new();
    counter_vec(
        &mut out,
        "redops_events_received_total",
        "Events the sources delivered to the evaluator, by source and target.",
        ["source", "target"],
        &c.events_received,
    );
    counter_vec(
        &mut out,
        "redops_rule_evaluations_total",
        "Rule conditions evaluated, by rule.",
        ["rule"],
        &c.rule_evaluations,
    );
    counter_vec(
        &mut out,
        "redops_alert_changes_total",
        "Alert changes, by new state and severity.",
        ["state", "severity"],
        &c.alert_changes,
    );
    alerts_gauge(&mut out, &api);
    counter_vec(
        &mut out,
        "redops_playbook_runs_total",
        "Finished playbook runs, by outcome.",
        ["outcome"],
        &c.playbook_runs,
    );
    run_durations(&mut out, &c.playbook_durations);
    counter_vec(
        &mut out,
        "redops_deliveries_total",
        "Notification delivery attempts, by receiver and outcome (delivered, retried, dead).",
        ["receiver", "outcome"],
        &api.deliveries,
    );
    let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        "redops_playbook_invocations_dropped_total",
        "Playbook invocations dropped because the runner's queue was full.",
        &[("", load(&c.playbook_invocations_dropped))],
    );
    counter(
        "redops_config_reloads_failed_total",
        "Reloads that failed and kept the last good rules.",
        &[("", load(&c.reloads_failed))],
    );
    let _ = writeln!(
        out,
        "# HELP redops_config_last_reload_successful 1 when the last reload worked.\n# TYPE redops_config_last_reload_successful gauge\nredops_config_last_reload_successful {}",
        u8::from(snapshot.reload_ok)
    );
    if c.ha_enabled.load(Ordering::Relaxed) {
        let _ = writeln!(
            out,
            "# HELP redops_ha_leader Whether this instance holds the HA lease (1) or follows (0).\n# TYPE redops_ha_leader gauge\nredops_ha_leader {}\n# HELP redops_ha_fencing_token The fencing token of this instance's latest lease.\n# TYPE redops_ha_fencing_token gauge\nredops_ha_fencing_token {}",
            load(&c.ha_leader),
            load(&c.ha_fencing_token)
        );
    }
    let _ = writeln!(
        out,
        "# HELP redops_uptime_seconds Seconds since the engine started.\n# TYPE redops_uptime_seconds gauge\nredops_uptime_seconds {}",
        snapshot.uptime_seconds
    );
    let _ = writeln!(
        out,
        "# HELP redops_outbox_pending Notifications written and not yet delivered, by receiver.\n# TYPE redops_outbox_pending gauge"
    );
    if let Ok(pending) = api.alerts_outbox_pending() {
        for (receiver, n) in pending {
            let _ = writeln!(out, "redops_outbox_pending{{receiver=\"{}\"}} {n}", escape(&receiver));
        }
    }
    // Every numeric sampled metric, one family per metric name.
    let mut families: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for (target, t) in &snapshot.targets {
        let mut labels = format!("target=\"{}\"", escape(target));
        for key in ["group", "addr"] {
            if let Some(v) = t.labels.get(key) {
                let _ = write!(labels, ",{key}=\"{}\"", escape(v));
            }
        }
        if let Some(MetricValue::Text(role)) = t.metrics.get("role") {
            let _ = write!(labels, ",role=\"{}\"", escape(role));
        }
        for (name, value) in &t.metrics {
            if let MetricValue::Num(v) = value {
                let (family, scale) = sampled_family(name);
                families
                    .entry(family)
                    .or_default()
                    .push(format!("{{{labels}}} {}", number(v * scale)));
            }
        }
    }
    for (family, samples) in families {
        let (kind, help) = match family.as_str() {
            SAMPLE_DURATION => (
                "gauge",
                "Seconds the last sample of the target took: INFO and its probes.",
            ),
            // Cumulative counts kept by a source (a Sentinel group's events).
            f if f.ends_with("_total") => ("counter", "Counted by redops (docs/rules.md#metrics)."),
            _ => ("gauge", "Sampled by redops (docs/rules.md#metrics)."),
        };
        let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
        for s in samples {
            let _ = writeln!(out, "{family}{s}");
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
}

/// One counter family with its label names; a family with no series yet
/// still gets its HELP and TYPE, so dashboards find it.
fn counter_vec<const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    label_names: [&str; N],
    counters: &CounterVec<N>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in counters.snapshot() {
        let _ = writeln!(out, "{name}{{{}}} {v}", label_pairs(&label_names, &labels));
    }
}

fn label_pairs(names: &[&str], values: &[String]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Alerts in the state store now, by state (`firing`, `acknowledged`,
/// `silenced`) and severity.
fn alerts_gauge(out: &mut String, api: &Api) {
    let _ = writeln!(
        out,
        "# HELP redops_alerts Alerts firing now, by state (firing, acknowledged, silenced) and severity.\n# TYPE redops_alerts gauge"
    );
    let Ok(rows) = api.alerts.list(false) else { return };
    let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for row in &rows {
        let state = if row.silenced {
            "silenced"
        } else if row.acked_by.is_some() {
            "acknowledged"
        } else {
            "firing"
        };
        *counts.entry((state, row.severity.as_str())).or_default() += 1;
    }
    for ((state, severity), n) in counts {
        let _ = writeln!(
            out,
            "redops_alerts{{state=\"{state}\",severity=\"{}\"}} {n}",
            escape(severity)
        );
    }
}

fn run_durations(out: &mut String, durations: &RunDurations) {
    let name = "redops_playbook_run_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How long finished playbook runs took, by outcome.\n# TYPE {name} histogram"
    );
    for (outcome, series) in durations.snapshot() {
        let outcome = escape(&outcome);
        for (bound, n) in RUN_DURATION_BUCKETS.iter().zip(series.buckets) {
            let _ = writeln!(out, "{name}_bucket{{outcome=\"{outcome}\",le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{outcome=\"{outcome}\",le=\"+Inf\"}} {}\n{name}_sum{{outcome=\"{outcome}\"}} {}\n{name}_count{{outcome=\"{outcome}\"}} {}",
            series.count, series.sum, series.count
        );
    }
}

impl Api {
    fn alerts_outbox_pending(&self) -> Result<Vec<(String, i64)>, crate::store::StoreError> {
        self.outbox.as_ref().map_or(Ok(Vec::new()), |o| o.pending())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_names_spell_out_units_in_base_units() {
        assert_eq!(sampled_family("used_memory"), ("redis_used_memory".to_owned(), 1.0));
        assert_eq!(sampled_family("ops_per_sec"), ("redis_ops_per_second".to_owned(), 1.0));
        assert_eq!(
            sampled_family("db0_avg_ttl_ms"),
            ("redis_db0_avg_ttl_seconds".to_owned(), 0.001)
        );
        assert_eq!(
            sampled_family("sample_duration_seconds"),
            (SAMPLE_DURATION.to_owned(), 1.0)
        );
        assert_eq!(
            sampled_family("celery-backlog"),
            ("redis_celery_backlog".to_owned(), 1.0)
        );
    }

    #[test]
    fn values_are_spelled_as_the_text_format_wants() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
