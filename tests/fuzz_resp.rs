//! The keyspace reader's RESP parser against redis-rs's as the oracle.
//!
//! Random RESP2 and RESP3 frames (pub/sub messages, confirmations and every
//! other type: integers, errors, bulk and null strings, nested arrays, maps,
//! sets, attributes, pushes, doubles, booleans, big numbers, verbatim
//! strings) are encoded, concatenated, and fed to the reader's
//! [`ReadBuffer`] in two chunks split at every byte boundary. Each frame must
//! come out as redis-rs classifies it when it parses that frame alone, and a
//! frame cut short must ask for more, never be misparsed. Mutated and random
//! bytes must never panic, and whatever the parser calls a message there,
//! redis-rs must parse to the same message.
//!
//! `PROPTEST_CASES=20000 cargo test --release --test fuzz_resp` is a longer
//! session.

use proptest::prelude::*;
use redis::{PushKind, Value};
use redops::sources::keyspace::resp::{Frame, ReadBuffer, parse_frame};

const DEFAULT_CASES: u32 = 256;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A RESP value as the generator builds it; [`encode`] writes it.
#[derive(Debug, Clone)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    NullBulk,
    NullArray,
    Null,
    Double(i32, u8),
    Boolean(bool),
    BigNumber(u64),
    BlobError(String),
    Verbatim(String),
    Array(Vec<Resp>),
    Set(Vec<Resp>),
    Map(Vec<(Resp, Resp)>),
    Attribute(Vec<(Resp, Resp)>, Box<Resp>),
    /// A push's kind (a bulk string when true, else a simple string) and data.
    Push(String, bool, Vec<Resp>),
    EmptyPush,
}

fn encode(v: &Resp, out: &mut Vec<u8>) {
    let line = |out: &mut Vec<u8>, t: char, s: &str| out.extend_from_slice(format!("{t}{s}\r\n").as_bytes());
    let blob = |out: &mut Vec<u8>, t: char, b: &[u8]| {
        out.extend_from_slice(format!("{t}{}\r\n", b.len()).as_bytes());
        out.extend_from_slice(b);
        out.extend_from_slice(b"\r\n");
    };
    match v {
        Resp::Simple(s) => line(out, '+', s),
        Resp::Error(s) => line(out, '-', s),
        Resp::Int(i) => line(out, ':', &i.to_string()),
        Resp::Bulk(b) => blob(out, '$', b),
        Resp::NullBulk => out.extend_from_slice(b"$-1\r\n"),
        Resp::NullArray => out.extend_from_slice(b"*-1\r\n"),
        Resp::Null => out.extend_from_slice(b"_\r\n"),
        Resp::Double(i, f) => line(out, ',', &format!("{i}.{f}")),
        Resp::Boolean(b) => line(out, '#', if *b { "t" } else { "f" }),
        Resp::BigNumber(n) => line(out, '(', &format!("{n}{n}")),
        Resp::BlobError(s) => blob(out, '!', s.as_bytes()),
        Resp::Verbatim(s) => blob(out, '=', format!("txt:{s}").as_bytes()),
        Resp::Array(items) | Resp::Set(items) => {
            line(
                out,
                if matches!(v, Resp::Array(_)) { '*' } else { '~' },
                &items.len().to_string(),
            );
            items.iter().for_each(|i| encode(i, out));
        }
        Resp::Map(pairs) | Resp::Attribute(pairs, _) => {
            line(
                out,
                if matches!(v, Resp::Map(_)) { '%' } else { '|' },
                &pairs.len().to_string(),
            );
            for (k, v) in pairs {
                encode(k, out);
                encode(v, out);
            }
            if let Resp::Attribute(_, data) = v {
                encode(data, out);
            }
        }
        Resp::Push(kind, bulk, data) => {
            line(out, '>', &(data.len() + 1).to_string());
            if *bulk {
                blob(out, '$', kind.as_bytes());
            } else {
                line(out, '+', kind);
            }
            data.iter().for_each(|d| encode(d, out));
        }
        Resp::EmptyPush => out.extend_from_slice(b">0\r\n"),
    }
}

/// Bytes a key or channel may hold: anything, CR LF and RESP markers included.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        prop::collection::vec(prop::sample::select(b"*$\r\n:+-0123456789ab".to_vec()), 0..24),
    ]
}

/// A line's text: no CR or LF.
fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,16}".prop_map(|s| s.replace(['\r', '\n'], ""))
}

fn kind() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "message",
        "pmessage",
        "psubscribe",
        "subscribe",
        "punsubscribe",
        "smessage",
        "pong",
        "Message",
        "",
    ])
    .prop_map(str::to_owned)
}

