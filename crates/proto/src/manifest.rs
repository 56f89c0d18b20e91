//! Origin-signed segment entries.
//!
//! For every segment the origin publishes one [`SegmentEntry`]: stream, rendition, media
//! sequence number, URI, size, SHA-256 of the whole segment, the SHA-256 of every
//! `chunk_size`-byte chunk, the publish time, and an Ed25519 signature over all of it. Clients
//! verify each chunk a peer relays on arrival (so relays can cut through without trusting
//! anyone) and the whole segment before it reaches the player.
//!
//! The signature covers a canonical binary form (see [`SegmentEntry::signed_bytes`]); the chunk
//! list enters it through `chunks_root` = SHA-256 of the concatenated chunk hashes. Entries
//! travel in two encodings: JSON in the per-rendition `manifest.json` the origin serves as a
//! plain static file (any CDN caches it), and a compact binary form carried over DataChannels
//! (see `docs/protocol.md`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::ids::{valid_name, SegmentId, MAX_NAME_LEN};

/// Default chunk size: one chunk travels in one DataChannel message of at most 16 KiB with
/// its header, and is verified on its own.
pub const DEFAULT_CHUNK_SIZE: u32 = 16_000;
/// Smallest and largest chunk size an entry may declare.
pub const MIN_CHUNK_SIZE: u32 = 1_024;
pub const MAX_CHUNK_SIZE: u32 = 16_000;
/// Most chunks a segment may have: 640 × 16,000 B ≈ 10 MB, i.e. 40 Mbit/s at 2 s. The binary
/// entry must still fit one 16 KiB message (640 × 32 B = 20 KiB would not), so the binary form
/// is bounded separately by [`MAX_WIRE_CHUNKS`].
pub const MAX_CHUNKS: usize = 640;
/// Most chunk hashes in one binary entry (one DataChannel message ≤ 16 KiB).
pub const MAX_WIRE_CHUNKS: usize = 480;
/// Longest URI an entry may carry.
pub const MAX_URI_LEN: usize = 256;
/// Version of the manifest JSON document.
pub const MANIFEST_VERSION: u32 = 1;

const SIGN_DOMAIN: &[u8] = b"SHOAL-SEGMENT-ENTRY-1\0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("malformed entry: {0}")]
    Malformed(&'static str),
    #[error("chunk list does not match the signed root")]
    ChunkRootMismatch,
    #[error("signature does not verify with the origin's public key")]
    BadSignature,
    #[error("invalid key: {0}")]
    BadKey(&'static str),
}

/// One segment as the origin published it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEntry {
    pub stream: String,
    pub rendition: String,
    pub seq: u64,
    pub duration_ms: u32,
    /// URI relative to the media playlist, as written in the playlist.
    pub uri: String,
    pub size: u64,
    pub sha256: [u8; 32],
    pub chunk_size: u32,
    pub chunk_hashes: Vec<[u8; 32]>,
    /// Wall-clock publish time, Unix milliseconds.
    pub published_ms: u64,
    pub signature: [u8; 64],
}

/// The fields that make up an entry before it is signed.
pub struct EntryInput<'a> {
    pub stream: &'a str,
    pub rendition: &'a str,
    pub seq: u64,
    pub duration_ms: u32,
    pub uri: &'a str,
    pub data: &'a [u8],
    pub chunk_size: u32,
    pub published_ms: u64,
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Number of chunks a segment of `size` bytes has.
pub fn chunk_count(size: u64, chunk_size: u32) -> usize {
    if chunk_size == 0 {
        return 0;
    }
    size.div_ceil(chunk_size as u64) as usize
}

fn chunks_root(hashes: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in hashes {
        h.update(c);
    }
    h.finalize().into()
}

