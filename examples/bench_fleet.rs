//! Fleet (issue 8, figure 4): one `redops` samples many targets every second.
//! How much of one core does it use, and does it miss sample deadlines?
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/bench_fleet [--targets 1000] [--real 150] [--warmup-secs 15] [--secs 60]
//! ```
//!
//! - `--real` targets are real `redis-server` processes (`hz 1`, so that 150
//!   idle servers do not take the CPU the measurement needs; each ~3 MB).
//! - The rest are served by an in-process RESP responder, one loopback port
//!   each, that answers what redops sends a target: `INFO` with a full
//!   `INFO ALL` text captured from a real redis-server 7.0.15
//!   (`tests/fixtures/info_all_master.txt`, 6.3 KB, 201 fields, more than
//!   plain `INFO` gives), `CONFIG GET maxmemory maxclients`, `CLIENT
//!   SETINFO`, `PING`, and for the keyspace subscription `HELLO 3` and
//!   `PSUBSCRIBE` (no event is ever published). Any other command is answered
//!   with an error and listed at the end.
//! - redops runs the shipped `rules/` and `playbooks/` (so each target also
//!   holds an idle keyspace subscription, for `eviction_storm`) with
//!   `sample_interval = "1s"`.
//!
//! Measured after the warm-up, over `--secs`: redops' CPU (utime + stime
//! from /proc) as a percentage of one core, and the samples each target got
//! (real servers: `cmdstat_info` calls; responders: each `INFO`'s arrival).
//! A missed deadline is a target with fewer samples than whole seconds in
//! the window, less one for the window's edges, or (responders, where each
//! sample's time is known) a sample that started more than one interval
//! late: a gap of more than 2 s after the previous one.
//!
//! `REDOPS_BIN` names the binary (default `target/release/redops`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use redops::lab::process::{RedisProcess, RedisSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "common/proc.rs"]
mod proc;
use proc::{Proc, arg, cpu_secs, redops_bin};
#[path = "common/hook.rs"]
mod hook;
use hook::Hook;

const INFO_ALL: &str = include_str!("../tests/fixtures/info_all_master.txt");

// ---------------------------------------------------------------------------
// The RESP responder

/// What the responders saw: each target's `INFO` arrival times, and the
/// commands they could not answer.
#[derive(Default)]
struct Seen {
    info_at: Vec<Mutex<Vec<Instant>>>,
    unknown: Mutex<BTreeSet<String>>,
}

/// Serves `n` fake targets on a runtime of its own thread; their ports.
fn start_responders(n: usize) -> (Vec<u16>, Arc<Seen>) {
    let seen = Arc::new(Seen {
        info_at: (0..n).map(|_| Mutex::default()).collect(),
        unknown: Mutex::default(),
    });
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind responder");
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect();
    let ports = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    let s = seen.clone();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            for (i, l) in listeners.into_iter().enumerate() {
                let listener = tokio::net::TcpListener::from_std(l).unwrap();
                let s = s.clone();
                tokio::spawn(async move {
                    while let Ok((socket, _)) = listener.accept().await {
                        tokio::spawn(serve(socket, i, s.clone()));
                    }
                });
            }
            std::future::pending::<()>().await;
        });
    });
    (ports, seen)
}

