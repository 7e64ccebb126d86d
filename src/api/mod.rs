//! The HTTP API (axum): health, Prometheus metrics, alerts, silences,
//! targets, playbook runs, backups, Sentinel groups, and the dashboard at
//! `/`. Reads are open on the bind address (loopback by default); anything
//! that changes state needs the bearer token, and redops refuses to listen
//! beyond loopback without one.

pub mod alertmanager;
pub mod dashboard;
pub mod history;
pub mod metrics;
pub mod runs;
pub mod sentinels;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::alerts::store::{AlertStore, now_ms};
use crate::backup::Catalog;
use crate::config::ApiConfig;
use crate::matcher::Matcher;
use crate::playbooks::runs::RunStore;
use crate::status::Status;
use state::EngineView;

/// Everything the API reads and writes, handed over by the engine in one
/// place. The optional parts are absent when the engine runs without them
/// (tests, or a state store that could not be opened); their endpoints
/// then answer 503 saying so.
pub struct ApiDeps {
    pub config: ApiConfig,
    pub view: EngineView,
    pub alerts: AlertStore,
    pub outbox: Option<crate::outbox::Outbox>,
    /// The notifier's delivery counts, by receiver and outcome.
    pub deliveries: Arc<crate::telemetry::CounterVec<2>>,
    pub runs: Option<RunStore>,
    pub backups: Option<Catalog>,
    /// Where `POST /api/v1/playbooks/{name}/run` hands its runs.
    pub runner: Option<runs::RunnerHandle>,
    pub sentinels: sentinels::SentinelGroups,
}

#[derive(Clone)]
struct Api {
    view: EngineView,
    alerts: AlertStore,
    outbox: Option<crate::outbox::Outbox>,
    deliveries: Arc<crate::telemetry::CounterVec<2>>,
    runs: Option<RunStore>,
    backups: Option<Catalog>,
    runner: Option<runs::RunnerHandle>,
    sentinels: sentinels::SentinelGroups,
    token: Option<Arc<str>>,
}

/// A JSON error a human can act on.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// 503 for a part of the state store this engine runs without.
fn unavailable(what: &str) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{what} is not available in this engine: its state store could not be opened (see the engine log)"),
    )
}

