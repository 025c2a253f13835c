//! `pymri connect ADDR`: the debugger, over a connection to an agent that listens inside a
//! program (the forward connection of `docs/transports.md` §2), through
//! `pymri_transport::connect`: TCP, TLS, a Unix socket or a FIFO pair, then the authenticated
//! handshake.

use super::remote::{self, SecretSource};
use anyhow::Result;

pub struct ConnectOptions {
    /// `tcp:HOST:PORT`, `tls:HOST:PORT`, `unix:PATH` or `fifo:DIR`.
    pub address: String,
    pub secret: SecretSource,
    /// Commands run at the first stop, as if typed.
    pub commands: Vec<String>,
}

pub fn run(opts: ConnectOptions) -> Result<()> {
    let session = remote::connect(&opts.address, &opts.secret)?;
    remote::run_repl(session, opts.commands)
}
