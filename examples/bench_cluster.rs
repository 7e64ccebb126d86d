//! Redis Cluster benchmarks of the real `redops` binary (issue 14).
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/bench_cluster footprint [--masters 15] [--replicas 1] [--warmup-secs 10] [--secs 60]
//! target/release/examples/bench_cluster failover  [--trials 5]
//! ```
//!
//! - `footprint`: a `ClusterLab` of `--masters` × (1 + `--replicas`) nodes
//!   (30 by default) as one `[[cluster]]`, sampled every 1 s with
//!   `rules/cluster.toml`. After a warm-up, CPU (utime + stime from /proc)
//!   over `--secs` as a percentage of one core, and RSS.
//! - `failover`: a 3 + 3 `ClusterLab` at 1 s sampling. Each trial kills the
//!   current master of the first shard and polls its replica's `ROLE` every
//!   10 ms; latency is from the first `role:master` this bench sees to the
//!   `cluster_failover` webhook arriving. The killed node is restarted (it
//!   rejoins as a replica) and synced before the next trial. The cluster's
//!   own node timeout (`NODE_TIMEOUT_MS`) comes before all this: it is not
//!   in the figure.
//!
//! `REDOPS_BIN` names the binary (default `target/release/redops`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use redops::lab::cluster::ClusterLab;

#[path = "common/proc.rs"]
mod proc;
use proc::{Proc, arg, cpu_secs, redops_bin, vm};
#[path = "common/hook.rs"]
mod hook;
use hook::Hook;

/// `redops run` on a config dir holding one `[[cluster]]` and the shipped
/// cluster rules.
fn start_redops(dir: &Path, seed: &str, hook: &Hook) -> (Proc, PathBuf) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/cluster.toml");
    std::fs::copy(rules, dir.join("rules/cluster.toml")).unwrap();
    let playbook = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/cluster_failover.rhai");
    std::fs::copy(playbook, dir.join("playbooks/cluster_failover.rhai")).unwrap();
    let config = format!(
        "[engine]\nrules_dir = \"rules\"\nplaybooks_dir = \"playbooks\"\nstate_dir = \"state\"\nsample_interval = \"1s\"\n\n\
         [api]\nenabled = false\n\n\
         [[cluster]]\nname = \"bench\"\nseeds = [\"{seed}\"]\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        hook.url()
    );
    std::fs::write(dir.join("redops.toml"), config).unwrap();
    let log = dir.join("redops.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(redops_bin())
        .args(["run", "--config", "redops.toml"])
        .current_dir(dir)
        .env("RUST_LOG", "redops=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("redops");
    (Proc { child }, log)
}

fn wait_log(log: &Path, needle: &str, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redops did not log {needle:?} ×{count}:\n{text}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn info_field(addr: &str, section: &str, field: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://{addr}")).ok()?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
    let info: String = redis::cmd("INFO").arg(section).query(&mut conn).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
}

fn footprint(args: &[String]) {
    let masters: usize = arg(args, "--masters", 15);
    let replicas: usize = arg(args, "--replicas", 1);
    let warmup: u64 = arg(args, "--warmup-secs", 10);
    let secs: u64 = arg(args, "--secs", 60);
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let lab = ClusterLab::start(&tmp.path().join("lab"), masters, replicas).expect("cluster lab");
    let nodes = lab.nodes().len();
    println!("{nodes}-node cluster up in {:.1} s", started.elapsed().as_secs_f64());
    let hook = Hook::start();
    let dir = tmp.path().join("engine");
    let (redops, log) = start_redops(&dir, &lab.node(0).addr(), &hook);
    let pid = redops.child.id();
    wait_log(&log, "Following node", nodes, Duration::from_secs(60));
    thread::sleep(Duration::from_secs(warmup));
    let (t0, cpu0) = (Instant::now(), cpu_secs(pid).unwrap_or(f64::NAN));
    let mut rss = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_secs(10).min(Duration::from_secs(secs).saturating_sub(t0.elapsed())));
        rss.push(vm(pid, "VmRSS").unwrap_or(f64::NAN));
    }
    let cpu = (cpu_secs(pid).unwrap_or(f64::NAN) - cpu0) * 100.0 / t0.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!(
        "RESULT footprint {nodes} nodes, 1 s sampling, {secs} s after {warmup} s warm-up: CPU {cpu:.2} % of a core, \
         VmRSS {} MiB (every 10 s), VmHWM {:.1} MiB, webhooks {}, WARN lines {}, ERROR lines {}",
        rss.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>().join(" / "),
        vm(pid, "VmHWM").unwrap_or(f64::NAN),
        hook.count(),
        text.matches(" WARN ").count(),
        text.matches(" ERROR ").count()
    );
    drop(redops);
}