fn scalar() -> impl Strategy<Value = Resp> {
    prop_oneof![
        text().prop_map(Resp::Simple),
        text().prop_map(Resp::Error),
        any::<i64>().prop_map(Resp::Int),
        bytes().prop_map(Resp::Bulk),
        Just(Resp::NullBulk),
        Just(Resp::NullArray),
        Just(Resp::Null),
        (any::<i32>(), any::<u8>()).prop_map(|(i, f)| Resp::Double(i, f)),
        any::<bool>().prop_map(Resp::Boolean),
        any::<u64>().prop_map(Resp::BigNumber),
        text().prop_map(Resp::BlobError),
        text().prop_map(Resp::Verbatim),
        Just(Resp::EmptyPush),
    ]
}

/// Any value, nested up to three levels.
fn value() -> impl Strategy<Value = Resp> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Resp::Array),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Resp::Set),
            prop::collection::vec((inner.clone(), inner.clone()), 0..3).prop_map(Resp::Map),
            (
                prop::collection::vec((inner.clone(), inner.clone()), 0..2),
                inner.clone()
            )
                .prop_map(|(a, d)| Resp::Attribute(a, Box::new(d))),
            (kind(), any::<bool>(), prop::collection::vec(inner, 0..4)).prop_map(|(k, b, d)| Resp::Push(k, b, d)),
        ]
    })
}

/// A pub/sub-shaped frame: a kind then 1 to 4 parts, mostly bulk strings,
/// as a RESP2 array (kind as a bulk or simple string) or a RESP3 push.
fn pubsub() -> impl Strategy<Value = Resp> {
    let part = prop_oneof![8 => bytes().prop_map(Resp::Bulk), 1 => scalar(), 1 => value()];
    (kind(), any::<bool>(), 0u8..3, prop::collection::vec(part, 1..5)).prop_map(|(kind, bulk, shape, parts)| {
        if shape == 0 {
            Resp::Push(kind, bulk, parts)
        } else {
            let head = if bulk {
                Resp::Bulk(kind.into_bytes())
            } else {
                Resp::Simple(kind)
            };
            Resp::Array(std::iter::once(head).chain(parts).collect())
        }
    })
}

fn frame() -> impl Strategy<Value = Resp> {
    prop_oneof![3 => pubsub(), 1 => value()]
}

/// What a frame is, from the reader's point of view.
#[derive(Debug, Clone, PartialEq)]
enum Class {
    Message(Vec<u8>, Vec<u8>),
    Subscribed,
    Error,
    Other,
}

fn class_of(frame: Frame<'_>) -> Class {
    match frame {
        Frame::Message { channel, payload } => Class::Message(channel.to_vec(), payload.to_vec()),
        Frame::Subscribed => Class::Subscribed,
        Frame::Error(_) => Class::Error,
        Frame::Other => Class::Other,
    }
}

/// The oracle: what redis-rs's value says the frame is.
fn oracle(v: &Value) -> Class {
    match v {
        Value::ServerError(_) => Class::Error,
        Value::Array(items) => match items.split_first() {
            Some((Value::BulkString(kind), rest)) => by_kind(kind, rest),
            Some((Value::SimpleString(kind), rest)) => by_kind(kind.as_bytes(), rest),
            _ => Class::Other,
        },
        Value::Push { kind, data } => {
            let kind: &[u8] = match kind {
                PushKind::Message => b"message",
                PushKind::PMessage => b"pmessage",
                PushKind::Subscribe => b"subscribe",
                PushKind::PSubscribe => b"psubscribe",
                PushKind::Other(other) => other.as_bytes(),
                _ => b"",
            };
            by_kind(kind, data)
        }
        _ => Class::Other,
    }
}

fn by_kind(kind: &[u8], rest: &[Value]) -> Class {
    let bulks: Option<Vec<&Vec<u8>>> = rest
        .iter()
        .map(|v| match v {
            Value::BulkString(b) => Some(b),
            _ => None,
        })
        .collect();
    match (kind, bulks.as_deref()) {
        (b"message", Some([channel, payload])) => Class::Message(channel.to_vec(), payload.to_vec()),
        (b"pmessage", Some([_, channel, payload])) => Class::Message(channel.to_vec(), payload.to_vec()),
        (b"subscribe" | b"psubscribe", _) => Class::Subscribed,
        _ => Class::Other,
    }
}

