//! The DAP base protocol's framing, without I/O: a header part (`Content-Length: N`, each
//! header line ended by `\r\n`, the part ended by an empty line) and `N` bytes of UTF-8 JSON.
//!
//! [`Decoder`] takes bytes as they arrive (whole messages, chunks, one byte at a time) and
//! yields one JSON value per message. Its limits keep a hostile or broken client from making
//! it buffer without bound. Two kinds of errors:
//!
//! - a broken header part (a line that is not an RFC 9110 field such as an HTTP request line,
//!   no `Content-Length` or two, a bad number, a line too long, a body over the limit) is
//!   **fatal**: the stream cannot be resynchronised, so the decoder stays failed and
//!   the caller drops the connection;
//! - a body that is not JSON is **recoverable**: its length was known, so decoding goes on
//!   with the next message and the caller answers the bad one with an error response.

use serde_json::Value;

/// Longest header part accepted (all header lines together).
pub const MAX_HEADER: usize = 8 * 1024;
/// Largest message body accepted. Clients send small requests; a `launch` with a large
/// environment stays far below this.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("the header part exceeds {MAX_HEADER} bytes")]
    HeaderTooLong,
    #[error("a header line is not ASCII")]
    HeaderNotAscii,
    #[error("malformed header line {0:?}")]
    BadHeaderLine(String),
    #[error("no Content-Length header")]
    NoContentLength,
    #[error("more than one Content-Length header")]
    DuplicateContentLength,
    #[error("bad Content-Length {0:?}")]
    BadContentLength(String),
    #[error("a body of {0} bytes exceeds the limit of {MAX_BODY} bytes")]
    BodyTooLarge(usize),
    /// The body is not a JSON value (recoverable: the next message decodes normally).
    #[error("the message is not valid JSON: {0}")]
    BadJson(String),
}

impl CodecError {
    /// Whether the stream is unusable after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, CodecError::BadJson(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Body(usize),
}

/// Incremental decoder of DAP messages.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next unread byte of `buf` is (bytes before it are consumed).
    pos: usize,
    state: State,
    failed: Option<CodecError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder { buf: Vec::new(), pos: 0, state: State::Header, failed: None }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete message: `Ok(None)` when more bytes are needed. After a fatal error
    /// every call returns that error again.
    pub fn next_message(&mut self) -> Result<Option<Value>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.step();
        if let Err(e) = &result {
            if e.is_fatal() {
                self.failed = Some(e.clone());
                self.buf = Vec::new();
                self.pos = 0;
            }
        }
        self.compact();
        result
    }

    fn step(&mut self) -> Result<Option<Value>, CodecError> {
        loop {
            let pending = self.buf.get(self.pos..).unwrap_or_default();
            match self.state {
                State::Header => {
                    let Some(end) = find(pending, b"\r\n\r\n") else {
                        // Still within the limit? Then wait for more.
                        if pending.len() > MAX_HEADER {
                            return Err(CodecError::HeaderTooLong);
                        }
                        return Ok(None);
                    };
                    if end > MAX_HEADER {
                        return Err(CodecError::HeaderTooLong);
                    }
                    let length = parse_header(pending.get(..end).unwrap_or_default())?;
                    self.pos += end + 4;
                    self.state = State::Body(length);
                }
                State::Body(length) => {
                    let Some(body) = pending.get(..length) else { return Ok(None) };
                    let parsed = serde_json::from_slice::<Value>(body);
                    self.pos += length;
                    self.state = State::Header;
                    return parsed.map(Some).map_err(|e| CodecError::BadJson(e.to_string()));
                }
            }
        }
    }

    /// Drops consumed bytes once they make up most of the buffer.
    fn compact(&mut self) {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos.min(self.buf.len()));
            self.pos = 0;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The body length from a header part (without its final empty line). Each line must be an
/// RFC 9110 field, `NAME: VALUE`: a name made of token characters right before the colon, a
/// value of visible characters, spaces and tabs. Anything else (an HTTP request line, a line
/// folded onto the previous one, a control character) is not a DAP client talking, and ends
/// the connection.
fn parse_header(header: &[u8]) -> Result<usize, CodecError> {
    let text = std::str::from_utf8(header).ok().filter(|t| t.is_ascii()).ok_or(CodecError::HeaderNotAscii)?;
    let mut length = None;
    for line in text.split("\r\n") {
        let bad_line = || CodecError::BadHeaderLine(line.chars().take(80).collect());
        let (name, value) = line.split_once(':').ok_or_else(bad_line)?;
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(bad_line());
        }
        if !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            return Err(bad_line());
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(CodecError::DuplicateContentLength);
            }
            let n = value
                .parse::<usize>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| CodecError::BadContentLength(value.chars().take(40).collect()))?;
            if n > MAX_BODY {
                return Err(CodecError::BodyTooLarge(n));
            }
            length = Some(n);
        }
        // Other fields (Content-Type) carry nothing we need.
    }
    length.ok_or(CodecError::NoContentLength)
}

