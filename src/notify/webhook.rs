//! Webhook delivery: one worker per receiver, in order, with retries.

use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Notification, generic_body};
use crate::config::WebhookConfig;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A receiver's Retry-After is honoured up to this; beyond it we would
/// rather retry and be told again than go quiet for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

pub struct WebhookWorker {
    name: String,
    config: WebhookConfig,
    client: reqwest::Client,
}

struct Failure {
    error: String,
    retry_after: Option<Duration>,
    /// A 4xx other than 408/429: the receiver will never accept this body.
    permanent: bool,
}

impl WebhookWorker {
    pub fn new(name: String, config: WebhookConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("redops/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the TLS backend is compiled in");
        WebhookWorker { name, config, client }
    }

    pub async fn run(self, mut rx: mpsc::Receiver<Notification>, shutdown: CancellationToken, drain: Duration) {
        loop {
            tokio::select! {
                biased;
                n = rx.recv() => match n {
                    Some(n) => { self.deliver(n, &shutdown).await; }
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            }
        }
        // Orderly stop: give what is queued one bounded chance to go out.
        let deadline = Instant::now() + drain;
        let mut left = 0;
        while let Ok(n) = rx.try_recv() {
            if Instant::now() >= deadline || self.attempt(&n).await.is_err() {
                left += 1;
            }
        }
        if left > 0 {
            tracing::error!(receiver = %self.name, undelivered = left, "Notifications left undelivered at shutdown");
        }
    }

    /// Delivers one notification, retrying until accepted, rejected for
    /// good, given up, or shutdown.
    async fn deliver(&self, n: Notification, shutdown: &CancellationToken) -> bool {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1.. {
            let failure = match self.attempt(&n).await {
                Ok(()) => {
                    tracing::debug!(receiver = %self.name, attempt, "Notification delivered");
                    return true;
                }
                Err(f) => f,
            };
            if failure.permanent {
                tracing::error!(receiver = %self.name, error = %failure.error, "Notification rejected by receiver; not retried");
                return false;
            }
            if started.elapsed() >= self.config.give_up_after {
                tracing::error!(receiver = %self.name, attempt, error = %failure.error, "Notification given up after retrying");
                return false;
            }
            let wait = match failure.retry_after {
                Some(ra) => ra.min(MAX_RETRY_AFTER),
                None => jitter(backoff),
            };
            backoff = (backoff * 2).min(MAX_BACKOFF);
            tracing::warn!(receiver = %self.name, attempt, error = %failure.error, wait_ms = wait.as_millis() as u64, "Delivery failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {
                    tracing::error!(receiver = %self.name, "Notification not delivered before shutdown");
                    return false;
                }
            }
        }
        unreachable!("the retry loop only ends by returning")
    }

    async fn attempt(&self, n: &Notification) -> Result<(), Failure> {
        let mut request = self
            .client
            .post(&self.config.url)
            .header("Idempotency-Key", n.idempotency_key())
            .json(&generic_body(n));
        for (name, value) in &self.config.headers {
            request = request.header(name, value.expose());
        }
        let response = request.send().await.map_err(|e| Failure {
            // reqwest errors name the URL, which may carry a token.
            error: crate::secrets::redact(&e.without_url().to_string()),
            retry_after: None,
            permanent: false,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(Failure {
            error: format!("HTTP {status}"),
            retry_after,
            permanent: status.is_client_error()
                && status != StatusCode::TOO_MANY_REQUESTS
                && status != StatusCode::REQUEST_TIMEOUT,
        })
    }
}

/// ±25 % so that many workers retrying together do not stay in lockstep.
fn jitter(d: Duration) -> Duration {
    let factor = rand::rng().random_range(0.75..1.25);
    d.mul_f64(factor)
}
