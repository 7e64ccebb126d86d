//! Every target's last sample as Prometheus families ([`super::names`]),
//! labelled as redis_exporter labels them plus what tells redops's targets
//! apart:
//!
//! - `target`: redops's name of the target (`cache`, `lab/10.0.0.5:6379`);
//! - `instance`: the server's `host:port`, redis_exporter's label (in a
//!   multi-target setup Prometheus sets it there; here redops does, so scrape
//!   it with `honor_labels: true`); a Sentinel group's own series, which
//!   belong to no one server, use the group's name;
//! - `group` and `cluster` for the nodes of a Sentinel group or a cluster.
//!
//! The role is not a label of every series, as it was before: it changes at
//! a failover, and a label that changes splits a counter in two. It is in
//! `redis_instance_info{role}`, as in redis_exporter, to join on `instance`.
//!
//! A target that is down has only `redis_up 0`: its last values would be
//! stale, and Prometheus marks a series that vanishes stale itself.

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::Number;
use super::names::{self, Family, INSTANCE_INFO_TEXT, Kind};
use crate::api::state::TargetView;
use crate::event::MetricValue;

/// The labels of a target's that say which group of servers it is in.
const TOPOLOGY_LABELS: &[&str] = &["group", "cluster"];

type Labels = Vec<(&'static str, String)>;

/// Each family by its name (so sorted), with its series.
type Families = BTreeMap<String, (Family, Vec<(Labels, f64)>)>;

#[derive(Debug)]
pub struct SampledFamilies {
    targets: BTreeMap<String, TargetView>,
}

impl SampledFamilies {
    pub fn new(targets: BTreeMap<String, TargetView>) -> Self {
        SampledFamilies { targets }
    }

    /// Each family with its series, sorted by name, and the labels of each
    /// target's `redis_instance_info`.
    fn families(&self) -> (Families, Vec<Labels>) {
        let mut families = Families::new();
        let mut infos = Vec::new();
        for (target, t) in &self.targets {
            let labels = target_labels(target, t);
            let values: Vec<(&String, f64)> = if t.up {
                t.metrics
                    .iter()
                    .filter_map(|(name, v)| Some((name, v.as_f64()?)))
                    .collect()
            } else {
                t.metrics
                    .get_key_value("redis_up")
                    .map(|(name, _)| (name, 0.0))
                    .into_iter()
                    .collect()
            };
            for (name, value) in values {
                let mut family = names::family(name);
                if super::engine::FAMILIES.contains(&exported_name(&family).as_str()) {
                    // A probe named like one of redops's own families.
                    family.name = format!("redops_sample_{}", family.name.trim_start_matches("redops_")).into();
                }
                let mut series = labels.clone();
                if let Some(db) = &family.db {
                    series.push(("db", db.clone()));
                }
                let value = value * family.scale;
                families
                    .entry(family.name.clone().into_owned())
                    .or_insert_with(|| (family, Vec::new()))
                    .1
                    .push((series, value));
            }
            if t.up
                && let Some(info) = instance_info(&labels, t)
            {
                infos.push(info);
            }
        }
        (families, infos)
    }
}

/// The name a family has in the exposition: a counter's with `_total`.
fn exported_name(family: &Family) -> String {
    match family.kind {
        Kind::Counter => format!("{}_total", family.name),
        Kind::Gauge => family.name.clone().into_owned(),
    }
}

fn target_labels(target: &str, t: &TargetView) -> Labels {
    let instance = t
        .labels
        .get("addr")
        .or(t.instance.as_ref())
        .cloned()
        .unwrap_or_else(|| target.to_owned());
    let mut labels = vec![("target", target.to_owned()), ("instance", instance)];
    for key in TOPOLOGY_LABELS.iter().copied() {
        if let Some(v) = t.labels.get(key) {
            labels.push((key, v.clone()));
        }
    }
    labels
}

/// `redis_instance_info`: redis_exporter's labels, for a target whose
/// sample says it is a Redis server. The role is INFO's (`slave`), as
/// redis_exporter has it, not the rules' `replica`.
fn instance_info(labels: &Labels, t: &TargetView) -> Option<Labels> {
    let text = |name: &str| match t.metrics.get(name) {
        Some(MetricValue::Text(s)) => Some(s.clone()),
        _ => None,
    };
    let role = text("role");
    if role.is_none() && text("redis_version").is_none() {
        return None;
    }
    let mut info = labels.clone();
    let role = role.map(|r| if r == "replica" { "slave".to_owned() } else { r });
    info.push(("role", role.unwrap_or_default()));
    for name in INSTANCE_INFO_TEXT.iter().copied() {
        info.push((name, text(name).unwrap_or_default()));
    }
    let pid = t.metrics.get("process_id").and_then(MetricValue::as_f64);
    info.push(("process_id", pid.map(|p| (p as u64).to_string()).unwrap_or_default()));
    Some(info)
}

impl Collector for SampledFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (families, infos) = self.families();
        for (name, (family, series)) in &families {
            let kind = match family.kind {
                Kind::Gauge => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
            };
            let mut metric = encoder.encode_descriptor(name, &family.help, None, kind)?;
            for (labels, value) in series {
                let mut one = metric.encode_family(labels)?;
                match family.kind {
                    Kind::Gauge => one.encode_gauge(&Number(*value))?,
                    Kind::Counter => one.encode_counter::<NoLabelSet, _, f64>(&Number(*value), None)?,
                }
            }
        }
        if !infos.is_empty() {
            let mut metric = encoder.encode_descriptor(
                "redis_instance",
                "Information about the Redis instance: its role, version and identity, with the value 1.",
                None,
                MetricType::Info,
            )?;
            for labels in &infos {
                metric.encode_info(labels)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_text;
    use prometheus_client::registry::Registry;
    use std::time::SystemTime;

    fn view(labels: &[(&str, &str)], instance: Option<&str>, metrics: &[(&str, MetricValue)]) -> TargetView {
        TargetView {
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            up: metrics
                .iter()
                .all(|(n, v)| *n != "redis_up" || v.as_f64().is_some_and(|x| x > 0.0)),
            sampled_at: SystemTime::now(),
            metrics: metrics.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect(),
            instance: instance.map(str::to_owned),
        }
    }

    fn exposition(targets: Vec<(&str, TargetView)>) -> String {
        let mut registry = Registry::default();
        let targets = targets.into_iter().map(|(n, t)| (n.to_owned(), t)).collect();
        registry.register_collector(Box::new(SampledFamilies::new(targets)));
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry).unwrap();
        out
    }

    use MetricValue::{Num, Text};

    #[test]
    fn a_master_under_redis_exporter_names() {
        let text = exposition(vec![(
            "cache",
            view(
                &[("service", "web")],
                Some("127.0.0.1:6379"),
                &[
                    ("redis_up", Num(1.0)),
                    ("role", Text("master".into())),
                    ("redis_version", Text("7.2.4".into())),
                    ("process_id", Num(77.0)),
                    ("used_memory", Num(1024.0)),
                    ("commands_processed_total", Num(5000.0)),
                    ("db0_keys", Num(3.0)),
                    ("memory_used_pct", Num(41.5)),
                ],
            ),
        )]);
        for line in [
            "# TYPE redis_commands_processed_total counter",
            "redis_commands_processed_total{target=\"cache\",instance=\"127.0.0.1:6379\"} 5000",
            "redis_memory_used_bytes{target=\"cache\",instance=\"127.0.0.1:6379\"} 1024",
            "redis_db_keys{target=\"cache\",instance=\"127.0.0.1:6379\",db=\"db0\"} 3",
            "redops_memory_used_ratio{target=\"cache\",instance=\"127.0.0.1:6379\"} 0.415",
            "redis_up{target=\"cache\",instance=\"127.0.0.1:6379\"} 1",
            "# TYPE redis_instance_info gauge",
            "redis_instance_info{target=\"cache\",instance=\"127.0.0.1:6379\",role=\"master\",redis_version=\"7.2.4\",",
            "process_id=\"77\"} 1",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        assert!(!text.contains("service="), "{text}");
        assert!(!text.contains("# HELP redis_up \n"), "{text}");
    }

    #[test]
    fn a_node_is_its_addr_and_a_replica_is_a_slave_in_the_info() {
        let text = exposition(vec![(
            "lab/10.0.0.2:6379",
            view(
                &[("group", "lab"), ("addr", "10.0.0.2:6379")],
                None,
                &[("redis_up", Num(1.0)), ("role", Text("replica".into()))],
            ),
        )]);
        assert!(
            text.contains("redis_up{target=\"lab/10.0.0.2:6379\",instance=\"10.0.0.2:6379\",group=\"lab\"} 1"),
            "{text}"
        );
        assert!(text.contains("role=\"slave\""), "{text}");
    }

    #[test]
    fn a_down_target_has_only_redis_up_0() {
        let text = exposition(vec![(
            "cache",
            view(
                &[],
                Some("127.0.0.1:6379"),
                &[
                    ("redis_up", Num(0.0)),
                    ("role", Text("master".into())),
                    ("used_memory", Num(1024.0)),
                ],
            ),
        )]);
        assert!(
            text.contains("redis_up{target=\"cache\",instance=\"127.0.0.1:6379\"} 0"),
            "{text}"
        );
        assert!(!text.contains("redis_memory_used_bytes"), "{text}");
        assert!(!text.contains("redis_instance_info"), "{text}");
    }

    #[test]
    fn a_group_is_its_own_instance_and_unknown_metrics_pass_through() {
        let text = exposition(vec![(
            "lab",
            view(
                &[("group", "lab")],
                None,
                &[
                    ("quorum_ok", Num(1.0)),
                    ("sentinel_events_sdown_total", Num(2.0)),
                    ("uptime_seconds_pct", Num(50.0)),
                ],
            ),
        )]);
        assert!(
            text.contains("redops_quorum_ok{target=\"lab\",instance=\"lab\",group=\"lab\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE redops_sentinel_events_sdown_total counter"),
            "{text}"
        );
        assert!(text.contains("redops_uptime_seconds_ratio{"), "{text}");
    }

    #[test]
    fn a_probe_cannot_take_the_name_of_a_family_of_redops() {
        let text = exposition(vec![(
            "cache",
            view(&[], None, &[("outbox_pending", Num(4.0)), ("build_info", Num(1.0))]),
        )]);
        assert!(text.contains("redops_sample_outbox_pending{"), "{text}");
        assert!(text.contains("redops_sample_build_info{"), "{text}");
        assert!(!text.contains("\nredops_outbox_pending{"), "{text}");
    }
}
