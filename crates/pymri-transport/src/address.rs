//! Addresses as both sides write them (`docs/transports.md` §1): `SCHEME:REST`.
//!
//! | address | meaning |
//! | --- | --- |
//! | `tcp:HOST:PORT` | TCP; `HOST` a name, an IPv4 address or a bracketed IPv6 address |
//! | `tls:HOST:PORT` | TCP, then TLS with pymri as the TLS server |
//! | `unix:PATH` | a Unix stream socket |
//! | `fifo:DIR` | `DIR/to-agent` (we write) and `DIR/from-agent` (we read) |
//! | `fd:N` | an inherited, connected socket (launchers only) |
//!
//! On a command line, `[ADDR:]PORT` means `tcp:ADDR:PORT` with `ADDR` defaulting to
//! `127.0.0.1` ([`parse_listen`]). Parsing is total: any text gives an address or an error that
//! says what is wrong, never a panic (`fuzz/` checks it).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Longest host name DNS allows.
const MAX_HOST_NAME: usize = 253;
/// Longest path a Unix socket address holds (`sun_path`, minus its NUL); FIFO directories are
/// only bounded by `PATH_MAX`.
const MAX_UNIX_PATH: usize = 107;
const MAX_PATH: usize = 4095;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    /// A name to resolve (`localhost`, `myhost.example`).
    Name(String),
}

impl Host {
    /// Whether this host is this machine's loopback interface, without resolving names other
    /// than `localhost`.
    pub fn is_loopback(&self) -> bool {
        match self {
            Host::Ip(ip) => ip.to_canonical().is_loopback(),
            Host::Name(name) => name.eq_ignore_ascii_case("localhost"),
        }
    }

    /// The socket addresses of this host at `port`, in the resolver's order: an IP as it is, a
    /// name through the system's resolver (the one place pymri resolves names).
    pub fn socket_addrs(&self, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
            Host::Name(name) => Ok((name.as_str(), port).to_socket_addrs()?.collect()),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Tcp { host: Host, port: u16 },
    Tls { host: Host, port: u16 },
    Unix(PathBuf),
    Fifo(PathBuf),
    Fd(i32),
}

impl Address {
    /// Parses `SCHEME:REST` (§1).
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        let bad = |why: &str| AddressError::new(text, why);
        let Some((scheme, rest)) = text.split_once(':') else {
            return Err(bad("it has no scheme (tcp:, tls:, unix:, fifo:)"));
        };
        match scheme {
            "tcp" | "tls" => {
                let (host, port) = parse_host_port(rest).map_err(|why| bad(&why))?;
                Ok(if scheme == "tcp" { Address::Tcp { host, port } } else { Address::Tls { host, port } })
            }
            "unix" => Ok(Address::Unix(parse_path(rest, MAX_UNIX_PATH).map_err(|why| bad(&why))?)),
            "fifo" => Ok(Address::Fifo(parse_path(rest, MAX_PATH).map_err(|why| bad(&why))?)),
            "fd" => {
                let n = parse_decimal(rest)
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| bad("a descriptor is a number (fd:N)"))?;
                Ok(Address::Fd(n))
            }
            _ if parse_host_port(text).is_ok() => {
                Err(bad(&format!("it has no scheme; for TCP, write tcp:{text}")))
            }
            _ => Err(bad(&format!("unknown scheme {scheme:?} (tcp:, tls:, unix:, fifo:, fd:)"))),
        }
    }

    /// The host and port of a TCP address (plain or TLS).
    pub fn host_port(&self) -> Option<(&Host, u16)> {
        match self {
            Address::Tcp { host, port } | Address::Tls { host, port } => Some((host, *port)),
            _ => None,
        }
    }

    /// Whether only this machine can use the address: a Unix socket, a FIFO pair, an inherited
    /// descriptor, or TCP on a loopback address (§3: such listeners may make their own secret).
    pub fn is_local(&self) -> bool {
        self.host_port().is_none_or(|(host, _)| host.is_loopback())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Address::Tls { host, port } => write!(f, "tls:{host}:{port}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Fifo(path) => write!(f, "fifo:{}", path.display()),
            Address::Fd(n) => write!(f, "fd:{n}"),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(text: &str) -> Result<Address, AddressError> {
        Address::parse(text)
    }
}

/// `[ADDR:]PORT` of a command line: `tcp:ADDR:PORT`, `ADDR` defaulting to `127.0.0.1`.
pub fn parse_listen(text: &str) -> Result<Address, AddressError> {
    if let Some(port) = parse_port(text) {
        return Ok(Address::Tcp { host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)), port });
    }
    let (host, port) = parse_host_port(text).map_err(|why| AddressError::new(text, &why))?;
    Ok(Address::Tcp { host, port })
}

fn parse_host_port(text: &str) -> Result<(Host, u16), String> {
    let (host, port) = if let Some(inner) = text.strip_prefix('[') {
        let (ip, after) = inner.split_once(']').ok_or("an IPv6 address needs its closing ']'")?;
        let port = after.strip_prefix(':').ok_or("the port is missing after the IPv6 address")?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or("expected HOST:PORT")?;
        if host.contains(':') {
            return Err("an IPv6 address goes in brackets: [::1]:PORT".into());
        }
        let host = match host.parse::<Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) => Host::Name(check_name(host)?),
        };
        (host, port)
    };
    let port = parse_port(port).ok_or_else(|| format!("{port:?} is not a port number (0-65535)"))?;
    Ok((host, port))
}

