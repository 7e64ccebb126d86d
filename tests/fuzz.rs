//! Fuzzing every parser that reads input redops does not control, with
//! proptest (cargo-fuzz needs a nightly toolchain; this runs on stable, in
//! `cargo test`).
//!
//! Each target has a corpus of real inputs in `fuzz/corpus/<target>/`
//! (captured from real servers, or the shipped and golden files; see
//! `fuzz/README.md`). Per target, two tests:
//! - `<target>_corpus`: every seed parses without a panic;
//! - `<target>_mutations`: seeds mutated (bit flips, truncation, inserted
//!   random bytes, long runs, CR LF, invalid UTF-8, splices) and random
//!   inputs never panic, and every error carries a message.
//!
//! `PROPTEST_CASES=100000 cargo test --release --test fuzz` is a long session
//! (docs/testing.md#fuzzing). A failing input is printed shrunk; add it to
//! the target's corpus once the parser is fixed.

use std::collections::HashMap;
use std::fs;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use redops::backup::{Silent, archive, logical, rdb};
use redops::config::{BackupConfig, Config};
use redops::diagnostics::{Diagnostics, SourceFile};
use redops::event::MetricValue;
use redops::event::sentinel::{self as events, SentinelEvent};
use redops::redis::info;
use redops::redis::metrics::{Limits, MetricsDeriver};
use redops::rules::expr::ExprEngine;
use redops::rules::history::History;
use redops::rules::load::{References, parse_rule_file};

/// Cases per mutation test unless `PROPTEST_CASES` says otherwise: enough to
/// catch a regression in `cargo test`, few enough that the file runs in well
/// under a minute on two cores in a debug build.
const DEFAULT_CASES: u32 = 192;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        // The shrunk input is printed on failure; it belongs in the corpus,
        // not in a regressions file beside the tests.
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Corpus and mutations

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// A corpus file: its path and contents.
type Seed = (PathBuf, Vec<u8>);

const TARGETS: &[&str] = &["config", "rules", "when", "sentinel", "info", "rdb", "archive"];

/// The seeds of a target; the corpus is read once per test binary.
fn seeds(target: &str) -> &'static [Seed] {
    static CORPUS: OnceLock<HashMap<&'static str, Vec<Seed>>> = OnceLock::new();
    let corpus = CORPUS.get_or_init(|| TARGETS.iter().map(|t| (*t, read_corpus(t))).collect());
    corpus.get(target).unwrap_or_else(|| panic!("no fuzz target {target}"))
}

fn read_corpus(target: &str) -> Vec<Seed> {
    let dir = corpus_dir(target);
    let mut seeds: Vec<Seed> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("Failed to read the corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file() && !is_key_file(path))
        .map(|path| {
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("Failed to read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 2, "the corpus {} needs seeds", dir.display());
    seeds
}

/// The archive corpus keeps the age identity that opens its encrypted seed.
fn is_key_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "test-identity.txt")
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    /// A long run of one byte: deep nesting, huge numbers, 100 KB keys.
    InsertRun(Index, u8, usize),
    InsertCrLf(Index),
    InsertNonUtf8(Index),
    /// Copies a slice of the input elsewhere in it.
    Duplicate(Index, Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let run_byte = prop::sample::select(b"[{(\"'\\#$%.,=:0 9aZ\r\n\x00\xff+-".to_vec());
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::SetByte(at, b)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1usize..64).prop_map(|(at, n)| Mutation::Delete(at, n)),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..32)).prop_map(|(at, b)| Mutation::Insert(at, b)),
        1 => (any::<Index>(), run_byte, prop_oneof![1usize..300, 1_000usize..110_000])
            .prop_map(|(at, b, n)| Mutation::InsertRun(at, b, n)),
        1 => any::<Index>().prop_map(Mutation::InsertCrLf),
        1 => any::<Index>().prop_map(Mutation::InsertNonUtf8),
        1 => (any::<Index>(), any::<Index>(), 1usize..256).prop_map(|(from, to, n)| Mutation::Duplicate(from, to, n)),
    ]
}

