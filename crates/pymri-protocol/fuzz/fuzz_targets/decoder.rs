//! Arbitrary bytes, cut into arbitrary chunks, through the frame decoder (with or without frame
//! tags), the message parser and the handshake: none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pymri_protocol::{
    ControllerHandshake, FrameDecoder, FrameKey, Incoming, Secret, HANDSHAKE_MAX_FRAME, MAX_FRAME,
};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let chunk = usize::from(cut % 16) + 1;
    let mut decoder = FrameDecoder::new(if cut & 0x80 != 0 { HANDSHAKE_MAX_FRAME } else { MAX_FRAME });
    if cut & 0x40 != 0 {
        decoder.authenticate(&FrameKey::from_bytes([cut; 32]));
    }
    let secret = Secret::from_hex(&"ab".repeat(32)).expect("valid secret");
    let (mut handshake, _) =
        ControllerHandshake::with_nonce(secret, "", "cd".repeat(32)).expect("challenge encodes");
    for piece in rest.chunks(chunk) {
        decoder.push(piece);
        while let Ok(Some(payload)) = decoder.next_frame() {
            let _ = handshake.receive(&payload);
            if let Ok(obj) = pymri_protocol::frame::decode_object(&payload) {
                let _ = Incoming::from_object(obj);
            }
        }
    }
});