fn check_frames(frames: &[Resp]) -> Result<(), TestCaseError> {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let mut bytes = Vec::new();
        encode(f, &mut bytes);
        let value = redis::parse_redis_value(&bytes)
            .map_err(|e| TestCaseError::fail(format!("the oracle rejects generated frame {i} {f:?}: {e}")))?;
        expected.push(oracle(&value));
        if i == 0 {
            for n in 0..bytes.len() {
                prop_assert_eq!(parse_frame(&bytes[..n]), Ok(None), "a prefix of {} bytes of {:?}", n, f);
            }
            let whole = parse_frame(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(whole.map(|(_, used)| used), Some(bytes.len()));
        }
        stream.extend_from_slice(&bytes);
    }
    for split in 0..=stream.len() {
        let (got, error) = buffered(&[&stream[..split], &stream[split..]], 7);
        prop_assert_eq!(error, None, "split at byte {}", split);
        prop_assert_eq!(&got, &expected, "split at byte {}", split);
    }
    Ok(())
}

/// On any bytes: no panic, never more than the input, and a message only
/// where redis-rs reads the same message.
fn check_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(Some((frame, used))) = parse_frame(bytes) {
        prop_assert!(used <= bytes.len());
        if let Frame::Message { .. } = frame {
            let value = redis::parse_redis_value(&bytes[..used])
                .map_err(|e| TestCaseError::fail(format!("we read a message, redis-rs an error: {e}")))?;
            prop_assert_eq!(oracle(&value), class_of(frame));
        }
    }
    Ok(())
}

/// Feeds `chunks` in turn through a small buffer (so it compacts and
/// grows), as reads of at most `piece` bytes: every frame, and the error
/// that ends them if one does.
fn buffered(chunks: &[&[u8]], piece: usize) -> (Vec<Class>, Option<String>) {
    let mut buffer = ReadBuffer::new(16, 1 << 20);
    let mut got = Vec::new();
    for chunk in chunks {
        let mut fed = 0;
        while fed < chunk.len() {
            let spare = match buffer.spare() {
                Ok(spare) => spare,
                Err(e) => return (got, Some(e.to_string())),
            };
            let n = spare.len().min(piece).min(chunk.len() - fed);
            spare[..n].copy_from_slice(&chunk[fed..fed + n]);
            buffer.filled(n);
            fed += n;
            loop {
                match buffer.next_frame() {
                    Ok(Some(frame)) => got.push(class_of(frame)),
                    Ok(None) => break,
                    Err(e) => return (got, Some(e.to_string())),
                }
            }
        }
    }
    (got, None)
}

/// The same stream parsed a frame at a time from the whole of it.
fn parsed_alone(stream: &[u8]) -> (Vec<Class>, Option<String>) {
    let mut got = Vec::new();
    let mut at = 0;
    loop {
        match parse_frame(&stream[at..]) {
            Ok(Some((frame, used))) => {
                got.push(class_of(frame));
                at += used;
            }
            Ok(None) => return (got, None),
            Err(e) => return (got, Some(e.to_string())),
        }
    }
}

/// A storm's frames: a few message heads over and over, with payloads of
/// every length, null and broken payloads, and other frames between.
fn storm() -> impl Strategy<Value = Vec<u8>> {
    let heads: [&[u8]; 4] = [
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$",
        b"*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$",
        b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$3\r\nch2\r\n$",
        b"*3\r\n+message\r\n$2\r\nch\r\n$",
    ];
    let payload = prop_oneof![
        8 => bytes().prop_map(|b| [format!("{}\r\n", b.len()).into_bytes(), b, b"\r\n".to_vec()].concat()),
        1 => Just(b"-1\r\n".to_vec()),
        1 => Just(b"3\r\nabcd\r\n".to_vec()),
        1 => Just(b"x\r\n".to_vec()),
    ];
    let message = (0..heads.len(), payload).prop_map(move |(h, p)| [heads[h], &p].concat());
    let other = frame().prop_map(|f| {
        let mut bytes = Vec::new();
        encode(&f, &mut bytes);
        bytes
    });
    prop::collection::vec(prop_oneof![6 => message, 1 => other], 1..12).prop_map(|frames| frames.concat())
}

proptest! {
    #![proptest_config(config())]

    /// The buffer's shortcut for a message that starts as the last one did
    /// gives what a full parse of each frame gives, errors included.
    #[test]
    fn repeated_message_heads_parse_as_each_frame_alone(stream in storm(), piece in 1usize..64) {
        prop_assert_eq!(buffered(&[&stream], piece), parsed_alone(&stream));
    }

    #[test]
    fn frames_split_anywhere_parse_as_redis_rs_parses_them(frames in prop::collection::vec(frame(), 1..4)) {
        check_frames(&frames)?;
    }

    #[test]
    fn mutated_frames_never_panic_nor_misparse(
        f in frame(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = Vec::new();
        encode(&f, &mut bytes);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        check_bytes(&bytes)?;
        check_bytes(&bytes[..cut.index(bytes.len() + 1)])?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_bytes(&bytes)?;
    }
}
