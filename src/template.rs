//! Templates for alert summaries, annotations and email, on minijinja.
//!
//! The syntax is Jinja's: `{{ target }}`, `{{ labels.env }}`,
//! `{{ value|humanize }}`, `{% if value > 90 %}…{% endif %}`. The filters
//! people use in Prometheus and Alertmanager templates are added with
//! Prometheus's names and outputs (`humanize`, `humanize1024`,
//! `humanizeDuration`, `humanizePercentage`, `toUpper`, `reReplaceAll`,
//! `printf`...).
//!
//! The engine is sandboxed and bounded: no file or network access, a fuel
//! budget per render (loops end), a recursion limit and a cap on the output.
//! A template is parsed when it is loaded, so a syntax error or an unknown
//! filter is a load error; at run time a render that still fails (a value of
//! the wrong type, a variable missing from this event) must not cost the
//! notification, so [`Template::render_or_raw`] falls back to the raw text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, LazyLock};

pub use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectRepr, Rest};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};

/// Instructions one render may execute: generous for any alert text, and a
/// hard stop for `{% for i in range(10**9) %}`.
const FUEL: u64 = 20_000;
/// Nesting depth of blocks and expressions.
const RECURSION_LIMIT: usize = 64;
/// Bytes of output kept from one render; the rest is cut.
const MAX_OUTPUT: usize = 16 * 1024;

/// The variables a template is rendered with.
pub type Vars = BTreeMap<String, Value>;

/// Names the environment itself provides: never reported as unknown variables.
const GLOBALS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "printf",
    "reReplaceAll",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "toUpper",
    "toLower",
    "title",
    "loop",
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(environment);

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_keep_trailing_newline(true);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_formatter(|out, state, value| {
        // Numbers print as redops prints metrics: integers bare, other
        // values with two decimals; an absent value prints nothing.
        if value.is_none() {
            return Ok(());
        }
        if value.is_number() {
            if let Some(i) = value.as_i64().filter(|i| i.unsigned_abs() >= 1 << 50) {
                return write!(out, "{i}").map_err(Error::from);
            }
            let n = f64::try_from(value.clone())?;
            return write!(out, "{}", Number(n)).map_err(Error::from);
        }
        minijinja::escape_formatter(out, state, value)
    });
    for (name, f) in [
        ("humanize", humanize as fn(f64) -> String),
        ("humanize1024", humanize1024),
        ("humanizeDuration", humanize_duration),
        ("humanizePercentage", humanize_percentage),
    ] {
        env.add_filter(name, move |v: Value| number(&v).map(f));
        env.add_function(name, move |v: Value| number(&v).map(f));
    }
    env.add_filter("toUpper", minijinja::filters::upper);
    env.add_filter("toLower", minijinja::filters::lower);
    env.add_function("toUpper", minijinja::filters::upper);
    env.add_function("toLower", minijinja::filters::lower);
    env.add_function("title", minijinja::filters::title);
    // Go's `printf "%.2f" $value` as a function; Jinja's own spelling is
    // the `format` filter: `{{ "%.2f"|format(value) }}`.
    env.add_function("printf", |state: &State, f: Value, args: Rest<Value>| {
        minijinja::filters::format(state, &f, args)
    });
    // Go's argument order as a function, Jinja's piped order as a filter.
    env.add_function("reReplaceAll", |pattern: String, replacement: String, text: String| {
        re_replace_all(&pattern, &replacement, &text)
    });
    env.add_filter("reReplaceAll", |text: String, pattern: String, replacement: String| {
        re_replace_all(&pattern, &replacement, &text)
    });
    env
}

/// What went wrong with a template, and where in its text (a byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: Option<usize>,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl TemplateError {
    fn from_minijinja(e: &Error, text: &str) -> Self {
        let message = match e.detail() {
            Some(detail) => format!("{}: {detail}", e.kind()),
            None => e.kind().to_string(),
        };
        let offset = e
            .range()
            .map(|r| r.start)
            .or_else(|| e.line().map(|l| line_start(text, l)));
        TemplateError { offset, message }
    }
}

fn line_start(text: &str, line: usize) -> usize {
    text.split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum()
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    source: Arc<str>,
}

