//! Backup throughput, recorded in BENCHMARKS.md:
//!
//! - RDB snapshot: redops (`Backups::create`, kind rdb) next to
//!   `redis-cli --rdb` on the same dataset, in the same run, alternating;
//! - logical backup and restore: keys per second.
//!
//! ```text
//! cargo run --release --example bench_backup
//! BENCH_RDB_KEYS=7000000 BENCH_VALUE_SIZE=128 BENCH_LOGICAL_KEYS=1000000 BENCH_RUNS=3 cargo run --release --example bench_backup
//! ```
//!
//! It starts its own redis-server (with `enable-debug-command yes`) and
//! loads data with `DEBUG POPULATE`. Each figure is the median of the runs.
//! The server runs with `rdbcompression no` (`BENCH_RDBCOMPRESSION=yes` to
//! change it): `DEBUG POPULATE` values are zero-padded, so LZF would shrink a
//! 1 GB dataset to a 300 MB RDB and the figure would measure the server's
//! LZF rather than the transfer. `BENCH_LOGICAL_KEYS=0` skips the logical part.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use redops::backup::{Backups, Kind, Silent, Target};
use redops::config::BackupConfig;
use redops::lab::process::{RedisProcess, RedisSpec};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn cmd(conn: &mut redis::Connection, args: &[&str]) -> redis::Value {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(conn).unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")))
}

fn populate(conn: &mut redis::Connection, keys: u64, size: u64) -> Duration {
    let started = Instant::now();
    cmd(conn, &["FLUSHALL"]);
    cmd(
        conn,
        &["DEBUG", "POPULATE", &keys.to_string(), "key", &size.to_string()],
    );
    started.elapsed()
}

/// `redis-cli --rdb FILE`: seconds and bytes.
fn redis_cli_rdb(port: u16, file: &Path) -> (f64, u64) {
    let _ = std::fs::remove_file(file);
    let started = Instant::now();
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--rdb"])
        .arg(file)
        .output()
        .expect("redis-cli is installed");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "redis-cli --rdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(file);
    (secs, bytes)
}

