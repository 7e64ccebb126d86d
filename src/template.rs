//! `{{ name }}` templates for alert summaries and messages.
//!
//! Deliberately tiny: a placeholder is replaced by a value looked up by name;
//! there is no logic, so a template can never fail or loop at run time.

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template. An unclosed `{{` is an error, reported with its
    /// byte offset in `text`.
    pub fn parse(text: &str) -> Result<Template, (usize, String)> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err((offset + open, "`{{` is never closed with `}}`".into()));
            };
            let name = after[..close].trim();
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                return Err((offset + open, format!("`{{{{ {name} }}}}` is not a name")));
            }
            parts.push(Part::Var(name.to_owned()));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Renders with `lookup`; a name it does not know renders as `?name`
    /// so that a gap is visible rather than silently empty.
    pub fn render(&self, lookup: impl Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => match lookup(v) {
                    Some(value) => out.push_str(&value),
                    None => {
                        let _ = write!(out, "?{v}");
                    }
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_and_marks_unknown_names() {
        let t = Template::parse("Memory at {{ memory_used_pct }}% on {{target}} ({{ nope }})").unwrap();
        let out = t.render(|n| match n {
            "memory_used_pct" => Some("91.20".into()),
            "target" => Some("cache".into()),
            _ => None,
        });
        assert_eq!(out, "Memory at 91.20% on cache (?nope)");
    }

    #[test]
    fn an_unclosed_placeholder_is_an_error_with_its_offset() {
        assert_eq!(Template::parse("ab {{ x").unwrap_err().0, 3);
    }
}
