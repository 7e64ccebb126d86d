//! Which keyspace events a keyspace rule counts, and those selectors
//! compiled for the keyspace reader's hot path. The rules build them when
//! they load; the keyspace source matches events with them. Neither imports
//! the other: they meet here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use regex_automata::hybrid::LazyStateID;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};
use rustc_hash::FxHashMap;

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
/// name is a binary search among the few names rules give, and a key is
/// read once, a table lookup a byte, whatever the number of rules (their
/// globs, deduplicated, form one lazy DFA). Trying 100 globs one by one
/// cost 2.5 µs an event, a regex set 0.39 µs; see BENCHMARKS.md. Matching
/// allocates nothing once the DFA has built the states the keys visit.
///
/// Counts are kept by where a key's walk ends, one increment an event
/// however many selectors match there, and added to the selectors that
/// match there when [`SelectorSet::flush`] asks for them: in the storm of
/// BENCHMARKS.md a key matches 17 of 100 selectors.
#[derive(Debug)]
pub struct SelectorSet {
    dbs: Vec<Option<u32>>,
    /// A matcher per event name some selector names (sorted by name):
    /// those selectors plus the ones that take every event.
    by_event: Vec<(Box<[u8]>, KeyMatcher)>,
    /// The selectors that take every event, for events nobody names.
    any_event: KeyMatcher,
    /// The matcher and database of the counts not yet flushed.
    pending: Option<(MatcherId, u32)>,
}

/// One of a [`SelectorSet`]'s matchers: an event's, or the one for events
/// no selector names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatcherId(usize);

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
            pending: None,
        }
    }

    /// Which of the set's matchers serves `event`: found once for a
    /// channel, then used for each of its keys.
    pub fn matcher_for(&self, event: &[u8]) -> MatcherId {
        MatcherId(
            self.by_event
                .binary_search_by(|(name, _)| (**name).cmp(event))
                .unwrap_or(self.by_event.len()),
        )
    }

    /// Counts `key`, an event of matcher `id` in database `db`, for every
    /// selector that matches it: into `counts` (one per selector, in the
    /// order given to [`Self::new`]) by the next [`Self::flush`] at the
    /// latest. Events of another matcher or database flush first.
    pub fn count(&mut self, id: MatcherId, db: u32, key: &[u8], counts: &mut [u64]) {
        if self.pending != Some((id, db)) {
            self.flush(counts);
            self.pending = Some((id, db));
        }
        let (matcher, dbs) = self.matcher(id);
        matcher.count(key, &mut |selectors, n| add(selectors, n, db, dbs, counts));
    }

    /// Adds what was counted since the last flush to `counts`.
    pub fn flush(&mut self, counts: &mut [u64]) {
        if let Some((id, db)) = self.pending.take() {
            let (matcher, dbs) = self.matcher(id);
            matcher.drain(&mut |selectors, n| add(selectors, n, db, dbs, counts));
        }
    }

    fn matcher(&mut self, id: MatcherId) -> (&mut KeyMatcher, &[Option<u32>]) {
        let matcher = match self.by_event.get_mut(id.0) {
            Some((_, matcher)) => matcher,
            None => &mut self.any_event,
        };
        (matcher, &self.dbs)
    }
}

/// Adds `n` to the count of each of `selectors` that takes database `db`.
fn add(selectors: &[u32], n: u64, db: u32, dbs: &[Option<u32>], counts: &mut [u64]) {
    for &i in selectors {
        let i = i as usize;
        if dbs[i].is_none_or(|d| d == db) {
            counts[i] += n;
        }
    }
}

/// Where counts go when they leave a matcher: a list of selectors and
/// how many events each of them matched.
type Spill<'a> = dyn FnMut(&[u32], u64) + 'a;

