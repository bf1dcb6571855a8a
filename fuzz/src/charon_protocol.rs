//! The charon plugin protocol as the data plane reads it from the plugin's socket: the
//! length word (`frame_len`) and the frame after it (`decode`).
//!
//! Input: a stream of frames exactly as on the socket (length word, then that many bytes).
//! Every frame that decodes must encode back to the same bytes' meaning: `encode` of the
//! decoded frame decodes to an equal frame.

use cvlan_dataplane::charon::protocol::{decode, encode, frame_len};

pub fn run(data: &[u8]) {
    let mut rest = data;
    while rest.len() >= 4 {
        let word = [rest[0], rest[1], rest[2], rest[3]];
        // Also the body alone, however long it is: `decode` checks its own bounds.
        let _ = decode(&rest[4..]);
        let Ok(len) = frame_len(word) else {
            return;
        };
        let Some(body) = rest.get(4..4 + len) else {
            return;
        };
        if let Ok(frame) = decode(body) {
            let again = encode(&frame);
            assert_eq!(
                frame_len([again[0], again[1], again[2], again[3]]),
                Ok(again.len() - 4),
                "encoded length word"
            );
            assert_eq!(decode(&again[4..]), Ok(frame), "decode(encode(frame))");
        }
        rest = &rest[4 + len..];
    }
}
