//! Local Redis and Sentinel processes, shared by `redops lab` and the test harness.

pub mod process;
