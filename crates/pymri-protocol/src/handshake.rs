//! The controller's side of the handshake (protocol §3) as a state machine that does no I/O.
//!
//! ```text
//! controller                                   agent
//!     | -- {"kind":"challenge","protocol":2,"nonce":cn} -->
//!     | <-- {"kind":"proof","protocol":2,"nonce":an,"proof":P_agent} --
//!     | -- {"kind":"accept","proof":P_ctrl} -->
//!     | <-- event "ready" --
//! ```
//!
//! [`ControllerHandshake::start`] returns the challenge frame to send; each frame received goes to
//! [`ControllerHandshake::receive`], which answers with the next frame to send or, at the end,
//! the agent's `ready` body. Once the agent's proof holds, the answer is [`Step::Accept`]: the
//! accept frame and the session's frame keys (§3.1); the caller sends the frame, then
//! authenticates its decoder with [`SessionKeys::agent_to_controller`] before the next frame
//! (the `ready` event, already under the keys) and seals what it sends with
//! [`SessionKeys::controller_to_agent`]. The agent's proof is checked in constant time (`hmac`'s
//! `verify_slice`) before anything else is sent, so a wrong secret never gets our proof.

use crate::frame::{decode_object, encode_frame, FrameError, HANDSHAKE_MAX_FRAME, MAX_FRAME};
use crate::integrity::{IntegrityError, SessionKeys};
use crate::messages::{Event, Ready};
use crate::PROTOCOL_VERSION;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a handshake nonce (64 hex digits).
pub const NONCE_BYTES: usize = 32;
/// Shortest secret the protocol allows (pymri itself uses 32 bytes).
pub const MIN_SECRET_BYTES: usize = 16;

const AGENT_LABEL: &str = "pymri agent proof v1";
const CONTROLLER_LABEL: &str = "pymri controller proof v1";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    #[error("the session secret is not valid: {0}")]
    BadSecret(String),
    #[error("no randomness available for a nonce: {0}")]
    Random(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the agent refused the handshake: {0}")]
    Refused(String),
    #[error("the agent speaks protocol {0}, this pymri speaks {PROTOCOL_VERSION}\nhint: use the pymri release that matches the agent")]
    Version(i64),
    #[error("the agent's proof is wrong: it does not know this session's secret")]
    BadProof,
    #[error("unexpected handshake message: {0}")]
    Unexpected(String),
    #[error("the handshake is already over")]
    Finished,
    #[error("a TLS channel binding must be a SHA-256 fingerprint in lowercase hex")]
    BadChannelBinding,
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
}

/// What to do after a frame was received.
#[derive(Debug)]
pub enum Step {
    /// Send this frame, then keep receiving.
    Send(Vec<u8>),
    /// The agent says why its proof is late (a listener delaying handshakes after failures,
    /// transports §5); keep receiving, within the same deadline.
    Notice(String),
    /// Send the accept frame; every frame after it, both ways, is under these keys (§3.1).
    Accept { frame: Vec<u8>, keys: Box<SessionKeys> },
    /// Authenticated: the agent's `ready` event body. Frames may now be up to [`MAX_FRAME`].
    Ready(Box<Ready>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitProof,
    AwaitReady,
    Done,
    Failed,
}

/// Secret key bytes parsed from their hex text.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Parses hex text (surrounding white space allowed), at least [`MIN_SECRET_BYTES`] bytes.
    pub fn from_hex(text: &str) -> Result<Secret, HandshakeError> {
        let key = from_hex(text.trim()).ok_or_else(|| HandshakeError::BadSecret("not hex".into()))?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(HandshakeError::BadSecret(format!("shorter than {MIN_SECRET_BYTES} bytes")));
        }
        Ok(Secret(key))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

pub struct ControllerHandshake {
    secret: Secret,
    attach_nonce: String,
    controller_nonce: String,
    /// The TLS certificate fingerprint both proofs cover, over TLS (transports §4).
    channel_binding: Option<String>,
    state: State,
}

impl ControllerHandshake {
    /// A handshake with a fresh random controller nonce; returns it and the challenge frame.
    pub fn start(
        secret: Secret,
        attach_nonce: &str,
    ) -> Result<(ControllerHandshake, Vec<u8>), HandshakeError> {
        let nonce = random_hex(NONCE_BYTES).map_err(|e| HandshakeError::Random(e.to_string()))?;
        Self::with_nonce(secret, attach_nonce, nonce)
    }