impl SegmentEntry {
    /// Hash and sign a segment.
    pub fn sign(input: EntryInput<'_>, key: &SigningKey) -> Result<Self, ManifestError> {
        let chunk_size = input.chunk_size;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(ManifestError::Malformed("chunk size out of range"));
        }
        let chunk_hashes: Vec<[u8; 32]> = input.data.chunks(chunk_size as usize).map(sha256).collect();
        let mut e = SegmentEntry {
            stream: input.stream.to_owned(),
            rendition: input.rendition.to_owned(),
            seq: input.seq,
            duration_ms: input.duration_ms,
            uri: input.uri.to_owned(),
            size: input.data.len() as u64,
            sha256: sha256(input.data),
            chunk_size,
            chunk_hashes,
            published_ms: input.published_ms,
            signature: [0; 64],
        };
        e.check_shape()?;
        e.signature = key.sign(&e.signed_bytes()).to_bytes();
        Ok(e)
    }

    pub fn id(&self) -> SegmentId {
        SegmentId { rendition: self.rendition.clone(), seq: self.seq }
    }

    pub fn chunk_count(&self) -> usize {
        self.chunk_hashes.len()
    }

    /// Byte range `[start, end)` of chunk `idx` within the segment.
    pub fn chunk_range(&self, idx: usize) -> (u64, u64) {
        let start = idx as u64 * self.chunk_size as u64;
        let end = (start + self.chunk_size as u64).min(self.size);
        (start, end)
    }

    /// Length in bytes of chunk `idx`, if it exists.
    pub fn chunk_len(&self, idx: usize) -> Option<usize> {
        (idx < self.chunk_hashes.len()).then(|| {
            let (s, e) = self.chunk_range(idx);
            (e - s) as usize
        })
    }

    /// Does `data` match chunk `idx`? Checks length and hash.
    pub fn verify_chunk(&self, idx: usize, data: &[u8]) -> bool {
        let Some(expected) = self.chunk_hashes.get(idx) else { return false };
        let (s, e) = self.chunk_range(idx);
        (e - s) as usize == data.len() && sha256(data) == *expected
    }

    /// Does `data` match the whole segment? Checks length and hash.
    pub fn verify_segment(&self, data: &[u8]) -> bool {
        data.len() as u64 == self.size && sha256(data) == self.sha256
    }

    /// The canonical bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(200);
        b.extend_from_slice(SIGN_DOMAIN);
        put_str(&mut b, &self.stream);
        put_str(&mut b, &self.rendition);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.duration_ms.to_be_bytes());
        b.extend_from_slice(&(self.uri.len() as u16).to_be_bytes());
        b.extend_from_slice(self.uri.as_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.sha256);
        b.extend_from_slice(&self.chunk_size.to_be_bytes());
        b.extend_from_slice(&chunks_root(&self.chunk_hashes));
        b.extend_from_slice(&self.published_ms.to_be_bytes());
        b
    }

    fn check_shape(&self) -> Result<(), ManifestError> {
        if !valid_name(&self.stream) || !valid_name(&self.rendition) {
            return Err(ManifestError::Malformed("invalid stream or rendition name"));
        }
        if self.uri.is_empty() || self.uri.len() > MAX_URI_LEN {
            return Err(ManifestError::Malformed("uri length"));
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(ManifestError::Malformed("chunk size out of range"));
        }
        if self.size == 0 {
            return Err(ManifestError::Malformed("empty segment"));
        }
        let n = chunk_count(self.size, self.chunk_size);
        if n > MAX_CHUNKS {
            return Err(ManifestError::Malformed("too many chunks"));
        }
        if n != self.chunk_hashes.len() {
            return Err(ManifestError::Malformed("chunk count does not match size"));
        }
        Ok(())
    }

    /// Check shape and signature. Only a verified entry may be used to accept peer data.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ManifestError> {
        self.check_shape()?;
        let sig = Signature::from_bytes(&self.signature);
        key.verify(&self.signed_bytes(), &sig).map_err(|_| ManifestError::BadSignature)
    }

    /// Compact binary form carried inside peer messages. Layout (all integers big-endian):
    /// `stream(u8 len + bytes) rendition(u8+bytes) seq u64, duration_ms u32, uri(u16+bytes),
    /// size u64, sha256[32], chunk_size u32, published_ms u64, signature[64], n_chunks u16,
    /// chunk hashes n × 32`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, &self.stream);
        put_str(out, &self.rendition);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.duration_ms.to_be_bytes());
        out.extend_from_slice(&(self.uri.len() as u16).to_be_bytes());
        out.extend_from_slice(self.uri.as_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.sha256);
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.published_ms.to_be_bytes());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&(self.chunk_hashes.len() as u16).to_be_bytes());
        for h in &self.chunk_hashes {
            out.extend_from_slice(h);
        }
    }

    /// Strict inverse of [`encode`](Self::encode): every length is bounded, trailing bytes are
    /// an error. Returns the entry and the number of bytes consumed. Does not verify the
    /// signature.
    pub fn decode(input: &[u8]) -> Result<(Self, usize), ManifestError> {
        let mut r = Reader { buf: input, pos: 0 };
        let stream = r.str8()?;
        let rendition = r.str8()?;
        let seq = r.u64()?;
        let duration_ms = r.u32()?;
        let uri_len = r.u16()? as usize;
        if uri_len > MAX_URI_LEN {
            return Err(ManifestError::Malformed("uri too long"));
        }
        let uri = std::str::from_utf8(r.take(uri_len)?)
            .map_err(|_| ManifestError::Malformed("uri not utf-8"))?
            .to_owned();
        let size = r.u64()?;
        let sha256 = r.arr32()?;
        let chunk_size = r.u32()?;
        let published_ms = r.u64()?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(r.take(64)?);
        let n = r.u16()? as usize;
        if n > MAX_WIRE_CHUNKS {
            return Err(ManifestError::Malformed("too many chunk hashes"));
        }
        let mut chunk_hashes = Vec::with_capacity(n);
        for _ in 0..n {
            chunk_hashes.push(r.arr32()?);
        }
        let e = SegmentEntry {
            stream,
            rendition,
            seq,
            duration_ms,
            uri,
            size,
            sha256,
            chunk_size,
            chunk_hashes,
            published_ms,
            signature,
        };
        e.check_shape()?;
        Ok((e, r.pos))
    }

    fn to_json(&self) -> EntryJson {
        let mut chunks = Vec::with_capacity(self.chunk_hashes.len() * 32);
        for h in &self.chunk_hashes {
            chunks.extend_from_slice(h);
        }
        EntryJson {
            seq: self.seq,
            uri: self.uri.clone(),
            duration_ms: self.duration_ms,
            size: self.size,
            sha256: hex::encode(self.sha256),
            chunk_size: self.chunk_size,
            chunks: B64.encode(chunks),
            published_ms: self.published_ms,
            sig: B64.encode(self.signature),
        }
    }

    fn from_json(stream: &str, rendition: &str, j: &EntryJson) -> Result<Self, ManifestError> {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&j.sha256, &mut sha256).map_err(|_| ManifestError::Malformed("sha256 hex"))?;
        if j.chunks.len() > MAX_CHUNKS * 32 * 4 / 3 + 4 {
            return Err(ManifestError::Malformed("chunk list too long"));
        }
        let raw = B64.decode(&j.chunks).map_err(|_| ManifestError::Malformed("chunks base64"))?;
        if raw.len() % 32 != 0 {
            return Err(ManifestError::Malformed("chunk list length"));
        }
        let chunk_hashes = raw
            .chunks_exact(32)
            .map(|c| {
                let mut a = [0u8; 32];
                a.copy_from_slice(c);
                a
            })
            .collect();
        let sig = B64.decode(&j.sig).map_err(|_| ManifestError::Malformed("sig base64"))?;
        let signature: [u8; 64] = sig.try_into().map_err(|_| ManifestError::Malformed("sig length"))?;
        let e = SegmentEntry {
            stream: stream.to_owned(),
            rendition: rendition.to_owned(),
            seq: j.seq,
            duration_ms: j.duration_ms,
            uri: j.uri.clone(),
            size: j.size,
            sha256,
            chunk_size: j.chunk_size,
            chunk_hashes,
            published_ms: j.published_ms,
            signature,
        };
        e.check_shape()?;
        Ok(e)
    }
}

