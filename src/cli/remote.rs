//! `--url` and `--token`: `redops alerts`, `silence` and `runs` ask a running
//! engine's API (as amtool asks an Alertmanager) instead of opening the
//! local state store, so they work from a laptop or a bastion host.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::EXIT_FAILED;

/// How long one request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, clap::Args)]
pub struct RemoteArg {
    /// A running engine's API, e.g. http://redops-1:9187: ask it instead of
    /// opening the local state store.
    #[arg(long, global = true, env = "REDOPS_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The API's bearer token, needed for changes (acks, silences).
    #[arg(
        long,
        global = true,
        env = "REDOPS_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// Never shows the token.
impl fmt::Debug for RemoteArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteArg")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A running engine's API, for one command.
pub struct Remote {
    base: String,
    token: Option<String>,
    /// `redops alerts ack`, for messages.
    command: &'static str,
    http: reqwest::blocking::Client,
}

impl RemoteArg {
    /// `None` without `--url`: the command opens the local state store.
    pub fn remote(&self, command: &'static str) -> Option<Remote> {
        let base = self.url.as_deref()?.trim_end_matches('/').to_owned();
        Some(Remote {
            base,
            token: self.token.clone().filter(|t| !t.is_empty()),
            command,
            http: reqwest::blocking::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default(),
        })
    }
}

impl Remote {
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ExitCode> {
        self.send(self.http.get(self.url(path)))
    }

    /// Like [`Remote::get`], for what each instance records for itself
    /// (playbook runs): an HA follower's answer gets a note on stderr
    /// naming the leader, where runs happen.
    pub fn get_noting_leader<T: DeserializeOwned>(&self, path: &str) -> Result<T, ExitCode> {
        self.send_noting(self.http.get(self.url(path)), true)
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> Result<T, ExitCode> {
        self.send(self.http.post(self.url(path)).json(body))
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ExitCode> {
        self.send(self.http.delete(self.url(path)))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends with the token, and turns every way it can fail into one line
    /// on stderr and exit code 1.
    fn send<T: DeserializeOwned>(&self, request: reqwest::blocking::RequestBuilder) -> Result<T, ExitCode> {
        self.send_noting(request, false)
    }

    fn send_noting<T: DeserializeOwned>(
        &self,
        mut request: reqwest::blocking::RequestBuilder,
        note_leader: bool,
    ) -> Result<T, ExitCode> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let fail = |message: String| {
            eprintln!("{}: {}", self.command, crate::secrets::redact(&message));
            ExitCode::from(EXIT_FAILED)
        };
        let response = request.send().map_err(|e| {
            let why = if e.is_timeout() {
                format!("no answer within {} s", TIMEOUT.as_secs())
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                e.to_string()
            };
            fail(format!(
                "cannot reach the engine's API at {} ({why}); is `redops run` listening there ([api] listen)?",
                self.base
            ))
        })?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if note_leader && let Some(leader) = header("x-redops-ha-leader") {
            let ask = header("x-redops-ha-leader-api")
                .map(|api| format!("; ask it with --url http://{api}"))
                .unwrap_or_default();
            eprintln!(
                "note: {} is an HA follower: playbook runs happen on the leader, `{leader}`, and are recorded there{ask}",
                self.base
            );
        }
        let text = response.text().unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| {
                fail(format!(
                    "the answer from {} is not what this redops expects ({e}); is it a redops API of the same version?",
                    self.base
                ))
            });
        }
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let said = body["error"].as_str().unwrap_or(text.as_str()).to_owned();
        Err(fail(match status.as_u16() {
            401 => format!(
                "the engine at {} refused the request (401: {said}); pass its [api] token with --token or \
                 REDOPS_API_TOKEN",
                self.base
            ),
            409 => match body["leader_api"].as_str() {
                Some(api) => format!("{said}; ask the leader with --url http://{api}"),
                None => said,
            },
            code => format!("the engine at {} answered {code}: {said}", self.base),
        }))
    }
}
