//! Shared integration-test helpers: real Redis servers, a real webhook
//! receiver and the real `redops` binary, each on its own free port or temp
//! dir so tests run in parallel. Every failure panics with what was seen, so a
//! failing test explains itself.
//!
//! Use with `mod harness;` in a test file.

#![allow(dead_code)]

use std::fs;
use std::future::IntoFuture;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use redops::lab::process::{RedisProcess, RedisSpec};

/// Long enough for a loaded CI machine, short enough that a hung server fails
/// the test instead of the whole run.
const REDIS_IO_TIMEOUT: Duration = Duration::from_secs(5);

pub fn write_file(dir: &Path, rel: &str, contents: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("Failed to create {}: {e}", parent.display()));
    }
    fs::write(&path, contents).unwrap_or_else(|e| panic!("Failed to write {}: {e}", path.display()));
}

/// Polls `f` every `poll` until it returns true or `timeout` passes; returns
/// whether it became true. A caller must look at it: a wait that timed out
/// and is ignored turns into an assertion about the wrong moment.
#[must_use = "a wait that timed out must fail the test or be handled"]
pub fn wait_until(timeout: Duration, poll: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(poll);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // One panicking test thread must not turn every later assertion into a
    // PoisonError that hides the real failure.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// Redis

/// A `redis-server` on a free port in its own temp dir, killed on drop.
pub struct TestRedis {
    pub process: RedisProcess,
    _dir: tempfile::TempDir,
}

impl TestRedis {
    pub fn start(config: &[(&str, &str)]) -> TestRedis {
        Self::start_spec(|spec| config.iter().fold(spec, |spec, (key, value)| spec.with(*key, *value)))
    }

    /// For what `start` cannot say: a Sentinel, a fixed port, a longer timeout.
    pub fn start_spec(build: impl FnOnce(RedisSpec) -> RedisSpec) -> TestRedis {
        let dir = tempfile::tempdir().expect("Failed to create a temp dir for redis-server");
        let spec = build(RedisSpec::new(dir.path()));
        let process = RedisProcess::start(spec).unwrap_or_else(|e| panic!("Failed to start redis-server: {e}"));
        TestRedis { process, _dir: dir }
    }

    pub fn port(&self) -> u16 {
        self.process.port()
    }

    pub fn url(&self, db: u32) -> String {
        self.process.url(db)
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url(0)).expect("a redis:// URL built from a port parses")
    }

    /// The instance id holding the HA lease in this Redis (default key
    /// prefix), once one does; panics after `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> String {
        let mut conn = self.conn();
        let mut leader: Option<String> = None;
        let elected = wait_until(timeout, Duration::from_millis(50), || {
            leader = redis::cmd("GET").arg("redops:ha:leader").query(&mut conn).unwrap();
            leader.is_some()
        });
        assert!(elected, "nobody took the lease within {timeout:?}");
        leader.unwrap_or_default()
    }

    pub fn conn(&self) -> redis::Connection {
        let conn = self
            .client()
            .get_connection_with_timeout(REDIS_IO_TIMEOUT)
            .unwrap_or_else(|e| {
                panic!(
                    "Failed to connect to redis-server at {}: {e}\nlog tail:\n{}",
                    self.process.addr(),
                    self.process.log_tail(20)
                )
            });
        conn.set_read_timeout(Some(REDIS_IO_TIMEOUT)).expect("set read timeout");
        conn.set_write_timeout(Some(REDIS_IO_TIMEOUT))
            .expect("set write timeout");
        conn
    }

    /// Runs one command on a fresh connection and renders the reply the way
    /// `redis-cli` does when piped: one line per element, empty for nil,
    /// `ERR …` for an error reply. Panics only if the connection fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let (name, rest) = args.split_first().expect("cli needs a command name");
        let mut cmd = redis::cmd(name);
        for arg in rest {
            cmd.arg(*arg);
        }
        match cmd.query::<redis::Value>(&mut self.conn()) {
            Ok(value) => render_value(&value),
            Err(e) if e.code().is_some() => {
                format!("{} {}", e.code().unwrap_or_default(), e.detail().unwrap_or_default())
                    .trim_end()
                    .to_string()
            }
            Err(e) => panic!("`{}` failed on {}: {e}", args.join(" "), self.process.addr()),
        }
    }
}