    /// Same as [`start`](Self::start) with a given nonce (for tests and replay checks).
    pub fn with_nonce(
        secret: Secret,
        attach_nonce: &str,
        controller_nonce: String,
    ) -> Result<(ControllerHandshake, Vec<u8>), HandshakeError> {
        let challenge = json!({"kind": "challenge", "protocol": PROTOCOL_VERSION, "nonce": controller_nonce});
        let frame = encode_frame(&challenge, HANDSHAKE_MAX_FRAME)?;
        let hs = ControllerHandshake {
            secret,
            attach_nonce: attach_nonce.to_ascii_lowercase(),
            controller_nonce,
            channel_binding: None,
            state: State::AwaitProof,
        };
        Ok((hs, frame))
    }

    /// Binds both proofs to a TLS channel: `fingerprint` is the lowercase hex SHA-256 of the DER
    /// certificate the controller presented (64 hex digits; transports §4). The challenge does
    /// not change, so this may come after [`start`](Self::start), before the first
    /// [`receive`](Self::receive).
    pub fn bind_channel(mut self, fingerprint: &str) -> Result<ControllerHandshake, HandshakeError> {
        if !is_nonce(fingerprint) {
            return Err(HandshakeError::BadChannelBinding);
        }
        self.channel_binding = Some(fingerprint.to_string());
        Ok(self)
    }

    /// The frame limit for what the agent sends next.
    pub fn max_frame(&self) -> usize {
        match self.state {
            State::AwaitProof | State::Failed => HANDSHAKE_MAX_FRAME,
            State::AwaitReady | State::Done => MAX_FRAME,
        }
    }

