//! Hostile input from the outside world, end to end: key names built to
//! break JSON, logs and headers, and webhook receivers that answer with a
//! flood or a drip.

mod harness;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, target_and_hook};

// ---------------------------------------------------------------------------
// Hostile key names

const HEADER_INJECTION: &str = "hostile:a\r\nBcc: x@evil";
/// A key that would forge a whole log line if written raw.
const FORGED_LOG_LINE: &str = "hostile:x\n2020-01-01T00:00:00.000000Z ERROR redops: forged";
const MARKUP: &str = "hostile:<script>alert(1)</script>";
const UNICODE: &str = "hostile:ключ-键-🔑-\u{202e}gnp.exe";
const INVALID_UTF8: &[u8] = b"hostile:\xff\xfe\x00bin\xc3\x28";
const LONG_KEY_LEN: usize = 100 * 1024;

fn hostile_keys() -> Vec<Vec<u8>> {
    let long = format!("hostile:{}", "k".repeat(LONG_KEY_LEN));
    vec![
        HEADER_INJECTION.as_bytes().to_vec(),
        FORGED_LOG_LINE.as_bytes().to_vec(),
        MARKUP.as_bytes().to_vec(),
        UNICODE.as_bytes().to_vec(),
        INVALID_UTF8.to_vec(),
        long.into_bytes(),
    ]
}

const HOSTILE_RULES: &str = r#"
[[rule]]
name = "hostile_keys"
source = "keyspace"
events = ["set"]
keys = "hostile:*"
window = "60s"
when = "count >= 6"
severity = "high"
playbook = "echo_keys"
summary = "{{ count }} hostile keys set on {{ target }}"
"#;

/// Hands every key it finds to the log and to a receiver, as a playbook
/// that reports on keys (big keys, sessions) does.
const ECHO_KEYS: &str = r#"
for key in redis.scan("hostile:*") {
    log.warn(`hostile key ${key}`);
    notify("hook", #{ text: `key ${key}`, key: key });
}
"#;

fn is_log_line(line: &str) -> bool {
    // `2026-11-26T08:47:49.371049Z  WARN redops::…`: tracing's format.
    let b = line.as_bytes();
    b.len() > 27 && b[4] == b'-' && b[10] == b'T' && b[26] == b'Z' && b[..4].iter().all(u8::is_ascii_digit)
}

#[test]
fn hostile_key_names_stay_escaped_in_json_and_logs_and_the_engine_goes_on() {
    let redis = TestRedis::start(&[("notify-keyspace-events", "E$")]);
    let hook = WebhookReceiver::start();
    let config = target_and_hook(
        "cache",
        &redis.url(0),
        "probes = { marker = \"GET marker\" }",
        &hook.url(),
    );
    let rules = format!(
        "{HOSTILE_RULES}\n[[rule]]\nname = \"still_alive\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"info\"\n"
    );
    let dir = engine_dir("300ms", &config, &[("hostile", &rules)], &[("echo_keys", ECHO_KEYS)]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Keyspace subscription active", Duration::from_secs(10));

    let mut conn = redis.conn();
    for key in hostile_keys() {
        let _: () = redis::cmd("SET").arg(&key).arg("v").query(&mut conn).unwrap();
    }

    let got = hook.wait_for(Duration::from_secs(20), |r| {
        r.iter().filter(|r| r.body["kind"] == "message").count() >= hostile_keys().len()
    });
    let fired = alerts(&got, "hostile_keys", "firing");
    assert!(!fired.is_empty(), "{}", hook.describe());
    assert_eq!(fired[0].body["summary"], "6 hostile keys set on cache");

    for r in &got {
        assert!(!r.body.is_null(), "a body that is not JSON:\n{}", r.text());
        assert!(
            !r.raw.iter().any(|b| b.is_ascii_control()),
            "raw control bytes in a JSON body:\n{:?}",
            r.text()
        );
    }
    let keys: Vec<String> = got
        .iter()
        .filter(|r| r.body["kind"] == "message")
        .map(|r| {
            r.body["body"]["key"]
                .as_str()
                .expect("the key is a JSON string")
                .to_owned()
        })
        .collect();
    for expected in [HEADER_INJECTION, FORGED_LOG_LINE, MARKUP, UNICODE] {
        assert!(keys.iter().any(|k| k == expected), "{expected:?} not among {keys:?}");
    }
    assert!(
        keys.iter().any(|k| k == &String::from_utf8_lossy(INVALID_UTF8)),
        "invalid UTF-8 arrives as replacement characters: {keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.len() == "hostile:".len() + LONG_KEY_LEN),
        "the 100 KB key arrives whole"
    );

    // Every line of the log is one event: no CR/LF from a key split one, so
    // nothing can forge a line or a header.
    redops.wait_log("Playbook succeeded", Duration::from_secs(10));
    let output = redops.output();
    for line in output.lines().filter(|l| !l.is_empty()) {
        assert!(
            is_log_line(line),
            "a log line that does not start with a timestamp (a key broke a line):\n{}",
            &line[..line.len().min(300)]
        );
    }
    assert!(
        output.contains(r"hostile:a\r\nBcc: x@evil"),
        "the key is logged escaped"
    );
    assert!(output.contains(r"hostile:x\n2020-01-01T00:00:00.000000Z ERROR"));
    assert!(
        !output.lines().any(|l| l.starts_with("2020-01-01T")),
        "a key forged a log line"
    );

    // The engine goes on: a new condition still fires.
    redis.cli(&["SET", "marker", "1"]);
    hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "still_alive", "firing").is_empty()
    });
    assert!(redops.terminate().success(), "{}", redops.output());
}

// ---------------------------------------------------------------------------
// Receivers that flood or drip

