//! Latency benchmarks of the real `redops` binary (issue 3 and issue 8
//! figures 2 and 5). Everything runs on loopback; the webhook receiver runs
//! in this process, so "published" and "arrived" are read from one clock.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/bench_latency sentinel-replay  [--events 50] [--gap-ms 300]
//! target/release/examples/bench_latency sentinel-failover [--forced 10] [--kills 3] [--min-gap-secs 0]
//! target/release/examples/bench_latency sampled  [--trials 20]
//! target/release/examples/bench_latency keyspace [--trials 20] [--tick 10ms]
//! target/release/examples/bench_latency playbook [--trials 1000]
//! target/release/examples/bench_latency ha [--trials 20] [--burst 4] [--stall-ms 100]
//! ```
//!
//! `REDOPS_BIN` names the binary (default `target/release/redops`).
//!
//! - `sentinel-replay`: Sentinel refuses `PUBLISH +switch-master` from a
//!   client ("Only HELLO messages are accepted by Sentinel instances"), so
//!   three plain `redis-server`s stand in for the group's Sentinels and the
//!   bench publishes the same `+switch-master` payload on all three, as the
//!   three Sentinels of a real failover do, with a new address each time.
//!   Latency: just before the first PUBLISH → the webhook request arriving.
//! - `sentinel-failover`: a real lab topology (master, replica, three
//!   Sentinels). Forced failovers (`SENTINEL FAILOVER`) then kill-the-master
//!   failovers. Latency: the first `+switch-master` seen by this bench's own
//!   subscribers (one per Sentinel) → the webhook request arriving.
//! - `sampled`: `marker >= 1` over a `GET marker` probe at 1 s sampling,
//!   `for = "0s"`. Latency: SET marker 1 → webhook. The SET lands at evenly
//!   spread phases of the sampling period.
//! - `keyspace`: `count >= 100` over `set` events on `kprobe:*`. Latency:
//!   just before a pipeline of 100 SETs → webhook.
//! - `ha`: detection latency without `[ha]` and with it, side by side in
//!   one run. `--burst` keyspace rules (one per key prefix) fire from one
//!   pipeline of 100 SETs per prefix; the lease store is a second
//!   `redis-server`. Three phases: no `[ha]`; `[ha]` with the lease store
//!   answering at once; `[ha]` with the lease store slow (a thread keeps it
//!   busy in `DEBUG SLEEP <stall-ms>`). Latency: just before the pipeline →
//!   the first, and the last, of the burst's webhooks.
//! - `playbook`: in process, an `Invocation` handed to the real `Runner` →
//!   the playbook's first statement (`time.now()`) running.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redops::lab::process::{RedisProcess, RedisSpec};
use redops::lab::topology::Topology;

#[path = "common/proc.rs"]
mod proc;
use proc::{Proc, arg, redops_bin};
#[path = "common/hook.rs"]
mod hook;
use hook::{Got, Hook};

// ---------------------------------------------------------------------------
// Shared helpers

/// `redops run` as a child process; SIGTERM then SIGKILL on drop.
struct Redops {
    proc: Proc,
    log: PathBuf,
}

