//! Frame integrity after the handshake (protocol §3.1): per-direction keys derived from the
//! secret and both nonces, and a MAC over every frame with an implicit sequence number.
//!
//! Without it, the handshake proves who is at each end but nothing after it is bound to that
//! proof: anyone on the path of a plain `tcp:` session (a relay, a NAT box, a local user who got
//! between the two with a proxy) lets the handshake through and then writes requests of their
//! own. With it, a frame is accepted only if it carries
//!
//! ```text
//! tag = HMAC-SHA256(K_direction, seq (u64 BE) || length (u32 BE) || payload)
//! ```
//!
//! where `seq` counts the frames sent in that direction from 0. An injected, altered, replayed,
//! dropped or reordered frame, or one reflected back to its sender (the other direction has the
//! other key), fails the check, and the receiver ends the session.
//!
//! Keys (RFC 5869 HKDF with SHA-256; one `T(1)` block each, as both are 32 bytes):
//!
//! ```text
//! PRK   = HMAC-SHA256(key = cn bytes || an bytes, msg = secret)        (HKDF-Extract)
//! K_c2a = HMAC-SHA256(PRK, "pymri frame key v1 controller to agent" || 0x01)
//! K_a2c = HMAC-SHA256(PRK, "pymri frame key v1 agent to controller" || 0x01)
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the tag that follows each authenticated frame's payload.
pub const TAG_LEN: usize = 32;

const CONTROLLER_TO_AGENT: &[u8] = b"pymri frame key v1 controller to agent";
const AGENT_TO_CONTROLLER: &[u8] = b"pymri frame key v1 agent to controller";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    #[error("a handshake nonce is not hex")]
    BadNonce,
    #[error("frame {seq} failed its integrity check: the connection was tampered with or corrupted")]
    BadTag { seq: u64 },
    #[error("the session sent 2^64 frames in one direction and must end")]
    Exhausted,
}

/// The key of one direction. Its bytes are never shown.
#[derive(Clone)]
pub struct FrameKey([u8; 32]);

impl std::fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameKey(..)")
    }
}