fn apply(input: &mut Vec<u8>, m: &Mutation) {
    // Positions are taken relative to the input as it is now; inserting at
    // len() (appending) is as likely as anywhere else.
    let at = |i: &Index, len: usize| i.index(len + 1);
    let len = input.len();
    match m {
        Mutation::FlipBit(i, bit) if len > 0 => input[i.index(len)] ^= 1 << bit,
        Mutation::SetByte(i, b) if len > 0 => input[i.index(len)] = *b,
        Mutation::Truncate(i) => input.truncate(at(i, len)),
        Mutation::Delete(i, n) => {
            let start = at(i, len);
            input.drain(start..(start + n).min(len));
        }
        Mutation::Insert(i, bytes) => splice(input, at(i, len), bytes),
        Mutation::InsertRun(i, b, n) => splice(input, at(i, len), &vec![*b; *n]),
        Mutation::InsertCrLf(i) => splice(input, at(i, len), b"\r\n"),
        Mutation::InsertNonUtf8(i) => splice(input, at(i, len), b"\xc3\x28\xff\xfe\xed\xa0\x80"),
        Mutation::Duplicate(from, to, n) if len > 0 => {
            let start = from.index(len);
            let copy = input[start..(start + n).min(len)].to_vec();
            splice(input, at(to, len), &copy);
        }
        _ => {}
    }
}

fn splice(input: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    input.splice(at..at, bytes.iter().copied());
}

