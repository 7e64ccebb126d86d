//! The logical backup format: every key's `DUMP` payload and absolute
//! expiry, database by database, closed by a SHA-256 of everything before
//! it, so that truncation and corruption are both detected.
//!
//! ```text
//! header   "REDOPSLB" | version u16 | created_ms u64 | source str16 | redis_version str16
//! records  'D' | db u32                                   the keys that follow live in db
//!          'K' | key bytes32 | expire_at_ms u64 | payload bytes64
//! end      'E' | keys u64 | sha256 of every byte before it (32 bytes)
//! ```
//!
//! Integers are little-endian; `strN`/`bytesN` are a uN length then the
//! bytes. `expire_at_ms` is unix milliseconds, 0 for a key without expiry:
//! a restore computes the remaining TTL then, and skips keys already
//! expired. Reading never trusts a length: it allocates only as bytes
//! actually arrive, and any malformed input is an error, never a panic.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use super::crc64::crc64;

pub const MAGIC: &[u8; 8] = b"REDOPSLB";
pub const VERSION: u16 = 1;

const TAG_DB: u8 = b'D';
const TAG_KEY: u8 = b'K';
const TAG_END: u8 = b'E';

/// Redis keys are at most 512 MiB.
const MAX_KEY_LEN: u64 = 512 << 20;
/// Larger than any payload `RESTORE` accepts with default limits.
const MAX_PAYLOAD_LEN: u64 = 4 << 30;
/// Buffers grow by at most this much before the bytes are seen.
const GROW_STEP: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub created_ms: u64,
    /// Which server was dumped, for people reading a listing.
    pub source: String,
    pub redis_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Db(u32),
    Key {
        key: Vec<u8>,
        /// Unix milliseconds; `None` for a key without expiry.
        expire_at_ms: Option<u64>,
        payload: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a redops logical backup (the file does not start with REDOPSLB)")]
    BadMagic,
    #[error("format version {0} is newer than this redops reads ({VERSION}); upgrade redops")]
    Version(u16),
    #[error("truncated at byte {offset}: {what} is missing")]
    Truncated { offset: u64, what: &'static str },
    #[error("corrupt at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    #[error("checksum mismatch: the contents hash to {actual}, the trailer says {expected}: the backup is corrupt")]
    Checksum { expected: String, actual: String },
    #[error("cannot read the backup at byte {offset}: {source}")]
    Io { offset: u64, source: io::Error },
}

// ---------------------------------------------------------------------------
// Writing

pub struct Writer<W: Write> {
    inner: W,
    hasher: Sha256,
    keys: u64,
    scratch: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(inner: W, header: &Header) -> io::Result<Self> {
        let mut w = Writer {
            inner,
            hasher: Sha256::new(),
            keys: 0,
            scratch: Vec::with_capacity(64),
        };
        w.scratch.extend_from_slice(MAGIC);
        w.scratch.extend_from_slice(&VERSION.to_le_bytes());
        w.scratch.extend_from_slice(&header.created_ms.to_le_bytes());
        for text in [&header.source, &header.redis_version] {
            let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
            w.scratch.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            w.scratch.extend_from_slice(bytes);
        }
        w.flush_scratch()?;
        Ok(w)
    }

    pub fn db(&mut self, db: u32) -> io::Result<()> {
        self.scratch.push(TAG_DB);
        self.scratch.extend_from_slice(&db.to_le_bytes());
        self.flush_scratch()
    }

    pub fn key(&mut self, key: &[u8], expire_at_ms: Option<u64>, payload: &[u8]) -> io::Result<()> {
        if key.len() as u64 > MAX_KEY_LEN || payload.len() as u64 > MAX_PAYLOAD_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "key {} is too large for the format ({} byte key, {} byte DUMP payload)",
                    printable(key),
                    key.len(),
                    payload.len()
                ),
            ));
        }
        self.scratch.push(TAG_KEY);
        self.scratch.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.scratch.extend_from_slice(key);
        self.scratch.extend_from_slice(&expire_at_ms.unwrap_or(0).to_le_bytes());
        self.scratch.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        self.flush_scratch()?;
        self.hasher.update(payload);
        self.inner.write_all(payload)?;
        self.keys += 1;
        Ok(())
    }

    /// Writes the end record and returns the inner writer and the key count.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.scratch.push(TAG_END);
        self.scratch.extend_from_slice(&self.keys.to_le_bytes());
        self.flush_scratch()?;
        let digest = self.hasher.finalize();
        self.inner.write_all(&digest)?;
        Ok((self.inner, self.keys))
    }

    fn flush_scratch(&mut self) -> io::Result<()> {
        self.hasher.update(&self.scratch);
        self.inner.write_all(&self.scratch)?;
        self.scratch.clear();
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Reading

pub struct Reader<R: Read> {
    inner: R,
    hasher: Sha256,
    offset: u64,
    keys: u64,
    finished: bool,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header.
    pub fn open(inner: R) -> Result<(Reader<R>, Header), FormatError> {
        let mut r = Reader {
            inner,
            hasher: Sha256::new(),
            offset: 0,
            keys: 0,
            finished: false,
        };
        let mut magic = [0u8; 8];
        match r.fill(&mut magic, "the header") {
            Err(FormatError::Truncated { .. }) => return Err(FormatError::BadMagic),
            other => other?,
        }
        if &magic != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = r.u16("the format version")?;
        if version == 0 || version > VERSION {
            return Err(FormatError::Version(version));
        }
        let created_ms = r.u64("the creation time")?;
        let source = r.str16("the source")?;
        let redis_version = r.str16("the Redis version")?;
        Ok((
            r,
            Header {
                version,
                created_ms,
                source,
                redis_version,
            },
        ))
    }

    /// The next record; `None` once the end record and checksum check out.
    pub fn next_record(&mut self) -> Result<Option<Record>, FormatError> {
        if self.finished {
            return Ok(None);
        }
        let at = self.offset;
        let mut tag = [0u8; 1];
        self.fill(&mut tag, "the end record")?;
        match tag[0] {
            TAG_DB => Ok(Some(Record::Db(self.u32("a database number")?))),
            TAG_KEY => {
                let key_len = self.u32("a key length")? as u64;
                if key_len > MAX_KEY_LEN {
                    return Err(self.corrupt(format!("a key length of {key_len} bytes")));
                }
                let key = self.bytes(key_len, "a key")?;
                let expire_at_ms = self.u64("an expiry")?;
                let payload_len = self.u64("a payload length")?;
                if payload_len > MAX_PAYLOAD_LEN {
                    return Err(self.corrupt(format!("a payload length of {payload_len} bytes")));
                }
                let payload = self.bytes(payload_len, "a DUMP payload")?;
                self.keys += 1;
                Ok(Some(Record::Key {
                    key,
                    expire_at_ms: (expire_at_ms != 0).then_some(expire_at_ms),
                    payload,
                }))
            }
            TAG_END => {
                let count = self.u64("the key count")?;
                let actual = std::mem::take(&mut self.hasher).finalize();
                let mut expected = [0u8; 32];
                self.read_raw(&mut expected, "the checksum")?;
                if actual.as_slice() != expected {
                    return Err(FormatError::Checksum {
                        expected: hex::encode(expected),
                        actual: hex::encode(actual),
                    });
                }
                if count != self.keys {
                    return Err(self.corrupt(format!("the end says {count} keys, {} were read", self.keys)));
                }
                let mut extra = [0u8; 1];
                match self.inner.read(&mut extra) {
                    Ok(0) => {}
                    Ok(_) => return Err(self.corrupt("data after the end record".into())),
                    Err(source) => {
                        return Err(FormatError::Io {
                            offset: self.offset,
                            source,
                        });
                    }
                }
                self.finished = true;
                Ok(None)
            }
            other => Err(FormatError::Corrupt {
                offset: at,
                what: format!("unknown record type 0x{other:02x}"),
            }),
        }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn corrupt(&self, what: String) -> FormatError {
        FormatError::Corrupt {
            offset: self.offset,
            what,
        }
    }

    fn read_raw(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), FormatError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(FormatError::Truncated {
                offset: self.offset,
                what,
            }),
            Err(source) => Err(FormatError::Io {
                offset: self.offset,
                source,
            }),
        }
    }

    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), FormatError> {
        self.read_raw(buf, what)?;
        self.hasher.update(&*buf);
        Ok(())
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        let mut b = [0u8; 2];
        self.fill(&mut b, what)?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        let mut b = [0u8; 4];
        self.fill(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        let mut b = [0u8; 8];
        self.fill(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn str16(&mut self, what: &'static str) -> Result<String, FormatError> {
        let len = self.u16(what)? as u64;
        let bytes = self.bytes(len, what)?;
        String::from_utf8(bytes).map_err(|_| self.corrupt(format!("{what} is not UTF-8")))
    }

    /// `len` bytes, the buffer growing only as they arrive.
    fn bytes(&mut self, len: u64, what: &'static str) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::new();
        let mut left = len;
        while left > 0 {
            let step = left.min(GROW_STEP as u64) as usize;
            let start = out.len();
            out.resize(start + step, 0);
            self.fill(&mut out[start..], what)?;
            left -= step as u64;
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Checking

/// What a checked logical backup holds.
#[derive(Debug, Clone)]
pub struct Summary {
    pub header: Header,
    pub keys: u64,
    pub dbs: Vec<u32>,
    pub bytes: u64,
}

/// Reads a whole logical backup: framing, the trailing SHA-256, and the
/// CRC-64 that ends each `DUMP` payload.
pub fn check(reader: impl Read, progress: &mut dyn super::Progress) -> Result<Summary, FormatError> {
    let (mut r, header) = Reader::open(reader)?;
    let mut dbs = Vec::new();
    while let Some(record) = r.next_record()? {
        match record {
            Record::Db(db) => dbs.push(db),
            Record::Key { key, payload, .. } => {
                if let Err(why) = check_dump_payload(&payload) {
                    return Err(FormatError::Corrupt {
                        offset: r.offset(),
                        what: format!("key {}: {why}", printable(&key)),
                    });
                }
                progress.advance(1);
            }
        }
    }
    Ok(Summary {
        header,
        keys: r.keys,
        dbs,
        bytes: r.offset,
    })
}

/// A `DUMP` payload ends with the RDB version (2 bytes) and a CRC-64 of
/// everything before the CRC (8 bytes, little-endian), as `RESTORE` checks.
pub fn check_dump_payload(payload: &[u8]) -> Result<(), String> {
    if payload.len() < 10 {
        return Err(format!("DUMP payload of {} bytes is too short", payload.len()));
    }
    let (body, crc) = payload.split_at(payload.len() - 8);
    let expected = u64::from_le_bytes(crc.try_into().expect("8 bytes"));
    let actual = crc64(body);
    if expected != actual {
        return Err(format!(
            "DUMP payload checksum mismatch ({actual:016x}, trailer {expected:016x})"
        ));
    }
    Ok(())
}

/// A key as people can read it in a message: quoted, escaped, shortened.
pub fn printable(key: &[u8]) -> String {
    let shown = &key[..key.len().min(80)];
    let mut s = format!("\"{}\"", shown.escape_ascii());
    if key.len() > shown.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::Silent;

    /// A DUMP-shaped payload: a string value, RDB version 10, its CRC.
    fn payload(value: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8, value.len() as u8];
        p.extend_from_slice(value);
        p.extend_from_slice(&10u16.to_le_bytes());
        let crc = crc64(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        p
    }

    fn sample() -> Vec<u8> {
        let header = Header {
            version: VERSION,
            created_ms: 1_700_000_000_000,
            source: "cache".into(),
            redis_version: "7.0.15".into(),
        };
        let mut w = Writer::new(Vec::new(), &header).unwrap();
        w.db(0).unwrap();
        w.key(b"a", None, &payload(b"1")).unwrap();
        w.key(b"b", Some(1_800_000_000_000), &payload(b"two")).unwrap();
        w.db(3).unwrap();
        w.key(b"\x00bin\xff", None, &payload(&[0xff; 40])).unwrap();
        w.finish().unwrap().0
    }

    #[test]
    fn round_trips() {
        let bytes = sample();
        let (mut r, header) = Reader::open(&bytes[..]).unwrap();
        assert_eq!(header.source, "cache");
        let mut records = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            records.push(rec);
        }
        assert_eq!(records.len(), 5);
        assert_eq!(
            records[2],
            Record::Key {
                key: b"b".to_vec(),
                expire_at_ms: Some(1_800_000_000_000),
                payload: payload(b"two")
            }
        );
        let summary = check(&bytes[..], &mut Silent).unwrap();
        assert_eq!((summary.keys, summary.dbs), (3, vec![0, 3]));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(check(&bytes[..len], &mut Silent).is_err(), "truncated to {len} passed");
        }
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                assert!(check(&bad[..], &mut Silent).is_err(), "flipped byte {i} passed");
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = check(&longer[..], &mut Silent).unwrap_err().to_string();
        assert!(err.contains("after the end"), "{err}");
    }

    #[test]
    fn hostile_input_never_panics_nor_allocates_what_it_claims() {
        // Huge lengths with nothing behind them.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&VERSION.to_le_bytes());
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&[0, 0, 0, 0]);
        let mut key = huge.clone();
        key.push(TAG_KEY);
        key.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(check(&key[..], &mut Silent).is_err());
        let mut big_payload = huge.clone();
        big_payload.push(TAG_KEY);
        big_payload.extend_from_slice(&1u32.to_le_bytes());
        big_payload.push(b'k');
        big_payload.extend_from_slice(&0u64.to_le_bytes());
        big_payload.extend_from_slice(&(MAX_PAYLOAD_LEN - 1).to_le_bytes());
        assert!(matches!(
            check(&big_payload[..], &mut Silent),
            Err(FormatError::Truncated { .. })
        ));
        // Pseudo-random garbage after a valid header, of many lengths.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000 {
            let mut input = huge.clone();
            for _ in 0..len % 97 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                input.push(state as u8);
            }
            let _ = check(&input[..], &mut Silent);
            let _ = check(&input[8..], &mut Silent);
        }
        assert!(matches!(
            check(&b"REDIS0010"[..], &mut Silent),
            Err(FormatError::BadMagic)
        ));
        let mut future = MAGIC.to_vec();
        future.extend_from_slice(&9u16.to_le_bytes());
        assert!(matches!(check(&future[..], &mut Silent), Err(FormatError::Version(9))));
    }

    #[test]
    fn a_bad_dump_payload_names_the_key() {
        let header = Header {
            version: VERSION,
            created_ms: 0,
            source: String::new(),
            redis_version: String::new(),
        };
        let mut w = Writer::new(Vec::new(), &header).unwrap();
        let mut p = payload(b"x");
        p[1] ^= 1;
        w.key(b"session:42", None, &p).unwrap();
        let bytes = w.finish().unwrap().0;
        let err = check(&bytes[..], &mut Silent).unwrap_err().to_string();
        assert!(
            err.contains("session:42") && err.contains("DUMP payload checksum"),
            "{err}"
        );
    }
}
