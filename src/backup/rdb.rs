//! RDB snapshots taken over the replication protocol, as `redis-cli --rdb`
//! takes them, and the checks that prove an RDB whole: the `REDIS` header,
//! the EOF opcode and the CRC-64 trailer.
//!
//! The redis crate cannot speak `SYNC` (the reply is not RESP), so this is a
//! raw socket: `AUTH`, `REPLCONF capa eof`, `REPLCONF rdb-only 1` (Redis 7+;
//! older servers refuse it and get a plain `SYNC`, of which only the RDB
//! payload is read), then `SYNC`. The payload comes either as `$<len>` (the
//! server saved to disk first) or as `$EOF:<40-byte mark>` (diskless: the
//! payload ends with the mark). It is streamed to the sink chunk by chunk.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo};

use super::Progress;
use super::crc64::Crc64;

/// Length of the random mark that ends a diskless payload.
pub const EOF_MARK_LEN: usize = 40;

/// Bytes read from the socket at a time.
const CHUNK: usize = 1 << 20;

/// RDB files end with the EOF opcode then the checksum (8 bytes, LE).
const RDB_OPCODE_EOF: u8 = 0xff;
const TRAILER_LEN: usize = 9;
const HEADER_LEN: usize = 9;

/// A reply line longer than this is not a `SYNC` reply.
const MAX_LINE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("RDB snapshots need a plain TCP or unix-socket connection; {addr} is TLS (take a `full` backup instead)")]
    Tls { addr: String },
    #[error("AUTH failed: {0}")]
    Auth(String),
    #[error("the server refused SYNC: {0}")]
    Refused(String),
    #[error("unexpected reply to SYNC: {0:?}")]
    Protocol(String),
    #[error("the server stopped sending after {got} of {expected} bytes of the snapshot")]
    Truncated { got: u64, expected: u64 },
    #[error("the server closed the connection before the end of the diskless snapshot ({got} bytes received)")]
    TruncatedDiskless { got: u64 },
    #[error("not an RDB file: {0}")]
    NotRdb(String),
    #[error(
        "RDB checksum mismatch: the trailer says {expected:016x}, the contents give {actual:016x}: \
         the snapshot is corrupt"
    )]
    Checksum { expected: u64, actual: u64 },
    #[error("{context}: {source}")]
    Io { context: &'static str, source: io::Error },
}

fn io_err(context: &'static str) -> impl FnOnce(io::Error) -> RdbError {
    move |source| RdbError::Io { context, source }
}

/// What a checked RDB turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbSummary {
    pub bytes: u64,
    pub rdb_version: u32,
    /// `None` when the server wrote a zero checksum (`rdbchecksum no`):
    /// the file is whole as far as its framing shows, its contents unchecked.
    pub checksum: Option<u64>,
}

/// How a snapshot was transferred.
#[derive(Debug, Clone)]
pub struct FetchStats {
    pub summary: RdbSummary,
    /// `$EOF:` form: the server streamed it without writing a file.
    pub diskless: bool,
    /// The server accepted `REPLCONF rdb-only 1`.
    pub rdb_only: bool,
}

// ---------------------------------------------------------------------------
// Checking

/// Checks an RDB as it streams past: header, EOF opcode, CRC-64 of every
/// byte before the 8-byte little-endian trailer.
#[derive(Debug, Default)]
pub struct RdbChecker {
    crc: Crc64,
    header: Vec<u8>,
    /// The last bytes seen: the EOF opcode and the checksum, once all is in.
    tail: [u8; TRAILER_LEN],
    tail_len: usize,
    total: u64,
}

impl RdbChecker {
    pub fn new() -> Self {
        RdbChecker::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if self.header.len() < HEADER_LEN {
            let take = (HEADER_LEN - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..take]);
        }
        // Everything but the last TRAILER_LEN bytes is certainly covered by
        // the checksum; those are held back until more arrives.
        if data.len() >= TRAILER_LEN {
            self.crc.update(&self.tail[..self.tail_len]);
            let (body, tail) = data.split_at(data.len() - TRAILER_LEN);
            self.crc.update(body);
            self.tail.copy_from_slice(tail);
            self.tail_len = TRAILER_LEN;
        } else {
            let mut joined = [0u8; 2 * TRAILER_LEN];
            joined[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            joined[self.tail_len..self.tail_len + data.len()].copy_from_slice(data);
            let len = self.tail_len + data.len();
            let spill = len.saturating_sub(TRAILER_LEN);
            self.crc.update(&joined[..spill]);
            self.tail[..len - spill].copy_from_slice(&joined[spill..len]);
            self.tail_len = len - spill;
        }
    }

