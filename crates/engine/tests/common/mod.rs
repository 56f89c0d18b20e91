//! A small deterministic world for scenario tests: a live origin publishing signed segments,
//! a CDN with a first-byte time and a rate, peers connected by links with latency and an
//! uplink each, and an hls.js-like player per engine. Virtual time, one event queue, no
//! threads. Messages really go through the wire codec.
//!
//! The swarm simulator (`shoal-sim`) is the scaled-up, flow-level version of this; this one
//! stays small and exact so each scenario test can assert precise outcomes.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use bytes::Bytes;
use shoal_engine::*;
use shoal_proto::manifest::{key_id, EntryInput, SignedManifest, DEFAULT_CHUNK_SIZE};
use shoal_proto::wire::Message;
use shoal_proto::{SegmentEntry, SigningKey};

pub const STREAM: &str = "demo";
pub const REND: &str = "720p";
pub const BASE: &str = "http://cdn.test/live/demo/720p/";

/// Deterministic xorshift PRNG.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub struct Published {
    pub entry: SegmentEntry,
    pub data: Bytes,
    pub at: u64,
}

pub struct Origin {
    key: SigningKey,
    pub segments: BTreeMap<u64, Published>,
    pub seg_ms: u64,
    pub bytes_per_seg: usize,
    pub window: usize,
}

impl Origin {
    fn publish(&mut self, seq: u64, now: u64, rng: &mut Rng) {
        let size = self.bytes_per_seg + rng.below(self.bytes_per_seg as u64 / 10) as usize;
        let mut data = vec![0u8; size];
        let mut x = seq.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let uri = format!("{seq}.ts");
        let entry = SegmentEntry::sign(
            EntryInput {
                stream: STREAM,
                rendition: REND,
                seq,
                duration_ms: self.seg_ms as u32,
                uri: &uri,
                data: &data,
                chunk_size: DEFAULT_CHUNK_SIZE,
                published_ms: now,
            },
            &self.key,
        )
        .expect("sign");
        self.segments.insert(seq, Published { entry, data: Bytes::from(data), at: now });
        while self.segments.len() > 30 {
            let first = *self.segments.keys().next().expect("non-empty");
            self.segments.remove(&first);
        }
    }

    pub fn listed(&self, now: u64) -> Vec<ListedSegment> {
        let mut v: Vec<ListedSegment> = self
            .segments
            .values()
            .filter(|p| p.at <= now)
            .map(|p| ListedSegment {
                seq: p.entry.seq,
                url: format!("{BASE}{}.ts", p.entry.seq),
                duration_ms: self.seg_ms as u32,
            })
            .collect();
        let n = v.len();
        if n > self.window {
            v.drain(..n - self.window);
        }
        v
    }

    fn manifest(&self, now: u64) -> Vec<u8> {
        let segs: Vec<SegmentEntry> =
            self.segments.values().filter(|p| p.at <= now).map(|p| p.entry.clone()).collect();
        let n = segs.len();
        let segs = segs[n.saturating_sub(6)..].to_vec();
        SignedManifest {
            stream: STREAM.into(),
            rendition: REND.into(),
            key_id: key_id(&self.key.verifying_key()),
            segments: segs,
        }
        .to_json()
        .into_bytes()
    }
}

/// How a node misbehaves, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Flips a byte in every chunk it sends.
    Lies,
    /// Stops sending data after this many chunks (but stays connected).
    StallsAfter(u32),
}

#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub join_at: u64,
    pub upload_bps: u64,
    pub cfg: Config,
    pub fault: Fault,
    /// Playlist refresh phase offset (ms) within a segment duration.
    pub refresh_phase: u64,
}

pub struct Player {
    pub started: Option<u64>,
    pub joined: u64,
    pub next_req: Option<u64>,
    pub in_flight: bool,
    /// Media time (ms) of the buffer end and of the playhead, since the first segment.
    pub buffer_end: u64,
    pub playhead: u64,
    pub last_tick: u64,
    pub playing: bool,
    pub stalls: u32,
    pub stall_ms: u64,
    pub stalled_since: Option<u64>,
    pub listed: Vec<ListedSegment>,
    pub delivered: Vec<(u64, Source, bool)>,
    pub late: u32,
    pub deadlines: HashMap<u64, u64>,
    pub startup_ms: Option<u64>,
}

