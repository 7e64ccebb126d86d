//! Local Redis, Sentinel and Redis Cluster processes, shared by `redops lab` and the test harness.

pub mod chaos;
pub mod cluster;
pub mod cluster_chaos;
pub mod cluster_state;
pub mod embedded;
pub mod process;
pub mod topology;
