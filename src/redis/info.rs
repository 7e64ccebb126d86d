//! Parsing the text of `INFO` / `INFO ALL` (Redis 7.x).
//!
//! The reply is `key:value` lines grouped under `# Section` headers, with
//! CRLF line ends. The sampler parses one reply per target every
//! `sample_interval`, so the text is copied once and fields are kept as spans
//! into that copy rather than as a `String` pair each. The text comes from a
//! server we do not control (or from a proxy in front of it), so every line
//! that does not look like a field is skipped instead of failing the sample.

use std::ops::Range;

/// One parsed INFO reply.
#[derive(Debug, Clone, Default)]
pub struct Info {
    text: Box<str>,
    /// Sorted by key, one entry per key, so a lookup is a binary search.
    fields: Vec<Field>,
    /// `db<N>:keys=..,expires=..,avg_ttl=..` lines, ordered by database.
    pub keyspace: Vec<DbKeyspace>,
    /// `slave<N>:ip=..,port=..` lines of a master, in Redis's order.
    pub replicas: Vec<ReplicaInfo>,
}

#[derive(Debug, Clone)]
struct Field {
    key: Range<usize>,
    value: Range<usize>,
}

/// One database's line of the `# Keyspace` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbKeyspace {
    pub db: u32,
    pub keys: u64,
    pub expires: u64,
    /// Redis's sampled estimate; a replica always reports 0 because only the
    /// master runs the active expire cycle that computes it.
    pub avg_ttl_ms: u64,
}

/// One replica as its master sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub ip: String,
    pub port: u16,
    /// `online` once synced; `wait_bgsave` / `send_bulk` during a full sync,
    /// when `offset` is still 0.
    pub state: String,
    pub offset: u64,
    /// Seconds since the replica's last `REPLCONF ACK`, not a byte lag.
    pub lag_secs: u64,
}

/// Parses an INFO reply. Never fails: lines that are not `key:value` with a
/// plain key are skipped, and when a key repeats the first value wins.
pub fn parse(text: &str) -> Info {
    let mut fields = Vec::new();
    let mut keyspace = Vec::new();
    let mut replicas = Vec::new();

    let mut start = 0;
    for raw in text.split('\n') {
        let line_start = start;
        start += raw.len() + 1;
        let Some((key, value)) = split_field(raw) else {
            continue;
        };
        let key_start = line_start + offset_in(raw, key);
        let value_start = line_start + offset_in(raw, value);
        fields.push(Field {
            key: key_start..key_start + key.len(),
            value: value_start..value_start + value.len(),
        });
        if let Some(db) = numbered(key, "db") {
            keyspace.extend(parse_keyspace(db, value));
        } else if numbered(key, "slave").is_some() {
            replicas.extend(parse_replica(value));
        }
    }

    let slice = |r: &Range<usize>| text.get(r.clone()).unwrap_or("");
    fields.sort_by(|a, b| slice(&a.key).cmp(slice(&b.key)));
    fields.dedup_by(|later, earlier| slice(&later.key) == slice(&earlier.key));
    keyspace.sort_by_key(|d| d.db);
    keyspace.dedup_by_key(|d| d.db);

    Info {
        text: text.into(),
        fields,
        keyspace,
        replicas,
    }
}

impl Info {
    /// The raw value of a field, trimmed.
    pub fn get(&self, key: &str) -> Option<&str> {
        let i = self.fields.binary_search_by(|f| self.slice(&f.key).cmp(key)).ok()?;
        Some(self.slice(&self.fields[i].value))
    }

    /// A field as an unsigned integer; `None` when absent, negative (Redis
    /// uses -1 for "never", e.g. `rdb_current_bgsave_time_sec`) or not a number.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// A field as a finite float. A trailing `%` is ignored because Redis
    /// prints some ratios that way (`used_memory_peak_perc:99.68%`).
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        let value = self.get(key)?;
        let number = value.strip_suffix('%').unwrap_or(value);
        number.parse::<f64>().ok().filter(|n| n.is_finite())
    }

    /// True when no line of the reply was a field: the sampler treats that
    /// as a failed sample rather than a server with no metrics.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Every field as `(key, value)`, sorted by key.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|f| (self.slice(&f.key), self.slice(&f.value)))
    }

    fn slice(&self, range: &Range<usize>) -> &str {
        self.text.get(range.clone()).unwrap_or("")
    }
}

fn split_field(raw: &str) -> Option<(&str, &str)> {
    let line = raw.strip_suffix('\r').unwrap_or(raw);
    if line.starts_with('#') {
        return None;
    }
    let (key, value) = line.split_once(':')?;
    let key = key.trim();
    let plain_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic());
    plain_key.then(|| (key, value.trim()))
}

