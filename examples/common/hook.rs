//! A webhook receiver for the benchmark examples: an HTTP server on its own
//! thread and runtime that records every request's arrival and body.
//! Included with `#[path]`; not every example uses every method.
#![allow(dead_code)]

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Got {
    /// Monotonic arrival time.
    pub at: Instant,
    /// Wall-clock arrival time, to compare with the timestamps redops sends.
    pub wall: SystemTime,
    pub path: String,
    /// The body as JSON; `Null` when it is not JSON.
    pub body: serde_json::Value,
}

impl Got {
    /// A string field of the body; "" when absent.
    pub fn str(&self, key: &str) -> &str {
        self.body[key].as_str().unwrap_or("")
    }
}

pub struct Hook {
    pub port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Hook {
    pub fn start() -> Hook {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let g = got.clone();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
                    let at = Instant::now();
                    let wall = SystemTime::now();
                    let g = g.clone();
                    async move {
                        let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                        let path = uri.path().to_string();
                        g.lock().unwrap().push(Got { at, wall, path, body });
                        "ok"
                    }
                });
                tokio::select! {
                    _ = axum::serve(listener, app).into_future() => {}
                    _ = stopped => {}
                }
            });
        });
        Hook {
            port,
            got,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Forgets what arrived so far.
    pub fn clear(&self) {
        self.got.lock().unwrap().clear();
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// The first request matching `pred`, waiting at most `timeout`.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&Got) -> bool) -> Option<Got> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(g) = self.got.lock().unwrap().iter().find(|g| pred(g)) {
                return Some(g.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_micros(500));
        }
    }

    /// When the first firing of `rule` on `target` arrived.
    pub fn arrival(&self, rule: &str, target: &str) -> Option<Instant> {
        self.got.lock().unwrap().iter().find_map(|g| {
            (g.body["kind"] == "alert"
                && g.str("rule") == rule
                && g.str("status") == "firing"
                && g.str("target") == target)
                .then_some(g.at)
        })
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