async fn serve(mut socket: tokio::net::TcpStream, target: usize, seen: Arc<Seen>) {
    let info = INFO_ALL.replace("\r\n", "\n").replace('\n', "\r\n");
    let info_reply = format!("${}\r\n{info}\r\n", info.len());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((args, used)) = parse_command(&buf) {
            buf.drain(..used);
            let reply = answer(&args, target, &seen, &info_reply);
            if socket.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn answer(args: &[String], target: usize, seen: &Seen, info_reply: &str) -> String {
    let upper: Vec<String> = args.iter().map(|a| a.to_ascii_uppercase()).collect();
    let words: Vec<&str> = upper.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["INFO", ..] => {
            seen.info_at[target].lock().unwrap().push(Instant::now());
            info_reply.to_owned()
        }
        ["PING", ..] => "+PONG\r\n".into(),
        ["CLIENT", "SETINFO", ..] => "+OK\r\n".into(),
        ["CONFIG", "GET", ..] => {
            let mut out = String::new();
            let mut n = 0;
            for name in &args[2..] {
                let value = match name.to_ascii_lowercase().as_str() {
                    "maxmemory" => "268435456",
                    "maxclients" => "10000",
                    _ => continue,
                };
                out.push_str(&format!(
                    "${}\r\n{}\r\n${}\r\n{value}\r\n",
                    name.len(),
                    name,
                    value.len()
                ));
                n += 2;
            }
            format!("*{n}\r\n{out}")
        }
        ["HELLO", "3", ..] => "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n\
             $5\r\nproto\r\n:3\r\n$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
             $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
            .into(),
        ["PSUBSCRIBE", ..] => args[1..]
            .iter()
            .enumerate()
            .map(|(i, p)| format!(">3\r\n$10\r\npsubscribe\r\n${}\r\n{p}\r\n:{}\r\n", p.len(), i + 1))
            .collect(),
        _ => {
            seen.unknown.lock().unwrap().insert(upper.join(" "));
            "-ERR unknown command\r\n".into()
        }
    }
}

/// One RESP command (`*N` of bulk strings) from the front of `buf`, and the
/// bytes it took; `None` until it is all there.
fn parse_command(buf: &[u8]) -> Option<(Vec<String>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    let (head, mut at) = line(buf, 0)?;
    let n: usize = std::str::from_utf8(head.strip_prefix(b"*")?).ok()?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, next) = line(buf, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?).ok()?.parse().ok()?;
        if buf.len() < next + len + 2 {
            return None;
        }
        args.push(String::from_utf8_lossy(&buf[next..next + len]).into_owned());
        at = next + len + 2;
    }
    Some((args, at))
}

// ---------------------------------------------------------------------------
// redops and its receiver

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
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

