//! One segment as this client knows it: its signed entry, the chunks it holds, who is
//! delivering it and who waits for it.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use shoal_proto::SegmentEntry;

use crate::io::{HttpId, Millis, PeerHandle};

/// Rendition index into the engine's table and media sequence number.
pub type SegKey = (u16, u64);

/// Why this client fetches (or would fetch) a segment from the CDN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdnReason {
    /// Chosen by rendezvous hashing to bring the new segment into the neighbourhood.
    Edge,
    /// The playback deadline came too close for peers to finish in time.
    Deadline,
    /// No peer offered the segment in time.
    NoSource,
    /// The player is starting (or stalled, or P2P is off): never wait for peers then.
    Startup,
}

/// This client's part in bringing a new segment into its neighbourhood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not decided yet (nothing wants the segment).
    Undecided,
    /// First CDN fetcher: fetch at once.
    Primary,
    /// Best-ranked among its neighbours but thinned out: wait for a peer, then fetch.
    Secondary,
    /// Ask the best-ranked neighbour and wait for its data.
    Follower,
}

/// Bytes received in order, kept as the pieces they arrived in so a body is never copied:
/// a chunk that lies inside one piece is a zero-copy slice of it. A driver that hands every
/// engine slices of one shared buffer (the swarm simulator) gets chunks that share it too, and
/// a device keeps one copy of what it received, not two.
#[derive(Clone, Debug, Default)]
pub struct Pieces {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl Pieces {
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.parts.push_back(b);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Remove and return the first `n` bytes (fewer if there are fewer): a slice of the first
    /// piece when it holds them all, a copy otherwise.
    pub fn take(&mut self, n: usize) -> Bytes {
        let n = n.min(self.len);
        self.len -= n;
        if let Some(front) = self.parts.front_mut() {
            if front.len() >= n {
                let out = front.split_to(n);
                if front.is_empty() {
                    self.parts.pop_front();
                }
                return out;
            }
        }
        let mut v = BytesMut::with_capacity(n);
        while v.len() < n {
            let Some(front) = self.parts.front_mut() else { break };
            let k = (n - v.len()).min(front.len());
            v.extend_from_slice(&front.split_to(k));
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
        v.freeze()
    }

    /// Bytes `[start, end)` without removing them: a slice when one piece holds them.
    pub fn slice(&self, start: usize, end: usize) -> Bytes {
        let end = end.min(self.len);
        if start >= end {
            return Bytes::new();
        }
        let mut at = 0;
        let mut out: Option<BytesMut> = None;
        for p in &self.parts {
            let (ps, pe) = (at, at + p.len());
            at = pe;
            if pe <= start {
                continue;
            }
            if ps >= end {
                break;
            }
            let (s, e) = (start.max(ps) - ps, end.min(pe) - ps);
            if out.is_none() && ps <= start && end <= pe {
                return p.slice(s..e);
            }
            out.get_or_insert_with(|| BytesMut::with_capacity(end - start)).extend_from_slice(&p[s..e]);
        }
        out.map(BytesMut::freeze).unwrap_or_default()
    }

    /// The pieces, in order (cheap clones of the same buffers).
    pub fn to_vec(&self) -> Vec<Bytes> {
        self.parts.iter().cloned().collect()
    }
}

#[derive(Debug)]
pub struct HttpJob {
    pub id: HttpId,
    /// First chunk the request covers (it is a Range request when > 0).
    pub first_chunk: usize,
    /// End of the chunks asked for (a deadline fallback fetches only what peers do not bring).
    pub end_chunk: usize,
    /// Bytes of the body received so far.
    pub received: u64,
    /// Bytes of a full (200) response to skip because a range was asked and ignored.
    pub skip: u64,
    pub started: Millis,
    pub first_byte_at: Option<Millis>,
    pub status_ok: bool,
    /// Bytes not cut into chunks yet: the chunk being filled (entry known) or the whole body
    /// (entry unknown).
    pub buf: Pieces,
}

/// A request this client has outstanding at a peer: a range of chunks, sent in order.
#[derive(Clone, Debug)]
pub struct PeerDownload {
    pub peer: PeerHandle,
    pub req_id: u32,
    pub requested_at: Millis,
    pub last_progress: Millis,
    pub got_any: bool,
    /// The peer had not said it has the segment when asked: the request waits there.
    pub uphill: bool,
    /// The next chunk this request should bring, and the end of the range asked for (the
    /// source sends the range in order).
    pub next: u32,
    pub end: u32,
}

pub struct Segment {
    pub key: SegKey,
    pub url: Option<String>,
    pub duration_ms: u32,
    /// Verified signed entry.
    pub entry: Option<Arc<SegmentEntry>>,
    pub learned_at: Millis,
    pub chunks: Vec<Option<Bytes>>,
    pub have: usize,
    /// Leading chunks all present.
    pub prefix: usize,
    pub complete: bool,
    /// Deliver `raw` unverified only after this (waiting for the signed entry).
    pub raw_hold_until: Option<Millis>,
    /// CDN body of a segment whose entry is unknown, or that failed verification.
    pub raw: Option<Pieces>,
    pub unshareable: bool,
    pub player_wants: bool,
    pub player_asked_at: Option<Millis>,
    pub delivered: bool,
    pub http: Option<HttpJob>,
    pub http_attempts: u32,
    pub retry_at: Option<Millis>,
    /// Requests outstanding at peers, each for a disjoint range of the missing chunks.
    pub dls: Vec<PeerDownload>,
    /// The better-ranked neighbour a follower waits on.
    pub uphill: Option<PeerHandle>,
    /// Ready neighbours: ranked above this client for this segment, and a per-segment draw
    /// (cached: rendezvous hashing is the costliest part of a download plan).
    pub ranks: Vec<(PeerHandle, bool, u64)>,
    pub ranks_version: Option<u64>,
    pub role: Role,
    /// When to go to the CDN if no peer has started delivering.
    pub cdn_at: Option<Millis>,
    pub cdn_bytes: u64,
    pub peer_bytes: u64,
    /// Requests from peers served from this segment: (peer, request id).
    pub subscribers: Vec<(PeerHandle, u32)>,
    /// Peers that said Absent/Busy for this segment, and until when to skip them.
    pub skip_peers: Vec<(PeerHandle, Millis)>,
    /// Have(Arriving) already sent to neighbours.
    pub announced_arriving: bool,
    pub first_data_at: Option<Millis>,
}

impl Segment {
    pub fn new(key: SegKey, now: Millis) -> Self {
        Segment {
            key,
            url: None,
            duration_ms: 0,
            entry: None,
            learned_at: now,
            chunks: Vec::new(),
            have: 0,
            prefix: 0,
            complete: false,
            raw: None,
            raw_hold_until: None,
            unshareable: false,
            player_wants: false,
            player_asked_at: None,
            delivered: false,
            http: None,
            http_attempts: 0,
            retry_at: None,
            dls: Vec::new(),
            uphill: None,
            ranks: Vec::new(),
            ranks_version: None,
            role: Role::Undecided,
            cdn_at: None,
            cdn_bytes: 0,
            peer_bytes: 0,
            subscribers: Vec::new(),
            skip_peers: Vec::new(),
            announced_arriving: false,
            first_data_at: None,
        }
    }

