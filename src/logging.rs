//! The log's promise to whoever reads or parses it: one event, one line.
//! Values from outside (key names, Redis error text, Sentinel payloads,
//! playbook messages) may hold CR or LF; written raw, one would split an
//! event in two, or forge a whole line (`\n2020-01-01T00:00:00Z ERROR …`).

use std::borrow::Cow;
use std::io::{self, Write};

/// Writes each event with the CR and LF inside it escaped as `\r` and `\n`;
/// only the newline that ends the event stays. tracing's formatter hands
/// over one whole event per write.
pub struct OneLinePerEvent<W>(W);

/// Standard error, one event a line: the writer `redops` logs with.
pub fn stderr() -> OneLinePerEvent<io::Stderr> {
    OneLinePerEvent(io::stderr())
}

impl<W: Write> Write for OneLinePerEvent<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&escape_inner_line_breaks(buf))?;
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
}