pub fn router(deps: ApiDeps) -> Router {
    let config = deps.config;
    let api = Api {
        view: deps.view,
        alerts: deps.alerts,
        outbox: deps.outbox,
        deliveries: deps.deliveries,
        runs: deps.runs,
        backups: deps.backups,
        runner: deps.runner,
        sentinels: deps.sentinels,
        token: config
            .token
            .as_ref()
            .filter(|t| !t.expose().is_empty())
            .map(|t| Arc::from(t.expose())),
    };
    Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard.css", get(dashboard::stylesheet))
        .route("/dashboard.js", get(dashboard::script))
        .route("/health", get(health))
        .route("/health/redis", get(health_redis))
        .route("/metrics", get(metrics::handler))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/alerts", get(alerts_list))
        .route("/api/v1/alerts/{id}/ack", post(ack))
        .route("/api/v1/silences", get(silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/{id}", get(runs::one))
        .route("/api/v1/playbooks/{name}/run", post(runs::start))
        .route("/api/v1/backups", get(backups))
        .route("/api/v1/sentinels", get(sentinels::handler))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint; see docs/api.md") })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(api)
}

/// Serves until `shutdown`.
pub async fn serve(addr: SocketAddr, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "API listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

impl Api {
    #[allow(clippy::result_large_err)] // a rejected request is the rare path
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Response> {
        authorize(self.token.as_deref(), headers)
    }
}

/// Write endpoints: 401 without the right bearer token, 403 when no token
/// is configured at all (writes are then off).
#[allow(clippy::result_large_err)] // a rejected request is the rare path
fn authorize(token: Option<&str>, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "write endpoints are off: set [api] token = \"${REDOPS_API_TOKEN}\" to enable them",
        ));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(error(StatusCode::UNAUTHORIZED, "wrong bearer token")),
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>`",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(api): State<Api>) -> Response {
    let snapshot = api.view.snapshot();
    let down: Vec<&String> = snapshot.targets.iter().filter(|(_, t)| !t.up).map(|(n, _)| n).collect();
    let body = json!({
        "status": if down.is_empty() { "ok" } else { "degraded" },
        "uptime_seconds": snapshot.uptime_seconds,
        "targets": snapshot.targets.len(),
        "targets_down": down,
        "config_last_reload_successful": snapshot.reload_ok,
    });
    // The engine itself is live whatever the targets do: 200.
    Json(body).into_response()
}

/// The guide's thresholds per target: ok, warning or critical; 503 when
/// any target is critical or down.
async fn health_redis(State(api): State<Api>) -> Response {
    let snapshot = api.view.snapshot();
    let mut worst = Status::Ok;
    let mut targets = serde_json::Map::new();
    for (name, t) in &snapshot.targets {
        let checks = state::guide_checks(t);
        let status = if !t.up {
            Status::Critical
        } else {
            Status::worst(checks.iter().map(|c| c.status))
        };
        worst = worst.max(status);
        targets.insert(name.clone(), json!({ "status": status, "up": t.up, "checks": checks }));
    }
    let code = if worst == Status::Critical {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(json!({ "status": worst, "targets": targets }))).into_response()
}

async fn targets(State(api): State<Api>) -> Response {
    Json(api.view.snapshot().targets).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupsQuery {
    target: Option<String>,
}

/// The backup catalog, newest first; `?target=` narrows it.
async fn backups(State(api): State<Api>, query: Result<Query<BackupsQuery>, QueryRejection>) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let Some(catalog) = &api.backups else {
        return unavailable("the backup catalog");
    };
    match catalog.list(None, query.target.as_deref()) {
        Ok(rows) => Json(rows.iter().map(|r| r.to_json()).collect::<Vec<_>>()).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the backup catalog: {e}"),
        ),
    }
}

/// `?all=true`: resolved alerts and expired silences too.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllQuery {
    #[serde(default)]
    all: bool,
}

#[allow(clippy::result_large_err)] // a rejected request is the rare path
fn all_of(query: Result<Query<AllQuery>, QueryRejection>) -> Result<bool, Response> {
    match query {
        Ok(Query(q)) => Ok(q.all),
        Err(rejection) => Err(error(StatusCode::BAD_REQUEST, rejection.body_text())),
    }
}

async fn alerts_list(State(api): State<Api>, query: Result<Query<AllQuery>, QueryRejection>) -> Response {
    let all = match all_of(query) {
        Ok(all) => all,
        Err(r) => return r,
    };
    match api.alerts.list(all) {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read alerts: {e}")),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

async fn ack(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<AckBody>>,
) -> Response {
    if let Err(r) = api.authorize(&headers) {
        return r;
    }
    let body = body.map(|b| b.0).unwrap_or_default();
    let by = body.by.unwrap_or_else(|| "api".into());
    match api.alerts.ack(&id, &by, body.comment.as_deref()) {
        Ok(Ok(fingerprint)) => Json(json!({ "acknowledged": fingerprint, "by": by })).into_response(),
        Ok(Err(why)) => error(StatusCode::NOT_FOUND, why),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot record the ack: {e}")),
    }
}

async fn silences(State(api): State<Api>, query: Result<Query<AllQuery>, QueryRejection>) -> Response {
    let all = match all_of(query) {
        Ok(all) => all,
        Err(r) => return r,
    };
    match api.alerts.silences(all) {
        Ok(list) => Json(list).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read silences: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    /// `label=value`, `label!=value`, `label=~re`, `label!~re`.
    matchers: Vec<String>,
    /// e.g. "2h".
    duration: String,
    comment: String,
    #[serde(default)]
    by: Option<String>,
}

async fn add_silence(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<SilenceBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = api.authorize(&headers) {
        return r;
    }
    let body = match body {
        Ok(Json(b)) => b,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let matchers: Result<Vec<Matcher>, String> = body.matchers.iter().map(|m| Matcher::parse(m)).collect();
    let matchers = match matchers {
        Ok(m) if !m.is_empty() => m,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "a silence needs at least one matcher, e.g. \"rule=memory_warning\"",
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let duration = match crate::config::duration::parse(&body.duration) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let start = now_ms();
    let by = body.by.unwrap_or_else(|| "api".into());
    match api.alerts.add_silence(
        &matchers,
        start,
        start + duration.as_millis() as i64,
        &by,
        &body.comment,
    ) {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot store the silence: {e}"),
        ),
    }
}

async fn expire_silence(State(api): State<Api>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    if let Err(r) = api.authorize(&headers) {
        return r;
    }
    match api.alerts.expire_silence(id) {
        Ok(true) => Json(json!({ "expired": id })).into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no active silence {id}")),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot expire the silence: {e}"),
        ),
    }
}
