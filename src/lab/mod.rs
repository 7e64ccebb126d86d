//! Local Redis and Sentinel processes, shared by `redops lab` and the test harness.

pub mod chaos;
pub mod embedded;
pub mod process;
pub mod topology;
