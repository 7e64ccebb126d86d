//! Secret values known to the process, redacted from every message we write.
//!
//! Three kinds of value are registered while the config loads:
//! - every value of a secret setting ([`Secret`]: passwords, tokens, HMAC
//!   keys, routing keys, passphrases), whatever its length;
//! - the secret parts of URLs written in the config: a target's password
//!   (`redis://user:PASSWORD@host`), and a webhook's path and query, where
//!   Slack, Teams and most chat hooks carry their token;
//! - every `${VAR}` read from the environment, from 4 characters on.
//!
//! The log writer ([`crate::logging`]) passes every event through
//! [`redact_bytes`], whatever code emitted it; error messages, API output and
//! stored rows pass through [`redact`] where they are made.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};

static REDACTOR: RwLock<Option<Arc<Redactor>>> = RwLock::new(None);

/// A value from the environment shorter than this is not registered: in a
/// setting that is not a secret it is a port, a database number or `dev`,
/// and hiding it would blank every such number of every log line. A secret
/// setting's value is registered whatever its length.
const MIN_ENV_VALUE_LEN: usize = 4;

/// A secret shorter than this is hidden only where it stands apart from
/// letters and digits (`pass=ab&`, `'ab'`, `:ab@`), not inside a longer
/// word: a 3-letter SMTP user `ops` must not turn every `redops` into
/// `red***`, and a word that merely contains it tells nothing of it.
const SHORT_SECRET_LEN: usize = 4;

/// What replaces a secret.
const MASK: &[u8] = b"***";

/// Every registered value, in each form it may be written in, and one
/// automaton that finds them all in one pass over a message.
struct Redactor {
    values: Vec<Vec<u8>>,
    /// Per value: hidden wherever found, or only where it stands apart.
    everywhere: Vec<bool>,
    matcher: AhoCorasick,
}

/// Registers a value read from the environment (`${VAR}`), unless it is too
/// short to tell from ordinary text (see [`MIN_ENV_VALUE_LEN`]).
pub fn register(value: &str) {
    if value.len() >= MIN_ENV_VALUE_LEN {
        register_secret(value);
    }
}

/// Registers a value known to be secret, whatever its length.
pub fn register_secret(value: &str) {
    add(value, value.len() >= SHORT_SECRET_LEN);
}

/// Registers a part of a URL (a webhook's path or query): hidden where it
/// stands apart, as it does in any URL, but not inside a longer word, so
/// that a plain path such as `/hook` leaves `http://hookserver` alone.
fn register_url_part(value: &str) {
    add(value, false);
}

fn add(value: &str, everywhere: bool) {
    // An unresolved `${VAR}` (the variable is unset, which check reports)
    // names where the secret should come from; it is not one.
    let unresolved = value.starts_with("${") && value.ends_with('}');
    if value.is_empty() || unresolved {
        return;
    }
    let mut current = REDACTOR.write().unwrap_or_else(|e| e.into_inner());
    let (mut values, mut hiding) = current
        .as_ref()
        .map(|r| (r.values.clone(), r.everywhere.clone()))
        .unwrap_or_default();
    let mut changed = false;
    for form in written_forms(value) {
        match values.iter().position(|v| *v == form) {
            // A value registered twice is hidden the stricter way.
            Some(i) if everywhere && !hiding[i] => hiding[i] = true,
            Some(_) => continue,
            None => {
                values.push(form);
                hiding.push(everywhere);
            }
        }
        changed = true;
    }
    if !changed {
        return;
    }
    // Overlapping matches are all reported, so that one secret inside or
    // across another is hidden whole (see `redact_bytes`).
    let matcher = AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .build(&values)
        // Fails only past millions of patterns; a config holds dozens.
        .expect("the secrets of a config fit in one automaton");
    *current = Some(Arc::new(Redactor {
        values,
        everywhere: hiding,
        matcher,
    }));
}

/// The value as it is written raw, in a `Debug` field (`"a\"b"` → `a\"b`)
/// and in JSON: a secret holding a quote or a backslash is written escaped
/// by the log formatter and by the API, and must be found there too.
fn written_forms(value: &str) -> Vec<Vec<u8>> {
    let unquote = |quoted: String| quoted[1..quoted.len() - 1].to_owned();
    let mut forms = vec![value.to_owned(), unquote(format!("{value:?}"))];
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(unquote(json));
    }
    forms.sort();
    forms.dedup();
    forms.into_iter().map(String::into_bytes).collect()
}

