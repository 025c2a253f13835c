//! Who may talk to the server, checked on every request before anything else happens.
//!
//! A debugger page can run arbitrary code in the program, so the server trusts nothing about
//! a connection but what it proves:
//!
//! - **Loopback only.** [`check_listen`] refuses any other address: without TLS, anyone on the
//!   path could read the token and drive the debugger.
//! - **Host.** The `Host` header must name the address served (`127.0.0.1:PORT`, or
//!   `localhost:PORT` on a loopback address). A page of another site whose name an attacker
//!   re-pointed at 127.0.0.1 (DNS rebinding) sends its own name here, and is refused.
//! - **Origin.** When a browser says where a request comes from, it must be this very server:
//!   another site's page cannot post to the API or open the event socket (cross-site WebSocket
//!   hijacking), even though the browser would reach 127.0.0.1.
//! - **Token.** A per-session random token (32 bytes, hex) must come with every request, in the
//!   `token` query parameter or in the cookie the page was served with. It is compared in
//!   constant time.
//!
//! Any failure is `403 Forbidden` with no detail beyond which check failed.

use crate::http::Request;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Host` header, several, or one naming another server.
    Host,
    /// An `Origin` that is not this server (`null` included).
    Origin,
    /// No token, or a wrong one.
    Token,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denied::Host => "the Host header does not name this server",
            Denied::Origin => "the request comes from another origin",
            Denied::Token => "a valid session token is required",
        })
    }
}

/// A listening address that is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    #[error("--listen {0}: expected PORT, ADDRESS:PORT or [IPv6]:PORT with an IP address or `localhost`")]
    Syntax(String),
    #[error(
        "refusing to serve the debugger on {0}: it is not a loopback address, and whoever reaches \
         it could run code in the program\nhint: serving beyond this machine needs a secured \
         transport (TLS and a secret), which pymri web does not offer yet; keep the default \
         loopback address and forward the port instead (ssh -L PORT:127.0.0.1:PORT HOST)"
    )]
    NotLoopback(SocketAddr),
}

/// Parses `--listen`: `PORT`, `ADDRESS:PORT`, `[IPv6]:PORT` or `localhost:PORT`. A bare port
/// listens on 127.0.0.1; port 0 picks a free one.
pub fn parse_listen(text: &str) -> Result<SocketAddr, ListenError> {
    let syntax = || ListenError::Syntax(text.to_string());
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(syntax)?;
    let port = port.parse::<u16>().map_err(|_| syntax())?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(syntax())
}

/// Refuses addresses other than loopback ones (127.0.0.0/8, ::1).
pub fn check_listen(addr: SocketAddr) -> Result<(), ListenError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ListenError::NotLoopback(addr))
    }
}

/// The checks of one server: its token and the `Host` values that name it.
pub struct Guard {
    token: String,
    hosts: Vec<String>,
    cookie: String,
}

impl Guard {
    /// `addr` is the address actually bound (its real port).
    pub fn new(addr: SocketAddr, token: String) -> Guard {
        let port = addr.port();
        let mut hosts = vec![match addr.ip() {
            IpAddr::V4(ip) => format!("{ip}:{port}"),
            IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        }];
        if addr.ip().is_loopback() {
            hosts.push(format!("localhost:{port}"));
        }
        // Cookies are shared by every port of a host: the name carries the port, so that two
        // sessions at once do not overwrite each other's.
        Guard { token, hosts, cookie: format!("pymri_token_{port}") }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The cookie that carries the token (`name=value` attributes for `Set-Cookie`).
    pub fn set_cookie(&self) -> String {
        format!("{}={}; Path=/; HttpOnly; SameSite=Strict", self.cookie, self.token)
    }

    /// The `Host` value a URL of this server uses.
    pub fn host(&self) -> &str {
        &self.hosts[0]
    }

    /// Runs every check, in order: Host, Origin, token.
    pub fn check(&self, request: &Request) -> Result<(), Denied> {
        self.check_host(request)?;
        self.check_origin(request)?;
        self.check_token(request)
    }

    /// Whether `host` (a `Host` value, or an origin's) names this server.
    fn is_ours(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    fn check_host(&self, request: &Request) -> Result<(), Denied> {
        // Exactly one, as text.
        let host = request.header("host").ok_or(Denied::Host)?;
        if self.is_ours(host) {
            Ok(())
        } else {
            Err(Denied::Host)
        }
    }

    fn check_origin(&self, request: &Request) -> Result<(), Denied> {
        if request.headers_named("origin").next().is_none() {
            return Ok(());
        }
        // One, as text, `http://` and this server.
        let origin = request.header("origin").ok_or(Denied::Origin)?;
        let host = origin.strip_prefix("http://").ok_or(Denied::Origin)?;
        if self.is_ours(host) {
            Ok(())
        } else {
            Err(Denied::Origin)
        }
    }

    fn check_token(&self, request: &Request) -> Result<(), Denied> {
        let from_query = request
            .query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(k, _)| *k == "token")
            .map(|(_, v)| v.as_bytes());
        let from_cookies =
            request.headers_named("cookie").flat_map(|h| h.split(|&b| b == b';')).filter_map(|c| {
                let c = trim(c);
                let eq = c.iter().position(|&b| b == b'=')?;
                (&c[..eq] == self.cookie.as_bytes()).then(|| &c[eq + 1..])
            });
        // Every candidate is compared (no early exit on the first mismatch).
        let mut ok = false;
        for candidate in from_query.chain(from_cookies) {
            ok |= constant_time_eq(candidate, self.token.as_bytes());
        }
        if ok {
            Ok(())
        } else {
            Err(Denied::Token)
        }
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// Equality whose time does not depend on where the inputs differ (only on their lengths,
/// and the token's length is no secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn request(target: &str, headers: &[(&str, &str)]) -> Request {
        let mut raw = format!("GET {target} HTTP/1.1\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        let mut reader = crate::http::Reader::new(std::io::Cursor::new(raw.into_bytes()));
        reader.request().expect("parses")
    }

    fn guard() -> Guard {
        Guard::new("127.0.0.1:4321".parse().expect("addr"), TOKEN.into())
    }

    #[test]
    fn host_must_name_this_server() {
        let g = guard();
        let q = format!("/?token={TOKEN}");
        for ok in ["127.0.0.1:4321", "localhost:4321", "LOCALHOST:4321"] {
            assert_eq!(g.check(&request(&q, &[("Host", ok)])), Ok(()), "{ok}");
        }
        for bad in ["evil.example:4321", "127.0.0.1:4322", "127.0.0.1", "localhost", "", "127.0.0.2:4321"] {
            assert_eq!(g.check(&request(&q, &[("Host", bad)])), Err(Denied::Host), "{bad}");
        }
        assert_eq!(g.check(&request(&q, &[])), Err(Denied::Host), "no Host");
        assert_eq!(
            g.check(&request(&q, &[("Host", "127.0.0.1:4321"), ("Host", "evil.example")])),
            Err(Denied::Host),
            "two Hosts"
        );
    }

    #[test]
    fn origin_when_present_must_be_this_server() {
        let g = guard();
        let q = format!("/?token={TOKEN}");
        let host = ("Host", "127.0.0.1:4321");
        assert_eq!(g.check(&request(&q, &[host, ("Origin", "http://127.0.0.1:4321")])), Ok(()));
        assert_eq!(g.check(&request(&q, &[host, ("Origin", "http://localhost:4321")])), Ok(()));
        for bad in [
            "http://evil.example",
            "http://evil.example:4321",
            "https://127.0.0.1:4321",
            "http://127.0.0.1:80",
            "null",
            "",
        ] {
            assert_eq!(g.check(&request(&q, &[host, ("Origin", bad)])), Err(Denied::Origin), "{bad}");
        }
    }

    #[test]
    fn token_from_query_or_cookie() {
        let g = guard();
        let host = ("Host", "localhost:4321");
        assert_eq!(g.check(&request(&format!("/api?x=1&token={TOKEN}"), &[host])), Ok(()));
        let cookie = format!("other=1; pymri_token_4321={TOKEN}");
        assert_eq!(g.check(&request("/", &[host, ("Cookie", &cookie)])), Ok(()));
        assert_eq!(g.check(&request("/", &[host])), Err(Denied::Token));
        assert_eq!(g.check(&request("/?token=", &[host])), Err(Denied::Token));
        let wrong = TOKEN.replace('f', "e");
        assert_eq!(g.check(&request(&format!("/?token={wrong}"), &[host])), Err(Denied::Token));
        assert_eq!(g.check(&request(&format!("/?token={TOKEN}0"), &[host])), Err(Denied::Token));
        assert_eq!(g.check(&request(&format!("/?tok={TOKEN}"), &[host])), Err(Denied::Token));
        // Another session's cookie (another port) is not ours.
        let theirs = format!("pymri_token_4322={TOKEN}");
        assert_eq!(g.check(&request("/", &[host, ("Cookie", &theirs)])), Err(Denied::Token));
        // A wrong token next to the right one still passes; order does not matter.
        assert_eq!(g.check(&request(&format!("/?token=x&token={TOKEN}"), &[host])), Ok(()));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("8080").expect("port"), "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(parse_listen("localhost:0").expect("port"), "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(parse_listen("[::1]:9").expect("v6"), "[::1]:9".parse().expect("addr"));
        assert!(parse_listen("example.org:80").is_err());
        assert!(parse_listen("127.0.0.1:99999").is_err());
        assert!(parse_listen("").is_err());
        for ok in ["127.0.0.1:1", "127.3.2.1:1", "[::1]:1"] {
            check_listen(ok.parse().expect("addr")).expect(ok);
        }
        for bad in ["0.0.0.0:1", "192.168.1.2:1", "[::]:1", "10.0.0.1:5"] {
            let e = check_listen(bad.parse().expect("addr")).expect_err(bad);
            assert!(e.to_string().contains("secured transport (TLS and a secret)"), "{e}");
        }
    }

    #[test]
    fn ipv6_hosts() {
        let g = Guard::new("[::1]:77".parse().expect("addr"), TOKEN.into());
        let q = format!("/?token={TOKEN}");
        assert_eq!(g.check(&request(&q, &[("Host", "[::1]:77")])), Ok(()));
        assert_eq!(g.check(&request(&q, &[("Host", "localhost:77")])), Ok(()));
        assert_eq!(g.check(&request(&q, &[("Host", "127.0.0.1:77")])), Err(Denied::Host));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
