//! `GET /metrics`, encoded by the Prometheus project's `prometheus-client`:
//! redops's own counters ([`engine`]), every target's last sample under
//! redis_exporter's names where it has the metric ([`sampled`], [`names`]),
//! and the standard `process_*` families ([`process`]).
//!
//! The text format (0.0.4) by default, which `promtool check metrics` reads;
//! OpenMetrics to a scraper that asks for it in `Accept`, as Prometheus
//! does. Every family is encoded per scrape from a snapshot: the values live
//! in the engine (`telemetry`, the view of samples), not in a registry.

mod engine;
mod names;
mod process;
mod sampled;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{
    CounterValueEncoder, EncodeCounterValue, EncodeGaugeValue, GaugeValueEncoder, prometheus_text, text,
};
use prometheus_client::registry::Registry;

use super::Api;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(super) async fn handler(State(api): State<Api>, headers: HeaderMap) -> Response {
    let registry = registry(&api);
    let openmetrics = wants_openmetrics(&headers);
    let mut body = String::new();
    let encoded = if openmetrics {
        text::encode(&mut body, &registry)
    } else {
        prometheus_text::encode(&mut body, &registry)
    };
    match encoded {
        Ok(()) => {
            let content_type = if openmetrics {
                OPENMETRICS
            } else {
                prometheus_text::CONTENT_TYPE
            };
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(_) => super::error(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed"),
    }
}

/// A registry of this scrape's families.
fn registry(api: &Api) -> Registry {
    let snapshot = api.view.snapshot();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(engine::EngineFamilies::gather(api, &snapshot)));
    registry.register_collector(Box::new(sampled::SampledFamilies::new(snapshot.targets)));
    registry.register_collector(Box::new(process::ProcessFamilies));
    registry
}

/// Prometheus asks for OpenMetrics first (`application/openmetrics-text;
/// version=1.0.0;q=0.5,...,text/plain;version=0.0.4;q=0.3`); curl and
/// promtool users get the text format.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            parts.next() == Some("application/openmetrics-text") && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

/// A sampled value: a whole number is written as one (`3`, not `3.0`), so
/// counts read as counts.
#[derive(Debug, Clone, Copy)]
struct Number(f64);

/// Whole numbers up to 2^53 are exact in an f64.
const EXACT: f64 = 9_007_199_254_740_992.0;

impl EncodeGaugeValue for Number {
    fn encode(&self, encoder: &mut GaugeValueEncoder) -> Result<(), std::fmt::Error> {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() <= EXACT {
            EncodeGaugeValue::encode(&(v as i64), encoder)
        } else {
            EncodeGaugeValue::encode(&v, encoder)
        }
    }
}

impl EncodeCounterValue for Number {
    fn encode(&self, encoder: &mut CounterValueEncoder) -> Result<(), std::fmt::Error> {
        let v = self.0;
        if v.fract() == 0.0 && (0.0..=EXACT).contains(&v) {
            EncodeCounterValue::encode(&(v as u64), encoder)
        } else {
            EncodeCounterValue::encode(&v, encoder)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert!(wants_openmetrics(&accept(
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        )));
        assert!(!wants_openmetrics(&accept("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(&accept("*/*")));
        assert!(!wants_openmetrics(&accept("application/openmetrics-text; q=0")));
        assert!(!wants_openmetrics(&HeaderMap::new()));
    }
}
