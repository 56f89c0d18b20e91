//! The discrete-event loop: one priority queue of timed events in virtual time, driving one
//! `shoal-engine` per viewer, the live origin and CDN, the network model, the tracker's own
//! neighbour selection (`shoal-swarm`) and an hls.js-like player per viewer. No threads, no
//! sleeping, no wall clock (except to report the simulator's own speed).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use shoal_engine::{
    Config, Engine, Event, FetchKind, HttpEvent, HttpId, Identity, Input, Output, PeerHandle, PlayerState,
    Source,
};
use shoal_proto::manifest::DEFAULT_CHUNK_SIZE;
use shoal_proto::wire::Message;
use shoal_swarm::{sort_exclude, PeerInfo, Swarm};

use crate::audience::Viewer;
use crate::crypto::MemoCrypto;
use crate::fxhash::FxHashMap;
use crate::metrics::{Hist, Invariants, Series};
use crate::net::{
    can_connect, latency_us, tx_us, wire_size, Conn, Dir, Downlink, NatKind, BUFFER_LOW, PIECE, SMALL,
};
use crate::origin::{Origin, FIRST_SEQ};
use crate::player::{Advance, Player};
use crate::queue::EventQueue;
use crate::recv::RecvLog;
use crate::rng::Rng;
use crate::scenario::Scenario;

#[derive(Clone, Copy, Debug)]
enum Ev {
    Publish,
    Join(u32),
    Leave(u32),
    Refresh(u32),
    PlayerTick(u32),
    PlayerKick(u32),
    BufferEmpty(u32, u32),
    Wake(u32),
    /// Connection, direction, report generation; the sender (only to prefetch it).
    BufferLow(u32, u8, u32, u32),
    /// Connection, direction; the receiver (only to prefetch it).
    Arrive(u32, u8, u32),
    /// Transfer; its viewer (only to prefetch it).
    Http(u32, u32),
    Announce(u32),
    TrackerReply(u32),
    ConnectDone(u32),
    PeerGone(u32, PeerHandle),
    Sample,
}

/// One viewer's record, closed when it leaves or the run ends.
#[derive(Clone, Debug, Default)]
pub struct ViewerRecord {
    pub online_us: u64,
    pub startup_us: Option<u64>,
    pub stalls: u32,
    pub stall_us: u64,
    pub play_us: u64,
    pub uploaded: u64,
    pub up_bps: u64,
    pub uploader: bool,
    pub deliveries: u64,
    pub failures: u32,
}

/// Counters of one run.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub events: u64,
    pub cdn_segment_bytes: u64,
    pub cdn_manifest_bytes: u64,
    pub cdn_segment_requests: u64,
    pub cdn_manifest_requests: u64,
    pub cdn_range_requests: u64,
    pub cdn_404: u64,
    pub cdn_arrived: u64,
    pub cdn_cut: u64,
    pub peer_msgs: u64,
    pub requests: u64,
    pub peer_payload_sent: u64,
    pub peer_payload_arrived: u64,
    pub peer_payload_dropped: u64,
    pub peer_wire_bytes: u64,
    pub connect_attempts: u64,
    pub connect_failed: u64,
    pub connect_refused: u64,
    pub connections_opened: u64,
    pub announces: u64,
    pub consumed_bytes: u64,
    pub deliveries: u64,
    pub from_peers: u64,
    pub from_cdn: u64,
    pub mixed: u64,
    pub deliver_failed: u64,
    pub bans: u64,
    pub content_compares: u64,
    /// Sum of the engines' own counters.
    pub engine: EngineTotals,
}

#[derive(Clone, Debug, Default)]
pub struct EngineTotals {
    pub http_bytes: u64,
    pub manifest_bytes: u64,
    pub p2p_down_bytes: u64,
    pub p2p_up_bytes: u64,
    pub wasted_bytes: u64,
    pub delivered_late: u64,
    pub verify_failures: u64,
    pub cdn_fetches_edge: u64,
    pub cdn_fallback_deadline: u64,
    pub cdn_fallback_no_source: u64,
    pub cdn_fallback_startup: u64,
    pub http_failures: u64,
    pub uploads_served: u64,
    pub uploads_busy: u64,
    pub uploads_absent: u64,
    pub peers_banned: u64,
}

impl EngineTotals {
    fn add(&mut self, s: &shoal_engine::Stats) {
        self.http_bytes += s.http_bytes;
        self.manifest_bytes += s.manifest_bytes;
        self.p2p_down_bytes += s.p2p_down_bytes;
        self.p2p_up_bytes += s.p2p_up_bytes;
        self.wasted_bytes += s.wasted_bytes;
        self.delivered_late += s.delivered_late;
        self.verify_failures += s.verify_failures;
        self.cdn_fetches_edge += s.cdn_fetches_edge;
        self.cdn_fallback_deadline += s.cdn_fallback_deadline;
        self.cdn_fallback_no_source += s.cdn_fallback_no_source;
        self.cdn_fallback_startup += s.cdn_fallback_startup;
        self.http_failures += s.http_failures;
        self.uploads_served += s.uploads_served;
        self.uploads_busy += s.uploads_busy;
        self.uploads_absent += s.uploads_absent;
        self.peers_banned += s.peers_banned;
    }
}

struct Node {
    peer_id: String,
    engine: Option<Box<Engine>>,
    alive: bool,
    done: bool,
    alive_pos: u32,
    links: Vec<(PeerHandle, u32)>,
    pending_to: Vec<u32>,
    pending_in: u32,
    next_handle: PeerHandle,
    banned: Vec<u32>,
    up_free: u64,
    down: Downlink,
    wake_sched: Option<u64>,
    player: Player,
    uploaded: u64,
    win_start: u64,
    win_bytes: u64,
    announce_inflight: bool,
    announce_due: u64,
    /// Chunks received with the origin's bytes, per (rendition << 48 | seq).
    recv: RecvLog,
    xfers: Vec<(HttpId, u32)>,
    deliveries: u64,
}

struct Xfer {
    node: u32,
    id: HttpId,
    rend: u16,
    seq: Option<u64>,
    body: Bytes,
    /// Offset of `body[0]` in the segment.
    base: usize,
    pos: usize,
    /// The piece on its way: [start, end) of `body`.
    piece: (usize, usize),
    cdn_clock: u64,
    status: u16,
    responded: bool,
    cancelled: bool,
    finished: bool,
}

struct Attempt {
    a: u32,
    b: u32,
    ok: bool,
}

/// Everything a finished run hands to the report.
pub struct RunOutput {
    pub p2p: bool,
    pub counters: Counters,
    pub invariants: Invariants,
    pub viewers: Vec<ViewerRecord>,
    pub series: Series,
    pub latency: Hist,
    pub connections: Hist,
    /// Time from a segment's publication to its delivery to a player, by source (peers,
    /// CDN, mixed), milliseconds.
    pub since_publish: [Hist; 3],
    /// Per segment: (rendition, seq, size, deliveries, CDN requests, CDN bytes).
    pub segments: Vec<(u16, u64, u64, u32, u32, u64)>,
    pub upload_capacity_bytes: f64,
    pub start_us: u64,
    pub end_us: u64,
    pub wall_s: f64,
    pub peak_rss_bytes: Option<u64>,
    pub crypto: crate::crypto::CryptoCounters,
    pub unconnectable_pairs: f64,
}

