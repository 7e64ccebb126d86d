//! The log's promises to whoever reads or parses it: no secret, and one
//! event, one line.
//!
//! Both are kept here, where each event is written, so that they hold for
//! every event whatever code emitted it: redops's own, a dependency's
//! (`RUST_LOG=debug` shows reqwest's and hyper's), a field formatted with
//! `Display` or `Debug`. Every registered secret ([`crate::secrets`]) is
//! replaced by `***`. Values from outside (key names, Redis error text,
//! Sentinel payloads, playbook messages) may hold CR or LF; written raw, one
//! would split an event in two, or forge a whole line
//! (`\n2020-01-01T00:00:00Z ERROR …`).

use std::borrow::Cow;
use std::io::{self, Write};

/// Writes each event with its secrets redacted and the CR and LF inside it
/// escaped as `\r` and `\n`; only the newline that ends the event stays.
/// tracing's formatter hands over one whole event per write, so a secret is
/// never split across two writes.
pub struct OneLinePerEvent<W>(W);

/// Standard error, one event a line, no secret: the writer `redops` logs with.
pub fn stderr() -> OneLinePerEvent<io::Stderr> {
    OneLinePerEvent(io::stderr())
}

impl<W: Write> Write for OneLinePerEvent<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Redacted first: a secret holding a line break is found as it is.
        let redacted = crate::secrets::redact_bytes(buf);
        self.0.write_all(&escape_inner_line_breaks(&redacted))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn escape_inner_line_breaks(event: &[u8]) -> Cow<'_, [u8]> {
    let body = event.strip_suffix(b"\n").unwrap_or(event);
    if !body.iter().any(|b| matches!(b, b'\r' | b'\n')) {
        return Cow::Borrowed(event);
    }
    let mut out = Vec::with_capacity(event.len() + 16);
    for &b in body {
        match b {
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
    if body.len() < event.len() {
        out.push(b'\n');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(event: &[u8]) -> Vec<u8> {
        let mut writer = OneLinePerEvent(Vec::new());
        writer.write_all(event).unwrap();
        writer.0
    }

    #[test]
    fn line_breaks_inside_an_event_are_escaped_and_the_last_newline_stays() {
        assert_eq!(
            written(b"WARN key a\r\nBcc: x@evil\n2020-01-01T00:00:00Z ERROR forged\n"),
            b"WARN key a\\r\\nBcc: x@evil\\n2020-01-01T00:00:00Z ERROR forged\n"
        );
        assert_eq!(written(b"INFO plain\n"), b"INFO plain\n");
        assert_eq!(written(b"no newline\r"), b"no newline\\r");
    }

    /// What the tracing formatter writes into, kept for the test to read.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_event_is_written_with_a_secret_whatever_emits_it_and_however() {
        let secret = crate::secrets::Secret::new("log-writer-secret-41");
        let short = crate::secrets::Secret::new("W9");
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || OneLinePerEvent(sink.clone()))
            .finish();
        let (long, short) = (secret.expose(), short.expose());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("delivery", url = %format!("http://h/{long}"));
            let _entered = span.enter();
            tracing::warn!(error = %format!("AUTH failed for {long}"), "Target unreachable");
            tracing::debug!(reply = ?format!("with args beginning with: '{short}'"), "Reply");
            tracing::error!("connect to redis://:{long}@host failed:\n{short}");
            // As a dependency's event reaches the same writer.
            tracing::trace!(target: "hyper_util::client", "connecting to http://h/x?k={short}");
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.lines().count(), 4, "{log}");
        assert!(!log.contains(long) && !log.contains(short), "{log}");
        // Each event shows where the secret was: the span's url, then its own.
        assert_eq!(log.matches("***").count(), 4 + 5, "{log}");
        assert!(log.contains("reply=\"with args beginning with: '***'\""), "{log}");
    }
}
