//! Redis Cluster awareness: which key lives in which slot, and discovery of
//! a cluster's shards, masters, replicas and their health from any node;
//! the source that samples every node, follows failovers and tells them,
//! and discovers again at once when a redirect says a slot moved.

pub mod discovery;
pub mod events;
pub mod metrics;
pub mod slot;
pub mod source;
pub mod view;

pub use discovery::Discoverer;
pub use slot::key_slot;
pub use view::{ClusterInfo, ClusterView, NodeView, Role, ShardView};