    pub fn finish(mut self) -> Result<RdbSummary, RdbError> {
        if self.header.len() < HEADER_LEN || !self.header.starts_with(b"REDIS") {
            return Err(RdbError::NotRdb(format!(
                "it does not start with REDIS and a version ({} bytes in all)",
                self.total
            )));
        }
        let version = std::str::from_utf8(&self.header[5..HEADER_LEN])
            .ok()
            .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| RdbError::NotRdb("the version after REDIS is not 4 digits".into()))?;
        if version < 5 {
            return Err(RdbError::NotRdb(format!(
                "RDB version {version} (Redis before 2.6) has no checksum to verify"
            )));
        }
        if self.total < (HEADER_LEN + TRAILER_LEN) as u64 || self.tail_len < TRAILER_LEN {
            return Err(RdbError::NotRdb(format!("only {} bytes: truncated", self.total)));
        }
        if self.tail[0] != RDB_OPCODE_EOF {
            return Err(RdbError::NotRdb(
                "it does not end with the EOF opcode and a checksum: truncated".into(),
            ));
        }
        self.crc.update(&self.tail[..1]);
        let expected = u64::from_le_bytes(self.tail[1..].try_into().expect("8 bytes"));
        let actual = self.crc.value();
        if expected != 0 && expected != actual {
            return Err(RdbError::Checksum { expected, actual });
        }
        Ok(RdbSummary {
            bytes: self.total,
            rdb_version: version,
            checksum: (expected != 0).then_some(expected),
        })
    }
}

/// Checks a whole RDB from a reader.
pub fn check(mut reader: impl Read, progress: &mut dyn Progress) -> Result<RdbSummary, RdbError> {
    let mut checker = RdbChecker::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(RdbError::Io {
                    context: "cannot read the snapshot",
                    source,
                });
            }
        };
        checker.update(&buf[..n]);
        progress.advance(n as u64);
    }
    checker.finish()
}

// ---------------------------------------------------------------------------
// Diskless framing

/// Finds the end of a diskless payload: the 40-byte mark announced in
/// `$EOF:<mark>`, which may arrive split across any number of reads. Bytes
/// are passed on only once they cannot be part of the mark.
#[derive(Debug)]
pub struct EofScanner {
    mark: [u8; EOF_MARK_LEN],
    held: Vec<u8>,
}

impl EofScanner {
    pub fn new(mark: [u8; EOF_MARK_LEN]) -> Self {
        EofScanner {
            mark,
            held: Vec::with_capacity(EOF_MARK_LEN),
        }
    }

    /// Feeds one read; `emit` gets the payload bytes now known. Returns
    /// true once the mark has arrived (it ends the payload and is dropped).
    pub fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<bool> {
        let total = self.held.len() + data.len();
        let done = total >= EOF_MARK_LEN && self.ends_with_mark(data);
        let payload = total.saturating_sub(EOF_MARK_LEN);
        let from_held = payload.min(self.held.len());
        let from_data = payload - from_held;
        if from_held > 0 {
            emit(&self.held[..from_held])?;
        }
        if from_data > 0 {
            emit(&data[..from_data])?;
        }
        if done {
            self.held.clear();
            return Ok(true);
        }
        self.held.drain(..from_held);
        self.held.extend_from_slice(&data[from_data..]);
        Ok(false)
    }

    /// Whether `held ++ data` ends with the mark.
    fn ends_with_mark(&self, data: &[u8]) -> bool {
        if data.len() >= EOF_MARK_LEN {
            return data.ends_with(&self.mark);
        }
        let (head, tail) = self.mark.split_at(EOF_MARK_LEN - data.len());
        tail == data && self.held.ends_with(head)
    }
}

// ---------------------------------------------------------------------------
// The network

trait Socket: Read + Write + Send {}
impl<T: Read + Write + Send> Socket for T {}

fn connect(info: &ConnectionInfo, timeout: Duration) -> Result<Box<dyn Socket>, RdbError> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            let addr = format!("{host}:{port}");
            let failed = |source| RdbError::Connect {
                addr: addr.clone(),
                source,
            };
            let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolves to no address");
            for sock_addr in (host.as_str(), *port).to_socket_addrs().map_err(failed)? {
                match TcpStream::connect_timeout(&sock_addr, timeout) {
                    Ok(stream) => {
                        stream.set_read_timeout(Some(timeout)).map_err(failed)?;
                        stream.set_write_timeout(Some(timeout)).map_err(failed)?;
                        let _ = stream.set_nodelay(true);
                        return Ok(Box::new(stream));
                    }
                    Err(e) => last = e,
                }
            }
            Err(failed(last))
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => {
            let failed = |source| RdbError::Connect {
                addr: path.display().to_string(),
                source,
            };
            let stream = std::os::unix::net::UnixStream::connect(path).map_err(failed)?;
            stream.set_read_timeout(Some(timeout)).map_err(failed)?;
            stream.set_write_timeout(Some(timeout)).map_err(failed)?;
            Ok(Box::new(stream))
        }
        other => Err(RdbError::Tls {
            addr: other.to_string(),
        }),
    }
}