    /// Feeds one received payload.
    pub fn receive(&mut self, payload: &[u8]) -> Result<Step, HandshakeError> {
        let result = self.receive_inner(payload);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn receive_inner(&mut self, payload: &[u8]) -> Result<Step, HandshakeError> {
        let msg = decode_object(payload)?;
        match self.state {
            State::AwaitProof => {
                if msg.get("kind").and_then(Value::as_str) == Some("notice") {
                    let text = msg.get("message").and_then(Value::as_str).unwrap_or("(no message)");
                    return Ok(Step::Notice(text.to_string()));
                }
                if msg.get("kind").and_then(Value::as_str) != Some("proof") {
                    return Err(HandshakeError::Unexpected(format!(
                        "expected a proof, got {}",
                        kind_of(&msg)
                    )));
                }
                if let Some(error) = msg.get("error") {
                    return Err(HandshakeError::Refused(
                        error.as_str().unwrap_or("(no message)").to_string(),
                    ));
                }
                match msg.get("protocol").and_then(Value::as_i64) {
                    Some(v) if v == PROTOCOL_VERSION => {}
                    Some(v) => return Err(HandshakeError::Version(v)),
                    None => {
                        return Err(HandshakeError::Unexpected("proof without a protocol version".into()))
                    }
                }
                let agent_nonce = msg
                    .get("nonce")
                    .and_then(Value::as_str)
                    .filter(|n| is_nonce(n))
                    .ok_or_else(|| HandshakeError::Unexpected("proof without a valid nonce".into()))?;
                let proof = msg
                    .get("proof")
                    .and_then(Value::as_str)
                    .ok_or_else(|| HandshakeError::Refused("proof message without a proof".into()))?;
                let proof = from_hex(proof).filter(|p| p.len() == 32).ok_or(HandshakeError::BadProof)?;
                self.mac(AGENT_LABEL, agent_nonce)?
                    .verify_slice(&proof)
                    .map_err(|_| HandshakeError::BadProof)?;
                let ours = proof_hex(self.mac(CONTROLLER_LABEL, agent_nonce)?);
                let accept = json!({"kind": "accept", "proof": ours});
                let keys = SessionKeys::derive(self.secret.bytes(), &self.controller_nonce, agent_nonce)?;
                self.state = State::AwaitReady;
                Ok(Step::Accept { frame: encode_frame(&accept, HANDSHAKE_MAX_FRAME)?, keys: Box::new(keys) })
            }
            State::AwaitReady => {
                if msg.get("kind").and_then(Value::as_str) != Some("event") {
                    return Err(HandshakeError::Unexpected(format!(
                        "expected the ready event, got {}",
                        kind_of(&msg)
                    )));
                }
                match Event::from_object(msg) {
                    Ok(Event::Ready(ready)) => {
                        self.state = State::Done;
                        Ok(Step::Ready(ready))
                    }
                    Ok(other) => Err(HandshakeError::Unexpected(format!(
                        "expected the ready event, got {}",
                        other.name()
                    ))),
                    Err(e) => Err(HandshakeError::Unexpected(format!("malformed ready event: {e}"))),
                }
            }
            State::Done => Err(HandshakeError::Finished),
            State::Failed => Err(HandshakeError::Unexpected("the handshake already failed".into())),
        }
    }

    fn mac(&self, label: &str, agent_nonce: &str) -> Result<HmacSha256, HandshakeError> {
        let input = ProofInput {
            controller_nonce: &self.controller_nonce,
            agent_nonce,
            attach_nonce: &self.attach_nonce,
            channel_binding: self.channel_binding.as_deref(),
        };
        proof_mac(self.secret.bytes(), label, &input)
    }
}

fn kind_of(msg: &serde_json::Map<String, Value>) -> String {
    match msg.get("kind") {
        Some(Value::String(s)) => format!("{s:?}"),
        _ => "a message without a kind".into(),
    }
}

/// What a proof covers besides the secret and the label.
#[derive(Debug, Clone, Copy)]
pub struct ProofInput<'a> {
    pub controller_nonce: &'a str,
    pub agent_nonce: &'a str,
    /// Lowercased before use (the agent compares hex text).
    pub attach_nonce: &'a str,
    /// Over TLS: the certificate's SHA-256 fingerprint, lowercase hex (transports §4).
    pub channel_binding: Option<&'a str>,
}

/// HMAC-SHA256 over `label "\n" cn "\n" an "\n" attach_nonce`, then `"\n" fingerprint` over TLS
/// (protocol §3, transports §4).
fn proof_mac(key: &[u8], label: &str, input: &ProofInput<'_>) -> Result<HmacSha256, HandshakeError> {
    // HMAC takes keys of any length (long ones are hashed), so this error cannot happen; it is
    // reported rather than unwrapped all the same.
    let mut mac = HmacSha256::new_from_slice(key).map_err(|e| HandshakeError::BadSecret(e.to_string()))?;
    mac.update(label.as_bytes());
    for part in [input.controller_nonce, input.agent_nonce, input.attach_nonce] {
        mac.update(b"\n");
        mac.update(part.as_bytes());
    }
    if let Some(fingerprint) = input.channel_binding {
        mac.update(b"\n");
        mac.update(fingerprint.as_bytes());
    }
    Ok(mac)
}

fn proof_hex(mac: HmacSha256) -> String {
    to_hex(&mac.finalize().into_bytes())
}

/// `P_agent` of §3 (what an agent sends), for tests and tools that play the agent.
pub fn agent_proof(
    secret: &Secret,
    controller_nonce: &str,
    agent_nonce: &str,
    attach_nonce: &str,
) -> Result<String, HandshakeError> {
    agent_proof_for(
        secret,
        &ProofInput { controller_nonce, agent_nonce, attach_nonce, channel_binding: None },
    )
}

/// `P_ctrl` of §3.
pub fn controller_proof(
    secret: &Secret,
    controller_nonce: &str,
    agent_nonce: &str,
    attach_nonce: &str,
) -> Result<String, HandshakeError> {
    controller_proof_for(
        secret,
        &ProofInput { controller_nonce, agent_nonce, attach_nonce, channel_binding: None },
    )
}

/// `P_agent` over any [`ProofInput`], a TLS channel binding included.
pub fn agent_proof_for(secret: &Secret, input: &ProofInput<'_>) -> Result<String, HandshakeError> {
    proof_for(secret, AGENT_LABEL, input)
}

/// `P_ctrl` over any [`ProofInput`], a TLS channel binding included.
pub fn controller_proof_for(secret: &Secret, input: &ProofInput<'_>) -> Result<String, HandshakeError> {
    proof_for(secret, CONTROLLER_LABEL, input)
}

fn proof_for(secret: &Secret, label: &str, input: &ProofInput<'_>) -> Result<String, HandshakeError> {
    let attach_nonce = input.attach_nonce.to_ascii_lowercase();
    let input = ProofInput { attach_nonce: &attach_nonce, ..*input };
    Ok(proof_hex(proof_mac(secret.bytes(), label, &input)?))
}

fn is_nonce(text: &str) -> bool {
    text.len() == 2 * NONCE_BYTES && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `n` random bytes from the operating system, as lowercase hex: pymri's one source of nonces,
/// secrets, tokens and unguessable names.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(to_hex(&bytes))
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    text.as_bytes().chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;

    const SECRET: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7";

    fn payload(frame: &[u8]) -> Value {
        let mut dec = FrameDecoder::new(MAX_FRAME);
        dec.push(frame);
        Value::Object(dec.next_object().expect("frame").expect("complete"))
    }

    fn frame(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).expect("json")
    }

