//! The wire protocol between pymri (the controller) and its in-target Python agent, as
//! `docs/protocol.md` specifies it, without any I/O.
//!
//! - [`frame`]: the 4-byte big-endian length prefix plus UTF-8 JSON object framing, with an
//!   incremental [`FrameDecoder`] that takes bytes as they arrive (whole, chunked or one at a
//!   time) and enforces the frame limits (4 KiB during the handshake, 8 MiB after).
//! - [`handshake`]: the controller side of the HMAC-SHA256 challenge/proof/accept exchange as
//!   a state machine ([`ControllerHandshake`]): it says what to send and checks what arrives,
//!   the caller moves the bytes.
//! - [`integrity`]: the per-direction keys derived from the handshake and the tag every later
//!   frame carries (§3.1), which [`FrameDecoder::authenticate`] checks and [`FrameSealer`]
//!   writes, so that nobody on the path can inject, alter, replay or reorder frames.
//! - [`messages`]: what the agent sends (responses, and events with a catch-all for event
//!   names this version does not know), as serde types.
//! - [`requests`]: one struct per request, each implementing [`Request`], which names the
//!   command and the type of its response body.
//!
//! The caller owns the transport: `pymri-session` drives this crate over a socket, a test can
//! drive it over a byte vector. Every parser here is total: malformed input gives an error,
//! never a panic, and a decoder that failed stays failed (a byte stream cannot be resynchronised).
//!
//! Non-goals: the agent's side of the protocol (it is Python), transports, timeouts, matching
//! responses to requests (that is `pymri-session`'s job).
//!
//! ```
//! use pymri_protocol::{encode_frame, FrameDecoder, MAX_FRAME};
//! let frame = encode_frame(&serde_json::json!({"kind": "event", "event": "x"}), MAX_FRAME).unwrap();
//! let mut decoder = FrameDecoder::new(MAX_FRAME);
//! for byte in &frame {
//!     decoder.push(std::slice::from_ref(byte));
//! }
//! assert_eq!(decoder.next_object().unwrap().unwrap()["event"], "x");
//! ```

pub mod frame;
pub mod handshake;
pub mod integrity;
pub mod messages;
pub mod requests;

pub use frame::{encode_frame, FrameDecoder, FrameError, FrameSealer, HANDSHAKE_MAX_FRAME, MAX_FRAME};
pub use handshake::{ControllerHandshake, HandshakeError, ProofInput, Secret, Step};
pub use integrity::{FrameKey, IntegrityError, SessionKeys};
pub use messages::{Event, Incoming, MessageError, Ready, Response, ResponseError};
pub use requests::Request;

/// The protocol version this crate speaks (§11).
pub const PROTOCOL_VERSION: i64 = 2;
