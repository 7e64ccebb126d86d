//! Sentinel pub/sub event parsing.
