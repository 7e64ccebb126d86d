//! `POST /api/v1/alertmanager`: an Alertmanager's webhook receiver. Each
//! firing alert that a `[[alertmanager.route]]` matches runs that route's
//! playbook through the engine's own runner, so it gets what a rule's run
//! gets: the command policy, `--dry-run`, under `[ha]` the leader only with
//! a claim per firing and fenced side effects, and a run record (`redops
//! runs` shows the trigger `alertmanager`).
//!
//! Alertmanager sends a group again every `group_interval` and
//! `repeat_interval` while it fires: one firing (its fingerprint and
//! `startsAt`) runs its playbook once. The run id is derived from the firing,
//! so the run store remembers it across restarts; under `[ha]` the claim in
//! the lease Redis remembers it across instances. Resolved alerts run
//! nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error;
use super::runs::RunnerHandle;
use crate::alerts::{Alert, AlertStatus, Severity};
use crate::config::Config;
use crate::config::alertmanager::AlertmanagerRoute;
use crate::invocation::Invocation;
use crate::playbooks::runner::RunRequest;
use crate::playbooks::runs::{RunStore, Trigger};
use crate::telemetry::Counters;

/// The webhook payload version this endpoint reads.
const PAYLOAD_VERSION: &str = "4";
/// Set on a post a follower passed to the leader, so it is never passed on
/// again.
const FORWARDED_HEADER: &str = "x-redops-forwarded-by";
/// How long a follower waits for the leader's answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Firings remembered in memory; older ones are still found in the run store.
const REMEMBERED_FIRINGS: usize = 10_000;

/// Alertmanager's webhook payload (`version: "4"`), as documented in its
/// configuration reference under `<webhook_config>`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    #[serde(default)]
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: String,
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<AmAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Absent from Alertmanagers before 0.19: then derived from the labels.
    #[serde(default)]
    pub fingerprint: String,
}

impl AmAlert {
    fn alertname(&self) -> &str {
        self.labels.get("alertname").map(String::as_str).unwrap_or("")
    }

    fn fingerprint(&self) -> String {
        if !self.fingerprint.is_empty() {
            return self.fingerprint.clone();
        }
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (k, v) in &self.labels {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..8])
    }
}

/// What became of one posted alert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Started {
        run_id: String,
        route: usize,
        playbook: String,
        target: String,
        dry_run: bool,
    },
    /// This firing already ran (or was queued) as `run_id`.
    Duplicate {
        run_id: String,
    },
    /// The route ran on this target less than its cooldown ago.
    Cooldown {
        remaining_seconds: u64,
    },
    Resolved,
    Unmatched,
    /// Matched, and cannot run: why.
    Rejected {
        reason: String,
    },
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Started { .. } => "started",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Cooldown { .. } => "cooldown",
            Outcome::Resolved => "resolved",
            Outcome::Unmatched => "unmatched",
            Outcome::Rejected { .. } => "rejected",
        }
    }
}

/// The firings this instance queued, and when each route last ran on each
/// target.
#[derive(Default)]
struct Memory {
    firings: HashMap<String, String>,
    last_run: HashMap<(usize, String), Instant>,
}

struct Hook {
    routes: Vec<AlertmanagerRoute>,
    token: Option<Arc<str>>,
    runner: RunnerHandle,
    runs: Option<RunStore>,
    /// `[[target]]`s by their `host:port`, for a `{{ labels.instance }}`.
    addresses: Vec<(String, String)>,
    counters: Arc<Counters>,
    view: super::state::EngineView,
    memory: Mutex<Memory>,
    http: reqwest::Client,
}

/// What the endpoint needs from the engine.
pub struct AlertmanagerDeps {
    pub runner: RunnerHandle,
    pub runs: Option<RunStore>,
    pub view: super::state::EngineView,
}

