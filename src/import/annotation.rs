//! Prometheus annotation templates (Go templates) → redops `{{ name }}`
//! templates.
//!
//! Only the placeholders people write in alert rules translate:
//! `{{ $value }}`, `{{ $labels.x }}` (`instance` is redops's `target`) and
//! their `.Value`/`.Labels.x` spellings. A pipeline (`| humanize`) or
//! `printf` around them is dropped with a note; anything else (`if`,
//! `range`, `{{ $labels }}`) is left out, also with a note.

/// A translated template and what was lost on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub text: String,
    pub notes: Vec<String>,
}

pub fn translate(text: &str) -> Template {
    let mut out = String::new();
    let mut notes = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            // An unclosed `{{` is text to Go too; keep it out of redops's parser.
            out.push_str(&after.replace('{', "("));
            notes.push("an unclosed `{{` was kept as text".to_owned());
            rest = "";
            break;
        };
        let action = after[..close].trim_matches(|c: char| c == '-' || c.is_whitespace());
        match placeholder(action) {
            Some((name, lossy)) => {
                out.push_str(&format!("{{{{ {name} }}}}"));
                if lossy {
                    notes.push(format!(
                        "`{{{{ {action} }}}}` is written `{{{{ {name} }}}}`: its formatting is dropped"
                    ));
                }
            }
            None => notes.push(format!("`{{{{ {action} }}}}` has no redops equivalent and is left out")),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Template { text: out, notes }
}

/// The redops name of a Go template action, and whether formatting was dropped.
fn placeholder(action: &str) -> Option<(String, bool)> {
    // `printf "%.2f" $value` and `$value | humanize`: the value is the last
    // word before a pipe, or the last word of printf's arguments.
    let (head, piped) = match action.split_once('|') {
        Some((head, _)) => (head.trim(), true),
        None => (action, false),
    };
    let words: Vec<&str> = head.split_whitespace().collect();
    let (word, printf) = match words.as_slice() {
        [one] => (*one, false),
        ["printf", .., last] => (*last, true),
        _ => return None,
    };
    let name = match word {
        "$value" | ".Value" => "value".to_owned(),
        _ => {
            let label = word
                .strip_prefix("$labels.")
                .or_else(|| word.strip_prefix(".Labels."))?;
            if label.is_empty() || !label.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return None;
            }
            match label {
                "instance" => "target".to_owned(),
                "severity" => "severity".to_owned(),
                other => format!("labels.{other}"),
            }
        }
    };
    Some((name, piped || printf))
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
        let t = translate("{{.Labels.instance}} at {{ .Value }}");
        assert_eq!(t.text, "{{ target }} at {{ value }}");
    }

    #[test]
    fn formatting_is_dropped_and_said() {
        let t = translate("{{ $value | humanize }} ({{ printf \"%.2f\" $value }})");
        assert_eq!(t.text, "{{ value }} ({{ value }})");
        assert_eq!(t.notes.len(), 2, "{:?}", t.notes);
        assert!(t.notes[0].contains("`{{ $value | humanize }}`"), "{:?}", t.notes);
    }

    #[test]
    fn what_has_no_equivalent_is_left_out_with_a_note() {
        let t = translate("VALUE = {{ $value }}\n  LABELS = {{ $labels }}");
        assert_eq!(t.text, "VALUE = {{ value }}\n  LABELS = ");
        assert_eq!(t.notes, ["`{{ $labels }}` has no redops equivalent and is left out"]);
        let t = translate("{{ if gt $value 1.0 }}many{{ end }}");
        assert_eq!(t.text, "many");
        assert_eq!(t.notes.len(), 2);
    }
}
