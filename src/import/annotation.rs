//! Prometheus annotation templates (Go templates) → redops templates (Jinja).
//!
//! What people write in alert rules translates: `{{ $value }}`,
//! `{{ $labels.x }}` (`instance` is redops's `target`) and their
//! `.Value`/`.Labels.x` spellings, `{{ $labels }}`, pipelines through the
//! functions redops has under the same names (`$value | humanize`,
//! `| printf "%.2f"`, `| reReplaceAll "a" "b"`), `printf "%.2f" $value`, and
//! `if`/`else`/`end` over a value or a comparison (`if gt $value 80.0`).
//! Anything else (`range`, `with`, `query`, variables) is left out with a note.

/// A translated template and what was lost on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub text: String,
    pub notes: Vec<String>,
}

/// Functions redops's templates have under Prometheus's names, taking the
/// piped value as their only argument.
const FILTERS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "title",
    "toUpper",
    "toLower",
];

pub fn translate(text: &str) -> Template {
    let mut out = String::new();
    let mut notes = Vec::new();
    // For each open block: whether it was translated (an `if`) or left out.
    let mut blocks: Vec<bool> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&literal(&rest[..open]));
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            // An unclosed `{{` is text to Go too; keep it out of the parser.
            out.push_str(&literal(&after.replace('{', "(")));
            notes.push("an unclosed `{{` was kept as text".to_owned());
            rest = "";
            break;
        };
        let action = after[..close].trim_matches(|c: char| c == '-' || c.is_whitespace());
        rest = &after[close + 2..];
        let words = tokens(action);
        let translated = match words.first().map(String::as_str) {
            Some("if") => {
                let cond = condition(&words[1..]);
                blocks.push(cond.is_some());
                cond.map(|c| format!("{{% if {c} %}}"))
            }
            Some("else") if words.len() == 1 && blocks.last() == Some(&true) => Some("{% else %}".to_owned()),
            Some("end") if words.len() == 1 => match blocks.pop() {
                Some(true) => Some("{% endif %}".to_owned()),
                _ => {
                    notes.push("the `{{ end }}` of a block that was left out is left out too".to_owned());
                    continue;
                }
            },
            Some("range" | "with" | "define" | "block" | "template") => {
                blocks.push(false);
                None
            }
            _ => expression(&words).map(|e| format!("{{{{ {e} }}}}")),
        };
        match translated {
            Some(t) => out.push_str(&t),
            None => notes.push(format!("`{{{{ {action} }}}}` has no redops equivalent and is left out")),
        }
    }
    out.push_str(&literal(rest));
    if blocks.iter().any(|translated| *translated) {
        out.push_str("{% endif %}");
        notes.push("an `if` without `end` was closed at the end".to_owned());
    }
    Template { text: out, notes }
}

/// Text between actions: Jinja's other delimiters must stay text.
fn literal(text: &str) -> String {
    text.replace("{%", "{{ \"{%\" }}").replace("{#", "{{ \"{#\" }}")
}

/// The words of an action: quoted strings whole, `|` on its own.
fn tokens(action: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            chars.next();
            out.push("|".to_owned());
        } else if c == '"' {
            let mut word = String::from(chars.next().unwrap_or('"'));
            while let Some(c) = chars.next() {
                word.push(c);
                if c == '\\' {
                    word.extend(chars.next());
                } else if c == '"' {
                    break;
                }
            }
            out.push(word);
        } else if c == '`' {
            chars.next();
            let raw: String = chars.by_ref().take_while(|c| *c != '`').collect();
            out.push(format!("\"{}\"", raw.replace('\\', "\\\\").replace('"', "\\\"")));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(word);
        }
    }
    out
}

/// A Go pipeline as a Jinja expression: a command, then `| f args` stages
/// that each take the value so far as their last argument.
fn expression(words: &[String]) -> Option<String> {
    let mut stages = words.split(|w| w == "|");
    let mut expr = command(stages.next()?)?;
    for stage in stages {
        let (name, args) = stage.split_first()?;
        let args: Vec<String> = args.iter().map(|a| term(a)).collect::<Option<_>>()?;
        expr = match (name.as_str(), args.as_slice()) {
            (f, []) if FILTERS.contains(&f) => format!("{expr}|{f}"),
            ("printf", [format, rest @ ..]) => {
                format!(
                    "printf({format}, {})",
                    rest.iter().chain([&expr]).cloned().collect::<Vec<_>>().join(", ")
                )
            }
            ("reReplaceAll", [pattern, replacement]) => format!("{expr}|reReplaceAll({pattern}, {replacement})"),
            _ => return None,
        };
    }
    Some(expr)
}

