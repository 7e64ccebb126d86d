//! The RESP keyspace reader (the default, `[engine] keyspace_reader =
//! "resp"`): its own plain TCP connection, authenticated and
//! pattern-subscribed by hand, whose bytes land in one reusable buffer and
//! are parsed in place ([`super::resp`]). Each `pmessage` is counted as it is
//! read: its channel and key are slices of that buffer, matched by the
//! [`KeyspaceCounter`](super::KeyspaceCounter) without a copy, a `Value`, a
//! queue or an allocation.
//!
//! Once subscribed, the connection is read on a thread of its own with
//! plain blocking reads: no reactor, timer or task switch per wake-up. What
//! a wake-up costs is then mostly the `read` itself, and counts go out once
//! a `keyspace_tick` anyway, so in a storm the thread reads once a tick,
//! right before the emit: each `read` brings a tick's events (a thousand or
//! more) rather than the few of one Redis write, and no event waits longer
//! for its emit than it would with more reads. The clock is looked at once
//! per `read`, so counts still go out on time.
//!
//! It has no queue to drop from: if it falls behind, the events wait in the
//! socket and then in Redis's output buffer, and past
//! `client-output-buffer-limit pubsub` Redis closes the connection, which is
//! counted in `keyspace_disconnects_total` like any other disconnect.
//!
//! It speaks plain TCP only. `rediss://` (TLS) and Unix socket targets keep
//! the redis-rs reader ([`super::push`]); [`plain_tcp`] says which.

use std::io::{ErrorKind, Read};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::resp::{Frame, ReadBuffer, RespError};
use super::{Ended, KEEPALIVE, KeyspaceCounter, KeyspaceSource, ensure_flags_if_asked};

/// Room for ~2,800 keyevents a `read`, 10 ms of a 260k/s storm; it grows
/// only for a larger frame.
const BUFFER: usize = 256 * 1024;
/// The least time between two `read`s that did not fill the buffer, for a
/// `read` that brings this long's events instead of one Redis write's (16
/// events of a `-P 16` pipeline). A full buffer is read again at once.
pub(super) const READ_PAUSE: Duration = Duration::from_millis(2);
/// The most: while counts wait for the next tick the thread sleeps until
/// it, but never longer than this, whatever `keyspace_tick` is. Events
/// meanwhile wait in the socket and Redis's output buffer (~130 KB at 260k
/// events/s).
const MAX_READ_PAUSE: Duration = Duration::from_millis(10);
/// The reading thread's name (at most 15 bytes: Linux's `comm`).
pub const THREAD_NAME: &str = "redops-keyspace";
/// Larger than Redis's largest key (512 MB) plus its framing.
const MAX_FRAME: usize = 513 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub(super) enum ReaderError {
    #[error("connecting: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("the server closed the connection during the handshake")]
    Closed,
    #[error("unreadable reply: {0}")]
    Protocol(#[from] RespError),
}

/// `(host, port)` when the target is reached over plain TCP, the only
/// transport this reader speaks.
pub(super) fn plain_tcp(info: &ConnectionInfo) -> Option<(&str, u16)> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => Some((host, *port)),
        _ => None,
    }
}

/// A live subscription: the socket and its read buffer.
pub(super) struct RespSubscription {
    stream: TcpStream,
    buffer: ReadBuffer,
}

/// Appends a command as a RESP array of bulk strings.
fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// The handshake, sent in one write: `HELLO 3` when the target asks for
/// RESP3 (with its credentials), else `AUTH` when it has a password, then
/// `PSUBSCRIBE`. No `SELECT`: keyevent channels are server-wide and carry
/// their database in their name. A refusal is an error reply, which
/// [`subscribe`] reports; the `OK` or `HELLO` map is skipped.
fn handshake(info: &ConnectionInfo, patterns: &[String]) -> Vec<u8> {
    let settings = info.redis_settings();
    let mut out = Vec::new();
    let mut credentials: Vec<&[u8]> = Vec::new();
    if let Some(password) = settings.password() {
        credentials.push(settings.username().unwrap_or("default").as_bytes());
        credentials.push(password.as_bytes());
    }
    if settings.protocol() != ProtocolVersion::RESP2 {
        let mut hello: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if !credentials.is_empty() {
            hello.push(b"AUTH");
            hello.extend(&credentials);
        }
        encode(&mut out, &hello);
    } else if !credentials.is_empty() {
        let mut auth: Vec<&[u8]> = vec![b"AUTH"];
        auth.extend(&credentials);
        encode(&mut out, &auth);
    }
    let mut psubscribe: Vec<&[u8]> = vec![b"PSUBSCRIBE"];
    psubscribe.extend(patterns.iter().map(|p| p.as_bytes()));
    encode(&mut out, &psubscribe);
    out
}

