//! The live origin: every segment duration it publishes one segment of each rendition, with a
//! realistic size, real bytes (one shared buffer per segment, handed out as slices) and an
//! origin-signed entry; it keeps the live playlist window and the signed `manifest.json`.
//!
//! Size model: a segment's nominal size is bitrate × duration. It starts with a keyframe whose
//! size hardly varies (`keyframe_share` of the nominal size, ±5 %) followed by predicted
//! frames whose size follows scene complexity, a log-normal AR(1) process (correlation 0.7 from
//! one segment to the next) scaled so the whole segment varies by about `size_variation`.
//! The bytes are pseudo-random (incompressible, like media). The player appends whole segments
//! (as hls.js does with fragments), so where the keyframe sits inside a segment changes only
//! the segment's size here, not when it can play.

use std::collections::VecDeque;

use bytes::Bytes;
use shoal_engine::ListedSegment;
use shoal_proto::manifest::{key_id, EntryInput, SignedManifest, DEFAULT_CHUNK_SIZE};
use shoal_proto::{SegmentEntry, SigningKey, VerifyingKey};

use crate::rng::Rng;
use crate::scenario::Stream;

/// First media sequence number of the stream.
pub const FIRST_SEQ: u64 = 1_000;
/// Segments the origin (and CDN) still serves; older ones are 404.
const SERVED: usize = 40;
pub const HOST: &str = "http://cdn.sim";

pub struct Published {
    pub seq: u64,
    pub at_us: u64,
    pub data: Bytes,
    pub entry: SegmentEntry,
}

pub struct RendOrigin {
    pub name: String,
    pub bitrate_kbps: u32,
    pub playlist_url: String,
    pub manifest_url: String,
    base_url: String,
    segs: VecDeque<Published>,
    complexity: f64,
    /// The live playlist right now.
    pub listed: Vec<ListedSegment>,
    /// The signed manifest right now (the newest `playlist_window` entries).
    pub manifest: Bytes,
}

pub struct Origin {
    pub stream: String,
    key: SigningKey,
    pub verifying_key: VerifyingKey,
    pub seg_ms: u32,
    window: usize,
    size_variation: f64,
    keyframe_share: f64,
    pub rends: Vec<RendOrigin>,
    rng: Rng,
    /// Next sequence number to publish (the same for every rendition).
    pub next_seq: u64,
    /// Segment bytes published so far, per rendition.
    pub published_bytes: Vec<u64>,
}

impl Origin {
    pub fn new(stream: &Stream, seed: u64) -> Self {
        let mut krng = Rng::derive(seed, "origin-key");
        let mut secret = [0u8; 32];
        for c in secret.chunks_mut(8) {
            c.copy_from_slice(&krng.next_u64().to_le_bytes());
        }
        let key = SigningKey::from_bytes(&secret);
        let verifying_key = key.verifying_key();
        let rends = stream
            .renditions
            .iter()
            .map(|r| {
                let base_url = format!("{HOST}/{}/{}/", stream.name, r.name);
                RendOrigin {
                    name: r.name.clone(),
                    bitrate_kbps: r.bitrate_kbps,
                    playlist_url: format!("{base_url}index.m3u8"),
                    manifest_url: format!("{base_url}manifest.json"),
                    base_url,
                    segs: VecDeque::new(),
                    complexity: 0.0,
                    listed: Vec::new(),
                    manifest: Bytes::new(),
                }
            })
            .collect::<Vec<_>>();
        let n = rends.len();
        Origin {
            stream: stream.name.clone(),
            key,
            verifying_key,
            seg_ms: stream.segment_ms,
            window: stream.playlist_window as usize,
            size_variation: stream.size_variation,
            keyframe_share: stream.keyframe_share,
            rends,
            rng: Rng::derive(seed, "origin"),
            next_seq: FIRST_SEQ,
            published_bytes: vec![0; n],
        }
    }

    /// When segment `seq` is (or was) published, in simulated microseconds: at the end of the
    /// media it holds. Its media was captured during the segment duration before that.
    pub fn publish_time_us(&self, seq: u64) -> u64 {
        (seq + 1 - FIRST_SEQ) * self.seg_ms as u64 * 1_000
    }

