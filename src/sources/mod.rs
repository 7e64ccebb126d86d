//! Sources turn the outside world into [`Event`](crate::event::Event)s.
//! Each is a spec built from the config plus a `spawn_*` that returns a
//! running task, handed the event channel and the shutdown token.
//!
//! - [`sampler`]: INFO and probes every `sample_interval`; target health.
//! - [`keyspace`]: keyevent notifications counted per keyspace rule.
//! - [`targets`]: the sources of each `[[target]]`, restarted one by one on reload.
//! - [`node_set`]: the samplers and keyspace readers of discovered nodes (a
//!   Sentinel group's, a cluster's), started and stopped as they come and go.
//! - [`redirects`]: a cluster's `MOVED` replies, told by samplers and
//!   playbooks to the cluster's source.

pub mod keyspace;
pub mod node_set;
pub mod redirects;
pub mod sampler;
pub mod schedule;
pub mod targets;