/// Connects to `host:port`, authenticates and subscribes to the counter's
/// patterns, counting any message that arrives before the last
/// confirmation. Done once Redis confirmed every pattern, so events
/// published after it returns are counted.
async fn subscribe(
    (host, port): (&str, u16),
    info: &ConnectionInfo,
    counter: &mut KeyspaceCounter,
) -> Result<RespSubscription, ReaderError> {
    let mut stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let request = handshake(info, counter.patterns());
    stream.write_all(&request).await?;
    let mut buffer = ReadBuffer::new(BUFFER, MAX_FRAME);
    let mut unconfirmed = counter.patterns().len();
    while unconfirmed > 0 {
        let n = stream.read(buffer.spare()?).await?;
        if n == 0 {
            return Err(ReaderError::Closed);
        }
        buffer.filled(n);
        while let Some(frame) = buffer.next_frame()? {
            match frame {
                // Server messages, never secrets; redacted all the same.
                Frame::Error(message) => {
                    let message = String::from_utf8_lossy(message);
                    return Err(ReaderError::Refused(crate::secrets::redact(&message)));
                }
                Frame::Subscribed => unconfirmed = unconfirmed.saturating_sub(1),
                Frame::Message { channel, payload } => counter.observe(channel, payload),
                Frame::Other => {}
            }
        }
    }
    Ok(RespSubscription { stream, buffer })
}

impl KeyspaceSource {
    /// Subscribes over plain TCP, with the flags ensured first (again on
    /// each reconnect: a restarted server forgot them).
    pub(super) async fn subscribe_resp(&mut self, addr: (&str, u16)) -> Result<RespSubscription, ReaderError> {
        ensure_flags_if_asked(&self.spec).await;
        let timeout = self.spec.connect_timeout;
        let connection = self.spec.connection.clone();
        tokio::time::timeout(timeout, subscribe(addr, &connection, &mut self.counter))
            .await
            .map_err(|_| ReaderError::Timeout(timeout))?
    }

