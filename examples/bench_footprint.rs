//! Footprint (issue 8, figure 3): memory and idle CPU of the real `redops`
//! binary.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/bench_footprint lab [--secs 120]
//! target/release/examples/bench_footprint targets [--targets 10] [--warmup-secs 10] [--secs 60] [--keyspace-tick 10ms]
//! ```
//!
//! - `lab`: `redops run --lab` in a fresh lab directory (master, replica,
//!   three Sentinels, the shipped rules and playbooks, 1 s sampling), its
//!   webhook receiver in this process. Prints redops' RSS and CPU every 10 s
//!   and at the end; then stops redops and `redops lab down`.
//! - `targets`: `--targets` redis-servers as `[[target]]`s sampled every 1 s
//!   with the shipped `rules/` and `playbooks/`. After a warm-up, CPU
//!   (utime + stime from /proc) over `--secs`, as a percentage of one core.
//!
//! `REDOPS_BIN` names the binary (default `target/release/redops`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use redops::lab::process::{RedisProcess, RedisSpec};

#[path = "common/proc.rs"]
mod proc;
use proc::{Proc, arg, cpu_secs, redops_bin, vm};
#[path = "common/hook.rs"]
mod hook;
use hook::Hook;

/// Stops the lab in `dir` (its processes outlive `redops run --lab`).
struct LabGuard(PathBuf);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let out = Command::new(redops_bin())
            .args(["lab", "down"])
            .env("REDOPS_LAB_DIR", &self.0)
            .env("NO_COLOR", "1")
            .output();
        if let Ok(o) = out {
            println!("redops lab down: {}", String::from_utf8_lossy(&o.stdout).trim());
        }
    }
}

fn threads(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Threads:"))
        .map(|l| l.trim_start_matches("Threads:").trim().to_string())
        .unwrap_or_default()
}

fn spawn_redops(args: &[&str], cwd: &Path, env: &[(&str, String)]) -> (Proc, PathBuf) {
    let log = cwd.join("redops.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(redops_bin())
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "redops=info")
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("redops");
    (Proc { child }, log)
}

