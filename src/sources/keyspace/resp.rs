//! RESP2 and RESP3 frames as the keyspace reader needs them: a pub/sub
//! message is two byte slices of the read buffer (channel and payload),
//! every other frame is skipped whole. Nothing is copied or allocated per
//! frame; a frame that is not all in the buffer yet asks for more bytes.
//!
//! The walk is iterative (a count of elements still to skip), so a hostile
//! `*1*1*1…` cannot overflow the stack, and every length is checked before
//! it is trusted.

use std::ops::Range;

/// One complete frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `message` (`[kind, channel, payload]`) or `pmessage`
    /// (`[kind, pattern, channel, payload]`), as a RESP2 array or a RESP3
    /// push, every part a bulk string.
    Message { channel: &'a [u8], payload: &'a [u8] },
    /// A `subscribe` or `psubscribe` confirmation.
    Subscribed,
    /// A simple (`-`) or blob (`!`) error.
    Error(&'a [u8]),
    /// Anything else: a reply, an attribute, a push of another kind.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("unknown RESP type byte {byte:#04x} at offset {at}")]
    UnknownType { byte: u8, at: usize },
    #[error("malformed length at offset {at}")]
    BadLength { at: usize },
    #[error("a blob does not end with CRLF at offset {at}")]
    MissingCrlf { at: usize },
    #[error("a frame is larger than {max} bytes")]
    TooLarge { max: usize },
}

/// Why a parse stopped short of a frame.
enum Stop {
    Incomplete,
    Bad(RespError),
}

impl From<RespError> for Stop {
    fn from(e: RespError) -> Self {
        Stop::Bad(e)
    }
}

/// The first frame of `buf` and the bytes it takes, `None` while it is
/// incomplete.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, RespError> {
    let mut cursor = Cursor::new(buf);
    match cursor.frame() {
        Ok(frame) => Ok(Some((frame, cursor.pos))),
        Err(Stop::Incomplete) => Ok(None),
        Err(Stop::Bad(e)) => Err(e),
    }
}