    /// Publish the next segment of every rendition at `now_us`.
    pub fn publish(&mut self, now_us: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let now_ms = now_us / 1_000;
        for r in 0..self.rends.len() {
            let nominal = self.rends[r].bitrate_kbps as f64 * 1_000.0 / 8.0 * self.seg_ms as f64 / 1_000.0;
            let kf = self.keyframe_share;
            let c = 0.7 * self.rends[r].complexity + (1.0f64 - 0.49).sqrt() * self.rng.normal();
            self.rends[r].complexity = c;
            let s = if kf < 1.0 { self.size_variation / (1.0 - kf) } else { 0.0 };
            let key_part = nominal * kf * (1.0 + 0.05 * self.rng.normal()).max(0.5);
            let p_part = nominal * (1.0 - kf) * (s * c - s * s / 2.0).exp();
            let size = (key_part + p_part).max(2_000.0) as usize;
            let data = Bytes::from(content(seq, r as u64, size));
            let uri = format!("{seq}.ts");
            let entry = SegmentEntry::sign(
                EntryInput {
                    stream: &self.stream,
                    rendition: &self.rends[r].name,
                    seq,
                    duration_ms: self.seg_ms,
                    uri: &uri,
                    data: &data,
                    chunk_size: DEFAULT_CHUNK_SIZE,
                    published_ms: now_ms,
                },
                &self.key,
            )
            .expect("the origin's own segments have a valid shape");
            self.published_bytes[r] += size as u64;
            let ro = &mut self.rends[r];
            ro.segs.push_back(Published { seq, at_us: now_us, data, entry });
            while ro.segs.len() > SERVED {
                ro.segs.pop_front();
            }
            let first = ro.segs.len().saturating_sub(self.window);
            ro.listed = ro
                .segs
                .iter()
                .skip(first)
                .map(|p| ListedSegment {
                    seq: p.seq,
                    url: format!("{}{}.ts", ro.base_url, p.seq),
                    duration_ms: self.seg_ms,
                })
                .collect();
            let doc = SignedManifest {
                stream: self.stream.clone(),
                rendition: ro.name.clone(),
                key_id: key_id(&self.verifying_key),
                segments: ro.segs.iter().skip(first).map(|p| p.entry.clone()).collect(),
            };
            ro.manifest = Bytes::from(doc.to_json());
        }
    }

    pub fn segment(&self, rend: usize, seq: u64) -> Option<&Published> {
        let segs = &self.rends.get(rend)?.segs;
        let first = segs.front()?.seq;
        let p = segs.get(seq.checked_sub(first)? as usize)?;
        debug_assert_eq!(p.seq, seq);
        Some(p)
    }

    pub fn newest_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1).filter(|&s| s >= FIRST_SEQ)
    }

    /// What a URL names: `(rendition, Some(seq))` for a segment, `(rendition, None)` for the
    /// manifest.
    pub fn parse_url(&self, url: &str) -> Option<(usize, Option<u64>)> {
        let rest = url.strip_prefix(HOST)?.strip_prefix('/')?;
        let rest = rest.strip_prefix(self.stream.as_str())?.strip_prefix('/')?;
        let (rend, file) = rest.split_once('/')?;
        let r = self.rends.iter().position(|x| x.name == rend)?;
        if file == "manifest.json" {
            return Some((r, None));
        }
        let seq = file.strip_suffix(".ts")?.parse().ok()?;
        Some((r, Some(seq)))
    }
}

/// Deterministic incompressible bytes for a segment.
fn content(seq: u64, rend: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    let mut x = (seq.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ rend.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        c.copy_from_slice(&b[..c.len()]);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_vary_around_the_bitrate_and_entries_verify() {
        let stream = Stream::default();
        let mut o = Origin::new(&stream, 3);
        let mut sizes = Vec::new();
        for i in 0..200u64 {
            o.publish(o.publish_time_us(FIRST_SEQ + i));
            let p = o.segment(0, FIRST_SEQ + i).expect("just published");
            assert!(p.entry.verify(&o.verifying_key).is_ok());
            assert!(p.entry.verify_segment(&p.data));
            sizes.push(p.data.len() as f64);
        }
        let nominal = 2_500_000.0 / 8.0 * 2.0;
        let mean = sizes.iter().sum::<f64>() / sizes.len() as f64;
        let sd = (sizes.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / sizes.len() as f64).sqrt();
        assert!((mean / nominal - 1.0).abs() < 0.05, "mean {mean}");
        assert!(sd / nominal > 0.05 && sd / nominal < 0.25, "sd {sd}");
        assert_eq!(o.rends[0].listed.len(), 6);
        assert_eq!(o.parse_url(&o.rends[0].listed[0].url), Some((0, Some(o.rends[0].listed[0].seq))));
        assert_eq!(o.parse_url(&o.rends[0].manifest_url), Some((0, None)));
        assert!(o.segment(0, FIRST_SEQ).is_none(), "old segments are no longer served");
    }
}
