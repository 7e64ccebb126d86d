//! Span-preserving TOML loading shared by the config and rule files.
//!
//! A file is parsed once into a spanned tree; each section is then
//! deserialized on its own so that one bad rule does not hide the problems of
//! the next, and every serde error keeps the exact span of the offending value.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::secrets;

/// Parses `file` into a spanned table, reporting every syntax error found.
pub fn parse<'f>(file: &'f SourceFile, diags: &mut Diagnostics) -> Option<Spanned<DeTable<'f>>> {
    let (table, errors) = DeTable::parse_recoverable(&file.text);
    if errors.is_empty() {
        return Some(table);
    }
    for err in errors {
        diags.push(toml_error(file, &err, 0..0));
    }
    None
}

/// Deserializes one spanned value, turning a serde error into a located
/// diagnostic. `None` means a diagnostic was pushed.
pub fn deserialize<T: DeserializeOwned>(
    file: &SourceFile,
    value: Spanned<DeValue<'_>>,
    diags: &mut Diagnostics,
) -> Option<T> {
    let span = value.span();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(err) => {
            diags.push(toml_error(file, &err, span));
            None
        }
    }
}

fn toml_error(file: &SourceFile, err: &toml::de::Error, fallback: Range<usize>) -> Diagnostic {
    let span = err.span().unwrap_or(fallback);
    let message = secrets::redact(err.message().trim_end());
    if let Some(d) = plain_syntax_error(file, &message, span.clone()) {
        return d;
    }
    let mut d = Diagnostic::error(file, span, message.clone());
    if let Some(hint) = hint_for(&message) {
        d = d.with_hint(hint);
    }
    d
}

/// The parser describes a few common slips by what it expected rather than by
/// what is wrong ("string values must be quoted" for `key =` with no value);
/// these are reworded, and an unclosed multi-line string is reported where it
/// opens rather than at the end of the file.
fn plain_syntax_error(file: &SourceFile, message: &str, span: Range<usize>) -> Option<Diagnostic> {
    let rest_of_line = file.text.get(span.start..)?.lines().next().unwrap_or("").trim();
    let nothing_follows = rest_of_line.is_empty() || rest_of_line.starts_with('#');
    if message.starts_with("string values must be quoted") && nothing_follows {
        return Some(
            Diagnostic::error(file, span, "missing value after `=`")
                .with_hint("write a value, e.g. a quoted string: key = \"...\""),
        );
    }
    for (kind, quote) in [("basic", "\""), ("literal", "'")] {
        if message.starts_with(&format!("invalid {kind} string")) && nothing_follows {
            return Some(
                Diagnostic::error(file, span, "unclosed string")
                    .with_hint(format!("add the closing {quote} before the end of the line")),
            );
        }
        let delimiter = quote.repeat(3);
        if message.starts_with(&format!("invalid multi-line {kind} string")) && nothing_follows {
            let open = file.text.get(..span.start)?.rfind(&delimiter)?;
            return Some(
                Diagnostic::error(file, open..open + 3, "unclosed multi-line string")
                    .with_hint(format!("it needs a closing {delimiter}")),
            );
        }
    }
    None
}

fn hint_for(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`')?;
        let options: Vec<&str> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| !s.is_empty())
            .collect();
        return Some(match closest(field, &options) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("valid keys here: {}", options.join(", ")),
        });
    }
    None
}

/// The candidate nearest to `word` by edit distance, if it is near enough to
/// be a plausible typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: a swap of two neighbours ("whne" for
/// "when") counts as one edit, as typos usually are.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Replaces `${VAR}` (and `${VAR:-default}`) in every string of the tree with
/// the environment's value. Interpolated values are registered as secrets so
/// they are redacted from every later message. `$${` is a literal `${`.
pub fn interpolate_env(file: &SourceFile, value: &mut Spanned<DeValue<'_>>, diags: &mut Diagnostics) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) if s.contains('$') => match expand(s) {
            Ok(expanded) => *s = expanded.into(),
            Err(var) => diags.push(
                Diagnostic::error(file, span, format!("environment variable `{var}` is not set")).with_hint(format!(
                    "export {var} before starting redops, or write `${{{var}:-default}}`"
                )),
            ),
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate_env(file, item, diags);
            }
        }
        DeValue::Table(table) => {
            for (_, v) in table.iter_mut() {
                interpolate_env(file, v, diags);
            }
        }
        _ => {}
    }
}

fn expand(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                out.push('$');
                rest = after;
                continue;
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match std::env::var(name) {
                Ok(v) => {
                    secrets::register(&v);
                    out.push_str(&v);
                }
                Err(_) => match default {
                    Some(d) => out.push_str(d),
                    None => return Err(name.to_owned()),
                },
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_defaults_and_escapes() {
        // SAFETY: tests in this module use variable names no other test touches.
        unsafe { std::env::set_var("REDOPS_DOC_TEST_A", "alpha") };
        assert_eq!(expand("x${REDOPS_DOC_TEST_A}y").unwrap(), "xalphay");
        assert_eq!(expand("${REDOPS_DOC_TEST_UNSET:-d}").unwrap(), "d");
        assert_eq!(expand("$${REDOPS_DOC_TEST_A}").unwrap(), "${REDOPS_DOC_TEST_A}");
        assert_eq!(expand("cost $5").unwrap(), "cost $5");
        assert_eq!(expand("${REDOPS_DOC_TEST_UNSET}").unwrap_err(), "REDOPS_DOC_TEST_UNSET");
    }

    #[test]
    fn suggests_the_nearest_key() {
        assert_eq!(closest("whne", &["name", "when", "clear"]), Some("when"));
        assert_eq!(closest("zzzzzz", &["name", "when"]), None);
    }
}