    /// Reads and counts on a thread of its own until the connection is
    /// lost or the engine stops, emitting counts when due; gives the source
    /// back with how it ended, or `None` if the runtime is going away.
    pub(super) async fn count_frames_on_thread(
        self,
        subscription: RespSubscription,
        shutdown: &CancellationToken,
    ) -> Option<(Self, Ended)> {
        let RespSubscription { stream, buffer } = subscription;
        // A blocking socket for the thread, and a clone of it that wakes
        // the thread's `read` when the engine stops or this future is
        // dropped (the runtime going away), so the thread never outlives us.
        let blocking = stream.into_std().and_then(|stream| {
            stream.set_nonblocking(false)?;
            let clone = stream.try_clone()?;
            Ok((stream, WakeOnDrop(clone)))
        });
        let (stream, waker) = match blocking {
            Ok(both) => both,
            Err(e) => {
                tracing::warn!(target = %self.spec.target, error = %e, "Keyspace subscription cannot be read on its own thread; reconnecting");
                return Some((self, Ended::Lost));
            }
        };
        // A thread of its own, named so that `top -H` and the benchmark can
        // tell what it costs. If it cannot start, the source comes back out
        // of the slot the thread would have taken it from.
        let (done_tx, mut done) = tokio::sync::oneshot::channel();
        let job = Arc::new(Mutex::new(Some((self, stream, buffer, shutdown.clone(), done_tx))));
        let for_thread = job.clone();
        let spawned = std::thread::Builder::new().name(THREAD_NAME.into()).spawn(move || {
            let taken = for_thread.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some((mut source, stream, buffer, stop, done_tx)) = taken {
                let ended = source.count_frames_until_lost(stream, buffer, &stop);
                let _ = done_tx.send((source, ended));
            }
        });
        let thread = match spawned {
            Ok(thread) => thread,
            Err(e) => {
                let (source, ..) = job.lock().unwrap_or_else(|e| e.into_inner()).take()?;
                tracing::warn!(target = %source.spec.target, error = %e, "Keyspace reader thread cannot start; reconnecting");
                return Some((source, Ended::Lost));
            }
        };
        let done = tokio::select! {
            done = &mut done => done,
            _ = shutdown.cancelled() => {
                drop(waker);
                done.await
            }
        };
        match done {
            Ok(done) => Some(done),
            // The thread ended without answering: it panicked. Pass the
            // panic on, as a task's would be.
            Err(_) => match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                _ => None,
            },
        }
    }

    /// The thread's loop: blocking reads, each followed by counting every
    /// complete frame, then an emit when one is due.
    fn count_frames_until_lost(
        &mut self,
        mut stream: std::net::TcpStream,
        mut buffer: ReadBuffer,
        stop: &CancellationToken,
    ) -> Ended {
        // A `read` returns by its timeout with or without data: while
        // counts wait to go out, by the time their emit is due (in whole
        // milliseconds); while idle, a tenth of the keepalive (10 wake-ups
        // a second, not 100). The timeout is set only when it changes: in a
        // storm each read comes right after an emit, with nothing pending,
        // so it stays at idle, and a pending one changes once a millisecond
        // at most.
        let idle = KEEPALIVE / 10;
        let mut timeout = None;
        loop {
            if stop.is_cancelled() {
                return Ended::Stopped;
            }
            let want = if self.counter.changed() {
                let until_emit = self.emit_due(true).saturating_duration_since(Instant::now());
                Duration::from_millis(until_emit.as_micros().div_ceil(1000) as u64)
                    .clamp(Duration::from_millis(1), idle)
            } else {
                idle
            };
            if timeout != Some(want) {
                if let Err(e) = stream.set_read_timeout(Some(want)) {
                    tracing::warn!(target = %self.spec.target, error = %e, "Keyspace subscription cannot set its read timeout; reconnecting");
                    return Ended::Lost;
                }
                timeout = Some(want);
            }
            let spare = match buffer.spare() {
                Ok(spare) => spare,
                Err(e) => return self.unreadable(&e),
            };
            let room = spare.len();
            let n = match stream.read(spare) {
                Ok(0) => return self.closed(stop),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    0
                }
                Err(_) => return self.closed(stop),
            };
            buffer.filled(n);
            loop {
                match buffer.next_frame() {
                    Ok(Some(Frame::Message { channel, payload })) => self.counter.observe(channel, payload),
                    Ok(Some(Frame::Error(message))) => tracing::warn!(
                        target = %self.spec.target,
                        error = %crate::secrets::redact(&String::from_utf8_lossy(message)),
                        "Keyspace subscription got an error from the server"
                    ),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return self.unreadable(&e),
                }
            }
            // After the read, so that what it brought goes out with it.
            if Instant::now() >= self.next_emit() && !self.emit() {
                return Ended::Stopped;
            }
            if n > 0 && n < room {
                // Drained. Counts go out once a tick, so a read before the
                // next tick only costs a wake-up: let events gather until
                // then, within [READ_PAUSE, MAX_READ_PAUSE].
                let next_tick = self.last_emit + self.spec.tick;
                std::thread::sleep(
                    next_tick
                        .saturating_duration_since(Instant::now())
                        .clamp(READ_PAUSE, MAX_READ_PAUSE),
                );
            }
        }
    }

    /// A read that ended: the engine stopping (it shut the socket), or
    /// Redis or the network closing it.
    fn closed(&self, stop: &CancellationToken) -> Ended {
        if stop.is_cancelled() {
            Ended::Stopped
        } else {
            Ended::Lost
        }
    }

    /// A stream we cannot read is a lost subscription: start again.
    fn unreadable(&self, e: &RespError) -> Ended {
        tracing::warn!(target = %self.spec.target, error = %e, "Keyspace subscription sent an unreadable frame; reconnecting");
        Ended::Lost
    }
}

/// Shuts the socket down when dropped, which ends a `read` blocked on it.
struct WakeOnDrop(std::net::TcpStream);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(url: &str) -> ConnectionInfo {
        redis::IntoConnectionInfo::into_connection_info(url).unwrap()
    }

    #[test]
    fn the_handshake_authenticates_only_when_asked() {
        let patterns = ["__keyevent@*__:set".to_owned()];
        let plain = handshake(&info("redis://127.0.0.1:1/2"), &patterns);
        assert_eq!(plain, b"*2\r\n$10\r\nPSUBSCRIBE\r\n$18\r\n__keyevent@*__:set\r\n");
        let auth = handshake(&info("redis://bob:pw@127.0.0.1:1"), &patterns);
        assert!(
            auth.starts_with(b"*3\r\n$4\r\nAUTH\r\n$3\r\nbob\r\n$2\r\npw\r\n"),
            "{auth:?}"
        );
        let hello = handshake(&info("redis://:pw@127.0.0.1:1?protocol=resp3"), &patterns);
        assert!(
            hello.starts_with(b"*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n"),
            "{:?}",
            String::from_utf8_lossy(&hello)
        );
    }

    #[test]
    fn only_plain_tcp_targets_use_this_reader() {
        assert_eq!(plain_tcp(&info("redis://127.0.0.1:7000")), Some(("127.0.0.1", 7000)));
        assert_eq!(plain_tcp(&info("rediss://127.0.0.1:7000")), None);
    }
}
