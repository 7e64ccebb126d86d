//! The INFO sampler: every `sample_interval`, per target, INFO plus the
//! target's probes become a [`Sample`]; the connection state becomes a
//! [`Health`] event. A target that does not answer yields `redis_up = 0`
//! samples and is reconnected on the next tick.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TargetConfig};
use crate::event::{Event, Health, MetricValue, Metrics, Sample};
use crate::policy::CommandPolicy;
use crate::redis::connect;
use crate::redis::metrics::{Limits, MetricsDeriver};
use crate::sources::keyspace::KeyspaceStats;

#[derive(Clone)]
pub struct SamplerSpec {
    pub target: String,
    pub connection: redis::ConnectionInfo,
    /// `(metric name, command arguments)`, already checked by the read-only policy.
    pub probes: Vec<(String, Vec<String>)>,
    pub interval: Duration,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// The target's keyspace subscription losses, reported in each sample
    /// so that rules can alert on them; `None` without keyspace rules.
    pub keyspace_stats: Option<Arc<KeyspaceStats>>,
    /// A cluster node, with its cluster's name: add the `cluster_links*`
    /// metrics of `CLUSTER LINKS`, and tell the cluster's source when a
    /// probe is answered `MOVED`.
    pub cluster: Option<String>,
}

impl SamplerSpec {
    pub fn from_config(config: &Config, target: &TargetConfig) -> Result<Self, String> {
        let policy = CommandPolicy::read_only();
        let probes = target
            .probes
            .iter()
            .map(|(name, line)| {
                policy
                    .check_line(line)
                    .map(|args| (name.clone(), args))
                    .map_err(|e| format!("target `{}`: probe `{name}`: {e}", target.name))
            })
            .collect::<Result<_, _>>()?;
        Ok(SamplerSpec {
            target: target.name.clone(),
            connection: target.connection_info()?,
            probes,
            interval: config.engine.sample_interval,
            connect_timeout: config.engine.connect_timeout,
            command_timeout: config.engine.command_timeout,
            keyspace_stats: None,
            cluster: None,
        })
    }
}

pub struct Sampler {
    spec: SamplerSpec,
    conn: Option<MultiplexedConnection>,
    limits: Limits,
    deriver: MetricsDeriver,
    last_sample: Option<Instant>,
    failures: u32,
}

impl Sampler {
    pub fn new(spec: SamplerSpec) -> Self {
        Sampler {
            spec,
            conn: None,
            limits: Limits::default(),
            deriver: MetricsDeriver::new(),
            last_sample: None,
            failures: 0,
        }
    }

    /// One sample: the events it yields, health first.
    pub async fn step(&mut self) -> Vec<Event> {
        let target = self.spec.target.clone();
        let had_connection = self.conn.is_some();
        let started = Instant::now();
        let mut result = self.sample().await;
        if result.is_err() && had_connection {
            // A connection the server dropped (a Sentinel promoting this
            // replica closes every client) is not the server being down:
            // reconnect once before saying so.
            self.conn = None;
            result = self.sample().await;
        }
        match result {
            Ok(mut metrics) => {
                // How long INFO and the probes took, reconnect included:
                // a slow server shows here before it times out.
                metrics.insert(
                    "sample_duration_seconds".into(),
                    MetricValue::Num(started.elapsed().as_secs_f64()),
                );
                if self.failures > 0 {
                    tracing::info!(target = %target, after_failures = self.failures, "Target reachable again");
                }
                self.failures = 0;
                vec![
                    Event::Health(Health {
                        target: target.clone(),
                        up: true,
                        reason: None,
                        consecutive_failures: 0,
                    }),
                    Event::Sample(Sample {
                        target,
                        at: SystemTime::now(),
                        metrics,
                    }),
                ]
            }
            Err(reason) => {
                self.conn = None;
                self.failures = self.failures.saturating_add(1);
                if self.failures == 1 {
                    tracing::warn!(target = %target, reason = %reason, "Target unreachable");
                } else {
                    tracing::debug!(target = %target, failures = self.failures, reason = %reason, "Target still unreachable");
                }
                vec![
                    Event::Health(Health {
                        target: target.clone(),
                        up: false,
                        reason: Some(reason),
                        consecutive_failures: self.failures,
                    }),
                    Event::Sample(Sample {
                        target,
                        at: SystemTime::now(),
                        metrics: Metrics::from([("redis_up".to_owned(), MetricValue::Num(0.0))]),
                    }),
                ]
            }
        }
    }

