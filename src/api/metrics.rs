//! `GET /metrics` in the Prometheus text format: the engine's own counters,
//! the outbox depth, and every numeric sampled metric of every target,
//! labelled by target, group and role — enough for a team with basic needs
//! to drop redis_exporter.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Api;
use crate::event::MetricValue;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
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
    let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        "redops_events_received_total",
        "Events received from sources, by source.",
        &[
            ("{source=\"sample\"}", load(&c.events_sample)),
            ("{source=\"keyspace\"}", load(&c.events_keyspace)),
            ("{source=\"health\"}", load(&c.events_health)),
            ("{source=\"sentinel\"}", load(&c.events_sentinel)),
            ("{source=\"schedule\"}", load(&c.events_schedule)),
        ],
    );
    counter(
        "redops_alert_changes_total",
        "Alert changes, by new state.",
        &[
            ("{state=\"firing\"}", load(&c.alerts_firing)),
            ("{state=\"resolved\"}", load(&c.alerts_resolved)),
        ],
    );
    counter(
        "redops_playbook_runs_total",
        "Finished playbook runs, by outcome.",
        &[
            ("{outcome=\"succeeded\"}", load(&c.playbook_runs_ok)),
            ("{outcome=\"failed\"}", load(&c.playbook_runs_failed)),
        ],
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
                families
                    .entry(format!("redis_{}", metric_name(name)))
                    .or_default()
                    .push(format!("{{{labels}}} {v}"));
            }
        }
    }
    for (family, samples) in families {
        let _ = writeln!(
            out,
            "# HELP {family} Sampled by redops (docs/rules.md#metrics).\n# TYPE {family} gauge"
        );
        for s in samples {
            let _ = writeln!(out, "{family}{s}");
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
}

impl Api {
    fn alerts_outbox_pending(&self) -> Result<Vec<(String, i64)>, crate::store::StoreError> {
        self.outbox.as_ref().map_or(Ok(Vec::new()), |o| o.pending())
    }
}
