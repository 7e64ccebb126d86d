//! `http.get(url, #{timeout, headers})` and `http.post(url, body, #{...})`:
//! a playbook calls a service (a cache-warming hook, a status page).
//!
//! Calls block the run's thread, with a timeout capped by the run's deadline
//! and a cap on the response's size. In a dry run neither is sent: a GET can
//! do as much as a POST to a service that acts on it, so both are recorded.
//!
//! Under `[playbooks] http_allow` a request goes only to the hosts it names,
//! and a redirect is followed only to them; without it, any host may be
//! called but a redirect is followed only to the same host. The decision is
//! the playbook command policy's, taken here where the request is sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use rhai::{Dynamic, Engine, EvalAltResult, Map};

use crate::playbooks::context;
use crate::policy::{HttpAllow, show_host};

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
    url: Url,
    http_allow: Option<HttpAllow>,
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
    let (dry_run, scripted, remaining, http_allow) = context::with_run(|run| {
        (
            run.ctx.dry_run,
            run.ctx.scripted.is_some(),
            run.remaining(),
            run.ctx.host.http_allow.clone(),
        )
    })?;
    let call_name = format!("http.{}", method.to_ascii_lowercase());
    let parsed = match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
        _ => {
            let error = crate::secrets::redact(&format!("`{url}` is not an http:// or https:// URL with a host"));
            record(detail, false, format!("failed: {error}"))?;
            return Err(format!("{call_name}: {error}").into());
        }
    };
    if let Some(allow) = &http_allow
        && let Err(denied) = check_host(allow, &parsed)
    {
        record(detail, false, format!("denied: {denied}"))?;
        return Err(format!("{call_name}: {denied}").into());
    }
    if dry_run {
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
    context::fence("http", &detail)?;
    let request = Request {
        method,
        url: parsed,
        http_allow,
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
        Err(Failure::Denied(denied)) => {
            record(detail, false, format!("denied: {denied}"))?;
            Err(format!("{call_name}: {url}: {denied}").into())
        }
        Err(Failure::Failed(error)) => {
            let error = crate::secrets::redact(&error);
            record(detail, false, format!("failed: {error}"))?;
            Err(format!("{call_name}: {url}: {error}").into())
        }
    }
}

/// The denial of a request to a host `http_allow` does not name.
fn check_host(allow: &HttpAllow, url: &Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default();
    if allow.allows(host, port) {
        return Ok(());
    }
    let shown = show_host(host, port);
    Err(format!(
        "`{shown}` is denied by the playbook command policy: [playbooks] http_allow does not name it (to allow \
         it, add \"{}\" or \"{shown}\" to [playbooks] http_allow)",
        host.to_ascii_lowercase()
    ))
}

/// Where a redirect from `from` to `to` may be followed: to a host
/// `http_allow` names, or without the list to the same host only.
fn check_redirect(allow: Option<&HttpAllow>, from: &Url, to: &Url) -> Result<(), String> {
    let host = to.host_str().unwrap_or_default();
    let port = to.port_or_known_default();
    let shown = show_host(host, port);
    match allow {
        Some(allow) => check_host(allow, to).map_err(|_| {
            format!(
                "the redirect to `{shown}` is denied by the playbook command policy: [playbooks] http_allow does \
                 not name it (to follow it, add \"{}\" or \"{shown}\" to [playbooks] http_allow)",
                host.to_ascii_lowercase()
            )
        }),
        None if from.host_str().is_some_and(|h| h.eq_ignore_ascii_case(host)) => Ok(()),
        None => Err(format!(
            "the redirect to another host, `{shown}`, is denied by the playbook command policy: without \
             [playbooks] http_allow only redirects to the same host are followed (to follow it, name the host \
             in [playbooks] http_allow)"
        )),
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

enum Failure {
    /// A redirect the policy would not follow.
    Denied(String),
    Failed(String),
}

/// Redirects followed at most, as reqwest's default policy does.
const MAX_REDIRECTS: usize = 10;

/// Sends on a thread of its own with a runtime of its own: the run's thread
/// is a blocking thread of the engine's runtime, where `block_on` would panic.
fn send(request: Request) -> Result<Response, Failure> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::Failed(format!("cannot start an HTTP client: {e}")))?;
            runtime.block_on(send_async(&request))
        })
        .join()
        .unwrap_or_else(|_| Err(Failure::Failed("the HTTP client panicked".into())))
    })
}

async fn send_async(r: &Request) -> Result<Response, Failure> {
    // The redirect policy says why it stopped here; reqwest's own error
    // would only say that following failed.
    let denied: Arc<Mutex<Option<String>>> = Arc::default();
    let redirects = {
        let (allow, from, denied) = (r.http_allow.clone(), r.url.clone(), denied.clone());
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match check_redirect(allow.as_ref(), &from, attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(why) => {
                    *denied.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                    attempt.error(why)
                }
            }
        })
    };
    let client = reqwest::Client::builder()
        .timeout(r.timeout)
        .connect_timeout(r.timeout)
        .redirect(redirects)
        .build()
        .map_err(|e| Failure::Failed(format!("cannot build an HTTP client: {e}")))?;
    let mut builder = match r.method {
        "POST" => client.post(r.url.clone()),
        _ => client.get(r.url.clone()),
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
        let mut response =
            builder
                .send()
                .await
                .map_err(|e| match denied.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    Some(why) => Failure::Denied(why),
                    None => Failure::Failed(describe(&e, r)),
                })?;
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
            return Err(Failure::Failed(too_large(r.max_bytes)));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| Failure::Failed(describe(&e, r)))? {
            if body.len() + chunk.len() > r.max_bytes {
                return Err(Failure::Failed(too_large(r.max_bytes)));
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
        .unwrap_or_else(|_| Err(Failure::Failed(timed_out())))
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