fn render_value(value: &redis::Value) -> String {
    use redis::Value;
    match value {
        Value::Nil => String::new(),
        Value::Int(n) => n.to_string(),
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".to_string(),
        Value::Double(d) => d.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Array(items) | Value::Set(items) => items.iter().map(render_value).collect::<Vec<_>>().join("\n"),
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| [render_value(k), render_value(v)])
            .collect::<Vec<_>>()
            .join("\n"),
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Webhook receiver

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// `Null` if the body is not JSON; `raw` has it either way.
    pub body: serde_json::Value,
    pub raw: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

struct ReceiverState {
    received: Mutex<Vec<Received>>,
    response: Mutex<(StatusCode, Option<u64>)>,
    started: Instant,
}

/// A real HTTP server on 127.0.0.1 that records every request, on its own
/// thread and runtime so sync tests and `#[tokio::test]`s can both use it
/// (and a test's runtime blocking in `wait_for` cannot starve it).
pub struct WebhookReceiver {
    port: u16,
    state: Arc<ReceiverState>,
    server: Option<RunningServer>,
}

struct RunningServer {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl WebhookReceiver {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Binds `port` (0 for a free one); a port just released by `stop` works.
    pub fn start_on(port: u16) -> Self {
        let state = Arc::new(ReceiverState {
            received: Mutex::new(Vec::new()),
            response: Mutex::new((StatusCode::OK, None)),
            started: Instant::now(),
        });
        let (server, port) = serve(port, state.clone());
        WebhookReceiver {
            port,
            state,
            server: Some(server),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL receivers in a test config should post to.
    pub fn url(&self) -> String {
        self.url_for("/hook")
    }

    pub fn url_for(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    pub fn clear(&self) {
        lock(&self.state.received).clear();
    }

    /// Polls until `pred` holds over everything received so far and returns
    /// it; on timeout panics with every request that did arrive.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let received = lock(&self.state.received);
                if pred(&received) {
                    return received.clone();
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "Webhook receiver on port {} did not get what the test waited for within {timeout:?}; \
                     it received:\n{}",
                    self.port,
                    self.describe()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for at least `n` requests.
    pub fn wait_for_count(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_for(timeout, |received| received.len() >= n)
    }

    /// Every request so far, pretty-printed, for failure messages.
    pub fn describe(&self) -> String {
        let received = lock(&self.state.received);
        if received.is_empty() {
            return "(nothing)".to_string();
        }
        received
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let at = r.at.saturating_duration_since(self.state.started);
                let headers: String = r.headers.iter().map(|(k, v)| format!("    {k}: {v}\n")).collect();
                let body = if r.body.is_null() {
                    r.text()
                } else {
                    serde_json::to_string_pretty(&r.body).unwrap_or_else(|_| r.text())
                };
                format!("#{i} at +{at:?}: {} {}\n{headers}{body}\n", r.method, r.path)
            })
            .collect()
    }

    pub fn set_status(&self, status: u16) {
        self.set_response(status, None);
    }

    /// Makes every later request get `status`, with `Retry-After: <seconds>`
    /// if given.
    pub fn set_response(&self, status: u16, retry_after: Option<u64>) {
        let status = StatusCode::from_u16(status).unwrap_or_else(|e| panic!("status {status}: {e}"));
        *lock(&self.state.response) = (status, retry_after);
    }

    /// Closes the listener and every open connection, as a crashed receiver
    /// would; later requests are refused until `restart`.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown.send(());
            server.thread.join().expect("webhook receiver thread panicked");
        }
    }

    /// Listens again on the same port, keeping what was received and the
    /// configured response.
    pub fn restart(&mut self) {
        self.stop();
        let (server, _) = serve(self.port, self.state.clone());
        self.server = Some(server);
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown.send(());
            // Joining while unwinding from a panic in the server thread would
            // panic again and abort; the result is not needed here.
            let _ = server.thread.join();
        }
    }
}

fn serve(port: u16, state: Arc<ReceiverState>) -> (RunningServer, u16) {
    // Bound here, before the thread starts, so the port is known and
    // accepting as soon as `start` returns.
    let listener = TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("Failed to bind the webhook receiver to port {port}: {e}"));
    let port = listener.local_addr().expect("bound listener has an address").port();
    listener.set_nonblocking(true).expect("set_nonblocking");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = thread::Builder::new()
        .name(format!("webhook-receiver-{port}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("Failed to build the webhook receiver runtime");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("Failed to register the webhook listener");
                let app = Router::new().fallback(record).with_state(state);
                tokio::select! {
                    result = axum::serve(listener, app).into_future() => {
                        if let Err(e) = result {
                            eprintln!("webhook receiver on port {port} failed: {e}");
                        }
                    }
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task, so keep-alive
            // connections are cut too.
            drop(runtime);
        })
        .expect("Failed to spawn the webhook receiver thread");
    (RunningServer { shutdown, thread }, port)
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = Received {
        at: Instant::now(),
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        raw: body.to_vec(),
    };
    lock(&state.received).push(received);

    let (status, retry_after) = *lock(&state.response);
    let mut response_headers = HeaderMap::new();
    if let Some(seconds) = retry_after {
        response_headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    (status, response_headers, "ok").into_response()
}

// ---------------------------------------------------------------------------
// The redops binary

pub const REDOPS_BIN: &str = env!("CARGO_BIN_EXE_redops");

/// `redops run --config <dir>/redops.toml …` as a child process, killed on drop.
pub struct Redops {
    child: Child,
    dir: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    // Logs append across runs in the same dir (a crash-recovery test keeps the
    // killed run's log); offsets keep `output` and `wait_log` to this run.
    stdout_start: u64,
    stderr_start: u64,
}

impl Redops {
    pub fn start(config_dir: &Path, args: &[&str]) -> Redops {
        Self::start_with_env(config_dir, args, &[])
    }

    pub fn start_with_env(config_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Redops {
        let stdout_path = config_dir.join("redops.stdout.log");
        let stderr_path = config_dir.join("redops.stderr.log");
        let open = |path: &Path| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("Failed to open {}: {e}", path.display()))
        };
        let stdout = open(&stdout_path);
        let stderr = open(&stderr_path);
        let stdout_start = stdout.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr_start = stderr.metadata().map(|m| m.len()).unwrap_or(0);
        let config = config_dir.join("redops.toml");
        let child = Command::new(REDOPS_BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(args)
            // Relative paths that escape the config dir then land in the temp
            // dir, not in the source tree.
            .current_dir(config_dir)
            .env("RUST_LOG", "redops=debug")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("Failed to spawn {REDOPS_BIN}: {e}"));
        Redops {
            child,
            dir: config_dir.to_path_buf(),
            stdout_path,
            stderr_path,
            stdout_start,
            stderr_start,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown, no flush, as in a crash or an OOM kill.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the orderly shutdown; panics with the output if
    /// it takes more than 10 s.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("Failed to run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.child.id());
        let mut status = None;
        // Whether it exited in time is `status`, looked at below.
        let _exited = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            Some(status) => status,
            None => {
                self.kill9();
                panic!("redops did not exit within 10s of SIGTERM; output:\n{}", self.output());
            }
        }
    }

    /// Stdout then stderr of this run so far.
    pub fn output(&self) -> String {
        let stdout = read_from(&self.stdout_path, self.stdout_start);
        let stderr = read_from(&self.stderr_path, self.stderr_start);
        match (stdout.is_empty(), stderr.is_empty()) {
            (_, true) => stdout,
            (true, false) => stderr,
            (false, false) => format!("{stdout}\n--- stderr ---\n{stderr}"),
        }
    }

    /// Waits until `needle` appears in the output and returns the output;
    /// panics with the output if it does not appear in time or redops exits.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            if output.contains(needle) {
                return output;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // One last read: the line may have landed just before exit.
                let output = self.output();
                if output.contains(needle) {
                    return output;
                }
                panic!("redops exited ({status}) before logging {needle:?}; output:\n{output}");
            }
            if Instant::now() >= deadline {
                panic!("redops did not log {needle:?} within {timeout:?}; output:\n{output}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redops {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = fs::File::open(path) {
        let _ = file.seek(SeekFrom::Start(offset));
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One-shot commands such as `redops check`; `env` adds to the inherited
/// environment.
pub fn run_redops(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(REDOPS_BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("Failed to run {REDOPS_BIN}: {e}"))
}

// ---------------------------------------------------------------------------
// Engine config directories

/// The shipped playbooks, so tests exercise what users get.
pub const OPTIMIZE_MEMORY: &str = include_str!("../../playbooks/optimize_memory.rhai");

/// A temp dir holding `redops.toml`, `rules/*.toml` and `playbooks/*.rhai`.
/// `config` is appended after an `[engine]` section pointing at those dirs,
/// with the given sample interval.
pub fn engine_dir(
    sample_interval: &str,
    config: &str,
    rules: &[(&str, &str)],
    playbooks: &[(&str, &str)],
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("Failed to create a temp dir");
    let engine = format!(
        "[engine]\nrules_dir = \"rules\"\nplaybooks_dir = \"playbooks\"\nstate_dir = \"state\"\nsample_interval = \"{sample_interval}\"\n\n"
    );
    write_file(dir.path(), "redops.toml", &(engine + config));
    fs::create_dir_all(dir.path().join("rules")).expect("Failed to create rules dir");
    fs::create_dir_all(dir.path().join("playbooks")).expect("Failed to create playbooks dir");
    for (name, text) in rules {
        write_file(dir.path(), &format!("rules/{name}.toml"), text);
    }
    for (name, text) in playbooks {
        write_file(dir.path(), &format!("playbooks/{name}.rhai"), text);
    }
    dir
}

/// A `[[target]]` plus a webhook receiver named `hook`.
pub fn target_and_hook(name: &str, url: &str, extra: &str, hook_url: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{hook_url}\"\n"
    )
}

/// Alert notifications of one rule with one status, in arrival order.
pub fn alerts<'a>(received: &'a [Received], rule: &str, status: &str) -> Vec<&'a Received> {
    received
        .iter()
        .filter(|r| r.body["kind"] == "alert" && r.body["rule"] == rule && r.body["status"] == status)
        .collect()
}

