//! Framing: a 4-byte big-endian payload length, then that many bytes of UTF-8 JSON holding one
//! object (protocol §2).
//!
//! [`FrameDecoder`] is incremental: feed it whatever bytes arrived ([`FrameDecoder::push`]) and
//! take complete frames out ([`FrameDecoder::next_frame`], [`FrameDecoder::next_object`]). It
//! never reads ahead of what it was given, never panics, and refuses an oversized length as soon
//! as the four length bytes are in, without waiting for (or buffering) the payload.
//!
//! Once the handshake is over, every frame carries a tag after its payload (§3.1,
//! [`crate::integrity`]): [`FrameDecoder::authenticate`] makes the decoder check it, and
//! [`FrameSealer`] writes it.

use crate::integrity::{FrameKey, FrameMac, IntegrityError, TAG_LEN};
use serde::Serialize;
use serde_json::{Map, Value};

/// Largest payload once the session is authenticated (8 MiB).
pub const MAX_FRAME: usize = 8 * 1024 * 1024;
/// Largest payload during the handshake.
pub const HANDSHAKE_MAX_FRAME: usize = 4096;
/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame length 0 is invalid")]
    Empty,
    #[error("frame of {length} bytes exceeds the limit of {max}")]
    TooLarge { length: usize, max: usize },
    #[error("frame payload is not UTF-8 JSON: {0}")]
    BadJson(String),
    #[error("frame payload is not a JSON object")]
    NotAnObject,
    #[error("message cannot be encoded: {0}")]
    Encode(String),
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
}

/// Serialises `message` into one frame (prefix and payload), refusing payloads over `max`.
pub fn encode_frame<T: Serialize + ?Sized>(message: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let payload = serde_json::to_vec(message).map_err(|e| FrameError::Encode(e.to_string()))?;
    if payload.is_empty() {
        return Err(FrameError::Empty);
    }
    if payload.len() > max {
        return Err(FrameError::TooLarge { length: payload.len(), max });
    }
    let length =
        u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge { length: payload.len(), max })?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Writes the frames of one direction of an authenticated session: each frame of
/// [`encode_frame`] followed by its tag (§3.1).
#[derive(Debug, Clone)]
pub struct FrameSealer {
    mac: FrameMac,
}

impl FrameSealer {
    pub fn new(key: &FrameKey) -> FrameSealer {
        FrameSealer { mac: FrameMac::new(key) }
    }

    /// The next frame: prefix, payload and tag. Frames must be written in the order they were
    /// sealed (the tag covers the sequence number).
    pub fn seal<T: Serialize + ?Sized>(&mut self, message: &T, max: usize) -> Result<Vec<u8>, FrameError> {
        let mut frame = encode_frame(message, max)?;
        let tag = self.mac.tag(&frame[..HEADER_LEN], &frame[HEADER_LEN..])?;
        frame.extend_from_slice(&tag);
        Ok(frame)
    }

    /// The next frame around a payload as it is (not checked to be JSON: for tests that play a
    /// faulty peer).
    pub fn seal_payload(&mut self, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        let length = u32::try_from(payload.len())
            .map_err(|_| FrameError::TooLarge { length: payload.len(), max: u32::MAX as usize })?;
        let mut frame = length.to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        let tag = self.mac.tag(&frame[..HEADER_LEN], payload)?;
        frame.extend_from_slice(&tag);
        Ok(frame)
    }
}

/// Parses one payload into a JSON object (UTF-8, JSON, and an object, as §2 requires).
pub fn decode_object(payload: &[u8]) -> Result<Map<String, Value>, FrameError> {
    let text = std::str::from_utf8(payload).map_err(|e| FrameError::BadJson(e.to_string()))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(FrameError::NotAnObject),
        Err(e) => Err(FrameError::BadJson(e.to_string())),
    }
}