/// redops's RDB backup: seconds and bytes of the archive.
fn redops_rdb(backups: &Backups, target: &Target, compress: bool) -> (f64, u64) {
    let started = Instant::now();
    let record = backups
        .create(target, Kind::Rdb, compress, &mut Silent)
        .expect("redops rdb backup");
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&record.path);
    let _ = backups.catalog().delete(&record.id);
    (secs, record.size)
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn main() {
    let rdb_keys = env_or("BENCH_RDB_KEYS", 7_000_000);
    let value_size = env_or("BENCH_VALUE_SIZE", 128);
    let logical_keys = env_or("BENCH_LOGICAL_KEYS", 1_000_000);
    let runs = env_or("BENCH_RUNS", 3).max(1) as usize;

    let dir = tempfile::tempdir().expect("temp dir");
    let spec = RedisSpec::new(dir.path().join("redis"))
        .with("enable-debug-command", "yes")
        .with("repl-diskless-sync-delay", "0")
        .with(
            "rdbcompression",
            std::env::var("BENCH_RDBCOMPRESSION").unwrap_or_else(|_| "no".into()),
        )
        .ready_within(Duration::from_secs(30));
    let redis = RedisProcess::start(spec).expect("redis-server starts");
    let port = redis.port();
    let client = redis::Client::open(redis.url(0)).unwrap();
    let mut conn = client.get_connection().unwrap();
    let target = Target {
        name: "bench".into(),
        connection: redis::IntoConnectionInfo::into_connection_info(redis.url(0).as_str()).unwrap(),
    };
    let config = BackupConfig::default();
    let backups = Backups::open(&dir.path().join("state"), &config).expect("state dir");
    let cli_file = dir.path().join("redis-cli.rdb");

    println!("machine: {} cores, {}", cores(), cpu_model());
    println!(
        "redis-server {}",
        String::from_utf8_lossy(&Command::new("redis-server").arg("--version").output().unwrap().stdout).trim()
    );

    // --- RDB snapshot throughput
    let took = populate(&mut conn, rdb_keys, value_size);
    println!("loaded {rdb_keys} keys of {value_size} B in {:.1}s", took.as_secs_f64());
    let (mut cli, mut ours, mut ours_zstd) = (Vec::new(), Vec::new(), Vec::new());
    let mut rdb_bytes = 0;
    let mut zstd_bytes = 0;
    for run in 0..runs {
        // Alternate who goes first, so neither always gets the warm cache.
        let (c, o) = if run % 2 == 0 {
            let c = redis_cli_rdb(port, &cli_file);
            (c, redops_rdb(&backups, &target, false))
        } else {
            let o = redops_rdb(&backups, &target, false);
            (redis_cli_rdb(port, &cli_file), o)
        };
        let z = redops_rdb(&backups, &target, true);
        rdb_bytes = c.1;
        zstd_bytes = z.1;
        println!(
            "  run {}: redis-cli {:.2}s, redops {:.2}s, redops+zstd {:.2}s ({} B RDB)",
            run + 1,
            c.0,
            o.0,
            z.0,
            c.1
        );
        cli.push(mb_per_s(c.1, c.0));
        ours.push(mb_per_s(o.1, o.0));
        ours_zstd.push(mb_per_s(c.1, z.0));
    }
    let (cli, ours, ours_zstd) = (median(cli), median(ours), median(ours_zstd));

    // --- Logical backup and restore
    if logical_keys == 0 {
        println!("| `redis-cli --rdb` | {cli:.0} MB/s |");
        println!(
            "| redops rdb, uncompressed | {ours:.0} MB/s ({:.0} %) |",
            ours / cli * 100.0
        );
        println!(
            "| redops rdb, zstd | {ours_zstd:.0} MB/s ({:.0} %), {zstd_bytes} B |",
            ours_zstd / cli * 100.0
        );
        return;
    }
    let took = populate(&mut conn, logical_keys, value_size);
    println!(
        "loaded {logical_keys} keys of {value_size} B in {:.1}s",
        took.as_secs_f64()
    );
    let (mut dump_rates, mut restore_rates) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let started = Instant::now();
        let record = backups
            .create(&target, Kind::Full, true, &mut Silent)
            .expect("full backup");
        let dump_secs = started.elapsed().as_secs_f64();
        cmd(&mut conn, &["FLUSHALL"]);
        let started = Instant::now();
        let report = backups
            .restore(&record.id, &target, false, &mut Silent)
            .expect("restore");
        let restore_total = started.elapsed().as_secs_f64();
        // `restore` verifies first; time the verification alone to report both.
        let started = Instant::now();
        backups.verify(&record.id, &mut Silent).expect("verify");
        let verify_secs = started.elapsed().as_secs_f64();
        let restore_secs = (restore_total - verify_secs).max(0.001);
        assert_eq!(report.stats.restored, logical_keys, "every key restored");
        println!(
            "  run {}: full backup {:.2}s ({} B), restore {:.2}s (+ verify {:.2}s)",
            run + 1,
            dump_secs,
            record.size,
            restore_secs,
            verify_secs
        );
        dump_rates.push(logical_keys as f64 / dump_secs);
        restore_rates.push(logical_keys as f64 / restore_secs);
        let _ = std::fs::remove_file(&record.path);
        let _ = backups.catalog().delete(&record.id);
    }
    let (dump_rate, restore_rate) = (median(dump_rates), median(restore_rates));

    println!();
    println!("| measure (median of {runs}) | value |");
    println!("| --- | --- |");
    println!(
        "| RDB size | {:.1} MB ({rdb_keys} keys × {value_size} B) |",
        rdb_bytes as f64 / 1e6
    );
    println!("| `redis-cli --rdb` | {cli:.0} MB/s |");
    println!(
        "| redops rdb backup, uncompressed | {ours:.0} MB/s ({:.0} % of redis-cli) |",
        ours / cli * 100.0
    );
    println!(
        "| redops rdb backup, zstd level {} | {ours_zstd:.0} MB/s of RDB ({:.0} % of redis-cli), archive {:.1} MB |",
        config.compression_level,
        ours_zstd / cli * 100.0,
        zstd_bytes as f64 / 1e6
    );
    println!("| redops full (logical) backup, zstd | {dump_rate:.0} keys/s ({logical_keys} keys) |");
    println!("| redops restore (RESTORE … REPLACE) | {restore_rate:.0} keys/s |");
    drop(redis);
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