/// The key side of a [`SelectorSet`] for one event.
#[derive(Debug, Default)]
struct KeyMatcher {
    /// Selectors whose glob is `*`: they need no scan.
    always: Box<[u32]>,
    /// Events counted for `always` since the last drain.
    always_pending: u64,
    globs: GlobSet,
    /// For each distinct glob of `globs`, the selectors that use it.
    users: Vec<Vec<u32>>,
}

#[derive(Debug, Default)]
enum GlobSet {
    #[default]
    Empty,
    /// The globs as one anchored lazy DFA, walked a byte at a time: the
    /// state after the key's last byte lists every glob that matches it,
    /// so a key costs one table lookup a byte whatever the number of globs.
    Dfa(Box<KeyDfa>),
    /// When the set is too large to compile: each glob in turn, still right.
    EachOf(Vec<Glob>),
}

/// A lazy DFA and its cache of built states, reused from key to key: it
/// allocates only while it meets states it has not built yet, and within
/// `DFA_CACHE` bytes (past that it starts over, still right).
#[derive(Debug)]
struct KeyDfa {
    dfa: DFA,
    cache: Cache,
    start: LazyStateID,
    /// The cache's clear count when `start` was read: a clear gives state
    /// ids to other states.
    start_seen: usize,
    /// The same globs, for the case the DFA gives up on a key.
    globs: Vec<Glob>,
    /// The state after the last byte of each key met so far, by id: its
    /// place in `ends`. Keyed by a number: Fx, not SipHash.
    end_index: FxHashMap<LazyStateID, u32>,
    /// The end states met so far: where their selectors are in
    /// `selectors` and how many keys ended there since the last drain.
    ends: Vec<EndState>,
    /// The selectors that match at each end state, one list after the
    /// other: reading the globs out of a lazy state costs more than the
    /// walk, and a drain reads hundreds of lists, near each other here.
    selectors: Vec<u32>,
    /// The places in `ends` with keys pending.
    touched: Vec<u32>,
    /// The cache's clear count when `end_index` was valid.
    ends_seen: usize,
    /// The first bytes of the last key walked, and the state after each of
    /// them (`path[i]` after `i` bytes; `path[0]` is the start): keys share
    /// prefixes (`session:`, `user:42:`), and a key resumes its walk where
    /// it parts from the last one.
    path_key: Vec<u8>,
    path: Vec<LazyStateID>,
    /// The cache's clear count when `path` was valid.
    path_seen: usize,
}

#[derive(Debug)]
struct EndState {
    /// Its selectors: `selectors[start..end]`.
    start: u32,
    end: u32,
    pending: u64,
}

impl KeyDfa {
    fn new(globs: Vec<Glob>) -> Result<Self, String> {
        Self::with_cache(globs, DFA_CACHE)
    }