    pub fn set_entry(&mut self, entry: Arc<SegmentEntry>) {
        if self.entry.is_some() {
            return;
        }
        self.chunks = vec![None; entry.chunk_count()];
        if self.duration_ms == 0 {
            self.duration_ms = entry.duration_ms;
        }
        self.entry = Some(entry);
    }

    pub fn size(&self) -> Option<u64> {
        self.entry.as_ref().map(|e| e.size)
    }

    /// Store a verified chunk. Returns false if it was already there (a duplicate).
    pub fn put_chunk(&mut self, idx: usize, data: Bytes) -> bool {
        match self.chunks.get_mut(idx) {
            Some(slot @ None) => {
                *slot = Some(data);
                self.have += 1;
                while self.prefix < self.chunks.len() && self.chunks[self.prefix].is_some() {
                    self.prefix += 1;
                }
                if self.have == self.chunks.len() {
                    self.complete = true;
                }
                true
            }
            _ => false,
        }
    }

    pub fn has_chunk(&self, idx: usize) -> bool {
        matches!(self.chunks.get(idx), Some(Some(_)))
    }

    /// Bytes still missing (estimated from `fallback` when the size is unknown).
    pub fn missing_bytes(&self, fallback: u64) -> u64 {
        match &self.entry {
            Some(e) => {
                let mut m = 0;
                for (i, c) in self.chunks.iter().enumerate() {
                    if c.is_none() {
                        let (s, t) = e.chunk_range(i);
                        m += t - s;
                    }
                }
                m
            }
            None => fallback,
        }
    }

    /// Any source (CDN or peer) is delivering right now.
    pub fn in_flight(&self) -> bool {
        self.http.is_some() || !self.dls.is_empty()
    }

    /// Chunk `idx` is on its way from the CDN or from a peer other than `except`.
    pub fn coming(&self, idx: u32, except: PeerHandle) -> bool {
        if self.http.as_ref().is_some_and(|j| (j.first_chunk..j.end_chunk).contains(&(idx as usize))) {
            return true;
        }
        self.dls.iter().any(|d| d.peer != except && d.next <= idx && idx < d.end)
    }

    /// The first chunk in `[from, to)` neither held nor asked for.
    pub fn next_uncovered(&self, from: u32, to: u32) -> Option<u32> {
        let mut c = from;
        while c < to {
            if self.has_chunk(c as usize) {
                c += 1;
            } else if let Some(d) = self.dls.iter().find(|d| d.next <= c && c < d.end) {
                c = d.end;
            } else {
                return Some(c);
            }
        }
        None
    }

