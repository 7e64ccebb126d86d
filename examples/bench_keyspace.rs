//! Keyspace firehose (issues 8 and 15): `redis-benchmark -t set -n 1000000
//! -P 16 -r 1000000` against a server publishing `E$` keyevents, counted in
//! the same storm, side by side, by one real `redops` process per keyspace
//! reader (`[engine] keyspace_reader = "resp"` and `"redis-rs"`), each with
//! 100 keyspace rules, and by a plain redis-py subscriber
//! (`scripts/redis_py_subscriber.py`), while a CPU hog the bench starts
//! (`--hog N` busy-loop `sh` processes, 2 by default: both cores of the
//! reference box) competes with all of them.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/bench_keyspace [--requests 1000000] [--readers resp,redis-rs]
//!     [--hog 2] [--no-python]
//! ```
//!
//! What each redops counted is read from what it pages: seven of the 100
//! rules count every `set` (window 10m) with thresholds from 50 % to 100 % of
//! the requests and quote `{{ count }}`; the highest that fires bounds the
//! count. The other 93 rules (prefix, class, `?`, suffix and exact globs,
//! window 1m) never fire and are there to be matched. CPU per event is the
//! process's utime + stime over the run divided by the events it counted;
//! for the RESP reader also that of its own thread (`redops-keyspace`, from
//! /proc/PID/task), the rest being the evaluator, sampler and webhooks that
//! both processes run alike.
//! Disconnections are read from `CLIENT LIST` (sampled every 100 ms: client
//! ids and output buffer per subscriber, told apart by protocol: the RESP
//! reader speaks RESP2, redis-rs RESP3, redis-py names itself), the server's
//! log and each redops's log.
//!
//! `REDOPS_BIN` names the binary (default `target/release/redops`); `PYTHON`
//! the interpreter with redis-py (default `python3`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use redops::lab::process::{RedisProcess, RedisSpec};

#[path = "common/proc.rs"]
mod proc;
use proc::{Proc, arg, cpu_secs, redops_bin, thread_cpu_secs, vm};
use redops::sources::keyspace::READER_THREAD;
#[path = "common/hook.rs"]
mod hook;
use hook::Hook;

fn conn(addr: &str) -> redis::Connection {
    let c = redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

/// The 100 rules: 7 counting tiers and 93 matched-but-silent selectors.
fn rules(requests: u64) -> (String, Vec<(String, u64)>) {
    let mut text = String::new();
    let mut tiers = Vec::new();
    // 50 %, 90 %, 99 %, 99.9 %, 99.99 %, 99.999 %, 100 % (parts per million).
    for (i, ppm) in [500_000u64, 900_000, 990_000, 999_000, 999_900, 999_990, 1_000_000]
        .iter()
        .enumerate()
    {
        let threshold = requests * ppm / 1_000_000;
        let name = format!("all_sets_{i}");
        text.push_str(&format!(
            "[[rule]]\nname = \"{name}\"\nsource = \"keyspace\"\nevents = [\"set\"]\nkeys = \"*\"\nwindow = \"10m\"\n\
             when = \"count >= {threshold}\"\nseverity = \"info\"\nsummary = \"{{{{ count }}}}\"\n\n"
        ));
        tiers.push((name, threshold));
    }
    let mut globs = Vec::new();
    for d in 0..10 {
        globs.push(format!("key:000000{d}*")); // prefix: a tenth of the keys each
        globs.push(format!("key:*{d}")); // suffix: general matcher
        globs.push(format!("key:000000[0-{d}]*")); // class
        globs.push(format!("key:0000001?{d}*")); // ?
        globs.push(format!("*:00000{d}*")); // leading star
        globs.push(format!("key:000000{d:06}")); // exact
        globs.push(format!("key:*{d}{d}")); // suffix, two digits
        globs.push(format!("user:{d}*")); // prefix that never matches
        globs.push(format!("key:0000005{d}*"));
        globs.push(format!("key:[^{d}]*"));
    }
    globs.truncate(93);
    for (i, g) in globs.iter().enumerate() {
        text.push_str(&format!(
            "[[rule]]\nname = \"sel_{i}\"\nsource = \"keyspace\"\nevents = [\"set\"]\nkeys = \"{g}\"\nwindow = \"1m\"\n\
             when = \"count > 1000000000\"\nseverity = \"info\"\n\n"
        ));
    }
    (text, tiers)
}

/// What `CLIENT LIST` showed of one kind of subscriber.
#[derive(Default, Debug, Clone)]
struct Seen {
    /// Distinct client ids: more than one means it reconnected.
    ids: Vec<u64>,
    max_omem: u64,
}

#[derive(Default, Debug)]
struct Watch {
    /// By subscriber: "resp" (RESP2), "redis-rs" (RESP3), "python".
    seen: std::collections::BTreeMap<&'static str, Seen>,
    py_max_rss_mib: f64,
}

fn watch_clients(addr: &str, stop: &AtomicBool, py_pid: Option<u32>) -> Watch {
    let mut c = conn(addr);
    let mut w = Watch::default();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if let Some(rss) = py_pid.and_then(|p| vm(p, "VmRSS")) {
            w.py_max_rss_mib = w.py_max_rss_mib.max(rss);
        }
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap_or_default();
        for line in list.lines().filter(|l| l.contains("psub=1")) {
            let field = |k: &str| -> Option<&str> {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            };
            let id: u64 = field("id").and_then(|v| v.parse().ok()).unwrap_or(0);
            let omem: u64 = field("omem").and_then(|v| v.parse().ok()).unwrap_or(0);
            let who = match (field("name"), field("resp")) {
                (Some("pybench"), _) => "python",
                (_, Some("3")) => "redis-rs",
                _ => "resp",
            };
            let seen = w.seen.entry(who).or_default();
            if !seen.ids.contains(&id) {
                seen.ids.push(id);
            }
            seen.max_omem = seen.max_omem.max(omem);
        }
        thread::sleep(Duration::from_millis(100));
    }
    w
}

