//! Playbook runs: the stored runs with their audit, and runs asked for by
//! hand (`POST /api/v1/playbooks/{name}/run`), which go to the engine's own
//! runner so that they share its limits, its one-run-per-target rule and its
//! run store. Under `[ha]` only the leader takes them: a follower answers
//! 409 naming the leader (and its API address, when it published one), so
//! that a caller asks there instead of running a playbook nobody fences.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Api, error, unavailable};
use crate::invocation::Invocation;
use crate::playbooks::PlaybookSet;
use crate::playbooks::runner::{RunRequest, new_run_id};
use crate::playbooks::runs::Trigger;

/// Runs listed when `?limit=` is not given.
const DEFAULT_LIMIT: usize = 50;
/// The most `?limit=` may ask for: the list is for people and dashboards.
const MAX_LIMIT: usize = 1000;

/// How the API reaches the engine's playbook runner.
#[derive(Clone)]
pub struct RunnerHandle {
    /// The live set, swapped on reload, to answer 404 for an unknown name.
    pub playbooks: Arc<RwLock<PlaybookSet>>,
    /// Weak, so the API never keeps the runner alive: the engine stops it
    /// by dropping its own sender, and the API then answers 503.
    pub requests: mpsc::WeakSender<RunRequest>,
    /// Configured targets and Sentinel groups; a group's nodes are known
    /// from the engine view once sampled.
    pub targets: Vec<String>,
    /// Under `[ha]`: whether this instance leads, and who does.
    pub ha: Option<crate::ha::Ledger>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<usize>,
}

/// The newest runs first, without their audit (`audit_entries` counts it;
/// `GET /api/v1/runs/{id}` has it).
pub(super) async fn list(State(api): State<Api>, query: Result<Query<ListQuery>, QueryRejection>) -> Response {
    let limit = match query {
        Ok(Query(q)) => q.limit.unwrap_or(DEFAULT_LIMIT),
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if limit == 0 || limit > MAX_LIMIT {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
        );
    }
    let Some(runs) = &api.runs else {
        return unavailable("the run store");
    };
    let follower = follower_headers(&api).await;
    match runs.list(limit) {
        Ok(rows) => {
            let rows: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|row| {
                    let mut value = serde_json::to_value(row).unwrap_or_default();
                    if let Some(fields) = value.as_object_mut() {
                        let entries = fields
                            .remove("audit")
                            .and_then(|a| a.as_array().map(Vec::len))
                            .unwrap_or(0);
                        fields.insert("audit_entries".into(), json!(entries));
                    }
                    value
                })
                .collect();
            (follower, Json(rows)).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the runs: {e}")),
    }
}

/// Under `[ha]`, on a follower: `x-redops-ha-leader` (and
/// `x-redops-ha-leader-api` when it published one), since runs are
/// recorded where they ran, on the leader. Empty elsewhere.
async fn follower_headers(api: &Api) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(ledger) = api.runner.as_ref().and_then(|r| r.ha.as_ref()) else {
        return headers;
    };
    if ledger.fence().holds() {
        return headers;
    }
    if let Ok(Some((id, addr))) = ledger.leader().await
        && id != ledger.id()
    {
        for (name, value) in [("x-redops-ha-leader", Some(id)), ("x-redops-ha-leader-api", addr)] {
            if let Some(value) = value.and_then(|v| v.parse().ok()) {
                headers.insert(name, value);
            }
        }
    }
    headers
}

