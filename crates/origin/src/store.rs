//! Published segments, held in memory, with their playlists and signed manifests.
//!
//! Each rendition keeps an immutable [`Snapshot`] behind an `Arc`: the retained segments, the
//! rendered media playlist and the rendered `manifest.json`. Publishing builds the next
//! snapshot completely (segment bytes, signed entry, manifest, then the playlist that names
//! the segment) and swaps it in at once, so no reader ever sees a playlist naming a segment
//! whose bytes or manifest entry are not already visible. Readers clone the `Arc` and never
//! block a publisher for longer than that.
//!
//! Memory is bounded: each rendition keeps `window + retain_after_window` segments, and all
//! streams together at most `max_memory_bytes`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use shoal_proto::manifest::{key_id, key_to_b64, EntryInput, SegmentEntry, SignedManifest};
use shoal_proto::SigningKey;
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::config::OriginConfig;
use crate::hls;

/// Where a stream's segments come from. A stream belongs to one source; an ingest cannot
/// overwrite the synthetic stream and vice versa.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Synthetic,
    Ingest,
    Relay,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("stream {0} belongs to another source")]
    WrongSource(String),
    #[error("too many streams")]
    TooManyStreams,
    #[error("too many renditions in stream {0}")]
    TooManyRenditions(String),
    #[error("sequence {seq} is not after the newest published {last}")]
    Stale { seq: u64, last: u64 },
    #[error("segment cannot be signed: {0}")]
    Sign(String),
    #[error("memory budget of {0} bytes for segments is exhausted")]
    Memory(u64),
}

/// Store-wide limits, taken from [`OriginConfig`].
#[derive(Clone, Debug)]
pub struct Limits {
    pub window: usize,
    pub manifest_window: usize,
    pub retain_after_window: usize,
    pub chunk_size: u32,
    pub max_memory_bytes: u64,
    pub max_streams: usize,
    pub max_renditions: usize,
}

impl Limits {
    pub fn from_config(c: &OriginConfig) -> Self {
        Limits {
            window: c.window,
            manifest_window: c.manifest_window,
            retain_after_window: c.retain_after_window,
            chunk_size: c.chunk_size,
            max_memory_bytes: c.max_memory_bytes,
            // Ingest streams plus the synthetic and relay ones.
            max_streams: c.ingest.max_streams + 2,
            max_renditions: c.ingest.max_renditions.max(c.synthetic.renditions.len()).max(8),
        }
    }
}

/// A rendered document with its validator.
#[derive(Clone, Debug)]
pub struct Cached {
    pub body: Bytes,
    pub etag: String,
}

impl Cached {
    fn new(body: String) -> Self {
        let etag = format!("\"{}\"", hex::encode(&shoal_proto::manifest::sha256(body.as_bytes())[..8]));
        Cached { body: Bytes::from(body), etag }
    }
}

/// One published segment.
#[derive(Debug)]
pub struct Segment {
    pub seq: u64,
    pub duration_ms: u32,
    /// Wall-clock time of the segment's first frame (`EXT-X-PROGRAM-DATE-TIME`), Unix ms.
    pub pdt_ms: u64,
    pub discontinuity: bool,
    pub data: Bytes,
    pub etag: String,
    pub entry: SegmentEntry,
}

/// What a source hands to [`Store::publish`].
#[derive(Clone, Debug)]
pub struct NewSegment {
    pub seq: u64,
    pub duration_ms: u32,
    pub pdt_ms: u64,
    pub discontinuity: bool,
    pub data: Bytes,
}

/// Master-playlist attributes of a rendition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenditionInfo {
    /// Declared peak bitrate (bit/s); the published one is at least the measured peak.
    pub bandwidth: Option<u64>,
    pub resolution: Option<(u32, u32)>,
    pub codecs: Option<String>,
    pub frame_rate: Option<f64>,
    /// Every segment starts with a keyframe (synthetic source).
    pub independent: bool,
}

/// The immutable view readers get.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Retained segments, ascending sequence numbers (the playlist names the newest `window`).
    pub segments: VecDeque<Arc<Segment>>,
    pub playlist: Option<Cached>,
    pub manifest: Option<Cached>,
}

