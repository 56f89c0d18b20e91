//! Memoised crypto for thousands of engines in one process.
//!
//! Every engine verifies every chunk it receives and every signed entry it learns. The
//! simulator hands all engines slices of one shared buffer per segment, so the same bytes reach
//! thousands of engines; hashing them once per engine would cost more than everything else the
//! simulator does. [`MemoCrypto`] computes SHA-256 once per distinct chunk buffer and checks
//! an Ed25519 signature once per distinct entry.
//!
//! Soundness: a chunk is keyed by its address and length, and the memo holds a clone of the
//! `Bytes`, so the memory cannot be freed and reused for other bytes while the key exists
//! (`Bytes` are immutable). A lying peer's corrupted payload is a different buffer, so it is
//! really hashed, and rejected. An entry is memoised only once it verified, and a later entry
//! with the same signature is accepted from the memo only if it is equal field for field.
//! Old keys are dropped by generations ([`MemoCrypto::rotate`]); a dropped key is just hashed
//! again.

use std::sync::Mutex;

use bytes::Bytes;
use shoal_engine::Crypto;
use shoal_proto::manifest::sha256;
use shoal_proto::{SegmentEntry, VerifyingKey};

use crate::fxhash::FxHashMap;

type ChunkKey = (usize, usize);

#[derive(Default)]
struct Generation {
    chunks: FxHashMap<ChunkKey, ([u8; 32], Bytes)>,
    entries: FxHashMap<[u8; 64], (SegmentEntry, [u8; 32])>,
}

#[derive(Default)]
struct Memo {
    current: Generation,
    previous: Generation,
    counters: CryptoCounters,
}

/// How much work the memo saved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CryptoCounters {
    pub chunks_hashed: u64,
    pub chunk_bytes_hashed: u64,
    pub chunk_lookups: u64,
    pub signatures_checked: u64,
    pub entry_lookups: u64,
}

#[derive(Default)]
pub struct MemoCrypto {
    memo: Mutex<Memo>,
}

impl MemoCrypto {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start a new generation; keys not used since the previous rotation are forgotten.
    pub fn rotate(&self) {
        let mut m = self.memo.lock().expect("the simulator is single-threaded; the lock is never poisoned");
        let cur = std::mem::take(&mut m.current);
        m.previous = cur;
    }

    pub fn counters(&self) -> CryptoCounters {
        self.memo.lock().expect("never poisoned").counters
    }
}

impl Crypto for MemoCrypto {
    fn chunk_digest(&self, data: &Bytes) -> [u8; 32] {
        let key = (data.as_ptr() as usize, data.len());
        let mut m = self.memo.lock().expect("never poisoned");
        m.counters.chunk_lookups += 1;
        if let Some((d, _)) = m.current.chunks.get(&key) {
            return *d;
        }
        if let Some(v) = m.previous.chunks.remove(&key) {
            let d = v.0;
            m.current.chunks.insert(key, v);
            return d;
        }
        let d = sha256(data);
        m.counters.chunks_hashed += 1;
        m.counters.chunk_bytes_hashed += data.len() as u64;
        m.current.chunks.insert(key, (d, data.clone()));
        d
    }

    fn entry_valid(&self, entry: &SegmentEntry, key: &VerifyingKey) -> bool {
        let mut m = self.memo.lock().expect("never poisoned");
        m.counters.entry_lookups += 1;
        let k = key.to_bytes();
        if let Some((e, kk)) = m.current.entries.get(&entry.signature) {
            if *kk == k && e == entry {
                return true;
            }
        }
        if let Some((e, kk)) = m.previous.entries.get(&entry.signature) {
            if *kk == k && e == entry {
                let v = m.previous.entries.remove(&entry.signature).expect("just found");
                m.current.entries.insert(entry.signature, v);
                return true;
            }
        }
        m.counters.signatures_checked += 1;
        let ok = entry.verify(key).is_ok();
        if ok {
            m.current.entries.insert(entry.signature, (entry.clone(), k));
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::manifest::{EntryInput, DEFAULT_CHUNK_SIZE};
    use shoal_proto::SigningKey;

    #[test]
    fn hashes_each_buffer_once_and_really_hashes_a_copy() {
        let m = MemoCrypto::new();
        let buf = Bytes::from(vec![7u8; 64_000]);
        let a = buf.slice(16_000..32_000);
        let b = buf.slice(16_000..32_000);
        assert_eq!(m.chunk_digest(&a), sha256(&a));
        assert_eq!(m.chunk_digest(&b), sha256(&b));
        assert_eq!(m.counters().chunks_hashed, 1);
        let mut altered = a.to_vec();
        altered[0] ^= 1;
        let altered = Bytes::from(altered);
        assert_eq!(m.chunk_digest(&altered), sha256(&altered));
        assert_ne!(m.chunk_digest(&altered), m.chunk_digest(&a));
        assert_eq!(m.counters().chunks_hashed, 2);
        m.rotate();
        m.rotate();
        assert_eq!(m.chunk_digest(&a), sha256(&a));
        assert_eq!(m.counters().chunks_hashed, 3, "forgotten after two rotations");
    }

    #[test]
    fn an_entry_with_a_copied_signature_is_checked_for_real() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let data = vec![1u8; 40_000];
        let e = SegmentEntry::sign(
            EntryInput {
                stream: "s",
                rendition: "r",
                seq: 5,
                duration_ms: 2_000,
                uri: "5.ts",
                data: &data,
                chunk_size: DEFAULT_CHUNK_SIZE,
                published_ms: 1,
            },
            &key,
        )
        .expect("signs");
        let m = MemoCrypto::new();
        let vk = key.verifying_key();
        assert!(m.entry_valid(&e, &vk));
        assert!(m.entry_valid(&e, &vk));
        assert_eq!(m.counters().signatures_checked, 1);
        let mut forged = e.clone();
        forged.size += 1;
        assert!(!m.entry_valid(&forged, &vk));
        assert_eq!(m.counters().signatures_checked, 2);
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
        assert!(!m.entry_valid(&e, &other));
    }
}
