//! Logical backups over the network: `SCAN` + `DUMP` + `PTTL` into a
//! [`logical::Writer`], and back with `RESTORE key ttl payload REPLACE`.
//! Both pipeline a batch of keys per round trip; a backup sends the next
//! `SCAN` in the same round trip as the current batch's `DUMP`s.
//!
//! A logical backup is not a point-in-time snapshot: keys written while it
//! runs may or may not be in it (an RDB backup is one).

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;

use super::logical::{self, Record, printable};
use super::{BackupError, Progress, Unit};

/// A restore batch is sent early once its payloads pass this size.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Restore errors quoted in the report; the rest are counted.
const MAX_QUOTED_ERRORS: usize = 5;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

fn redis_err(context: impl Into<String>) -> impl FnOnce(redis::RedisError) -> BackupError {
    let context = context.into();
    move |source| BackupError::Redis { context, source }
}

/// The server's version and its non-empty databases with their key counts.
pub fn server_keyspace(conn: &mut redis::Connection) -> Result<(String, Vec<(u32, u64)>), BackupError> {
    let server: String = redis::cmd("INFO")
        .arg("server")
        .query(conn)
        .map_err(redis_err("INFO server"))?;
    let version = crate::redis::info::parse(&server)
        .fields()
        .find(|(k, _)| *k == "redis_version")
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    let keyspace: String = redis::cmd("INFO")
        .arg("keyspace")
        .query(conn)
        .map_err(redis_err("INFO keyspace"))?;
    Ok((version, parse_keyspace(&keyspace)))
}

/// `db3:keys=10,expires=2,avg_ttl=0` lines → `(3, 10)`.
fn parse_keyspace(info: &str) -> Vec<(u32, u64)> {
    let mut dbs: Vec<(u32, u64)> = info
        .lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().split_once(':')?;
            let db = name.strip_prefix("db")?.parse().ok()?;
            let keys = fields
                .split(',')
                .find_map(|f| f.strip_prefix("keys="))
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            Some((db, keys))
        })
        .collect();
    dbs.sort();
    dbs
}

#[derive(Debug, Clone, Default)]
pub struct DumpStats {
    pub keys: u64,
    /// Keys that were deleted or expired between `SCAN` and `DUMP`.
    pub vanished: u64,
    pub dbs: Vec<u32>,
}

/// Dumps every key of every database into `writer`.
pub fn dump<W: Write>(
    conn: &mut redis::Connection,
    writer: &mut logical::Writer<W>,
    dbs: &[(u32, u64)],
    batch: usize,
    progress: &mut dyn Progress,
) -> Result<DumpStats, BackupError> {
    let total = dbs.iter().map(|(_, keys)| keys).sum();
    progress.begin("keys", Some(total), Unit::Keys);
    let mut stats = DumpStats::default();
    let write_err = |source| BackupError::Io {
        context: "cannot write the backup".into(),
        source,
    };
    for &(db, _) in dbs {
        redis::cmd("SELECT")
            .arg(db)
            .exec(conn)
            .map_err(redis_err(format!("SELECT {db}")))?;
        writer.db(db).map_err(write_err)?;
        stats.dbs.push(db);
        let (mut cursor, mut keys) = scan_reply(
            redis::cmd("SCAN")
                .arg(0)
                .arg("COUNT")
                .arg(batch)
                .query(conn)
                .map_err(redis_err("SCAN"))?,
        )?;
        loop {
            // The last SCAN may well return no keys.
            if keys.is_empty() && cursor == 0 {
                break;
            }
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("DUMP").arg(key).cmd("PTTL").arg(key);
            }
            let more = cursor != 0;
            if more {
                pipe.cmd("SCAN").arg(cursor).arg("COUNT").arg(batch);
            }
            let mut replies: Vec<Value> = pipe.query(conn).map_err(redis_err("DUMP/PTTL pipeline"))?;
            let now = now_ms();
            let next = if more { replies.pop() } else { None };
            let mut replies = replies.into_iter();
            for key in &keys {
                let (dump, pttl) = (replies.next(), replies.next());
                let payload = match dump {
                    Some(Value::BulkString(p)) => p,
                    Some(Value::Nil) => {
                        stats.vanished += 1;
                        continue;
                    }
                    other => {
                        return Err(BackupError::Protocol(format!(
                            "DUMP {} replied {other:?}",
                            printable(key)
                        )));
                    }
                };
                let expire_at = match pttl {
                    Some(Value::Int(ms)) if ms >= 0 => Some(now + ms as u64),
                    Some(Value::Int(-1)) => None,
                    // -2: gone since the DUMP; what was dumped had expired.
                    Some(Value::Int(_)) => {
                        stats.vanished += 1;
                        continue;
                    }
                    other => {
                        return Err(BackupError::Protocol(format!(
                            "PTTL {} replied {other:?}",
                            printable(key)
                        )));
                    }
                };
                writer.key(key, expire_at, &payload).map_err(write_err)?;
                stats.keys += 1;
            }
            progress.advance(keys.len() as u64);
            match next {
                Some(reply) => (cursor, keys) = scan_reply(reply)?,
                None => break,
            }
        }
    }
    progress.end();
    Ok(stats)
}

