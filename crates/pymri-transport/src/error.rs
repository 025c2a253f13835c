//! The crate's error, with the user's next step in each message (`hint:` lines).

use crate::address::AddressError;
use crate::secret::SecretError;
use crate::tls::TlsError;
use pymri_protocol::{FrameError, HandshakeError};
use pymri_session::SessionError;
use std::io;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{address}: {why}")]
    Unsupported { address: String, why: &'static str },
    /// Nothing answered at the address.
    #[error("cannot reach an agent at {address}: {reason}\nhint: {hint}")]
    Unreachable { address: String, reason: String, hint: String },
    /// The agent's proof did not verify with our secret.
    #[error(
        "wrong secret: the agent at {address} was given another secret (its proof does not match this one)\n\
         hint: use the secret file the agent reads (its --secret-file or PYMRI_SECRET_FILE); an agent that \
         listens without one prints the path of the secret it made"
    )]
    WrongSecret { address: String },
    /// The peer closed the connection before the session started.
    #[error(
        "the agent at {address} closed the connection before the session started\n\
         hint: it rejected the secret, serves another session already, or refuses this address for 60 s \
         after 5 failed attempts"
    )]
    Rejected { address: String },
    /// The peer's first bytes are a TLS record where a frame was expected.
    #[error(
        "{address} speaks TLS and this side does not\n\
         hint: reach an agent that listens on a tls: address with tls:HOST:PORT; `pymri listen` takes --tls \
         for agents that connect to a tls: address"
    )]
    PeerSpeaksTls { address: String },
    #[error(
        "{address} did not complete the handshake within 10 s\n\
         hint: is a pymri agent listening there? A TLS agent is reached with tls:, a plain one with tcp:"
    )]
    HandshakeTimeout { address: String },
    #[error("TLS with {address}: {source}\nhint: the agent must connect or listen with a tls: address")]
    Tls {
        address: String,
        #[source]
        source: TlsError,
    },
    #[error("the session with {address} could not start: {source}{hint}")]
    Handshake {
        address: String,
        #[source]
        source: SessionError,
        /// Empty, or `"\nhint: ..."`.
        hint: String,
    },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "listening on {address} needs a secret given explicitly: that address is reachable from other machines\n\
         hint: make one with `pymri secret FILE`, give the agent the same file, and pass --secret-file FILE \
         (or listen on 127.0.0.1 and forward the port with ssh)"
    )]
    SecretRequired { address: String },
}

impl TransportError {
    /// Whether the peer was reached but would not, or could not, authenticate.
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            TransportError::WrongSecret { .. }
                | TransportError::PeerSpeaksTls { .. }
                | TransportError::Rejected { .. }
                | TransportError::HandshakeTimeout { .. }
                | TransportError::Tls { .. }
                | TransportError::Handshake { .. }
        )
    }
}

/// Names what went wrong in a handshake with `address`.
pub(crate) fn classify(address: &str, e: SessionError) -> TransportError {
    let address = address.to_string();
    match e {
        SessionError::Handshake(HandshakeError::BadProof) => TransportError::WrongSecret { address },
        SessionError::ClosedDuringHandshake => TransportError::Rejected { address },
        SessionError::Io(ref io)
            if matches!(io.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) =>
        {
            TransportError::Rejected { address }
        }
        SessionError::HandshakeTimeout(_) => TransportError::HandshakeTimeout { address },
        // A frame's 4-byte length prefix read from a TLS handshake record: content type 0x16,
        // major version 3 (what a TLS client sends first).
        SessionError::Frame(FrameError::TooLarge { length, .. }) if length >> 16 == 0x1603 => {
            TransportError::PeerSpeaksTls { address }
        }
        SessionError::Frame(_) if address.starts_with("tcp:") => TransportError::Handshake {
            address,
            source: e,
            hint: "\nhint: is it a pymri agent? An agent that speaks TLS is reached with tls:HOST:PORT"
                .into(),
        },
        source => TransportError::Handshake { address, source, hint: String::new() },
    }
}