pub struct World<'a> {
    sc: &'a Scenario,
    p2p: bool,
    seed: u64,
    now: u64,
    queue: EventQueue<Ev>,
    origin: Origin,
    crypto: Arc<MemoCrypto>,
    viewers: &'a [Viewer],
    nodes: Vec<Node>,
    alive: Vec<u32>,
    conns: Vec<Conn>,
    xfers: Vec<Xfer>,
    cdn_active: u64,
    attempts: Vec<Attempt>,
    swarms: Vec<Swarm<u32>>,
    localities: Vec<Arc<str>>,
    rng: Rng,
    out_pool: Vec<Vec<Output>>,
    seg_us: u64,
    start_us: u64,
    end_us: u64,
    c: Counters,
    inv: Invariants,
    series: Series,
    latency: Hist,
    connections: Hist,
    since_publish: [Hist; 3],
    records: Vec<ViewerRecord>,
    per_seg: FxHashMap<u64, (u64, u32, u32, u64)>,
    upload_capacity_bytes: f64,
    progress: Option<String>,
    wall: Instant,
    last_progress: Instant,
}

fn seg_key(rend: u16, seq: u64) -> u64 {
    (rend as u64) << 48 | seq
}

impl<'a> World<'a> {
    pub fn new(
        sc: &'a Scenario,
        viewers: &'a [Viewer],
        seed: u64,
        p2p: bool,
        progress: Option<String>,
    ) -> Self {
        let seg_us = sc.stream.segment_ms as u64 * 1_000;
        // The stream runs for a full playlist window before the first viewer arrives.
        let start_us = seg_us * (sc.stream.playlist_window as u64 + 1);
        let end_us = start_us + sc.duration_s * 1_000_000;
        let bucket_us = (sc.duration_s * 1_000_000 / 200).max(5_000_000);
        let nodes = viewers
            .iter()
            .enumerate()
            .map(|(i, _)| Node {
                peer_id: format!("v{i}"),
                engine: None,
                alive: false,
                done: false,
                alive_pos: 0,
                links: Vec::new(),
                pending_to: Vec::new(),
                pending_in: 0,
                next_handle: 1,
                banned: Vec::new(),
                up_free: 0,
                down: Downlink::default(),
                wake_sched: None,
                player: Player::default(),
                uploaded: 0,
                win_start: 0,
                win_bytes: 0,
                announce_inflight: false,
                announce_due: 0,
                recv: RecvLog::default(),
                xfers: Vec::new(),
                deliveries: 0,
            })
            .collect();
        let mut w = World {
            sc,
            p2p,
            seed,
            now: 0,
            queue: EventQueue::new(),
            origin: Origin::new(&sc.stream, seed),
            crypto: Arc::new(MemoCrypto::new()),
            viewers,
            nodes,
            alive: Vec::new(),
            conns: Vec::new(),
            xfers: Vec::new(),
            cdn_active: 0,
            attempts: Vec::new(),
            swarms: sc
                .stream
                .renditions
                .iter()
                .enumerate()
                .map(|(i, _)| Swarm::new(1_000_000, seed ^ i as u64))
                .collect(),
            localities: sc.network.localities.iter().map(|l| Arc::from(l.name.as_str())).collect(),
            rng: Rng::derive(seed, if p2p { "network-p2p" } else { "network-cdn" }),
            out_pool: Vec::new(),
            seg_us,
            start_us,
            end_us,
            c: Counters::default(),
            inv: Invariants::default(),
            series: Series::new(start_us, bucket_us, end_us - start_us),
            latency: Hist::new(10.0, 12_000),
            connections: Hist::new(1.0, 64),
            since_publish: [Hist::new(10.0, 3_000), Hist::new(10.0, 3_000), Hist::new(10.0, 3_000)],
            records: vec![ViewerRecord::default(); viewers.len()],
            per_seg: FxHashMap::default(),
            upload_capacity_bytes: 0.0,
            progress,
            wall: Instant::now(),
            last_progress: Instant::now(),
        };
        w.push(w.origin.publish_time_us(FIRST_SEQ), Ev::Publish);
        for (i, v) in viewers.iter().enumerate() {
            if v.join_us < end_us {
                w.push(v.join_us, Ev::Join(i as u32));
            }
        }
        w.push(start_us, Ev::Sample);
        w
    }

    fn push(&mut self, t: u64, ev: Ev) {
        self.queue.push(t.max(self.now), ev);
    }

    /// Run to the end and hand over what was measured.
    pub fn run(mut self) -> RunOutput {
        reset_peak_rss();
        while let Some((t, ev)) = self.queue.pop_until(self.end_us) {
            self.now = t;
            self.c.events += 1;
            // With thousands of viewers every event starts with cache misses on its viewer,
            // connection and engine; fetch the next event's while this one runs.
            if let Some(&next) = self.queue.peek_current() {
                self.prefetch_first(next);
            }
            self.dispatch(ev);
            if let Some(&next) = self.queue.peek_current() {
                self.prefetch_second(next);
            }
            if self.c.events & 0xffff == 0 {
                self.show_progress(false);
            }
        }
        self.now = self.end_us;
        let alive: Vec<u32> = self.alive.clone();
        for n in alive {
            self.close_viewer(n);
        }
        self.show_progress(true);
        self.finish()
    }

    /// The records `ev` starts with: its connection or transfer and its viewer (no effect on
    /// the run).
    fn prefetch_first(&self, ev: Ev) {
        let n = match ev {
            Ev::Arrive(c, _, n) | Ev::BufferLow(c, _, _, n) => {
                if let Some(conn) = self.conns.get(c as usize) {
                    prefetch_obj(conn);
                }
                n
            }
            Ev::Http(x, n) => {
                if let Some(x) = self.xfers.get(x as usize) {
                    prefetch_obj(x);
                }
                n
            }
            Ev::Join(n)
            | Ev::Leave(n)
            | Ev::Refresh(n)
            | Ev::PlayerTick(n)
            | Ev::PlayerKick(n)
            | Ev::BufferEmpty(n, _)
            | Ev::Wake(n)
            | Ev::Announce(n)
            | Ev::TrackerReply(n)
            | Ev::PeerGone(n, _) => n,
            Ev::Publish | Ev::ConnectDone(_) | Ev::Sample => return,
        };
        if let Some(node) = self.nodes.get(n as usize) {
            prefetch_obj(node);
        }
    }

    /// What `ev` reaches through the records [`World::prefetch_first`] brought in: the
    /// message on its way and the viewer's engine.
    fn prefetch_second(&self, ev: Ev) {
        let n = match ev {
            Ev::Arrive(c, d, n) => {
                if let Some(conn) = self.conns.get(c as usize) {
                    let dir = &conn.dirs[d as usize & 1];
                    if let Some(m) = dir.flight.front() {
                        prefetch_obj(m);
                    }
                    if let Some(r) = dir.reqs.back() {
                        prefetch_obj(r);
                    }
                }
                n
            }
            Ev::BufferLow(_, _, _, n)
            | Ev::Http(_, n)
            | Ev::Refresh(n)
            | Ev::PlayerTick(n)
            | Ev::PlayerKick(n)
            | Ev::Wake(n)
            | Ev::PeerGone(n, _) => n,
            _ => return,
        };
        if let Some(node) = self.nodes.get(n as usize) {
            if let Some(e) = node.engine.as_deref() {
                prefetch_obj(e);
            }
            if let Some(l) = node.links.first() {
                prefetch_obj(l);
            }
        }
    }

