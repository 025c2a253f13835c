//! Who is at the other end of a loopback TCP connection: the user owning the client's socket.
//!
//! An editor connects to `pymri dap --listen` over TCP (VS Code's `debugServer`, nvim-dap's
//! `server` adapters), and TCP carries no credentials. On loopback both sockets live in this
//! network namespace, and the kernel lists each with its owner in `/proc/net/tcp` (IPv4) and
//! `/proc/net/tcp6`: the client's socket is the entry whose local address is the peer address
//! `accept` returned and whose remote address is our end. Its `uid` is the user whose process
//! created the socket, which no unprivileged user can forge.
//!
//! Only an `ESTABLISHED` entry counts. A client that closes at once leaves a time-wait entry,
//! which the kernel lists with uid 0: taking it would let anyone pass for root.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The state column's value for `TCP_ESTABLISHED`.
const ESTABLISHED: &str = "01";

/// The uid owning the client's socket of the loopback connection `ours` (our end) ↔ `peer`, or
/// `None` if no established socket matches (the client left, or it is not on this machine).
pub fn tcp_peer_uid(ours: SocketAddr, peer: SocketAddr) -> io::Result<Option<u32>> {
    // A v6 socket may reach a v4 listener through a mapped address: look in both tables.
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let file = match File::open(table) {
            Ok(f) => f,
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(uid) = find_uid(BufReader::new(file), ours, peer)? {
            return Ok(Some(uid));
        }
    }
    Ok(None)
}

/// The uid of the established entry of `table` (a `/proc/net/tcp{,6}` text) whose local
/// address is `peer` and remote address is `ours`.
fn find_uid(table: impl BufRead, ours: SocketAddr, peer: SocketAddr) -> io::Result<Option<u32>> {
    let (ours, peer) = (canonical(ours), canonical(peer));
    // The first line names the columns.
    for line in table.lines().skip(1) {
        let line = line?;
        let mut fields = line.split_whitespace();
        let (Some(_slot), Some(local), Some(remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // tx_queue:rx_queue, tr:tm->when, retrnsmt, then the uid.
        let Some(uid) = fields.nth(3) else { continue };
        if state != ESTABLISHED || parse_addr(local) != Some(peer) || parse_addr(remote) != Some(ours) {
            continue;
        }
        return Ok(uid.parse().ok());
    }
    Ok(None)
}

/// `0100007F:1267` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints the address
/// as 32-bit words in host byte order (`%08X` of each word of the network-order address), the
/// port as a number.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                let hex = addr.get(i * 8..i * 8 + 8)?;
                chunk.copy_from_slice(&word(hex)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(canonical(SocketAddr::new(ip, port)))
}

/// A v4-mapped IPv6 address as the IPv4 address it is.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    /// Host-order words, as this machine's kernel prints them.
    fn v4(ip: [u8; 4], port: u16) -> String {
        format!("{:08X}:{port:04X}", u32::from_ne_bytes(ip))
    }

    fn v6(ip: Ipv6Addr, port: u16) -> String {
        let words: String = ip
            .octets()
            .chunks_exact(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        format!("{words}:{port:04X}")
    }

    fn table(rows: &[(String, String, &str, u32)]) -> String {
        let mut text = String::from(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
        );
        for (i, (local, remote, state, uid)) in rows.iter().enumerate() {
            text.push_str(&format!(
                "{i:4}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000 {uid:5}        0 {} 1 0000000000000000 20 4 30 10 -1\n",
                1000 + i
            ));
        }
        text
    }

    #[test]
    fn the_client_socket_is_found_by_both_ends() {
        let ours = addr("127.0.0.1:4711");
        let peer = addr("127.0.0.1:50000");
        let text = table(&[
            (v4([0, 0, 0, 0], 22), v4([0, 0, 0, 0], 0), "0A", 0),
            // Our own accepted socket: the other direction, owned by us.
            (v4([127, 0, 0, 1], 4711), v4([127, 0, 0, 1], 50000), "01", 0),
            // Another connection from the same port to another server.
            (v4([127, 0, 0, 1], 50000), v4([127, 0, 0, 1], 8080), "01", 7),
            (v4([127, 0, 0, 1], 50000), v4([127, 0, 0, 1], 4711), "01", 1001),
        ]);
        assert_eq!(find_uid(text.as_bytes(), ours, peer).expect("read"), Some(1001));
        assert_eq!(find_uid(text.as_bytes(), ours, addr("127.0.0.1:50001")).expect("read"), None);
    }

    #[test]
    fn a_closed_client_is_nobody_not_root() {
        let ours = addr("127.0.0.1:4711");
        let peer = addr("127.0.0.1:50000");
        for state in ["06", "05", "04", "08", "0A"] {
            let text = table(&[(v4([127, 0, 0, 1], 50000), v4([127, 0, 0, 1], 4711), state, 0)]);
            assert_eq!(find_uid(text.as_bytes(), ours, peer).expect("read"), None, "state {state}");
        }
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let ours = addr("[::1]:4711");
        let peer = addr("[::1]:50000");
        let text = table(&[(v6(Ipv6Addr::LOCALHOST, 50000), v6(Ipv6Addr::LOCALHOST, 4711), "01", 42)]);
        assert_eq!(find_uid(text.as_bytes(), ours, peer).expect("read"), Some(42));
        // A dual-stack client of a v4 listener: its socket shows ::ffff:127.0.0.1.
        let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
        let text = table(&[(v6(mapped, 50000), v6(mapped, 4711), "01", 43)]);
        let found = find_uid(text.as_bytes(), addr("127.0.0.1:4711"), addr("127.0.0.1:50000"));
        assert_eq!(found.expect("read"), Some(43));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let text = "header\n\n 0: zz:zz 0100007F:1267 01 x x x notauid\n 1: 0100007F\n";
        assert_eq!(find_uid(text.as_bytes(), addr("127.0.0.1:1"), addr("127.0.0.1:2")).expect("read"), None);
        assert_eq!(parse_addr("0100007F:1267"), Some(addr("127.0.0.1:4711")));
        assert_eq!(parse_addr("0100007F"), None);
        assert_eq!(parse_addr("01007F:1267"), None);
    }

    #[test]
    fn a_live_connection_is_ours() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (stream, peer) = listener.accept().expect("accept");
        let ours = stream.local_addr().expect("local");
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(tcp_peer_uid(ours, peer).expect("proc"), Some(me));
        drop(client);
    }
}
