//! `pymri dap`: the Debug Adapter Protocol server (`pymri-dap`) on stdio, or on a loopback TCP
//! port with `--listen`, serving only the clients of this user, root and (under `sudo`) the
//! user who ran sudo. In stdio mode stdout carries the protocol, so everything for the person
//! goes to stderr.

use crate::printer::note;
use anyhow::{bail, Context, Result};
use pymri_dap::{Options, Server};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

pub struct DapOptions {
    /// `[ADDR:]PORT` to serve on, instead of stdio.
    pub listen: Option<String>,
}

pub fn run(opts: DapOptions) -> Result<()> {
    let options = Options { log: Arc::new(|text: &str| note(text)) };
    let Some(listen) = opts.listen else {
        pymri_dap::serve(std::io::stdin(), std::io::stdout(), &options);
        return Ok(());
    };
    let addr = listen_address(&listen)?;
    let mut server = Server::bind(addr).with_context(|| format!("listening on {addr}"))?;
    // `sudo pymri dap --listen` is how an editor running as its user debugs as root: the user
    // who ran sudo started this adapter, and is served too.
    let sudo_user = std::env::var("SUDO_UID").ok().and_then(|v| v.parse::<u32>().ok());
    if let Some(uid) = sudo_user {
        server.allow_user(uid);
    }
    let bound = server.local_addr().context("the listening address")?;
    let users = server.users().iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    note(&format!("pymri dap: listening on {bound}, for clients running as uid {users}"));
    server.run(&options).context("accepting DAP clients")?;
    Ok(())
}

/// `PORT`, `ADDR:PORT` or `[V6]:PORT`, on a loopback address only.
fn listen_address(text: &str) -> Result<SocketAddr> {
    let addr = match text.parse::<u16>() {
        Ok(port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        Err(_) => match text.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => match text.rsplit_once(':') {
                Some(("localhost", port)) => SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port.parse().with_context(|| format!("--listen {text}: bad port"))?,
                ),
                _ => bail!("--listen {text}: expected PORT or ADDRESS:PORT"),
            },
        },
    };
    if !addr.ip().is_loopback() {
        bail!(
            "--listen {text}: {} is not a loopback address; pymri dap only listens on this machine \
             (anyone who can connect can run code in the debugged program)\n\
             hint: use 127.0.0.1:PORT, and an SSH tunnel to reach it from elsewhere",
            addr.ip()
        );
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::listen_address;

    #[test]
    fn loopback_only() {
        assert_eq!(listen_address("4711").expect("port").to_string(), "127.0.0.1:4711");
        assert_eq!(listen_address("127.0.0.2:5").expect("v4").to_string(), "127.0.0.2:5");
        assert_eq!(listen_address("[::1]:5").expect("v6").to_string(), "[::1]:5");
        assert_eq!(listen_address("localhost:0").expect("name").to_string(), "127.0.0.1:0");
        let refused = listen_address("0.0.0.0:4711").expect_err("any address").to_string();
        assert!(refused.contains("not a loopback address"), "{refused}");
        assert!(listen_address("192.168.1.5:4711").is_err());
        assert!(listen_address("nonsense").is_err());
    }
}