fn failover(args: &[String]) {
    let trials: usize = arg(args, "--trials", 5);
    let tmp = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(&tmp.path().join("lab"), 3, 1).expect("cluster lab");
    let hook = Hook::start();
    let dir = tmp.path().join("engine");
    let (redops, log) = start_redops(&dir, &lab.node(1).addr(), &hook);
    wait_log(&log, "Following node", lab.nodes().len(), Duration::from_secs(60));
    // Shard 0: node 0 and its replica, killed in turn.
    let pair = [
        0,
        lab.nodes()
            .iter()
            .position(|n| n.addr() == lab.replica_of(0, 0).unwrap().addr())
            .unwrap(),
    ];
    let mut master = 0;
    let mut latencies = Vec::new();
    for trial in 0..trials {
        let replica = pair[1 - master];
        let replica_addr = lab.node(replica).addr();
        lab.node(pair[master]).kill().unwrap();
        let killed = Instant::now();
        let deadline = killed + Duration::from_secs(60);
        let promoted = loop {
            if info_field(&replica_addr, "replication", "role").as_deref() == Some("master") {
                break Instant::now();
            }
            assert!(Instant::now() < deadline, "no promotion in trial {trial}");
            thread::sleep(Duration::from_millis(10));
        };
        let target = format!("bench/{replica_addr}");
        let arrived = loop {
            if let Some(at) = hook.arrival("cluster_failover", &target) {
                break at;
            }
            assert!(Instant::now() < deadline, "no failover page in trial {trial}");
            thread::sleep(Duration::from_millis(5));
        };
        let ms = arrived.saturating_duration_since(promoted).as_secs_f64() * 1000.0;
        let early = promoted.saturating_duration_since(arrived).as_secs_f64() * 1000.0;
        println!(
            "trial {trial}: kill → role:master {:.0} ms; role:master → webhook {ms:.0} ms{}",
            promoted.duration_since(killed).as_secs_f64() * 1000.0,
            if early > 0.0 {
                format!(" (webhook {early:.0} ms before this bench saw the role)")
            } else {
                String::new()
            }
        );
        latencies.push(ms);
        // The killed master comes back as the new master's replica.
        let back = pair[master];
        lab.node(back).restart().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while info_field(&lab.node(back).addr(), "replication", "master_link_status").as_deref() != Some("up") {
            assert!(Instant::now() < deadline, "the old master did not resync");
            thread::sleep(Duration::from_millis(100));
        }
        lab.wait_state_ok(Duration::from_secs(30)).unwrap();
        master = 1 - master;
        // The next kill must be news to the cluster, not a node it still
        // thinks is failing: wait until every node sees both nodes up.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !nodes_all_up(&lab) {
            assert!(Instant::now() < deadline, "the cluster still flags a node");
            thread::sleep(Duration::from_millis(100));
        }
        // Each page is one alert; a new failover on the same node must
        // page again (resolve_after 15m keeps it firing: clear it by target).
        hook.clear();
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "RESULT failover role:master → webhook over {} trials: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    drop(redops);
}

fn nodes_all_up(lab: &ClusterLab) -> bool {
    lab.nodes().iter().all(|n| {
        let Ok(client) = redis::Client::open(format!("redis://{}", n.addr())) else {
            return false;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
            return false;
        };
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap_or_default();
        !text.is_empty() && !text.contains("fail")
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("footprint") => footprint(&args),
        Some("failover") => failover(&args),
        _ => {
            eprintln!("usage: bench_cluster footprint|failover [options]");
            std::process::exit(2);
        }
    }
}