/// A name (already checked by `valid_name`, so at most 64 bytes) with a one-byte length.
fn put_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= MAX_NAME_LEN);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ManifestError> {
        let end = self.pos.checked_add(n).ok_or(ManifestError::Malformed("length overflow"))?;
        let s = self.buf.get(self.pos..end).ok_or(ManifestError::Malformed("truncated"))?;
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, ManifestError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, ManifestError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, ManifestError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn arr32(&mut self) -> Result<[u8; 32], ManifestError> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }
    fn str8(&mut self) -> Result<String, ManifestError> {
        let n = self.take(1)?[0] as usize;
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| ManifestError::Malformed("name not utf-8"))?;
        if !valid_name(s) {
            return Err(ManifestError::Malformed("invalid name"));
        }
        Ok(s.to_owned())
    }
}

/// JSON form of one entry inside `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryJson {
    seq: u64,
    uri: String,
    duration_ms: u32,
    size: u64,
    /// Hex SHA-256 of the whole segment.
    sha256: String,
    chunk_size: u32,
    /// Base64 of the concatenated 32-byte chunk hashes.
    chunks: String,
    published_ms: u64,
    /// Base64 Ed25519 signature over [`SegmentEntry::signed_bytes`].
    sig: String,
}

/// The per-rendition `manifest.json` document: the newest entries of one rendition.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ManifestJson {
    version: u32,
    stream: String,
    rendition: String,
    /// First 8 bytes of SHA-256 of the public key, hex; lets clients pick the key after a
    /// rotation.
    key_id: String,
    segments: Vec<EntryJson>,
}

