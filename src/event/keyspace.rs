//! Which keyspace events a keyspace rule counts, and those selectors
//! compiled for the keyspace reader's hot path. The rules build them when
//! they load; the keyspace source matches events with them. Neither imports
//! the other: they meet here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::{Input, MatchKind, PatternSet, meta, util::syntax};

use crate::glob::Glob;

/// A keyspace rule as the keyspace source needs it: its name (the name of
/// its counter), the targets it names and what it counts.
#[derive(Debug, Clone)]
pub struct KeyspaceRule {
    pub rule: String,
    /// Empty: every target.
    pub targets: Vec<String>,
    pub selector: KeyspaceSelector,
}

impl KeyspaceRule {
    pub fn applies_to(&self, target: &str) -> bool {
        super::names_target(&self.targets, target)
    }
}

/// Which keyspace events a keyspace rule counts.
#[derive(Debug, Clone)]
pub struct KeyspaceSelector {
    /// Event names (`evicted`, `expired`, `set`, ...); empty means every event.
    pub events: Vec<String>,
    pub keys: Glob,
    pub window: Duration,
    pub db: Option<u32>,
}

impl KeyspaceSelector {
    /// The reference semantics; [`SelectorSet`] must agree with it.
    pub fn matches(&self, db: u32, event: &str, key: &[u8]) -> bool {
        self.db.is_none_or(|d| d == db)
            && (self.events.is_empty() || self.events.iter().any(|e| e == event))
            && self.keys.matches(key)
    }
}

/// Many keyspace selectors compiled for the reader's hot path: an event
/// name is one hash lookup, and a key is scanned once whatever the number
/// of rules (their globs, deduplicated, form one regex set). Trying 100
/// globs one by one cost 2.5 µs an event; see BENCHMARKS.md. Matching
/// allocates nothing: the set of matched globs is a reused scratch.
#[derive(Debug)]
pub struct SelectorSet {
    dbs: Vec<Option<u32>>,
    /// A matcher per event name some selector names: those selectors plus
    /// the ones that take every event.
    by_event: HashMap<Box<[u8]>, KeyMatcher>,
    /// The selectors that take every event, for events nobody names.
    any_event: KeyMatcher,
}

impl SelectorSet {
    pub fn new<'a>(selectors: impl IntoIterator<Item = &'a KeyspaceSelector>) -> Self {
        let selectors: Vec<&KeyspaceSelector> = selectors.into_iter().collect();
        let takes_every_event: Vec<usize> = (0..selectors.len())
            .filter(|&i| selectors[i].events.is_empty())
            .collect();
        let mut listeners: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
        for (i, s) in selectors.iter().enumerate() {
            for e in &s.events {
                listeners.entry(e).or_default().insert(i);
            }
        }
        let by_event = listeners
            .into_iter()
            .map(|(event, named)| {
                let mut idx: Vec<usize> = named.into_iter().chain(takes_every_event.iter().copied()).collect();
                idx.sort_unstable();
                idx.dedup();
                let matcher = KeyMatcher::new(idx.into_iter().map(|i| (i, &selectors[i].keys)));
                (event.as_bytes().into(), matcher)
            })
            .collect();
        let any_event = KeyMatcher::new(takes_every_event.iter().map(|&i| (i, &selectors[i].keys)));
        SelectorSet {
            dbs: selectors.iter().map(|s| s.db).collect(),
            by_event,
            any_event,
        }
    }

    /// Calls `hit` with the index of every selector that matches, once each.
    pub fn for_each_match(&mut self, db: u32, event: &str, key: &[u8], mut hit: impl FnMut(usize)) {
        let matcher = match self.by_event.get_mut(event.as_bytes()) {
            Some(matcher) => matcher,
            None => &mut self.any_event,
        };
        let dbs = &self.dbs;
        matcher.for_each_match(key, |i| {
            if dbs[i].is_none_or(|d| d == db) {
                hit(i);
            }
        });
    }
}