/// RFC 9110 `tchar`: what a field name is made of.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One message, framed.
pub fn encode(message: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail: its keys are strings and it holds no foreign types.
    let body = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages() -> (Vec<u8>, Vec<Value>) {
        let values = vec![
            json!({"seq": 1, "type": "request", "command": "initialize", "arguments": {"adapterID": "pymri"}}),
            json!({"seq": 2, "type": "request", "command": "evaluate",
                   "arguments": {"expression": "'é' + \"\\r\\n\\r\\n\"", "context": "repl"}}),
            json!({"seq": 3, "type": "request", "command": "threads"}),
        ];
        let mut bytes = Vec::new();
        for v in &values {
            bytes.extend(encode(v));
        }
        (bytes, values)
    }

    fn drain(decoder: &mut Decoder) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = decoder.next_message().expect("valid stream") {
            out.push(v);
        }
        out
    }

    #[test]
    fn whole_chunked_and_byte_at_a_time() {
        let (bytes, values) = messages();
        for chunk in [bytes.len(), 1000, 7, 3, 1] {
            let mut decoder = Decoder::new();
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                decoder.push(piece);
                got.extend(drain(&mut decoder));
            }
            assert_eq!(got, values, "chunks of {chunk}");
            assert!(decoder.buf.len() - decoder.pos == 0);
        }
    }

    #[test]
    fn other_headers_and_case_are_accepted() {
        let mut decoder = Decoder::new();
        decoder
            .push(b"content-length:  2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{}");
        assert_eq!(decoder.next_message(), Ok(Some(json!({}))));
        decoder.push(b"Content-Length:\t2 \t\r\nX-Custom_1.a~: \r\n\r\n{}");
        assert_eq!(decoder.next_message(), Ok(Some(json!({}))));
    }

    #[test]
    fn bad_json_is_recoverable() {
        let mut decoder = Decoder::new();
        decoder.push(b"Content-Length: 5\r\n\r\n{oops");
        decoder.push(&encode(&json!({"seq": 9})));
        assert!(matches!(decoder.next_message(), Err(CodecError::BadJson(_))));
        assert_eq!(decoder.next_message(), Ok(Some(json!({"seq": 9}))));
        // Not UTF-8 either.
        decoder.push(b"Content-Length: 2\r\n\r\n\xff\xfe");
        assert!(matches!(decoder.next_message(), Err(CodecError::BadJson(_))));
        assert_eq!(decoder.next_message(), Ok(None));
    }

    #[test]
    fn broken_headers_are_fatal_and_stay_so() {
        for (input, expected) in [
            (&b"Content-Length: x\r\n\r\n"[..], CodecError::BadContentLength("x".into())),
            (b"Content-Length: -1\r\n\r\n", CodecError::BadContentLength("-1".into())),
            (b"Content-Length: +5\r\n\r\n", CodecError::BadContentLength("+5".into())),
            (
                b"Content-Length: 99999999999999999999999\r\n\r\n",
                CodecError::BadContentLength("99999999999999999999999".into()),
            ),
            (b"Content-Type: json\r\n\r\n", CodecError::NoContentLength),
            (b"GET / HTTP/1.1\r\n\r\n", CodecError::BadHeaderLine("GET / HTTP/1.1".into())),
            // A colon in the request line's target does not make it a field.
            (
                b"POST /x:y HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
                CodecError::BadHeaderLine("POST /x:y HTTP/1.1".into()),
            ),
            (b"Content-Length : 2\r\n\r\n{}", CodecError::BadHeaderLine("Content-Length : 2".into())),
            (b" Content-Length: 2\r\n\r\n{}", CodecError::BadHeaderLine(" Content-Length: 2".into())),
            (b": 2\r\nContent-Length: 2\r\n\r\n{}", CodecError::BadHeaderLine(": 2".into())),
            (
                b"X-A: \x1b[2J\r\nContent-Length: 2\r\n\r\n{}",
                CodecError::BadHeaderLine("X-A: \x1b[2J".into()),
            ),
            (
                b"Content-Length: 2\nX: y\r\n\r\n{}",
                CodecError::BadHeaderLine("Content-Length: 2\nX: y".into()),
            ),
            (b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", CodecError::DuplicateContentLength),
            (b"Content-Length: 1\xff\r\n\r\n", CodecError::HeaderNotAscii),
            (b"Content-Length: 999999999\r\n\r\n", CodecError::BodyTooLarge(999_999_999)),
        ] {
            let mut decoder = Decoder::new();
            decoder.push(input);
            assert_eq!(decoder.next_message(), Err(expected.clone()), "{input:?}");
            assert!(expected.is_fatal());
            decoder.push(&encode(&json!({})));
            assert_eq!(decoder.next_message(), Err(expected), "stays failed");
        }
    }

    #[test]
    fn endless_headers_are_refused_without_buffering_forever() {
        let mut decoder = Decoder::new();
        let mut result = Ok(None);
        for _ in 0..MAX_HEADER {
            decoder.push(b"X: y\r\n");
            result = decoder.next_message();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(CodecError::HeaderTooLong));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic generator: the fuzz target explores further.
        let mut x: u32 = 0x1234_5678;
        for round in 0..2000 {
            let mut decoder = Decoder::new();
            let len = (round % 97) + 1;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                bytes.push(match x % 7 {
                    0 => b'\r',
                    1 => b'\n',
                    2 => b':',
                    3 => b'0' + (x % 10) as u8,
                    _ => (x >> 8) as u8,
                });
            }
            if round % 3 == 0 {
                bytes.splice(0..0, b"Content-Length: 3\r\n\r\n".iter().copied());
            }
            for piece in bytes.chunks((round % 5) + 1) {
                decoder.push(piece);
                while let Ok(Some(_)) | Err(CodecError::BadJson(_)) = decoder.next_message() {}
            }
        }
    }
}