/// What a raw receiver saw of one connection.
#[derive(Debug, Clone)]
struct Connection {
    accepted: Instant,
    /// When redops closed it (a failed write or an EOF), if it did.
    closed: Option<Instant>,
    response_bytes_sent: u64,
}

#[derive(Clone, Copy)]
enum Answer {
    /// `200 OK` announcing and sending this many body bytes.
    Flood(u64),
    /// `200 OK`, one byte a second.
    Drip,
}

/// An HTTP server on raw TCP, to answer as no well-behaved server would.
struct RawReceiver {
    port: u16,
    connections: Arc<Mutex<Vec<Connection>>>,
}

impl RawReceiver {
    fn start(answer: Answer) -> RawReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: Arc<Mutex<Vec<Connection>>> = Arc::default();
        let log = connections.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let log = log.clone();
                thread::spawn(move || serve(stream, answer, &log));
            }
        });
        RawReceiver { port, connections }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn connections(&self) -> Vec<Connection> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn serve(mut stream: TcpStream, answer: Answer, log: &Mutex<Vec<Connection>>) {
    let accepted = Instant::now();
    read_request(&mut stream);
    let index = {
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push(Connection {
            accepted,
            closed: None,
            response_bytes_sent: 0,
        });
        log.len() - 1
    };
    let record = |sent: u64, closed: bool| {
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        log[index].response_bytes_sent = sent;
        if closed {
            log[index].closed = Some(Instant::now());
        }
    };
    match answer {
        Answer::Flood(len) => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            let mut closed = stream.write_all(head.as_bytes()).is_err();
            while !closed && sent < len {
                let n = chunk.len().min((len - sent) as usize);
                closed = stream.write_all(&chunk[..n]).is_err();
                if !closed {
                    sent += n as u64;
                    record(sent, false);
                }
            }
            record(sent, closed);
        }
        Answer::Drip => {
            // Between bytes, a read shows at once whether redops hung up.
            stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut sent = 0u64;
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
                if stream.write_all(&[*byte]).is_err() {
                    return record(sent, true);
                }
                sent += 1;
                record(sent, false);
                match stream.read(&mut [0u8; 16]) {
                    Ok(0) => return record(sent, true),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    _ => return record(sent, true),
                }
            }
        }
    }
}

/// Reads the request line, headers and a `Content-Length` body.
fn read_request(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let _ = stream.read_exact(&mut vec![0u8; len]);
}

const FLOOD_BYTES: u64 = 50 << 20;

#[test]
fn a_flooding_and_a_dripping_receiver_are_cut_off_and_do_not_delay_the_others() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let flood = RawReceiver::start(Answer::Flood(FLOOD_BYTES));
    let drip = RawReceiver::start(Answer::Drip);
    let config = format!(
        "{}\n[receiver.flood]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [receiver.drip]\ntype = \"webhook\"\nurl = \"{}\"\ntimeout = \"2s\"\n",
        target_and_hook(
            "cache",
            &redis.url(0),
            "probes = { marker = \"GET marker\" }",
            &hook.url()
        ),
        flood.url(),
        drip.url()
    );
    let rules = "[[rule]]\nname = \"marker\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"high\"\n";
    let dir = engine_dir("300ms", &config, &[("marker", rules)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));

    redis.cli(&["SET", "marker", "1"]);
    let got = hook.wait_for(Duration::from_secs(10), |r| !alerts(r, "marker", "firing").is_empty());
    let delivered_at = alerts(&got, "marker", "firing")[0].at;

    // The drip: given up at its 2 s timeout and retried, never waited on.
    let output = redops.wait_log("receiver=drip", Duration::from_secs(10));
    let failure = output
        .lines()
        .find(|l| l.contains("receiver=drip") && l.contains("Delivery failed"))
        .unwrap_or_else(|| panic!("no delivery failure for the drip:\n{output}"));
    assert!(failure.contains("no response within 2s (timeout)"), "{failure}");
    // The drip server sees the hang-up a moment after redops logs it.
    let hung_up = harness::wait_until(Duration::from_secs(2), Duration::from_millis(10), || {
        drip.connections().first().is_some_and(|c| c.closed.is_some())
    });
    assert!(hung_up, "redops did not hang up on the drip");
    let first_drip = drip.connections()[0].clone();
    let drip_closed = first_drip.closed.expect("seen closed above");
    let held = drip_closed - first_drip.accepted;
    assert!(
        held >= Duration::from_millis(1500) && held < Duration::from_secs(4),
        "the drip was held {held:?} for a 2 s timeout"
    );
    assert!(
        delivered_at < first_drip.accepted + Duration::from_secs(1),
        "the healthy receiver waited for the drip: delivered {:?} after the drip connected",
        delivered_at.saturating_duration_since(first_drip.accepted)
    );

    // The flood: the status is all redops needs; it hangs up without
    // reading 50 MB, and the delivery counts as done (no retry).
    assert!(
        harness::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            flood.connections().first().is_some_and(|c| c.closed.is_some())
        }),
        "redops never hung up on the flood: {:?}",
        flood.connections()
    );
    let first_flood = flood.connections()[0].clone();
    assert!(
        first_flood.response_bytes_sent < FLOOD_BYTES / 2,
        "redops let the flood send {} bytes",
        first_flood.response_bytes_sent
    );
    assert!(
        delivered_at < first_flood.accepted + Duration::from_secs(1),
        "the healthy receiver waited for the flood"
    );
    thread::sleep(Duration::from_secs(1));
    assert_eq!(flood.connections().len(), 1, "a 200 is delivered, whatever the body");
    assert!(redops.is_running(), "{}", redops.output());
    assert!(redops.terminate().success(), "{}", redops.output());
}
