//! The two cryptographic checks the engine makes, behind a trait so the swarm simulator can
//! memoise them: it hands the same chunk buffer to thousands of engines, and hashing it once
//! per engine would cost more than everything else it simulates. Production drivers use
//! [`RealCrypto`].

use bytes::Bytes;
use shoal_proto::manifest::{sha256, SegmentEntry};
use shoal_proto::VerifyingKey;

pub trait Crypto: Send + Sync {
    /// SHA-256 of a chunk.
    fn chunk_digest(&self, data: &Bytes) -> [u8; 32];
    /// Shape and Ed25519 signature of an entry.
    fn entry_valid(&self, entry: &SegmentEntry, key: &VerifyingKey) -> bool;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RealCrypto;

impl Crypto for RealCrypto {
    fn chunk_digest(&self, data: &Bytes) -> [u8; 32] {
        sha256(data)
    }

    fn entry_valid(&self, entry: &SegmentEntry, key: &VerifyingKey) -> bool {
        entry.verify(key).is_ok()
    }
}
