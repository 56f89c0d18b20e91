//! Peer messages come from strangers: decoding must never panic, and whatever decodes must
//! re-encode to the same bytes (the format has one encoding per message).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shoal_proto::wire::{Message, MAX_MESSAGE};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    if let Ok(msg) = Message::decode(&input) {
        let again = msg.encode().expect("a decoded message re-encodes");
        assert!(again.len() <= MAX_MESSAGE);
        assert_eq!(again, data, "decode/encode is not the identity");
    }
});