/// A DNS name as `getaddrinfo` takes it: letters, digits, `-`, `_` and dots.
fn check_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the host is missing".into());
    }
    if name.len() > MAX_HOST_NAME {
        return Err("the host name is longer than 253 characters".into());
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
        return Err(format!("{name:?} is not a host name or an IP address"));
    }
    Ok(name.to_string())
}

fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_port(text: &str) -> Option<u16> {
    parse_decimal(text).and_then(|n| u16::try_from(n).ok())
}

fn parse_path(text: &str, max: usize) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the path is missing".into());
    }
    if text.contains('\0') {
        return Err("a path cannot contain a NUL byte".into());
    }
    if text.len() > max {
        return Err(format!("the path is longer than {max} bytes"));
    }
    Ok(PathBuf::from(text))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an address: {why}\nhint: addresses are tcp:HOST:PORT, tls:HOST:PORT, unix:PATH or fifo:DIR")]
pub struct AddressError {
    text: String,
    why: String,
}

impl AddressError {
    fn new(text: &str, why: &str) -> AddressError {
        // Bounded, so that a huge argument does not make a huge message.
        let text: String = text.chars().take(200).collect();
        AddressError { text, why: why.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Address {
        Address::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_scheme_of_the_table() {
        assert_eq!(ok("tcp:myhost:5678"), Address::Tcp { host: Host::Name("myhost".into()), port: 5678 });
        assert_eq!(
            ok("tls:10.1.2.3:443"),
            Address::Tls { host: Host::Ip("10.1.2.3".parse().expect("ip")), port: 443 }
        );
        assert_eq!(
            ok("tcp:[::1]:5678"),
            Address::Tcp { host: Host::Ip("::1".parse().expect("ip")), port: 5678 }
        );
        assert_eq!(ok("unix:/tmp/app.sock"), Address::Unix("/tmp/app.sock".into()));
        assert_eq!(ok("fifo:/tmp/app.dbg"), Address::Fifo("/tmp/app.dbg".into()));
        assert_eq!(ok("fd:3"), Address::Fd(3));
        // Paths keep colons; only the first one ends the scheme.
        assert_eq!(ok("unix:/tmp/a:b"), Address::Unix("/tmp/a:b".into()));
    }

    #[test]
    fn addresses_print_as_they_parse() {
        for text in ["tcp:myhost:5678", "tls:[fe80::1]:1", "tcp:127.0.0.1:0", "unix:/s", "fifo:/d", "fd:0"] {
            assert_eq!(ok(text).to_string(), text);
        }
    }

    #[test]
    fn malformed_addresses_say_why() {
        let cases = [
            ("localhost:5678", "no scheme; for TCP, write tcp:localhost:5678"),
            ("/tmp/sock", "no scheme"),
            ("http:x:1", "unknown scheme"),
            ("tcp:myhost", "HOST:PORT"),
            ("tcp::5678", "host is missing"),
            ("tcp:host:65536", "not a port"),
            ("tcp:host:-1", "not a port"),
            ("tcp:host:+1", "not a port"),
            ("tcp:host:", "not a port"),
            ("tcp:::1:5678", "brackets"),
            ("tcp:[::1]5678", "port is missing"),
            ("tcp:[::1:5678", "closing"),
            ("tcp:[nope]:1", "not an IPv6"),
            ("tcp:my host:1", "not a host name"),
            ("unix:", "path is missing"),
            ("fifo:", "path is missing"),
            ("unix:a\0b", "NUL"),
            ("fd:x", "number"),
            ("fd:99999999999", "number"),
        ];
        for (text, why) in cases {
            let err = Address::parse(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains("hint: addresses are"), "{err}");
        }
        let long = format!("unix:/{}", "a".repeat(200));
        assert!(Address::parse(&long).expect_err("long").to_string().contains("longer than"));
    }

    #[test]
    fn listen_addresses_default_to_loopback() {
        assert_eq!(parse_listen("5678").expect("port").to_string(), "tcp:127.0.0.1:5678");
        assert_eq!(parse_listen("0.0.0.0:5678").expect("any").to_string(), "tcp:0.0.0.0:5678");
        assert_eq!(parse_listen("[::]:1").expect("v6").to_string(), "tcp:[::]:1");
        assert_eq!(parse_listen("localhost:9").expect("name").to_string(), "tcp:localhost:9");
        assert!(parse_listen("tcp:1.2.3.4:5").is_err());
        assert!(parse_listen("99999").is_err());
    }

    #[test]
    fn loopback_is_decided_without_resolving() {
        for text in [
            "tcp:127.0.0.1:1",
            "tcp:127.8.9.10:1",
            "tls:[::1]:1",
            "tcp:LocalHost:1",
            "tcp:[::ffff:127.0.0.1]:1",
        ] {
            assert!(ok(text).is_local(), "{text}");
        }
        for text in ["tcp:0.0.0.0:1", "tls:[::]:1", "tcp:myhost:1", "tcp:10.0.0.1:1"] {
            assert!(!ok(text).is_local(), "{text}");
        }
        assert!(ok("unix:/s").is_local() && ok("fifo:/d").is_local());
    }
}