/// The endpoint, with its own body limit: Alertmanager groups many alerts
/// into one post.
pub fn routes(config: &Config, deps: AlertmanagerDeps) -> Router {
    let addresses = config
        .targets
        .iter()
        .filter_map(|t| {
            Some((
                crate::redis::connect::address(&t.connection_info().ok()?),
                t.name.clone(),
            ))
        })
        .collect();
    let hook = Hook {
        routes: config.alertmanager.routes.clone(),
        token: config
            .api
            .token
            .as_ref()
            .filter(|t| !t.expose().is_empty())
            .map(|t| Arc::from(t.expose())),
        runner: deps.runner,
        runs: deps.runs,
        addresses,
        counters: deps.view.counters.clone(),
        view: deps.view,
        memory: Mutex::default(),
        http: reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .build()
            .unwrap_or_default(),
    };
    Router::new()
        .route("/api/v1/alertmanager", post(receive))
        .layer(DefaultBodyLimit::max(config.alertmanager.max_body_bytes))
        .with_state(Arc::new(hook))
}

async fn receive(State(hook): State<Arc<Hook>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = super::authorize(hook.token.as_deref(), &headers) {
        return r;
    }
    let payload: Payload = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not an Alertmanager webhook payload: {e}"),
            );
        }
    };
    if payload.version != PAYLOAD_VERSION {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "webhook payload version \"{}\" is not supported; redops reads version \"{PAYLOAD_VERSION}\"",
                payload.version
            ),
        );
    }
    if let Some(ledger) = &hook.runner.ha
        && !ledger.fence().holds()
    {
        return forward(&hook, ledger, &headers, body).await;
    }
    if payload.truncated_alerts > 0 {
        tracing::warn!(receiver = %payload.receiver, truncated = payload.truncated_alerts, "Alertmanager truncated the group: alerts beyond max_alerts were not sent and run nothing");
    }
    let mut started = Vec::new();
    let mut skipped = Vec::new();
    let mut unmatched = 0;
    for alert in &payload.alerts {
        let outcome = hook.consider(alert);
        hook.counters.alertmanager_alerts.inc([outcome.label()]);
        let fingerprint = alert.fingerprint();
        let entry = json!({
            "fingerprint": fingerprint,
            "alertname": alert.alertname(),
        });
        let mut entry = entry.as_object().cloned().unwrap_or_default();
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&outcome) {
            entry.extend(fields);
        }
        match &outcome {
            Outcome::Started { .. } => started.push(entry),
            Outcome::Unmatched => {
                tracing::debug!(alertname = alert.alertname(), %fingerprint, receiver = %payload.receiver, "Alertmanager alert matches no route; nothing runs");
                unmatched += 1;
                skipped.push(entry);
            }
            Outcome::Resolved => skipped.push(entry),
            Outcome::Duplicate { run_id } => {
                tracing::debug!(alertname = alert.alertname(), %fingerprint, run_id, "Alertmanager sent a firing again; its playbook already ran");
                skipped.push(entry);
            }
            Outcome::Cooldown { .. } | Outcome::Rejected { .. } => {
                tracing::info!(alertname = alert.alertname(), %fingerprint, outcome = ?outcome, "Alertmanager alert runs nothing");
                skipped.push(entry);
            }
        }
    }
    Json(json!({
        "received": payload.alerts.len(),
        "started": started,
        "skipped": skipped,
        "unmatched": unmatched,
    }))
    .into_response()
}