/// One run with its audit of side-effecting calls.
pub(super) async fn one(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let Some(runs) = &api.runs else {
        return unavailable("the run store");
    };
    match runs.get(&id) {
        Ok(Some(row)) => Json(row).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no run `{id}`; a run just asked for appears when it starts; see GET /api/v1/runs"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the run: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunBody {
    target: String,
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    /// Record side effects instead of performing them.
    #[serde(default)]
    dry_run: bool,
}

/// Queues a run of a playbook and answers 202 with its id at once: a
/// playbook may take minutes.
pub(super) async fn start(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RunBody>, JsonRejection>,
) -> Response {
    if let Err(r) = api.authorize(&headers) {
        return r;
    }
    let body = match body {
        Ok(Json(b)) => b,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let Some(runner) = &api.runner else {
        return unavailable("the playbook runner");
    };
    if let Err(r) = check_names(&api, runner, &name, &body.target) {
        return r;
    }
    if let Some(ledger) = &runner.ha
        && !ledger.fence().holds()
    {
        return not_the_leader(ledger, &name).await;
    }
    let params = match toml_params(body.params) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let run_id = new_run_id();
    let request = RunRequest {
        invocation: Invocation {
            playbook: name.clone(),
            rule: String::new(),
            target: body.target.clone(),
            params,
            alert: None,
        },
        trigger: Some(Trigger::Api),
        run_id: Some(run_id.clone()),
        dry_run: body.dry_run,
    };
    let Some(requests) = runner.requests.upgrade() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine is stopping: the run was not queued; ask again once it is back",
        );
    };
    if requests.try_send(request).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the playbook runner's queue is full: the run was not queued; try again in a minute",
        );
    }
    tracing::info!(playbook = %name, target = %body.target, run_id, dry_run = body.dry_run, "Playbook run asked for through the API");
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "run_id": run_id,
            "playbook": name,
            "target": body.target,
            "dry_run": body.dry_run,
            "url": format!("/api/v1/runs/{run_id}"),
        })),
    )
        .into_response()
}

/// 409 from a follower: the run goes to the leader, which the answer names.
async fn not_the_leader(ledger: &crate::ha::Ledger, playbook: &str) -> Response {
    let here = ledger.id();
    let (message, leader, api) = match ledger.leader().await {
        Ok(Some((id, api))) if id != here => {
            let at = api
                .as_deref()
                .map(|a| format!(" (API at http://{a}; POST /api/v1/playbooks/{playbook}/run there)"))
                .unwrap_or_default();
            (
                format!("this instance (`{here}`) is an HA follower: playbook runs go to the leader, `{id}`{at}"),
                Some(id),
                api,
            )
        }
        Ok(_) => (
            format!(
                "this instance (`{here}`) does not hold the HA lease and no other instance does right now: \
                 nothing runs playbooks until one leads; ask again in a few seconds"
            ),
            None,
            None,
        ),
        Err(e) => (
            format!(
                "this instance (`{here}`) is not the HA leader, and the lease store cannot say who is ({e}); \
                 ask the other instances"
            ),
            None,
            None,
        ),
    };
    tracing::info!(
        playbook,
        leader = leader.as_deref().unwrap_or("-"),
        "Playbook run refused: not the HA leader"
    );
    (
        StatusCode::CONFLICT,
        Json(json!({ "error": message, "leader": leader, "leader_api": api })),
    )
        .into_response()
}

#[allow(clippy::result_large_err)] // a rejected request is the rare path
fn check_names(api: &Api, runner: &RunnerHandle, playbook: &str, target: &str) -> Result<(), Response> {
    let playbooks = runner.playbooks.read().unwrap_or_else(|e| e.into_inner());
    if playbooks.get(playbook).is_none() {
        let mut known = playbooks.names();
        known.sort_unstable();
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no playbook named `{playbook}`; known: {}", known.join(", ")),
        ));
    }
    let known_target = runner.targets.iter().any(|t| t == target) || api.view.snapshot().targets.contains_key(target);
    if !known_target {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "no target named `{target}`; known: {} (and `group/host:port` for a node of a Sentinel group)",
                runner.targets.join(", ")
            ),
        ));
    }
    Ok(())
}

/// JSON params as the TOML values playbooks get from rules and the CLI.
fn toml_params(params: serde_json::Map<String, serde_json::Value>) -> Result<BTreeMap<String, toml::Value>, String> {
    params
        .into_iter()
        .map(|(k, v)| {
            toml::Value::try_from(&v)
                .map(|t| (k.clone(), t))
                .map_err(|e| format!("param `{k}` = {v} cannot be a playbook parameter ({e}); null is not allowed"))
        })
        .collect()
}