// ---------------------------------------------------------------------------
// A TCP proxy that can cut its connections, for "lost connection" tests

/// Forwards `127.0.0.1:<port()>` to `upstream`. `cut()` closes every
/// connection and refuses new ones until `restore()`.
pub struct CuttableProxy {
    port: u16,
    blocked: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl CuttableProxy {
    pub fn start(upstream: &str) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("Failed to bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let upstream = upstream.to_owned();
        let (b, o) = (blocked.clone(), open.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if b.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut open = o.lock().unwrap_or_else(PoisonError::into_inner);
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CuttableProxy { port, blocked, open }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        self.blocked.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.open.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.blocked.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// A real SMTP server: Debian's aiosmtpd, writing each mail into a maildir

pub struct SmtpServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

/// A throwaway CA and a `localhost` certificate it signs, for STARTTLS tests.
pub struct TestCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_certs(dir: &Path) -> TestCerts {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=redops test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    TestCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

impl SmtpServer {
    /// Plain SMTP, or STARTTLS (required) with `certs`.
    pub fn start(certs: Option<&TestCerts>) -> SmtpServer {
        Self::start_on(redops::lab::process::free_port().unwrap(), certs)
    }

    /// On a given port: to bring a stopped server back where it was.
    pub fn start_on(port: u16, certs: Option<&TestCerts>) -> SmtpServer {
        Self::spawn(port, "aiosmtpd", |cmd, maildir| {
            cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
            if let Some(c) = certs {
                cmd.arg("--tlscert").arg(&c.cert).arg("--tlskey").arg(&c.key);
            }
            cmd.args(["-c", "aiosmtpd.handlers.Mailbox"]).arg(maildir);
        })
    }

    /// Plain SMTP on `port` that takes mail only after AUTH (PLAIN or LOGIN)
    /// with this user and password. To rotate the password, drop the server
    /// and start it again on its port: the restart also cuts the connections
    /// a client authenticated with the old one.
    pub fn start_with_login(port: u16, user: &str, password: &str) -> SmtpServer {
        Self::spawn(port, "aiosmtpd with login", |cmd, maildir| {
            cmd.args(["-c", SMTP_WITH_LOGIN, &port.to_string()])
                .arg(maildir)
                .args([user, password]);
        })
    }

    /// Starts the harness's python3 with the arguments `args` adds, storing
    /// mail in a maildir of its own, and waits until `port` accepts.
    fn spawn(port: u16, what: &str, args: impl FnOnce(&mut Command, &Path)) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        let mut cmd = Command::new("/usr/bin/python3");
        args(&mut cmd, &maildir);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("smtp.log")).unwrap())
            .spawn()
            .expect("python3-aiosmtpd is installed (apt-get install python3-aiosmtpd)");
        let up = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "{what} did not start on {port}");
        SmtpServer {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every mail received so far, raw.
    pub fn mails(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|d| fs::read_dir(self.maildir.join(d)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
        files.iter().filter_map(|p| fs::read_to_string(p).ok()).collect()
    }

    pub fn wait_for_mails(&self, n: usize, timeout: Duration) -> Vec<String> {
        let arrived = wait_until(timeout, Duration::from_millis(100), || self.mails().len() >= n);
        let mails = self.mails();
        assert!(
            arrived,
            "expected {n} mails within {timeout:?}, got {}: {mails:#?}",
            mails.len()
        );
        mails
    }
}

/// aiosmtpd's command line has no authentication: its library does.
/// Arguments: port, maildir, user, password.
const SMTP_WITH_LOGIN: &str = r#"
import sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir, user, password = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4].encode()

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == user and auth_data.password == password
    return AuthResult(success=ok, handled=False)

Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port), authenticator=authenticate,
           auth_required=True, auth_require_tls=False).start()
threading.Event().wait()
"#;

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes 64 KiB values until used_memory passes `pct` of maxmemory.
pub fn fill_memory_to(conn: &mut redis::Connection, pct: f64) {
    let value = "x".repeat(64 * 1024);
    for i in 0..100_000 {
        let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
        let field = |k: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("INFO memory has no {k}"))
        };
        if field("used_memory") / field("maxmemory") * 100.0 > pct {
            return;
        }
        let _: () = redis::cmd("SET")
            .arg(format!("fill:{i}"))
            .arg(&value)
            .query(conn)
            .unwrap();
    }
    panic!("memory never passed {pct}%");
}