impl Hook {
    fn consider(&self, alert: &AmAlert) -> Outcome {
        if alert.status != "firing" {
            return Outcome::Resolved;
        }
        let Some(route) = self
            .routes
            .iter()
            .find(|r| crate::matcher::all_match(&r.matchers, &alert.labels))
        else {
            return Outcome::Unmatched;
        };
        let Some(starts_at) = parse_time(&alert.starts_at) else {
            return Outcome::Rejected {
                reason: format!("startsAt `{}` is not an RFC 3339 time", alert.starts_at),
            };
        };
        let vars: crate::template::Vars = [
            ("labels".to_owned(), crate::template::labels_value(&alert.labels)),
            (
                "annotations".to_owned(),
                crate::template::labels_value(&alert.annotations),
            ),
        ]
        .into();
        let rendered = match route.target.render(&vars) {
            Ok(rendered) => rendered,
            Err(e) => {
                return Outcome::Rejected {
                    reason: format!("route {}: target `{}`: {e}", route.number, route.target.source()),
                };
            }
        };
        let Some(target) = self.resolve_target(&rendered) else {
            return Outcome::Rejected {
                reason: format!(
                    "route {} names target `{rendered}`, which is neither a configured target nor a target's host:port; known: {}",
                    route.number,
                    self.runner.targets.join(", ")
                ),
            };
        };
        let fingerprint = alert.fingerprint();
        let firing = format!("{fingerprint}:{}:{}", ms(starts_at), route.playbook);
        let run_id = run_id_of(&firing);
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(run_id) = memory.firings.get(&firing) {
            return Outcome::Duplicate { run_id: run_id.clone() };
        }
        if let Some(runs) = &self.runs
            && let Ok(Some(_)) = runs.get(&run_id)
        {
            memory.firings.insert(firing, run_id.clone());
            return Outcome::Duplicate { run_id };
        }
        let key = (route.number, target.clone());
        if let (Some(cooldown), Some(last)) = (route.cooldown, memory.last_run.get(&key)) {
            let since = last.elapsed();
            if since < cooldown {
                return Outcome::Cooldown {
                    remaining_seconds: (cooldown - since).as_secs().max(1),
                };
            }
        }
        let request = RunRequest {
            invocation: Invocation {
                playbook: route.playbook.clone(),
                rule: format!("alertmanager/{}", alert.alertname()),
                target: target.clone(),
                params: route.params.clone(),
                alert: Some(to_alert(alert, &fingerprint, &target, starts_at)),
            },
            trigger: Some(Trigger::Alertmanager),
            run_id: Some(run_id.clone()),
            dry_run: route.dry_run,
        };
        let Some(requests) = self.runner.requests.upgrade() else {
            return Outcome::Rejected {
                reason: "the engine is stopping: not queued".into(),
            };
        };
        if requests.try_send(request).is_err() {
            self.counters
                .playbook_invocations_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Outcome::Rejected {
                reason: "the playbook runner's queue is full: not queued".into(),
            };
        }
        if memory.firings.len() >= REMEMBERED_FIRINGS {
            memory.firings.clear();
        }
        memory.firings.insert(firing, run_id.clone());
        memory.last_run.insert(key, Instant::now());
        tracing::info!(playbook = %route.playbook, %target, run_id, alertname = alert.alertname(), %fingerprint, route = route.number, "Playbook run asked for by Alertmanager");
        Outcome::Started {
            run_id,
            route: route.number,
            playbook: route.playbook.clone(),
            target,
            dry_run: route.dry_run,
        }
    }

    /// A configured target (or Sentinel group, cluster, or a group's node
    /// the engine knows) by name, or a `[[target]]` by its `host:port`.
    fn resolve_target(&self, rendered: &str) -> Option<String> {
        if self.runner.targets.iter().any(|t| t == rendered) || self.view.snapshot().targets.contains_key(rendered) {
            return Some(rendered.to_owned());
        }
        self.addresses
            .iter()
            .find(|(addr, _)| addr == rendered)
            .map(|(_, name)| name.clone())
    }
}

