//! Just enough HTTP/1.1 for one page and its API: requests parsed by `httparse` within fixed
//! limits, bodies only with `Content-Length`, every answer closes the connection.
//!
//! Anything unusual is refused rather than interpreted: a head over [`MAX_HEAD`] bytes or
//! [`MAX_HEADERS`] headers, a body over [`MAX_BODY`], `Transfer-Encoding` (no chunked bodies,
//! and so no ambiguity about where a request ends), several or non-numeric `Content-Length`s,
//! a request target that is not a path. Reading never panics, whatever the bytes.

use std::io::{self, Read, Write};

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;
/// Largest request body (the API's JSON requests are small).
pub const MAX_BODY: usize = 1024 * 1024;

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// What follows `?`, undecoded (empty if none).
    pub query: String,
    /// Names lowercased; values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    /// Every value of a header (`name` in lowercase).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// The only value of a header, as text.
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        let mut values = self.headers_named(name);
        match (values.next(), values.next()) {
            (Some(v), None) => std::str::from_utf8(v).ok().map(str::trim),
            _ => None,
        }
    }

    /// Whether a comma-separated header (`Connection: keep-alive, Upgrade`) holds `token`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection before sending anything.
    #[error("connection closed")]
    Closed,
    #[error("request too large")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("unsupported request: {0}")]
    Unsupported(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl ReadError {
    /// The status to answer with, if an answer makes sense.
    pub fn status(&self) -> Option<u16> {
        match self {
            ReadError::Closed | ReadError::Io(_) => None,
            ReadError::TooLarge => Some(413),
            ReadError::Malformed(_) => Some(400),
            ReadError::Unsupported(_) => Some(501),
        }
    }
}

/// Reads requests from a stream, keeping bytes that arrived past the last one.
pub struct Reader<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: Read> Reader<S> {
    pub fn new(stream: S) -> Reader<S> {
        Reader { stream, buf: Vec::new() }
    }

    /// The stream and the bytes read beyond the last request (a WebSocket's first frames).
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.stream, self.buf)
    }

    fn fill(&mut self) -> Result<usize, ReadError> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads one request.
    pub fn request(&mut self) -> Result<Request, ReadError> {
        let (head_len, mut request, content_length) = loop {
            if let Some(parsed) = parse_head(&self.buf)? {
                break parsed;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::TooLarge);
            }
            if self.fill()? == 0 {
                return Err(if self.buf.is_empty() {
                    ReadError::Closed
                } else {
                    ReadError::Malformed("the connection ended inside the request head")
                });
            }
        };
        self.buf.drain(..head_len);
        while self.buf.len() < content_length {
            if self.fill()? == 0 {
                return Err(ReadError::Malformed("the connection ended inside the body"));
            }
        }
        request.body = self.buf.drain(..content_length).collect();
        Ok(request)
    }
}

/// Parses a complete head at the start of `buf`: its length, the request without its body,
/// and the body's length. `None` if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Request, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::TooLarge),
        Err(_) => return Err(ReadError::Malformed("not an HTTP/1.x request")),
    };
    if head_len > MAX_HEAD {
        return Err(ReadError::TooLarge);
    }
    let method = parsed.method.ok_or(ReadError::Malformed("no method"))?.to_string();
    let target = parsed.path.ok_or(ReadError::Malformed("no request target"))?;
    if !target.starts_with('/') {
        return Err(ReadError::Malformed("the request target is not a path"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let headers: Vec<(String, Vec<u8>)> =
        parsed.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect();
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(ReadError::Unsupported("Transfer-Encoding"));
    }
    let mut lengths = headers.iter().filter(|(n, _)| n == "content-length").map(|(_, v)| v);
    let content_length = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(v), None) => {
            let text = std::str::from_utf8(v).map_err(|_| ReadError::Malformed("Content-Length"))?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReadError::Malformed("Content-Length"));
            }
            let n: usize = text.parse().map_err(|_| ReadError::TooLarge)?;
            if n > MAX_BODY {
                return Err(ReadError::TooLarge);
            }
            n
        }
        (Some(_), Some(_)) => return Err(ReadError::Malformed("several Content-Length headers")),
    };
    Ok(Some((head_len, Request { method, path, query, headers, body: Vec::new() }, content_length)))
}

/// A response; every one closes the connection.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: vec![("Content-Type", content_type.to_string())], body: body.into() }
    }

    pub fn text(status: u16, body: &str) -> Response {
        let mut body = body.to_string();
        body.push('\n');
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn json(value: &serde_json::Value) -> Response {
        Response::new(200, "application/json", value.to_string())
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        // The page may run code in the program: it is never cached, framed or sniffed, and its
        // URL (with the token) is never sent as a referrer.
        head.push_str(
            "Cache-Control: no-store\r\n\
             X-Content-Type-Options: nosniff\r\n\
             X-Frame-Options: DENY\r\n\
             Referrer-Policy: no-referrer\r\n\
             Connection: close\r\n",
        );
        head.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        out.write_all(head.as_bytes())?;
        out.write_all(&self.body)?;
        out.flush()
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(bytes: &[u8]) -> Result<Request, ReadError> {
        Reader::new(Cursor::new(bytes.to_vec())).request()
    }

    #[test]
    fn requests_with_and_without_bodies() {
        let r = read(b"GET /x?token=ab&y=1 HTTP/1.1\r\nHost: h\r\nCookie: a=b\r\n\r\n").expect("ok");
        assert_eq!((r.method.as_str(), r.path.as_str(), r.query.as_str()), ("GET", "/x", "token=ab&y=1"));
        assert_eq!(r.header("host"), Some("h"));
        let r = read(b"POST /api HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"a\":1}extra").expect("ok");
        assert_eq!(r.body, b"{\"a\":1}");
        let mut reader = Reader::new(Cursor::new(b"GET / HTTP/1.1\r\n\r\nleft".to_vec()));
        reader.request().expect("ok");
        assert_eq!(reader.into_parts().1, b"left");
    }

    #[test]
    fn malformed_and_oversized_requests_are_errors() {
        let cases: &[(&[u8], u16)] = &[
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET http://evil/ HTTP/1.1\r\n\r\n", 400),
            (b"GET * HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
            (b"GET / HTTP/9.9\r\n\r\n", 400),
            (b"\x00\x01\x02\xff\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413),
            (b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
            (b"GET / HTTP/1.1\r\nHost: x\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 400),
        ];
        for (bytes, status) in cases {
            let e = read(bytes).expect_err(&String::from_utf8_lossy(bytes));
            assert_eq!(e.status(), Some(*status), "{:?}: {e}", String::from_utf8_lossy(bytes));
        }
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert_eq!(read(&long).expect_err("too long").status(), Some(413));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            many.extend(format!("X{i}: 1\r\n").bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(read(&many).expect_err("too many").status(), Some(413));
        assert!(matches!(read(b""), Err(ReadError::Closed)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic pseudo-random walk over short inputs built from HTTP-ish pieces.
        let pieces: &[&[u8]] = &[
            b"GET ",
            b"POST ",
            b"/",
            b"?",
            b"token=",
            b" HTTP/1.1",
            b"\r\n",
            b"\n",
            b":",
            b" ",
            b"Content-Length: ",
            b"5",
            b"\xff",
            b"\x00",
            b"Host: 127.0.0.1:1",
            b"Upgrade",
            b"=",
            b";",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            let mut input = Vec::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.extend_from_slice(pieces[(seed % pieces.len() as u64) as usize]);
            }
            let _ = read(&input);
        }
    }
}