struct HttpState {
    seq: Option<u64>,
    body: Bytes,
    pos: usize,
    range_start: u64,
}

pub struct Node {
    pub engine: Engine,
    pub spec: NodeSpec,
    pub alive: bool,
    pub player: Player,
    pub peers: HashMap<usize, PeerHandle>,
    pub handle_to: HashMap<PeerHandle, usize>,
    next_handle: PeerHandle,
    http: HashMap<HttpId, HttpState>,
    up_free_at: u64,
    /// Bytes in flight per (this node -> peer handle) not yet departed the uplink.
    buffered: HashMap<PeerHandle, u64>,
    pub sent_chunks: u32,
    pub uploaded: u64,
    pub http_ranges: Vec<(u64, u64)>,
    /// Requests this node sent: (to node, request id) -> segment.
    req_seq: HashMap<(usize, u32), u64>,
    /// First and last time bytes of a segment arrived here (from a peer or the CDN).
    pub recv_times: HashMap<u64, (u64, u64)>,
}

#[derive(Debug)]
enum Ev {
    Publish(u64),
    Join(usize),
    Refresh(usize),
    Wake(usize),
    PlayerTick(usize),
    Msg { from: usize, to: usize, bytes: Bytes },
    Departed { node: usize, peer: PeerHandle, bytes: u64 },
    Http { node: usize, id: HttpId, event: HttpEvent },
    HttpNext { node: usize, id: HttpId },
    Connect(usize, usize),
    Kill(usize),
}

pub struct World {
    pub now: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    seq: u64,
    pub origin: Origin,
    pub nodes: Vec<Node>,
    pub rng: Rng,
    pub latency_ms: u64,
    pub cdn_ttfb_ms: u64,
    /// Extra first-byte time of manifest responses.
    pub manifest_delay_ms: u64,
    /// CDN bytes per millisecond to one client.
    pub cdn_rate: u64,
    /// CDN body bytes served per segment.
    pub cdn_bytes: HashMap<u64, u64>,
    pub cdn_manifest_bytes: u64,
    pub links: HashSet<(usize, usize)>,
    pub first_seq: u64,
    pub origin_pub: shoal_proto::VerifyingKey,
}

impl World {
    pub fn new(seed: u64, bitrate_bps: u64) -> Self {
        let key = SigningKey::from_bytes(&[42; 32]);
        let origin_pub = key.verifying_key();
        let seg_ms = 2_000;
        let mut w = World {
            now: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            origin: Origin {
                key,
                segments: BTreeMap::new(),
                seg_ms,
                bytes_per_seg: (bitrate_bps / 8 * seg_ms / 1000) as usize,
                window: 10,
            },
            nodes: Vec::new(),
            rng: Rng::new(seed),
            latency_ms: 20,
            cdn_ttfb_ms: 60,
            manifest_delay_ms: 0,
            cdn_rate: 2_500, // 20 Mbit/s per client
            cdn_bytes: HashMap::new(),
            cdn_manifest_bytes: 0,
            links: HashSet::new(),
            first_seq: 100,
            origin_pub,
        };
        // A live stream already running: ten segments published before anyone joins.
        for i in 0..10u64 {
            let seq = w.first_seq + i;
            let mut rng = w.rng.clone();
            w.origin.publish(seq, 0, &mut rng);
            w.rng = rng;
        }
        let mut rng = w.rng.clone();
        for s in w.origin.segments.values_mut() {
            s.at = 0;
        }
        let next = w.first_seq + 10;
        w.push(seg_ms, Ev::Publish(next));
        w.rng = rng.clone();
        let _ = rng.next();
        w
    }

    fn push(&mut self, at: u64, ev: Ev) {
        let id = self.seq;
        self.seq += 1;
        self.events.insert(id, ev);
        self.queue.push(Reverse((at.max(self.now), id)));
    }

