//! `http.get(url, #{timeout, headers})` and `http.post(url, body, #{...})`:
//! a playbook calls a service (a cache-warming hook, a status page).
//!
//! Calls block the run's thread, with a timeout capped by the run's deadline
//! and a cap on the response's size. In a dry run a GET is sent (it only
//! reads) and a POST is recorded, not sent.

use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, Map};

use crate::playbooks::context;

#[derive(Debug, Clone, Copy)]
pub struct HttpApi;

type RhaiResult = Result<Dynamic, Box<EvalAltResult>>;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BYTES: usize = 1024 * 1024;

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<HttpApi>("Http");
    engine.register_fn("get", |_: &mut HttpApi, url: &str| call("GET", url, None, &Map::new()));
    engine.register_fn("get", |_: &mut HttpApi, url: &str, options: Map| {
        call("GET", url, None, &options)
    });
    engine.register_fn("post", |_: &mut HttpApi, url: &str, body: Dynamic| {
        call("POST", url, Some(body), &Map::new())
    });
    engine.register_fn("post", |_: &mut HttpApi, url: &str, body: Dynamic, options: Map| {
        call("POST", url, Some(body), &options)
    });
}

struct Request {
    method: &'static str,
    url: String,
    body: Option<(String, &'static str)>,
    headers: Vec<(String, String)>,
    timeout: Duration,
    max_bytes: usize,
}

struct Response {
    status: u16,
    body: String,
    headers: Map,
}

fn call(method: &'static str, url: &str, body: Option<Dynamic>, options: &Map) -> RhaiResult {
    let secs = |v: &Dynamic| v.as_float().ok().or_else(|| v.as_int().ok().map(|i| i as f64));
    let timeout = options
        .get("timeout")
        .and_then(secs)
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_TIMEOUT);
    let max_bytes = options
        .get("max_bytes")
        .and_then(|v| v.as_int().ok())
        .filter(|n| *n > 0)
        .map_or(DEFAULT_MAX_BYTES, |n| n as usize);
    let headers = options
        .get("headers")
        .and_then(|h| h.read_lock::<Map>().map(|m| m.clone()))
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // A map or array is sent as JSON, anything else as text.
    let body = match body {
        None => None,
        Some(b) if b.is_map() || b.is_array() => Some((
            rhai::serde::from_dynamic::<serde_json::Value>(&b)
                .map_err(|e| format!("http.post: the body cannot be sent as JSON: {e}"))?
                .to_string(),
            "application/json",
        )),
        Some(b) => Some((b.to_string(), "text/plain; charset=utf-8")),
    };
    let detail = format!("{method} {url}");
    let (dry_run, scripted, remaining) =
        context::with_run(|run| (run.ctx.dry_run, run.ctx.scripted.is_some(), run.remaining()))?;
    if dry_run && method != "GET" {
        record(detail, true, "not sent (dry run)".into())?;
        return Ok(response_map(Response {
            status: 0,
            body: String::new(),
            headers: Map::new(),
        }));
    }
    if scripted {
        // `redops test` never reaches the network.
        record(detail, true, "not sent (redops test)".into())?;
        return Ok(response_map(Response {
            status: 200,
            body: String::new(),
            headers: Map::new(),
        }));
    }
    let request = Request {
        method,
        url: url.to_owned(),
        body,
        headers,
        timeout: timeout.min(remaining),
        max_bytes,
    };
    match send(request) {
        Ok(response) => {
            record(detail, false, format!("{}", response.status))?;
            Ok(response_map(response))
        }
        Err(error) => {
            let error = crate::secrets::redact(&error);
            record(detail, false, format!("failed: {error}"))?;
            Err(format!("http.{}: {url}: {error}", method.to_ascii_lowercase()).into())
        }
    }
}

fn record(detail: String, dry_run: bool, outcome: String) -> Result<(), Box<EvalAltResult>> {
    context::with_run(|run| run.record("http", detail, dry_run, outcome))?;
    Ok(())
}

fn response_map(r: Response) -> Dynamic {
    let mut m = Map::new();
    m.insert("status".into(), (r.status as i64).into());
    m.insert("body".into(), r.body.into());
    m.insert("headers".into(), r.headers.into());
    m.into()
}

/// Sends on a thread of its own with a runtime of its own: the run's thread
/// is a blocking thread of the engine's runtime, where `block_on` would panic.
fn send(request: Request) -> Result<Response, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start an HTTP client: {e}"))?;
            runtime.block_on(send_async(&request))
        })
        .join()
        .unwrap_or_else(|_| Err("the HTTP client panicked".into()))
    })
}

async fn send_async(r: &Request) -> Result<Response, String> {
    let client = reqwest::Client::builder()
        .timeout(r.timeout)
        .connect_timeout(r.timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut builder = match r.method {
        "POST" => client.post(&r.url),
        _ => client.get(&r.url),
    };
    for (k, v) in &r.headers {
        builder = builder.header(k, v);
    }
    if let Some((body, content_type)) = &r.body {
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, *content_type)
            .body(body.clone());
    }
    let timed_out = || format!("no complete response within {:?}", r.timeout);
    let work = async {
        let mut response = builder.send().await.map_err(|e| describe(&e, r))?;
        let status = response.status().as_u16();
        let headers: Map = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().into(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
                )
            })
            .collect();
        if response.content_length().is_some_and(|n| n as usize > r.max_bytes) {
            return Err(too_large(r.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e, r))? {
            if body.len() + chunk.len() > r.max_bytes {
                return Err(too_large(r.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            headers,
        })
    };
    // reqwest's own timeout covers the whole exchange; this one is a backstop.
    tokio::time::timeout(r.timeout + Duration::from_millis(100), work)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

fn describe(e: &reqwest::Error, r: &Request) -> String {
    if e.is_timeout() {
        format!("no complete response within {:?} (timed out)", r.timeout)
    } else {
        // The source chain says why (refused, DNS, TLS); the top level rarely does.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }
}

fn too_large(max: usize) -> String {
    format!("the response is larger than the {max}-byte cap (set `max_bytes` in the options to raise it)")
}