/// An input for `target` and the seed it came from (`None` for random bytes).
fn input(target: &'static str) -> impl Strategy<Value = (Option<usize>, Vec<u8>)> {
    let n = seeds(target).len();
    let mutated = (0..n, prop::collection::vec(mutation(), 1..6)).prop_map(move |(seed, mutations)| {
        let mut bytes = seeds(target)[seed].1.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        (Some(seed), bytes)
    });
    let random = prop::collection::vec(any::<u8>(), 0..512).prop_map(|bytes| (None, bytes));
    prop_oneof![4 => mutated, 1 => random]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn has_message(what: &str, error: &dyn std::fmt::Display) -> Result<(), TestCaseError> {
    let message = error.to_string();
    prop_assert!(!message.trim().is_empty(), "{what} failed with an empty message");
    Ok(())
}

/// Every diagnostic says something and points into the file; no result
/// means an error was reported.
fn diagnostics_explain(file: &SourceFile, diags: &Diagnostics, parsed: bool) -> Result<(), TestCaseError> {
    let lines = file.text.lines().count() + 1;
    for d in diags.iter() {
        prop_assert!(!d.message.trim().is_empty(), "a diagnostic without a message: {d:?}");
        prop_assert!(
            d.line <= lines,
            "diagnostic at line {} of a {lines}-line file: {d:?}",
            d.line
        );
    }
    prop_assert!(parsed || diags.has_errors(), "no result and no error");
    Ok(())
}

// ---------------------------------------------------------------------------
// The config parser

fn check_config(bytes: &[u8]) -> Result<(), TestCaseError> {
    let file = SourceFile::new("fuzz/redops.toml", text(bytes));
    let mut diags = Diagnostics::default();
    let parsed = Config::parse(&file, &mut diags).is_some();
    diagnostics_explain(&file, &diags, parsed)
}

#[test]
fn config_corpus() {
    for (path, bytes) in seeds("config") {
        check_config(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn config_mutations((_, bytes) in input("config")) {
        check_config(&bytes)?;
    }
}

// ---------------------------------------------------------------------------
// The rule file parser (which also compiles `when`, `clear` and templates)

fn expr_engine() -> &'static ExprEngine {
    static ENGINE: OnceLock<ExprEngine> = OnceLock::new();
    ENGINE.get_or_init(ExprEngine::new)
}

fn check_rules(bytes: &[u8]) -> Result<(), TestCaseError> {
    let refs = References {
        playbooks: vec![
            "optimize_memory",
            "backup",
            "warm_cache",
            "redis_outage",
            "sentinel_failover",
            "verify_backup",
            "cleanup_backups",
            "capacity_report",
        ],
        targets: vec!["cache", "sessions", "celery", "lab"],
        receivers: vec!["oncall", "pager", "hook", "log"],
    };
    let file = SourceFile::new("fuzz/rules/memory.toml", text(bytes));
    let mut diags = Diagnostics::default();
    // A file without a `[[rule]]` is not an error, so an empty result
    // without one is fine here.
    parse_rule_file(&file, &refs, expr_engine(), &mut diags);
    diagnostics_explain(&file, &diags, true)
}

#[test]
fn rules_corpus() {
    for (path, bytes) in seeds("rules") {
        check_rules(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn rules_mutations((_, bytes) in input("rules")) {
        check_rules(&bytes)?;
    }
}

// ---------------------------------------------------------------------------
// The Rhai `when` compiler, and evaluating what compiles

fn check_when(bytes: &[u8]) -> Result<(), TestCaseError> {
    let source = text(bytes);
    match expr_engine().compile(&source) {
        Err(e) => has_message("compiling a `when`", &e.message),
        Ok(ast) => {
            let mut scope = rhai::Scope::new();
            scope.push_constant("target", "cache".to_owned());
            scope.push_constant("role", "master".to_owned());
            scope.push_constant("memory_used_pct", 91.5_f64);
            scope.push_constant("hit_ratio", 0.42_f64);
            scope.push_constant("count", 1001.0_f64);
            scope.push_constant("redis_up", 1.0_f64);
            let now = tokio::time::Instant::now();
            let mut history = History::new(Duration::from_secs(600));
            for (i, metric) in ["used_memory", "evicted_keys", "memory_used_pct"].iter().enumerate() {
                history.record(metric, now - Duration::from_secs(60), i as f64);
                history.record(metric, now, 10.0 * i as f64);
            }
            // An evaluation error (a wrong type, a limit) is an answer too;
            // only a panic is a failure.
            let _ = expr_engine().eval_bool(&ast, &mut scope, &mut history, now);
            Ok(())
        }
    }
}

#[test]
fn when_corpus() {
    for (path, bytes) in seeds("when") {
        check_when(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn when_mutations((_, bytes) in input("when")) {
        check_when(&bytes)?;
    }
}

// ---------------------------------------------------------------------------
// The Sentinel event parser

fn check_sentinel_event(event: &SentinelEvent) -> Result<(), TestCaseError> {
    if let SentinelEvent::Raw { reason, .. } = event {
        prop_assert!(!reason.trim().is_empty(), "a raw event without a reason: {event:?}");
    }
    // What the engine does with every event: name it, label it, key it.
    let _ = (event.name(), event.payload(), event.fields(), event.dedup_key());
    let _ = (event.instance(), event.master_name());
    Ok(())
}

fn check_sentinel(bytes: &[u8]) -> Result<(), TestCaseError> {
    for line in text(bytes).lines() {
        check_sentinel_event(&events::parse_line(line))?;
    }
    // As pub/sub hands them over: raw bytes, the channel then the payload.
    for line in bytes.split(|b| *b == b'\n') {
        let (channel, payload) = match line.iter().position(|b| *b == b' ') {
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (line, &[][..]),
        };
        check_sentinel_event(&events::parse(channel, payload))?;
    }
    Ok(())
}

#[test]
fn sentinel_corpus() {
    for (path, bytes) in seeds("sentinel") {
        check_sentinel(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn sentinel_mutations((_, bytes) in input("sentinel")) {
        check_sentinel(&bytes)?;
    }
}

// ---------------------------------------------------------------------------
// The INFO parser and the metrics derived from it

fn check_info(previous: &[u8], bytes: &[u8], limits: Limits) -> Result<(), TestCaseError> {
    let mut deriver = MetricsDeriver::new();
    for (sample, reply) in [previous, bytes].into_iter().enumerate() {
        let parsed = info::parse(&text(reply));
        for (key, value) in parsed.fields() {
            let _ = (parsed.get(key), parsed.get_u64(key), parsed.get_f64(key), value);
        }
        let elapsed = (sample > 0).then_some(Duration::from_secs(5));
        let metrics = deriver.derive(&parsed, &limits, elapsed, 1_700_000_000);
        for (name, value) in &metrics {
            if let MetricValue::Num(n) = value {
                prop_assert!(n.is_finite(), "metric {name} = {n} from INFO:\n{}", text(reply));
            }
        }
    }
    Ok(())
}

#[test]
fn info_corpus() {
    let seeds = seeds("info");
    for (path, bytes) in seeds {
        check_info(&seeds[0].1, bytes, Limits::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn info_mutations(
        (seed, bytes) in input("info"),
        maxmemory in prop_oneof![Just(0u64), any::<u64>()],
        maxclients in prop_oneof![Just(0u64), any::<u64>()],
    ) {
        // The previous sample is the seed itself: a mutation then looks like
        // a restart, a counter reset or a wrap, as a real server's can.
        let previous = seed.map_or(&[][..], |s| &seeds("info")[s].1[..]);
        check_info(previous, &bytes, Limits { maxmemory, maxclients })?;
    }
}

// ---------------------------------------------------------------------------
// RDB header and trailer

/// Checks `bytes` whole and in the given pieces: the answer must not depend
/// on how the snapshot arrived.
fn check_rdb(bytes: &[u8], cuts: &[Index]) -> Result<(), TestCaseError> {
    let whole = rdb::check(Cursor::new(bytes), &mut Silent);
    if let Err(e) = &whole {
        has_message("checking an RDB", e)?;
    }
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut checker = rdb::RdbChecker::new();
    let mut from = 0;
    for to in at.into_iter().chain([bytes.len()]) {
        checker.update(&bytes[from..to]);
        from = to;
    }
    let pieces = checker.finish();
    prop_assert_eq!(
        whole.as_ref().ok(),
        pieces.as_ref().ok(),
        "whole: {:?}, in pieces: {:?}",
        whole.as_ref().err().map(ToString::to_string),
        pieces.as_ref().err().map(ToString::to_string)
    );
    Ok(())
}

/// A diskless transfer: the payload then the 40-byte mark, in pieces. The
/// scanner must hand on exactly the payload and see the end.
fn check_eof_framing(payload: &[u8], mark: [u8; rdb::EOF_MARK_LEN], cuts: &[Index]) -> Result<(), TestCaseError> {
    let mut stream = payload.to_vec();
    stream.extend_from_slice(&mark);
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut scanner = rdb::EofScanner::new(mark);
    let mut out = Vec::new();
    let mut from = 0;
    let mut ended_at = None;
    for to in at.into_iter().chain([stream.len()]) {
        let done = scanner
            .push(&stream[from..to], &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })
            .expect("the sink never fails");
        if done {
            ended_at = Some(to);
            break;
        }
        from = to;
    }
    // A payload that itself ends with the mark ends there: the protocol
    // cannot tell them apart, and neither can Redis's own replica.
    let first_end = (rdb::EOF_MARK_LEN..=stream.len())
        .find(|end| stream[..*end].ends_with(&mark))
        .expect("the stream ends with the mark");
    prop_assert!(ended_at.is_some_and(|at| at >= first_end), "the mark was missed");
    prop_assert_eq!(&out[..], &stream[..out.len()]);
    Ok(())
}

#[test]
fn rdb_corpus() {
    for (path, bytes) in seeds("rdb") {
        let summary = rdb::check(Cursor::new(bytes), &mut Silent)
            .unwrap_or_else(|e| panic!("{}: a real snapshot must check: {e}", path.display()));
        assert!(summary.rdb_version >= 9, "{}: {summary:?}", path.display());
        check_rdb(bytes, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn rdb_mutations((_, bytes) in input("rdb"), cuts in prop::collection::vec(any::<Index>(), 0..6)) {
        check_rdb(&bytes, &cuts)?;
    }

    #[test]
    fn rdb_diskless_framing(
        (_, payload) in input("rdb"),
        mark in any::<[u8; rdb::EOF_MARK_LEN]>(),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        check_eof_framing(&payload, mark, &cuts)?;
    }
}

// ---------------------------------------------------------------------------
// Restore archives: age, zstd, then the logical format

/// How an archive seed is sealed, from its file name.
fn layers(path: &Path) -> (bool, bool) {
    let name = path.to_string_lossy();
    (name.contains(".zst"), name.ends_with(".age"))
}

fn archive_keys() -> &'static archive::Keys {
    static KEYS: OnceLock<archive::Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let config = BackupConfig {
            age_identity_file: Some(corpus_dir("archive").join("test-identity.txt")),
            ..BackupConfig::default()
        };
        archive::Keys::from_config(&config)
    })
}

/// Opens `bytes` as an archive sealed as given and reads it as a restore
/// would; returns how many keys it held.
fn check_archive(bytes: &[u8], compressed: bool, encrypted: bool) -> Result<Option<u64>, TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fuzz.redops");
    fs::write(&path, bytes).expect("write the archive");
    let mut reader = match archive::open(&path, compressed, encrypted, archive_keys()) {
        Ok(r) => r,
        Err(e) => {
            has_message("opening an archive", &e)?;
            return Ok(None);
        }
    };
    // Through a reader that fails part way, as zstd and age do on corrupt
    // input: the error must surface with a message, not a panic.
    let mut payload = Vec::new();
    if let Err(e) = reader.read_to_end(&mut payload) {
        has_message("reading an archive", &e)?;
    }
    match logical::check(Cursor::new(&payload), &mut Silent) {
        Ok(summary) => Ok(Some(summary.keys)),
        Err(e) => {
            has_message("checking a logical backup", &e)?;
            Ok(None)
        }
    }
}

#[test]
fn archive_corpus() {
    for (path, bytes) in seeds("archive") {
        let (compressed, encrypted) = layers(path);
        let keys = check_archive(bytes, compressed, encrypted).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            keys,
            Some(10),
            "{}: a real backup of 10 keys must check",
            path.display()
        );
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn archive_mutations((seed, bytes) in input("archive"), sealing in any::<(bool, bool)>()) {
        // A mutated seed is opened as it was sealed; random bytes every way.
        let (compressed, encrypted) = match seed {
            Some(s) => layers(&seeds("archive")[s].0),
            None => sealing,
        };
        check_archive(&bytes, compressed, encrypted)?;
        // The logical reader on its own, fed the raw bytes.
        if let Err(e) = logical::check(Cursor::new(&bytes), &mut Silent) {
            has_message("checking a logical backup", &e)?;
        }
    }
}