/// A parsed `manifest.json`. Entries are shape-checked on parse; signatures are checked by the
/// consumer with [`SegmentEntry::verify`] (or all at once with [`SignedManifest::verify_all`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedManifest {
    pub stream: String,
    pub rendition: String,
    pub key_id: String,
    pub segments: Vec<SegmentEntry>,
}

/// Largest `manifest.json` a client will parse.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

impl SignedManifest {
    pub fn to_json(&self) -> String {
        let doc = ManifestJson {
            version: MANIFEST_VERSION,
            stream: self.stream.clone(),
            rendition: self.rendition.clone(),
            key_id: self.key_id.clone(),
            segments: self.segments.iter().map(SegmentEntry::to_json).collect(),
        };
        serde_json::to_string(&doc).expect("manifest serializes")
    }

    pub fn from_json(text: &[u8]) -> Result<Self, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::Malformed("manifest too large"));
        }
        let doc: ManifestJson =
            serde_json::from_slice(text).map_err(|_| ManifestError::Malformed("manifest json"))?;
        if doc.version != MANIFEST_VERSION {
            return Err(ManifestError::Malformed("unsupported manifest version"));
        }
        if !valid_name(&doc.stream) || !valid_name(&doc.rendition) {
            return Err(ManifestError::Malformed("invalid stream or rendition name"));
        }
        let segments = doc
            .segments
            .iter()
            .map(|j| SegmentEntry::from_json(&doc.stream, &doc.rendition, j))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SignedManifest { stream: doc.stream, rendition: doc.rendition, key_id: doc.key_id, segments })
    }

    pub fn verify_all(&self, key: &VerifyingKey) -> Result<(), ManifestError> {
        self.segments.iter().try_for_each(|e| e.verify(key))
    }
}

/// Short identifier of a public key: hex of the first 8 bytes of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&sha256(key.as_bytes())[..8])
}

/// Keys travel as base64 of their 32 raw bytes (`shoal keygen` writes them so).
pub fn verifying_key_from_b64(s: &str) -> Result<VerifyingKey, ManifestError> {
    let raw = B64.decode(s.trim()).map_err(|_| ManifestError::BadKey("not base64"))?;
    let arr: [u8; 32] = raw.try_into().map_err(|_| ManifestError::BadKey("public key must be 32 bytes"))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| ManifestError::BadKey("not a valid Ed25519 point"))
}