/// Registers the password of a target's URL as written in the config
/// (`redis://user:PASSWORD@host`, or `?pass=` of a unix socket URL), both as
/// written and percent-decoded.
pub fn register_url_password(url: &str) {
    if let Some(written) = userinfo_password(url) {
        register_secret(written);
        if let Some(decoded) = percent_decode(written) {
            register_secret(&decoded);
        }
    }
    if let Ok(parsed) = reqwest::Url::parse(url) {
        if let Some(password) = parsed.password() {
            register_secret(password);
        }
        for (key, value) in parsed.query_pairs() {
            if key == "pass" || key == "password" {
                register_secret(&value);
            }
        }
    }
}

/// Registers the secret parts of a webhook URL written in the config: its
/// password, and its path and query (whole, and each alone), where chat
/// hooks carry their token: `https://hooks.slack.com/services/T0/B0/TOKEN`.
pub fn register_webhook_url(url: &str) {
    register_url_password(url);
    let Some((_, rest)) = url.split_once("://") else {
        return;
    };
    let Some(start) = rest.find(['/', '?', '#']) else {
        return;
    };
    let tail = &rest[start..];
    let path_and_query = tail.split('#').next().unwrap_or_default();
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let mut parts = vec![
        tail.to_owned(),
        path_and_query.to_owned(),
        path.to_owned(),
        query.to_owned(),
    ];
    // The client sends the URL normalised (percent-encoded), which is how a
    // dependency would print it.
    if let Ok(parsed) = reqwest::Url::parse(url) {
        parts.push(parsed.path().to_owned());
        parts.extend(parsed.query().map(str::to_owned));
    }
    for part in parts {
        // The bare root says nothing; anything more may be the token.
        if !part.is_empty() && part != "/" {
            register_url_part(&part);
        }
    }
}

/// `PASSWORD` of `scheme://user:PASSWORD@host/...`, as written.
fn userinfo_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _host) = authority.rsplit_once('@')?;
    let (_user, password) = userinfo.split_once(':')?;
    Some(password).filter(|p| !p.is_empty())
}

/// `%40` → `@`; `None` when nothing is encoded or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `text` with every registered secret replaced by `***`.
pub fn redact(text: &str) -> String {
    match redact_bytes(text.as_bytes()) {
        Cow::Borrowed(_) => text.to_owned(),
        // A whole UTF-8 value found in UTF-8 text starts and ends on
        // character boundaries, so the result is UTF-8 too.
        Cow::Owned(bytes) => {
            String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        }
    }
}

/// `text` with every registered secret replaced by `***`; borrowed when
/// there is none. Secrets that overlap are hidden as one span, so no part of
/// either shows.
pub fn redact_bytes(text: &[u8]) -> Cow<'_, [u8]> {
    let redactor = {
        let current = REDACTOR.read().unwrap_or_else(|e| e.into_inner());
        match current.as_ref() {
            Some(r) => Arc::clone(r),
            None => return Cow::Borrowed(text),
        }
    };
    let mut hidden: Vec<Range<usize>> = redactor
        .matcher
        .find_overlapping_iter(text)
        .filter(|m| {
            let i = m.pattern().as_usize();
            redactor.everywhere[i] || stands_apart(&redactor.values[i], text, m.range())
        })
        .map(|m| m.range())
        .collect();
    if hidden.is_empty() {
        return Cow::Borrowed(text);
    }
    hidden.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut out = Vec::with_capacity(text.len());
    let mut written = 0;
    let mut spans = hidden.into_iter().peekable();
    while let Some(span) = spans.next() {
        let mut end = span.end;
        while let Some(next) = spans.next_if(|n| n.start < end) {
            end = end.max(next.end);
        }
        out.extend_from_slice(&text[written..span.start]);
        out.extend_from_slice(MASK);
        written = end;
    }
    out.extend_from_slice(&text[written..]);
    Cow::Owned(out)
}

/// Whether `secret` found at `at` is not glued to a letter, digit or `_` on
/// a side where it starts or ends with one itself (as regex's `\b`).
fn stands_apart(secret: &[u8], text: &[u8], at: Range<usize>) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let glued_before = at.start > 0 && word(secret[0]) && word(text[at.start - 1]);
    let glued_after = at.end < text.len() && word(secret[secret.len() - 1]) && word(text[at.end]);
    !glued_before && !glued_after
}

/// A string that never prints its value. Deserializing one registers it
/// for redaction, whatever its length, so a password written literally in
/// a file is as safe in logs as one read from the environment.
///
/// Two secrets compare equal when their values do: a reload compares config
/// sections with `==`, so that a rotated password is seen, where their
/// `Debug` text (`Secret(***)`) never differs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register_secret(&value);
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// For `#[serde(deserialize_with)]` on a target's `url`: registers its
/// password.
pub fn redis_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = <String as serde::Deserialize>::deserialize(d)?;
    register_url_password(&url);
    Ok(url)
}

