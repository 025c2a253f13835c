//! `pymri listen [ADDR:]PORT`: wait for an agent to connect out (the reverse connection of
//! `docs/transports.md` §2, for programs that may not listen, such as serverless functions),
//! then the debugger over that session.
//!
//! The port is bound before the secret is settled, so that the address can be checked first:
//! another address than loopback needs a secret given explicitly (§3); on loopback without
//! one, a secret is made in the runtime directory, its path printed, and the file removed when
//! pymri exits. `pymri_transport::Listener` authenticates each connection in its own thread and
//! locks out peers that keep failing (§5); the first agent that authenticates gets the session.

use super::remote::{self, SecretSource};
use crate::printer::note;
use anyhow::{Context, Result};
use pymri_session::protocol::handshake::random_hex;
use pymri_transport::address::{parse_listen, Address, Host};
use pymri_transport::{Accepted, GeneratedSecret, Listener, TransportError};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct ListenOptions {
    /// `[ADDR:]PORT` (or `tcp:`/`tls:` addresses).
    pub address: String,
    pub tls: bool,
    pub secret: SecretSource,
    /// Commands run at the first stop, as if typed.
    pub commands: Vec<String>,
}

/// How often the wait for an agent looks whether Ctrl-C was pressed.
const INTERRUPT_CHECK: Duration = Duration::from_millis(200);
/// pymri's status when Ctrl-C ended the wait (128 + SIGINT, as a shell reports it).
pub const INTERRUPTED: u8 = 130;

/// Serves one session; returns pymri's exit status.
pub fn run(opts: ListenOptions) -> Result<u8> {
    let address = match opts.address.split_once(':') {
        Some(("tcp" | "tls", _)) => Address::parse(&opts.address)?,
        _ => parse_listen(&opts.address)?,
    };
    let listener = Listener::bind(&address, opts.tls)?;
    let bound = listener.address().clone();
    let (secret, generated) = match opts.secret.read()? {
        Some(secret) => (secret, None),
        None if listener.is_loopback() => {
            let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
            let tag = random_hex(4).map_err(|e| anyhow::anyhow!("no randomness for a file name: {e}"))?;
            let generated = GeneratedSecret::create(&format!("listen-{port}-{tag}"))?;
            (generated.secret.clone(), Some(generated))
        }
        None => return Err(TransportError::SecretRequired { address: bound.to_string() }.into()),
    };
    let secret_file = generated.as_ref().map(|g| g.path.clone()).or_else(|| opts.secret.file());

    let interrupted = Arc::new(AtomicBool::new(false));
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("catching Ctrl-C")?;
    let signals_handle = signals.handle();
    let watcher = {
        let interrupted = Arc::clone(&interrupted);
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                interrupted.store(true, Ordering::SeqCst);
            }
        })
    };
    let serving = listener.start(secret, Box::new(|message: &str| note(message)))?;
    note(&format!("pymri listen: waiting for an agent at {bound} (Ctrl-C gives up)"));
    if let Some(generated) = &generated {
        note(&format!("pymri listen: the session's secret is in {}", generated.path.display()));
    }
    note(&format!(
        "pymri listen: the program connects with: {}",
        agent_command(&bound, secret_file.as_deref())
    ));
    let accepted = loop {
        if let Some(accepted) = serving.accept(Some(INTERRUPT_CHECK)) {
            break Some(accepted);
        }
        if interrupted.load(Ordering::SeqCst) {
            break None;
        }
    };
    signals_handle.close();
    let _ = watcher.join();
    let Some(Accepted { session, peer }) = accepted else {
        note("pymri listen: no agent connected");
        return Ok(INTERRUPTED);
    };
    remote::begin(&session, &format!("from {peer}"))?;
    remote::run_repl(session, opts.commands)?;
    // Later agents are refused until here; the made secret goes with `generated`.
    drop(serving);
    drop(generated);
    Ok(0)
}

/// The agent's command line for this listener: its address as seen from the program's side
/// (a wildcard address cannot be connected to: the user puts this machine's name there).
fn agent_command(bound: &Address, secret_file: Option<&Path>) -> String {
    let (scheme, host, port) = match bound {
        Address::Tls { host, port } => ("tls", host, *port),
        Address::Tcp { host, port } => ("tcp", host, *port),
        other => return format!("python -m pymri_agent --connect {other} app.py"),
    };
    let host = match host {
        Host::Ip(ip) if ip.is_unspecified() => "THIS-HOST".to_string(),
        other => other.to_string(),
    };
    let file = secret_file.map_or_else(|| "FILE".to_string(), |p| p.display().to_string());
    format!("python -m pymri_agent --connect {scheme}:{host}:{port} --secret-file {file} app.py")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_is_told_an_address_it_can_reach() {
        let parse = |a: &str| Address::parse(a).expect("address");
        assert_eq!(
            agent_command(&parse("tls:127.0.0.1:5678"), Some(Path::new("/run/s.secret"))),
            "python -m pymri_agent --connect tls:127.0.0.1:5678 --secret-file /run/s.secret app.py"
        );
        assert_eq!(
            agent_command(&parse("tcp:0.0.0.0:5678"), None),
            "python -m pymri_agent --connect tcp:THIS-HOST:5678 --secret-file FILE app.py"
        );
        assert!(agent_command(&parse("tcp:[::]:1"), None).contains("tcp:THIS-HOST:1"));
    }
}
