//! redops: an event-driven automation engine for Redis operations.
//!
//! ```text
//!  sources ──Event──> rules (pure evaluator) ──Action──> playbook runner (Rhai, sandboxed)
//!                                                   └──> notifier ──> receivers (webhook)
//! ```
//!
//! - [`config`]: the engine's TOML config, with `${VAR}` from the environment
//!   and every error located at `file:line:col` ([`diagnostics`]).
//! - [`sources`]: the INFO sampler (and target health) and the keyspace
//!   notification reader; each emits [`event::Event`]s.
//! - [`redis`]: connections, INFO parsing and the metrics derived from it.
//! - [`rules`]: rule files, the Rhai expression engine with look-back
//!   history, and the pure [`rules::Evaluator`] that turns events and a clock
//!   into alert changes and playbook invocations; [`rules::lint`] finds
//!   the rules that load but probably do not do what was meant.
//! - [`ruletest`]: `redops test`, rule and playbook unit tests in virtual
//!   time with no Redis, driving the real evaluator and playbook engine.
//! - [`alerts`]: severities, the alert lifecycle state machine, fingerprints.
//! - [`playbooks`]: the Rhai engine with limits, the host API, the command
//!   policy and the runner that keeps playbooks apart from evaluation.
//! - [`notify`]: notifications and the per-receiver delivery workers.
//! - [`ha`]: leader election through a lease in Redis, so that two or three
//!   instances evaluate alike and only the leader acts.
//! - [`api`]: the HTTP API (health, `/metrics`, alerts, silences, runs,
//!   backups, Sentinel groups, playbook runs by hand) and the dashboard at
//!   `/`, reading what the engine shares with it.
//! - [`engine`]: wires the above into the running daemon; [`loader`] loads
//!   config, rules and playbooks together; [`cli`] is the command line.
//! - [`history`]: sample history in the state store (raw, 1-minute and
//!   hourly tiers) and the trends (`memory_full_in_days`, ...) that the
//!   engine adds to samples; read by `redops analyze`, `redops report
//!   capacity` and `GET /api/v1/history`.
//! - [`backup`]: RDB snapshots over `SYNC` and logical `DUMP` backups, sealed
//!   with zstd and age, cataloged in the store, verified and restored.
//! - [`lab`]: local `redis-server` processes, shared with the test harness.
//! - Small pieces: [`status`] (ok, unknown, warning, critical: the guide's
//!   verdicts and their thresholds), [`glob`] (Redis key patterns), [`template`] (`{{ name }}`
//!   summaries), [`secrets`] (redaction of every secret we know), [`logging`]
//!   (one log line per event, whatever the values hold).

pub mod alerts;
pub mod api;
pub mod backup;
pub mod cli;
pub mod config;
pub mod diagnostics;
pub mod engine;
pub mod event;
pub mod glob;
pub mod ha;
pub mod history;
pub mod lab;
pub mod loader;
pub mod logging;
pub mod notify;
pub mod playbooks;
pub mod redis;
pub mod reload;
pub mod rules;
pub mod ruletest;
pub mod secrets;
pub mod sentinel;
pub mod sources;
pub mod status;
pub mod store;
pub mod template;
