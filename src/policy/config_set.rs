//! `CONFIG SET`: the parameters a playbook may set by default, and the
//! bounds of `maxmemory`.
//!
//! A deny list of dangerous parameters always misses one (`save ""`,
//! `min-replicas-to-write`, `notify-keyspace-events ""` each do harm), so
//! this is an allow list of what a remediation needs; everything else needs
//! the config's say-so.

/// Parameters (Redis glob patterns, lower-case) playbooks may set by default.
pub const ALLOWED_BY_DEFAULT: &[&str] = &[
    "activedefrag",
    "active-defrag-*",
    "maxmemory",
    "maxmemory-policy",
    // The guide's production eviction settings set it beside the policy.
    "maxmemory-samples",
    "lazyfree-*",
    "hz",
    "slowlog-*",
    "latency-monitor-threshold",
];

/// Why some of the parameters outside the list are kept out; the denial of
/// any other says what the list is for.
const WHY: &[(&str, &str)] = &[
    ("requirepass", "changes the server's password"),
    ("masterauth", "changes the replication password"),
    ("masteruser", "changes the replication user"),
    ("dir", "can make the server write files anywhere"),
    ("dbfilename", "can make the server write files anywhere"),
    ("appendfilename", "can make the server write files anywhere"),
    ("min-replicas-to-write", "can make the master refuse every write"),
    ("min-replicas-max-lag", "can make the master refuse every write"),
    ("protected-mode", "can open the server to the network"),
    ("bind", "can open the server to the network"),
    ("notify-keyspace-events", "can blind redops's own keyspace rules"),
    ("appendonly", "changes how the server persists data"),
    ("save", "changes how the server persists data"),
    ("replica-read-only", "can let clients write to a replica"),
    ("maxclients", "can make the server refuse connections"),
];

/// Why `param` is not settable by default.
pub fn why_denied(param: &str) -> String {
    match WHY.iter().find(|(p, _)| *p == param) {
        Some((_, why)) => (*why).to_owned(),
        None => format!(
            "playbooks may only set the parameters a remediation needs ({}) unless the config allows more",
            ALLOWED_BY_DEFAULT.join(", ")
        ),
    }
}

pub fn allowed_by_default(param: &str) -> bool {
    ALLOWED_BY_DEFAULT
        .iter()
        .any(|p| crate::glob::Glob::new(p).matches(param.as_bytes()))
}

/// How far above the memory in use `maxmemory` must stay: a limit at or
/// under it makes the server evict (or refuse writes) at once.
pub const MAXMEMORY_HEADROOM: f64 = 1.1;

/// The range a playbook may set `maxmemory` in, given the server's
/// `used_memory` and `total_system_memory` (0 when it does not know):
/// at least `used_memory` × [`MAXMEMORY_HEADROOM`], at most the machine's
/// memory, since a limit past it lets the server grow until the kernel's
/// OOM killer ends it.
pub fn maxmemory_bounds(used_memory: u64, total_system_memory: u64) -> (u64, Option<u64>) {
    let floor = (used_memory as f64 * MAXMEMORY_HEADROOM).ceil() as u64;
    (floor.max(1), (total_system_memory > 0).then_some(total_system_memory))
}

/// A size as `CONFIG SET` reads it: `1048576`, `100mb`, `1gb`, `512k`
/// (`k`, `m`, `g` are powers of 1000; `kb`, `mb`, `gb` of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// Bytes for a message: `104857600 (100.0 MiB)`.
pub fn show_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    format!("{n} ({:.1} MiB)", n as f64 / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_redis_reads_them() {
        assert_eq!(parse_size("1048576"), Some(1_048_576));
        assert_eq!(parse_size("100mb"), Some(100 * 1024 * 1024));
        assert_eq!(parse_size("1GB"), Some(1024 * 1024 * 1024));
        assert_eq!(parse_size("2k"), Some(2000));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("10tb"), None);
        assert_eq!(parse_size("99999999999999999999gb"), None);
    }

    #[test]
    fn maxmemory_stays_between_used_memory_and_the_machine() {
        assert_eq!(maxmemory_bounds(1000, 8000), (1100, Some(8000)));
        assert_eq!(maxmemory_bounds(1000, 0), (1100, None));
        // An empty server still may not be given a limit of 0 (no limit).
        assert_eq!(maxmemory_bounds(0, 0).0, 1);
    }

    #[test]
    fn the_default_list_is_what_a_remediation_needs() {
        for p in [
            "activedefrag",
            "active-defrag-cycle-max",
            "lazyfree-lazy-eviction",
            "slowlog-max-len",
            "hz",
        ] {
            assert!(allowed_by_default(p), "{p}");
        }
        for p in [
            "maxmemory-clients",
            "appendonly",
            "save",
            "min-replicas-to-write",
            "hz2",
            "dir",
        ] {
            assert!(!allowed_by_default(p), "{p}");
        }
        assert!(why_denied("protected-mode").contains("network"));
        assert!(why_denied("list-max-listpack-size").contains("maxmemory-policy"));
    }
}