impl FrameKey {
    pub fn from_bytes(bytes: [u8; 32]) -> FrameKey {
        FrameKey(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Both directions' keys of one session.
#[derive(Debug, Clone)]
pub struct SessionKeys {
    pub controller_to_agent: FrameKey,
    pub agent_to_controller: FrameKey,
}

impl SessionKeys {
    /// The keys of §3.1 from the secret and the two nonces (as their hex text).
    pub fn derive(
        secret: &[u8],
        controller_nonce: &str,
        agent_nonce: &str,
    ) -> Result<SessionKeys, IntegrityError> {
        let mut salt = crate::handshake::from_hex(controller_nonce).ok_or(IntegrityError::BadNonce)?;
        salt.extend(crate::handshake::from_hex(agent_nonce).ok_or(IntegrityError::BadNonce)?);
        let prk = hmac_once(&salt, &[secret]);
        Ok(SessionKeys {
            controller_to_agent: FrameKey(hmac_once(&prk, &[CONTROLLER_TO_AGENT, &[1]])),
            agent_to_controller: FrameKey(hmac_once(&prk, &[AGENT_TO_CONTROLLER, &[1]])),
        })
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this never fails.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

fn hmac_once(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = keyed(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Computes the tags of one direction in order: one per frame, the sequence number kept here.
#[derive(Clone)]
pub struct FrameMac {
    /// Keyed once (its inner and outer pads hashed); cloned for each frame.
    keyed: HmacSha256,
    seq: u64,
}

impl std::fmt::Debug for FrameMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameMac").field("seq", &self.seq).finish_non_exhaustive()
    }
}

impl FrameMac {
    pub fn new(key: &FrameKey) -> FrameMac {
        FrameMac { keyed: keyed(&key.0), seq: 0 }
    }

    /// The sequence number the next frame gets.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The tag of the next frame (`header` is its 4-byte length prefix), advancing the sequence.
    pub fn tag(&mut self, header: &[u8], payload: &[u8]) -> Result<[u8; TAG_LEN], IntegrityError> {
        let tag = self.compute(header, payload);
        self.seq = self.seq.checked_add(1).ok_or(IntegrityError::Exhausted)?;
        Ok(tag.finalize().into_bytes().into())
    }

    /// Checks the tag of the next frame in constant time, advancing the sequence if it holds.
    pub fn verify(&mut self, header: &[u8], payload: &[u8], tag: &[u8]) -> Result<(), IntegrityError> {
        let seq = self.seq;
        self.compute(header, payload).verify_slice(tag).map_err(|_| IntegrityError::BadTag { seq })?;
        self.seq = self.seq.checked_add(1).ok_or(IntegrityError::Exhausted)?;
        Ok(())
    }

    fn compute(&self, header: &[u8], payload: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(&self.seq.to_be_bytes());
        mac.update(header);
        mac.update(payload);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::to_hex;

    /// The test vector of protocol §3.1, shared with python/tests/test_protocol.py: the same
    /// secret, nonces, sequence number and frame give the same keys and tag in both
    /// implementations.
    #[test]
    fn keys_and_tags_match_the_protocol_test_vector() {
        let secret = [0x5au8; 32];
        let keys = SessionKeys::derive(&secret, &"11".repeat(32), &"22".repeat(32)).expect("keys");
        assert_eq!(
            to_hex(keys.controller_to_agent.bytes()),
            "2eff7486ed75bb12dde0fd1d9c27e9626b0cc40e96d5d9d0449d373f29cc6653"
        );
        assert_eq!(
            to_hex(keys.agent_to_controller.bytes()),
            "3020235ae53fe6ae9bcb149715e8349c05225847b9b944a527bd4fe96584ae57"
        );
        let payload = br#"{"kind":"request","id":1,"cmd":"threads"}"#;
        let header = (payload.len() as u32).to_be_bytes();
        let mut mac = FrameMac::new(&keys.controller_to_agent);
        mac.seq = 7;
        assert_eq!(
            to_hex(&mac.tag(&header, payload).expect("tag")),
            "3c604cb27a68a324e8fff43c50a4d41a6d3f9c7c248860ab2afe979661714230"
        );
        assert_eq!(mac.seq(), 8);
    }

    #[test]
    fn a_tag_holds_for_its_direction_and_sequence_only() {
        let keys = SessionKeys::derive(&[7u8; 16], &"ab".repeat(32), &"cd".repeat(32)).expect("keys");
        let (header, payload) = (2u32.to_be_bytes(), b"{}");
        let mut sender = FrameMac::new(&keys.agent_to_controller);
        let first = sender.tag(&header, payload).expect("tag");
        let second = sender.tag(&header, payload).expect("tag");
        assert_ne!(first, second, "the sequence number is covered");

        let mut receiver = FrameMac::new(&keys.agent_to_controller);
        assert_eq!(receiver.verify(&header, payload, &second), Err(IntegrityError::BadTag { seq: 0 }));
        let mut receiver = FrameMac::new(&keys.agent_to_controller);
        receiver.verify(&header, payload, &first).expect("in order");
        receiver.verify(&header, payload, &second).expect("in order");
        // A frame reflected back to its sender is checked with the other direction's key.
        let mut reflected = FrameMac::new(&keys.controller_to_agent);
        assert!(reflected.verify(&header, payload, &first).is_err());
        // Another length prefix, another payload, a short tag: all refused.
        let mut receiver = FrameMac::new(&keys.agent_to_controller);
        assert!(receiver.verify(&3u32.to_be_bytes(), payload, &first).is_err());
        assert!(receiver.verify(&header, b"[]", &first).is_err());
        assert!(receiver.verify(&header, payload, &first[..16]).is_err());
        assert!(SessionKeys::derive(&[7u8; 16], "zz", &"cd".repeat(32)).is_err());
        assert_eq!(format!("{:?}", keys.controller_to_agent), "FrameKey(..)");
    }
}