/// The key side of a [`SelectorSet`] for one event.
#[derive(Debug, Default)]
struct KeyMatcher {
    /// Selectors whose glob is `*`: they need no scan.
    always: Vec<usize>,
    globs: GlobSet,
    /// For each distinct glob of `globs`, the selectors that use it.
    users: Vec<Vec<usize>>,
}

#[derive(Debug, Default)]
enum GlobSet {
    #[default]
    Empty,
    /// The globs as one regex set (as `regex::bytes::RegexSet` builds it)
    /// and the set of those that matched, reused from key to key.
    Regex(meta::Regex, PatternSet),
    /// When the set is too large to compile: each glob in turn, still right.
    EachOf(Vec<Glob>),
}

impl KeyMatcher {
    fn new<'a>(selectors: impl IntoIterator<Item = (usize, &'a Glob)>) -> Self {
        let mut always = Vec::new();
        let mut distinct: Vec<(&Glob, Vec<usize>)> = Vec::new();
        for (i, glob) in selectors {
            if *glob == Glob::Any {
                always.push(i);
            } else if let Some((_, users)) = distinct.iter_mut().find(|(g, _)| *g == glob) {
                users.push(i);
            } else {
                distinct.push((glob, vec![i]));
            }
        }
        let globs = if distinct.is_empty() {
            GlobSet::Empty
        } else {
            let regexes: Vec<String> = distinct.iter().map(|(g, _)| glob_regex(g)).collect();
            match regex_set(&regexes) {
                Ok(set) => {
                    let matched = PatternSet::new(set.pattern_len());
                    GlobSet::Regex(set, matched)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Keyspace globs too large to compile together; matching them one by one");
                    GlobSet::EachOf(distinct.iter().map(|(g, _)| (*g).clone()).collect())
                }
            }
        };
        KeyMatcher {
            always,
            globs,
            users: distinct.into_iter().map(|(_, users)| users).collect(),
        }
    }

    fn for_each_match(&mut self, key: &[u8], mut hit: impl FnMut(usize)) {
        self.always.iter().for_each(|&i| hit(i));
        match &mut self.globs {
            GlobSet::Empty => {}
            GlobSet::Regex(set, matched) => {
                matched.clear();
                set.which_overlapping_matches(&Input::new(key), matched);
                for g in matched.iter() {
                    self.users[g].iter().for_each(|&i| hit(i));
                }
            }
            GlobSet::EachOf(globs) => {
                for (g, glob) in globs.iter().enumerate() {
                    if glob.matches(key) {
                        self.users[g].iter().for_each(|&i| hit(i));
                    }
                }
            }
        }
    }
}

/// The globs' regexes as one set, configured as `regex::bytes::RegexSet`
/// configures its own (every match reported, bytes not UTF-8, same size
/// limits), but searched with a caller's `PatternSet`, which `RegexSet`
/// allocates on each search.
fn regex_set(regexes: &[String]) -> Result<meta::Regex, Box<meta::BuildError>> {
    let config = meta::Config::new()
        .nfa_size_limit(Some(10 * (1 << 20)))
        .hybrid_cache_capacity(2 * (1 << 20))
        .match_kind(MatchKind::All)
        .utf8_empty(false)
        .which_captures(WhichCaptures::None);
    meta::Builder::new()
        .configure(config)
        .syntax(syntax::Config::new().utf8(false))
        .build_many(regexes)
        .map_err(Box::new)
}