impl Redops {
    fn start(dir: &Path) -> Redops {
        let log = dir.join("redops.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(redops_bin())
            .arg("run")
            .arg("--config")
            .arg(dir.join("redops.toml"))
            .current_dir(dir)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "redops=info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", redops_bin().display()));
        Redops {
            proc: Proc { child },
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                panic!("redops exited ({status}):\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("redops did not log {needle:?} within {timeout:?}:\n{}", self.log());
    }
}

fn engine_dir(root: &Path, engine_extra: &str, config: &str, rules: &str) -> PathBuf {
    let dir = root.join("engine");
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    let text = format!(
        "[engine]\nrules_dir = \"rules\"\nplaybooks_dir = \"playbooks\"\nstate_dir = \"state\"\n{engine_extra}\n\n{config}"
    );
    std::fs::write(dir.join("redops.toml"), text).unwrap();
    std::fs::write(dir.join("rules/bench.toml"), rules).unwrap();
    dir
}

fn conn(addr: &str) -> redis::Connection {
    let c = redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

/// Nearest-rank percentile of an unsorted sample, in ms.
fn pct(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn summary(name: &str, samples: &[f64]) {
    if samples.is_empty() {
        println!("RESULT {name}: no samples");
        return;
    }
    println!(
        "RESULT {name}: n={} p50={:.2}ms p99={:.2}ms min={:.2}ms max={:.2}ms",
        samples.len(),
        pct(samples, 0.5),
        pct(samples, 0.99),
        pct(samples, 0.0),
        pct(samples, 1.0)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Milliseconds from the alert's `starts_at` (its evaluation) to its
/// arrival, both wall clock.
fn eval_to_arrival(g: &Got) -> Option<f64> {
    let starts = humantime::parse_rfc3339_weak(g.str("starts_at")).ok()?;
    Some(g.wall.duration_since(starts).ok()?.as_secs_f64() * 1e3)
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Pattern subscribers on `addr` other than ours, from CLIENT LIST.
fn psubscribers(addr: &str) -> usize {
    let mut c = conn(addr);
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap_or_default();
    list.lines().filter(|l| l.contains("psub=1")).count()
}

const FAILOVER_RULE: &str = r#"
[[rule]]
name = "failover"
source = "sentinel"
events = ["+switch-master"]
severity = "high"
summary = "Failover of {{ master }} from {{ old_ip }}:{{ old_port }} to {{ new_ip }}:{{ new_port }}"
"#;

fn group_config(sentinels: &[String], hook: &Hook) -> String {
    let list: Vec<String> = sentinels.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[[sentinel]]\nname = \"lab\"\nmaster = \"mymaster\"\nsentinels = [{}]\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        list.join(", "),
        hook.url()
    )
}

// ---------------------------------------------------------------------------
// sentinel-replay

fn sentinel_replay(args: &[String]) {
    let events: usize = arg(args, "--events", 50);
    let gap = Duration::from_millis(arg(args, "--gap-ms", 300));
    let tmp = tempfile::tempdir().unwrap();
    let standins: Vec<RedisProcess> = (0..3)
        .map(|i| RedisProcess::start(RedisSpec::new(tmp.path().join(format!("standin-{i}")))).unwrap())
        .collect();
    let addrs: Vec<String> = standins.iter().map(|s| s.addr()).collect();
    let hook = Hook::start();
    let dir = engine_dir(
        tmp.path(),
        "sample_interval = \"1s\"",
        &group_config(&addrs, &hook),
        FAILOVER_RULE,
    );
    let mut redops = Redops::start(&dir);
    redops.wait_log("Engine started", Duration::from_secs(20));
    let subscribed = wait_until(Duration::from_secs(20), || addrs.iter().all(|a| psubscribers(a) >= 1));
    assert!(
        subscribed,
        "redops never subscribed to the stand-ins:\n{}",
        redops.log()
    );
    let mut conns: Vec<redis::Connection> = addrs.iter().map(|a| conn(a)).collect();

    let mut latencies = Vec::new();
    let mut engine_part = Vec::new();
    let mut news = Vec::new();
    for i in 0..events {
        let (old, new) = (40_000 + i, 40_001 + i);
        let payload = format!("mymaster 127.0.0.1 {old} 127.0.0.1 {new}");
        let suffix = format!("to 127.0.0.1:{new}");
        let t0 = Instant::now();
        for c in conns.iter_mut() {
            let _: i64 = redis::cmd("PUBLISH")
                .arg("+switch-master")
                .arg(&payload)
                .query(c)
                .unwrap();
        }
        match hook.wait(Duration::from_secs(5), |g| g.str("summary").ends_with(&suffix)) {
            Some(g) => {
                latencies.push(ms(g.at.duration_since(t0)));
                if let Some(e) = eval_to_arrival(&g) {
                    engine_part.push(e);
                }
            }
            None => println!("event {i}: no notification within 5 s"),
        }
        news.push(suffix);
        thread::sleep(gap);
    }
    thread::sleep(Duration::from_secs(2));
    let all = hook.all();
    let per: Vec<usize> = news
        .iter()
        .map(|s| all.iter().filter(|g| g.str("summary").ends_with(s.as_str())).count())
        .collect();
    let other = all.len() - per.iter().sum::<usize>();
    println!(
        "latencies_ms {:?}",
        latencies
            .iter()
            .map(|l| (l * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    summary("sentinel-replay publish->webhook", &latencies);
    summary("sentinel-replay starts_at->webhook (wall, ms resolution)", &engine_part);
    let mut hist = BTreeMap::new();
    for p in &per {
        *hist.entry(*p).or_insert(0) += 1;
    }
    println!("RESULT notifications per incident (count -> incidents): {hist:?}; unrelated notifications: {other}");
    let dups = redops.log().matches("Duplicate Sentinel event dropped").count();
    println!(
        "redops log: {dups} duplicate copies dropped (debug only), warnings: {}",
        redops.log().matches(" WARN ").count()
    );
}

// ---------------------------------------------------------------------------
// sentinel-failover

struct Heard {
    at: Instant,
    payload: String,
}

fn sentinel_failover(args: &[String]) {
    let forced: usize = arg(args, "--forced", 10);
    let kills: usize = arg(args, "--kills", 3);
    let min_gap = Duration::from_secs(arg(args, "--min-gap-secs", 0));
    let curl = args.iter().any(|a| a == "--curl-baseline");
    let tmp = tempfile::tempdir().unwrap();
    let lab = Topology::start(&tmp.path().join("lab")).expect("lab topology");
    let sentinels = lab.sentinel_addrs();
    let hook = Hook::start();
    if curl {
        // The baseline: each Sentinel runs a client-reconfig-script that
        // POSTs with curl, to the same receiver (path /curl).
        let script = tmp.path().join("reconfig.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# <master> <role> <state> <from-ip> <from-port> <to-ip> <to-port>\n\
                 curl -s -m 5 -X POST -H 'Content-Type: application/json' \\\n  \
                 --data \"{{\\\"role\\\":\\\"$2\\\",\\\"to\\\":\\\"$6:$7\\\"}}\" http://127.0.0.1:{}/curl >/dev/null\nexit 0\n",
                hook.port
            ),
        )
        .unwrap();
        Command::new("chmod").arg("+x").arg(&script).status().unwrap();
        for s in lab.sentinels() {
            let conf = s.config_path();
            let text = std::fs::read_to_string(&conf).unwrap();
            std::fs::write(
                &conf,
                format!(
                    "{text}\nsentinel client-reconfig-script mymaster {}\n",
                    script.display()
                ),
            )
            .unwrap();
            s.restart().unwrap();
        }
        let agreed = wait_until(Duration::from_secs(30), || {
            sentinels.iter().all(|a| {
                let mut c = conn(a);
                let m: Vec<BTreeMap<String, String>> =
                    redis::cmd("SENTINEL").arg("MASTERS").query(&mut c).unwrap_or_default();
                m.first()
                    .and_then(|m| m.get("num-other-sentinels"))
                    .is_some_and(|n| n == "2")
            })
        });
        assert!(agreed, "Sentinels did not find each other again after the restart");
    }
    let dir = engine_dir(
        tmp.path(),
        "sample_interval = \"1s\"",
        &group_config(&sentinels, &hook),
        FAILOVER_RULE,
    );
    let mut redops = Redops::start(&dir);
    redops.wait_log("Engine started", Duration::from_secs(20));
    let subscribed = wait_until(Duration::from_secs(20), || {
        sentinels.iter().all(|a| psubscribers(a) >= 1)
    });
    assert!(
        subscribed,
        "redops never subscribed to the Sentinels:\n{}",
        redops.log()
    );

    // Our own subscribers, one per Sentinel.
    let heard: Arc<Mutex<Vec<Heard>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut subs = Vec::new();
    for addr in sentinels.clone() {
        let (heard, stop) = (heard.clone(), stop.clone());
        subs.push(thread::spawn(move || {
            let mut c = conn(&addr);
            c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let mut ps = c.as_pubsub();
            ps.psubscribe("+switch-master").unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(msg) = ps.get_message() {
                    let at = Instant::now();
                    let payload: String = msg.get_payload().unwrap_or_default();
                    heard.lock().unwrap().push(Heard { at, payload });
                }
            }
        }));
    }
    let ours = wait_until(Duration::from_secs(10), || {
        sentinels.iter().all(|a| psubscribers(a) >= 2)
    });
    assert!(ours, "own subscribers not up");

    let master_of = |s: &str| -> Option<String> {
        let mut c = conn(s);
        let r: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("mymaster")
            .query(&mut c)
            .ok()?;
        r.map(|(h, p)| format!("{h}:{p}"))
    };

    struct Incident {
        kind: &'static str,
        trigger: Instant,
        t0: Option<Instant>,
        new: String,
        latency: Option<f64>,
        engine: Option<f64>,
        curl_first: Option<f64>,
    }
    let mut incidents: Vec<Incident> = Vec::new();
    let started = Instant::now();
    for k in 0..forced + kills {
        let kind = if k < forced { "forced" } else { "kill" };
        if let Some(last) = incidents.last().and_then(|i| i.t0) {
            let wait = min_gap.saturating_sub(last.elapsed());
            thread::sleep(wait);
        }
        let Some(master) = master_of(&sentinels[0]) else {
            println!("incident {k}: no master known, stopping");
            break;
        };
        let seen_before = heard.lock().unwrap().len();
        let trigger = Instant::now();
        let mut killed: Option<&RedisProcess> = None;
        if kind == "forced" {
            // Sentinel answers NOGOODSLAVE until the old master is a synced
            // replica again and INPROG during a failover.
            let mut c = conn(&sentinels[0]);
            let ok = wait_until(Duration::from_secs(90), || {
                redis::cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg("mymaster")
                    .query::<()>(&mut c)
                    .is_ok()
            });
            if !ok {
                println!("incident {k}: SENTINEL FAILOVER refused for 90 s, stopping");
                break;
            }
        } else {
            // Wait for a replica Sentinel can promote, then kill the master.
            let mut c = conn(&sentinels[0]);
            let ready = wait_until(Duration::from_secs(90), || {
                let reps: Vec<BTreeMap<String, String>> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg("mymaster")
                    .query(&mut c)
                    .unwrap_or_default();
                reps.iter().any(|r| {
                    r.get("flags").map(String::as_str) == Some("slave")
                        && r.get("master-link-status").map(String::as_str) == Some("ok")
                })
            });
            if !ready {
                println!("incident {k}: no promotable replica for 90 s, stopping");
                break;
            }
            let node = [lab.master(), lab.replica()]
                .into_iter()
                .find(|n| n.addr() == master)
                .unwrap();
            node.kill().unwrap();
            killed = Some(node);
        }
        // The first +switch-master any Sentinel publishes for this failover.
        let mut t0 = None;
        let mut new = String::new();
        wait_until(Duration::from_secs(60), || {
            let h = heard.lock().unwrap();
            if let Some(first) = h[seen_before..].iter().min_by_key(|h| h.at) {
                t0 = Some(first.at);
                let f: Vec<&str> = first.payload.split_whitespace().collect();
                new = format!("{}:{}", f[3], f[4]);
                true
            } else {
                false
            }
        });
        let suffix = format!("to {new}");
        let got = t0.and_then(|_| {
            hook.wait(Duration::from_secs(10), |g| {
                g.path == "/hook" && g.at >= trigger && g.str("summary").ends_with(&suffix)
            })
        });
        let latency = match (t0, &got) {
            (Some(t0), Some(g)) => Some(ms(g.at.saturating_duration_since(t0))),
            _ => None,
        };
        let engine = got.as_ref().and_then(eval_to_arrival);
        let mut curl_first = None;
        if curl && let Some(t0) = t0 {
            let to = new.clone();
            curl_first = hook
                .wait(Duration::from_secs(5), |g| {
                    g.path == "/curl" && g.at >= trigger && g.str("to") == to
                })
                .map(|g| ms(g.at.saturating_duration_since(t0)));
        }
        println!(
            "incident {k} ({kind}): {master} -> {new}; trigger->+switch-master {:?} ms; +switch-master->webhook {:?} ms; curl script first {:?} ms",
            t0.map(|t| ms(t.duration_since(trigger)).round()),
            latency.map(|l| (l * 100.0).round() / 100.0),
            curl_first.map(|l| (l * 100.0).round() / 100.0)
        );
        if let Some(node) = killed {
            // Back as a replica of the new master, as an operator would.
            let conf = node.config_path();
            let (h, p) = new.split_once(':').unwrap_or(("127.0.0.1", "0"));
            let text = format!("{}\nreplicaof {h} {p}\n", std::fs::read_to_string(&conf).unwrap());
            std::fs::write(&conf, text).unwrap();
            node.restart().unwrap();
        }
        incidents.push(Incident {
            kind,
            trigger,
            t0,
            new,
            latency,
            engine,
            curl_first,
        });
        // Late copies from the other Sentinels arrive within ~2 s.
        thread::sleep(Duration::from_secs(3));
    }
    thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    for s in subs {
        let _ = s.join();
    }
    let all = hook.all();
    let end = Instant::now();
    let mut per = Vec::new();
    let mut per_curl = Vec::new();
    for (i, inc) in incidents.iter().enumerate() {
        let from = inc.trigger;
        let to = incidents.get(i + 1).map_or(end, |n| n.trigger);
        let within = |g: &&Got| g.at >= from && g.at < to;
        per.push(all.iter().filter(within).filter(|g| g.path == "/hook").count());
        per_curl.push(all.iter().filter(within).filter(|g| g.path == "/curl").count());
    }
    for kind in ["forced", "kill"] {
        let lat: Vec<f64> = incidents
            .iter()
            .filter(|i| i.kind == kind)
            .filter_map(|i| i.latency)
            .collect();
        let eng: Vec<f64> = incidents
            .iter()
            .filter(|i| i.kind == kind)
            .filter_map(|i| i.engine)
            .collect();
        summary(&format!("sentinel-failover {kind}: +switch-master->webhook"), &lat);
        summary(&format!("sentinel-failover {kind}: starts_at->webhook (wall)"), &eng);
    }
    let lat: Vec<f64> = incidents.iter().filter_map(|i| i.latency).collect();
    summary("sentinel-failover all: +switch-master->webhook", &lat);
    if curl {
        let c: Vec<f64> = incidents.iter().filter_map(|i| i.curl_first).collect();
        summary("curl client-reconfig-script all: +switch-master->first webhook", &c);
        let both: Vec<(f64, f64)> = incidents
            .iter()
            .filter_map(|i| Some((i.latency?, i.curl_first?)))
            .collect();
        let ratio: Vec<f64> = both.iter().map(|(r, c)| c / r).collect();
        summary("ratio curl first / redops, per failover (x, not ms)", &ratio);
        println!("RESULT curl webhooks per failover (in order): {per_curl:?}");
    }
    println!(
        "RESULT notifications per failover (in order): {per:?}; failovers {}; elapsed {:.0}s",
        incidents.len(),
        started.elapsed().as_secs_f64()
    );
    let news: Vec<&str> = incidents.iter().map(|i| i.new.as_str()).collect();
    println!("new masters in order: {news:?}");
    let log = redops.log();
    println!(
        "redops log: 'Sentinel event' lines {}, reconciled failovers {}",
        log.matches("Sentinel event").count(),
        log.matches("Master changed while redops was not listening").count()
    );
}

// ---------------------------------------------------------------------------
// sampled

fn sampled(args: &[String]) {
    let trials: usize = arg(args, "--trials", 20);
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisProcess::start(RedisSpec::new(tmp.path().join("redis"))).unwrap();
    let hook = Hook::start();
    let config = format!(
        "[[target]]\nname = \"t\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url()
    );
    let rules = r#"
[[rule]]
name = "marker_set"
source = "sample"
when = "marker >= 1"
for = "0s"
severity = "warning"
summary = "marker is {{ marker }}"
"#;
    let dir = engine_dir(tmp.path(), "sample_interval = \"1s\"", &config, rules);
    let mut redops = Redops::start(&dir);
    redops.wait_log("Engine started", Duration::from_secs(20));
    let mut c = conn(&redis.addr());
    let _: () = redis::cmd("SET").arg("marker").arg(0).query(&mut c).unwrap();
    thread::sleep(Duration::from_secs(3));
    let mut latencies = Vec::new();
    let mut engine_part = Vec::new();
    for i in 0..trials {
        // Spread the SET over the sampling period.
        thread::sleep(Duration::from_millis(
            ((i * 7919) % trials) as u64 * 1000 / trials as u64,
        ));
        let t0 = Instant::now();
        let _: () = redis::cmd("SET").arg("marker").arg(1).query(&mut c).unwrap();
        let fired = hook.wait(Duration::from_secs(5), |g| g.at >= t0 && g.str("status") == "firing");
        match fired {
            Some(g) => {
                latencies.push(ms(g.at.duration_since(t0)));
                engine_part.extend(eval_to_arrival(&g));
            }
            None => println!("trial {i}: no firing notification within 5 s"),
        }
        let t1 = Instant::now();
        let _: () = redis::cmd("SET").arg("marker").arg(0).query(&mut c).unwrap();
        if hook
            .wait(Duration::from_secs(5), |g| g.at >= t1 && g.str("status") == "resolved")
            .is_none()
        {
            println!("trial {i}: no resolve within 5 s");
        }
    }
    println!(
        "latencies_ms {:?}",
        latencies.iter().map(|l| l.round()).collect::<Vec<_>>()
    );
    summary("sampled (1 s) SET->webhook", &latencies);
    summary("sampled starts_at->webhook (wall)", &engine_part);
}

// ---------------------------------------------------------------------------
// keyspace

fn keyspace(args: &[String]) {
    let trials: usize = arg(args, "--trials", 20);
    let tick: String = arg(args, "--tick", "10ms".to_string());
    let tick_d = humantime::parse_duration(&tick).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisProcess::start(RedisSpec::new(tmp.path().join("redis"))).unwrap();
    let hook = Hook::start();
    let config = format!(
        "[[target]]\nname = \"t\"\nurl = \"{}\"\nkeyspace_events = \"E$\"\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url()
    );
    let rules = r#"
[[rule]]
name = "kprobe_burst"
source = "keyspace"
events = ["set"]
keys = "kprobe:*"
window = "1s"
when = "count >= 100"
severity = "warning"
summary = "{{ count }} kprobe sets in 1s"
"#;
    let dir = engine_dir(
        tmp.path(),
        &format!("sample_interval = \"5s\"\nkeyspace_tick = \"{tick}\""),
        &config,
        rules,
    );
    let mut redops = Redops::start(&dir);
    redops.wait_log("Keyspace subscription active", Duration::from_secs(20));
    let mut c = conn(&redis.addr());
    thread::sleep(Duration::from_secs(2));
    let mut from_send = Vec::new();
    let mut from_reply = Vec::new();
    let mut engine_part = Vec::new();
    for i in 0..trials {
        thread::sleep(tick_d.mul_f64(((i * 7919) % trials) as f64 / trials as f64));
        let mut pipe = redis::pipe();
        for j in 0..100 {
            pipe.cmd("SET").arg(format!("kprobe:{i}:{j}")).arg(1).ignore();
        }
        let t0 = Instant::now();
        let _: () = pipe.query(&mut c).unwrap();
        let t1 = Instant::now();
        match hook.wait(Duration::from_secs(5), |g| g.at >= t0 && g.str("status") == "firing") {
            Some(g) => {
                from_send.push(ms(g.at.duration_since(t0)));
                from_reply.push(ms(g.at.saturating_duration_since(t1)));
                engine_part.extend(eval_to_arrival(&g));
            }
            None => println!("trial {i}: no firing notification within 5 s"),
        }
        let t2 = Instant::now();
        if hook
            .wait(Duration::from_secs(5), |g| g.at >= t2 && g.str("status") == "resolved")
            .is_none()
        {
            println!("trial {i}: no resolve within 5 s");
        }
    }
    println!(
        "latencies_ms {:?}",
        from_send.iter().map(|l| (l * 10.0).round() / 10.0).collect::<Vec<_>>()
    );
    summary(&format!("keyspace tick={tick}: pipeline sent->webhook"), &from_send);
    summary(&format!("keyspace tick={tick}: pipeline reply->webhook"), &from_reply);
    summary(
        &format!("keyspace tick={tick}: starts_at->webhook (wall)"),
        &engine_part,
    );
}

// ---------------------------------------------------------------------------
// ha

/// One phase of the `ha` bench: per trial, pipeline sent → first and → last
/// firing webhook of the burst.
struct HaPhase {
    name: &'static str,
    first: Vec<f64>,
    last: Vec<f64>,
}

fn ha(args: &[String]) {
    let trials: usize = arg(args, "--trials", 20);
    let burst: usize = arg(args, "--burst", 4);
    let stall_ms: u64 = arg(args, "--stall-ms", 100);
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisProcess::start(RedisSpec::new(tmp.path().join("redis"))).unwrap();
    let lease =
        RedisProcess::start(RedisSpec::new(tmp.path().join("lease")).with("enable-debug-command", "yes")).unwrap();
    let hook = Hook::start();
    let rules: String = (0..burst)
        .map(|k| {
            format!(
                "[[rule]]\nname = \"burst_{k}\"\nsource = \"keyspace\"\nevents = [\"set\"]\nkeys = \"kp{k}:*\"\nwindow = \"1s\"\nwhen = \"count >= 100\"\nseverity = \"warning\"\nsummary = \"{{{{ count }}}} kp{k} sets in 1s\"\n\n"
            )
        })
        .collect();
    let base = format!(
        "[[target]]\nname = \"t\"\nurl = \"{}\"\nkeyspace_events = \"E$\"\n\n[[target]]\nname = \"lease\"\nurl = \"{}\"\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        lease.url(0),
        hook.url()
    );
    let ha_section = "\n[ha]\nenabled = true\nlease_on = \"lease\"\nlease_ttl = \"30s\"\ninstance_id = \"bench\"\n";
    let mut phases = Vec::new();
    for (name, with_ha, stall) in [
        ("no [ha]", false, false),
        ("[ha], lease store answering", true, false),
        ("[ha], lease store slow", true, true),
    ] {
        let root = tmp.path().join(name.replace([' ', '[', ']', ','], ""));
        let config = if with_ha {
            format!("{base}{ha_section}")
        } else {
            base.clone()
        };
        let dir = engine_dir(
            &root,
            "sample_interval = \"5s\"\nkeyspace_tick = \"10ms\"",
            &config,
            &rules,
        );
        // A firing of the last phase, within the episode window of the
        // next one's, would be taken for the same firing, and not paged.
        let _: () = redis::cmd("FLUSHALL").query(&mut conn(&lease.addr())).unwrap();
        let mut redops = Redops::start(&dir);
        redops.wait_log("Keyspace subscription active", Duration::from_secs(20));
        if with_ha {
            redops.wait_log("HA: became the leader", Duration::from_secs(20));
        }
        let stalling = Arc::new(AtomicBool::new(stall));
        let staller = stall.then(|| {
            let (addr, stalling) = (lease.addr(), stalling.clone());
            thread::spawn(move || {
                let mut c = conn(&addr);
                while stalling.load(Ordering::Relaxed) {
                    let _: redis::RedisResult<()> = redis::cmd("DEBUG")
                        .arg("SLEEP")
                        .arg(stall_ms as f64 / 1000.0)
                        .query(&mut c);
                }
            })
        });
        let mut c = conn(&redis.addr());
        thread::sleep(Duration::from_secs(2));
        hook.clear();
        let mut phase = HaPhase {
            name,
            first: Vec::new(),
            last: Vec::new(),
        };
        for i in 0..trials {
            thread::sleep(Duration::from_millis(((i * 7919) % trials) as u64 * 10 / trials as u64));
            let mut pipe = redis::pipe();
            for k in 0..burst {
                for j in 0..100 {
                    pipe.cmd("SET").arg(format!("kp{k}:{i}:{j}")).arg(1).ignore();
                }
            }
            let t0 = Instant::now();
            let _: () = pipe.query(&mut c).unwrap();
            let all_fired = wait_until(Duration::from_secs(20), || {
                hook.all()
                    .iter()
                    .filter(|g| g.at >= t0 && g.str("status") == "firing")
                    .count()
                    >= burst
            });
            let fired: Vec<f64> = hook
                .all()
                .iter()
                .filter(|g| g.at >= t0 && g.str("status") == "firing")
                .map(|g| ms(g.at.duration_since(t0)))
                .collect();
            if !all_fired {
                println!(
                    "{name} trial {i}: {} of {burst} firing notifications within 20 s",
                    fired.len()
                );
                continue;
            }
            phase.first.push(fired.iter().copied().fold(f64::MAX, f64::min));
            phase.last.push(fired.iter().copied().fold(0.0, f64::max));
            let t1 = Instant::now();
            let resolved = wait_until(Duration::from_secs(20), || {
                hook.all()
                    .iter()
                    .filter(|g| g.at >= t1 && g.str("status") == "resolved")
                    .count()
                    >= burst
            });
            if !resolved {
                println!("{name} trial {i}: not every alert resolved within 20 s");
            }
        }
        stalling.store(false, Ordering::Relaxed);
        if let Some(s) = staller {
            let _ = s.join();
        }
        let log = redops.log();
        println!(
            "{name}: redops log warnings {}, 'alert start not shared' {}",
            log.matches(" WARN ").count(),
            log.matches("alert start not shared").count()
        );
        drop(redops);
        summary(&format!("ha: {name}: pipeline->first webhook of {burst}"), &phase.first);
        summary(&format!("ha: {name}: pipeline->last webhook of {burst}"), &phase.last);
        phases.push(phase);
    }
    let base = &phases[0];
    for p in &phases[1..] {
        println!(
            "RESULT ratio p50 ({} / {}): first {:.2}x, last {:.2}x",
            p.name,
            base.name,
            pct(&p.first, 0.5) / pct(&base.first, 0.5),
            pct(&p.last, 0.5) / pct(&base.last, 0.5)
        );
    }
}

// ---------------------------------------------------------------------------
// playbook

fn playbook(args: &[String]) {
    use redops::config::Config;
    use redops::diagnostics::{Diagnostics, SourceFile};
    use redops::invocation::Invocation;
    use redops::notify::Notifier;
    use redops::outbox::Outbox;
    use redops::playbooks::engine::PlaybookEngine;
    use redops::playbooks::runner::Runner;
    use redops::store::Store;

    let trials: usize = arg(args, "--trials", 1000);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("playbooks")).unwrap();
    // The first statement stamps the time; the value is the run's result.
    std::fs::write(tmp.path().join("playbooks/first_line.rhai"), "time.now()\n").unwrap();
    let text = "[[target]]\nname = \"t\"\nurl = \"redis://127.0.0.1:1/0\"\n\n[receiver.log]\ntype = \"log\"\n";
    let config = Config::parse(
        &SourceFile::new("bench.toml", text.to_string()),
        &mut Diagnostics::default(),
    )
    .expect("config parses");
    let engine = Arc::new(PlaybookEngine::new(&config.playbooks));
    let mut diags = Diagnostics::default();
    let set = engine.load_dir(&tmp.path().join("playbooks"), &mut diags);
    assert!(set.get("first_line").is_some(), "playbook did not compile");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let samples = rt.block_on(async move {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (notifier, handle) = Notifier::spawn(
            &config.receivers,
            Outbox::open(Store::in_memory()).unwrap(),
            None,
            shutdown.clone(),
        )
        .unwrap();
        let runner = Runner::new(&config, engine, set, notifier.clone(), false);
        let (inv_tx, inv_rx) = tokio::sync::mpsc::channel(16);
        let (rec_tx, mut rec_rx) = tokio::sync::mpsc::channel(16);
        let task = tokio::spawn(runner.run(inv_rx, rec_tx));
        let alert = redops::alerts::Alert {
            fingerprint: redops::alerts::fingerprint("bench", "t"),
            rule: "bench".into(),
            target: "t".into(),
            severity: redops::alerts::Severity::High,
            status: redops::alerts::AlertStatus::Firing,
            labels: [("rule", "bench"), ("target", "t")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            summary: "bench".into(),
            value: None,
            starts_at: SystemTime::now(),
            ends_at: None,
            runbook: None,
            description: None,
            annotations: Default::default(),
        };
        let mut samples = Vec::new();
        for _ in 0..trials {
            let inv = Invocation {
                playbook: "first_line".into(),
                rule: "bench".into(),
                target: "t".into(),
                params: BTreeMap::new(),
                alert: Some(alert.clone()),
            };
            let t0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
            inv_tx.send(inv).await.unwrap();
            let rec = tokio::time::timeout(Duration::from_secs(5), rec_rx.recv())
                .await
                .expect("run within 5 s")
                .expect("record");
            if let redops::invocation::RunOutcome::Succeeded { result } = &rec.outcome
                && let Ok(t1) = result.parse::<f64>()
            {
                samples.push((t1 - t0) * 1e3);
            }
        }
        drop(inv_tx);
        let _ = task.await;
        shutdown.cancel();
        drop(notifier);
        handle.join().await;
        samples
    });
    summary("playbook invocation->first statement", &samples);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    println!(
        "bench_latency {mode}: binary {} (modified {:?})",
        redops_bin().display(),
        std::fs::metadata(redops_bin()).and_then(|m| m.modified()).ok()
    );
    let _ = std::io::stdout().flush();
    match mode.as_str() {
        "sentinel-replay" => sentinel_replay(&args),
        "sentinel-failover" => sentinel_failover(&args),
        "sampled" => sampled(&args),
        "keyspace" => keyspace(&args),
        "playbook" => playbook(&args),
        "ha" => ha(&args),
        _ => {
            eprintln!("usage: bench_latency sentinel-replay|sentinel-failover|sampled|keyspace|playbook|ha [options]");
            std::process::exit(2);
        }
    }
}
