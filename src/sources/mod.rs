//! Sources turn the outside world into [`Event`](crate::event::Event)s.
//! Each is a spec built from the config plus a `spawn_*` that returns a
//! running task, handed the event channel and the shutdown token.
//!
//! - [`sampler`]: INFO and probes every `sample_interval`; target health.
//! - [`keyspace`]: keyevent notifications counted per keyspace rule.
//! - [`targets`]: the sources of each `[[target]]`, restarted one by one on reload.

pub mod keyspace;
pub mod sampler;
pub mod schedule;
pub mod targets;