    /// End of the run of uncovered chunks starting at `first`, bridging covered gaps of up to
    /// two chunks (cheaper to fetch again than a request of their own).
    pub fn uncovered_run_end(&self, first: u32, to: u32) -> u32 {
        run_end(first, to, |c| !self.covered(c))
    }

    /// Runs of chunks not held (as `missing_run_end` bridges them); 0 while the entry is unknown.
    pub fn missing_runs(&self) -> u64 {
        let n = self.chunks.len() as u32;
        let mut runs = 0;
        let mut c = self.prefix as u32;
        while let Some(f) = self.next_missing(c, n) {
            runs += 1;
            c = self.missing_run_end(f, n);
        }
        runs
    }

    /// First chunk in `[from, to)` not held.
    pub fn next_missing(&self, from: u32, to: u32) -> Option<u32> {
        (from..to).find(|&c| !self.has_chunk(c as usize))
    }

    /// End of the run of chunks not held starting at `first`, bridging gaps of up to two held
    /// chunks.
    pub fn missing_run_end(&self, first: u32, to: u32) -> u32 {
        run_end(first, to, |c| !self.has_chunk(c as usize))
    }

    /// Chunk `idx` is held or already asked for.
    pub fn covered(&self, idx: u32) -> bool {
        self.has_chunk(idx as usize) || self.dls.iter().any(|d| d.next <= idx && idx < d.end)
    }

    /// Something to share: it is arriving or complete, verified, and not marked unshareable.
    pub fn shareable(&self) -> bool {
        self.entry.is_some() && !self.unshareable && (self.have > 0 || self.in_flight())
    }

    pub fn skipping(&self, peer: PeerHandle, now: Millis) -> bool {
        self.skip_peers.iter().any(|&(p, until)| p == peer && until > now)
    }
}

/// End of the run of `hole` chunks starting at `first` (itself a hole), up to `to`, bridging
/// gaps of up to two non-hole chunks between holes.
fn run_end(first: u32, to: u32, hole: impl Fn(u32) -> bool) -> u32 {
    let mut end = first + 1;
    loop {
        while end < to && hole(end) {
            end += 1;
        }
        match (end..to).find(|&c| hole(c)) {
            Some(next) if next <= end + 2 => end = next + 1,
            _ => return end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_slice_without_copying_inside_a_piece_and_copy_across() {
        let buf = Bytes::from((0u8..=255).cycle().take(100_000).collect::<Vec<u8>>());
        let mut p = Pieces::default();
        p.push(buf.slice(0..64_000));
        p.push(buf.slice(64_000..100_000));
        assert_eq!(p.len(), 100_000);
        let s = p.slice(16_000, 32_000);
        assert_eq!(s.as_ptr(), buf[16_000..].as_ptr(), "inside one piece: shared");
        let across = p.slice(60_000, 70_000);
        assert_eq!(&across[..], &buf[60_000..70_000]);
        let first = p.take(16_000);
        assert_eq!(first.as_ptr(), buf.as_ptr());
        let span = p.take(60_000);
        assert_eq!(&span[..], &buf[16_000..76_000]);
        assert_eq!(p.len(), 24_000);
        assert_eq!(p.take(1_000_000).len(), 24_000);
        assert!(p.is_empty());
        let whole: Vec<u8> = p.to_vec().concat();
        assert!(whole.is_empty());
    }

    #[test]
    fn a_cdn_run_stops_at_chunks_already_here_or_coming() {
        let mut seg = Segment::new((0, 1), 0);
        seg.chunks = vec![None; 20];
        for c in [5, 6, 7, 12] {
            seg.chunks[c] = Some(Bytes::from_static(b"x"));
        }
        // Three chunks held: the run ends before them.
        assert_eq!(seg.uncovered_run_end(0, 20), 5);
        assert_eq!(seg.missing_run_end(0, 20), 5);
        // One held chunk is cheaper to fetch again than a request of its own: bridged.
        assert_eq!(seg.uncovered_run_end(8, 20), 20);
        assert_eq!(seg.missing_run_end(8, 20), 20);
        assert_eq!(seg.next_missing(5, 20), Some(8));
        assert_eq!(seg.missing_runs(), 2);
        // Chunks a peer is bringing count as covered (not as missing).
        seg.dls.push(PeerDownload {
            peer: 1,
            req_id: 1,
            requested_at: 0,
            last_progress: 0,
            got_any: true,
            uphill: false,
            next: 15,
            end: 18,
        });
        assert_eq!(seg.uncovered_run_end(8, 20), 15);
        assert_eq!(seg.missing_run_end(8, 20), 20);
    }
}