/// One redops process counting with one reader, and its webhook receiver.
struct Counter {
    reader: String,
    hook: Hook,
    log: std::path::PathBuf,
    redops: Proc,
}

impl Counter {
    fn start(root: &Path, reader: &str, redis_url: &str, rules: &str) -> Counter {
        let hook = Hook::start();
        let dir = root.join(format!("engine-{reader}"));
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        std::fs::create_dir_all(dir.join("playbooks")).unwrap();
        std::fs::write(
            dir.join("redops.toml"),
            format!(
                "[engine]\nrules_dir = \"rules\"\nplaybooks_dir = \"playbooks\"\nstate_dir = \"state\"\nsample_interval = \"5s\"\n\
                 keyspace_reader = \"{reader}\"\n\n\
                 [[target]]\nname = \"t\"\nurl = \"{redis_url}\"\nkeyspace_events = \"E$\"\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
                hook.url()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("rules/firehose.toml"), rules).unwrap();
        let log = dir.join("redops.log");
        let file = std::fs::File::create(&log).unwrap();
        let redops = Proc {
            child: Command::new(redops_bin())
                .args(["run", "--config"])
                .arg(dir.join("redops.toml"))
                .current_dir(&dir)
                .env("RUST_LOG", "redops=info")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("redops"),
        };
        Counter {
            reader: reader.to_owned(),
            hook,
            log,
            redops,
        }
    }

    fn pid(&self) -> u32 {
        self.redops.child.id()
    }

    fn read_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_subscribed(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.read_log().contains("Keyspace subscription active") {
            assert!(
                Instant::now() < deadline,
                "redops did not subscribe:\n{}",
                self.read_log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        let log = self.read_log();
        let active = log
            .lines()
            .find(|l| l.contains("Keyspace subscription active"))
            .unwrap_or("");
        println!("redops ({}): {}", self.reader, active.trim());
    }

    fn top_fired(&self, top: &str) -> bool {
        self.hook.all().iter().any(|g| g.body["rule"] == top)
    }

    /// The highest tier that fired: (rule, threshold, seconds after `t0`, quoted count).
    fn best(&self, tiers: &[(String, u64)], t0: Instant) -> Option<(String, u64, f64, String)> {
        let all = self.hook.all();
        let mut best = None;
        for (name, threshold) in tiers {
            if let Some(g) = all
                .iter()
                .find(|g| g.body["rule"] == name.as_str() && g.body["status"] == "firing")
            {
                let at = g.at.duration_since(t0).as_secs_f64();
                let count = g.body["summary"].as_str().unwrap_or("").to_string();
                println!(
                    "  {}: tier {name} (count >= {threshold}) fired at +{at:.3} s, count {count}",
                    self.reader
                );
                best = Some((name.clone(), *threshold, at, count));
            } else {
                println!("  {}: tier {name} (count >= {threshold}) did NOT fire", self.reader);
            }
        }
        best
    }
}

/// Busy loops, one process each, killed on drop.
fn start_hog(n: usize) -> Vec<Proc> {
    (0..n)
        .map(|_| Proc {
            child: Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .spawn()
                .expect("sh"),
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let requests: u64 = arg(&args, "--requests", 1_000_000);
    let python = !args.iter().any(|a| a == "--no-python");
    let hog: usize = arg(&args, "--hog", 2);
    let readers: String = arg(&args, "--readers", "resp,redis-rs".to_owned());
    println!(
        "bench_keyspace: binary {} (modified {:?}), {requests} SETs, readers {readers}, hog {hog} busy loops, load average before: {}",
        redops_bin().display(),
        std::fs::metadata(redops_bin()).and_then(|m| m.modified()).ok(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );

    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisProcess::start(RedisSpec::new(tmp.path().join("redis")).with("notify-keyspace-events", "E$"))
        .expect("redis-server");
    let addr = redis.addr();
    let (text, tiers) = rules(requests);
    let counters: Vec<Counter> = readers
        .split(',')
        .map(|r| Counter::start(tmp.path(), r.trim(), &redis.url(0), &text))
        .collect();
    counters.iter().for_each(Counter::wait_subscribed);

    let mut py = None;
    let mut py_pid = None;
    if python {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/redis_py_subscriber.py");
        let interpreter = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(interpreter)
            .arg(script)
            .args(["--port", &redis.port().to_string(), "--silence", "5"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "python subscriber: {line}");
        py_pid = Some(child.id());
        py = Some((Proc { child }, out));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, addr) = (stop.clone(), addr.clone());
        thread::spawn(move || watch_clients(&addr, &stop, py_pid))
    };

    let hogs = start_hog(hog);
    let cpu0: Vec<f64> = counters.iter().map(|c| cpu_secs(c.pid()).unwrap()).collect();
    let reader_cpu = |c: &Counter| thread_cpu_secs(c.pid(), READER_THREAD).unwrap_or(0.0);
    let thread0: Vec<f64> = counters.iter().map(reader_cpu).collect();
    let t_start = Instant::now();
    let wall_start = SystemTime::now();
    let bench = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &redis.port().to_string()])
        .args([
            "-t",
            "set",
            "-n",
            &requests.to_string(),
            "-P",
            "16",
            "-r",
            "1000000",
            "-q",
        ])
        .output()
        .expect("redis-benchmark");
    let bench_secs = t_start.elapsed().as_secs_f64();
    let bench_out = String::from_utf8_lossy(&bench.stdout);
    let bench_line = bench_out.rsplit('\r').next().unwrap_or("").trim().to_string();
    println!("redis-benchmark: {bench_line} ({bench_secs:.2} s)");

    // Wait for the tiers to stop firing: until every top tier fired or 15 s
    // pass without a new page (at most 120 s).
    let top = tiers.last().unwrap().0.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_change = Instant::now();
    let mut seen = 0;
    loop {
        if counters.iter().all(|c| c.top_fired(&top)) {
            break;
        }
        let pages: usize = counters.iter().map(|c| c.hook.all().len()).sum();
        if pages != seen {
            seen = pages;
            last_change = Instant::now();
        }
        if last_change.elapsed() > Duration::from_secs(15) || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let cpu1: Vec<f64> = counters.iter().map(|c| cpu_secs(c.pid()).unwrap()).collect();
    let thread1: Vec<f64> = counters.iter().map(reader_cpu).collect();
    drop(hogs);

    let mut py_result = serde_json::Value::Null;
    if let Some((mut proc_, mut out)) = py.take() {
        let mut line = String::new();
        // The subscriber exits after 5 s of silence (bounded by its own max).
        let _ = out.read_line(&mut line);
        py_result = serde_json::from_str(line.trim()).unwrap_or(serde_json::Value::Null);
        let _ = proc_.child.wait();
    }
    stop.store(true, Ordering::Relaxed);
    let w = watcher.join().unwrap();

    println!("--- results ({} busy loops held the CPU during the storm)", hog);
    let mut counted_by = Vec::new();
    for (i, c) in counters.iter().enumerate() {
        let best = c.best(&tiers, t_start);
        let cpu = cpu1[i] - cpu0[i];
        let hwm = vm(c.pid(), "VmHWM").unwrap_or(0.0);
        let lost = c.read_log().matches("Keyspace subscription lost").count();
        let seen = w.seen.get(c.reader.as_str()).cloned().unwrap_or_default();
        match &best {
            Some((name, threshold, at, count)) => {
                let counted: f64 = count.parse().unwrap_or(*threshold as f64);
                counted_by.push((c.reader.clone(), counted));
                println!(
                    "RESULT {} counted >= {counted} of {requests} ({:.3} %), highest tier {name} at +{at:.3} s => {:.0} events/s; CPU {cpu:.2} s => {:.3} us/event; VmHWM {hwm:.1} MiB; client ids {:?}, max omem {} B, 'subscription lost' {lost}",
                    c.reader,
                    counted * 100.0 / requests as f64,
                    counted / at,
                    cpu * 1e6 / counted,
                    seen.ids,
                    seen.max_omem
                );
                let thread = thread1[i] - thread0[i];
                if thread > 0.0 {
                    println!(
                        "RESULT {} reader thread `{READER_THREAD}`: CPU {thread:.2} s => {:.3} us/event; the rest of the process {:.2} s => {:.3} us/event",
                        c.reader,
                        thread * 1e6 / counted,
                        cpu - thread,
                        (cpu - thread) * 1e6 / counted
                    );
                }
            }
            None => println!(
                "RESULT {}: no tier fired (counted < 50 %); CPU {cpu:.2} s; client ids {:?}, max omem {} B, 'subscription lost' {lost}",
                c.reader, seen.ids, seen.max_omem
            ),
        }
    }
    if let [(a, x), (b, y)] = &counted_by[..] {
        println!("RESULT ratio {a}/{b} counted: {:.3}", x / y);
    }
    if python {
        let count = py_result["count"].as_u64().unwrap_or(0);
        let span = match (py_result["first"].as_f64(), py_result["last"].as_f64()) {
            (Some(_), Some(l)) => {
                let start = wall_start.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
                l - start
            }
            _ => 0.0,
        };
        let seen = w.seen.get("python").cloned().unwrap_or_default();
        println!(
            "RESULT python redis-py received {count} of {requests} ({:.3} %), last message at +{span:.2} s => {:.0} events/s, CPU {:.2} s (whole process) => {:.3} us/event, max RSS {:.1} MiB, disconnected: {}, client ids {:?}, max omem {} B",
            count as f64 * 100.0 / requests as f64,
            if span > 0.0 { count as f64 / span } else { 0.0 },
            py_result["cpu"].as_f64().unwrap_or(f64::NAN),
            py_result["cpu"].as_f64().unwrap_or(f64::NAN) * 1e6 / count_or_one(Some(count)),
            py_result["maxrss_mib"].as_f64().unwrap_or(w.py_max_rss_mib),
            py_result["disconnected"],
            seen.ids,
            seen.max_omem
        );
        for (reader, counted) in &counted_by {
            println!(
                "RESULT ratio {reader}/python counted: {:.2}",
                counted / count_or_one(Some(count))
            );
        }
    }
    let mut c = conn(&addr);
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    let obl = stats
        .lines()
        .find(|l| l.starts_with("client_output_buffer_limit_disconnections"))
        .unwrap_or("client_output_buffer_limit_disconnections: (not reported by this Redis)")
        .to_string();
    let server_log = std::fs::read_to_string(redis.log_path()).unwrap_or_default();
    let closed = server_log
        .lines()
        .filter(|l| l.contains("output buffer") || l.contains("closed ASAP"))
        .collect::<Vec<_>>();
    println!("RESULT server: {obl}; log lines about closed clients: {}", closed.len());
    for l in closed.iter().take(5) {
        println!("  server log: {l}");
    }
}

fn count_or_one(c: Option<u64>) -> f64 {
    c.filter(|c| *c > 0).unwrap_or(1) as f64
}
