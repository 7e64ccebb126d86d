//! Backups and restores against real redis-servers, through the `redops`
//! binary: a full backup of 100,000 keys of every type round-trips with
//! their TTLs; RDB snapshots verify in both transfer forms and through a
//! plain SYNC; corrupt backups fail verification and are refused; encrypted
//! backups open with the `age` CLI; the playbook API records in a dry run.

mod harness;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use harness::{Redops, TestRedis, WebhookReceiver, engine_dir, run_redops, target_and_hook, write_file};
use redops::backup::{Silent, archive, logical, rdb};

// ---------------------------------------------------------------------------
// Helpers

/// A server whose diskless transfers start at once (the default waits 5 s
/// for more replicas).
fn start_redis(extra: &[(&str, &str)]) -> TestRedis {
    let mut config = vec![("repl-diskless-sync-delay", "0")];
    config.extend_from_slice(extra);
    TestRedis::start(&config)
}

/// A config dir with one target `cache` and `extra` appended.
fn config_dir(url: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("Failed to create a temp dir");
    write_file(
        dir.path(),
        "redops.toml",
        &format!("[engine]\nstate_dir = \"state\"\n\n[[target]]\nname = \"cache\"\nurl = \"{url}\"\n\n{extra}\n"),
    );
    dir
}

fn redops(dir: &Path, args: &[&str]) -> Output {
    let config = dir.join("redops.toml").to_string_lossy().into_owned();
    let mut all = args.to_vec();
    all.extend(["--config", config.as_str()]);
    run_redops(&all, &[])
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `backup create --json`, asserting success; returns the catalog row.
fn create(dir: &Path, kind: &str, extra: &[&str]) -> (serde_json::Value, Output) {
    let mut args = vec!["backup", "create", "--target", "cache", "--type", kind, "--json"];
    args.extend_from_slice(extra);
    let out = redops(dir, &args);
    assert!(
        out.status.success(),
        "backup create --type {kind} failed:\n{}",
        describe(&out)
    );
    let row: serde_json::Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(&out)));
    (row, out)
}