// ---------------------------------------------------------------------------
// Tools a test needs installed

/// scripts/test-tools.txt: every external program the tests run and its
/// Debian package. scripts/test.sh installs from it; tests/tools_list.rs
/// keeps it complete.
pub const TOOLS_LIST_PATH: &str = "scripts/test-tools.txt";
pub const TOOLS_LIST: &str = include_str!("../../scripts/test-tools.txt");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ToolCheck {
    /// An executable of that name on PATH.
    Command,
    /// A module /usr/bin/python3 imports.
    Python3Module,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub name: String,
    pub package: String,
    pub check: ToolCheck,
    /// 1-based, for messages.
    pub line: usize,
}

/// The entries of scripts/test-tools.txt, read the way scripts/test.sh
/// reads them (`#` starts a comment; `name package [check]`); panics naming
/// the line of a malformed one.
pub fn tools_list() -> Vec<Tool> {
    let mut tools = Vec::new();
    for (i, raw) in TOOLS_LIST.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let check = match fields.as_slice() {
            [] => continue,
            [_, _] | [_, _, "command"] => ToolCheck::Command,
            [_, _, "python3-module"] => ToolCheck::Python3Module,
            _ => panic!(
                "{TOOLS_LIST_PATH}:{}: expected `name package [command|python3-module]`, got {raw:?}",
                i + 1
            ),
        };
        tools.push(Tool {
            name: fields[0].to_string(),
            package: fields[1].to_string(),
            check,
            line: i + 1,
        });
    }
    tools
}