/// The regex (over bytes, anchored) that accepts exactly the keys `glob`
/// accepts, following the matcher in `crate::glob` case by case: `\x` is a
/// literal `x` (a trailing `\` is itself), a `[` that is never closed is a
/// literal, and a class's members are computed here byte by byte, so the
/// regex never interprets class syntax of its own.
fn glob_regex(glob: &Glob) -> String {
    let mut re = String::from(r"(?s-u)\A");
    match glob {
        Glob::Any => {}
        Glob::Exact(e) => {
            e.iter().for_each(|&b| push_byte(&mut re, b));
            re.push_str(r"\z");
        }
        Glob::Prefix(p) => p.iter().for_each(|&b| push_byte(&mut re, b)),
        Glob::General(p) => {
            let mut i = 0;
            while i < p.len() {
                match p[i] {
                    b'*' => re.push_str(".*"),
                    b'?' => re.push('.'),
                    b'[' => match glob_class(p, i) {
                        Some((members, next)) => {
                            push_class(&mut re, &members);
                            i = next;
                            continue;
                        }
                        None => push_byte(&mut re, b'['),
                    },
                    b'\\' if i + 1 < p.len() => {
                        i += 1;
                        push_byte(&mut re, p[i]);
                    }
                    b => push_byte(&mut re, b),
                }
                i += 1;
            }
            re.push_str(r"\z");
        }
    }
    re
}

fn push_byte(re: &mut String, b: u8) {
    use std::fmt::Write as _;
    if b.is_ascii_alphanumeric() {
        re.push(b as char);
    } else {
        let _ = write!(re, r"\x{b:02X}");
    }
}

/// A class as an explicit list of bytes; an empty one matches nothing.
fn push_class(re: &mut String, members: &[bool; 256]) {
    use std::fmt::Write as _;
    if !members.contains(&true) {
        re.push_str(r"[^\x00-\xFF]");
        return;
    }
    re.push('[');
    let mut b = 0usize;
    while b < 256 {
        if !members[b] {
            b += 1;
            continue;
        }
        let start = b;
        while b + 1 < 256 && members[b + 1] {
            b += 1;
        }
        let _ = write!(re, r"\x{start:02X}-\x{b:02X}");
        b += 1;
    }
    re.push(']');
}