    /// With `capacity` bytes of state cache; below what one search needs
    /// the cache is cleared more often, never a reason to fail.
    fn with_cache(globs: Vec<Glob>, capacity: usize) -> Result<Self, String> {
        let regexes: Vec<String> = globs.iter().map(glob_regex).collect();
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .cache_capacity(capacity)
                    .skip_cache_capacity_check(true),
            )
            .syntax(syntax::Config::new().utf8(false))
            .thompson(
                thompson::Config::new()
                    .utf8(false)
                    .nfa_size_limit(Some(10 * (1 << 20)))
                    .which_captures(WhichCaptures::None),
            )
            .build_many(&regexes)
            .map_err(|e| e.to_string())?;
        let mut cache = dfa.create_cache();
        // A start state that cannot be built fails here, not per key.
        let start = dfa.start_state(&mut cache, &anchored()).map_err(|e| e.to_string())?;
        Ok(KeyDfa {
            dfa,
            start_seen: cache.clear_count(),
            ends_seen: cache.clear_count(),
            path_seen: cache.clear_count(),
            cache,
            start,
            globs,
            end_index: FxHashMap::default(),
            ends: Vec::new(),
            selectors: Vec::new(),
            touched: Vec::new(),
            path_key: Vec::new(),
            path: Vec::new(),
        })
    }

    /// Counts `key` at its end state, for the selectors in `users` of
    /// every glob that matches it. `spill` takes the pending counts when
    /// the end states' ids are about to be forgotten.
    fn count(&mut self, key: &[u8], users: &[Vec<u32>], spill: &mut Spill<'_>) {
        let end = match self.walk(key) {
            Ok(Some(last)) => self.end_state(last, users, spill),
            Ok(None) => return,
            Err(()) => Err(()),
        };
        match end {
            Ok(i) => {
                let end = &mut self.ends[i];
                if end.pending == 0 {
                    if end.start == end.end {
                        return;
                    }
                    self.touched.push(i as u32);
                }
                end.pending += 1;
            }
            // Unreachable as configured (a full cache is cleared, never a
            // reason to give up); were it not, one by one is still right.
            Err(()) => {
                for (g, glob) in self.globs.iter().enumerate() {
                    if glob.matches(key) {
                        spill(&users[g], 1);
                    }
                }
            }
        }
    }

    /// Hands every pending count to `spill`.
    fn drain(&mut self, spill: &mut Spill<'_>) {
        for i in self.touched.drain(..) {
            let end = &mut self.ends[i as usize];
            spill(&self.selectors[end.start as usize..end.end as usize], end.pending);
            end.pending = 0;
        }
    }

    /// The place in `ends` of the key that left the walk at `last`, added
    /// when new. Err when the DFA gives up (unreachable as configured).
    fn end_state(&mut self, last: LazyStateID, users: &[Vec<u32>], spill: &mut Spill<'_>) -> Result<usize, ()> {
        // A clear during the last walk may have given `last`'s id to a
        // state remembered before it (the next walk re-reads the start);
        // past the cap, start over. Either way what the old states
        // counted goes out first.
        if self.cache.clear_count() != self.ends_seen
            || self.end_index.len() >= MAX_MATCH_STATES
            || self.selectors.len() >= MAX_MATCH_LISTS
        {
            self.drain(spill);
            self.end_index.clear();
            self.ends.clear();
            self.selectors.clear();
            self.ends_seen = self.cache.clear_count();
        }
        if let Some(&i) = self.end_index.get(&last) {
            return Ok(i as usize);
        }
        let KeyDfa {
            dfa, cache, selectors, ..
        } = self;
        // Matches show one transition late: the end of the key is one
        // more. Remembered by the state before it, so a known key does not
        // read that transition (another line of the table, often cold).
        let end = dfa.next_eoi_state(cache, last).map_err(drop)?;
        let start = selectors.len() as u32;
        if end.is_match() {
            for m in 0..dfa.match_len(cache, end) {
                selectors.extend(&users[dfa.match_pattern(cache, end, m).as_usize()]);
            }
        }
        let end = selectors.len() as u32;
        self.ends.push(EndState { start, end, pending: 0 });
        let i = self.ends.len() - 1;
        // Were the cache cleared in that transition, `last`'s id would be
        // another state's now: the next call sees the clear and starts the
        // memo over before reading it.
        self.end_index.insert(last, i as u32);
        Ok(i)
    }

    /// Re-reads the start after a clear of the cache gave its id away.
    fn sync_start(&mut self) -> Result<(), ()> {
        while self.cache.clear_count() != self.start_seen {
            self.start_seen = self.cache.clear_count();
            self.start = self.dfa.start_state(&mut self.cache, &anchored()).map_err(drop)?;
        }
        Ok(())
    }

    /// The state after the last byte of `key`, unless the key can match
    /// nothing. Err when the DFA gives up (unreachable as configured).
    fn walk(&mut self, key: &[u8]) -> Result<Option<LazyStateID>, ()> {
        self.sync_start()?;
        let KeyDfa {
            dfa,
            cache,
            start,
            path_key,
            path,
            path_seen,
            ..
        } = self;
        // A clear, during the last walk or since, gave the path's ids to
        // other states.
        if cache.clear_count() != *path_seen || path.is_empty() {
            path.clear();
            path_key.clear();
            path.push(*start);
            *path_seen = cache.clear_count();
        }
        let shared = path_key.iter().zip(key).take_while(|(a, b)| a == b).count();
        path.truncate(shared + 1);
        path_key.truncate(shared);
        let mut sid = path[shared];
        for &b in &key[shared..] {
            sid = dfa.next_state(cache, sid, b).map_err(drop)?;
            if sid.is_dead() {
                return Ok(None);
            }
            if path_key.len() < MAX_PATH {
                path.push(sid);
                path_key.push(b);
            }
        }
        Ok(Some(sid))
    }
}