/// The binary on PATH; `None` (with a loud message) when it is missing and
/// REDOPS_REQUIRE_ALL is unset. scripts/test.sh installs it and sets the
/// variable, so CI never skips. Panics when `name` is not in
/// scripts/test-tools.txt: there, test.sh would not install it.
pub fn required_tool(name: &str) -> Option<PathBuf> {
    let package = tools_list()
        .into_iter()
        .find(|t| t.name == name && t.check == ToolCheck::Command)
        .map(|t| t.package)
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not in {TOOLS_LIST_PATH}: add it with its Debian package, so scripts/test.sh installs it"
            )
        });
    let found = find_on_path(name);
    if found.is_none() {
        if std::env::var_os("REDOPS_REQUIRE_ALL").is_some() {
            panic!("`{name}` is not installed and REDOPS_REQUIRE_ALL is set: apt-get install {package}");
        }
        eprintln!(
            "\n!!!!!!!! SKIPPED: `{name}` is not installed (apt-get install {package}); \
             scripts/test.sh installs it and never skips !!!!!!!!\n"
        );
    }
    found
}

/// Waits until the outbox of the engine whose config dir is `dir` holds
/// nothing pending (its state store is `dir/state`, as [`engine_dir`]
/// writes it): everything it queued so far was delivered.
pub fn wait_outbox_drained(dir: &Path, timeout: Duration) {
    let outbox = redops::outbox::Outbox::open(
        redops::store::Store::open(&dir.join("state")).expect("Failed to open the engine's state store"),
    )
    .expect("Failed to open the engine's outbox");
    wait_drained(&outbox, timeout);
}

/// Waits until `outbox` holds nothing pending: every notification queued
/// so far was delivered, so what the receivers got is all they will get.
pub fn wait_drained(outbox: &redops::outbox::Outbox, timeout: Duration) {
    let drained = wait_until(timeout, Duration::from_millis(20), || {
        outbox.pending().is_ok_and(|p| p.is_empty())
    });
    assert!(drained, "the outbox still holds {:?}", outbox.pending());
}

/// Where `name` is on PATH, as `type -P` in scripts/test.sh finds it.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