fn listed(dir: &Path, id: &str) -> serde_json::Value {
    let out = redops(dir, &["backup", "list", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    rows.into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("backup {id} is not listed:\n{}", describe(&out)))
}

/// Every key of every database: `(db, key) → (DUMP payload, PTTL)`, and when it was read.
type Snapshot = HashMap<(u32, Vec<u8>), (Vec<u8>, i64)>;

fn snapshot(redis: &TestRedis) -> (Snapshot, Instant) {
    let mut conn = redis.conn();
    let mut all = Snapshot::new();
    let taken = Instant::now();
    for db in 0..16u32 {
        redis::cmd("SELECT").arg(db).exec(&mut conn).unwrap();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
                .unwrap();
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("DUMP").arg(k).cmd("PTTL").arg(k);
            }
            let replies: Vec<redis::Value> = if keys.is_empty() {
                Vec::new()
            } else {
                pipe.query(&mut conn).unwrap()
            };
            for (k, pair) in keys.iter().zip(replies.chunks(2)) {
                if let (redis::Value::BulkString(dump), redis::Value::Int(pttl)) = (&pair[0], &pair[1]) {
                    all.insert((db, k.clone()), (dump.clone(), *pttl));
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    (all, taken)
}

/// 100,000 keys across every type, a seventh of them with TTLs, plus a few
/// awkward ones: a binary name, a 1 MiB value, a stream with a consumer
/// group, keys in another database.
fn load_every_type(redis: &TestRedis, n: usize) {
    let mut conn = redis.conn();
    for start in (0..n).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 1000).min(n) {
            let key = format!("k:{i}");
            match i % 6 {
                0 => pipe.cmd("SET").arg(&key).arg(format!("value-{i}")),
                1 => pipe.cmd("RPUSH").arg(&key).arg("a").arg(i).arg("c"),
                2 => pipe.cmd("SADD").arg(&key).arg("x").arg(i).arg(format!("m{i}")),
                3 => pipe.cmd("ZADD").arg(&key).arg(1.5).arg("m1").arg(i).arg("m2"),
                4 => pipe.cmd("HSET").arg(&key).arg("f1").arg(i).arg("f2").arg("v"),
                _ => pipe.cmd("XADD").arg(&key).arg("*").arg("field").arg(i),
            }
            .ignore();
            if i % 7 == 0 {
                pipe.cmd("PEXPIRE").arg(&key).arg(3_600_000 + i).ignore();
            }
        }
        pipe.exec(&mut conn).unwrap();
    }
    redis::cmd("SET")
        .arg(b"bin\x00\xffkey")
        .arg(b"\x00\x01\x02")
        .exec(&mut conn)
        .unwrap();
    redis::cmd("SET")
        .arg("big")
        .arg("z".repeat(1 << 20))
        .exec(&mut conn)
        .unwrap();
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("k:5")
        .arg("workers")
        .arg("0")
        .exec(&mut conn)
        .unwrap();
    redis::cmd("SELECT").arg(3).exec(&mut conn).unwrap();
    redis::cmd("SET").arg("sessions:1").arg("s").exec(&mut conn).unwrap();
    redis::cmd("SET")
        .arg("sessions:2")
        .arg("s")
        .arg("EX")
        .arg(600)
        .exec(&mut conn)
        .unwrap();
}

/// A key's value in a form that does not depend on its encoding: the
/// type, then its elements sorted.
fn value_of(conn: &mut redis::Connection, (db, key): &(u32, Vec<u8>)) -> Vec<String> {
    redis::cmd("SELECT").arg(*db).exec(conn).unwrap();
    let kind: String = redis::cmd("TYPE").arg(key).query(conn).unwrap();
    let mut read = |c: &mut redis::Cmd| -> Vec<String> {
        let v: redis::Value = c.query(conn).unwrap();
        fn flat(v: redis::Value, out: &mut Vec<String>) {
            match v {
                redis::Value::Array(items) | redis::Value::Set(items) => items.into_iter().for_each(|i| flat(i, out)),
                redis::Value::Map(pairs) => pairs.into_iter().for_each(|(k, v)| {
                    flat(k, out);
                    flat(v, out)
                }),
                redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(&b).into_owned()),
                other => out.push(format!("{other:?}")),
            }
        }
        let mut out = Vec::new();
        flat(v, &mut out);
        out
    };
    let mut values = match kind.as_str() {
        "string" => read(redis::cmd("GET").arg(key)),
        "list" => read(redis::cmd("LRANGE").arg(key).arg(0).arg(-1)),
        "set" => read(redis::cmd("SMEMBERS").arg(key)),
        "zset" => read(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES")),
        "hash" => {
            let mut pairs: Vec<String> = read(redis::cmd("HGETALL").arg(key))
                .chunks(2)
                .map(|p| p.join("="))
                .collect();
            pairs.sort();
            pairs
        }
        "stream" => read(redis::cmd("XRANGE").arg(key).arg("-").arg("+")),
        other => vec![format!("type {other}")],
    };
    if kind == "set" {
        values.sort();
    }
    values.insert(0, kind);
    values
}

/// The archive's payload, decrypted and decompressed, as the library reads it.
fn payload(row: &serde_json::Value, keys: &archive::Keys) -> Vec<u8> {
    let path = PathBuf::from(row["path"].as_str().unwrap());
    let mut reader = archive::open(
        &path,
        row["compressed"].as_bool().unwrap(),
        row["encrypted"].as_bool().unwrap(),
        keys,
    )
    .unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
    out
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

// ---------------------------------------------------------------------------
// 1. Round trip

#[test]
fn full_backup_of_every_type_round_trips_with_ttls_and_rdb_verifies() {
    let redis = start_redis(&[]);
    load_every_type(&redis, 100_000);
    let dir = config_dir(&redis.url(0), "");

    let (before, before_at) = snapshot(&redis);
    assert!(before.len() >= 100_004, "loaded {} keys", before.len());
    let mut conn = redis.conn();
    let mut before_values: HashMap<(u32, Vec<u8>), Vec<String>> = before
        .keys()
        .filter(|(_, k)| k.starts_with(b"k:"))
        .map(|key| (key.clone(), value_of(&mut conn, key)))
        .collect();
    // Expires after the backup, before the restore: it must not come back.
    redis.cli(&["SET", "short-lived", "x", "PX", "2000"]);
    let short_lived_set = Instant::now();
    let (full, out) = create(dir.path(), "full", &[]);
    assert!(stderr(&out).contains("keys in 2 database(s)"), "{}", describe(&out));
    let id = full["id"].as_str().unwrap().to_owned();
    let path = PathBuf::from(full["path"].as_str().unwrap());
    assert!(
        path.starts_with(dir.path().canonicalize().unwrap().join("state/backups")),
        "{path:?}"
    );
    assert!(path.to_string_lossy().ends_with(".redops.zst"), "{path:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // The RDB of the same server: its CRC-64 checks, and so does `verify`.
    let (rdb_row, out) = create(dir.path(), "rdb", &[]);
    assert!(stderr(&out).contains("(diskless)"), "{}", describe(&out));
    let raw = payload(&rdb_row, &archive::Keys::default());
    assert!(raw.starts_with(b"REDIS"), "not an RDB");
    let summary = rdb::check(&raw[..], &mut Silent).expect("the RDB's CRC-64 checks");
    assert!(summary.checksum.is_some(), "the server writes checksums by default");
    if let Some(check_rdb) = harness::required_tool("redis-check-rdb") {
        let rdb_file = dir.path().join("dump.rdb");
        fs::write(&rdb_file, &raw).unwrap();
        let check = Command::new(check_rdb).arg(&rdb_file).output().unwrap();
        assert!(
            String::from_utf8_lossy(&check.stdout).contains("RDB looks OK"),
            "redis-check-rdb: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
    let out = redops(
        dir.path(),
        &["backup", "verify", "--backup-id", rdb_row["id"].as_str().unwrap()],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains("CRC-64"), "{}", describe(&out));

    let out = redops(dir.path(), &["backup", "verify", "--backup-id", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(listed(dir.path(), &id)["verified"].is_string());

    std::thread::sleep(Duration::from_millis(2100).saturating_sub(short_lived_set.elapsed()));
    redis.cli(&["FLUSHALL"]);
    let out = redops(dir.path(), &["restore", "--backup-id", &id, "--confirm"]);
    assert!(out.status.success(), "restore failed:\n{}", describe(&out));
    assert!(stdout(&out).contains("pre-restore backup"), "{}", describe(&out));
    assert!(stdout(&out).contains("1 skipped as expired"), "{}", describe(&out));

    let (after, after_at) = snapshot(&redis);
    let elapsed = after_at.duration_since(before_at).as_millis() as i64;
    let mut expected = before.clone();
    expected.remove(&(0, b"short-lived".to_vec()));
    assert_eq!(after.len(), expected.len(), "key count after restore");
    let mut ttls = 0;
    for (key, (dump, pttl)) in &expected {
        let Some((dump_after, pttl_after)) = after.get(key) else {
            panic!("key {key:?} did not come back");
        };
        if dump != dump_after {
            // Hash-table encodings serialise in bucket order, which a fresh
            // insert may change: then compare the values themselves.
            assert_eq!(
                value_of(&mut conn, key),
                before_values.remove(key).unwrap_or_default(),
                "value of {key:?} differs after restore"
            );
        }
        if *pttl < 0 {
            assert_eq!(*pttl_after, *pttl, "{key:?} gained a TTL");
        } else {
            ttls += 1;
            let want = pttl - elapsed;
            assert!(
                (pttl_after - want).abs() <= 1000,
                "TTL of {key:?}: {pttl_after} ms, expected {want} ± 1000"
            );
        }
    }
    assert!(ttls > 14_000, "only {ttls} keys with TTLs were compared");
}

#[test]
fn rdb_snapshots_in_both_transfer_forms_and_through_a_plain_sync() {
    // Diskless: `$EOF:<mark>`.
    let diskless = start_redis(&[]);
    diskless.cli(&["SET", "a", "1"]);
    // From disk: `$<len>`.
    let disk = start_redis(&[("repl-diskless-sync", "no")]);
    disk.cli(&["SET", "b", "2"]);
    // A user that may SYNC but not REPLCONF: `rdb-only` is refused, so a plain
    // SYNC (no `capa eof` either, so from disk), and AUTH with a user name.
    let plain = start_redis(&[]);
    plain.cli(&["SET", "c", "3"]);
    let acl = plain.cli(&[
        "ACL",
        "SETUSER",
        "backup",
        "on",
        ">backup-secret-pw",
        "~*",
        "&*",
        "+@all",
        "-replconf",
    ]);
    assert_eq!(acl, "OK");

    for (redis, extra, form) in [
        (&diskless, "", "(diskless)"),
        (&disk, "", "(from disk)"),
        (
            &plain,
            "username = \"backup\"\npassword = \"backup-secret-pw\"\n",
            "(from disk, plain SYNC)",
        ),
    ] {
        let url = redis.url(0);
        let dir = tempfile::tempdir().unwrap();
        write_file(
            dir.path(),
            "redops.toml",
            &format!("[engine]\nstate_dir = \"state\"\n\n[[target]]\nname = \"cache\"\nurl = \"{url}\"\n{extra}"),
        );
        let (row, out) = create(dir.path(), "rdb", &["--no-compress"]);
        assert!(stderr(&out).contains(form), "expected {form}:\n{}", describe(&out));
        assert!(
            !stderr(&out).contains("backup-secret-pw"),
            "the password leaked:\n{}",
            describe(&out)
        );
        assert_eq!(row["compressed"], false);
        let raw = fs::read(row["path"].as_str().unwrap()).unwrap();
        assert!(raw.starts_with(b"REDIS"));
        rdb::check(&raw[..], &mut Silent).unwrap();
        let out = redops(
            dir.path(),
            &["backup", "verify", "--backup-id", row["id"].as_str().unwrap()],
        );
        assert!(out.status.success(), "{}", describe(&out));
    }

    // A wrong password is an error that says so, without the password.
    let dir = config_dir(&plain.url(0), "");
    write_file(
        dir.path(),
        "redops.toml",
        &format!(
            "[engine]\nstate_dir = \"state\"\n\n[[target]]\nname = \"cache\"\nurl = \"{}\"\nusername = \"backup\"\npassword = \"wrong-password-here\"\n",
            plain.url(0)
        ),
    );
    let out = redops(dir.path(), &["backup", "create", "--target", "cache", "--type", "rdb"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("AUTH failed"), "{}", describe(&out));
    assert!(!stderr(&out).contains("wrong-password-here"), "{}", describe(&out));
    assert!(
        !dir.path().join("state/backups").exists()
            || fs::read_dir(dir.path().join("state/backups")).unwrap().count() == 0,
        "a failed backup left a file"
    );
}

// ---------------------------------------------------------------------------
// 2. Corruption and encryption

#[test]
fn a_flipped_byte_fails_verify_and_restore_refuses_the_backup() {
    let redis = start_redis(&[]);
    load_every_type(&redis, 2_000);
    let dir = config_dir(&redis.url(0), "");
    let (full, _) = create(dir.path(), "full", &[]);
    let (rdb_row, _) = create(dir.path(), "rdb", &[]);

    for row in [&full, &rdb_row] {
        let id = row["id"].as_str().unwrap();
        let path = PathBuf::from(row["path"].as_str().unwrap());
        flip_byte(&path, fs::metadata(&path).unwrap().len() as usize / 2);
        let out = redops(dir.path(), &["backup", "verify", "--backup-id", id]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("backup `{id}` failed verification")) && err.contains("SHA-256"),
            "{}",
            describe(&out)
        );
        let recorded = listed(dir.path(), id);
        assert!(recorded["verified"].is_null());
        assert!(
            recorded["verify_error"]
                .as_str()
                .unwrap_or_default()
                .contains("SHA-256"),
            "{recorded}"
        );
    }

    let before = redis.cli(&["DBSIZE"]);
    let out = redops(
        dir.path(),
        &["restore", "--backup-id", full["id"].as_str().unwrap(), "--confirm"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("refusing to restore"), "{}", describe(&out));
    assert_eq!(redis.cli(&["DBSIZE"]), before, "a refused restore touched the server");

    // Without --confirm nothing happens and the plan is explained (exit 2).
    let (good, _) = create(dir.path(), "full", &[]);
    let out = redops(dir.path(), &["restore", "--backup-id", good["id"].as_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("not confirmed") && stderr(&out).contains("full backup of `cache`"),
        "{}",
        describe(&out)
    );

    // An RDB backup is never restored remotely: the steps are printed.
    let (rdb_ok, _) = create(dir.path(), "rdb", &[]);
    let out = redops(
        dir.path(),
        &["restore", "--backup-id", rdb_ok["id"].as_str().unwrap(), "--confirm"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("SHUTDOWN NOSAVE") && stderr(&out).contains("zstd -d"),
        "{}",
        describe(&out)
    );
}

fn age_keygen(age_keygen: &Path, dir: &Path) -> (PathBuf, String) {
    let key = dir.join("backup.key");
    let out = Command::new(age_keygen)
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap_or_else(|e| panic!("Failed to run {}: {e}", age_keygen.display()));
    assert!(
        out.status.success(),
        "age-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&key).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key as a comment")
        .to_owned();
    (key, public)
}

#[test]
fn encrypted_backups_open_with_the_age_cli_and_zstd() {
    let (Some(age), Some(keygen), Some(zstd)) = (
        harness::required_tool("age"),
        harness::required_tool("age-keygen"),
        harness::required_tool("zstd"),
    ) else {
        return;
    };
    let redis = start_redis(&[]);
    load_every_type(&redis, 3_000);
    let keydir = tempfile::tempdir().unwrap();
    let (key, public) = age_keygen(&keygen, keydir.path());
    let dir = config_dir(
        &redis.url(0),
        &format!(
            "[backup]\nage_recipients = [\"{public}\"]\nage_identity_file = \"{}\"\nrequire_encryption = true\n",
            key.display()
        ),
    );
    for kind in ["full", "rdb"] {
        let (row, _) = create(dir.path(), kind, &[]);
        assert_eq!(row["encrypted"], true);
        let path = row["path"].as_str().unwrap();
        assert!(path.ends_with(".zst.age"), "{path}");
        let raw = fs::read(path).unwrap();
        assert!(raw.starts_with(b"age-encryption.org/v1"), "not an age file");

        let decrypted = Command::new(&age)
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg(path)
            .output()
            .unwrap();
        assert!(
            decrypted.status.success(),
            "age -d: {}",
            String::from_utf8_lossy(&decrypted.stderr)
        );
        let zst = dir.path().join(format!("{kind}.zst"));
        fs::write(&zst, &decrypted.stdout).unwrap();
        let plain = dir.path().join(format!("{kind}.plain"));
        let unzstd = Command::new(&zstd)
            .arg("-q")
            .arg("-d")
            .arg(&zst)
            .arg("-o")
            .arg(&plain)
            .output()
            .unwrap();
        assert!(
            unzstd.status.success(),
            "zstd -d: {}",
            String::from_utf8_lossy(&unzstd.stderr)
        );
        let bytes = fs::read(&plain).unwrap();
        match kind {
            "full" => {
                let summary = logical::check(&bytes[..], &mut Silent).expect("a valid logical backup");
                assert!(summary.keys >= 3_000);
            }
            _ => {
                rdb::check(&bytes[..], &mut Silent).expect("a valid RDB");
            }
        }
        let out = redops(
            dir.path(),
            &["backup", "verify", "--backup-id", row["id"].as_str().unwrap()],
        );
        assert!(out.status.success(), "{}", describe(&out));
        assert!(
            stdout(&out).contains("decrypted and decompressed"),
            "{}",
            describe(&out)
        );
    }

    // Without the identity file an encrypted backup cannot be verified, and
    // the message says what to configure.
    let no_key = config_dir(&redis.url(0), &format!("[backup]\nage_recipients = [\"{public}\"]\n"));
    let (row, _) = create(no_key.path(), "full", &[]);
    let out = redops(
        no_key.path(),
        &["backup", "verify", "--backup-id", row["id"].as_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("age_identity_file"), "{}", describe(&out));

    // require_encryption with no key is a config error.
    let bad = config_dir(&redis.url(0), "[backup]\nrequire_encryption = true\n");
    let out = redops(bad.path(), &["backup", "create", "--target", "cache", "--type", "full"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("require_encryption"), "{}", describe(&out));
}

#[test]
fn cleanup_keeps_the_newest_and_honours_dry_run() {
    let redis = start_redis(&[]);
    redis.cli(&["SET", "a", "1"]);
    let dir = config_dir(&redis.url(0), "");
    let (first, _) = create(dir.path(), "full", &[]);
    let (second, _) = create(dir.path(), "full", &[]);
    let (rdb_row, _) = create(dir.path(), "rdb", &[]);
    // Retention 0 days: everything is past it, but the newest of each kind stays.
    let out = redops(
        dir.path(),
        &["backup", "cleanup", "--retention-days", "0", "--dry-run", "--json"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["removed"][0]["id"], first["id"]);
    assert!(
        Path::new(first["path"].as_str().unwrap()).exists(),
        "a dry run deleted a file"
    );

    let out = redops(dir.path(), &["backup", "cleanup", "--retention-days", "0"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!Path::new(first["path"].as_str().unwrap()).exists());
    for kept in [&second, &rdb_row] {
        assert!(Path::new(kept["path"].as_str().unwrap()).exists());
    }
    let out = redops(dir.path(), &["backup", "list", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows.len(), 2);
    let out = redops(dir.path(), &["backup", "list", "--days-back", "1"]);
    assert!(
        stdout(&out).contains(second["id"].as_str().unwrap()),
        "{}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------
// 4. The playbook API

const BACKUP_RULE: &str = r#"
[[rule]]
name = "take_backup"
source = "sample"
when = "redis_up == 1"
severity = "info"
playbook = "backup"
params = { kind = "full", retention = "7d" }
"#;

#[test]
fn the_playbook_backup_api_records_in_a_dry_run_and_backs_up_for_real() {
    let redis = start_redis(&[]);
    redis.cli(&["SET", "a", "1"]);
    let config = format!("[[target]]\nname = \"cache\"\nurl = \"{}\"\n", redis.url(0));
    let playbook = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/backup.rhai")).unwrap();
    let files = |dir: &Path| fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);

    let dir = engine_dir("500ms", &config, &[("backup", BACKUP_RULE)], &[("backup", &playbook)]);
    let mut dry = Redops::start(dir.path(), &["--dry-run"]);
    let log = dry.wait_log("Dry run: not performed", Duration::from_secs(15));
    assert!(log.contains("backup.create type=full target=cache"), "{log}");
    let log = dry.wait_log("Playbook succeeded", Duration::from_secs(15));
    assert!(log.contains("backup.cleanup target=cache type=full"), "{log}");
    assert!(dry.terminate().success(), "{}", dry.output());
    assert_eq!(files(&dir.path().join("state/backups")), 0, "a dry run wrote a backup");

    // A fresh state dir: the dry run's alert is still firing in the old one.
    let dir = engine_dir("500ms", &config, &[("backup", BACKUP_RULE)], &[("backup", &playbook)]);
    let backups = dir.path().join("state/backups");
    let mut real = Redops::start(dir.path(), &[]);
    let log = real.wait_log("Playbook succeeded", Duration::from_secs(15));
    assert!(log.contains("Backup created"), "{log}");
    assert!(real.terminate().success(), "{}", real.output());
    assert_eq!(files(&backups), 1, "{log}");
    let out = redops(dir.path(), &["backup", "list", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows.len(), 1, "{}", describe(&out));
    assert_eq!(rows[0]["target"], "cache");
    assert_eq!(rows[0]["kind"], "full");
}

fn shipped(name: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("playbooks/{name}.rhai"))).unwrap()
}

#[test]
fn shipped_playbooks_back_up_verify_alert_and_restore_only_when_confirmed() {
    let redis = start_redis(&[]);
    redis.cli(&["SET", "precious", "data"]);
    let hook = WebhookReceiver::start();
    let config = target_and_hook("cache", &redis.url(0), "", &hook.url());
    let playbooks: Vec<(&str, String)> = ["backup", "verify_backup", "restore"]
        .into_iter()
        .map(|n| (n, shipped(n)))
        .collect();
    let playbooks: Vec<(&str, &str)> = playbooks.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let dir = engine_dir("1s", &config, &[], &playbooks);
    let run = |args: &[&str]| {
        let mut all = vec!["playbook", "run"];
        all.extend_from_slice(args);
        all.extend(["--target", "cache"]);
        redops(dir.path(), &all)
    };
    let newest = || -> serde_json::Value {
        let out = redops(dir.path(), &["backup", "list", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
        rows.into_iter().next().expect("a backup exists")
    };

    let out = run(&["backup", "--param", "kind=full"]);
    assert!(out.status.success(), "{}", describe(&out));
    let first = newest();
    let out = run(&["verify_backup"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains(&format!("verified {}", first["id"].as_str().unwrap())),
        "{}",
        describe(&out)
    );

    flip_byte(Path::new(first["path"].as_str().unwrap()), 40);
    let out = run(&["verify_backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        r.iter().any(|m| m.text().contains("FAILED verification"))
    });
    assert!(got.iter().any(|m| m.text().contains(first["id"].as_str().unwrap())));

    let out = run(&["backup", "--param", "kind=full"]);
    assert!(out.status.success(), "{}", describe(&out));
    let good = newest();
    let id = format!("backup_id={}", good["id"].as_str().unwrap());
    redis.cli(&["SET", "precious", "changed"]);
    let out = run(&["restore", "--param", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        describe(&out).contains("without params.confirm = true"),
        "{}",
        describe(&out)
    );
    assert_eq!(redis.cli(&["GET", "precious"]), "changed", "an unconfirmed restore ran");

    let out = run(&["restore", "--param", &id, "--param", "confirm=true", "--dry-run"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(redis.cli(&["GET", "precious"]), "changed", "a dry-run restore ran");

    let out = run(&["restore", "--param", &id, "--param", "confirm=true"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(redis.cli(&["GET", "precious"]), "data");
    assert!(
        stdout(&out).contains("pre-restore backup cache-full-"),
        "{}",
        describe(&out)
    );
}