fn wait_log(log: &Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "redops did not log {needle:?}:\n{text}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn lab(args: &[String]) {
    let secs: u64 = arg(args, "--secs", 120);
    let tmp = tempfile::tempdir().unwrap();
    let lab_dir = tmp.path().join("lab");
    let hook = Hook::start();
    let _guard = LabGuard(lab_dir.clone());
    let (redops, log) = spawn_redops(
        &["run", "--lab"],
        tmp.path(),
        &[
            ("REDOPS_LAB_DIR", lab_dir.display().to_string()),
            ("REDOPS_WEBHOOK_URL", hook.url()),
        ],
    );
    let pid = redops.child.id();
    wait_log(&log, "Engine started", Duration::from_secs(60));
    let t0 = Instant::now();
    let cpu0 = cpu_secs(pid).unwrap_or(f64::NAN);
    println!("redops run --lab started (pid {pid}); sampling every 10 s for {secs} s");
    let mut last = (t0, cpu0);
    while t0.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_secs(10).min(Duration::from_secs(secs).saturating_sub(t0.elapsed())));
        let (now, cpu) = (Instant::now(), cpu_secs(pid).unwrap_or(f64::NAN));
        println!(
            "  +{:>4.0} s  VmRSS {:.1} MiB  VmHWM {:.1} MiB  threads {}  CPU last 10 s {:.2} % of a core",
            t0.elapsed().as_secs_f64(),
            vm(pid, "VmRSS").unwrap_or(f64::NAN),
            vm(pid, "VmHWM").unwrap_or(f64::NAN),
            threads(pid),
            (cpu - last.1) * 100.0 / now.duration_since(last.0).as_secs_f64()
        );
        last = (now, cpu);
    }
    let cpu1 = cpu_secs(pid).unwrap_or(f64::NAN);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!(
        "RESULT lab after {secs} s: VmRSS {:.1} MiB, VmHWM {:.1} MiB, CPU {:.2} % of a core, webhooks received {}, WARN lines {}, ERROR lines {}",
        vm(pid, "VmRSS").unwrap_or(f64::NAN),
        vm(pid, "VmHWM").unwrap_or(f64::NAN),
        (cpu1 - cpu0) * 100.0 / t0.elapsed().as_secs_f64(),
        hook.count(),
        text.matches(" WARN ").count(),
        text.matches(" ERROR ").count()
    );
    for line in text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .take(8)
    {
        println!("  log: {line}");
    }
    drop(redops);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn targets(args: &[String]) {
    let n: usize = arg(args, "--targets", 10);
    let warmup: u64 = arg(args, "--warmup-secs", 10);
    let secs: u64 = arg(args, "--secs", 60);
    let tick: String = arg(args, "--keyspace-tick", "10ms".to_string());
    let tmp = tempfile::tempdir().unwrap();
    let servers: Vec<RedisProcess> = (0..n)
        .map(|i| {
            RedisProcess::start(RedisSpec::new(tmp.path().join(format!("redis-{i}"))).with("maxmemory", "64mb"))
                .unwrap()
        })
        .collect();
    let hook = Hook::start();
    let dir = tmp.path().join("engine");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&root.join("rules"), &dir.join("rules"));
    copy_dir(&root.join("playbooks"), &dir.join("playbooks"));
    let mut config = String::from(
        "[engine]\nrules_dir = \"rules\"\nplaybooks_dir = \"playbooks\"\nstate_dir = \"state\"\nsample_interval = \"1s\"\n",
    );
    config.push_str(&format!("keyspace_tick = \"{tick}\"\n\n"));
    for (i, s) in servers.iter().enumerate() {
        config.push_str(&format!(
            "[[target]]\nname = \"redis-{i}\"\nurl = \"{}\"\nkeyspace_events = \"Ee\"\n\n",
            s.url(0)
        ));
    }
    config.push_str(&format!(
        "[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        hook.url()
    ));
    std::fs::write(dir.join("redops.toml"), config).unwrap();
    let (redops, log) = spawn_redops(&["run", "--config", "redops.toml"], &dir, &[]);
    let pid = redops.child.id();
    wait_log(&log, "Engine started", Duration::from_secs(30));
    let started = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("Engine started"))
        .unwrap_or("")
        .to_string();
    println!("{started}");
    thread::sleep(Duration::from_secs(warmup));
    let (t0, cpu0) = (Instant::now(), cpu_secs(pid).unwrap_or(f64::NAN));
    thread::sleep(Duration::from_secs(secs));
    let (t1, cpu1) = (Instant::now(), cpu_secs(pid).unwrap_or(f64::NAN));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let clients: Vec<String> = servers
        .iter()
        .take(1)
        .map(|s| {
            let mut c = redis::Client::open(s.url(0)).unwrap().get_connection().unwrap();
            let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap_or_default();
            format!("{} clients on {}", list.lines().count().saturating_sub(1), s.addr())
        })
        .collect();
    println!(
        "RESULT {n} targets at 1 s sampling (keyspace_tick {tick}), idle, over {:.0} s: CPU {:.3} s = {:.2} % of a core; VmRSS {:.1} MiB, VmHWM {:.1} MiB, threads {}; webhooks {}; WARN {} ERROR {}; redops {:?}",
        t1.duration_since(t0).as_secs_f64(),
        cpu1 - cpu0,
        (cpu1 - cpu0) * 100.0 / t1.duration_since(t0).as_secs_f64(),
        vm(pid, "VmRSS").unwrap_or(f64::NAN),
        vm(pid, "VmHWM").unwrap_or(f64::NAN),
        threads(pid),
        hook.count(),
        text.matches(" WARN ").count(),
        text.matches(" ERROR ").count(),
        clients
    );
    drop(redops);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "bench_footprint: binary {} (modified {:?})",
        redops_bin().display(),
        std::fs::metadata(redops_bin()).and_then(|m| m.modified()).ok()
    );
    match args.first().map(String::as_str) {
        Some("lab") => lab(&args),
        Some("targets") => targets(&args),
        _ => {
            eprintln!("usage: bench_footprint lab|targets [options]");
            std::process::exit(2);
        }
    }
}