    fn ready() -> Value {
        json!({"kind": "event", "event": "ready", "body": {
            "protocol": 2, "agent_version": "0.1.0", "pid": 42, "mode": "launch",
            "python": {"version": "3.13.1", "version_info": [3, 13, 1], "implementation": "cpython",
                       "executable": "/usr/bin/python3.13", "debug_build": false},
            "main_thread": 139872u64, "cwd": "/srv", "argv": ["app.py"], "backend": "monitoring",
            "tool_id": 0, "all_threads": true, "future_member": {"ignored": true}}})
    }

    /// Plays the agent of §3 against the state machine.
    fn handshake(attach_nonce: &str, agent_secret: &str) -> Result<Ready, HandshakeError> {
        let secret = Secret::from_hex(SECRET)?;
        let (mut hs, challenge) = ControllerHandshake::start(secret, attach_nonce)?;
        let challenge = payload(&challenge);
        assert_eq!(challenge["kind"], "challenge");
        assert_eq!(challenge["protocol"], 2);
        let cn = challenge["nonce"].as_str().expect("nonce").to_string();
        assert!(is_nonce(&cn));
        let agent_secret = Secret::from_hex(agent_secret)?;
        let an = "ab".repeat(32);
        let proof = agent_proof(&agent_secret, &cn, &an, attach_nonce)?;
        let step =
            hs.receive(&frame(json!({"kind": "proof", "protocol": 2, "nonce": an, "proof": proof})))?;
        let Step::Accept { frame: accept, keys } = step else { panic!("expected accept") };
        let agent_keys = SessionKeys::derive(agent_secret.bytes(), &cn, &an)?;
        assert_eq!(keys.controller_to_agent.bytes(), agent_keys.controller_to_agent.bytes());
        assert_eq!(keys.agent_to_controller.bytes(), agent_keys.agent_to_controller.bytes());
        let accept = payload(&accept);
        assert_eq!(accept["kind"], "accept");
        assert_eq!(accept["proof"], controller_proof(&agent_secret, &cn, &an, attach_nonce)?);
        assert_eq!(hs.max_frame(), MAX_FRAME);
        match hs.receive(&frame(ready()))? {
            Step::Ready(r) => Ok(*r),
            Step::Send(_) | Step::Accept { .. } | Step::Notice(_) => panic!("expected ready"),
        }
    }