/// The bytes the class at `p[start] == b'['` accepts and the index after
/// it, or `None` when it is never closed. Mirrors `crate::glob`'s class
/// rules: `^` negates, a `]` first is a member, `\` escapes, `a-z` and
/// `z-a` are ranges, a `-` before the closing `]` is a member.
fn glob_class(p: &[u8], start: usize) -> Option<([bool; 256], usize)> {
    let mut members = [false; 256];
    let mut i = start + 1;
    let negate = p.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut first = true;
    while i < p.len() && (p[i] != b']' || first) {
        first = false;
        if p[i] == b'\\' && i + 1 < p.len() {
            i += 1;
        }
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            let hi = p[i + 2];
            let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            (a..=b).for_each(|c| members[usize::from(c)] = true);
            i += 3;
        } else {
            members[usize::from(lo)] = true;
            i += 1;
        }
    }
    if i >= p.len() {
        return None;
    }
    if negate {
        members.iter_mut().for_each(|m| *m = !*m);
    }
    Some((members, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(events: &[&str], keys: &str, db: Option<u32>) -> KeyspaceSelector {
        KeyspaceSelector {
            events: events.iter().map(|s| s.to_string()).collect(),
            keys: Glob::new(keys),
            window: Duration::from_secs(60),
            db,
        }
    }

    fn matched(set: &mut SelectorSet, db: u32, event: &str, key: &[u8]) -> Vec<usize> {
        let mut hits = Vec::new();
        set.for_each_match(db, event, key, |i| hits.push(i));
        hits.sort_unstable();
        hits
    }

    fn reference(selectors: &[KeyspaceSelector], db: u32, event: &str, key: &[u8]) -> Vec<usize> {
        (0..selectors.len())
            .filter(|&i| selectors[i].matches(db, event, key))
            .collect()
    }

    /// A tiny deterministic generator: the cross-check must be reproducible.
    struct XorShift(u64);

    impl XorShift {
        fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            &from[(self.0 % from.len() as u64) as usize]
        }

        fn bytes(&mut self, alphabet: &[u8], max_len: usize) -> Vec<u8> {
            let len = *self.pick(&(0..=max_len).collect::<Vec<_>>());
            (0..len).map(|_| *self.pick(alphabet)).collect()
        }
    }

    #[test]
    fn one_pass_matching_agrees_with_each_glob_on_random_patterns_and_keys() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let pattern_bytes = b"ab*?[]^-\\:";
        let key_bytes = b"ab[]^-\\:*\n\xff";
        let keys: Vec<Vec<u8>> = (0..300).map(|_| rng.bytes(key_bytes, 6)).collect();
        for _ in 0..50 {
            let selectors: Vec<KeyspaceSelector> = (0..40)
                .map(|_| {
                    let pattern = rng.bytes(pattern_bytes, 8);
                    // Globs are written in TOML strings, so they are UTF-8.
                    selector(&["set"], std::str::from_utf8(&pattern).unwrap(), None)
                })
                .collect();
            let mut set = SelectorSet::new(&selectors);
            for key in &keys {
                assert_eq!(
                    matched(&mut set, 0, "set", key),
                    reference(&selectors, 0, "set", key),
                    "key {:?} against {:?}",
                    String::from_utf8_lossy(key),
                    selectors.iter().map(|s| &s.keys).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn tricky_globs_keep_their_meaning() {
        /// A glob, keys it matches, keys it does not.
        type Case<'a> = (&'a str, &'a [&'a [u8]], &'a [&'a [u8]]);
        let cases: &[Case] = &[
            ("a\\*b", &[b"a*b"], &[b"axb", b"a\\xb"]),
            ("ab\\", &[b"ab\\"], &[b"ab"]),
            ("[unclosed", &[b"[unclosed"], &[b"u"]),
            ("[]a]x", &[b"]x", b"ax"], &[b"bx"]),
            ("[^]a]x", &[b"bx"], &[b"]x", b"ax"]),
            ("[z-a]", &[b"m"], &[b"A"]),
            ("[a-]", &[b"a", b"-"], &[b"b"]),
            ("[\\]]", &[b"]"], &[b"\\"]),
            ("[^a]", &[b"\xff", b"b"], &[b"a", b""]),
            ("k?y", &[b"k\ny", b"k\xffy"], &[b"ky"]),
            ("cache:*", &[b"cache:", b"cache:\xff"], &[b"cach"]),
            ("exact", &[b"exact"], &[b"exactly", b"exac"]),
        ];
        for (glob, yes, no) in cases {
            let selectors = [selector(&[], glob, None)];
            let mut set = SelectorSet::new(&selectors);
            for key in *yes {
                assert_eq!(matched(&mut set, 0, "set", key), [0], "{glob} should match {key:?}");
            }
            for key in *no {
                assert!(
                    matched(&mut set, 0, "set", key).is_empty(),
                    "{glob} should not match {key:?}"
                );
            }
        }
    }

    #[test]
    fn events_databases_and_shared_globs_count_each_selector_once() {
        let selectors = [
            selector(&["set"], "cache:*", None),
            selector(&["set", "set"], "cache:*", Some(1)),
            selector(&["evicted", "set"], "*", None),
            selector(&[], "cache:[0-9]*", None),
            selector(&["expired"], "*", Some(2)),
        ];
        let mut set = SelectorSet::new(&selectors);
        let cases: &[(u32, &str, &[u8])] = &[
            (1, "set", b"cache:1"),
            (0, "set", b"cache:1"),
            (0, "evicted", b"cache:x"),
            (2, "expired", b"cache:7"),
            (3, "expired", b"cache:7"),
            (0, "del", b"cache:7"),
            (0, "del", b"session"),
        ];
        for (db, event, key) in cases {
            assert_eq!(
                matched(&mut set, *db, event, key),
                reference(&selectors, *db, event, key),
                "{db} {event} {key:?}"
            );
        }
        assert_eq!(matched(&mut set, 1, "set", b"cache:1"), [0, 1, 2, 3]);
    }
}