    async fn sample(&mut self) -> Result<Metrics, String> {
        let redact = |e: redis::RedisError| crate::secrets::redact(&e.to_string());
        if self.conn.is_none() {
            let mut conn = connect::connect_async(
                &self.spec.connection,
                self.spec.connect_timeout,
                self.spec.command_timeout,
            )
            .await
            .map_err(redact)?;
            // Limits rarely change; read them once per connection. A server
            // that denies CONFIG still reports them in INFO (Redis ≥ 6.2).
            self.limits = read_limits(&mut conn).await.unwrap_or_default();
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let text: String = redis::cmd("INFO").query_async(conn).await.map_err(redact)?;
        let info = crate::redis::info::parse(&text);
        if info.is_empty() {
            return Err("INFO returned no fields".into());
        }
        let now = Instant::now();
        let elapsed = self.last_sample.map(|t| now.duration_since(t));
        self.last_sample = Some(now);
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut metrics = self.deriver.derive(&info, &self.limits, elapsed, unix);
        for (name, args) in &self.spec.probes {
            let mut cmd = redis::cmd(&args[0]);
            for a in &args[1..] {
                cmd.arg(a);
            }
            match cmd.query_async::<redis::Value>(conn).await {
                Ok(v) => match probe_value(&v) {
                    Some(n) => {
                        metrics.insert(name.clone(), MetricValue::Num(n));
                    }
                    None => tracing::debug!(target = %self.spec.target, probe = %name, "Probe reply is not a number"),
                },
                Err(e) => {
                    let moved = e.redirect_node().filter(|_| e.code() == Some("MOVED"));
                    if let (Some(cluster), Some((to, slot))) = (&self.spec.cluster, moved) {
                        super::redirects::report_moved(cluster, slot, to);
                    }
                    tracing::warn!(target = %self.spec.target, probe = %name, error = %redact(e), "Probe failed")
                }
            }
        }
        if self.spec.cluster.is_some() {
            // Redis ≥ 7 only; an older node simply has no link metrics.
            match redis::cmd("CLUSTER")
                .arg("LINKS")
                .query_async::<redis::Value>(conn)
                .await
            {
                Ok(reply) => metrics.extend(cluster_link_metrics(&reply)),
                Err(e) => tracing::debug!(target = %self.spec.target, error = %redact(e), "CLUSTER LINKS failed"),
            }
        }
        if let Some(stats) = &self.spec.keyspace_stats {
            for (name, value) in stats.metrics() {
                metrics.insert(name.to_owned(), MetricValue::Num(value));
            }
        }
        Ok(metrics)
    }
}

async fn read_limits(conn: &mut MultiplexedConnection) -> Option<Limits> {
    let pairs: Vec<(String, String)> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .arg("maxclients")
        .query_async(conn)
        .await
        .ok()?;
    let mut limits = Limits::default();
    for (k, v) in pairs {
        match k.as_str() {
            "maxmemory" => limits.maxmemory = v.parse().unwrap_or(0),
            "maxclients" => limits.maxclients = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(limits)
}

/// `CLUSTER LINKS`: how many bus links the node has and how much their
/// send buffers hold (a peer that does not read fills its link's buffer).
fn cluster_link_metrics(reply: &redis::Value) -> Metrics {
    let redis::Value::Array(links) = reply else {
        return Metrics::new();
    };
    let allocated: Vec<f64> = links
        .iter()
        .filter_map(|link| {
            let pairs: Vec<(&redis::Value, &redis::Value)> = match link {
                redis::Value::Array(kv) => kv.chunks(2).filter_map(|c| Some((c.first()?, c.get(1)?))).collect(),
                redis::Value::Map(kv) => kv.iter().map(|(k, v)| (k, v)).collect(),
                _ => return None,
            };
            pairs.into_iter().find_map(|(k, v)| {
                let key = match k {
                    redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?,
                    redis::Value::SimpleString(s) => s.as_str(),
                    _ => return None,
                };
                (key == "send-buffer-allocated").then(|| probe_value(v)).flatten()
            })
        })
        .collect();
    Metrics::from([
        ("cluster_links".to_owned(), MetricValue::Num(links.len() as f64)),
        (
            "cluster_links_send_buffer_max_bytes".to_owned(),
            MetricValue::Num(allocated.iter().copied().fold(0.0, f64::max)),
        ),
        (
            "cluster_links_send_buffer_bytes".to_owned(),
            MetricValue::Num(allocated.iter().sum()),
        ),
    ])
}

fn probe_value(v: &redis::Value) -> Option<f64> {
    match v {
        redis::Value::Int(i) => Some(*i as f64),
        redis::Value::Double(d) => Some(*d),
        redis::Value::Boolean(b) => Some(f64::from(u8::from(*b))),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        redis::Value::SimpleString(s) => s.trim().parse().ok(),
        // A missing key: an empty queue, not a missing metric.
        redis::Value::Nil => Some(0.0),
        _ => None,
    }
}

/// Samples a target every interval until `shutdown`.
pub fn spawn_sampler(spec: SamplerSpec, events: mpsc::Sender<Event>, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(spec.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sampler = Sampler::new(spec);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let batch = tokio::select! {
                _ = shutdown.cancelled() => return,
                batch = sampler.step() => batch,
            };
            for event in batch {
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(allocated: i64) -> redis::Value {
        let bulk = |s: &str| redis::Value::BulkString(s.as_bytes().to_vec());
        redis::Value::Array(vec![
            bulk("direction"),
            bulk("to"),
            bulk("send-buffer-allocated"),
            redis::Value::Int(allocated),
            bulk("send-buffer-used"),
            redis::Value::Int(0),
        ])
    }

    #[test]
    fn cluster_links_count_and_sum_their_send_buffers() {
        let reply = redis::Value::Array(vec![link(1024), link(8192), link(0)]);
        let m = cluster_link_metrics(&reply);
        assert_eq!(m["cluster_links"].as_f64(), Some(3.0));
        assert_eq!(m["cluster_links_send_buffer_max_bytes"].as_f64(), Some(8192.0));
        assert_eq!(m["cluster_links_send_buffer_bytes"].as_f64(), Some(9216.0));
        for name in crate::event::metric_names::CLUSTER_LINK_METRICS {
            assert!(m.contains_key(*name), "{name} documented but not emitted");
        }
        assert!(cluster_link_metrics(&redis::Value::Nil).is_empty());
    }
}