impl Template {
    /// Parses a template: a syntax error, or a filter, test or function the
    /// engine does not have, is an error with its byte offset in `text`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let compiled = ENV
            .template_from_str(text)
            .map_err(|e| TemplateError::from_minijinja(&e, text))?;
        // Unknown filters surface only when they run: render once with every
        // variable a number, and keep only the errors no value can cure.
        // A name that is called is left undefined, so that `nope(1)` says
        // "unknown function" rather than "1 is not callable".
        let probe: Vars = compiled
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| !is_called(text, name))
            .map(|name| (name, Value::from(1)))
            .collect();
        if let Err(e) = compiled.render(probe)
            && matches!(
                e.kind(),
                ErrorKind::UnknownFilter | ErrorKind::UnknownFunction | ErrorKind::UnknownTest
            )
        {
            return Err(TemplateError::from_minijinja(&e, text));
        }
        Ok(Template { source: text.into() })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The top-level variables the template reads (`labels` for
    /// `labels.env`), besides the engine's own functions.
    pub fn variables(&self) -> BTreeSet<String> {
        ENV.template_from_str(&self.source)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !GLOBALS.contains(&v.as_str()))
            .collect()
    }

    /// The byte offset in the text of the first place `name` is used.
    pub fn offset_of(&self, name: &str) -> Option<usize> {
        let bytes = self.source.as_bytes();
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        self.source.match_indices(name).map(|(i, _)| i).find(|&i| {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + name.len()).copied();
            !before.is_some_and(|b| is_word(b) || b == b'.') && !after.is_some_and(is_word)
        })
    }

    pub fn render(&self, vars: &Vars) -> Result<String, TemplateError> {
        let mut out = ENV
            .render_str(&self.source, vars)
            .map_err(|e| TemplateError::from_minijinja(&e, &self.source))?;
        if out.len() > MAX_OUTPUT {
            let cut = (0..=MAX_OUTPUT).rev().find(|i| out.is_char_boundary(*i)).unwrap_or(0);
            out.truncate(cut);
        }
        Ok(out)
    }

    /// Renders, or on error gives the raw template text and logs why:
    /// a notification with an unrendered annotation beats no notification.
    pub fn render_or_raw(&self, vars: &Vars, what: &str) -> String {
        self.render(vars).unwrap_or_else(|e| {
            tracing::warn!(template = what, error = %e, "Template failed to render; sending its raw text");
            self.source.to_string()
        })
    }
}

/// Whether `text` calls `name` somewhere: `name(` with no word before it.
fn is_called(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
            && text[i + name.len()..].trim_start().starts_with('(')
    })
}

/// Labels as template variables: `{{ labels.env }}` reads one,
/// `{{ labels }}` prints them all as `k=v, k=v`.
#[derive(Debug)]
struct Labels(BTreeMap<String, String>);

impl Object for Labels {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_str()?).map(|v| Value::from(v.as_str()))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.keys().map(|k| Value::from(k.as_str())).collect())
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// A number as redops prints metrics: integers without a trailing `.0`,
/// other values with two decimals.
pub struct Number(pub f64);

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n.fract() == 0.0 && n.abs() < 1e15 {
            write!(f, "{}", n as i64)
        } else {
            write!(f, "{n:.2}")
        }
    }
}

pub fn labels_value(labels: &BTreeMap<String, String>) -> Value {
    Value::from_object(Labels(labels.clone()))
}

/// A filter's argument as a number; like Prometheus, a numeric string counts.
fn number(v: &Value) -> Result<f64, Error> {
    if v.is_number() {
        return f64::try_from(v.clone());
    }
    v.as_str()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, format!("`{v}` is not a number")))
}

fn re_replace_all(pattern: &str, replacement: &str, text: &str) -> Result<String, Error> {
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("bad regular expression: {e}")))?;
    Ok(re.replace_all(text, replacement).into_owned())
}

/// Go's `fmt.Sprintf("%.4g", v)`: four significant digits, trailing zeros
/// dropped, an exponent (`e+06`) below 1e-4 and from 1e4 on.
pub fn go_g4(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{v:.3e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..4).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs());
    }
    let decimals = usize::try_from(3 - exp).unwrap_or(0);
    trim_zeros(&format!("{v:.decimals$}")).to_owned()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Prometheus's `humanize`: SI prefixes, four significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g4(v))
}

/// Prometheus's `humanize1024`: binary prefixes (`ki`, `Mi`...).
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g4(v))
}

/// Prometheus's `humanizeDuration`: seconds as `1d 2h 3m 4s`, or with a
/// prefix below a second (`1.5ms`).
pub fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g4(v);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        // Go's int64(v) truncates, as `as` does.
        let whole = v as i64;
        let (seconds, minutes, hours, days) = (whole % 60, whole / 60 % 60, whole / 3600 % 24, whole / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", go_g4(v))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g4(v))
}

/// Prometheus's `humanizePercentage`: a ratio (0.5) as a percentage (50%).
pub fn humanize_percentage(v: f64) -> String {
    format!("{}%", go_g4(v * 100.0))
}

#[cfg(test)]
mod tests;
