//! Sentinel awareness: discovery of a group's master and replicas, and the
//! group as the Sentinels see it. The events Sentinels publish are
//! vocabulary, in [`crate::event::sentinel`].

pub mod discovery;
pub mod group;
