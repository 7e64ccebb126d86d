//! `GET /api/v1/history?target=T&metric=M&range=1h|6h|24h|7d|30d|90d`: one
//! metric of one target as chart points `[[unix_ms, value], ...]`, oldest
//! first, at most [`MAX_POINTS`] of them. The last hour comes from raw
//! samples; longer ranges from the 1-minute and hourly rollups, averaged
//! into wider buckets when there would be more points than a chart can show.
//! A read: no token needed.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::history::rollup::regroup;
use crate::history::{HistoryStore, METRICS};

/// More points than a chart has pixels only slows the page.
pub const MAX_POINTS: usize = 500;

/// The ranges a chart may ask for, with their length.
const RANGES: &[(&str, i64)] = &[
    ("1h", 3_600_000),
    ("6h", 6 * 3_600_000),
    ("24h", 24 * 3_600_000),
    ("7d", 7 * 86_400_000),
    ("30d", 30 * 86_400_000),
    ("90d", 90 * 86_400_000),
];

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    target: Option<String>,
    metric: Option<String>,
    range: Option<String>,
}

/// The history sub-router, with its own state; merge it into the API.
pub fn routes(history: HistoryStore) -> Router {
    Router::new()
        .route("/api/v1/history", get(history_points))
        .with_state(history)
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn history_points(
    State(history): State<HistoryStore>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(format!("{e}; the query is ?target=T&metric=M&range=1h")),
    };
    let Some(target) = q.target.filter(|t| !t.is_empty()) else {
        return bad_request("`target` is required: ?target=T&metric=M&range=1h".into());
    };
    let Some(metric) = q.metric.filter(|m| METRICS.contains(&m.as_str())) else {
        return bad_request(format!(
            "`metric` must be one of the metrics kept in history: {}",
            METRICS.join(", ")
        ));
    };
    let range = q.range.unwrap_or_else(|| "1h".into());
    let Some(&(_, length_ms)) = RANGES.iter().find(|(name, _)| *name == range) else {
        let names: Vec<&str> = RANGES.iter().map(|(n, _)| *n).collect();
        return bad_request(format!("`range` must be one of {}", names.join(", ")));
    };
    let to_ms = crate::history::now_ms() + 1;
    let (t, m) = (target.clone(), metric.clone());
    let read = tokio::task::spawn_blocking(move || history.series(&t, &m, to_ms - length_ms, to_ms)).await;
    let buckets = match read {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "History read failed");
            let body = Json(json!({ "error": format!("cannot read the history: {e}") }));
            return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "History read panicked");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let points = downsample(buckets, length_ms);
    Json(json!({ "target": target, "metric": metric, "range": range, "points": points })).into_response()
}

/// `[unix_ms, avg]` pairs, averaged into `length / MAX_POINTS` wide buckets
/// when there are more than [`MAX_POINTS`].
fn downsample(buckets: Vec<crate::history::rollup::Bucket>, length_ms: i64) -> Vec<(i64, f64)> {
    let buckets = if buckets.len() > MAX_POINTS {
        // One more than the exact quotient: a range rarely starts on a
        // bucket boundary, so it touches one bucket more.
        let width = length_ms / (MAX_POINTS as i64 - 1) + 1;
        regroup(buckets, width)
    } else {
        buckets
    };
    buckets.into_iter().map(|b| (b.at_ms, b.avg)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::rollup::Bucket;

    #[test]
    fn a_week_of_minutes_becomes_at_most_500_points_with_the_same_mean() {
        let week = 7 * 86_400_000;
        let start = 1_800_000_000_000;
        let minutes: Vec<Bucket> = (0..10_080)
            .map(|i| Bucket {
                count: 12,
                ..Bucket::sample(start + i * 60_000, i as f64)
            })
            .collect();
        let points = downsample(minutes, week);
        assert!(points.len() <= MAX_POINTS, "{}", points.len());
        assert!(points.len() > MAX_POINTS - 10, "{}", points.len());
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0));
        let first_width = points[1].0 - points[0].0;
        assert!(first_width > 20 * 60_000);
    }

    #[test]
    fn an_hour_of_raw_samples_is_returned_as_is() {
        let raw: Vec<Bucket> = (0..720).map(|i| Bucket::sample(i * 5_000, 1.0)).collect();
        assert_eq!(downsample(raw[..400].to_vec(), 3_600_000).len(), 400);
        assert!(downsample(raw, 3_600_000).len() <= MAX_POINTS);
    }
}
