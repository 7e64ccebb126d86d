//! Expressions as `redops check` reads them: tokens with their positions,
//! so a warning can point into the file, and the simple comparisons
//! (`metric OP number`) the checks reason about, as intervals.

use std::ops::Range;

use toml::Spanned;

use crate::diagnostics::{Diagnostic, SourceFile};

/// An expression as written in the file, with its tokens.
pub(super) struct Expression<'f> {
    file: &'f SourceFile,
    /// Byte offset in the file of each character of the text, then of the
    /// closing quote.
    offsets: Vec<usize>,
    text: String,
    pub(super) tokens: Vec<Token>,
}

impl<'f> Expression<'f> {
    pub(super) fn read(file: &'f SourceFile, value: &Spanned<String>) -> Self {
        let start = value.span().start;
        let raw = file.text.get(start..).unwrap_or("");
        let offsets = crate::rules::load::literal_offsets(raw, value.get_ref())
            .into_iter()
            .map(|o| start + o)
            .collect();
        Expression {
            file,
            offsets,
            text: value.get_ref().clone(),
            tokens: tokenize(value.get_ref()),
        }
    }

    /// The file span of characters `chars` of the expression.
    pub(super) fn span(&self, chars: &Range<usize>) -> Range<usize> {
        let at = |i: usize| self.offsets.get(i).or(self.offsets.last()).copied().unwrap_or(0);
        at(chars.start)..at(chars.end)
    }

    pub(super) fn slice(&self, chars: &Range<usize>) -> String {
        self.text.chars().skip(chars.start).take(chars.len()).collect()
    }

    pub(super) fn warning(&self, chars: &Range<usize>, message: String) -> Diagnostic {
        Diagnostic::warning(self.file, self.span(chars), message)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident { name: String, call: bool, member: bool },
    Num(f64),
    Str(String),
    Op(&'static str),
    Other(char),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) tok: Tok,
    /// Character positions in the expression.
    pub(super) chars: Range<usize>,
}

const OPERATORS: &[&str] = &[
    "**", ">=", "<=", "==", "!=", "&&", "||", "..", "::", ">", "<", "+", "-", "*", "/", "%", "!", "&", "|",
];
const COMPARISONS: &[&str] = &[">", ">=", "<", "<=", "==", "!="];

pub(super) fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "true"
            | "false"
            | "if"
            | "else"
            | "switch"
            | "do"
            | "while"
            | "until"
            | "loop"
            | "for"
            | "in"
            | "continue"
            | "break"
            | "return"
            | "throw"
            | "try"
            | "catch"
            | "fn"
            | "private"
            | "let"
            | "const"
            | "import"
            | "export"
            | "as"
            | "global"
            | "this"
            | "and"
            | "or"
            | "not"
    )
}

/// Splits Rhai text into the tokens the checks need. Strings keep their
/// contents; comments are dropped; anything else is a one-character token.
pub(super) fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '`' || c == '\'' {
            i += 1;
            let mut value = String::new();
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            i += 1;
            tokens.push(Token {
                tok: Tok::Str(value),
                chars: start..i.min(chars.len()),
            });
        } else if c.is_ascii_digit() {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '_'
                    || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
                    || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let literal: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let tok = literal.parse::<f64>().map_or(Tok::Other('0'), Tok::Num);
            tokens.push(Token { tok, chars: start..i });
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let member = matches!(
                tokens.last(),
                Some(Token {
                    tok: Tok::Other('.'),
                    ..
                })
            );
            // `#{ key: value }`: a map key is not a variable.
            let map_key = next == Some(&':') && chars.get(i + 1) != Some(&':');
            tokens.push(Token {
                tok: Tok::Ident {
                    name,
                    call: next == Some(&'(') || next == Some(&'!'),
                    member: member || map_key,
                },
                chars: start..i,
            });
        } else if let Some(op) = OPERATORS.iter().find(|op| {
            let len = op.chars().count();
            chars.get(i..i + len).is_some_and(|s| s.iter().copied().eq(op.chars()))
        }) {
            i += op.chars().count();
            tokens.push(Token {
                tok: Tok::Op(op),
                chars: start..i,
            });
        } else {
            i += 1;
            tokens.push(Token {
                tok: Tok::Other(c),
                chars: start..i,
            });
        }
    }
    merge_negative_numbers(tokens)
}

