//! Redis-style glob patterns (`*`, `?`, `[abc]`, `[^a-z]`, `\x`) over bytes,
//! as used by `keys = "cache:*"` in keyspace rules.
//!
//! Matching runs on the keyspace reader's hot path, so the common shapes
//! (`*`, `prefix*`, exact) are recognised at compile time and never walk
//! the general matcher.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Glob {
    Any,
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    General(Vec<u8>),
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let p = pattern.as_bytes();
        let special = |b: &u8| matches!(b, b'*' | b'?' | b'[' | b'\\');
        if p == b"*" {
            Glob::Any
        } else if !p.iter().any(special) {
            Glob::Exact(p.to_vec())
        } else if p.last() == Some(&b'*') && !p[..p.len() - 1].iter().any(special) {
            Glob::Prefix(p[..p.len() - 1].to_vec())
        } else {
            Glob::General(p.to_vec())
        }
    }

    pub fn matches(&self, s: &[u8]) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(e) => e == s,
            Glob::Prefix(p) => s.starts_with(p),
            Glob::General(p) => glob_match(p, s),
        }
    }
}

/// Iterative matcher with single-star backtracking: linear in practice and
/// never recursive, so a hostile pattern or key cannot blow the stack.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(p, pi, s[si]) {
                        if matched {
                            pi = next;
                            si += 1;
                            continue;
                        }
                    } else if s[si] == b'[' {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == s[si] {
                        pi += 2;
                        si += 1;
                        continue;
                    }
                }
                c => {
                    if c == s[si] {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches `c` against the class starting at `p[start] == b'['`. Returns
/// whether it matched and the index after the class, or `None` when the
/// class is never closed (then `[` is literal).
fn class_match(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (p[i] != b']' || first) {
        first = false;
        let lo = if p[i] == b'\\' && i + 1 < p.len() {
            i += 1;
            p[i]
        } else {
            p[i]
        };
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            let hi = p[i + 2];
            let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            matched |= (a..=b).contains(&c);
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    if i >= p.len() {
        return None;
    }
    Some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).matches(s.as_bytes())
    }

    #[test]
    fn matches_like_redis() {
        assert!(m("*", ""));
        assert!(m("cache:*", "cache:user:1"));
        assert!(!m("cache:*", "session:1"));
        assert!(m("h?llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-c]llo", "hbllo"));
        assert!(m("*:user:*", "cache:user:9"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
        assert!(m("[unclosed", "[unclosed"));
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        let key = "a".repeat(10_000);
        assert!(!m(&"*a".repeat(50).replace("*a*a", "*a*b"), &key));
    }
}