pub fn signing_key_from_b64(s: &str) -> Result<SigningKey, ManifestError> {
    let raw = B64.decode(s.trim()).map_err(|_| ManifestError::BadKey("not base64"))?;
    let arr: [u8; 32] = raw.try_into().map_err(|_| ManifestError::BadKey("secret key must be 32 bytes"))?;
    Ok(SigningKey::from_bytes(&arr))
}

pub fn key_to_b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn entry(data: &[u8]) -> SegmentEntry {
        SegmentEntry::sign(
            EntryInput {
                stream: "demo",
                rendition: "720p",
                seq: 42,
                duration_ms: 2000,
                uri: "42.ts",
                data,
                chunk_size: DEFAULT_CHUNK_SIZE,
                published_ms: 1_700_000_000_000,
            },
            &key(),
        )
        .expect("sign")
    }

    #[test]
    fn sign_verify_and_chunks() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let e = entry(&data);
        assert_eq!(e.chunk_count(), 7);
        e.verify(&key().verifying_key()).expect("verifies");
        assert!(e.verify_segment(&data));
        for i in 0..e.chunk_count() {
            let (s, t) = e.chunk_range(i);
            assert!(e.verify_chunk(i, &data[s as usize..t as usize]));
        }
        let mut bad = data.clone();
        bad[50_000] ^= 1;
        assert!(!e.verify_segment(&bad));
        assert!(!e.verify_chunk(3, &bad[48_000..64_000]));
    }

    #[test]
    fn tampered_entry_fails() {
        let data = vec![1u8; 40_000];
        let pk = key().verifying_key();
        let mut e = entry(&data);
        e.seq += 1;
        assert_eq!(e.verify(&pk), Err(ManifestError::BadSignature));
        let mut e = entry(&data);
        e.chunk_hashes[0][0] ^= 1;
        assert_eq!(e.verify(&pk), Err(ManifestError::BadSignature));
        let other = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        assert_eq!(entry(&data).verify(&other), Err(ManifestError::BadSignature));
    }

    #[test]
    fn binary_roundtrip_and_truncation() {
        let e = entry(&vec![3u8; 33_333]);
        let mut buf = Vec::new();
        e.encode(&mut buf);
        let (d, used) = SegmentEntry::decode(&buf).expect("decode");
        assert_eq!(used, buf.len());
        assert_eq!(d, e);
        for cut in 0..buf.len() {
            assert!(SegmentEntry::decode(&buf[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn json_roundtrip_and_flip() {
        let data = vec![5u8; 70_000];
        let e = entry(&data);
        let pk = key().verifying_key();
        let m = SignedManifest {
            stream: "demo".into(),
            rendition: "720p".into(),
            key_id: key_id(&pk),
            segments: vec![e],
        };
        let text = m.to_json();
        let back = SignedManifest::from_json(text.as_bytes()).expect("parse");
        assert_eq!(back, m);
        back.verify_all(&pk).expect("verify");
        // Flip one hex digit of the segment hash: parses, but no longer verifies.
        let pos = text.find("\"sha256\":\"").expect("field") + 10;
        let mut bytes = text.clone().into_bytes();
        bytes[pos] = if bytes[pos] == b'0' { b'1' } else { b'0' };
        let m2 = SignedManifest::from_json(&bytes).expect("still parses");
        assert_eq!(m2.verify_all(&pk), Err(ManifestError::BadSignature));
    }

    #[test]
    fn keys_b64() {
        let sk = key();
        let pk = sk.verifying_key();
        let s = key_to_b64(pk.as_bytes());
        assert_eq!(verifying_key_from_b64(&s).expect("pk"), pk);
        assert!(verifying_key_from_b64("!!").is_err());
        assert_eq!(signing_key_from_b64(&key_to_b64(&sk.to_bytes())).expect("sk").to_bytes(), sk.to_bytes());
    }
}