/// `cmdstat_info` calls of a real server so far.
fn info_calls(conn: &mut redis::Connection) -> u64 {
    let text: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_info:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = arg(&args, "--targets", 1000);
    let real: usize = arg(&args, "--real", 150).min(n);
    let warmup: u64 = arg(&args, "--warmup-secs", 15);
    let secs: u64 = arg(&args, "--secs", 60);
    println!(
        "bench_fleet: binary {} (modified {:?}); {n} targets: {real} redis-server, {} RESP responders",
        redops_bin().display(),
        std::fs::metadata(redops_bin()).and_then(|m| m.modified()).ok(),
        n - real
    );
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let servers: Vec<RedisProcess> = (0..real)
        .map(|i| {
            RedisProcess::start(RedisSpec::new(tmp.path().join(format!("redis-{i}"))).with("hz", "1"))
                .expect("redis-server")
        })
        .collect();
    println!("{real} redis-servers up in {:.1} s", started.elapsed().as_secs_f64());
    let (ports, seen) = start_responders(n - real);
    let hook = Hook::start();

    let dir = tmp.path().join("engine");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&root.join("rules"), &dir.join("rules"));
    copy_dir(&root.join("playbooks"), &dir.join("playbooks"));
    let mut config = String::from(
        "[engine]\nrules_dir = \"rules\"\nplaybooks_dir = \"playbooks\"\nstate_dir = \"state\"\nsample_interval = \"1s\"\n\n",
    );
    let urls = servers
        .iter()
        .map(|s| s.url(0))
        .chain(ports.iter().map(|p| format!("redis://127.0.0.1:{p}/0")));
    for (i, url) in urls.enumerate() {
        config.push_str(&format!("[[target]]\nname = \"t{i}\"\nurl = \"{url}\"\n\n"));
    }
    // The API on, as in production, on a port of its own.
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    config.push_str(&format!(
        "[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/redops\"\n",
        hook.port
    ));
    std::fs::write(dir.join("redops.toml"), config).unwrap();
    let log = dir.join("redops.log");
    let file = std::fs::File::create(&log).unwrap();
    let redops = Proc {
        child: Command::new(redops_bin())
            .args(["run", "--config", "redops.toml"])
            .current_dir(&dir)
            .env("RUST_LOG", "redops=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("redops"),
    };
    let pid = redops.child.id();
    wait_log(&log, "Engine started", Duration::from_secs(60));
    thread::sleep(Duration::from_secs(warmup));

    let mut conns: Vec<redis::Connection> = servers
        .iter()
        .map(|s| redis::Client::open(s.url(0)).unwrap().get_connection().unwrap())
        .collect();
    let calls0: Vec<u64> = conns.iter_mut().map(info_calls).collect();
    let (t0, cpu0) = (Instant::now(), cpu_secs(pid).unwrap_or(f64::NAN));
    thread::sleep(Duration::from_secs(secs));
    let (t1, cpu1) = (Instant::now(), cpu_secs(pid).unwrap_or(f64::NAN));
    // The reading INFO of the first snapshot counts in the second.
    let calls1: Vec<u64> = conns.iter_mut().map(info_calls).collect();
    let window = t1.duration_since(t0).as_secs_f64();

    let mut per_target: Vec<u64> = calls0.iter().zip(&calls1).map(|(a, b)| b - a - 1).collect();
    let mut gaps = Vec::new();
    for times in &seen.info_at {
        let times = times.lock().unwrap();
        let inside: Vec<Instant> = times.iter().copied().filter(|t| *t >= t0 && *t < t1).collect();
        per_target.push(inside.len() as u64);
        // Gaps from the last sample before the window too, so a late first one shows.
        let before = times.iter().copied().rfind(|t| *t < t0);
        let all: Vec<Instant> = before.into_iter().chain(inside).collect();
        gaps.extend(all.windows(2).map(|w| w[1].duration_since(w[0]).as_secs_f64()));
    }
    gaps.sort_by(f64::total_cmp);
    let expected = window.floor() as u64;
    let short: Vec<u64> = per_target.iter().filter(|&&c| c + 1 < expected).copied().collect();
    let deficit: u64 = short.iter().map(|c| expected - 1 - c).sum();
    let late = gaps.iter().filter(|g| **g > 2.0).count();
    let total: u64 = per_target.iter().sum();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!(
        "RESULT {n} targets ({real} redis-server + {} responders) at 1 s sampling, over {window:.0} s after {warmup} s warm-up: \
         CPU {:.2} s = {:.1} % of a core; samples {total} of {} expected ({:.2} %), targets short of {} samples: {} (deficit {deficit}); \
         responder gaps p50 {:.3} s p99 {:.3} s max {:.3} s, samples > 1 interval late: {late}; \
         VmRSS {}, VmHWM {}, threads {}; webhooks {}; WARN {} ERROR {}",
        n - real,
        cpu1 - cpu0,
        (cpu1 - cpu0) * 100.0 / window,
        expected * n as u64,
        total as f64 * 100.0 / (expected * n as u64) as f64,
        expected - 1,
        short.len(),
        percentile(&gaps, 50.0),
        percentile(&gaps, 99.0),
        gaps.last().copied().unwrap_or(f64::NAN),
        status_field(pid, "VmRSS:"),
        status_field(pid, "VmHWM:"),
        status_field(pid, "Threads:"),
        hook.count(),
        text.matches(" WARN ").count(),
        text.matches(" ERROR ").count(),
    );
    let unknown = seen.unknown.lock().unwrap();
    if !unknown.is_empty() {
        println!("commands the responders did not answer: {unknown:?}");
    }
    for line in text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .take(5)
    {
        println!("  log: {line}");
    }
    drop(redops);
}