/// RESP encoding of one command.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One reply line without its CRLF. Lone newlines (the keepalives a server
/// sends while it prepares a snapshot) are skipped.
fn read_line(reader: &mut impl BufRead) -> Result<String, RdbError> {
    loop {
        let mut line = Vec::new();
        let n = reader
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .map_err(io_err("cannot read the server's reply"))?;
        if n == 0 {
            return Err(RdbError::Protocol("the server closed the connection".into()));
        }
        if line.last() != Some(&b'\n') {
            return Err(RdbError::Protocol(
                String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned(),
            ));
        }
        let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned();
        if !text.is_empty() {
            return Ok(text);
        }
    }
}

/// A simple reply: `Ok(text)` for `+…`, `Err(message)` for `-…`.
fn simple_reply(reader: &mut impl BufRead) -> Result<Result<String, String>, RdbError> {
    let line = read_line(reader)?;
    match line.as_bytes().first() {
        Some(b'+') => Ok(Ok(line[1..].to_owned())),
        Some(b'-') => Ok(Err(line[1..].to_owned())),
        _ => Err(RdbError::Protocol(line)),
    }
}

/// Takes a snapshot of the server behind `info` into `sink`, checking it on
/// the way; an error means the sink holds no complete, valid snapshot.
pub fn fetch(
    info: &ConnectionInfo,
    io_timeout: Duration,
    sink: &mut dyn Write,
    progress: &mut dyn Progress,
) -> Result<FetchStats, RdbError> {
    let socket = connect(info, io_timeout)?;
    let mut reader = BufReader::with_capacity(64 * 1024, socket);
    let settings = info.redis_settings();
    if let Some(password) = settings.password().filter(|p| !p.is_empty()) {
        let cmd = match settings.username().filter(|u| !u.is_empty()) {
            Some(user) => command(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
            None => command(&[b"AUTH", password.as_bytes()]),
        };
        write_all(reader.get_mut(), &cmd)?;
        if let Err(e) = simple_reply(&mut reader)? {
            return Err(RdbError::Auth(crate::secrets::redact(&e)));
        }
    }
    // `capa eof` lets the server stream without a temporary file, if it is
    // configured to (repl-diskless-sync); a server that does not know it
    // sends the `$<len>` form, which is read all the same.
    write_all(reader.get_mut(), &command(&[b"REPLCONF", b"capa", b"eof"]))?;
    let _ = simple_reply(&mut reader)?;
    write_all(reader.get_mut(), &command(&[b"REPLCONF", b"rdb-only", b"1"]))?;
    let rdb_only = simple_reply(&mut reader)?.is_ok();
    if !rdb_only {
        tracing::debug!("Server refused REPLCONF rdb-only; reading only the snapshot of a plain SYNC");
    }
    write_all(reader.get_mut(), b"SYNC\r\n")?;
    let header = read_line(&mut reader)?;
    if let Some(message) = header.strip_prefix('-') {
        let hint = if message.starts_with("NOAUTH") {
            " (set the target's password, and username for an ACL user)"
        } else if message.starts_with("NOPERM") {
            " (the user needs the SYNC and REPLCONF commands, e.g. +sync +replconf or +@admin)"
        } else {
            ""
        };
        return Err(RdbError::Refused(format!("{}{hint}", crate::secrets::redact(message))));
    }
    let mut checker = RdbChecker::new();
    let mut buf = vec![0u8; CHUNK];
    let diskless = if let Some(mark) = header.strip_prefix("$EOF:") {
        let mark: [u8; EOF_MARK_LEN] = mark
            .as_bytes()
            .try_into()
            .map_err(|_| RdbError::Protocol(header.clone()))?;
        progress.begin("snapshot", None, super::Unit::Bytes);
        let mut scanner = EofScanner::new(mark);
        let mut got = 0u64;
        loop {
            let n = read_some(&mut reader, &mut buf)?;
            if n == 0 {
                return Err(RdbError::TruncatedDiskless { got });
            }
            got += n as u64;
            let done = scanner
                .push(&buf[..n], &mut |payload| {
                    checker.update(payload);
                    progress.advance(payload.len() as u64);
                    sink.write_all(payload)
                })
                .map_err(io_err("cannot write the snapshot"))?;
            if done {
                break;
            }
        }
        true
    } else if let Some(len) = header.strip_prefix('$').and_then(|l| l.parse::<u64>().ok()) {
        progress.begin("snapshot", Some(len), super::Unit::Bytes);
        let mut left = len;
        while left > 0 {
            let want = (left.min(CHUNK as u64)) as usize;
            let n = read_some(&mut reader, &mut buf[..want])?;
            if n == 0 {
                return Err(RdbError::Truncated {
                    got: len - left,
                    expected: len,
                });
            }
            checker.update(&buf[..n]);
            sink.write_all(&buf[..n]).map_err(io_err("cannot write the snapshot"))?;
            progress.advance(n as u64);
            left -= n as u64;
        }
        false
    } else {
        return Err(RdbError::Protocol(header));
    };
    progress.end();
    // Whatever follows (the replication stream of a plain SYNC) is not read.
    let summary = checker.finish()?;
    Ok(FetchStats {
        summary,
        diskless,
        rdb_only,
    })
}

fn write_all(socket: &mut dyn Socket, bytes: &[u8]) -> Result<(), RdbError> {
    socket
        .write_all(bytes)
        .and_then(|_| socket.flush())
        .map_err(io_err("cannot write to the server"))
}

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, RdbError> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(RdbError::Io {
                    context: "the server sent nothing for [backup] io_timeout",
                    source: e,
                });
            }
            other => return other.map_err(io_err("cannot read the snapshot")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::crc64::crc64;

    /// A minimal valid RDB: header, an EOF opcode, the checksum.
    fn rdb(body: &[u8]) -> Vec<u8> {
        let mut v = b"REDIS0010".to_vec();
        v.extend_from_slice(body);
        v.push(RDB_OPCODE_EOF);
        let crc = crc64(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    fn check_in_chunks(data: &[u8], chunk: usize) -> Result<RdbSummary, RdbError> {
        let mut c = RdbChecker::new();
        for part in data.chunks(chunk.max(1)) {
            c.update(part);
        }
        c.finish()
    }

    #[test]
    fn a_valid_rdb_checks_in_any_chunking() {
        let data = rdb(b"\xfa\x09redis-ver\x057.0.0\xfe\x00\xfb\x01\x00\x00\x03key\x05value");
        for chunk in [1, 2, 8, 9, 10, 17, 1000] {
            let s = check_in_chunks(&data, chunk).unwrap();
            assert_eq!(s.rdb_version, 10);
            assert_eq!(s.bytes, data.len() as u64);
            assert!(s.checksum.is_some());
        }
    }

    #[test]
    fn a_flipped_byte_or_truncation_fails_with_a_reason() {
        let data = rdb(b"\x00\x03key\x05value");
        let mut bad = data.clone();
        bad[12] ^= 0x40;
        assert!(matches!(check_in_chunks(&bad, 4), Err(RdbError::Checksum { .. })));
        let err = check_in_chunks(&data[..data.len() - 3], 5).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(matches!(check_in_chunks(b"", 1), Err(RdbError::NotRdb(_))));
        assert!(matches!(check_in_chunks(b"REDISxxxx", 1), Err(RdbError::NotRdb(_))));
    }

    #[test]
    fn a_zero_checksum_means_checksums_were_disabled() {
        let mut data = b"REDIS0009\x00\x01k\x01v\xff".to_vec();
        data.extend_from_slice(&[0; 8]);
        assert_eq!(check_in_chunks(&data, 3).unwrap().checksum, None);
    }

    #[test]
    fn the_eof_mark_is_found_when_split_across_reads() {
        let mark: [u8; EOF_MARK_LEN] = *b"0123456789abcdef0123456789abcdef01234567";
        // The payload itself ends with a prefix of the mark, to catch a
        // scanner that matches too early.
        let mut payload: Vec<u8> = (0..300u32).map(|i| (i % 256) as u8).collect();
        payload.extend_from_slice(&mark[..39]);
        payload.extend_from_slice(b"tail");
        let mut stream = payload.clone();
        stream.extend_from_slice(&mark);
        for first in 0..stream.len() {
            for chunk in [1, 3, 39, 40, 41, 1000] {
                let mut scanner = EofScanner::new(mark);
                let mut got = Vec::new();
                let mut done = false;
                let mut pieces = vec![&stream[..first]];
                pieces.extend(stream[first..].chunks(chunk));
                for (i, piece) in pieces.iter().enumerate() {
                    assert!(!done, "data after the mark at piece {i}");
                    done = scanner
                        .push(piece, &mut |p| {
                            got.extend_from_slice(p);
                            Ok(())
                        })
                        .unwrap();
                }
                assert!(done, "mark not found: first={first} chunk={chunk}");
                assert_eq!(got, payload, "first={first} chunk={chunk}");
            }
        }
    }

    #[test]
    fn a_stream_without_the_mark_never_ends() {
        let mark = [b'x'; EOF_MARK_LEN];
        let mut scanner = EofScanner::new(mark);
        let mut got = 0;
        for piece in [&b"abc"[..], &[b'x'; 39], b"y"] {
            assert!(
                !scanner
                    .push(piece, &mut |p| {
                        got += p.len();
                        Ok(())
                    })
                    .unwrap()
            );
        }
        assert_eq!(got, 43 - EOF_MARK_LEN);
    }
}
