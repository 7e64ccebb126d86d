//! Series notation for test inputs, after Prometheus's `promtool`:
//! `"50+5x10 90x20 _ stale"` is one value per evaluation step.
//!
//! | term | values |
//! | --- | --- |
//! | `a` | `a` once |
//! | `axn` | `a` repeated: n+1 values |
//! | `a+bxn`, `a-bxn` | `a`, `a±b`, … `a±n·b`: n+1 values |
//! | `_`, `_xn` | no value (the metric is absent from the sample): once, n times |
//! | `stale`, `stalexn` | the target is down: once, n times |
//!
//! A numeric series has no value after its last term. A text series
//! (`"master"`, `"master replica"`) is one word a step and its last word
//! repeats to the end of the test, as a role does.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    Num(f64),
    Text(String),
    /// No value at this step.
    Missing,
    /// The target does not answer at this step.
    Stale,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    points: Vec<Point>,
    /// Whether the last point holds for every later step.
    repeat_last: bool,
}

impl Series {
    /// A value that holds at every step.
    pub fn constant(point: Point) -> Series {
        Series {
            points: vec![point],
            repeat_last: true,
        }
    }

    /// The point at `step`.
    pub fn at(&self, step: usize) -> &Point {
        match self.points.get(step) {
            Some(p) => p,
            None if self.repeat_last => self.points.last().unwrap_or(&Point::Missing),
            None => &Point::Missing,
        }
    }

    /// How many steps the series spells out; a repeating series spells out
    /// at least one.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Whether the series ends (its last point does not repeat).
    pub fn is_finite(&self) -> bool {
        !self.repeat_last
    }
}

/// A term that does not parse: which one, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesError {
    pub term: String,
    pub message: String,
}

impl fmt::Display for SeriesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.term, self.message)
    }
}

pub fn parse(text: &str) -> Result<Series, SeriesError> {
    let terms: Vec<&str> = text.split_whitespace().collect();
    if terms.is_empty() {
        return Err(SeriesError {
            term: text.to_owned(),
            message: "an empty series; write values such as \"50 60 70\" or \"50+10x2\"".into(),
        });
    }
    let numeric = terms
        .iter()
        .any(|t| t.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')));
    let mut points = Vec::new();
    for term in &terms {
        if numeric {
            points.extend(numeric_term(term)?);
        } else {
            points.extend(text_term(term)?);
        }
    }
    Ok(Series {
        points,
        repeat_last: !numeric,
    })
}

fn error(term: &str, message: impl Into<String>) -> SeriesError {
    SeriesError {
        term: term.to_owned(),
        message: message.into(),
    }
}

/// `_`, `_xn`, `stale`, `stalexn`: `None` for any other term.
fn special(term: &str) -> Result<Option<Vec<Point>>, SeriesError> {
    for (word, point) in [("_", Point::Missing), ("stale", Point::Stale)] {
        if term == word {
            return Ok(Some(vec![point]));
        }
        if let Some(n) = term.strip_prefix(word).and_then(|rest| rest.strip_prefix('x')) {
            let n: usize = n
                .parse()
                .map_err(|_| error(term, format!("`{word}xN` needs a whole number of steps")))?;
            return Ok(Some(vec![point; n]));
        }
    }
    Ok(None)
}

fn text_term(term: &str) -> Result<Vec<Point>, SeriesError> {
    Ok(special(term)?.unwrap_or_else(|| vec![Point::Text(term.to_owned())]))
}

fn numeric_term(term: &str) -> Result<Vec<Point>, SeriesError> {
    if let Some(points) = special(term)? {
        return Ok(points);
    }
    let hint = "write a number, `axN` (a, N+1 times), `a+bxN` or `a-bxN` (N+1 values), `_` or `stale`";
    let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
    let Some((start, count)) = term.rsplit_once('x') else {
        return number(term)
            .map(|v| vec![Point::Num(v)])
            .ok_or_else(|| error(term, hint));
    };
    let n: usize = count.parse().map_err(|_| error(term, hint))?;
    // The sign of the step is the first `+` or `-` that is not the start's
    // own sign or part of an exponent.
    let bytes = start.as_bytes();
    let split = (1..bytes.len()).find(|&i| matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
    let (a, step) = match split {
        Some(i) => {
            let step = number(&start[i + 1..]).ok_or_else(|| error(term, hint))?;
            (&start[..i], if bytes[i] == b'-' { -step } else { step })
        }
        None => (start, 0.0),
    };
    let a = number(a).ok_or_else(|| error(term, hint))?;
    Ok((0..=n).map(|i| Point::Num(a + step * i as f64)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nums(text: &str) -> Vec<Point> {
        parse(text).unwrap().points
    }

    #[test]
    fn expands_promtool_terms() {
        use Point::{Missing, Num, Stale};
        assert_eq!(nums("1 2"), [Num(1.0), Num(2.0)]);
        assert_eq!(nums("50+5x2"), [Num(50.0), Num(55.0), Num(60.0)]);
        assert_eq!(nums("10-2.5x2"), [Num(10.0), Num(7.5), Num(5.0)]);
        assert_eq!(nums("-1+1x1"), [Num(-1.0), Num(0.0)]);
        assert_eq!(nums("1e3x1"), [Num(1000.0), Num(1000.0)]);
        assert_eq!(
            nums("7x2 _ stale _x2"),
            [Num(7.0), Num(7.0), Num(7.0), Missing, Stale, Missing, Missing]
        );
    }

    #[test]
    fn numeric_series_end_and_text_series_repeat() {
        let s = parse("1 2").unwrap();
        assert_eq!(s.at(1), &Point::Num(2.0));
        assert_eq!(s.at(2), &Point::Missing);
        let role = parse("master replica").unwrap();
        assert_eq!(role.at(0), &Point::Text("master".into()));
        assert_eq!(role.at(9), &Point::Text("replica".into()));
    }

    #[test]
    fn bad_terms_are_named() {
        let e = parse("50 master").unwrap_err();
        assert_eq!(e.term, "master");
        assert!(parse("5x").is_err());
        assert!(parse("5+x3").is_err());
        assert!(parse("_xa").is_err());
        assert!(parse("  ").is_err());
    }
}