/// One element's header, its body for scalars.
enum Element<'a> {
    /// `+`, `:`, `_`, `,`, `#`, `(`: a line.
    Line(u8, &'a [u8]),
    Error(&'a [u8]),
    /// `$`, `!`, `=` with a length; `$-1` is `Null`.
    Blob(u8, &'a [u8]),
    Null,
    /// `*`, `>`, `~`, `%`, `|`: how many elements follow (a map's pairs
    /// and an attribute's value counted), and its type byte.
    Aggregate(u8, u64),
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where the payload of the last message parsed starts: its `$`.
    payload_at: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            payload_at: 0,
        }
    }

    fn frame(&mut self) -> Result<Frame<'a>, Stop> {
        match self.element()? {
            Element::Error(message) | Element::Blob(b'!', message) => Ok(Frame::Error(message)),
            Element::Aggregate(b'*' | b'>', n) => self.pubsub_or_other(n),
            Element::Aggregate(_, n) => {
                self.skip(n)?;
                Ok(Frame::Other)
            }
            _ => Ok(Frame::Other),
        }
    }

    /// An array or push of `n` elements: a message when its kind and
    /// shape say so, else skipped.
    fn pubsub_or_other(&mut self, n: u64) -> Result<Frame<'a>, Stop> {
        let mut kind: Option<&[u8]> = None;
        // The bulk strings after the kind (at most 3 matter), and whether
        // every element after the kind is one.
        let mut parts: [&[u8]; 3] = [&[]; 3];
        let mut all_bulk = true;
        let mut last_at = self.pos;
        for i in 0..n {
            last_at = self.pos;
            match self.element()? {
                Element::Blob(b'$', s) | Element::Line(b'+', s) if i == 0 => kind = Some(s),
                Element::Blob(b'$', s) if i > 0 => {
                    if let Some(part) = parts.get_mut(i as usize - 1) {
                        *part = s;
                    }
                }
                Element::Aggregate(_, inner) => {
                    all_bulk = false;
                    self.skip(inner)?;
                }
                _ => all_bulk = false,
            }
        }
        Ok(match (kind, n) {
            (Some(b"message"), 3) if all_bulk => {
                self.payload_at = last_at;
                Frame::Message {
                    channel: parts[0],
                    payload: parts[1],
                }
            }
            (Some(b"pmessage"), 4) if all_bulk => {
                self.payload_at = last_at;
                Frame::Message {
                    channel: parts[1],
                    payload: parts[2],
                }
            }
            (Some(b"subscribe" | b"psubscribe"), _) => Frame::Subscribed,
            _ => Frame::Other,
        })
    }

    /// Skips `pending` elements, nested ones included, without recursion.
    fn skip(&mut self, mut pending: u64) -> Result<(), Stop> {
        while pending > 0 {
            if let Element::Aggregate(_, n) = self.element()? {
                pending = pending.saturating_add(n);
            }
            pending -= 1;
        }
        Ok(())
    }

    fn element(&mut self) -> Result<Element<'a>, Stop> {
        let at = self.pos;
        let &kind = self.buf.get(at).ok_or(Stop::Incomplete)?;
        self.pos += 1;
        Ok(match kind {
            b'+' | b':' | b'_' | b',' | b'#' | b'(' => Element::Line(kind, self.line()?),
            b'-' => Element::Error(self.line()?),
            b'$' | b'!' | b'=' => match self.length()? {
                None if kind == b'$' => Element::Null,
                None => return Err(RespError::BadLength { at }.into()),
                Some(len) => Element::Blob(kind, self.blob(len)?),
            },
            b'*' | b'>' | b'~' => Element::Aggregate(kind, self.length()?.unwrap_or(0)),
            b'%' | b'|' => {
                let pairs = self.length()?.ok_or(RespError::BadLength { at })?;
                let elements = pairs.checked_mul(2).ok_or(RespError::BadLength { at })?;
                // An attribute is followed by the value it describes.
                Element::Aggregate(kind, elements + u64::from(kind == b'|'))
            }
            byte => return Err(RespError::UnknownType { byte, at }.into()),
        })
    }

    /// The bytes up to the next CRLF, which is consumed.
    fn line(&mut self) -> Result<&'a [u8], Stop> {
        let rest = &self.buf[self.pos..];
        let mut from = 0;
        loop {
            let cr = rest[from..].iter().position(|&b| b == b'\r').ok_or(Stop::Incomplete)? + from;
            match rest.get(cr + 1) {
                None => return Err(Stop::Incomplete),
                Some(b'\n') => {
                    self.pos += cr + 2;
                    return Ok(&rest[..cr]);
                }
                Some(_) => from = cr + 1,
            }
        }
    }

    /// A length line: digits, or a negative number for a null.
    fn length(&mut self) -> Result<Option<u64>, Stop> {
        // Nearly every length is a few digits and CRLF: read them in one
        // pass. Anything else (a sign, a frame cut short, junk) takes the
        // general path below, which says which it is.
        let rest = &self.buf[self.pos..];
        let digits = rest.iter().take(19).take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && rest.get(digits..digits + 2) == Some(b"\r\n".as_slice()) {
            let n = rest[..digits].iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            self.pos += digits + 2;
            return Ok(Some(n));
        }
        self.checked_length()
    }

    fn checked_length(&mut self) -> Result<Option<u64>, Stop> {
        let at = self.pos;
        let line = self.line()?;
        let bad = || Stop::Bad(RespError::BadLength { at });
        if let Some(negative) = line.strip_prefix(b"-") {
            return if !negative.is_empty() && negative.iter().all(u8::is_ascii_digit) {
                Ok(None)
            } else {
                Err(bad())
            };
        }
        if line.is_empty() || line.len() > 19 || !line.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(Some(line.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))))
    }

    fn blob(&mut self, len: u64) -> Result<&'a [u8], Stop> {
        let start = self.pos;
        let rest = self.buf.len() - start;
        let len = usize::try_from(len).map_err(|_| RespError::TooLarge { max: usize::MAX })?;
        if rest < len.saturating_add(2) {
            return Err(Stop::Incomplete);
        }
        let end = start + len;
        if &self.buf[end..end + 2] != b"\r\n" {
            return Err(RespError::MissingCrlf { at: end }.into());
        }
        self.pos = end + 2;
        Ok(&self.buf[start..end])
    }
}

