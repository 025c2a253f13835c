//! A process's descriptors as `/proc` shows them: what each one is (the text of its
//! `/proc/PID/fd/N` link, read and never followed) and, for TCP sockets, both ends of the
//! connection from `/proc/PID/net/tcp{,6}` (the process's own network namespace).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Descriptors listed at most: a process cannot have more than the kernel's `nr_open` (2^20 by
/// default); past this many the leak is plain from the count alone.
const MAX_FDS: usize = 1 << 16;

/// Each descriptor and the text of its link; empty once the process is gone.
pub fn targets(pid: i32) -> BTreeMap<i32, String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return BTreeMap::new() };
    dir.filter_map(|e| e.ok())
        .take(MAX_FDS)
        .filter_map(|e| {
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            // read_link reads the link's text; nothing is opened through it.
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// One descriptor's link text.
pub fn target(pid: i32, fd: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok().map(|t| t.to_string_lossy().into_owned())
}

/// What kind of descriptor a link text names: `socket`, `pipe`, `anon_inode`, `file`, `device`
/// or `other`.
pub fn kind(target: &str) -> &'static str {
    if target.starts_with("socket:[") {
        "socket"
    } else if target.starts_with("pipe:[") {
        "pipe"
    } else if target.starts_with("anon_inode:") {
        "anon_inode"
    } else if target.starts_with("/dev/") {
        "device"
    } else if target.starts_with('/') {
        "file"
    } else {
        "other"
    }
}

/// The inode of a `socket:[INODE]` link.
pub fn socket_inode(target: &str) -> Option<u64> {
    target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// A TCP socket's two ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpEnds {
    pub local: String,
    pub remote: String,
}

/// The process's TCP sockets by inode.
pub fn tcp_sockets(pid: i32) -> HashMap<u64, TcpEnds> {
    let mut sockets = HashMap::new();
    for table in ["tcp", "tcp6"] {
        if let Ok(text) = pymri_memory::read_proc(&format!("/proc/{pid}/net/{table}")) {
            sockets.extend(parse_tcp_table(&text));
        }
    }
    sockets
}

/// The rows of a `/proc/net/tcp` or `tcp6` table (header skipped, malformed rows ignored).
fn parse_tcp_table(text: &str) -> impl Iterator<Item = (u64, TcpEnds)> + '_ {
    text.lines().skip(1).filter_map(|row| {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let local = parse_endpoint(fields.get(1)?)?;
        let remote = parse_endpoint(fields.get(2)?)?;
        let inode: u64 = fields.get(9)?.parse().ok()?;
        (inode != 0).then_some((inode, TcpEnds { local, remote }))
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the address is written as 32-bit
/// words in the kernel's byte order, which is the host's.
fn parse_endpoint(text: &str) -> Option<String> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    match addr.len() {
        8 => {
            let word = u32::from_str_radix(addr, 16).ok()?;
            Some(format!("{}:{port}", Ipv4Addr::from(word.to_ne_bytes())))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            let ip = Ipv6Addr::from(bytes);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => format!("{v4}:{port}"),
                None => format!("[{ip}]:{port}"),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn tcp_tables() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:A3F2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 123456 1 0 20 4 30 10 -1\n   \
            1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1\n\
            garbage\n";
        let rows: Vec<_> = parse_tcp_table(text).collect();
        assert_eq!(
            rows,
            vec![(123456, TcpEnds { local: "127.0.0.1:41970".into(), remote: "127.0.0.1:8080".into() })]
        );
        let v6 = "h\n 0: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000001000000:0050 01 0:0 0:0 0 0 0 77 1\n";
        let rows: Vec<_> = parse_tcp_table(v6).collect();
        assert_eq!(rows[0].1, TcpEnds { local: "127.0.0.1:8080".into(), remote: "[::1]:80".into() });
    }

    #[test]
    fn kinds() {
        assert_eq!(kind("socket:[42]"), "socket");
        assert_eq!(socket_inode("socket:[42]"), Some(42));
        assert_eq!(socket_inode("socket:[x]"), None);
        assert_eq!(kind("pipe:[7]"), "pipe");
        assert_eq!(kind("anon_inode:[eventfd]"), "anon_inode");
        assert_eq!(kind("/etc/passwd (deleted)"), "file");
        assert_eq!(kind("/dev/null"), "device");
        assert_eq!(kind("net:[4026531840]"), "other");
    }
}