    pub fn add_node(&mut self, spec: NodeSpec) -> usize {
        let i = self.nodes.len();
        let mut cfg = spec.cfg.clone();
        if cfg.upload_kbps == 0 {
            cfg.upload_kbps = (spec.upload_bps / 1000) as u32;
        }
        let engine = Engine::new(
            cfg,
            Identity { peer_id: format!("peer-{i:03}"), stream: STREAM.into() },
            Some(self.origin_pub),
            spec.join_at,
        );
        let join_at = spec.join_at;
        self.nodes.push(Node {
            engine,
            spec,
            alive: false,
            player: Player {
                started: None,
                joined: join_at,
                next_req: None,
                in_flight: false,
                buffer_end: 0,
                playhead: 0,
                last_tick: join_at,
                playing: false,
                stalls: 0,
                stall_ms: 0,
                stalled_since: None,
                listed: Vec::new(),
                delivered: Vec::new(),
                late: 0,
                deadlines: HashMap::new(),
                startup_ms: None,
            },
            peers: HashMap::new(),
            handle_to: HashMap::new(),
            next_handle: 1,
            http: HashMap::new(),
            up_free_at: 0,
            buffered: HashMap::new(),
            sent_chunks: 0,
            uploaded: 0,
            http_ranges: Vec::new(),
            req_seq: HashMap::new(),
            recv_times: HashMap::new(),
        });
        self.push(join_at, Ev::Join(i));
        i
    }

    /// Connect two nodes (when both have joined).
    pub fn connect(&mut self, a: usize, b: usize, at: u64) {
        self.push(at, Ev::Connect(a, b));
    }

