//! `GET /api/v1/sentinels`: each Sentinel group as its Sentinels see it —
//! master, replicas, Sentinels, quorum and the problems `redops sentinel
//! validate` would report. Asked of the Sentinels themselves, at most once
//! per refresh interval however many dashboards poll.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Mutex;

use super::Api;
use crate::config::SentinelGroupConfig;
use crate::sentinel::discovery::{Discoverer, GroupView};

/// One group's Sentinels and the last answer they gave.
struct Group {
    discoverer: Discoverer,
    last: Option<(Instant, SystemTime, GroupView)>,
}

/// The configured groups, each asked through its own kept connections.
#[derive(Clone, Default)]
pub struct SentinelGroups {
    groups: Arc<Vec<Mutex<Group>>>,
    refresh: Duration,
}

impl SentinelGroups {
    /// `refresh` bounds how often the Sentinels are asked: the sample
    /// interval is the natural choice, as the group source asks as often.
    pub fn new(groups: &[SentinelGroupConfig], timeout: Duration, refresh: Duration) -> Self {
        SentinelGroups {
            groups: Arc::new(
                groups
                    .iter()
                    .map(|g| {
                        Mutex::new(Group {
                            discoverer: Discoverer::new(g.clone(), timeout),
                            last: None,
                        })
                    })
                    .collect(),
            ),
            refresh,
        }
    }

    /// Each group's view, fresh or at most `refresh` old.
    async fn views(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::with_capacity(self.groups.len());
        for group in self.groups.iter() {
            let mut group = group.lock().await;
            let stale = group
                .last
                .as_ref()
                .is_none_or(|(at, _, _)| at.elapsed() >= self.refresh);
            if stale {
                let view = group.discoverer.discover().await;
                group.last = Some((Instant::now(), SystemTime::now(), view));
            }
            if let Some((_, checked_at, view)) = &group.last {
                out.push(render(view, *checked_at));
            }
        }
        out
    }
}

fn render(view: &GroupView, checked_at: SystemTime) -> serde_json::Value {
    let mut value = serde_json::to_value(view).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.insert("problems".into(), json!(view.problems()));
        fields.insert("sentinels_reachable".into(), json!(view.sentinels_reachable()));
        fields.insert(
            "checked_at".into(),
            json!(humantime::format_rfc3339_millis(checked_at).to_string()),
        );
    }
    value
}

pub(super) async fn handler(State(api): State<Api>) -> Response {
    Json(api.sentinels.views().await).into_response()
}