/// Incremental frame decoder. After an error it stays failed: the stream cannot be resynchronised,
/// and the caller must close the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out; compacted lazily so feeding byte by byte stays linear.
    consumed: usize,
    max_frame: usize,
    /// Set once the session is authenticated: each frame then ends with a tag.
    mac: Option<FrameMac>,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder { buf: Vec::new(), consumed: 0, max_frame, mac: None, failed: None }
    }

    /// From now on (bytes already buffered included), every frame must end with a valid tag
    /// under `key`, in sequence from 0; one that does not fails the decoder.
    pub fn authenticate(&mut self, key: &FrameKey) {
        self.mac = Some(FrameMac::new(key));
    }

    /// Changes the limit, e.g. from [`HANDSHAKE_MAX_FRAME`] to [`MAX_FRAME`] once authenticated.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.consumed > 0 && self.consumed * 2 >= self.buf.len() {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The next complete payload, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let pending = &self.buf[self.consumed..];
        let Some(header) = pending.get(..HEADER_LEN) else { return Ok(None) };
        let mut prefix = [0u8; HEADER_LEN];
        prefix.copy_from_slice(header);
        let length = u32::from_be_bytes(prefix) as usize;
        if length == 0 {
            return Err(self.fail(FrameError::Empty));
        }
        if length > self.max_frame {
            return Err(self.fail(FrameError::TooLarge { length, max: self.max_frame }));
        }
        let tag_len = if self.mac.is_some() { TAG_LEN } else { 0 };
        let end = HEADER_LEN + length + tag_len;
        if pending.len() < end {
            return Ok(None);
        }
        let (payload, tag) = pending[HEADER_LEN..end].split_at(length);
        if let Some(mac) = &mut self.mac {
            if let Err(e) = mac.verify(&prefix, payload, tag) {
                return Err(self.fail(e.into()));
            }
        }
        let payload = payload.to_vec();
        self.consumed += end;
        Ok(Some(payload))
    }

    /// The next complete frame as a JSON object.
    pub fn next_object(&mut self) -> Result<Option<Map<String, Value>>, FrameError> {
        match self.next_frame()? {
            None => Ok(None),
            Some(payload) => decode_object(&payload).map(Some).map_err(|e| self.fail(e)),
        }
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.consumed = 0;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frames_of(messages: &[Value]) -> Vec<u8> {
        messages.iter().flat_map(|m| encode_frame(m, MAX_FRAME).expect("encode")).collect()
    }

    fn drain(dec: &mut FrameDecoder) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(obj) = dec.next_object().expect("valid") {
            out.push(Value::Object(obj));
        }
        out
    }

    #[test]
    fn round_trip_whole_and_byte_at_a_time() {
        let msgs = vec![
            json!({"kind": "event", "event": "ready", "body": {"pid": 1}}),
            json!({"kind": "response", "id": 7, "ok": true, "body": {"result": "é 🐍"}}),
            json!({"kind": "event", "event": "continued", "body": {"thread": 18446744073709551615u64}}),
        ];
        let bytes = frames_of(&msgs);

        let mut whole = FrameDecoder::new(MAX_FRAME);
        whole.push(&bytes);
        assert_eq!(drain(&mut whole), msgs);
        assert_eq!(whole.buffered(), 0);

        let mut single = FrameDecoder::new(MAX_FRAME);
        let mut got = Vec::new();
        for b in &bytes {
            single.push(std::slice::from_ref(b));
            got.extend(drain(&mut single));
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn every_chunking_yields_the_same_messages() {
        let msgs = vec![json!({"a": 1}), json!({"b": [1, 2, 3]}), json!({"c": "x".repeat(300)})];
        let bytes = frames_of(&msgs);
        assert_every_chunking_yields(&bytes, None, &msgs);
    }

    /// Decodes `bytes` pushed in pieces of every size (authenticated with `key` if given).
    fn assert_every_chunking_yields(bytes: &[u8], key: Option<&FrameKey>, msgs: &[Value]) {
        for chunk in 1..bytes.len() {
            let mut dec = FrameDecoder::new(MAX_FRAME);
            if let Some(key) = key {
                dec.authenticate(key);
            }
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                dec.push(piece);
                got.extend(drain(&mut dec));
            }
            assert_eq!(got, msgs, "chunk size {chunk}");
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_its_payload_arrives() {
        let mut dec = FrameDecoder::new(HANDSHAKE_MAX_FRAME);
        dec.push(&(HANDSHAKE_MAX_FRAME as u32 + 1).to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLarge { length: HANDSHAKE_MAX_FRAME + 1, max: HANDSHAKE_MAX_FRAME })
        );
        // It stays failed, whatever comes next.
        dec.push(&frames_of(&[json!({"a": 1})]));
        assert!(dec.next_frame().is_err());
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn a_frame_at_the_limit_is_accepted() {
        let mut dec = FrameDecoder::new(16);
        let payload = br#"{"k":"0123456"}"#;
        assert_eq!(payload.len(), 15);
        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(payload);
        dec.push(&bytes);
        assert!(dec.next_object().expect("ok").is_some());
        assert!(encode_frame(&json!({"k": "01234567890"}), 16).is_err());
    }

    #[test]
    fn zero_length_non_json_non_object_and_bad_utf8_are_errors() {
        for (bytes, want) in [
            (vec![0, 0, 0, 0], "Empty"),
            (vec![0, 0, 0, 3, b'a', b'b', b'c'], "BadJson"),
            (vec![0, 0, 0, 2, b'[', b']'], "NotAnObject"),
            (vec![0, 0, 0, 4, b'"', 0xff, 0xfe, b'"'], "BadJson"),
        ] {
            let mut dec = FrameDecoder::new(MAX_FRAME);
            dec.push(&bytes);
            let err = dec.next_object().expect_err("must fail");
            assert!(format!("{err:?}").starts_with(want), "{err:?} for {bytes:?}");
        }
    }

    fn sealed(key: &FrameKey, messages: &[Value]) -> Vec<u8> {
        let mut sealer = FrameSealer::new(key);
        messages.iter().flat_map(|m| sealer.seal(m, MAX_FRAME).expect("seal")).collect()
    }

    #[test]
    fn authenticated_frames_in_every_chunking() {
        let key = FrameKey::from_bytes([3; 32]);
        let msgs = vec![json!({"a": 1}), json!({"b": "x".repeat(100)}), json!({"c": [true]})];
        let bytes = sealed(&key, &msgs);
        assert_every_chunking_yields(&bytes, Some(&key), &msgs);
    }

    #[test]
    fn an_injected_altered_or_replayed_frame_fails_the_decoder() {
        let key = FrameKey::from_bytes([3; 32]);
        let good = sealed(&key, &[json!({"a": 1}), json!({"b": 2})]);
        let first_len = HEADER_LEN + 7 + TAG_LEN;
        let bad_tag = |seq| FrameError::Integrity(IntegrityError::BadTag { seq });
        // A frame without a tag (what a relay that does not know the key writes) in front.
        let mut injected = frames_of(&[json!({"cmd": "evaluate"})]);
        injected.extend_from_slice(&good);
        // One payload byte changed; the second frame first (out of order); the first twice.
        let mut altered = good.clone();
        altered[HEADER_LEN + 5] = b'2';
        let swapped = [&good[first_len..], &good[..first_len]].concat();
        let replayed = [&good[..first_len], &good[..first_len]].concat();
        for (bytes, seq) in [(injected, 0), (altered, 0), (swapped, 0), (replayed, 1)] {
            let mut dec = FrameDecoder::new(MAX_FRAME);
            dec.authenticate(&key);
            dec.push(&bytes);
            let mut result = dec.next_frame();
            if seq == 1 {
                assert!(result.expect("the first is genuine").is_some());
                result = dec.next_frame();
            }
            assert_eq!(result, Err(bad_tag(seq)));
            dec.push(&good);
            assert!(dec.next_frame().is_err(), "it stays failed");
        }
        // Another key: the other direction's, say.
        let mut dec = FrameDecoder::new(MAX_FRAME);
        dec.authenticate(&FrameKey::from_bytes([4; 32]));
        dec.push(&good);
        assert_eq!(dec.next_frame(), Err(bad_tag(0)));
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator: garbage of every shape, fed in odd chunks.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..2000 {
            let len = (next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 && bytes.len() >= 4 {
                // Plausible small lengths make the decoder reach the JSON parser.
                bytes[..4].copy_from_slice(&((next() % 40) as u32).to_be_bytes());
            }
            let mut dec = FrameDecoder::new(if round % 2 == 0 { HANDSHAKE_MAX_FRAME } else { MAX_FRAME });
            if round % 5 == 0 {
                dec.authenticate(&FrameKey::from_bytes([round as u8; 32]));
            }
            for piece in bytes.chunks(1 + (next() % 7) as usize) {
                dec.push(piece);
                while let Ok(Some(_)) = dec.next_object() {}
            }
        }
    }
}