    #[test]
    fn a_full_handshake_ends_with_the_ready_body() {
        let ready = handshake("", SECRET).expect("handshake");
        assert_eq!(ready.pid, 42);
        assert_eq!(ready.main_thread, 139872);
        assert_eq!(ready.python.version_info, vec![3, 13, 1]);
        let ready = handshake("A1b2", SECRET).expect("attach nonce, case-insensitive");
        assert_eq!(ready.mode, "launch");
    }

    #[test]
    fn proofs_match_the_protocol_definition() {
        // HMAC-SHA256(key, "pymri agent proof v1\ncn\nan\n") computed independently (Python's hmac).
        let secret = Secret::from_hex(&"00".repeat(16)).expect("secret");
        let cn = "11".repeat(32);
        let an = "22".repeat(32);
        assert_eq!(
            agent_proof(&secret, &cn, &an, "").expect("proof"),
            "9c59db80298f18b343d0e4be8e3434d1974f2c50962d828f9b9321d1269654bf"
        );
    }

    #[test]
    fn channel_bound_proofs_match_the_transports_definition() {
        // HMAC-SHA256(key, label "\n" cn "\n" an "\n" attach_nonce "\n" fingerprint), computed
        // independently with Python's hmac module (transports.md §4).
        let secret = Secret::from_hex(&"00".repeat(16)).expect("secret");
        let (cn, an, fp) = ("11".repeat(32), "22".repeat(32), "33".repeat(32));
        let input = |attach_nonce| ProofInput {
            controller_nonce: &cn,
            agent_nonce: &an,
            attach_nonce,
            channel_binding: Some(&fp),
        };
        let cases = [
            (
                "",
                "b3dcd7343beff74df774c04cafe23057ff7430aa864fb2db98504d3306b19377",
                "af6ae2c2589e960f81d366c2215acf028817e6f0dce96bc3647fe4fbfb95120b",
            ),
            (
                "AB12",
                "783ca91a7b5ac40cf79d1c84faa826d3444716a9e26404067242d53d6e588e38",
                "dc64ce7aa6c3df6ee1233afede27890e90cd8733d1a76874edf7db4be4eb545d",
            ),
        ];
        for (attach_nonce, agent, controller) in cases {
            assert_eq!(agent_proof_for(&secret, &input(attach_nonce)).expect("proof"), agent);
            assert_eq!(controller_proof_for(&secret, &input(attach_nonce)).expect("proof"), controller);
        }
        // Without a binding the proof is the plain one of protocol §3.
        let plain = ProofInput { channel_binding: None, ..input("") };
        assert_eq!(
            agent_proof_for(&secret, &plain).expect("proof"),
            agent_proof(&secret, &cn, &an, "").expect("proof")
        );
    }

    /// Plays a TLS-bound agent: `agent_fp` is the fingerprint the agent saw.
    fn bound_handshake(ours: &str, agent_fp: Option<&str>) -> Result<Vec<u8>, HandshakeError> {
        let secret = Secret::from_hex(SECRET)?;
        let (hs, challenge) = ControllerHandshake::start(secret.clone(), "")?;
        let mut hs = hs.bind_channel(ours)?;
        let cn = payload(&challenge)["nonce"].as_str().expect("nonce").to_string();
        let an = "cd".repeat(32);
        let input = ProofInput {
            controller_nonce: &cn,
            agent_nonce: &an,
            attach_nonce: "",
            channel_binding: agent_fp,
        };
        let proof = agent_proof_for(&secret, &input)?;
        match hs.receive(&frame(json!({"kind": "proof", "protocol": 2, "nonce": an, "proof": proof})))? {
            Step::Accept { frame: accept, .. } => {
                assert_eq!(payload(&accept)["proof"], controller_proof_for(&secret, &input)?);
                Ok(accept)
            }
            Step::Send(_) | Step::Ready(_) | Step::Notice(_) => panic!("expected accept"),
        }
    }

