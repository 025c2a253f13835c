//! `pymri connect ADDR`: the debugger, over a connection to an agent that listens inside a
//! program (the forward connection of `docs/transports.md` §2), through
//! `pymri_transport::connect`: TCP, TLS, a Unix socket or a FIFO pair, then the authenticated
//! handshake.

use super::remote::{self, SecretSource};
use anyhow::Result;
use pymri_transport::Address;

pub struct ConnectOptions {
    /// `tcp:HOST:PORT`, `tls:HOST:PORT`, `unix:PATH` or `fifo:DIR`.
    pub address: String,
    pub secret: SecretSource,
    /// Commands run at the first stop, as if typed.
    pub commands: Vec<String>,
}

pub fn run(opts: ConnectOptions) -> Result<()> {
    let address = Address::parse(&opts.address)?;
    let shown = address.to_string();
    let secret = remote::required_secret(&opts.secret, &shown)?;
    let session = pymri_transport::connect(&address, &secret)?;
    remote::begin(&session, &format!("at {shown}"))?;
    remote::run_repl(session, opts.commands)
}
