//! Label matchers, as used by silences and routes: `label=value`,
//! `label!=value`, `label=~regex`, `label!~regex` (regexes anchored).

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "=~")]
    Re,
    #[serde(rename = "!~")]
    NotRe,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Matcher {
    pub label: String,
    pub op: Op,
    pub value: String,
    #[serde(skip)]
    regex: Option<Regex>,
}

/// Compiles a regex that must match a whole label value.
pub fn anchored(re: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("invalid regex `{re}`: {e}"))
}

impl Matcher {
    pub fn new(label: &str, op: Op, value: &str) -> Result<Matcher, String> {
        if label.is_empty() || !label.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("`{label}` is not a label name"));
        }
        let regex = match op {
            Op::Re | Op::NotRe => Some(anchored(value)?),
            _ => None,
        };
        Ok(Matcher {
            label: label.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// Parses `label=value`, `label!=value`, `label=~re` or `label!~re`.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        for (token, op) in [("!=", Op::Ne), ("=~", Op::Re), ("!~", Op::NotRe), ("=", Op::Eq)] {
            if let Some((label, value)) = text.split_once(token) {
                return Matcher::new(label.trim(), op, value.trim().trim_matches('"'));
            }
        }
        Err(format!(
            "`{text}` is not a matcher; write label=value, label!=value, label=~regex or label!~regex"
        ))
    }

    /// Restores the compiled regex after deserialization.
    pub fn compiled(self) -> Result<Matcher, String> {
        Matcher::new(&self.label, self.op, &self.value)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.label).map(String::as_str).unwrap_or("");
        match self.op {
            Op::Eq => value == self.value,
            Op::Ne => value != self.value,
            Op::Re => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            Op::NotRe => self.regex.as_ref().is_some_and(|r| !r.is_match(value)),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        };
        write!(f, "{}{op}{}", self.label, self.value)
    }
}

pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_each_operator() {
        let labels = BTreeMap::from([("severity".to_string(), "warning".to_string())]);
        assert!(Matcher::parse("severity=warning").unwrap().matches(&labels));
        assert!(!Matcher::parse("severity!=warning").unwrap().matches(&labels));
        assert!(Matcher::parse("severity=~warn.*").unwrap().matches(&labels));
        assert!(
            !Matcher::parse("severity=~warn").unwrap().matches(&labels),
            "regexes are anchored"
        );
        assert!(Matcher::parse("severity!~crit.*").unwrap().matches(&labels));
        assert!(
            Matcher::parse("target=").unwrap().matches(&labels),
            "a missing label is empty"
        );
        assert!(Matcher::parse("nope").is_err());
        assert!(Matcher::parse("a=~(").is_err());
    }
}