    #[test]
    fn a_channel_bound_handshake_needs_the_same_certificate_on_both_sides() {
        let fp = "9f".repeat(32);
        bound_handshake(&fp, Some(&fp)).expect("same certificate");
        // A machine in the middle showed the agent another certificate.
        let other = "a0".repeat(32);
        assert!(matches!(bound_handshake(&fp, Some(&other)), Err(HandshakeError::BadProof)));
        // An agent that ignores the binding (a plain proof over TLS) is refused too.
        assert!(matches!(bound_handshake(&fp, None), Err(HandshakeError::BadProof)));
        // Only a SHA-256 in lowercase hex is a binding.
        for bad in ["", "ab", &"9F".repeat(32), &"9f".repeat(33)] {
            assert!(
                matches!(bound_handshake(bad, Some(bad)), Err(HandshakeError::BadChannelBinding)),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_notice_before_the_proof_is_passed_on() {
        let secret = Secret::from_hex(SECRET).expect("secret");
        let (mut hs, _) = ControllerHandshake::start(secret, "").expect("start");
        let notice = json!({"kind": "notice", "protocol": 2, "delay": 0.5, "message": "delayed"});
        assert!(matches!(hs.receive(&frame(notice)), Ok(Step::Notice(m)) if m == "delayed"));
        assert_eq!(hs.max_frame(), HANDSHAKE_MAX_FRAME, "still waiting for the proof");
    }

    #[test]
    fn a_wrong_secret_is_refused_without_sending_our_proof() {
        let other = "0".repeat(64);
        assert!(matches!(handshake("", &other), Err(HandshakeError::BadProof)));
    }

    #[test]
    fn refusals_and_malformed_proofs() {
        let secret = Secret::from_hex(SECRET).expect("secret");
        let cases = [
            (json!({"kind": "proof", "protocol": 2, "error": "unsupported protocol version"}), "Refused"),
            (json!({"kind": "proof", "protocol": 3, "nonce": "ab".repeat(32), "proof": "00"}), "Version"),
            (json!({"kind": "proof", "protocol": 2, "nonce": "xyz", "proof": "00"}), "Unexpected"),
            (json!({"kind": "proof", "protocol": 2, "nonce": "ab".repeat(32)}), "Refused"),
            (json!({"kind": "proof", "protocol": 2, "nonce": "ab".repeat(32), "proof": "zz"}), "BadProof"),
            (json!({"kind": "event", "event": "ready"}), "Unexpected"),
        ];
        for (msg, want) in cases {
            let (mut hs, _) = ControllerHandshake::start(secret.clone(), "").expect("start");
            let err = hs.receive(&frame(msg.clone())).expect_err("must fail");
            assert!(format!("{err:?}").starts_with(want), "{msg}: {err:?}");
            assert!(hs.receive(&frame(msg)).is_err(), "stays failed");
        }
    }

    #[test]
    fn secrets_must_be_hex_and_long_enough() {
        assert!(Secret::from_hex("abc").is_err());
        assert!(Secret::from_hex(&"g".repeat(64)).is_err());
        assert!(Secret::from_hex(&"ab".repeat(15)).is_err());
        assert!(Secret::from_hex(&format!("{}\n", "AB".repeat(16))).is_ok());
        assert_eq!(format!("{:?}", Secret::from_hex(SECRET).expect("ok")), "Secret(..)");
    }
}