/// For `#[serde(deserialize_with)]` on a webhook's `url`: registers its
/// password, path and query.
pub fn webhook_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = <String as serde::Deserialize>::deserialize(d)?;
    register_webhook_url(&url);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry is process-wide: each test uses values no other test
    // registers, so that they run in parallel.

    #[test]
    fn registered_values_are_redacted() {
        register("hunter2-very-secret");
        assert_eq!(redact("auth failed for hunter2-very-secret!"), "auth failed for ***!");
        assert_eq!(format!("{:?}", Secret::new("s3cr3t-value")), "Secret(***)");
    }

    #[test]
    fn a_short_environment_value_is_not_a_secret_but_a_short_secret_is() {
        register("7f3");
        assert_eq!(redact("port 7f3"), "port 7f3");
        let _ = Secret::new("Qz");
        assert_eq!(redact("AUTH 'Qz' refused"), "AUTH '***' refused");
        assert_eq!(redact("redis://:Qz@host"), "redis://:***@host");
        assert_eq!(redact("Qz"), "***");
        // Inside a longer word it is not the secret that shows.
        assert_eq!(redact("the QzQ and aQz"), "the QzQ and aQz");
        let _ = Secret::new("¤");
        assert_eq!(redact("a¤b"), "a***b", "no letter or digit in it: hidden everywhere");
    }

    #[test]
    fn a_secret_is_found_escaped_as_debug_and_json_write_it() {
        let _ = Secret::new(r#"pa"ss\word-11"#);
        assert_eq!(redact(r#"password="pa\"ss\\word-11""#), r#"password="***""#);
        assert_eq!(redact(r#"pa"ss\word-11"#), "***");
    }

    #[test]
    fn overlapping_secrets_are_hidden_whole() {
        let _ = Secret::new("abcd-1234-efgh");
        let _ = Secret::new("efgh-5678");
        assert_eq!(redact("x abcd-1234-efgh-5678 y"), "x *** y");
        assert_eq!(redact_bytes(b"nothing here"), Cow::Borrowed(b"nothing here".as_slice()));
    }

    #[test]
    fn a_target_url_password_is_a_secret_as_written_and_decoded() {
        let url = "redis://ops:p%40ss-url-29@127.0.0.1:6379/0";
        assert_eq!(redis_url(serde_json::Value::from(url)).unwrap(), url);
        assert_eq!(redact(url), "redis://ops:***@127.0.0.1:6379/0");
        assert_eq!(redact("AUTH p@ss-url-29"), "AUTH ***");
        register_url_password("redis+unix:///run/redis.sock?db=1&pass=sock-pass-31");
        assert_eq!(redact("sent sock-pass-31"), "sent ***");
        // The user name and the database are not secrets.
        assert_eq!(redact("user ops db 0"), "user ops db 0");
    }

    #[test]
    fn a_webhook_url_path_and_query_are_secrets() {
        register_webhook_url("https://hooks.example.com/services/T01/B02/tok3n-77?key=q-88#frag");
        assert_eq!(
            redact("POST https://hooks.example.com/services/T01/B02/tok3n-77?key=q-88"),
            "POST https://hooks.example.com***"
        );
        assert_eq!(redact("path /services/T01/B02/tok3n-77 only"), "path *** only");
        assert_eq!(redact("query key=q-88 only"), "query *** only");
        // A plain path is hidden in a URL, not inside a longer word.
        register_webhook_url("http://127.0.0.1:9/hoo");
        assert_eq!(
            redact("POST http://127.0.0.1:9/hoo failed"),
            "POST http://127.0.0.1:9*** failed"
        );
        assert_eq!(redact("http://hoouser@host/hoo?x"), "http://hoouser@host***?x");
        // A bare host has nothing secret.
        register_webhook_url("https://plain.example.com/");
        assert_eq!(redact("https://plain.example.com/"), "https://plain.example.com/");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b%2Fc").as_deref(), Some("a@b/c"));
        assert_eq!(percent_decode("plain"), None);
        assert_eq!(percent_decode("bad%zz%4").as_deref(), Some("bad%zz%4"));
        assert_eq!(userinfo_password("redis://:pw@h/0"), Some("pw"));
        assert_eq!(userinfo_password("redis://user@h/0"), None);
        assert_eq!(userinfo_password("redis://h/0?x=a@b"), None);
    }
}