/// One command: a term, or a function with its arguments.
fn command(words: &[String]) -> Option<String> {
    match words {
        [one] => term(one),
        [f, arg] if FILTERS.contains(&f.as_str()) => Some(format!("{}|{f}", term(arg)?)),
        [f, format, args @ ..] if f == "printf" => {
            let mut all = vec![term(format)?];
            for a in args {
                all.push(term(a)?);
            }
            Some(format!("printf({})", all.join(", ")))
        }
        [f, pattern, replacement, text] if f == "reReplaceAll" => Some(format!(
            "reReplaceAll({}, {}, {})",
            term(pattern)?,
            term(replacement)?,
            term(text)?
        )),
        _ => None,
    }
}

/// `if`'s condition: a comparison function, or a value's truth.
fn condition(words: &[String]) -> Option<String> {
    let op = match words.first().map(String::as_str) {
        Some("gt") => ">",
        Some("ge") => ">=",
        Some("lt") => "<",
        Some("le") => "<=",
        Some("eq") => "==",
        Some("ne") => "!=",
        _ => return expression(words),
    };
    match &words[1..] {
        [a, b] => Some(format!("{} {op} {}", term(a)?, term(b)?)),
        _ => None,
    }
}

/// A value: `$value`, a label, all labels, a string or a number.
fn term(word: &str) -> Option<String> {
    match word {
        "$value" | ".Value" => return Some("value".to_owned()),
        "$labels" | ".Labels" => return Some("labels".to_owned()),
        _ => {}
    }
    if word.starts_with('"') || word.parse::<f64>().is_ok() {
        return Some(word.to_owned());
    }
    let label = word
        .strip_prefix("$labels.")
        .or_else(|| word.strip_prefix(".Labels."))?;
    if label.is_empty() || !label.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some(match label {
        "instance" => "target".to_owned(),
        "severity" => "severity".to_owned(),
        other => format!("labels.{other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_labels_translate() {
        let t = translate("Redis down (instance {{ $labels.instance }}) in {{ $labels.env }}: {{ $value }}");
        assert_eq!(
            t.text,
            "Redis down (instance {{ target }}) in {{ labels.env }}: {{ value }}"
        );
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        let t = translate("{{.Labels.instance}} at {{ .Value }}, {{ $labels }}");
        assert_eq!(t.text, "{{ target }} at {{ value }}, {{ labels }}");
    }

    #[test]
    fn pipelines_and_printf_keep_their_formatting() {
        let t = translate("{{ $value | humanize }} ({{ printf \"%.2f\" $value }}) {{ $value | printf \"%.1f\" }}");
        assert_eq!(
            t.text,
            "{{ value|humanize }} ({{ printf(\"%.2f\", value) }}) {{ printf(\"%.1f\", value) }}"
        );
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        let t = translate("{{ humanizeDuration $value }} {{ $labels.instance | reReplaceAll `:\\d+` \"\" }}");
        assert_eq!(
            t.text,
            "{{ value|humanizeDuration }} {{ target|reReplaceAll(\":\\\\d+\", \"\") }}"
        );
    }

    #[test]
    fn if_else_end_translate() {
        let t = translate("{{ if gt $value 1.0 }}many{{ else }}few{{ end }}");
        assert_eq!(t.text, "{% if value > 1.0 %}many{% else %}few{% endif %}");
        assert!(t.notes.is_empty(), "{:?}", t.notes);
    }

    #[test]
    fn what_has_no_equivalent_is_left_out_with_a_note() {
        let t = translate("{{ range $i := query \"up\" }}x{{ end }} {{ $x := 1 }}");
        assert_eq!(t.text, "x ");
        assert_eq!(t.notes.len(), 3, "{:?}", t.notes);
        let t = translate("100{% and {# kept");
        assert_eq!(t.text, "100{{ \"{%\" }} and {{ \"{#\" }} kept");
    }

    #[test]
    fn every_translation_parses_as_a_redops_template() {
        for text in [
            "{{ $value | humanize }} {{ if gt $value 1.0 }}x{{ end }}",
            "{{ printf \"%.2f\" $value }} {{ $labels }} {{ if $labels.env }}{{ $labels.env }}{{ end }}",
            "100{% and {# kept {{ range . }}{{ end }}",
        ] {
            let t = translate(text);
            crate::template::Template::parse(&t.text).unwrap_or_else(|e| panic!("{text} → {}: {e}", t.text));
        }
    }
}
