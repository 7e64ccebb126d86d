//! `redis-server` processes on local ports, for `redops lab` and the integration tests.
//!
//! A [`RedisSpec`] says what to run; [`RedisProcess::start`] writes its config,
//! spawns the server and returns once it answers. One process owns one
//! directory: its config (`redis.conf` or `sentinel.conf`), log and data files
//! live there under fixed names, so tests and playbooks know where to look.
//! Sentinel topologies are built from the same pieces with
//! [`RedisSpec::as_sentinel`].

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// The binary used unless a spec names another one.
pub const REDIS_SERVER_BIN: &str = "redis-server";

/// How long [`RedisProcess::start`] waits for a fresh server to answer.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`RedisProcess::stop`] lets a server shut down before killing it.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A free port found by [`free_port`] can be taken by someone else before the
/// server binds it; this bounds how often such a race is retried.
const PORT_ATTEMPTS: usize = 5;

const POLL: Duration = Duration::from_millis(20);
const ERROR_LOG_LINES: usize = 30;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{binary}` was not found: install it with `apt-get install -y redis-server redis-sentinel`")]
    MissingBinary { binary: String },

    #[error("Failed to spawn `{binary}`: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: io::Error,
    },

    #[error("redis-server on port {port} did not answer within {timeout:?}; log tail:\n{log_tail}")]
    NotReady {
        port: u16,
        timeout: Duration,
        log_tail: String,
    },

    #[error("redis-server on port {port} exited before it was ready ({status}); log tail:\n{log_tail}")]
    Exited {
        port: u16,
        status: ExitStatus,
        log_tail: String,
    },

    #[error("redis-server on port {port} is not running")]
    NotRunning { port: u16 },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("{context}: {source}")]
    Redis {
        context: String,
        #[source]
        source: redis::RedisError,
    },

    #[error("The lab did not settle within {timeout:?}: {detail}")]
    NotConverged { timeout: Duration, detail: String },

    #[error("{} is not a lab state file ({source}): run `redops lab down` and `redops lab up`", path.display())]
    BadState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("The lab is not up ({down} down): run `redops lab up`")]
    NotUp { down: String },

    #[error("Sentinel names {addr} as the master, which is not a node of this lab")]
    UnknownMaster { addr: String },

    #[error("Sentinel did not fail over from {master} within {timeout:?}")]
    NoFailover { master: String, timeout: Duration },

    #[error("A {running} lab runs in {}: stop it with `redops lab down` before starting a {wanted} lab there, or use another --dir", dir.display())]
    OtherLab {
        dir: PathBuf,
        running: String,
        wanted: String,
    },

    #[error("`chaos {chaos}` needs a {needs} lab; this is a {lab} lab")]
    ChaosNotForLab { chaos: String, needs: String, lab: String },

    #[error("The cluster did not fail over shard {shard} within {timeout:?}: {detail}")]
    NoClusterFailover {
        shard: String,
        timeout: Duration,
        detail: String,
    },
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
        let context = context.into();
        move |source| LabError::Io { context, source }
    }

    pub(crate) fn redis(context: impl Into<String>) -> impl FnOnce(redis::RedisError) -> LabError {
        let context = context.into();
        move |source| LabError::Redis { context, source }
    }

    fn is_port_taken(&self) -> bool {
        matches!(self, LabError::Exited { log_tail, .. } if log_tail.contains("Address already in use"))
    }
}

/// Binds 127.0.0.1:0 and releases it, leaving a port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// What to run: a plain server or a Sentinel, where, and with which directives.
#[derive(Debug, Clone)]
pub struct RedisSpec {
    /// 0 picks a free port (and retries if another process wins the race for it).
    pub port: u16,
    pub dir: PathBuf,
    /// Extra directives written verbatim after the defaults, so they override
    /// them; a key may repeat (`sentinel monitor …`, `sentinel down-after-milliseconds …`).
    pub config: Vec<(String, String)>,
    pub sentinel: bool,
    pub binary: PathBuf,
    pub ready_timeout: Duration,
    /// Keeps the terminal's Ctrl-C, meant for the command that started the
    /// server, from reaching a server that must outlive it.
    pub own_process_group: bool,
}

impl RedisSpec {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RedisSpec {
            port: 0,
            dir: dir.into(),
            config: Vec::new(),
            sentinel: false,
            binary: PathBuf::from(REDIS_SERVER_BIN),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            own_process_group: false,
        }
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    pub fn on_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn as_sentinel(mut self) -> Self {
        self.sentinel = true;
        self
    }

    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = binary.into();
        self
    }

    pub fn ready_within(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    pub fn in_own_process_group(mut self, own: bool) -> Self {
        self.own_process_group = own;
        self
    }

    pub fn config_path(&self) -> PathBuf {
        let name = if self.sentinel { "sentinel.conf" } else { "redis.conf" };
        self.dir.join(name)
    }

    pub fn log_path(&self) -> PathBuf {
        let name = if self.sentinel { "sentinel.log" } else { "redis.log" };
        self.dir.join(name)
    }

    fn render_config(&self, port: u16) -> String {
        let mut conf = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             dir {}\n\
             logfile {}\n\
             daemonize no\n\
             save \"\"\n\
             appendonly no\n",
            quote(&self.dir),
            quote(&self.log_path()),
        );
        for (key, value) in &self.config {
            conf.push_str(&format!("{key} {value}\n"));
        }
        conf
    }
}

/// Redis config strings are double-quoted with backslash escapes; temp dirs
/// may contain spaces.
fn quote(path: &Path) -> String {
    let raw = path.to_string_lossy();
    format!("\"{}\"", raw.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A running (or stopped, awaiting restart) `redis-server`. Dropping it kills
/// the process, so a panicking test leaves no orphans.
#[derive(Debug)]
pub struct RedisProcess {
    spec: RedisSpec,
    port: u16,
    state: Mutex<ProcessState>,
}

#[derive(Debug)]
struct ProcessState {
    child: Option<Child>,
    paused: bool,
}

impl RedisProcess {
    pub fn start(spec: RedisSpec) -> Result<RedisProcess, LabError> {
        fs::create_dir_all(&spec.dir).map_err(LabError::io(format!("Failed to create {}", spec.dir.display())))?;
        // Redis chdirs into `dir` before opening the log; an absolute path keeps
        // both the directive and our own log reads pointing at the same file.
        let dir =
            fs::canonicalize(&spec.dir).map_err(LabError::io(format!("Failed to resolve {}", spec.dir.display())))?;
        let mut spec = RedisSpec { dir, ..spec };

        let pick_port = spec.port == 0;
        let attempts = if pick_port { PORT_ATTEMPTS } else { 1 };
        let mut last_error = None;
        for _ in 0..attempts {
            let port = if pick_port {
                free_port().map_err(LabError::io("Failed to pick a free port"))?
            } else {
                spec.port
            };
            let config_path = spec.config_path();
            fs::write(&config_path, spec.render_config(port))
                .map_err(LabError::io(format!("Failed to write {}", config_path.display())))?;
            match spawn_ready(&spec, port) {
                Ok(child) => {
                    spec.port = port;
                    return Ok(RedisProcess {
                        spec,
                        port,
                        state: Mutex::new(ProcessState {
                            child: Some(child),
                            paused: false,
                        }),
                    });
                }
                Err(error) if pick_port && error.is_port_taken() => {
                    tracing::debug!(port, "Port taken before redis-server bound it, retrying");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    /// Starts a server from the config file already in `spec.dir`, on
    /// `spec.port`, as [`RedisProcess::restart`] does: for a server whose
    /// handle is gone, such as one [`RedisProcess::detach`]ed by an earlier
    /// `redops lab` command.
    pub fn relaunch(spec: RedisSpec) -> Result<RedisProcess, LabError> {
        let dir =
            fs::canonicalize(&spec.dir).map_err(LabError::io(format!("Failed to resolve {}", spec.dir.display())))?;
        let spec = RedisSpec { dir, ..spec };
        let child = spawn_ready(&spec, spec.port)?;
        Ok(RedisProcess {
            port: spec.port,
            spec,
            state: Mutex::new(ProcessState {
                child: Some(child),
                paused: false,
            }),
        })
    }

    /// Lets the server outlive this handle; returns its pid if it runs.
    pub fn detach(self) -> Option<u32> {
        let pid = self.pid();
        // Dropping a `Child` neither kills nor waits for it.
        self.lock().child = None;
        pid
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// The spec as started: `port` and `dir` are resolved.
    pub fn spec(&self) -> &RedisSpec {
        &self.spec
    }

    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.spec.config_path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.spec.log_path()
    }

    /// The pid of the live process; `None` once it has exited or been killed.
    pub fn pid(&self) -> Option<u32> {
        let mut state = self.lock();
        let child = state.child.as_mut()?;
        matches!(child.try_wait(), Ok(None)).then(|| child.id())
    }

    /// True while the process exists, paused or not.
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// SIGKILL, as in a crash: nothing is flushed.
    pub fn kill(&self) -> Result<(), LabError> {
        let mut state = self.lock();
        state.paused = false;
        let Some(mut child) = state.child.take() else {
            return Ok(());
        };
        kill_and_reap(&mut child).map_err(LabError::io(format!(
            "Failed to kill redis-server on port {}",
            self.port
        )))
    }

    /// SIGTERM, then SIGKILL if the server has not exited within [`STOP_GRACE`].
    pub fn stop(&self) -> Result<(), LabError> {
        let mut state = self.lock();
        self.stop_locked(&mut state)
    }

    fn stop_locked(&self, state: &mut ProcessState) -> Result<(), LabError> {
        let Some(mut child) = state.child.take() else {
            return Ok(());
        };
        let context = format!("Failed to stop redis-server on port {}", self.port);
        if child.try_wait().map_err(LabError::io(&context))?.is_some() {
            return Ok(());
        }
        // A stopped process keeps SIGTERM pending until it is continued.
        if std::mem::take(&mut state.paused) {
            signal(child.id(), "CONT").map_err(LabError::io(&context))?;
        }
        signal(child.id(), "TERM").map_err(LabError::io(&context))?;
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if child.try_wait().map_err(LabError::io(&context))?.is_some() {
                return Ok(());
            }
            thread::sleep(POLL);
        }
        tracing::warn!(port = self.port, "redis-server ignored SIGTERM, killing it");
        kill_and_reap(&mut child).map_err(LabError::io(context))
    }

    /// Starts the server again on the same port, directory and config file,
    /// stopping it first if it still runs. The config file is not rewritten:
    /// Sentinel stores its state there (id, epochs, known replicas), and a
    /// restarted Sentinel must come back with it, as a real one would.
    pub fn restart(&self) -> Result<(), LabError> {
        let mut state = self.lock();
        self.stop_locked(&mut state)?;
        state.child = Some(spawn_ready(&self.spec, self.port)?);
        Ok(())
    }

    /// SIGSTOP: the port stays open but nothing answers, like a hung server.
    pub fn pause(&self) -> Result<(), LabError> {
        self.send_signal("STOP")?;
        self.lock().paused = true;
        Ok(())
    }

    pub fn resume(&self) -> Result<(), LabError> {
        self.send_signal("CONT")?;
        self.lock().paused = false;
        Ok(())
    }

    fn send_signal(&self, name: &str) -> Result<(), LabError> {
        let pid = self.pid().ok_or(LabError::NotRunning { port: self.port })?;
        signal(pid, name).map_err(LabError::io(format!(
            "Failed to send SIG{name} to redis-server on port {}",
            self.port
        )))
    }

    /// The last `lines` lines of the log, including anything redis-server
    /// printed before it opened its log file (config errors go to stdout).
    pub fn log_tail(&self, lines: usize) -> String {
        read_tail(&self.spec.log_path(), 0, lines)
    }

    fn lock(&self) -> MutexGuard<'_, ProcessState> {
        // A test that panicked while holding the lock must not keep Drop from
        // killing the server.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut child) = state.child.take() {
            let _ = kill_and_reap(&mut child);
        }
    }
}

fn kill_and_reap(child: &mut Child) -> io::Result<()> {
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// `libc` is not a dependency, and `kill(1)` is on every machine that has redis.
pub(crate) fn signal(pid: u32, name: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -{name} {pid} failed: {status}")))
    }
}

fn spawn_ready(spec: &RedisSpec, port: u16) -> Result<Child, LabError> {
    let log_path = spec.log_path();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(LabError::io(format!("Failed to open {}", log_path.display())))?;
    // Only what this run writes explains why this run failed; restarts append
    // to the same log.
    let log_start = log
        .metadata()
        .map_err(LabError::io(format!("Failed to stat {}", log_path.display())))?
        .len();
    let stdout = log
        .try_clone()
        .map_err(LabError::io(format!("Failed to open {}", log_path.display())))?;

    let binary = spec.binary.display().to_string();
    let mut command = Command::new(&spec.binary);
    command.arg(spec.config_path());
    if spec.sentinel {
        command.arg("--sentinel");
    }
    if spec.own_process_group {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log)
        .spawn()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => LabError::MissingBinary { binary: binary.clone() },
            _ => LabError::Spawn {
                binary: binary.clone(),
                source,
            },
        })?;

    match wait_ready(&mut child, port, spec.ready_timeout) {
        Ok(()) => {
            tracing::debug!(port, pid = child.id(), sentinel = spec.sentinel, "Started redis-server");
            Ok(child)
        }
        Err(Some(status)) => Err(LabError::Exited {
            port,
            status,
            log_tail: read_tail(&log_path, log_start, ERROR_LOG_LINES),
        }),
        Err(None) => {
            let _ = kill_and_reap(&mut child);
            Err(LabError::NotReady {
                port,
                timeout: spec.ready_timeout,
                log_tail: read_tail(&log_path, log_start, ERROR_LOG_LINES),
            })
        }
    }
}

/// `Err(Some(status))` if the child exited, `Err(None)` on timeout.
fn wait_ready(child: &mut Child, port: u16, timeout: Duration) -> Result<(), Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Some(status));
        }
        match probe(port) {
            Probe::Answered { pid: None } => return Ok(()),
            Probe::Answered { pid: Some(pid) } if pid == child.id() => return Ok(()),
            // Another server on this port answers while ours fails to bind; the
            // next `try_wait` sees ours exit.
            Probe::Answered { .. } | Probe::Busy | Probe::Down => {}
        }
        if Instant::now() >= deadline {
            return Err(None);
        }
        thread::sleep(POLL);
    }
}

enum Probe {
    Down,
    /// Up but not serving yet (loading a dataset, running a script).
    Busy,
    /// `pid` is `None` when the server answered but would not say who it is
    /// (`requirepass`, renamed INFO): it is up, and most likely ours.
    Answered {
        pid: Option<u32>,
    },
}

/// PING says the server serves; INFO's `process_id` says it is the server we
/// spawned and not another one that holds the port.
fn probe(port: u16) -> Probe {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(250)) else {
        return Probe::Down;
    };
    let io_timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(io_timeout).is_err() || stream.set_write_timeout(io_timeout).is_err() {
        return Probe::Down;
    }
    if stream
        .write_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .is_err()
    {
        return Probe::Down;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return Probe::Down;
    }
    if line.starts_with("-LOADING") || line.starts_with("-BUSY") {
        return Probe::Busy;
    }
    if line.starts_with('-') {
        return Probe::Answered { pid: None };
    }
    if !line.starts_with('+') {
        return Probe::Down;
    }
    Probe::Answered {
        pid: read_info_pid(&mut reader),
    }
}

fn read_info_pid(reader: &mut impl BufRead) -> Option<u32> {
    let mut header = String::new();
    reader.read_line(&mut header).ok()?;
    let len: usize = header.strip_prefix('$')?.trim().parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

fn read_tail(path: &Path, from: u64, lines: usize) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return format!("(could not read {})", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(port: u16) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    #[test]
    fn starts_answers_and_restarts_on_the_same_port() {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisProcess::start(RedisSpec::new(dir.path()).with("maxmemory", "16mb")).unwrap();
        let port = redis.port();
        assert_ne!(port, 0);
        assert_eq!(redis.addr(), format!("127.0.0.1:{port}"));
        assert_eq!(redis.url(3), format!("redis://127.0.0.1:{port}/3"));
        assert_eq!(ping(port), "+PONG");
        let conf = fs::read_to_string(redis.config_path()).unwrap();
        assert!(conf.contains("maxmemory 16mb"), "{conf}");

        let first_pid = redis.pid().unwrap();
        redis.kill().unwrap();
        assert!(!redis.is_running());
        assert!(redis.pid().is_none());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

        redis.restart().unwrap();
        assert_eq!(redis.port(), port);
        assert_ne!(redis.pid().unwrap(), first_pid);
        assert_eq!(ping(port), "+PONG");
        assert!(redis.log_tail(50).contains("Ready to accept connections"));

        redis.stop().unwrap();
        assert!(!redis.is_running());
    }

    #[test]
    fn restart_while_running_replaces_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisProcess::start(RedisSpec::new(dir.path())).unwrap();
        let first_pid = redis.pid().unwrap();
        redis.restart().unwrap();
        assert_ne!(redis.pid().unwrap(), first_pid);
        assert_eq!(ping(redis.port()), "+PONG");
    }

    #[test]
    fn pause_stops_answering_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisProcess::start(RedisSpec::new(dir.path())).unwrap();
        redis.pause().unwrap();
        assert!(redis.is_running());
        assert!(matches!(probe(redis.port()), Probe::Down));
        redis.resume().unwrap();
        assert_eq!(ping(redis.port()), "+PONG");

        // A paused server must still stop promptly.
        redis.pause().unwrap();
        let started = Instant::now();
        redis.stop().unwrap();
        assert!(started.elapsed() < STOP_GRACE);
    }

    #[test]
    fn drop_kills_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisProcess::start(RedisSpec::new(dir.path())).unwrap();
        let port = redis.port();
        drop(redis);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn a_taken_fixed_port_fails_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let holder = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = holder.local_addr().unwrap().port();
        let error = RedisProcess::start(RedisSpec::new(dir.path()).on_port(port)).unwrap_err();
        assert!(error.is_port_taken(), "{error}");
    }

    #[test]
    fn a_bad_directive_fails_fast_with_the_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let error = RedisProcess::start(RedisSpec::new(dir.path()).with("no-such-directive", "1")).unwrap_err();
        assert!(matches!(error, LabError::Exited { .. }), "{error}");
        assert!(error.to_string().contains("no-such-directive"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        let error = RedisProcess::start(RedisSpec::new(dir.path()).binary("/nonexistent/redis-server")).unwrap_err();
        assert!(matches!(error, LabError::MissingBinary { .. }), "{error}");
        assert!(
            error
                .to_string()
                .contains("install it with `apt-get install -y redis-server redis-sentinel`")
        );
    }

    #[test]
    fn sentinel_starts_and_keeps_its_rewritten_config_across_restarts() {
        let master_dir = tempfile::tempdir().unwrap();
        let master = RedisProcess::start(RedisSpec::new(master_dir.path())).unwrap();
        let sentinel_dir = tempfile::tempdir().unwrap();
        let sentinel = RedisProcess::start(
            RedisSpec::new(sentinel_dir.path())
                .as_sentinel()
                .with("sentinel monitor", format!("mymaster 127.0.0.1 {} 1", master.port())),
        )
        .unwrap();
        assert_eq!(ping(sentinel.port()), "+PONG");
        let rewritten = fs::read_to_string(sentinel.config_path()).unwrap();
        let myid = rewritten
            .lines()
            .find(|line| line.starts_with("sentinel myid"))
            .unwrap_or_else(|| panic!("Sentinel did not rewrite its config:\n{rewritten}"))
            .to_string();

        sentinel.kill().unwrap();
        sentinel.restart().unwrap();
        assert_eq!(ping(sentinel.port()), "+PONG");
        let after = fs::read_to_string(sentinel.config_path()).unwrap();
        assert!(after.contains(&myid), "{after}");
    }
}
