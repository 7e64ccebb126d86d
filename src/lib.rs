//! redops: an event-driven automation engine for Redis operations.
//!
//! ```text
//!  sources ──Event──> rules (pure evaluator) ──Action──> playbook runner (Rhai, sandboxed)
//!                                                   └──> notifier ──> receivers (webhook)
//! ```
//!
//! ## Layers
//!
//! The imports go one way, like the data: a module uses only modules of the
//! layers below its own, and the modules of one layer never use each other
//! (sources and rules meet at [`event::Event`], notify and playbooks at
//! [`invocation::RunOutcome`]). `tests/layers.rs` reads this list and fails
//! on an import that goes sideways or up. Bottom first:
//!
//! 1. Foundations: [`secrets`], [`glob`], [`template`], [`status`], [`store`], [`lab`], [`strkey`]
//!    - [`secrets`]: redaction of every secret we know; [`glob`]: Redis key
//!      patterns; [`template`]: `{{ name }}` summaries; [`status`]: ok,
//!      unknown, warning, critical, the guide's verdicts and thresholds.
//!    - [`store`]: the SQLite state store; [`lab`]: local `redis-server`
//!      processes, shared with the test harness; [`strkey`]: map keys of
//!      strings found by borrowed ones, without allocating.
//! 2. Reporting: [`diagnostics`], [`logging`]
//!    - errors located at `file:line:col`, and one log line per event
//!      whatever the values hold.
//! 3. Vocabulary: [`event`], [`telemetry`], [`cron`], [`files`], [`policy`], [`matcher`]
//!    - [`event`]: the `Event` every source emits, the events Sentinels
//!      publish (parsed), the names of the metrics a sample carries and the
//!      keyspace selectors rules write and the keyspace reader matches;
//!      [`telemetry`]: redops's own counters, written everywhere and
//!      read by the API's `/metrics`; [`cron`]: cron expressions in a time
//!      zone and the catch-up policy; [`files`]: finding rule and playbook
//!      files; [`policy`]: which Redis commands, `CONFIG SET` parameters and
//!      HTTP hosts a playbook or probe may use; [`matcher`]: label matchers
//!      of routes, silences and inhibitions.
//! 4. Configuration: [`config`]
//!    - the engine's TOML config with `${VAR}` from the environment; it
//!      checks shapes only, checks that need other modules live above.
//! 5. Connections and durable state: [`redis`], [`alerts`], [`outbox`]
//!    - [`redis`]: connections, INFO parsing and derived metrics;
//!      [`alerts`]: severities, the alert lifecycle, fingerprints, silences,
//!      escalation; [`outbox`]: the durable queue of notifications that
//!      notify writes and delivers, HA prunes and the API counts.
//! 6. What detection hands on: [`history`], [`invocation`]
//!    - [`history`]: sample history (raw, 1-minute and hourly tiers) and
//!      trends (`memory_full_in_days`, ...); [`invocation`]: the evaluator's
//!      actions, the playbook invocations and how their runs ended.
//! 7. Detection: [`sources`], [`rules`]
//!    - [`sources`]: the INFO sampler, target health, the keyspace reader
//!      and cron schedules, each emitting events; [`rules`]: rule files, the
//!      Rhai expressions and the pure evaluator that turns events and a clock
//!      into actions, and the lint of rules that load but mean something else.
//! 8. Sentinel groups and clusters: [`sentinel`], [`cluster`]
//!    - discovery of masters and replicas, and the group source that starts
//!      a sampler and a keyspace reader for each node it finds;
//!      [`cluster`]: key slots, and a Redis Cluster's shards, nodes and
//!      health as any of its nodes reports them.
//! 9. Leadership and backups: [`ha`], [`backup`]
//!    - [`ha`]: leader election through a lease in Redis, so only the leader
//!      acts; [`backup`]: RDB and logical backups, sealed with zstd and age,
//!      cataloged, verified and restored.
//! 10. Notification: [`notify`]
//!    - routes, grouping, inhibition, escalation and the delivery workers.
//! 11. Playbooks: [`playbooks`]
//!    - the Rhai engine with limits, the host API and the runner that keeps
//!      playbooks apart from evaluation.
//! 12. HTTP: [`api`]
//!    - health, `/metrics`, alerts, silences, runs, backups, Sentinel groups
//!      and the dashboard at `/`, reading what the engine shares with it.
//! 13. Loading: [`loader`], [`import`]
//!    - loads config, rules and playbooks and checks their references to
//!      each other, every problem reported at once; [`import`]: other
//!      tools' alerting rules (Prometheus) translated into rule files.
//! 14. Running: [`engine`], [`ruletest`]
//!    - [`engine`]: wires every part into the running daemon, around a
//!      loop whose decisions are one testable step; hot reload;
//!      [`ruletest`]: `redops test`, rule and playbook tests in virtual time
//!      driving the real evaluator and playbook engine.
//! 15. The command line: [`cli`]
//!
//! Only the loader, the engine (with `redops test`) and the command line know
//! every part; everything below meets at the types of the lower layers.

pub mod alerts;
pub mod api;
pub mod backup;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod cron;
pub mod diagnostics;
pub mod engine;
pub mod event;
pub mod files;
pub mod glob;
pub mod ha;
pub mod history;
pub mod import;
pub mod invocation;
pub mod lab;
pub mod loader;
pub mod logging;
pub mod matcher;
pub mod notify;
pub mod outbox;
pub mod playbooks;
pub mod policy;
pub mod redis;
pub mod rules;
pub mod ruletest;
pub mod secrets;
pub mod sentinel;
pub mod sources;
pub mod status;
pub mod store;
pub mod strkey;
pub mod telemetry;
pub mod template;