fn scan_reply(reply: Value) -> Result<(u64, Vec<Vec<u8>>), BackupError> {
    let bad = |what: &str| BackupError::Protocol(format!("SCAN replied {what}"));
    let Value::Array(mut parts) = reply else {
        return Err(bad(&format!("{reply:?}")));
    };
    if parts.len() != 2 {
        return Err(bad("an array that is not [cursor, keys]"));
    }
    let keys = match parts.pop() {
        Some(Value::Array(keys)) => keys
            .into_iter()
            .map(|k| match k {
                Value::BulkString(b) => Ok(b),
                other => Err(bad(&format!("a key {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad("no key array")),
    };
    let cursor = match parts.pop() {
        Some(Value::BulkString(c)) => std::str::from_utf8(&c).ok().and_then(|c| c.parse().ok()),
        _ => None,
    }
    .ok_or_else(|| bad("a cursor that is not a number"))?;
    Ok((cursor, keys))
}

#[derive(Debug, Clone, Default)]
pub struct RestoreStats {
    pub restored: u64,
    /// Keys whose expiry passed since the backup: not restored.
    pub expired: u64,
    pub failed: u64,
    /// The first few failures, with their keys.
    pub errors: Vec<String>,
}

struct Batch {
    pipe: redis::Pipeline,
    keys: Vec<Vec<u8>>,
    bytes: usize,
}

impl Batch {
    fn new() -> Self {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        Batch {
            pipe,
            keys: Vec::new(),
            bytes: 0,
        }
    }
}

/// Restores every key of a logical backup, replacing keys of the same name.
/// Keys the backup does not hold are left alone.
pub fn restore<R: Read>(
    conn: &mut redis::Connection,
    reader: &mut logical::Reader<R>,
    total_keys: Option<u64>,
    batch_size: usize,
    progress: &mut dyn Progress,
) -> Result<RestoreStats, BackupError> {
    progress.begin("keys", total_keys, Unit::Keys);
    let mut stats = RestoreStats::default();
    let mut batch = Batch::new();
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Db(db) => {
                send(conn, &mut batch, &mut stats, progress)?;
                redis::cmd("SELECT").arg(db).exec(conn).map_err(redis_err(format!(
                    "SELECT {db} (the backup holds keys of database {db})"
                )))?;
            }
            Record::Key {
                key,
                expire_at_ms,
                payload,
            } => {
                let ttl = match expire_at_ms {
                    None => 0,
                    Some(at) => match at.checked_sub(now_ms()) {
                        Some(left) if left > 0 => left,
                        _ => {
                            stats.expired += 1;
                            progress.advance(1);
                            continue;
                        }
                    },
                };
                batch.bytes += payload.len() + key.len();
                batch.pipe.cmd("RESTORE").arg(&key).arg(ttl).arg(payload).arg("REPLACE");
                batch.keys.push(key);
                if batch.keys.len() >= batch_size || batch.bytes >= MAX_BATCH_BYTES {
                    send(conn, &mut batch, &mut stats, progress)?;
                }
            }
        }
    }
    send(conn, &mut batch, &mut stats, progress)?;
    progress.end();
    Ok(stats)
}

fn send(
    conn: &mut redis::Connection,
    batch: &mut Batch,
    stats: &mut RestoreStats,
    progress: &mut dyn Progress,
) -> Result<(), BackupError> {
    if batch.keys.is_empty() {
        return Ok(());
    }
    let full = std::mem::replace(batch, Batch::new());
    let replies: Vec<Value> = full.pipe.query(conn).map_err(redis_err("RESTORE pipeline"))?;
    for (key, reply) in full.keys.iter().zip(replies) {
        match reply {
            Value::ServerError(e) => {
                stats.failed += 1;
                if stats.errors.len() < MAX_QUOTED_ERRORS {
                    stats.errors.push(format!(
                        "{}: {} {}",
                        printable(key),
                        e.code(),
                        e.details().unwrap_or_default()
                    ));
                }
            }
            _ => stats.restored += 1,
        }
    }
    progress.advance(full.keys.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_lines_become_databases_and_counts() {
        let info = "# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=0\r\ndb12:keys=3,expires=0,avg_ttl=0\r\n";
        assert_eq!(parse_keyspace(info), vec![(0, 10), (12, 3)]);
        assert_eq!(parse_keyspace("# Keyspace\r\n"), vec![]);
    }

    #[test]
    fn scan_replies_are_checked() {
        let ok = Value::Array(vec![
            Value::BulkString(b"17".to_vec()),
            Value::Array(vec![Value::BulkString(b"k".to_vec())]),
        ]);
        assert_eq!(scan_reply(ok).unwrap(), (17, vec![b"k".to_vec()]));
        assert!(scan_reply(Value::Int(3)).is_err());
        assert!(
            scan_reply(Value::Array(vec![
                Value::BulkString(b"x".to_vec()),
                Value::Array(vec![])
            ]))
            .is_err()
        );
    }
}