/// Byte offset of `part` inside `whole`; `part` must be a subslice of it.
fn offset_in(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// `db3` with prefix `db` gives 3; anything but ASCII digits after it gives `None`.
fn numbered(key: &str, prefix: &str) -> Option<u32> {
    let digits = key.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `a=1,b=x` as pairs; pieces without `=` are dropped.
fn pairs(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(',').filter_map(|p| p.split_once('='))
}

/// `keys` is required; `expires` and `avg_ttl` default to 0 so that a fork
/// that drops one still yields a key count. Later versions append fields
/// (7.4 adds `subexpiry`), which are ignored.
fn parse_keyspace(db: u32, value: &str) -> Option<DbKeyspace> {
    let (mut keys, mut expires, mut avg_ttl_ms) = (None, 0, 0);
    for (k, v) in pairs(value) {
        match k {
            "keys" => keys = Some(v.parse().ok()?),
            "expires" => expires = v.parse().ok()?,
            "avg_ttl" => avg_ttl_ms = v.parse().ok()?,
            _ => {}
        }
    }
    Some(DbKeyspace {
        db,
        keys: keys?,
        expires,
        avg_ttl_ms,
    })
}

fn parse_replica(value: &str) -> Option<ReplicaInfo> {
    let (mut ip, mut port, mut state, mut offset, mut lag_secs) = (None, None, None, None, 0);
    for (k, v) in pairs(value) {
        match k {
            "ip" => ip = Some(v),
            "port" => port = Some(v.parse().ok()?),
            "state" => state = Some(v),
            "offset" => offset = Some(v.parse().ok()?),
            "lag" => lag_secs = v.parse().ok()?,
            _ => {}
        }
    }
    Some(ReplicaInfo {
        ip: ip?.to_owned(),
        port: port?,
        state: state?.to_owned(),
        offset: offset?,
        lag_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = include_str!("../../tests/fixtures/info_all_master.txt");
    const REPLICA: &str = include_str!("../../tests/fixtures/info_all_replica.txt");

    #[test]
    fn reads_fields_of_a_real_master() {
        let info = parse(MASTER);
        assert_eq!(info.get("redis_version"), Some("7.0.15"));
        assert_eq!(info.get("role"), Some("master"));
        assert_eq!(info.get_u64("used_memory"), Some(1_159_088));
        assert_eq!(info.get_u64("maxmemory"), Some(268_435_456));
        assert_eq!(info.get_f64("mem_fragmentation_ratio"), Some(11.28));
        assert_eq!(info.get("os"), Some("Linux 6.18.44-fc-v669 x86_64"));
        assert_eq!(info.get("config_file"), Some(""));
        assert_eq!(
            info.get("cmdstat_get"),
            Some("calls=2,usec=6,usec_per_call=3.00,rejected_calls=0,failed_calls=0")
        );
        assert!(!info.is_empty());
    }

    #[test]
    fn reads_keyspace_of_a_real_master() {
        let info = parse(MASTER);
        let dbs: Vec<_> = info.keyspace.iter().map(|d| (d.db, d.keys, d.expires)).collect();
        assert_eq!(dbs, [(0, 3, 1), (1, 7, 6), (4, 2, 2)]);
        assert_eq!(info.keyspace[2].avg_ttl_ms, 1_209_589_299);
    }

    #[test]
    fn reads_replicas_of_a_real_master() {
        let info = parse(MASTER);
        assert_eq!(
            info.replicas,
            [ReplicaInfo {
                ip: "127.0.0.1".into(),
                port: 36449,
                state: "online".into(),
                offset: 921,
                lag_secs: 1,
            }]
        );
    }

    #[test]
    fn reads_a_real_replica() {
        let info = parse(REPLICA);
        assert_eq!(info.get("role"), Some("slave"));
        assert_eq!(info.get("master_link_status"), Some("up"));
        assert!(info.replicas.is_empty());
        assert_eq!(info.keyspace.len(), 3);
        assert!(info.keyspace.iter().all(|d| d.avg_ttl_ms == 0));
    }

    #[test]
    fn lf_and_crlf_give_the_same_fields() {
        let lf = MASTER.replace("\r\n", "\n");
        let (a, b) = (parse(MASTER), parse(&lf));
        assert_eq!(a.fields.len(), b.fields.len());
        assert_eq!(a.get("db4"), b.get("db4"));
        assert_eq!(a.keyspace, b.keyspace);
        assert_eq!(a.replicas, b.replicas);
    }

    #[test]
    fn empty_and_blank_input_give_no_fields() {
        for text in ["", "\r\n", "\n\n\n", "# Server\r\n", "   "] {
            let info = parse(text);
            assert!(info.is_empty(), "{text:?}");
            assert_eq!(info.get("role"), None);
        }
    }

    #[test]
    fn lines_without_a_plain_key_are_skipped() {
        let info = parse("no colon here\r\n:novalue\r\nsp ace:1\r\n\t:2\r\nok:3\r\n");
        assert_eq!(info.fields.len(), 1);
        assert_eq!(info.get_u64("ok"), Some(3));
    }

    #[test]
    fn non_numeric_values_are_none_not_errors() {
        let info = parse("a:abc\nb:-1\nc:1.5\nd:\ne:inf\nf:NaN\ng:99.5%\nh:18446744073709551616\n");
        assert_eq!(info.get_u64("a"), None);
        assert_eq!(info.get_u64("b"), None);
        assert_eq!(info.get_u64("c"), None);
        assert_eq!(info.get_f64("c"), Some(1.5));
        assert_eq!(info.get("d"), Some(""));
        assert_eq!(info.get_u64("d"), None);
        assert_eq!(info.get_f64("e"), None);
        assert_eq!(info.get_f64("f"), None);
        assert_eq!(info.get_f64("g"), Some(99.5));
        assert_eq!(info.get_u64("h"), None);
    }

    #[test]
    fn every_truncation_of_a_real_reply_parses() {
        // A reply can be cut anywhere by a dropped connection or a proxy.
        for end in 0..=MASTER.len() {
            let info = parse(&MASTER[..end]);
            assert!(info.keyspace.len() <= 3);
            assert!(info.replicas.len() <= 1);
        }
    }

    #[test]
    fn truncated_keyspace_and_replica_lines_are_skipped() {
        let info = parse(
            "db0:keys=1,expi\r\ndb1:keys=\r\ndb2:keys=x,expires=0\r\ndb3:expires=1\r\n\
             slave0:ip=10.0.0.1,port=6380,sta\r\nslave1:ip=10.0.0.2,port=99999,state=online,offset=1\r\n",
        );
        assert_eq!(
            info.keyspace,
            [DbKeyspace {
                db: 0,
                keys: 1,
                expires: 0,
                avg_ttl_ms: 0
            }]
        );
        assert!(info.replicas.is_empty());
    }

    #[test]
    fn odd_db_and_slave_keys_are_plain_fields() {
        let info = parse(
            "db:keys=1\ndbx:keys=1\ndb99999999999:keys=1\ndb-1:keys=1\nslave:ip=a,port=1,state=online,offset=1\nslaves:1\n",
        );
        assert!(info.keyspace.is_empty());
        assert!(info.replicas.is_empty());
        assert_eq!(info.get("dbx"), Some("keys=1"));
    }

    #[test]
    fn keyspace_ignores_fields_added_by_later_versions() {
        let info = parse("db2:keys=5,expires=1,avg_ttl=10,subexpiry=0\r\n");
        assert_eq!(
            info.keyspace,
            [DbKeyspace {
                db: 2,
                keys: 5,
                expires: 1,
                avg_ttl_ms: 10
            }]
        );
    }

    #[test]
    fn replica_with_ipv6_address_keeps_its_colons() {
        let info = parse("slave0:ip=::1,port=6380,state=online,offset=7,lag=0\r\n");
        assert_eq!(info.replicas[0].ip, "::1");
        assert_eq!(info.replicas[0].offset, 7);
    }

    #[test]
    fn huge_lines_are_handled() {
        let huge = format!("big:{}\r\n{}\r\nafter:1\r\n", "9".repeat(1 << 20), "x".repeat(1 << 20));
        let info = parse(&huge);
        assert_eq!(info.get("big").map(str::len), Some(1 << 20));
        assert_eq!(info.get_u64("big"), None);
        assert_eq!(info.get_u64("after"), Some(1));
    }

    #[test]
    fn first_value_of_a_repeated_key_wins() {
        let info = parse("role:master\r\nrole:slave\r\ndb0:keys=1\r\ndb0:keys=2\r\n");
        assert_eq!(info.get("role"), Some("master"));
        assert_eq!(info.keyspace.len(), 1);
        assert_eq!(info.keyspace[0].keys, 1);
    }

    #[test]
    fn multibyte_text_does_not_split_characters() {
        let info = parse("é:ü\r\nkey:välue \r\n€€€\r\n");
        assert_eq!(info.get("key"), Some("välue"));
        assert_eq!(info.get("é"), None);
    }
}