/// `x > -5`: a minus where a value is due belongs to the number.
fn merge_negative_numbers(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut iter = tokens.into_iter().peekable();
    while let Some(t) = iter.next() {
        let value_due = matches!(
            out.last(),
            None | Some(Token {
                tok: Tok::Op(_) | Tok::Other('(' | ','),
                ..
            })
        );
        if t.tok == Tok::Op("-")
            && value_due
            && let Some(Token {
                tok: Tok::Num(n),
                chars,
            }) = iter.peek()
        {
            let merged = Token {
                tok: Tok::Num(-n),
                chars: t.chars.start..chars.end,
            };
            iter.next();
            out.push(merged);
            continue;
        }
        out.push(t);
    }
    out
}

/// `metric OP number`, normalised so the metric is on the left.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Comparison {
    pub(super) metric: String,
    pub(super) op: &'static str,
    pub(super) value: f64,
    pub(super) chars: Range<usize>,
}

fn is_arithmetic(t: Option<&Token>) -> bool {
    matches!(
        t,
        Some(Token {
            tok: Tok::Op("+" | "-" | "*" | "/" | "%" | "**") | Tok::Other('.'),
            ..
        })
    )
}

/// Every `metric OP number` (or `number OP metric`) in the tokens that is
/// not part of arithmetic.
pub(super) fn comparisons(tokens: &[Token]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for i in 0..tokens.len().saturating_sub(2) {
        let [a, op, b] = [&tokens[i], &tokens[i + 1], &tokens[i + 2]];
        let Tok::Op(op) = op.tok else { continue };
        if !COMPARISONS.contains(&op) || is_arithmetic(i.checked_sub(1).and_then(|p| tokens.get(p))) {
            continue;
        }
        if is_arithmetic(tokens.get(i + 3))
            || matches!(
                tokens.get(i + 3),
                Some(Token {
                    tok: Tok::Other('('),
                    ..
                })
            )
        {
            continue;
        }
        let chars = a.chars.start..b.chars.end;
        match (&a.tok, &b.tok) {
            (
                Tok::Ident {
                    name,
                    call: false,
                    member: false,
                },
                Tok::Num(v),
            ) => out.push(Comparison {
                metric: name.clone(),
                op,
                value: *v,
                chars,
            }),
            (
                Tok::Num(v),
                Tok::Ident {
                    name,
                    call: false,
                    member: false,
                },
            ) => out.push(Comparison {
                metric: name.clone(),
                op: flip(op),
                value: *v,
                chars,
            }),
            _ => {}
        }
    }
    out
}

fn flip(op: &'static str) -> &'static str {
    match op {
        ">" => "<",
        ">=" => "<=",
        "<" => ">",
        "<=" => ">=",
        other => other,
    }
}

/// The comparisons of an expression made only of `a OP n && b OP m && ...`;
/// `None` for anything else (`||`, parentheses, calls, arithmetic).
pub(super) fn conjunction(tokens: &[Token]) -> Option<Vec<Comparison>> {
    let mut out = Vec::new();
    for part in tokens.split(|t| t.tok == Tok::Op("&&")) {
        let [_, _, _] = part else { return None };
        out.push(comparisons(part).pop()?);
    }
    Some(out)
}

/// The values for which one comparison holds: an interval of the real line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Region {
    low: f64,
    low_closed: bool,
    high: f64,
    high_closed: bool,
}

impl Region {
    pub(super) fn of(op: &str, v: f64) -> Region {
        let (inf, neg) = (f64::INFINITY, f64::NEG_INFINITY);
        let r = |low, low_closed, high, high_closed| Region {
            low,
            low_closed,
            high,
            high_closed,
        };
        match op {
            ">" => r(v, false, inf, false),
            ">=" => r(v, true, inf, false),
            "<" => r(neg, false, v, false),
            "<=" => r(neg, false, v, true),
            "==" => r(v, true, v, true),
            // `!=` holds almost everywhere.
            _ => r(neg, false, inf, false),
        }
    }

    pub(super) fn between(low: f64, high: f64) -> Region {
        Region {
            low,
            low_closed: true,
            high,
            high_closed: true,
        }
    }

    /// `Some(true)` for `x > a`, `Some(false)` for `x < a`.
    pub(super) fn upward(&self) -> Option<bool> {
        match (self.low.is_infinite(), self.high.is_infinite()) {
            (false, true) => Some(true),
            (true, false) => Some(false),
            _ => None,
        }
    }

    pub(super) fn overlaps(&self, other: &Region) -> bool {
        let below = |a: &Region, b: &Region| a.high < b.low || (a.high == b.low && !(a.high_closed && b.low_closed));
        !below(self, other) && !below(other, self)
    }

    pub(super) fn covers(&self, low: f64, high: f64) -> bool {
        (self.low < low || (self.low == low && self.low_closed))
            && (self.high > high || (self.high == high && self.high_closed))
    }
}

pub(super) fn number(v: f64) -> String {
    crate::event::MetricValue::Num(v).to_string()
}