/// Keys match from their first byte.
fn anchored() -> start::Config {
    start::Config::new().anchored(Anchored::Yes)
}

/// At most this many end states are remembered; past it the memo starts
/// over (still right, briefly slower).
const MAX_MATCH_STATES: usize = 4096;

/// At most this many selectors are listed for the end states remembered;
/// past it the memo starts over.
const MAX_MATCH_LISTS: usize = 1 << 20;

/// A walk is remembered for this many bytes of its key at most.
const MAX_PATH: usize = 256;

/// Room for the keyspace globs' lazy DFA states, per event name.
const DFA_CACHE: usize = 2 * (1 << 20);

impl KeyMatcher {
    fn new<'a>(selectors: impl IntoIterator<Item = (usize, &'a Glob)>) -> Self {
        let mut always = Vec::new();
        let mut distinct: Vec<(&Glob, Vec<u32>)> = Vec::new();
        for (i, glob) in selectors {
            let i = u32::try_from(i).expect("fewer than 2^32 selectors");
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
            match KeyDfa::new(distinct.iter().map(|(g, _)| (*g).clone()).collect()) {
                Ok(dfa) => GlobSet::Dfa(Box::new(dfa)),
                Err(e) => {
                    tracing::warn!(error = %e, "Keyspace globs too large to compile together; matching them one by one");
                    GlobSet::EachOf(distinct.iter().map(|(g, _)| (*g).clone()).collect())
                }
            }
        };
        KeyMatcher {
            always: always.into(),
            always_pending: 0,
            globs,
            users: distinct.into_iter().map(|(_, users)| users).collect(),
        }
    }

    fn count(&mut self, key: &[u8], spill: &mut Spill<'_>) {
        self.always_pending += 1;
        match &mut self.globs {
            GlobSet::Empty => {}
            GlobSet::Dfa(dfa) => dfa.count(key, &self.users, spill),
            GlobSet::EachOf(globs) => {
                for (g, glob) in globs.iter().enumerate() {
                    if glob.matches(key) {
                        spill(&self.users[g], 1);
                    }
                }
            }
        }
    }

    fn drain(&mut self, spill: &mut Spill<'_>) {
        if self.always_pending > 0 && !self.always.is_empty() {
            spill(&self.always, self.always_pending);
        }
        self.always_pending = 0;
        if let GlobSet::Dfa(dfa) = &mut self.globs {
            dfa.drain(spill);
        }
    }
}

