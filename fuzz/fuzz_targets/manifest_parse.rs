//! The manifest comes through CDNs and caches: parsing must never panic, and a parsed
//! manifest must serialise and parse back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_proto::SignedManifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = SignedManifest::from_json(data) {
        let back = SignedManifest::from_json(m.to_json().as_bytes()).expect("round trip");
        assert_eq!(back, m);
    }
});
