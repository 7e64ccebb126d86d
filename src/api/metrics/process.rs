//! The standard `process_*` families every Prometheus client library
//! exports (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! ...), read from `/proc/self` on each scrape. `prometheus-client` has no
//! process collector. Where there is no `/proc` (not Linux) the families
//! are left out rather than reported as 0.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

#[derive(Debug)]
pub struct ProcessFamilies;

/// What `/proc` says of this process.
#[derive(Debug, Clone, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time_seconds: f64,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl Collector for ProcessFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = read() else { return Ok(()) };
        encoder
            .encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, f64>(&stats.cpu_seconds, None)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                Some(stats.resident_bytes as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                Some(stats.virtual_bytes as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                Some(stats.start_time_seconds),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                stats.open_fds.map(|n| n as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                stats.max_fds.map(|n| n as f64),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                encoder
                    .encode_descriptor(name, help, None, MetricType::Gauge)?
                    .encode_gauge(&super::Number(v))?;
            }
        }
        Ok(())
    }
}

fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let mut stats = parse(&stat, &boot, ticks.max(1) as f64, page.max(1) as u64)?;
    stats.open_fds = open_fds;
    stats.max_fds = max_open_files(&limits);
    Some(stats)
}

/// `/proc/self/stat` and `/proc/stat`'s `btime`. The fields of `stat`
/// are counted after the command name, which is in parentheses and may hold
/// spaces and parentheses itself.
fn parse(stat: &str, proc_stat: &str, ticks_per_second: f64, page_size: u64) -> Option<ProcessStats> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name: field N is at N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime) = (field(14)?, field(15)?);
    let start_ticks = field(22)?;
    let boot_time: u64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks_per_second,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page_size),
        start_time_seconds: boot_time as f64 + start_ticks as f64 / ticks_per_second,
        open_fds: None,
        max_fds: None,
    })
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (redops (x) y) S 1 4242 4242 0 -1 4194560 2718 0 0 0 150 50 0 0 20 0 9 0 12345 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 17922 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stats = parse(STAT, "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n", 100.0, 4096).unwrap();
        assert_eq!(stats.cpu_seconds, 2.0);
        assert_eq!(stats.virtual_bytes, 104_857_600);
        assert_eq!(stats.resident_bytes, 2560 * 4096);
        assert!((stats.start_time_seconds - 1_700_000_123.45).abs() < 1e-3);
    }

    #[test]
    fn unreadable_stat_is_none() {
        assert_eq!(parse("garbage", "btime 1", 100.0, 4096), None);
        assert_eq!(parse(STAT, "no boot time", 100.0, 4096), None);
    }

    #[test]
    fn the_soft_limit_of_open_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             95648                95648                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files("Max open files unlimited unlimited files"), None);
    }

    #[test]
    fn this_process_reads_on_linux() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let stats = read().expect("/proc/self is readable");
        assert!(stats.resident_bytes > 0);
        assert!(stats.open_fds.is_some_and(|n| n >= 3));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(stats.start_time_seconds <= now + 1.0 && stats.start_time_seconds > now - 86_400.0 * 365.0);
    }
}