/// A follower passes the post to the leader and answers with the leader's
/// answer, so that an Alertmanager may post to any instance. With no leader
/// to ask: 503, which Alertmanager retries.
async fn forward(hook: &Hook, ledger: &crate::ha::Ledger, headers: &HeaderMap, body: Bytes) -> Response {
    let here = ledger.id();
    let unavailable = |why: String| {
        tracing::warn!(instance = here, "Alertmanager post not taken: {why}");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": format!("this instance (`{here}`) is an HA follower and {why}; Alertmanager retries") })),
        )
            .into_response()
    };
    if headers.contains_key(FORWARDED_HEADER) {
        return unavailable("the instance that passed this post on took it for the leader".into());
    }
    let (leader, addr) = match ledger.leader().await {
        Ok(Some((id, Some(addr)))) if id != here => (id, addr),
        Ok(Some((id, None))) if id != here => {
            return unavailable(format!("the leader `{id}` published no API address"));
        }
        Ok(_) => return unavailable("no instance leads right now".into()),
        Err(e) => return unavailable(format!("the lease store cannot say who leads ({e})")),
    };
    let mut request = hook
        .http
        .post(format!("http://{addr}/api/v1/alertmanager"))
        .header("content-type", "application/json")
        .header(FORWARDED_HEADER, here)
        .body(body);
    if let Some(auth) = headers.get("authorization") {
        request = request.header("authorization", auth);
    }
    match request.send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = answer.text().await.unwrap_or_default();
            tracing::debug!(leader, %addr, %status, "Alertmanager post passed to the HA leader");
            let mut value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "error": text }));
            if let Some(fields) = value.as_object_mut() {
                fields.insert("forwarded_to".into(), json!({ "leader": leader, "api": addr }));
            }
            (status, Json(value)).into_response()
        }
        Err(e) => unavailable(format!(
            "the leader `{leader}` at {addr} cannot be reached ({})",
            crate::secrets::redact(&e.to_string())
        )),
    }
}

/// One firing's run id: the same whenever Alertmanager sends it again.
fn run_id_of(firing: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("am-{}", hex::encode(&Sha256::digest(firing.as_bytes())[..8]))
}

fn parse_time(text: &str) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let nanos = u64::try_from(t.timestamp_nanos_opt()?).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

fn ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// The alert as a playbook's `alert` sees it: Alertmanager's labels, and
/// summary, description and runbook from its annotations.
fn to_alert(alert: &AmAlert, fingerprint: &str, target: &str, starts_at: SystemTime) -> Alert {
    let annotation = |k: &str| alert.annotations.get(k).filter(|v| !v.is_empty()).cloned();
    let severity = match alert.labels.get("severity").map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("critical" | "page") => Severity::Critical,
        Some("high" | "error") => Severity::High,
        Some("medium") => Severity::Medium,
        Some("info" | "none") => Severity::Info,
        _ => Severity::Warning,
    };
    Alert {
        fingerprint: format!("am-{fingerprint}"),
        rule: alert.alertname().to_owned(),
        target: target.to_owned(),
        severity,
        status: AlertStatus::Firing,
        labels: alert.labels.clone(),
        summary: annotation("summary").unwrap_or_else(|| alert.alertname().to_owned()),
        value: None,
        starts_at,
        ends_at: None,
        runbook: annotation("runbook_url"),
        description: annotation("description"),
        annotations: alert.annotations.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_firing_has_one_run_id_and_times_parse_with_offsets() {
        assert_eq!(run_id_of("a:1:p"), run_id_of("a:1:p"));
        assert_ne!(run_id_of("a:1:p"), run_id_of("a:2:p"));
        let utc = parse_time("2026-01-02T03:04:05.123456789Z").unwrap();
        let offset = parse_time("2026-01-02T05:04:05.123456789+02:00").unwrap();
        assert_eq!(utc, offset);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn a_missing_fingerprint_comes_from_the_labels() {
        let alert = |labels: &[(&str, &str)]| AmAlert {
            status: "firing".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            annotations: BTreeMap::new(),
            starts_at: String::new(),
            ends_at: String::new(),
            generator_url: String::new(),
            fingerprint: String::new(),
        };
        let a = alert(&[("alertname", "A"), ("instance", "x:6379")]);
        assert_eq!(
            a.fingerprint(),
            alert(&[("instance", "x:6379"), ("alertname", "A")]).fingerprint()
        );
        assert_ne!(a.fingerprint(), alert(&[("alertname", "A")]).fingerprint());
    }
}