    fn show_progress(&mut self, last: bool) {
        let Some(label) = &self.progress else { return };
        let now = Instant::now();
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let every = if tty { 1.0 } else { 15.0 };
        if !last && now.duration_since(self.last_progress).as_secs_f64() < every {
            return;
        }
        self.last_progress = now;
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let sim_s = self.now.saturating_sub(self.start_us) as f64 / 1e6;
        let total = self.c.cdn_segment_bytes + self.c.peer_payload_arrived;
        let off = if total > 0 { self.c.peer_payload_arrived as f64 / total as f64 * 100.0 } else { 0.0 };
        eprint!(
            "{}{label}: t={sim_s:.0}/{}s viewers={} offload={off:.1}% events={:.1}M ({:.2}M/s) speed={:.1}x   {}",
            if tty { "\r" } else { "" },
            self.sc.duration_s,
            self.alive.len(),
            self.c.events as f64 / 1e6,
            self.c.events as f64 / 1e6 / wall,
            sim_s / wall,
            if last || !tty { "\n" } else { "" }
        );
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Publish => {
                let now = self.now;
                self.origin.publish(now);
                let next = self.origin.publish_time_us(self.origin.next_seq);
                self.push(next, Ev::Publish);
            }
            Ev::Join(n) => self.join(n),
            Ev::Leave(n) => {
                if self.nodes[n as usize].alive {
                    self.close_viewer(n);
                }
            }
            Ev::Refresh(n) => self.refresh(n),
            Ev::PlayerTick(n) => self.player_tick(n),
            Ev::PlayerKick(n) => {
                if self.nodes[n as usize].alive {
                    self.report_player(n);
                    self.player_request(n);
                }
            }
            Ev::BufferEmpty(n, gen) => {
                let node = &self.nodes[n as usize];
                if node.alive && node.player.empty_gen == gen {
                    self.player_advance(n);
                    self.report_player(n);
                }
            }
            Ev::Wake(n) => {
                let node = &mut self.nodes[n as usize];
                if node.alive && node.wake_sched == Some(self.now) {
                    node.wake_sched = None;
                    self.feed(n, Input::Tick);
                }
            }
            Ev::BufferLow(c, d, gen, _) => self.buffer_low(c, d as usize, gen),
            Ev::Arrive(c, d, _) => self.arrive(c, d as usize),
            Ev::Http(x, _) => self.http_step(x),
            Ev::Announce(n) => {
                let node = &self.nodes[n as usize];
                if node.alive && node.announce_due == self.now {
                    self.announce(n);
                }
            }
            Ev::TrackerReply(n) => self.tracker_reply(n),
            Ev::ConnectDone(a) => self.connect_done(a),
            Ev::PeerGone(n, h) => {
                if self.nodes[n as usize].alive {
                    self.feed(n, Input::PeerDisconnected { peer: h });
                }
            }
            Ev::Sample => self.sample(),
        }
    }

    // ------------------------------------------------------------------ viewers

    fn join(&mut self, n: u32) {
        let now = self.now;
        let v = &self.viewers[n as usize];
        let mut cfg: Config = self.sc.engine.clone();
        cfg.p2p_enabled = self.p2p && cfg.p2p_enabled;
        cfg.consume_only = cfg.consume_only || v.consume_only;
        cfg.upload_kbps = (v.up_bps / 1_000) as u32;
        let engine = Engine::with_crypto(
            cfg,
            Identity { peer_id: self.nodes[n as usize].peer_id.clone(), stream: self.origin.stream.clone() },
            Some(self.origin.verifying_key),
            self.crypto.clone(),
            now / 1_000,
        );
        let pos = self.alive.len() as u32;
        self.alive.push(n);
        let node = &mut self.nodes[n as usize];
        node.engine = Some(Box::new(engine));
        node.alive = true;
        node.alive_pos = pos;
        node.player.last_us = now;
        node.win_start = now;
        for r in 0..self.origin.rends.len() {
            let ro = &self.origin.rends[r];
            let input = Input::Rendition {
                name: ro.name.clone(),
                playlist_url: ro.playlist_url.clone(),
                bandwidth_bps: ro.bitrate_kbps * 1_000,
            };
            self.feed(n, input);
        }
        let rtt = (self.sc.cdn.rtt_ms * 1_000.0) as u64;
        let first = now + rtt * self.sc.player.playlist_round_trips as u64;
        self.push(first, Ev::Refresh(n));
        let report = self.sc.player.report_ms as u64 * 1_000;
        self.push(now + report, Ev::PlayerTick(n));
        if v.leave_us < self.end_us {
            self.push(v.leave_us, Ev::Leave(n));
        }
        if self.p2p {
            self.announce(n);
        }
    }

    /// The viewer leaves (or the run ends): close its books, its connections and transfers.
    fn close_viewer(&mut self, n: u32) {
        let now = self.now;
        let ni = n as usize;
        if !self.nodes[ni].alive {
            return;
        }
        self.player_advance(n);
        let v = &self.viewers[ni];
        let node = &mut self.nodes[ni];
        node.player.finish(now);
        node.alive = false;
        node.done = true;
        let pos = node.alive_pos as usize;
        self.alive.swap_remove(pos);
        if let Some(&moved) = self.alive.get(pos) {
            self.nodes[moved as usize].alive_pos = pos as u32;
        }
        let node = &mut self.nodes[ni];
        let online = now.saturating_sub(v.join_us);
        let uploader = !v.consume_only && !v.liar && v.nat != NatKind::Firewalled;
        if self.p2p && uploader {
            self.upload_capacity_bytes += v.up_bps as f64 / 8.0 * online as f64 / 1e6;
        }
        let p = &node.player;
        self.records[ni] = ViewerRecord {
            online_us: online,
            startup_us: p.started_us.map(|s| s - v.join_us),
            stalls: p.stalls,
            stall_us: p.stall_us,
            play_us: p.play_us,
            uploaded: node.uploaded,
            up_bps: v.up_bps,
            uploader,
            deliveries: node.deliveries,
            failures: p.failures,
        };
        if let Some(e) = node.engine.take() {
            self.c.engine.add(e.stats());
            let budget = e.config().upload_budget_bytes;
            if budget > 0 && node.uploaded > budget {
                self.inv.over_budget += 1;
                self.inv
                    .fail(format!("{} uploaded {} over its budget {budget}", node.peer_id, node.uploaded));
            }
        }
        node.recv = RecvLog::default();
        let links = std::mem::take(&mut self.nodes[ni].links);
        for (_, c) in links {
            self.close_conn(c, n);
        }
        let xfers = std::mem::take(&mut self.nodes[ni].xfers);
        for (_, x) in xfers {
            self.xfers[x as usize].cancelled = true;
        }
        if self.p2p {
            let r = v.rendition as usize;
            let id = self.nodes[ni].peer_id.clone();
            self.swarms[r].remove(&id, now / 1_000);
        }
    }

    // ------------------------------------------------------------------ player

    fn refresh(&mut self, n: u32) {
        let ni = n as usize;
        if !self.nodes[ni].alive {
            return;
        }
        let r = self.viewers[ni].rendition as usize;
        let listed = self.origin.rends[r].listed.clone();
        let name = self.origin.rends[r].name.clone();
        if let Some(last) = listed.last() {
            self.nodes[ni].player.listed_newest = Some(last.seq);
        }
        self.feed(n, Input::Playlist { rendition: name, segments: listed });
        self.player_request(n);
        // hls.js reloads a live playlist about every target duration; the phase is the viewer's.
        let phase = self.viewers[ni].refresh_phase_us;
        let next = (self.now / self.seg_us + 1) * self.seg_us + phase;
        let next = if next <= self.now + self.seg_us / 2 { next + self.seg_us } else { next };
        self.push(next, Ev::Refresh(n));
    }

    fn player_tick(&mut self, n: u32) {
        let ni = n as usize;
        if !self.nodes[ni].alive {
            return;
        }
        self.player_advance(n);
        self.report_player(n);
        self.player_request(n);
        let now = self.now;
        if let Some((seq, off)) = self.nodes[ni].player.position(self.seg_us) {
            // Behind the live edge: now minus the capture time of the frame on screen.
            let captured = self.origin.publish_time_us(seq).saturating_sub(self.seg_us) + off;
            let behind_ms = now.saturating_sub(captured) as f64 / 1_000.0;
            if now >= self.start_us {
                self.latency.add(behind_ms);
                self.series.at(now).latency.add(behind_ms);
            }
        }
        // Forget chunk records of segments long gone.
        if let Some(newest) = self.origin.newest_seq() {
            let cutoff = newest.saturating_sub(60);
            let node = &mut self.nodes[ni];
            if node.recv.len() > 40 {
                node.recv.retain(|k| (k & 0xffff_ffff_ffff) >= cutoff);
            }
        }
        let report = self.sc.player.report_ms as u64 * 1_000;
        self.push(now + report, Ev::PlayerTick(n));
    }

    fn player_advance(&mut self, n: u32) {
        let now = self.now;
        if let Advance::Stalled(at) = self.nodes[n as usize].player.advance(now) {
            if at >= self.start_us {
                self.series.at(at).stalls += 1;
            }
        }
    }

    fn schedule_empty(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        if !node.player.playing {
            return;
        }
        node.player.empty_gen = node.player.empty_gen.wrapping_add(1);
        let gen = node.player.empty_gen;
        let at = self.now + node.player.ahead_us();
        self.push(at, Ev::BufferEmpty(n, gen));
    }

    fn report_player(&mut self, n: u32) {
        let ni = n as usize;
        let r = self.viewers[ni].rendition as usize;
        let p = &self.nodes[ni].player;
        let state = PlayerState {
            rendition: self.origin.rends[r].name.clone(),
            playing: p.playing,
            buffered_ahead_ms: (p.ahead_us() / 1_000) as u32,
            next_seq: p.next_req,
        };
        self.feed(n, Input::Player(state));
    }

    fn player_request(&mut self, n: u32) {
        let ni = n as usize;
        let pl = &self.sc.player;
        let Some(seq) =
            self.nodes[ni].player.want(self.now, pl.live_sync_segments, pl.max_buffer_ms as u64 * 1_000)
        else {
            return;
        };
        let p = &mut self.nodes[ni].player;
        p.in_flight = true;
        p.next_req = Some(seq);
        self.report_player(n);
        let r = self.viewers[ni].rendition as usize;
        let rendition = self.origin.rends[r].name.clone();
        self.feed(n, Input::PlayerRequest { rendition, seq });
    }

    fn delivered(&mut self, n: u32, d: shoal_engine::Delivery) {
        let now = self.now;
        let ni = n as usize;
        let Some(r) = self.origin.rends.iter().position(|x| x.name == d.rendition) else {
            self.inv.fail(format!("v{n}: delivery of unknown rendition {}", d.rendition));
            return;
        };
        // Honesty: published before now, the origin's bytes, verified.
        self.inv.deliveries_checked += 1;
        let published = self.origin.publish_time_us(d.seq);
        if published > now {
            self.inv.before_publish += d.size;
            self.inv.fail(format!("v{n}: segment {} delivered before it was published", d.seq));
        }
        match self.origin.segment(r, d.seq) {
            Some(p) => {
                let mut off = 0usize;
                let mut same = d.size as usize == p.data.len();
                for c in &d.chunks {
                    if !same {
                        break;
                    }
                    let end = off + c.len();
                    if end > p.data.len() {
                        same = false;
                        break;
                    }
                    if c.as_ptr() != p.data[off..].as_ptr() {
                        self.c.content_compares += 1;
                        same = c[..] == p.data[off..end];
                    }
                    off = end;
                }
                if !same || off != p.data.len() {
                    self.inv.wrong_bytes_delivered += 1;
                    self.inv.fail(format!(
                        "v{n}: segment {} delivered with bytes that are not the origin's",
                        d.seq
                    ));
                }
            }
            None => self.inv.fail(format!("v{n}: segment {} no longer at the origin to check", d.seq)),
        }
        if !d.verified {
            self.inv.unverified_deliveries += 1;
            if self.p2p {
                self.inv.fail(format!("v{n}: segment {} delivered unverified", d.seq));
            }
        }
        let e = self.per_seg.entry(seg_key(r as u16, d.seq)).or_insert((d.size, 0, 0, 0));
        e.0 = d.size;
        e.1 += 1;
        self.c.consumed_bytes += d.size;
        self.c.deliveries += 1;
        let which = match d.source {
            Source::Peers => {
                self.c.from_peers += 1;
                0
            }
            Source::Cdn => {
                self.c.from_cdn += 1;
                1
            }
            Source::Mixed => {
                self.c.mixed += 1;
                2
            }
        };
        if now >= self.start_us {
            self.since_publish[which].add(now.saturating_sub(published) as f64 / 1_000.0);
        }
        if r != self.viewers[ni].rendition as usize || self.nodes[ni].player.next_req != Some(d.seq) {
            return;
        }
        self.nodes[ni].deliveries += 1;
        let join = self.viewers[ni].join_us;
        let resume = self.sc.player.resume_buffer_ms as u64 * 1_000;
        let seg_us = self.seg_us;
        self.player_advance(n);
        let a = self.nodes[ni].player.appended(now, d.seq, seg_us, join, resume);
        if let Some(stall) = a.stall_ended_us {
            if now >= self.start_us {
                self.series.at(now).stall_us += stall;
            }
        }
        self.schedule_empty(n);
        self.push(now, Ev::PlayerKick(n));
    }

    // ------------------------------------------------------------------ the engine

    fn feed(&mut self, n: u32, input: Input) {
        let now_ms = self.now / 1_000;
        let mut outs = self.out_pool.pop().unwrap_or_default();
        {
            let Some(engine) = self.nodes[n as usize].engine.as_mut() else {
                self.out_pool.push(outs);
                return;
            };
            engine.handle(input, now_ms);
            while let Some(o) = engine.poll_output() {
                outs.push(o);
            }
        }
        if outs.len() > 1 {
            self.prefetch_sends(n, &outs);
        }
        for o in outs.drain(..) {
            self.carry_out(n, o);
        }
        self.out_pool.push(outs);
        self.schedule_wake(n);
    }

    /// Bring in what the messages `n` is about to send will touch (their connections, then
    /// the receivers' downlinks), all at once rather than one miss after another (no effect on
    /// the run).
    fn prefetch_sends(&self, n: u32, outs: &[Output]) {
        let links = &self.nodes[n as usize].links;
        let mut conns = [0u32; 16];
        let mut k = 0;
        for o in outs {
            if let Output::Send { peer, .. } = o {
                if let Some(&(_, c)) = links.iter().find(|l| l.0 == *peer) {
                    prefetch_obj(&self.conns[c as usize]);
                    conns[k] = c;
                    k += 1;
                    if k == conns.len() {
                        break;
                    }
                }
            }
        }
        for &c in &conns[..k] {
            let conn = &self.conns[c as usize];
            let dir = if conn.a == n { 0 } else { 1 };
            let rx = conn.receiver(dir) as usize;
            prefetch_obj(&self.viewers[rx]);
            prefetch_obj(&self.nodes[rx].down);
            let d = &conn.dirs[dir];
            if let Some(m) = d.flight.back() {
                prefetch_obj(m);
            }
            if let Some(p) = d.pending.back() {
                prefetch_obj(p);
            }
        }
    }

    fn schedule_wake(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        let Some(t) = node.engine.as_ref().and_then(|e| e.poll_timeout()) else { return };
        // The engine counts milliseconds and has run its timers for this one already.
        let t_us = t.max(self.now / 1_000 + 1) * 1_000;
        if node.wake_sched.is_none_or(|s| t_us < s || s < self.now) {
            node.wake_sched = Some(t_us);
            self.push(t_us, Ev::Wake(n));
        }
    }

    fn carry_out(&mut self, n: u32, out: Output) {
        match out {
            Output::Send { peer, msg } => self.send(n, peer, msg),
            Output::Disconnect { peer, .. } => {
                let ni = n as usize;
                if let Some(i) = self.nodes[ni].links.iter().position(|l| l.0 == peer) {
                    let (_, c) = self.nodes[ni].links.swap_remove(i);
                    self.close_conn(c, n);
                }
            }
            Output::HttpFetch { id, url, range, kind } => self.http_fetch(n, id, &url, range, kind),
            Output::HttpCancel { id } => {
                let node = &mut self.nodes[n as usize];
                if let Some(i) = node.xfers.iter().position(|x| x.0 == id) {
                    let (_, x) = node.xfers.swap_remove(i);
                    self.xfers[x as usize].cancelled = true;
                }
            }
            Output::Deliver(d) => self.delivered(n, d),
            Output::DeliverFailed { seq, .. } => {
                self.c.deliver_failed += 1;
                let node = &mut self.nodes[n as usize];
                if node.player.next_req == Some(seq) && node.player.in_flight {
                    // hls.js retries a failed fragment after a short back-off.
                    node.player.in_flight = false;
                    node.player.failures += 1;
                    node.player.retry_at = self.now + 500_000;
                    let t = self.now + 500_000;
                    self.push(t, Ev::PlayerKick(n));
                }
            }
            Output::NeedPeers { .. } => {
                if self.p2p {
                    self.announce(n);
                }
            }
            Output::Event(e) => {
                if let Event::PeerMisbehaved { peer_id, .. } = e {
                    self.c.bans += 1;
                    if let Some(idx) = peer_id.strip_prefix('v').and_then(|s| s.parse::<u32>().ok()) {
                        self.nodes[n as usize].banned.push(idx);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ peers

    fn rend_of(&self, name: &str) -> Option<u16> {
        self.origin.rends.iter().position(|r| r.name == name).map(|i| i as u16)
    }

    /// Is `data` chunk `chunk` of the origin's segment?
    fn genuine(&mut self, rend: u16, seq: u64, chunk: u32, data: &Bytes) -> Option<bool> {
        let p = self.origin.segment(rend as usize, seq)?;
        let off = chunk as usize * DEFAULT_CHUNK_SIZE as usize;
        let end = (off + DEFAULT_CHUNK_SIZE as usize).min(p.data.len());
        if off >= p.data.len() || data.len() != end - off {
            return Some(false);
        }
        if data.as_ptr() == p.data[off..].as_ptr() {
            return Some(true);
        }
        let same = data[..] == p.data[off..end];
        self.c.content_compares += 1;
        Some(same)
    }

    fn mark_received(&mut self, n: u32, rend: u16, seq: u64, first_chunk: usize, chunks: usize) {
        self.nodes[n as usize].recv.mark(seg_key(rend, seq), first_chunk, chunks);
    }

    fn has_received(&self, n: u32, rend: u16, seq: u64, chunk: usize) -> bool {
        self.nodes[n as usize].recv.has(seg_key(rend, seq), chunk)
    }

    fn send(&mut self, n: u32, peer: PeerHandle, mut msg: Message) {
        let ni = n as usize;
        let Some(&(_, c)) = self.nodes[ni].links.iter().find(|l| l.0 == peer) else { return };
        let ci = c as usize;
        let dir = if self.conns[ci].a == n { 0 } else { 1 };
        match &mut msg {
            Message::Request { req_id, rendition, seq, .. } => {
                self.c.requests += 1;
                if let Some(r) = self.rend_of(rendition) {
                    // The data will flow back on the other direction.
                    self.conns[ci].dirs[1 - dir].note_request(*req_id, r, *seq);
                }
            }
            Message::Data { req_id, chunk, payload } => {
                self.inv.data_checked += 1;
                match self.conns[ci].dirs[dir].req_segment(*req_id) {
                    Some((r, seq)) => {
                        let had = self.has_received(n, r, seq, *chunk as usize);
                        let genuine = self.genuine(r, seq, *chunk, payload);
                        if !had || genuine == Some(false) {
                            self.inv.data_from_nowhere += 1;
                            self.inv.fail(format!(
                                "v{n} sent chunk {chunk} of segment {seq}: received before {had}, origin's bytes {genuine:?}"
                            ));
                        }
                    }
                    None => {
                        self.inv.data_from_nowhere += 1;
                        self.inv.fail(format!("v{n} sent data for request {req_id} nobody made"));
                    }
                }
                if self.viewers[ni].liar && !payload.is_empty() {
                    let mut v = payload.to_vec();
                    v[0] ^= 0x5a;
                    *payload = Bytes::from(v);
                }
            }
            _ => {}
        }
        self.c.peer_msgs += 1;
        // The uplink sends what the engine writes in the order it writes it, each message
        // taking its transmission time.
        let size = wire_size(&msg);
        let up_bps = self.viewers[ni].up_bps;
        if size <= SMALL {
            // Control messages (requests, haves, pings) interleave with the data of other
            // connections at once; on their own connection they still arrive in order.
            let depart = self.now + tx_us(size, up_bps);
            self.nodes[ni].up_free += tx_us(size, up_bps);
            self.depart(n, c, dir, msg, size, depart);
            return;
        }
        let node = &mut self.nodes[ni];
        let depart = node.up_free.max(self.now) + tx_us(size, up_bps);
        node.up_free = depart;
        let arrive = self.depart(n, c, dir, msg, size, depart);
        // The message counts in the sender's `bufferedAmount` until the path's bottleneck takes
        // it: its own uplink, or the receiver's downlink when that is busier (congestion
        // control keeps about a round trip of data in flight, the rest waits in the sender's
        // buffer). Without this a fast uplink would pour data into a slow downlink without
        // limit, and everything else that viewer receives, CDN fallbacks included, would wait
        // behind seconds of queue that no real path holds.
        let lat = self.conns[ci].lat_us;
        let leaves = depart.max(arrive.saturating_sub(lat));
        self.conns[ci].dirs[dir].pending.push_back((leaves, size));
        self.schedule_report(c, dir);
    }

    /// Bytes written on a connection direction and not yet sent at `now`.
    fn queued(&mut self, c: u32, dir: usize) -> u64 {
        let now = self.now;
        let d = &mut self.conns[c as usize].dirs[dir];
        while d.pending.front().is_some_and(|&(t, _)| t <= now) {
            d.pending.pop_front();
        }
        d.pending.iter().map(|p| p.1).sum()
    }

    /// Arrange the next `bufferedAmount` report to the sender: when the queue falls to
    /// [`BUFFER_LOW`] (the "buffered amount low" event), or, once below it, when it empties.
    fn schedule_report(&mut self, c: u32, dir: usize) {
        let queued = self.queued(c, dir);
        let d = &mut self.conns[c as usize].dirs[dir];
        let Some(&(last, _)) = d.pending.back() else { return };
        let target = if queued <= BUFFER_LOW {
            last
        } else {
            let mut suffix = 0u64;
            let mut t = last;
            for &(dep, size) in d.pending.iter().rev() {
                if suffix > BUFFER_LOW {
                    break;
                }
                t = dep;
                suffix += size;
            }
            t
        };
        if d.report_at != target {
            d.report_at = target;
            d.report_gen = d.report_gen.wrapping_add(1);
            let gen = d.report_gen;
            let sender = self.conns[c as usize].sender(dir);
            self.push(target, Ev::BufferLow(c, dir as u8, gen, sender));
        }
    }

    fn buffer_low(&mut self, c: u32, dir: usize, gen: u32) {
        let ci = c as usize;
        if self.conns[ci].dirs[dir].report_gen != gen || !self.conns[ci].open {
            return;
        }
        self.conns[ci].dirs[dir].report_at = 0;
        let n = self.conns[ci].sender(dir);
        let h = self.conns[ci].sender_handle(dir);
        let queued = self.queued(c, dir);
        self.feed(n, Input::PeerBuffered { peer: h, bytes: queued });
        if queued > 0 {
            self.schedule_report(c, dir);
        }
    }

    /// A message written by `n` on connection `c`, direction `dir`, leaves its uplink at `t`;
    /// returns when it arrives.
    fn depart(&mut self, n: u32, c: u32, dir: usize, msg: Message, size: u64, t: u64) -> u64 {
        let ni = n as usize;
        self.c.peer_wire_bytes += size;
        if let Message::Data { payload, .. } = &msg {
            let len = payload.len() as u64;
            self.c.peer_payload_sent += len;
            self.nodes[ni].uploaded += len;
        }
        // Upload capacity check over windows of at least one second.
        let up_bps = self.viewers[ni].up_bps;
        let node = &mut self.nodes[ni];
        node.win_bytes += size;
        let span = t.saturating_sub(node.win_start);
        if span >= 1_000_000 {
            let cap = up_bps as f64 / 8.0 * span as f64 / 1e6;
            let ratio = node.win_bytes as f64 / cap;
            if ratio > self.inv.max_upload_over_capacity {
                self.inv.max_upload_over_capacity = ratio;
            }
            if node.win_bytes as f64 > cap + 2.0 * 16_384.0 {
                self.inv.upload_over_capacity += 1;
                let id = node.peer_id.clone();
                self.inv.fail(format!(
                    "{id} uploaded {:.0} bytes in {span} µs, capacity {cap:.0}",
                    node.win_bytes as f64
                ));
            }
            node.win_start = t;
            node.win_bytes = 0;
        }
        // Path: latency, jitter, loss; ordered; then the receiver's downlink.
        let conn = &self.conns[c as usize];
        let rx = conn.receiver(dir) as usize;
        let lat = conn.lat_us;
        let lossy = self.viewers[ni].lossy || self.viewers[rx].lossy;
        let mut extra = 0u64;
        if lossy {
            let net = &self.sc.network;
            if net.jitter_ms > 0.0 {
                extra += (self.rng.f64() * net.jitter_ms * 1_000.0) as u64;
            }
            if net.loss > 0.0 && self.rng.chance(net.loss) {
                extra += (200_000u64).max(3 * lat);
            }
        }
        let down = self.viewers[rx].down_bps;
        let dd = &self.conns[c as usize].dirs[dir];
        let reach = (t + lat + extra).max(dd.last_arrival);
        let now = self.now;
        // The last byte reaches the downlink at `reach`; receiving overlaps sending, so the
        // message occupies the downlink during the transmission time before that.
        let rx_us = tx_us(size, down);
        let arrive = self.nodes[rx].down.reserve(now, reach.saturating_sub(rx_us), rx_us);
        let dd = &mut self.conns[c as usize].dirs[dir];
        dd.last_arrival = arrive;
        let was_empty = dd.flight.is_empty();
        dd.flight.push_back((arrive, msg));
        if was_empty {
            self.push(arrive, Ev::Arrive(c, dir as u8, rx as u32));
        }
        arrive
    }

    fn arrive(&mut self, c: u32, dir: usize) {
        let ci = c as usize;
        let Some((_, msg)) = self.conns[ci].dirs[dir].flight.pop_front() else { return };
        if let Some(&(t, _)) = self.conns[ci].dirs[dir].flight.front() {
            let rx = self.conns[ci].receiver(dir);
            self.push(t, Ev::Arrive(c, dir as u8, rx));
        }
        let conn = &self.conns[ci];
        let rx = conn.receiver(dir);
        let open = conn.open && self.nodes[rx as usize].alive;
        if let Message::Data { req_id, chunk, payload } = &msg {
            let len = payload.len() as u64;
            if !open {
                self.c.peer_payload_dropped += len;
            } else {
                self.c.peer_payload_arrived += len;
                if self.now >= self.start_us {
                    self.series.at(self.now).peer_bytes += len;
                }
                if let Some((r, seq)) = self.conns[ci].dirs[dir].req_segment(*req_id) {
                    if self.origin.publish_time_us(seq) > self.now {
                        self.inv.before_publish += len;
                        self.inv.fail(format!("v{rx} got chunk {chunk} of {seq} before it was published"));
                    }
                    if self.genuine(r, seq, *chunk, payload) == Some(true) {
                        self.mark_received(rx, r, seq, *chunk as usize, 1);
                    }
                }
            }
        }
        if !open {
            return;
        }
        let h = self.conns[ci].receiver_handle(dir);
        self.feed(rx, Input::PeerMessage { peer: h, msg });
    }

    /// Close a connection from `by`'s side; the other end hears of it one latency later.
    fn close_conn(&mut self, c: u32, by: u32) {
        let ci = c as usize;
        if !self.conns[ci].open {
            return;
        }
        self.conns[ci].open = false;
        let conn = &mut self.conns[ci];
        let other = if conn.a == by { conn.b } else { conn.a };
        let other_handle = if conn.a == by { conn.hb } else { conn.ha };
        let lat = conn.lat_us;
        for d in conn.dirs.iter_mut() {
            d.pending.clear();
            d.reqs.clear();
        }
        let on = &mut self.nodes[other as usize];
        if let Some(i) = on.links.iter().position(|l| l.1 == c) {
            on.links.swap_remove(i);
        }
        let bn = &mut self.nodes[by as usize];
        if let Some(i) = bn.links.iter().position(|l| l.1 == c) {
            bn.links.swap_remove(i);
        }
        if self.nodes[other as usize].alive {
            let t = self.now + lat;
            self.push(t, Ev::PeerGone(other, other_handle));
        }
    }

    // ------------------------------------------------------------------ tracker

    fn announce(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        if node.announce_inflight || !node.alive {
            return;
        }
        node.announce_inflight = true;
        let t = self.now + (self.sc.tracker.rtt_ms * 1_000.0) as u64;
        self.push(t, Ev::TrackerReply(n));
    }

    fn tracker_reply(&mut self, n: u32) {
        let ni = n as usize;
        self.nodes[ni].announce_inflight = false;
        if !self.nodes[ni].alive {
            return;
        }
        self.c.announces += 1;
        let now = self.now;
        let v = &self.viewers[ni];
        let node = &self.nodes[ni];
        let seq = node.player.next_req.or(node.player.listed_newest).unwrap_or(0);
        let info = PeerInfo {
            locality: self.localities[v.locality as usize].clone(),
            nat: v.nat.reported(),
            seq,
            buffer_ms: (node.player.ahead_us() / 1_000) as u32,
            upload_kbps: if v.consume_only { 0 } else { (v.up_bps / 1_000) as u32 },
            connections: node.links.len() as u32,
        };
        let t = &self.sc.tracker;
        let busy = node.links.len() + node.pending_to.len();
        let want = (t.max_peers as usize).saturating_sub(busy);
        let r = v.rendition as usize;
        let nodes = &self.nodes;
        let ids: Vec<&str> = node
            .links
            .iter()
            .map(|&(_, c)| {
                let conn = &self.conns[c as usize];
                let o = if conn.a == n { conn.b } else { conn.a };
                nodes[o as usize].peer_id.as_str()
            })
            .chain(node.pending_to.iter().map(|&o| nodes[o as usize].peer_id.as_str()))
            .chain(node.banned.iter().map(|&o| nodes[o as usize].peer_id.as_str()))
            .collect();
        let exclude = sort_exclude(ids);
        let swarm = &mut self.swarms[r];
        let _ = swarm.upsert(&node.peer_id, info.clone(), n, now / 1_000);
        let picks: Vec<u32> = if want > 0 {
            swarm
                .select(&t.selection, &node.peer_id, &info, &exclude, want)
                .iter()
                .map(|s| *s.route)
                .collect()
        } else {
            Vec::new()
        };
        let size = swarm.len() as u32;
        self.feed(n, Input::SwarmSize(size));
        for b in picks {
            self.try_connect(n, b);
        }
        let due = now + self.sc.tracker.announce_interval_ms * 1_000;
        self.nodes[ni].announce_due = due;
        self.push(due, Ev::Announce(n));
    }

    fn try_connect(&mut self, a: u32, b: u32) {
        let (ai, bi) = (a as usize, b as usize);
        if a == b || !self.nodes[bi].alive || !self.nodes[ai].alive {
            return;
        }
        let t = &self.sc.tracker;
        let na = &self.nodes[ai];
        let nb = &self.nodes[bi];
        if na.links.len() + na.pending_to.len() >= t.max_peers as usize {
            return;
        }
        let linked = na.links.iter().any(|&(_, c)| {
            let conn = &self.conns[c as usize];
            conn.a == b || conn.b == b
        });
        if linked || na.pending_to.contains(&b) || nb.pending_to.contains(&a) {
            return;
        }
        if na.banned.contains(&b) || nb.banned.contains(&a) {
            return;
        }
        self.c.connect_attempts += 1;
        if nb.links.len() + nb.pending_to.len() + nb.pending_in as usize >= t.accept_peers as usize {
            self.c.connect_refused += 1;
            return;
        }
        let va = &self.viewers[ai];
        let vb = &self.viewers[bi];
        let net = &self.sc.network;
        let ok = can_connect(net, self.seed, (a, va.nat), (b, vb.nat));
        let lat = latency_us(net, self.seed, (a, va.locality), (b, vb.locality));
        let delay = if ok {
            (net.setup_ms * 1_000.0) as u64 + 8 * lat
        } else {
            (net.connect_timeout_ms * 1_000.0) as u64
        };
        self.nodes[ai].pending_to.push(b);
        self.nodes[bi].pending_in += 1;
        let id = self.attempts.len() as u32;
        self.attempts.push(Attempt { a, b, ok });
        let t = self.now + delay;
        self.push(t, Ev::ConnectDone(id));
    }

    fn connect_done(&mut self, id: u32) {
        let Attempt { a, b, ok } = self.attempts[id as usize];
        let (ai, bi) = (a as usize, b as usize);
        if let Some(i) = self.nodes[ai].pending_to.iter().position(|&x| x == b) {
            self.nodes[ai].pending_to.swap_remove(i);
        }
        self.nodes[bi].pending_in = self.nodes[bi].pending_in.saturating_sub(1);
        if !ok {
            self.c.connect_failed += 1;
            return;
        }
        if !self.nodes[ai].alive || !self.nodes[bi].alive {
            return;
        }
        let accept = self.sc.tracker.accept_peers as usize;
        if self.nodes[ai].links.len() >= accept || self.nodes[bi].links.len() >= accept {
            self.c.connect_refused += 1;
            return;
        }
        let lat = latency_us(
            &self.sc.network,
            self.seed,
            (a, self.viewers[ai].locality),
            (b, self.viewers[bi].locality),
        );
        let ha = self.nodes[ai].next_handle;
        self.nodes[ai].next_handle += 1;
        let hb = self.nodes[bi].next_handle;
        self.nodes[bi].next_handle += 1;
        let c = self.conns.len() as u32;
        self.conns.push(Conn {
            a,
            b,
            ha,
            hb,
            open: true,
            lat_us: lat,
            dirs: [Dir::default(), Dir::default()],
        });
        self.nodes[ai].links.push((ha, c));
        self.nodes[bi].links.push((hb, c));
        self.c.connections_opened += 1;
        self.feed(a, Input::PeerConnected { peer: ha });
        self.feed(b, Input::PeerConnected { peer: hb });
    }

    // ------------------------------------------------------------------ CDN

    fn http_fetch(
        &mut self,
        n: u32,
        id: HttpId,
        url: &str,
        range: Option<(u64, Option<u64>)>,
        kind: FetchKind,
    ) {
        let now = self.now;
        let parsed = self.origin.parse_url(url);
        let (rend, seq, body, status) = match (parsed, kind) {
            (Some((r, None)), _) => {
                self.c.cdn_manifest_requests += 1;
                (r as u16, None, self.origin.rends[r].manifest.clone(), 200)
            }
            (Some((r, Some(seq))), _) => {
                self.c.cdn_segment_requests += 1;
                match self.origin.segment(r, seq).filter(|p| p.at_us <= now) {
                    Some(p) => {
                        let e = self.per_seg.entry(seg_key(r as u16, seq)).or_insert((
                            p.data.len() as u64,
                            0,
                            0,
                            0,
                        ));
                        e.2 += 1;
                        (r as u16, Some(seq), p.data.clone(), 200)
                    }
                    None => {
                        self.c.cdn_404 += 1;
                        (r as u16, Some(seq), Bytes::new(), 404)
                    }
                }
            }
            (None, _) => (0, None, Bytes::new(), 404),
        };
        let (base, body, status) = match (range, status) {
            (Some((s, e)), 200) => {
                self.c.cdn_range_requests += 1;
                let len = body.len() as u64;
                let e = e.map_or(len, |e| (e + 1).min(len));
                let s = s.min(e);
                (s as usize, body.slice(s as usize..e as usize), 206)
            }
            (_, st) => (0, body, st),
        };
        let x = self.xfers.len() as u32;
        self.xfers.push(Xfer {
            node: n,
            id,
            rend,
            seq,
            body,
            base,
            pos: 0,
            piece: (0, 0),
            cdn_clock: 0,
            status,
            responded: false,
            cancelled: false,
            finished: false,
        });
        self.cdn_active += 1;
        self.nodes[n as usize].xfers.push((id, x));
        let cdn = &self.sc.cdn;
        let t = now + ((cdn.rtt_ms + cdn.ttfb_ms) * 1_000.0) as u64;
        self.push(t, Ev::Http(x, n));
    }

    fn http_finish(&mut self, x: u32) {
        let xf = &mut self.xfers[x as usize];
        if !xf.finished {
            xf.finished = true;
            xf.body = Bytes::new();
            self.cdn_active = self.cdn_active.saturating_sub(1);
            let (n, id) = (xf.node, xf.id);
            let node = &mut self.nodes[n as usize];
            if let Some(i) = node.xfers.iter().position(|e| e.0 == id) {
                node.xfers.swap_remove(i);
            }
        }
    }

    fn http_step(&mut self, x: u32) {
        let now = self.now;
        let xi = x as usize;
        let n = self.xfers[xi].node;
        if self.xfers[xi].finished {
            return;
        }
        if self.xfers[xi].cancelled || !self.nodes[n as usize].alive {
            let (s, e) = self.xfers[xi].piece;
            self.c.cdn_cut += (e - s) as u64;
            self.http_finish(x);
            return;
        }
        let id = self.xfers[xi].id;
        if !self.xfers[xi].responded {
            self.xfers[xi].responded = true;
            let status = self.xfers[xi].status;
            let total = (status == 200).then_some(self.xfers[xi].body.len() as u64);
            self.xfers[xi].cdn_clock = now;
            self.feed(n, Input::Http { id, event: HttpEvent::Response { status, total } });
            if status >= 300 {
                self.http_finish(x);
                return;
            }
        } else {
            let xf = &self.xfers[xi];
            let (s, e) = xf.piece;
            let data = xf.body.slice(s..e);
            let (rend, seq, base) = (xf.rend, xf.seq, xf.base);
            self.c.cdn_arrived += (e - s) as u64;
            if let Some(seq) = seq {
                if self.origin.publish_time_us(seq) > now {
                    self.inv.before_publish += (e - s) as u64;
                    self.inv.fail(format!("v{n} got CDN bytes of {seq} before it was published"));
                }
                // Whole chunks covered by this piece.
                let cs = DEFAULT_CHUNK_SIZE as usize;
                let abs_s = base + s;
                let abs_e = base + e;
                let seg_len = self.origin.segment(rend as usize, seq).map_or(abs_e, |p| p.data.len());
                let first = abs_s.div_ceil(cs);
                let last = if abs_e == seg_len { abs_e.div_ceil(cs) } else { abs_e / cs };
                if last > first {
                    self.mark_received(n, rend, seq, first, last - first);
                }
            }
            self.feed(n, Input::Http { id, event: HttpEvent::Data(data) });
            let xf = &self.xfers[xi];
            if xf.finished || xf.cancelled {
                self.http_finish(x);
                return;
            }
            if xf.pos >= xf.body.len() {
                self.feed(n, Input::Http { id, event: HttpEvent::Done });
                self.http_finish(x);
                return;
            }
        }
        if self.xfers[xi].cancelled || self.xfers[xi].finished {
            self.http_finish(x);
            return;
        }
        // Next piece: paced by the CDN flow rate, then through the viewer's downlink.
        let cdn = &self.sc.cdn;
        let rate = (cdn.flow_mbps * 1e6).min(cdn.capacity_gbps * 1e9 / self.cdn_active.max(1) as f64) as u64;
        let xf = &mut self.xfers[xi];
        let s = xf.pos;
        let e = (s + PIECE - (xf.base + s) % PIECE).min(xf.body.len());
        let len = (e - s) as u64;
        xf.pos = e;
        xf.piece = (s, e);
        xf.cdn_clock = xf.cdn_clock.max(now) + tx_us(len, rate);
        let sent = xf.cdn_clock;
        if xf.seq.is_some() {
            self.c.cdn_segment_bytes += len;
            if let Some(seq) = xf.seq {
                let k = seg_key(xf.rend, seq);
                if let Some(e) = self.per_seg.get_mut(&k) {
                    e.3 += len;
                }
            }
        } else {
            self.c.cdn_manifest_bytes += len;
        }
        if now >= self.start_us {
            self.series.at(now).cdn_bytes += len;
        }
        let down = self.viewers[n as usize].down_bps;
        let node = &mut self.nodes[n as usize];
        // The piece reaches the viewer once the CDN has sent it (`sent` is when its last
        // byte left), so it occupies the downlink during the piece's last transmission time.
        // Never before `now`: the previous piece of this flow was still arriving until then,
        // and a flow's pieces cross the downlink one after the other.
        let arrive = node.down.reserve(now, sent.saturating_sub(tx_us(len, down)).max(now), tx_us(len, down));
        self.push(arrive, Ev::Http(x, n));
    }

    // ------------------------------------------------------------------ sampling

    fn sample(&mut self) {
        let now = self.now;
        let mut links = 0u64;
        let mut playing = 0u64;
        for &n in &self.alive {
            let node = &self.nodes[n as usize];
            links += node.links.len() as u64;
            playing += node.player.playing as u64;
            self.connections.add(node.links.len() as f64);
        }
        let b = self.series.at(now);
        b.viewers_sum += self.alive.len() as u64;
        b.viewer_samples += 1;
        b.playing_sum += playing;
        b.connections_sum += links;
        if (now - self.start_us).is_multiple_of(30_000_000) {
            self.crypto.rotate();
        }
        self.push(now + 1_000_000, Ev::Sample);
    }

    fn finish(self) -> RunOutput {
        let mut segments: Vec<(u16, u64, u64, u32, u32, u64)> = self
            .per_seg
            .iter()
            .map(|(&k, &(size, deliveries, requests, bytes))| {
                ((k >> 48) as u16, k & 0xffff_ffff_ffff, size, deliveries, requests, bytes)
            })
            .collect();
        segments.sort_unstable_by_key(|s| (s.0, s.1));
        let c = self.c;
        // Conservation: what left equals what arrived plus what was cut off or is still on its way.
        let mut in_flight = 0u64;
        for conn in &self.conns {
            for d in &conn.dirs {
                for (_, m) in &d.flight {
                    if let Message::Data { payload, .. } = m {
                        in_flight += payload.len() as u64;
                    }
                }
            }
        }
        let mut inv = self.inv;
        if c.peer_payload_sent != c.peer_payload_arrived + c.peer_payload_dropped + in_flight {
            inv.peer_bytes_unbalanced += 1;
            inv.fail(format!(
                "peer bytes: sent {} != arrived {} + dropped {} + in flight {in_flight}",
                c.peer_payload_sent, c.peer_payload_arrived, c.peer_payload_dropped
            ));
        }
        let mut cdn_in_flight = 0u64;
        for x in &self.xfers {
            if !x.finished && x.responded {
                cdn_in_flight += (x.piece.1 - x.piece.0) as u64;
            }
        }
        if c.cdn_segment_bytes + c.cdn_manifest_bytes != c.cdn_arrived + c.cdn_cut + cdn_in_flight {
            inv.cdn_bytes_unbalanced += 1;
            inv.fail(format!(
                "CDN bytes: sent {} != arrived {} + cut {} + in flight {cdn_in_flight}",
                c.cdn_segment_bytes + c.cdn_manifest_bytes,
                c.cdn_arrived,
                c.cdn_cut
            ));
        }
        let unconnectable = unconnectable_share(self.sc, self.viewers, self.seed);
        RunOutput {
            p2p: self.p2p,
            counters: c,
            invariants: inv,
            viewers: self.records,
            series: self.series,
            latency: self.latency,
            connections: self.connections,
            since_publish: self.since_publish,
            segments,
            upload_capacity_bytes: self.upload_capacity_bytes,
            start_us: self.start_us,
            end_us: self.end_us,
            wall_s: self.wall.elapsed().as_secs_f64(),
            peak_rss_bytes: peak_rss(),
            crypto: self.crypto.counters(),
            unconnectable_pairs: unconnectable,
        }
    }
}

/// Share of random viewer pairs that cannot connect directly (drawn, not assumed).
fn unconnectable_share(sc: &Scenario, viewers: &[Viewer], seed: u64) -> f64 {
    if viewers.len() < 2 {
        return 0.0;
    }
    let mut rng = Rng::derive(seed, "pairs");
    let n = 20_000;
    let mut bad = 0;
    for _ in 0..n {
        let a = rng.below(viewers.len() as u64) as u32;
        let mut b = rng.below(viewers.len() as u64) as u32;
        if a == b {
            b = (b + 1) % viewers.len() as u32;
        }
        if !can_connect(&sc.network, seed, (a, viewers[a as usize].nat), (b, viewers[b as usize].nat)) {
            bad += 1;
        }
    }
    bad as f64 / n as f64
}

/// Reset the kernel's peak-RSS mark so each run measures its own peak (Linux ≥ 4.0).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory of this process since the last reset, if the OS tells.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1_024)
}

/// Ask the CPU to bring every cache line of `*r` in (a hint only; no effect on the run).
#[inline(always)]
fn prefetch_obj<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = r as *const T as *const i8;
        // At most 16 lines: enough for the records here, bounded for the engine.
        let len = std::mem::size_of::<T>().clamp(1, 16 * 64);
        let mut off = 0;
        while off < len {
            // SAFETY: prefetching never faults and has no visible effect; `p + off` lies
            // inside `*r`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}