/// One reusable read buffer: bytes are read into its spare room and frames
/// parsed from its filled part, in place. It grows only for a frame larger
/// than itself, up to `max`.
pub struct ReadBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    /// The last message's bytes before its payload's length (up to and
    /// including the payload's `$`), and where its channel is in them. In
    /// a storm every message starts with the same bytes: one comparison
    /// stands for parsing them again, as a parse of the same bytes could
    /// only find the same elements.
    head: Vec<u8>,
    channel: Range<usize>,
}

/// A message whose head is longer is parsed in full each time.
const MAX_HEAD: usize = 256;

impl ReadBuffer {
    pub fn new(capacity: usize, max: usize) -> Self {
        ReadBuffer {
            buf: vec![0; capacity.max(16)],
            start: 0,
            end: 0,
            max,
            head: Vec::new(),
            channel: 0..0,
        }
    }

    /// Room to read into, never empty: the parsed bytes are dropped and
    /// the unparsed ones moved to the front first when there is none.
    pub fn spare(&mut self) -> Result<&mut [u8], RespError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() >= self.max {
                return Err(RespError::TooLarge { max: self.max });
            } else {
                let len = (self.buf.len() * 2).min(self.max);
                self.buf.resize(len, 0);
            }
        }
        Ok(&mut self.buf[self.end..])
    }

    /// Marks `n` bytes of the spare room as read.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete frame, `None` until more bytes are read.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, RespError> {
        let buf = &self.buf[self.start..self.end];
        if !self.head.is_empty() && buf.starts_with(&self.head) {
            let mut cursor = Cursor::new(buf);
            cursor.pos = self.head.len();
            // A payload that is not a complete bulk string (a null, a
            // frame cut short, junk) goes to the full parse, which says
            // what it is.
            if let Ok(Some(len)) = cursor.length()
                && let Ok(payload) = cursor.blob(len)
            {
                self.start += cursor.pos;
                let channel = &buf[self.channel.clone()];
                return Ok(Some(Frame::Message { channel, payload }));
            }
        }
        let mut cursor = Cursor::new(buf);
        match cursor.frame() {
            Ok(frame) => {
                if let Frame::Message { channel, .. } = frame {
                    self.head.clear();
                    if cursor.payload_at < MAX_HEAD {
                        self.head.extend_from_slice(&buf[..=cursor.payload_at]);
                        let at = channel.as_ptr() as usize - buf.as_ptr() as usize;
                        self.channel = at..at + channel.len();
                    }
                }
                self.start += cursor.pos;
                Ok(Some(frame))
            }
            Err(Stop::Incomplete) => Ok(None),
            Err(Stop::Bad(e)) => Err(e),
        }
    }

    /// How large the buffer has grown.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Option<(Frame<'_>, usize)> {
        parse_frame(buf).unwrap()
    }

    const PMESSAGE: &[u8] =
        b"*4\r\n$8\r\npmessage\r\n$18\r\n__keyevent@*__:set\r\n$18\r\n__keyevent@0__:set\r\n$5\r\nkey:1\r\n";

    #[test]
    fn a_resp2_pmessage_is_its_channel_and_key() {
        assert_eq!(
            parse(PMESSAGE),
            Some((
                Frame::Message {
                    channel: b"__keyevent@0__:set",
                    payload: b"key:1"
                },
                PMESSAGE.len()
            ))
        );
    }

    #[test]
    fn resp3_pushes_and_plain_messages_are_messages_too() {
        let push = b">4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$2\r\nch\r\n$1\r\nk\r\n";
        assert_eq!(
            parse(push).unwrap().0,
            Frame::Message {
                channel: b"ch",
                payload: b"k"
            }
        );
        let message = b">3\r\n+message\r\n$2\r\nch\r\n$0\r\n\r\n";
        assert_eq!(
            parse(message).unwrap().0,
            Frame::Message {
                channel: b"ch",
                payload: b""
            }
        );
    }

    #[test]
    fn every_prefix_of_a_frame_asks_for_more() {
        for n in 0..PMESSAGE.len() {
            assert_eq!(parse(&PMESSAGE[..n]), None, "prefix of {n} bytes");
        }
    }

    #[test]
    fn confirmations_errors_and_replies_are_told_apart() {
        let sub = b"*3\r\n$10\r\npsubscribe\r\n$3\r\na:*\r\n:1\r\n";
        assert_eq!(parse(sub), Some((Frame::Subscribed, sub.len())));
        assert_eq!(parse(b"-WRONGPASS no\r\n").unwrap().0, Frame::Error(b"WRONGPASS no"));
        assert_eq!(parse(b"!3\r\nbad\r\n").unwrap().0, Frame::Error(b"bad"));
        let hello = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";
        assert_eq!(parse(hello), Some((Frame::Other, hello.len())));
        let attribute = b"|1\r\n+a\r\n:1\r\n*2\r\n_\r\n#t\r\n";
        assert_eq!(parse(attribute), Some((Frame::Other, attribute.len())));
        // The wrong shape for a message: a nested array where the key is.
        let nested = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n*1\r\n$1\r\nk\r\n";
        assert_eq!(parse(nested), Some((Frame::Other, nested.len())));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic_or_a_guess() {
        assert!(matches!(parse_frame(b"?x\r\n"), Err(RespError::UnknownType { .. })));
        assert!(matches!(
            parse_frame(b"$3\r\nabcd\r\n"),
            Err(RespError::MissingCrlf { .. })
        ));
        assert!(matches!(parse_frame(b"*x\r\n"), Err(RespError::BadLength { .. })));
        assert!(matches!(parse_frame(b"%-1\r\n"), Err(RespError::BadLength { .. })));
        let deep = b"*1\r\n".repeat(100_000);
        assert_eq!(parse(&deep), None, "deep nesting waits for more, without recursion");
        assert_eq!(parse(b"*99999999999999999\r\n:1\r\n"), None);
    }

    #[test]
    fn the_buffer_reassembles_frames_split_anywhere_and_grows_for_big_ones() {
        let key = vec![b'k'; 100];
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend_from_slice(format!("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n${}\r\n", key.len()).as_bytes());
            stream.extend_from_slice(&key);
            stream.extend_from_slice(b"\r\n");
        }
        let mut buffer = ReadBuffer::new(16, 1 << 20);
        let mut got = 0;
        let mut fed = 0;
        while fed < stream.len() {
            let spare = buffer.spare().unwrap();
            let n = spare.len().min(7).min(stream.len() - fed);
            spare[..n].copy_from_slice(&stream[fed..fed + n]);
            buffer.filled(n);
            fed += n;
            while let Some(frame) = buffer.next_frame().unwrap() {
                assert_eq!(
                    frame,
                    Frame::Message {
                        channel: b"ch",
                        payload: &key
                    }
                );
                got += 1;
            }
        }
        assert_eq!(got, 3);
        assert!(buffer.capacity() >= 128, "grew to hold a frame: {}", buffer.capacity());
        let mut small = ReadBuffer::new(16, 16);
        small.spare().unwrap().copy_from_slice(&[b'*'; 16]);
        small.filled(16);
        assert!(small.next_frame().is_err() || small.spare().is_err());
    }
}