/// The regex (over bytes, anchored) that accepts exactly the keys `glob`
/// accepts, following the matcher in `crate::glob` case by case: `\x` is a
/// literal `x` (a trailing `\` is itself), a `[` that is never closed is a
/// literal, and a class's members are computed here byte by byte, so the
/// regex never interprets class syntax of its own.
pub fn glob_regex(glob: &Glob) -> String {
    let mut re = String::from(r"(?s-u)\A");
    match glob {
        Glob::Any => re.push_str(r".*\z"),
        Glob::Exact(e) => {
            e.iter().for_each(|&b| push_byte(&mut re, b));
            re.push_str(r"\z");
        }
        Glob::Prefix(p) => {
            p.iter().for_each(|&b| push_byte(&mut re, b));
            // Anchored at the end too: only the state after the whole key is read.
            re.push_str(r".*\z");
        }
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

    /// The selectors that count `key`, counted alone.
    fn matched(set: &mut SelectorSet, db: u32, event: &str, key: &[u8]) -> Vec<usize> {
        let mut counts = vec![0; set.dbs.len()];
        set.count(set.matcher_for(event.as_bytes()), db, key, &mut counts);
        set.flush(&mut counts);
        assert!(counts.iter().all(|&c| c <= 1), "{counts:?}");
        (0..counts.len()).filter(|&i| counts[i] == 1).collect()
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

    /// Glob and key bytes that exercise every glob feature, plus bytes
    /// (newline, 0xFF) a regex could treat specially.
    fn glob_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex(r"[ab:*?\[\]^\\-]{0,8}").unwrap()
    }

    fn key_strategy() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(b"ab:[]^-\\*?\n\xff".to_vec()), 0..10)
    }

    proptest::proptest! {
        /// The lazy DFA must never miss nor invent a match: for any set of
        /// globs and any keys, it agrees with matching each glob alone.
        #[test]
        fn the_dfa_agrees_with_each_glob_alone(
            globs in proptest::collection::vec(glob_strategy(), 1..30),
            keys in proptest::collection::vec(key_strategy(), 1..40),
        ) {
            let selectors: Vec<KeyspaceSelector> = globs.iter().map(|g| selector(&["set"], g, None)).collect();
            let mut set = SelectorSet::new(&selectors);
            for key in &keys {
                proptest::prop_assert_eq!(
                    matched(&mut set, 0, "set", key),
                    reference(&selectors, 0, "set", key),
                    "key {:?} against {:?}", String::from_utf8_lossy(key), globs
                );
            }
        }
    }

    fn clearing_globs() -> Vec<Glob> {
        let mut globs = Vec::new();
        for d in 0..10 {
            globs.push(format!("key:{d}*"));
            globs.push(format!("key:*{d}"));
            globs.push(format!("key:[0-{d}]*{d}"));
            globs.push(format!("key:?{d}*"));
        }
        globs.iter().map(|g| Glob::new(g)).collect()
    }

    fn clearing_keys() -> impl Iterator<Item = Vec<u8>> {
        (0..5_000u64).map(|i| format!("key:{:08}", (i * 2_654_435_761) % 100_000_000).into_bytes())
    }

    /// A DFA that clears its cache after nearly every state; each glob is
    /// its own selector.
    fn clearing_dfa(globs: &[Glob]) -> (KeyDfa, Vec<Vec<u32>>) {
        let dfa = KeyDfa::with_cache(globs.to_vec(), 0).unwrap();
        (dfa, (0..globs.len() as u32).map(|g| vec![g]).collect())
    }

    /// A cache cleared again and again gives lazy state ids to new states:
    /// the remembered matches of the old ids must go with them.
    #[test]
    fn remembered_matches_survive_cache_clears() {
        let globs = clearing_globs();
        let (mut dfa, users) = clearing_dfa(&globs);
        for key in clearing_keys() {
            let mut got = vec![0; globs.len()];
            let mut spill = |selectors: &[u32], n: u64| selectors.iter().for_each(|&g| got[g as usize] += n);
            dfa.count(&key, &users, &mut spill);
            dfa.drain(&mut spill);
            let want: Vec<u64> = globs.iter().map(|g| u64::from(g.matches(&key))).collect();
            assert_eq!(got, want, "key {}", String::from_utf8_lossy(&key));
        }
        assert!(
            dfa.cache.clear_count() > 10,
            "the cache was cleared {} times",
            dfa.cache.clear_count()
        );
    }

    /// Counts waiting at end states when the cache clears go out before
    /// their ids are reused: nothing is lost or counted twice.
    #[test]
    fn pending_counts_survive_cache_clears() {
        let globs = clearing_globs();
        let (mut dfa, users) = clearing_dfa(&globs);
        let mut got = vec![0; globs.len()];
        let mut want = vec![0; globs.len()];
        let mut spill = |selectors: &[u32], n: u64| selectors.iter().for_each(|&g| got[g as usize] += n);
        for key in clearing_keys() {
            dfa.count(&key, &users, &mut spill);
            for (g, glob) in globs.iter().enumerate() {
                want[g] += u64::from(glob.matches(&key));
            }
        }
        dfa.drain(&mut spill);
        assert_eq!(got, want);
        assert!(
            dfa.cache.clear_count() > 10,
            "cleared {} times",
            dfa.cache.clear_count()
        );
        assert!(want.iter().all(|&n| n > 0), "every glob matched some key: {want:?}");
    }

    /// A key resumes the last key's walk where they part: keys that are
    /// prefixes of each other, that die early, and that are longer than
    /// the walk remembers, in turn.
    #[test]
    fn keys_sharing_prefixes_match_as_alone() {
        let long = "a".repeat(MAX_PATH + 40);
        let globs = ["a*b", "a*", "ab", "*x", &format!("{long}*"), "?"];
        let selectors: Vec<KeyspaceSelector> = globs.iter().map(|g| selector(&[], g, None)).collect();
        let mut set = SelectorSet::new(&selectors);
        let keys = [
            "ab".to_owned(),
            "a".to_owned(),
            "abx".to_owned(),
            "b".to_owned(),
            "bx".to_owned(),
            "".to_owned(),
            format!("{long}b"),
            format!("{long}x"),
            format!("{}b", &long[..MAX_PATH - 1]),
            long.clone(),
            format!("{}x{}", &long[..MAX_PATH + 5], &long[..3]),
            "ab".to_owned(),
        ];
        for key in keys.iter().chain(keys.iter().rev()) {
            assert_eq!(
                matched(&mut set, 0, "set", key.as_bytes()),
                reference(&selectors, 0, "set", key.as_bytes()),
                "key of {} bytes ending {:?}",
                key.len(),
                &key[key.len().saturating_sub(5)..]
            );
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

    /// Counted together, events of several channels and databases in
    /// turn add up to what each selector matches alone.
    #[test]
    fn counts_of_interleaved_channels_add_up() {
        let selectors = [
            selector(&["set"], "cache:*", None),
            selector(&["set"], "cache:*", Some(1)),
            selector(&["evicted", "set"], "*", None),
            selector(&[], "cache:[0-9]*", None),
            selector(&["expired"], "*:7", Some(2)),
            selector(&["del"], "session", None),
        ];
        let mut set = SelectorSet::new(&selectors);
        let mut rng = XorShift(7);
        let events = ["set", "evicted", "expired", "del", "rename_from"];
        let keys: [&[u8]; 5] = [b"cache:1", b"cache:x", b"session", b"a:7", b""];
        let mut counts = vec![0; selectors.len()];
        let mut want = vec![0; selectors.len()];
        for round in 0..2_000 {
            let (db, event, key) = (*rng.pick(&[0, 1, 2]), *rng.pick(&events), *rng.pick(&keys));
            // Runs of one channel, as in a storm, and changes between them.
            for _ in 0..round % 4 {
                set.count(set.matcher_for(event.as_bytes()), db, key, &mut counts);
                for i in reference(&selectors, db, event, key) {
                    want[i] += 1;
                }
            }
            if round % 97 == 0 {
                set.flush(&mut counts);
                assert_eq!(counts, want, "after round {round}");
            }
        }
        set.flush(&mut counts);
        assert_eq!(counts, want);
        assert!(want.iter().all(|&n| n > 0), "every selector counted: {want:?}");
    }
}
