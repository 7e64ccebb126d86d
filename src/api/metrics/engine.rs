//! redops's own families, `redops_*`: what the engine counted
//! ([`crate::telemetry`]), the alerts and outbox of the state store, the
//! reload and HA state, and `redops_build_info`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::super::Api;
use crate::api::state::Snapshot;
use crate::telemetry::{CounterVec, Counters, RUN_DURATION_BUCKETS, RunDurations};

/// Every family this module encodes, so that a sample metric passed
/// through as `redops_<name>` cannot take one's name (`sampled`).
pub const FAMILIES: &[&str] = &[
    "redops_events_received_total",
    "redops_rule_evaluations_total",
    "redops_alert_changes_total",
    "redops_alerts",
    "redops_playbook_runs_total",
    "redops_playbook_run_duration_seconds",
    "redops_deliveries_total",
    "redops_playbook_invocations_dropped_total",
    "redops_alertmanager_alerts_total",
    "redops_config_reloads_failed_total",
    "redops_config_last_reload_successful",
    "redops_ha_leader",
    "redops_ha_fencing_token",
    "redops_uptime_seconds",
    "redops_outbox_pending",
    "redops_build_info",
];

/// What the engine's families read, gathered once per scrape.
pub struct EngineFamilies {
    counters: Arc<Counters>,
    deliveries: Arc<CounterVec<2>>,
    /// Alerts in the state store now, by (state, severity).
    alerts: BTreeMap<(&'static str, String), u64>,
    outbox_pending: Vec<(String, i64)>,
    reload_ok: bool,
    uptime_seconds: u64,
}

impl std::fmt::Debug for EngineFamilies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineFamilies").finish_non_exhaustive()
    }
}

impl EngineFamilies {
    pub fn gather(api: &Api, snapshot: &Snapshot) -> EngineFamilies {
        let mut alerts = BTreeMap::new();
        for row in api.alerts.list(false).unwrap_or_default() {
            let state = if row.silenced {
                "silenced"
            } else if row.acked_by.is_some() {
                "acknowledged"
            } else {
                "firing"
            };
            *alerts.entry((state, row.severity)).or_default() += 1;
        }
        EngineFamilies {
            counters: api.view.counters.clone(),
            deliveries: api.deliveries.clone(),
            alerts,
            outbox_pending: api.outbox.as_ref().and_then(|o| o.pending().ok()).unwrap_or_default(),
            reload_ok: snapshot.reload_ok,
            uptime_seconds: snapshot.uptime_seconds,
        }
    }
}

impl Collector for EngineFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.counters;
        counter_vec(
            &mut encoder,
            "redops_events_received",
            "Events the sources delivered to the evaluator, by source and target.",
            ["source", "target"],
            &c.events_received,
        )?;
        counter_vec(
            &mut encoder,
            "redops_rule_evaluations",
            "Rule conditions evaluated, by rule.",
            ["rule"],
            &c.rule_evaluations,
        )?;
        counter_vec(
            &mut encoder,
            "redops_alert_changes",
            "Alert changes, by new state and severity.",
            ["state", "severity"],
            &c.alert_changes,
        )?;
        let mut alerts = encoder.encode_descriptor(
            "redops_alerts",
            "Alerts firing now, by state (firing, acknowledged, silenced) and severity.",
            None,
            MetricType::Gauge,
        )?;
        for ((state, severity), n) in &self.alerts {
            let labels = [("state", *state), ("severity", severity.as_str())];
            alerts.encode_family(&labels)?.encode_gauge(n)?;
        }
        counter_vec(
            &mut encoder,
            "redops_playbook_runs",
            "Finished playbook runs, by outcome.",
            ["outcome"],
            &c.playbook_runs,
        )?;
        run_durations(&mut encoder, &c.playbook_durations)?;
        counter_vec(
            &mut encoder,
            "redops_deliveries",
            "Notification delivery attempts, by receiver and outcome (delivered, retried, dead).",
            ["receiver", "outcome"],
            &self.deliveries,
        )?;
        counter_vec(
            &mut encoder,
            "redops_alertmanager_alerts",
            "Alerts posted by an Alertmanager, by outcome (started, duplicate, cooldown, resolved, unmatched, rejected).",
            ["outcome"],
            &c.alertmanager_alerts,
        )?;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut encoder,
            "redops_playbook_invocations_dropped",
            "Playbook invocations dropped because the runner's queue was full.",
            load(&c.playbook_invocations_dropped),
        )?;
        counter(
            &mut encoder,
            "redops_config_reloads_failed",
            "Reloads that failed and kept the last good rules.",
            load(&c.reloads_failed),
        )?;
        gauge(
            &mut encoder,
            "redops_config_last_reload_successful",
            "1 when the last reload worked.",
            u64::from(self.reload_ok),
        )?;
        if c.ha_enabled.load(Ordering::Relaxed) {
            gauge(
                &mut encoder,
                "redops_ha_leader",
                "Whether this instance holds the HA lease (1) or follows (0).",
                load(&c.ha_leader),
            )?;
            gauge(
                &mut encoder,
                "redops_ha_fencing_token",
                "The fencing token of this instance's latest lease.",
                load(&c.ha_fencing_token),
            )?;
        }
        gauge(
            &mut encoder,
            "redops_uptime_seconds",
            "Seconds since the engine started.",
            self.uptime_seconds,
        )?;
        let mut pending = encoder.encode_descriptor(
            "redops_outbox_pending",
            "Notifications written and not yet delivered, by receiver.",
            None,
            MetricType::Gauge,
        )?;
        for (receiver, n) in &self.outbox_pending {
            pending
                .encode_family(&[("receiver", receiver.as_str())])?
                .encode_gauge(n)?;
        }
        encoder
            .encode_descriptor(
                "redops_build",
                "The running redops: its version, with the value 1.",
                None,
                MetricType::Info,
            )?
            .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])
    }
}

/// One counter family with its label names; a family with no series yet
/// still gets its HELP and TYPE, so dashboards find it. `name` is without
/// `_total`: the encoder adds it.
fn counter_vec<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label_names: [&'static str; N],
    counters: &CounterVec<N>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (values, v) in counters.snapshot() {
        let labels: Vec<(&str, &str)> = label_names
            .iter()
            .copied()
            .zip(values.iter().map(String::as_str))
            .collect();
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn run_durations(encoder: &mut DescriptorEncoder, durations: &RunDurations) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "redops_playbook_run_duration_seconds",
        "How long finished playbook runs took, by outcome.",
        None,
        MetricType::Histogram,
    )?;
    for (outcome, series) in durations.snapshot() {
        // The encoder sums the buckets itself; telemetry keeps them summed.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = RUN_DURATION_BUCKETS
            .iter()
            .zip(series.buckets)
            .map(|(bound, cumulative)| {
                let n = cumulative - below;
                below = cumulative;
                (*bound, n)
            })
            .collect();
        family
            .encode_family(&[("outcome", outcome.as_str())])?
            .encode_histogram::<NoLabelSet>(series.sum, series.count, &buckets, None)?;
    }
    Ok(())
}