    pub fn full_mesh(&mut self, at: u64) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in a + 1..n {
                self.connect(a, b, at);
            }
        }
    }

    pub fn kill(&mut self, node: usize, at: u64) {
        self.push(at, Ev::Kill(node));
    }

    pub fn run_until(&mut self, end: u64) {
        while let Some(Reverse((t, id))) = self.queue.peek().copied() {
            if t > end {
                break;
            }
            self.queue.pop();
            self.now = t;
            let Some(ev) = self.events.remove(&id) else { continue };
            self.dispatch(ev);
        }
        self.now = end;
        for i in 0..self.nodes.len() {
            self.player_advance(i);
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Publish(seq) => {
                let mut rng = self.rng.clone();
                self.origin.publish(seq, now, &mut rng);
                self.rng = rng;
                self.push(now + self.origin.seg_ms, Ev::Publish(seq + 1));
            }
            Ev::Join(i) => {
                self.nodes[i].alive = true;
                self.feed(
                    i,
                    Input::Rendition {
                        name: REND.into(),
                        playlist_url: format!("{BASE}index.m3u8"),
                        bandwidth_bps: 2_500_000,
                    },
                );
                self.push(now, Ev::Refresh(i));
                self.push(now + 250, Ev::PlayerTick(i));
            }
            Ev::Refresh(i) => {
                if !self.nodes[i].alive {
                    return;
                }
                let listed = self.origin.listed(now);
                self.nodes[i].player.listed = listed.clone();
                self.feed(i, Input::Playlist { rendition: REND.into(), segments: listed });
                self.player_maybe_request(i);
                // hls.js refreshes a live playlist about every target duration.
                let phase = self.nodes[i].spec.refresh_phase;
                let next = (now / 2_000 + 1) * 2_000 + phase;
                self.push(next, Ev::Refresh(i));
            }
            Ev::Wake(i) => {
                if self.nodes[i].alive && self.nodes[i].engine.poll_timeout().is_some_and(|t| t <= now) {
                    self.feed(i, Input::Tick);
                }
            }
            Ev::PlayerTick(i) => {
                if !self.nodes[i].alive {
                    return;
                }
                self.player_advance(i);
                self.report_player(i);
                self.push(now + 250, Ev::PlayerTick(i));
            }
            Ev::Msg { from, to, bytes } => {
                if !self.nodes[to].alive || !self.nodes[from].alive {
                    return;
                }
                let Some(&h) = self.nodes[to].peers.get(&from) else { return };
                if let Ok(Message::Data { req_id, .. }) = Message::decode(&bytes) {
                    if let Some(&seq) = self.nodes[to].req_seq.get(&(from, req_id)) {
                        let now = self.now;
                        let e = self.nodes[to].recv_times.entry(seq).or_insert((now, now));
                        e.1 = now;
                    }
                }
                self.feed(to, Input::PeerBytes { peer: h, bytes });
            }
            Ev::Departed { node, peer, bytes } => {
                if !self.nodes[node].alive {
                    return;
                }
                let b = self.nodes[node].buffered.entry(peer).or_insert(0);
                *b = b.saturating_sub(bytes);
                let left = *b;
                if self.nodes[node].handle_to.contains_key(&peer) {
                    self.feed(node, Input::PeerBuffered { peer, bytes: left });
                }
            }
            Ev::Http { node, id, event } => {
                if !self.nodes[node].alive || !self.nodes[node].http.contains_key(&id) {
                    return;
                }
                let seq = self.nodes[node].http.get(&id).and_then(|h| h.seq);
                if let (Some(seq), HttpEvent::Data(_)) = (seq, &event) {
                    let e = self.nodes[node].recv_times.entry(seq).or_insert((now, now));
                    e.1 = now;
                }
                if matches!(event, HttpEvent::Done | HttpEvent::Failed(_)) {
                    self.nodes[node].http.remove(&id);
                }
                self.feed(node, Input::Http { id, event });
            }
            Ev::HttpNext { node, id } => self.http_next(node, id),
            Ev::Connect(a, b) => {
                if !self.nodes[a].alive || !self.nodes[b].alive || self.links.contains(&(a.min(b), a.max(b)))
                {
                    return;
                }
                self.links.insert((a.min(b), a.max(b)));
                for (x, y) in [(a, b), (b, a)] {
                    let h = self.nodes[x].next_handle;
                    self.nodes[x].next_handle += 1;
                    self.nodes[x].peers.insert(y, h);
                    self.nodes[x].handle_to.insert(h, y);
                }
                let ha = self.nodes[a].peers[&b];
                let hb = self.nodes[b].peers[&a];
                self.feed(a, Input::PeerConnected { peer: ha });
                self.feed(b, Input::PeerConnected { peer: hb });
            }
            Ev::Kill(i) => {
                self.nodes[i].alive = false;
                let others: Vec<usize> = self.nodes[i].peers.keys().copied().collect();
                for o in others {
                    self.drop_link(i, o);
                }
            }
        }
    }

    fn drop_link(&mut self, a: usize, b: usize) {
        self.links.remove(&(a.min(b), a.max(b)));
        for (x, y) in [(a, b), (b, a)] {
            if let Some(h) = self.nodes[x].peers.remove(&y) {
                self.nodes[x].handle_to.remove(&h);
                if self.nodes[x].alive {
                    self.feed(x, Input::PeerDisconnected { peer: h });
                }
            }
        }
    }

    /// Feed an input and carry out every output.
    pub fn feed(&mut self, i: usize, input: Input) {
        let now = self.now;
        self.nodes[i].engine.handle(input, now);
        while let Some(out) = self.nodes[i].engine.poll_output() {
            self.carry_out(i, out);
        }
        if let Some(t) = self.nodes[i].engine.poll_timeout() {
            self.push(t.max(now), Ev::Wake(i));
        }
    }

    fn carry_out(&mut self, i: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Send { peer, mut msg } => {
                let Some(&to) = self.nodes[i].handle_to.get(&peer) else { return };
                if let Message::Request { req_id, seq, .. } = &msg {
                    self.nodes[i].req_seq.insert((to, *req_id), *seq);
                }
                if let Message::Data { payload, chunk, .. } = &mut msg {
                    match self.nodes[i].spec.fault {
                        Fault::Lies => {
                            let mut v = payload.to_vec();
                            v[0] ^= 0xff;
                            *payload = Bytes::from(v);
                        }
                        Fault::StallsAfter(n) if self.nodes[i].sent_chunks >= n => return,
                        _ => {}
                    }
                    self.nodes[i].sent_chunks += 1;
                    self.nodes[i].uploaded += payload.len() as u64;
                    let _ = chunk;
                }
                let bytes = Bytes::from(msg.encode().expect("engine sends valid messages"));
                let size = bytes.len() as u64;
                let bps = self.nodes[i].spec.upload_bps.max(1);
                let start = self.nodes[i].up_free_at.max(now);
                let depart = start + (size * 8 * 1000).div_ceil(bps);
                self.nodes[i].up_free_at = depart;
                *self.nodes[i].buffered.entry(peer).or_insert(0) += size;
                self.push(depart, Ev::Departed { node: i, peer, bytes: size });
                self.push(depart + self.latency_ms, Ev::Msg { from: i, to, bytes });
            }
            Output::Disconnect { peer, .. } => {
                if let Some(&o) = self.nodes[i].handle_to.get(&peer) {
                    self.drop_link(i, o);
                }
            }
            Output::HttpFetch { id, url, range, kind } => {
                let (seq, body) = match kind {
                    FetchKind::Manifest => {
                        let m = Bytes::from(self.origin.manifest(now));
                        self.cdn_manifest_bytes += m.len() as u64;
                        (None, m)
                    }
                    FetchKind::Segment => {
                        let seq: u64 = url
                            .rsplit('/')
                            .next()
                            .and_then(|f| f.strip_suffix(".ts"))
                            .and_then(|s| s.parse().ok())
                            .expect("segment url");
                        match self.origin.segments.get(&seq).filter(|p| p.at <= now) {
                            Some(p) => (Some(seq), p.data.clone()),
                            None => {
                                self.push(
                                    now + self.cdn_ttfb_ms,
                                    Ev::Http {
                                        node: i,
                                        id,
                                        event: HttpEvent::Response { status: 404, total: None },
                                    },
                                );
                                self.nodes[i].http.insert(
                                    id,
                                    HttpState { seq: None, body: Bytes::new(), pos: 0, range_start: 0 },
                                );
                                return;
                            }
                        }
                    }
                };
                let (start, body) = match range {
                    Some((s, e)) => {
                        let e = e.map_or(body.len() as u64, |e| e + 1).min(body.len() as u64);
                        self.nodes[i].http_ranges.push((seq.unwrap_or(0), s));
                        (s, body.slice(s as usize..e as usize))
                    }
                    None => (0, body),
                };
                let status = if range.is_some() { 206 } else { 200 };
                let ttfb = self.cdn_ttfb_ms + if seq.is_none() { self.manifest_delay_ms } else { 0 };
                self.nodes[i].http.insert(id, HttpState { seq, body, pos: 0, range_start: start });
                self.push(
                    now + ttfb,
                    Ev::Http { node: i, id, event: HttpEvent::Response { status, total: None } },
                );
                self.push(now + ttfb, Ev::HttpNext { node: i, id });
            }
            Output::HttpCancel { id } => {
                self.nodes[i].http.remove(&id);
            }
            Output::Deliver(d) => self.player_delivered(i, d),
            Output::DeliverFailed { seq, reason, .. } => panic!("node {i}: segment {seq} failed: {reason}"),
            Output::NeedPeers { .. } | Output::Event(_) => {}
        }
    }

    fn http_next(&mut self, node: usize, id: HttpId) {
        let now = self.now;
        let Some(st) = self.nodes[node].http.get_mut(&id) else { return };
        if st.pos >= st.body.len() {
            self.push(now, Ev::Http { node, id, event: HttpEvent::Done });
            return;
        }
        let piece = 8_192.min(st.body.len() - st.pos);
        let data = st.body.slice(st.pos..st.pos + piece);
        st.pos += piece;
        if let Some(seq) = st.seq {
            *self.cdn_bytes.entry(seq).or_insert(0) += piece as u64;
        }
        let dt = (piece as u64).div_ceil(self.cdn_rate);
        self.push(now, Ev::Http { node, id, event: HttpEvent::Data(data) });
        self.push(now + dt, Ev::HttpNext { node, id });
    }

    // ------------------------------------------------------------ player model (hls.js-like)

    fn player_maybe_request(&mut self, i: usize) {
        let p = &mut self.nodes[i].player;
        if p.in_flight || p.listed.is_empty() {
            return;
        }
        let next = match p.next_req {
            Some(n) => n,
            None => {
                // hls.js starts 3 target durations behind the live edge.
                let last = p.listed.last().expect("non-empty").seq;
                last.saturating_sub(2)
            }
        };
        if !p.listed.iter().any(|s| s.seq == next) {
            return;
        }
        // hls.js keeps at most maxBufferLength (30 s) ahead.
        if p.buffer_end.saturating_sub(p.playhead) > 30_000 {
            return;
        }
        p.next_req = Some(next);
        p.in_flight = true;
        self.report_player(i);
        self.feed(i, Input::PlayerRequest { rendition: REND.into(), seq: next });
        // Remember the deadline: when the playhead reaches this segment's start.
        let p = &mut self.nodes[i].player;
        if p.playing {
            let dl = self.now + p.buffer_end.saturating_sub(p.playhead);
            p.deadlines.insert(next, dl);
        }
    }

    fn player_advance(&mut self, i: usize) {
        let now = self.now;
        let p = &mut self.nodes[i].player;
        let dt = now.saturating_sub(p.last_tick);
        p.last_tick = now;
        if p.started.is_none() {
            return;
        }
        if p.playing {
            let ahead = p.buffer_end.saturating_sub(p.playhead);
            if dt >= ahead {
                p.playhead = p.buffer_end;
                p.playing = false;
                p.stalls += 1;
                p.stalled_since = Some(now - (dt - ahead));
            } else {
                p.playhead += dt;
            }
        }
    }

    fn report_player(&mut self, i: usize) {
        let p = &self.nodes[i].player;
        let state = PlayerState {
            rendition: REND.into(),
            playing: p.playing,
            buffered_ahead_ms: p.buffer_end.saturating_sub(p.playhead) as u32,
            next_seq: p.next_req,
        };
        self.feed(i, Input::Player(state));
    }

    fn player_delivered(&mut self, i: usize, d: Delivery) {
        let now = self.now;
        self.player_advance(i);
        let pubd = self.origin.segments.get(&d.seq).expect("published");
        assert_eq!(d.to_vec(), pubd.data.to_vec(), "node {i}: segment {} bytes differ", d.seq);
        let p = &mut self.nodes[i].player;
        if p.next_req != Some(d.seq) {
            return;
        }
        p.in_flight = false;
        p.next_req = Some(d.seq + 1);
        p.delivered.push((d.seq, d.source, d.verified));
        if let Some(&dl) = p.deadlines.get(&d.seq) {
            if now > dl {
                p.late += 1;
            }
        }
        p.buffer_end += self.origin.seg_ms;
        if p.started.is_none() {
            p.started = Some(now);
            p.startup_ms = Some(now - p.joined);
            p.playing = true;
        } else if !p.playing && p.buffer_end > p.playhead {
            p.playing = true;
            if let Some(s) = p.stalled_since.take() {
                p.stall_ms += now - s;
            }
        }
        self.report_player(i);
        self.player_maybe_request(i);
    }

    // ------------------------------------------------------------ measurements

    /// CDN copies per segment for segments in `seqs` (body bytes / segment size).
    pub fn cdn_copies(&self, seqs: std::ops::Range<u64>) -> Vec<f64> {
        seqs.filter_map(|s| {
            let size = self.origin.segments.get(&s)?.data.len() as f64;
            Some(*self.cdn_bytes.get(&s).unwrap_or(&0) as f64 / size)
        })
        .collect()
    }

    pub fn total_stalls(&self) -> u32 {
        self.nodes.iter().map(|n| n.player.stalls).sum()
    }
}

pub fn spec(join_at: u64, upload_bps: u64) -> NodeSpec {
    NodeSpec {
        join_at,
        upload_bps,
        cfg: Config::default(),
        fault: Fault::None,
        refresh_phase: join_at % 2_000,
    }
}
