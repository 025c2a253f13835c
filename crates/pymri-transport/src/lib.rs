//! How pymri reaches an agent that listens, or waits for one that connects out: the
//! controller's side of `docs/transports.md`.
//!
//! - [`address`]: `tcp:HOST:PORT`, `tls:HOST:PORT`, `unix:PATH`, `fifo:DIR`, `fd:N`, and the
//!   command line's `[ADDR:]PORT`.
//! - [`secret`]: secrets from private files or standard input, `pymri secret`'s generation, and
//!   the runtime directory where a loopback listener keeps the secret it made.
//! - [`client`]: [`connect`] to a listening agent over any transport, then the authenticated
//!   handshake; the result is a `pymri_session::Session` like `run` and `attach` produce.
//! - [`listener`]: `pymri listen`: a TCP port (optionally TLS) that hands out one session, with
//!   the lockout of §5 ([`lockout`], a pure state machine with an injected clock).
//! - [`tls`]: pymri is always the TLS server, with an ephemeral self-signed certificate whose
//!   SHA-256 both handshake proofs cover (channel binding, §4).
//!
//! TLS connections and FIFO pairs reach the session through a [`pump`] thread and a Unix socket
//! pair, because the session needs a stream it can clone, time out and shut down from another
//! thread, which neither offers; TCP and Unix sockets are handed over as they are.
//!
//! ```no_run
//! use pymri_transport::{connect, Address, secret};
//! let address: Address = "tls:build-host:5678".parse()?;
//! let secret = secret::read_file("/run/user/1000/pymri/app.secret".as_ref())?;
//! let session = connect(&address, &secret)?;
//! println!("connected to process {}", session.ready().pid);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Non-goals: the agent's side (Python), listening on Unix sockets or FIFOs (agents do that),
//! certificate authorities (the channel binding replaces them), several sessions at once.

pub mod address;
pub mod client;
mod error;
pub mod fifo;
pub mod listener;
pub mod lockout;
mod pump;
pub mod secret;
pub mod tls;

pub use address::{parse_listen, Address, AddressError, Host};
pub use client::{connect, Connector};
pub use error::TransportError;
pub use listener::{Accepted, Listener, Serving, Stats};
pub use secret::{GeneratedSecret, SecretError, SharedSecret};
pub use tls::TlsIdentity;