impl Snapshot {
    pub fn segment(&self, seq: u64) -> Option<&Arc<Segment>> {
        let first = self.segments.front()?.seq;
        let idx = seq.checked_sub(first)? as usize;
        self.segments
            .get(idx)
            .filter(|s| s.seq == seq)
            .or_else(|| self.segments.iter().find(|s| s.seq == seq))
    }
}

#[derive(Debug, Default)]
struct Writer {
    info: RenditionInfo,
    target_duration_s: u64,
    discontinuity_seq: u64,
    ended: bool,
    peak_bps: u64,
    total_bytes: u64,
    total_ms: u64,
    last_publish_ms: u64,
}

pub struct Rendition {
    pub name: String,
    snap: RwLock<Arc<Snapshot>>,
    writer: Mutex<Writer>,
}

impl Rendition {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

pub struct Stream {
    pub name: String,
    pub kind: SourceKind,
    renditions: RwLock<BTreeMap<String, Arc<Rendition>>>,
    master: RwLock<Option<Cached>>,
    last_publish_ms: AtomicU64,
}

impl Stream {
    pub fn rendition(&self, name: &str) -> Option<Arc<Rendition>> {
        self.renditions.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    pub fn rendition_names(&self) -> Vec<String> {
        self.renditions.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    pub fn master(&self) -> Option<Cached> {
        self.master.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn last_publish_ms(&self) -> u64 {
        self.last_publish_ms.load(Ordering::Relaxed)
    }
}

pub struct Store {
    key: SigningKey,
    key_id: String,
    public_b64: String,
    pub limits: Limits,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    memory: AtomicU64,
    changes: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    pub fn new(key: SigningKey, limits: Limits) -> Self {
        let pk = key.verifying_key();
        Store {
            key_id: key_id(&pk),
            public_b64: key_to_b64(pk.as_bytes()),
            key,
            limits,
            streams: RwLock::new(BTreeMap::new()),
            memory: AtomicU64::new(0),
            changes: watch::channel(0).0,
        }
    }

    pub fn public_key_b64(&self) -> &str {
        &self.public_b64
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verifying_key(&self) -> shoal_proto::VerifyingKey {
        self.key.verifying_key()
    }

    /// Bytes of segment data held right now.
    pub fn memory_bytes(&self) -> u64 {
        self.memory.load(Ordering::Relaxed)
    }

    /// A receiver that changes on every publish (value: publish count).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn stream(&self, name: &str) -> Option<Arc<Stream>> {
        self.streams.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    pub fn stream_names(&self) -> Vec<String> {
        self.streams.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    /// The stream `name` for source `kind`, created if new.
    pub fn open_stream(&self, name: &str, kind: SourceKind) -> Result<Arc<Stream>, StoreError> {
        if let Some(s) = self.stream(name) {
            return if s.kind == kind { Ok(s) } else { Err(StoreError::WrongSource(name.to_owned())) };
        }
        let mut map = self.streams.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = map.get(name) {
            return if s.kind == kind {
                Ok(s.clone())
            } else {
                Err(StoreError::WrongSource(name.to_owned()))
            };
        }
        if map.len() >= self.limits.max_streams {
            return Err(StoreError::TooManyStreams);
        }
        let s = Arc::new(Stream {
            name: name.to_owned(),
            kind,
            renditions: RwLock::new(BTreeMap::new()),
            master: RwLock::new(None),
            last_publish_ms: AtomicU64::new(now_ms()),
        });
        map.insert(name.to_owned(), s.clone());
        Ok(s)
    }

    /// Remove a stream and release its memory.
    pub fn remove_stream(&self, name: &str) -> bool {
        let removed = self.streams.write().unwrap_or_else(PoisonError::into_inner).remove(name);
        let Some(s) = removed else { return false };
        for r in s.renditions.read().unwrap_or_else(PoisonError::into_inner).values() {
            let bytes: u64 = r.snapshot().segments.iter().map(|x| x.data.len() as u64).sum();
            self.memory.fetch_sub(bytes, Ordering::Relaxed);
        }
        self.changes.send_modify(|v| *v += 1);
        true
    }

    fn rendition(&self, stream: &Stream, name: &str) -> Result<Arc<Rendition>, StoreError> {
        if let Some(r) = stream.rendition(name) {
            return Ok(r);
        }
        let mut map = stream.renditions.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = map.get(name) {
            return Ok(r.clone());
        }
        if map.len() >= self.limits.max_renditions {
            return Err(StoreError::TooManyRenditions(stream.name.clone()));
        }
        let r = Arc::new(Rendition {
            name: name.to_owned(),
            snap: RwLock::new(Arc::new(Snapshot::default())),
            writer: Mutex::new(Writer::default()),
        });
        map.insert(name.to_owned(), r.clone());
        Ok(r)
    }

    /// Set the master-playlist attributes of a rendition (creating it if needed).
    pub fn set_info(&self, stream: &Stream, rendition: &str, info: RenditionInfo) -> Result<(), StoreError> {
        let r = self.rendition(stream, rendition)?;
        let changed = {
            let mut w = lock(&r.writer);
            let changed = w.info != info;
            w.info = info;
            changed
        };
        if changed {
            self.render_master(stream);
        }
        Ok(())
    }

    pub fn info(&self, stream: &Stream, rendition: &str) -> Option<RenditionInfo> {
        stream.rendition(rendition).map(|r| lock(&r.writer).info.clone())
    }

    /// Sign and publish one segment. Its bytes, its manifest entry and the playlist naming it
    /// become visible together.
    pub fn publish(
        &self,
        stream: &Stream,
        rendition: &str,
        seg: NewSegment,
    ) -> Result<Arc<Segment>, StoreError> {
        let uri = format!("{}.ts", seg.seq);
        let published_ms = now_ms();
        let entry = SegmentEntry::sign(
            EntryInput {
                stream: &stream.name,
                rendition,
                seq: seg.seq,
                duration_ms: seg.duration_ms,
                uri: &uri,
                data: &seg.data,
                chunk_size: self.limits.chunk_size,
                published_ms,
            },
            &self.key,
        )
        .map_err(|e| StoreError::Sign(e.to_string()))?;
        let size = seg.data.len() as u64;
        let r = self.rendition(stream, rendition)?;
        let segment = Arc::new(Segment {
            seq: seg.seq,
            duration_ms: seg.duration_ms,
            pdt_ms: seg.pdt_ms,
            discontinuity: seg.discontinuity,
            etag: format!("\"{}\"", hex::encode(&entry.sha256[..12])),
            data: seg.data,
            entry,
        });

        let mut w = lock(&r.writer);
        let old = r.snapshot();
        if let Some(last) = old.segments.back() {
            if seg.seq <= last.seq {
                return Err(StoreError::Stale { seq: seg.seq, last: last.seq });
            }
        }
        let used = self.memory.fetch_add(size, Ordering::Relaxed) + size;
        if used > self.limits.max_memory_bytes {
            self.memory.fetch_sub(size, Ordering::Relaxed);
            return Err(StoreError::Memory(self.limits.max_memory_bytes));
        }
        let mut segments = old.segments.clone();
        segments.push_back(segment.clone());
        // The segment that just left the playlist window: its discontinuity tag leaves too.
        if segments.len() > self.limits.window {
            let left = &segments[segments.len() - 1 - self.limits.window];
            if left.discontinuity {
                w.discontinuity_seq += 1;
            }
        }
        let keep = self.limits.window + self.limits.retain_after_window;
        let mut freed = 0u64;
        while segments.len() > keep {
            if let Some(s) = segments.pop_front() {
                freed += s.data.len() as u64;
            }
        }
        self.memory.fetch_sub(freed, Ordering::Relaxed);

        let secs = u64::from(segment.duration_ms).div_ceil(1000).max(1);
        let rounded = ((u64::from(segment.duration_ms) + 500) / 1000).max(1);
        // EXTINF rounded to the nearest second must not exceed the target duration, and the
        // target duration must never change: take the largest seen (ceil for the first).
        w.target_duration_s = w.target_duration_s.max(if w.target_duration_s == 0 { secs } else { rounded });
        w.ended = false;
        let bps = size * 8 * 1000 / u64::from(segment.duration_ms.max(1));
        let peak_grew = bps > w.peak_bps;
        w.peak_bps = w.peak_bps.max(bps);
        w.total_bytes += size;
        w.total_ms += u64::from(segment.duration_ms);
        w.last_publish_ms = published_ms;
        let first_segment = old.segments.is_empty();
        let snap = self.render_snapshot(stream, &w, segments);
        *r.snap.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(snap);
        drop(w);
        stream.last_publish_ms.store(published_ms, Ordering::Relaxed);
        if first_segment || peak_grew {
            self.render_master(stream);
        }
        metrics::counter!("shoal_origin_segments_published_total").increment(1);
        metrics::counter!("shoal_origin_bytes_published_total").increment(size);
        self.changes.send_modify(|v| *v += 1);
        Ok(segment)
    }

    /// Mark a rendition as ended (`#EXT-X-ENDLIST`); the next publish reopens it.
    pub fn end(&self, stream: &Stream, rendition: &str) {
        let Some(r) = stream.rendition(rendition) else { return };
        let mut w = lock(&r.writer);
        if w.ended {
            return;
        }
        w.ended = true;
        let old = r.snapshot();
        if old.segments.is_empty() {
            return;
        }
        let snap = self.render_snapshot(stream, &w, old.segments.clone());
        *r.snap.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(snap);
        drop(w);
        self.changes.send_modify(|v| *v += 1);
    }

    fn render_snapshot(&self, stream: &Stream, w: &Writer, segments: VecDeque<Arc<Segment>>) -> Snapshot {
        let n = segments.len();
        let listed: Vec<&Segment> =
            segments.iter().skip(n.saturating_sub(self.limits.window)).map(|s| &**s).collect();
        let signed: Vec<SegmentEntry> = listed
            .iter()
            .skip(listed.len().saturating_sub(self.limits.manifest_window))
            .map(|s| s.entry.clone())
            .collect();
        let rendition = listed.first().map(|s| s.entry.rendition.clone()).unwrap_or_default();
        let manifest = SignedManifest {
            stream: stream.name.clone(),
            rendition,
            key_id: self.key_id.clone(),
            segments: signed,
        };
        let playlist = hls::media_playlist(&hls::MediaPlaylist {
            target_duration_s: w.target_duration_s,
            discontinuity_seq: w.discontinuity_seq,
            independent: w.info.independent,
            ended: w.ended,
            segments: &listed,
        });
        Snapshot {
            playlist: Some(Cached::new(playlist)),
            manifest: Some(Cached::new(manifest.to_json())),
            segments,
        }
    }

    fn render_master(&self, stream: &Stream) {
        let rends: Vec<Arc<Rendition>> =
            stream.renditions.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        let mut variants = Vec::new();
        for r in rends {
            if r.snapshot().segments.is_empty() {
                continue;
            }
            let w = lock(&r.writer);
            let avg = (w.total_ms > 0).then(|| w.total_bytes * 8 * 1000 / w.total_ms);
            variants.push(hls::Variant {
                uri: format!("{}/index.m3u8", r.name),
                bandwidth: w.info.bandwidth.unwrap_or(0).max(w.peak_bps).max(1),
                average_bandwidth: avg,
                resolution: w.info.resolution,
                codecs: w.info.codecs.clone(),
                frame_rate: w.info.frame_rate,
                independent: w.info.independent,
            });
        }
        variants.sort_by_key(|v| v.bandwidth);
        let body = (!variants.is_empty()).then(|| Cached::new(hls::master_playlist(&variants)));
        *stream.master.write().unwrap_or_else(PoisonError::into_inner) = body;
    }

    /// Drop streams of `kind` with no publish for `idle_ms`. Returns the names removed.
    pub fn remove_idle(&self, kind: SourceKind, idle_ms: u64) -> Vec<String> {
        let now = now_ms();
        let idle: Vec<String> = self
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|s| s.kind == kind && now.saturating_sub(s.last_publish_ms()) > idle_ms)
            .map(|s| s.name.clone())
            .collect();
        idle.into_iter().filter(|n| self.remove_stream(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OriginConfig;

    fn store(window: usize) -> Store {
        let cfg = OriginConfig { window, manifest_window: 3, retain_after_window: 2, ..Default::default() };
        Store::new(SigningKey::from_bytes(&[3u8; 32]), Limits::from_config(&cfg))
    }

    fn seg(seq: u64, len: usize) -> NewSegment {
        NewSegment {
            seq,
            duration_ms: 2000,
            pdt_ms: 1_700_000_000_000 + seq * 2000,
            discontinuity: false,
            data: Bytes::from(vec![(seq % 251) as u8; len]),
        }
    }

    #[test]
    fn window_slides_and_memory_is_bounded() {
        let st = store(4);
        let s = st.open_stream("demo", SourceKind::Synthetic).expect("open");
        for seq in 100..120 {
            st.publish(&s, "720p", seg(seq, 20_000)).expect("publish");
        }
        let snap = s.rendition("720p").expect("rendition").snapshot();
        assert_eq!(snap.segments.len(), 6, "window 4 + 2 retained");
        assert_eq!(snap.segments.front().map(|x| x.seq), Some(114));
        assert_eq!(st.memory_bytes(), 6 * 20_000);
        let pl = m3u8_rs::parse_media_playlist_res(&snap.playlist.as_ref().expect("playlist").body)
            .expect("parses");
        assert_eq!(pl.media_sequence, 116);
        assert_eq!(pl.segments.len(), 4);
        assert_eq!(pl.segments[0].uri, "116.ts");
        let m = SignedManifest::from_json(&snap.manifest.as_ref().expect("manifest").body).expect("manifest");
        assert_eq!(m.segments.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![117, 118, 119]);
        m.verify_all(&st.verifying_key()).expect("verifies");
        assert!(snap.segment(114).is_some() && snap.segment(113).is_none());
        // Non-increasing sequence numbers are refused and change nothing.
        assert_eq!(
            st.publish(&s, "720p", seg(119, 10)).err(),
            Some(StoreError::Stale { seq: 119, last: 119 })
        );
        assert_eq!(st.memory_bytes(), 6 * 20_000);
        assert!(st.remove_stream("demo"));
        assert_eq!(st.memory_bytes(), 0);
    }

    #[test]
    fn sources_do_not_mix_and_budget_holds() {
        let cfg = OriginConfig { max_memory_bytes: 50_000, ..Default::default() };
        let st = Store::new(SigningKey::from_bytes(&[3u8; 32]), Limits::from_config(&cfg));
        let s = st.open_stream("demo", SourceKind::Synthetic).expect("open");
        assert!(matches!(st.open_stream("demo", SourceKind::Ingest), Err(StoreError::WrongSource(_))));
        st.publish(&s, "a", seg(1, 30_000)).expect("fits");
        assert_eq!(st.publish(&s, "a", seg(2, 30_000)).err(), Some(StoreError::Memory(50_000)));
        assert_eq!(s.rendition("a").expect("a").snapshot().segments.len(), 1);
    }

    #[test]
    fn discontinuity_sequence_counts_tags_that_left() {
        let st = store(2);
        let s = st.open_stream("x", SourceKind::Ingest).expect("open");
        for seq in 1..=6 {
            let mut n = seg(seq, 2000);
            n.discontinuity = seq == 3;
            st.publish(&s, "r", n).expect("publish");
        }
        let snap = s.rendition("r").expect("r").snapshot();
        let pl =
            m3u8_rs::parse_media_playlist_res(&snap.playlist.as_ref().expect("pl").body).expect("parses");
        assert_eq!(pl.discontinuity_sequence, 1);
        assert!(pl.segments.iter().all(|s| !s.discontinuity));
    }
}
