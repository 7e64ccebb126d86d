//! Webhook delivery: one POST per body, in the receiver's format, signed
//! when a secret is configured.

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;

use super::{Failure, Notification, format};
use crate::config::WebhookConfig;

pub struct WebhookSender {
    config: WebhookConfig,
    client: reqwest::Client,
}

impl WebhookSender {
    pub fn timeout(&self) -> std::time::Duration {
        self.config.timeout
    }

    pub fn new(_name: &str, config: WebhookConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("redops/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the TLS backend is compiled in");
        WebhookSender { config, client }
    }

    pub async fn deliver(&self, n: &Notification, key: &str) -> Result<(), Failure> {
        let routing_key = self.config.routing_key.as_ref().map(|k| k.expose());
        for body in format::bodies(self.config.format, n, routing_key) {
            self.post(&body, key).await?;
        }
        Ok(())
    }

    async fn post(&self, body: &serde_json::Value, key: &str) -> Result<(), Failure> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut request = self
            .client
            .post(&self.config.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key);
        if let Some(secret) = &self.config.hmac_secret {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                .to_string();
            request = request
                .header("X-Redops-Timestamp", &timestamp)
                .header("X-Redops-Signature", signature(secret.expose(), &timestamp, &bytes));
        }
        for (name, value) in &self.config.headers {
            request = request.header(name, value.expose());
        }
        // Only the status and headers are read: the body is dropped unread,
        // so a receiver that floods or drips costs one `timeout` at most.
        let response = request
            .body(bytes)
            .send()
            .await
            .map_err(|e| Failure::transient(send_error(e, self.config.timeout)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        Err(Failure {
            error: format!("HTTP {status}"),
            retry_after,
            permanent: status.is_client_error()
                && status != StatusCode::TOO_MANY_REQUESTS
                && status != StatusCode::REQUEST_TIMEOUT,
        })
    }
}

/// Why a request got no response. reqwest's own message ("error sending
/// request") hides the cause in its source chain, and names the URL, which
/// may carry a token.
fn send_error(e: reqwest::Error, timeout: std::time::Duration) -> String {
    if e.is_timeout() {
        return format!("no response within {} (timeout)", humantime::format_duration(timeout));
    }
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    crate::secrets::redact(&message)
}

/// `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`: binding the
/// timestamp lets a receiver refuse replays.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
