//! Problems found in user files, each pinned to `file:line:col`.
//!
//! Loading config, rules and playbooks collects every problem into one
//! [`Diagnostics`] list instead of stopping at the first, so `redops check`
//! can report them all in one run.

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

/// A user file kept in memory so that any later problem can quote it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<Arc<str>>) -> Self {
        SourceFile {
            path: path.into(),
            text: text.into(),
        }
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        Ok(SourceFile::new(path, std::fs::read_to_string(path)?))
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line - 1).unwrap_or("").trim_end_matches('\r')
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    pub level: Level,
    pub file: PathBuf,
    /// 1-based; 0 when the problem concerns the file as a whole.
    pub line: usize,
    pub col: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The quoted source line and the width of the underline.
    #[serde(skip)]
    excerpt: Option<(String, usize)>,
}

impl Diagnostic {
    pub fn error(file: &SourceFile, span: Range<usize>, message: impl Into<String>) -> Self {
        Self::located(Level::Error, file, span, message.into())
    }

    pub fn warning(file: &SourceFile, span: Range<usize>, message: impl Into<String>) -> Self {
        Self::located(Level::Warning, file, span, message.into())
    }

    /// A problem with a whole file, such as one that cannot be read.
    pub fn file_error(path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            level: Level::Error,
            file: path.to_owned(),
            line: 0,
            col: 0,
            message: crate::secrets::redact(&message.into()),
            hint: None,
            excerpt: None,
        }
    }

    fn located(level: Level, file: &SourceFile, span: Range<usize>, message: String) -> Self {
        let (line, col) = file.line_col(span.start);
        let text = file.line_text(line).to_owned();
        let (end_line, end_col) = file.line_col(span.end.max(span.start));
        let width = if end_line == line && end_col > col {
            end_col - col
        } else {
            text.chars().count().saturating_sub(col - 1).max(1)
        };
        Diagnostic {
            level,
            file: file.path.clone(),
            line,
            col,
            // Messages quote values, and a value may have come from the
            // environment: redacting here covers every message at once.
            message: crate::secrets::redact(&message),
            hint: None,
            excerpt: Some((text, width)),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(crate::secrets::redact(&hint.into()));
        self
    }

    /// `file:line:col` (or just the file for whole-file problems).
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.display().to_string()
        } else {
            format!("{}:{}:{}", self.file.display(), self.line, self.col)
        }
    }
}

impl fmt::Display for Diagnostic {
    /// rustc-style: the message, the location, the quoted line with the span
    /// underlined, then the hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        writeln!(f, "{level}: {}", self.message)?;
        writeln!(f, "  --> {}", self.location())?;
        if let Some((text, width)) = &self.excerpt {
            let gutter = self.line.to_string().len();
            let pad = " ".repeat(gutter);
            writeln!(f, "{pad} |")?;
            // The quoted line may hold a secret written in the file (a
            // webhook URL's token in a playbook): redacted as it is shown,
            // the underline kept under what it pointed at.
            writeln!(f, "{} | {}", self.line, crate::secrets::redact(text))?;
            let before: String = text.chars().take(self.col - 1).collect();
            let lead: String = crate::secrets::redact(&before)
                .chars()
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{pad} | {lead}{}", "^".repeat(*width))?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found while loading, in the order found.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.level == Level::Error)
    }

    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.level == Level::Error).count()
    }

    pub fn warning_count(&self) -> usize {
        self.0.iter().filter(|d| d.level == Level::Warning).count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All diagnostics followed by a one-line count.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.0 {
            let _ = writeln!(out, "{d}");
        }
        let _ = write!(
            out,
            "{} error(s), {} warning(s)",
            self.error_count(),
            self.warning_count()
        );
        out
    }
}

impl std::error::Error for Diagnostics {}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let file = SourceFile::new("x.toml", "a = 1\nbé = \"x\"\n");
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(file.line_col(9), (2, 3));
    }

    #[test]
    fn rendering_underlines_the_span() {
        let file = SourceFile::new("rules/a.toml", "[[rule]]\nwhne = \"x\"\n");
        let d = Diagnostic::error(&file, 9..13, "unknown field `whne`").with_hint("did you mean `when`?");
        let text = d.to_string();
        assert!(text.contains("rules/a.toml:2:1"), "{text}");
        assert!(text.contains("2 | whne = \"x\""), "{text}");
        assert!(text.contains("  | ^^^^\n"), "{text}");
        assert!(text.contains("hint: did you mean `when`?"), "{text}");
    }
}
