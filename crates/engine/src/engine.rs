//! The scheduling state machine.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use shoal_proto::manifest::{SignedManifest, MAX_MANIFEST_BYTES, MAX_WIRE_CHUNKS};
use shoal_proto::wire::{
    caps, negotiate, ByeReason, HaveState, Hello, Message, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use shoal_proto::{SegmentEntry, VerifyingKey};

use crate::config::Config;
use crate::crypto::{Crypto, RealCrypto};
use crate::estimate::CdnEstimate;
use crate::hrw;
use crate::io::*;
use crate::peer::{Peer, Upload};
use crate::segment::{CdnReason, HttpJob, PeerDownload, Pieces, Role, SegKey, Segment};
use crate::stats::Stats;

/// Peers beyond this many are refused whatever the tracker says.
const MAX_CONNECTED: usize = 48;
/// A peer that has not said hello by then is dropped.
const HELLO_TIMEOUT_MS: Millis = 10_000;
/// Minimum spacing of `NeedPeers` outputs.
const NEED_PEERS_EVERY_MS: Millis = 5_000;
/// HTTP attempts per segment before the player is told it failed.
const HTTP_ATTEMPTS: u32 = 3;
/// Longest a CDN body waits for its signed entry before it goes to the player unverified.
const RAW_HOLD_MS: Millis = 1_500;
/// Minimum spacing of manifest fetches per rendition when nothing asks for one urgently.
const MANIFEST_MIN_INTERVAL_MS: Millis = 500;
/// Upload promised to peers beyond which a new request is answered `Busy`, in milliseconds
/// of this client's upload capacity.
const UPLOAD_BACKLOG_MS: u64 = 500;
/// A peer that said it does not have a segment is not asked for it again for this long (or
/// until it announces the segment).
const ABSENT_SKIP_MS: Millis = 1_000;
/// A peer whose delivery stalled is not asked for that segment again for this long.
const STALL_SKIP_MS: Millis = 3_000;
/// Below this much buffered media the engine fetches only what the player asks for.
const PREFETCH_MIN_BUFFER_MS: Millis = 2_500;
/// Smallest stripe worth its own source (the design note's 256 KB).
const MIN_STRIPE_BYTES: u64 = 256 * 1024;

struct Rendition {
    name: String,
    playlist_url: String,
    manifest_url: String,
    bandwidth_bps: u32,
    newest: Option<u64>,
    manifest_http: Option<HttpId>,
    manifest_buf: BytesMut,
    manifest_last: Option<Millis>,
    /// A manifest fetch is wanted (some segment lacks its entry).
    manifest_wanted: bool,
}

enum HttpTarget {
    Segment(SegKey),
    Manifest(u16),
}

struct PlayerView {
    state: PlayerState,
    rend: u16,
    at: Millis,
}

/// Who this client is.
#[derive(Clone, Debug)]
pub struct Identity {
    pub peer_id: String,
    pub stream: String,
}

/// The sans-IO scheduling engine. See the crate documentation for the calling contract.
pub struct Engine {
    cfg: Config,
    me: Identity,
    origin_key: Option<VerifyingKey>,
    crypto: Arc<dyn Crypto>,
    now: Millis,
    started_at: Millis,
    rends: Vec<Rendition>,
    segments: BTreeMap<SegKey, Segment>,
    /// Ordered, so every iteration (and so every output) is the same on every run.
    peers: BTreeMap<PeerHandle, Peer>,
    by_id: HashMap<String, PeerHandle>,
    banned: HashSet<String>,
    http: HashMap<HttpId, HttpTarget>,
    next_http: HttpId,
    next_req: u32,
    out: VecDeque<Output>,
    player: Option<PlayerView>,
    /// Rendition the player last asked for; only its new segments are fetched ahead.
    active_rend: Option<u16>,
    /// Fetch ahead from this sequence number on (the player's position).
    want_from: Option<u64>,
    swarm_size: u32,
    /// Changes whenever a peer becomes ready or leaves (segments re-rank their neighbours).
    peers_version: u64,
    fetchers_target: f64,
    cdn: CdnEstimate,
    stats: Stats,
    first_request_at: Option<Millis>,
    uploaded: u64,
    /// Upload token bucket (bytes) and when it was last refilled.
    tokens: f64,
    tokens_at: Millis,
    last_need_peers: Option<Millis>,
    wake: Option<Millis>,
    /// Sum of every peer's `buffered` (kept in step with it: the pump needs it for every
    /// chunk, and summing over the peers' map costs a cache miss per peer).
    buffered_total: u64,
    /// The player's next segment, being rescued from the CDN on a tight downlink: nothing else
    /// is fetched until it is delivered.
    rescue: Option<SegKey>,
}

impl Engine {
    /// A new engine. `origin_key` is the public key that signs segment entries; without it
    /// nothing can be verified, so peer-to-peer is off and every segment comes from the CDN.
    pub fn new(cfg: Config, me: Identity, origin_key: Option<VerifyingKey>, now: Millis) -> Self {
        Self::with_crypto(cfg, me, origin_key, Arc::new(RealCrypto), now)
    }

    pub fn with_crypto(
        cfg: Config,
        me: Identity,
        origin_key: Option<VerifyingKey>,
        crypto: Arc<dyn Crypto>,
        now: Millis,
    ) -> Self {
        let cdn = CdnEstimate::new(cfg.cdn_ttfb_ms, cfg.cdn_kbps);
        let fetchers_target = cfg.fetchers_target;
        Engine {
            cfg,
            me,
            origin_key,
            crypto,
            now,
            started_at: now,
            rends: Vec::new(),
            segments: BTreeMap::new(),
            peers: BTreeMap::new(),
            by_id: HashMap::new(),
            banned: HashSet::new(),
            http: HashMap::new(),
            next_http: 1,
            next_req: 1,
            out: VecDeque::new(),
            player: None,
            active_rend: None,
            want_from: None,
            swarm_size: 0,
            peers_version: 0,
            fetchers_target,
            cdn,
            stats: Stats::default(),
            first_request_at: None,
            uploaded: 0,
            tokens: 0.0,
            tokens_at: now,
            last_need_peers: None,
            wake: None,
            buffered_total: 0,
            rescue: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn peer_id(&self) -> &str {
        &self.me.peer_id
    }

    /// Ids of the peers with an open, greeted channel.
    pub fn connected_peer_ids(&self) -> Vec<String> {
        self.peers.values().filter(|p| p.ready).map(|p| p.id.clone()).collect()
    }

    /// Next output, if any. Drain it completely after every [`handle`](Self::handle).
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When the engine next needs [`Input::Tick`] (or any input) to act on time.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.wake
    }

    /// Feed one input at time `now` (monotonic milliseconds; never decreasing).
    pub fn handle(&mut self, input: Input, now: Millis) {
        self.now = now.max(self.now);
        match input {
            Input::Rendition { name, playlist_url, bandwidth_bps } => {
                let r = self.rend_index(&name);
                let manifest_url = sibling_url(&playlist_url, &self.cfg.manifest_name);
                let rend = &mut self.rends[r as usize];
                rend.playlist_url = playlist_url;
                rend.manifest_url = manifest_url;
                rend.bandwidth_bps = bandwidth_bps;
            }
            Input::Playlist { rendition, segments } => self.on_playlist(&rendition, segments),
            Input::PlayerRequest { rendition, seq } => self.on_player_request(&rendition, seq),
            Input::PlayerAbort { rendition, seq } => {
                let r = self.rend_index(&rendition);
                if let Some(s) = self.segments.get_mut(&(r, seq)) {
                    s.player_wants = false;
                }
            }
            Input::Player(state) => self.on_player_state(state),
            Input::SwarmSize(n) => self.swarm_size = n,
            Input::PeerConnected { peer } => self.on_peer_connected(peer),
            Input::PeerDisconnected { peer } => self.remove_peer(peer),
            Input::PeerMessage { peer, msg } => self.on_peer_message(peer, msg),
            Input::PeerBytes { peer, bytes } => match Message::decode(&bytes) {
                Ok(msg) => self.on_peer_message(peer, msg),
                Err(e) => self.misbehaved(peer, ByeReason::ProtocolError, format!("malformed message: {e}")),
            },
            Input::PeerBuffered { peer, bytes } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    self.buffered_total = self.buffered_total - p.buffered + bytes;
                    p.buffered = bytes;
                    self.pump_all();
                }
            }
            Input::Http { id, event } => self.on_http(id, event),
            Input::Tick => {}
        }
        if self.wake.is_none_or(|w| w <= self.now) {
            self.run_timers();
        }
    }

    // ---------------------------------------------------------------- renditions, player

    fn rend_index(&mut self, name: &str) -> u16 {
        if let Some(i) = self.rends.iter().position(|r| r.name == name) {
            return i as u16;
        }
        self.rends.push(Rendition {
            name: name.to_owned(),
            playlist_url: String::new(),
            manifest_url: String::new(),
            bandwidth_bps: 0,
            newest: None,
            manifest_http: None,
            manifest_buf: BytesMut::new(),
            manifest_last: None,
            manifest_wanted: false,
        });
        (self.rends.len() - 1) as u16
    }

    fn find_rend(&self, name: &str) -> Option<u16> {
        self.rends.iter().position(|r| r.name == name).map(|i| i as u16)
    }

    fn on_playlist(&mut self, rendition: &str, segments: Vec<ListedSegment>) {
        let r = self.rend_index(rendition);
        for ls in segments {
            let key = (r, ls.seq);
            let is_new = self.rends[r as usize].newest.is_none_or(|n| ls.seq > n);
            let too_old =
                self.rends[r as usize].newest.is_some_and(|n| ls.seq + self.cfg.cache_segments as u64 <= n);
            if too_old {
                continue;
            }
            let now = self.now;
            let seg = self.segments.entry(key).or_insert_with(|| Segment::new(key, now));
            seg.url = Some(ls.url);
            seg.duration_ms = ls.duration_ms;
            if is_new {
                self.rends[r as usize].newest = Some(ls.seq);
            }
            self.step(key);
        }
        self.evict(r);
    }

    fn on_player_request(&mut self, rendition: &str, seq: u64) {
        let r = self.rend_index(rendition);
        if self.first_request_at.is_none() {
            self.first_request_at = Some(self.now);
        }
        self.set_active_rend(r);
        // The player asks in order; what it asks for now is where fetching ahead starts.
        if self.want_from.is_none_or(|w| seq > w || self.player.is_none()) {
            self.want_from = Some(seq);
        }
        let key = (r, seq);
        let now = self.now;
        let seg = self.segments.entry(key).or_insert_with(|| Segment::new(key, now));
        seg.player_wants = true;
        seg.player_asked_at = Some(now);
        seg.delivered = false;
        if self.rends[r as usize].newest.is_none_or(|n| seq > n) {
            self.rends[r as usize].newest = Some(seq);
        }
        self.step(key);
    }

    fn on_player_state(&mut self, state: PlayerState) {
        let r = self.rend_index(&state.rendition);
        self.set_active_rend(r);
        if let Some(n) = state.next_seq {
            self.want_from = Some(n);
        }
        self.player = Some(PlayerView { state, rend: r, at: self.now });
        // Deadlines moved: re-examine what is in flight.
        self.wake = Some(self.now);
    }

    /// When the player runs dry without this segment, if that can be told.
    fn deadline(&self, key: SegKey) -> Option<Millis> {
        let seg = self.segments.get(&key)?;
        let Some(p) = &self.player else {
            // No player state yet: a request is urgent (start-up never waits for peers).
            return seg.player_wants.then_some(seg.player_asked_at.unwrap_or(self.now));
        };
        if p.rend != key.0 {
            return seg.player_wants.then_some(self.now);
        }
        if !p.state.playing {
            return seg.player_wants.then_some(self.now);
        }
        let empty_at = p.at + p.state.buffered_ahead_ms as u64;
        let next = p.state.next_seq?;
        if key.1 < next {
            return seg.player_wants.then_some(self.now);
        }
        let mut t = empty_at;
        for s in next..key.1 {
            let d = self.segments.get(&(key.0, s)).map(|s| s.duration_ms).filter(|&d| d > 0);
            t += d.unwrap_or(seg.duration_ms.max(1_000)) as u64;
        }
        Some(t)
    }

    /// Is the segment worth fetching now (the player needs it or will, or a peer waits on it)?
    fn wanted(&self, seg: &Segment) -> bool {
        if seg.player_wants && !seg.delivered {
            return true;
        }
        if seg.complete || self.yields_to_rescue(seg.key) {
            return false;
        }
        // A neighbour waits on it: fetch it, unless that would take downlink from the player
        // (then the neighbour's request waits for what is already coming, or is refused).
        if !seg.subscribers.is_empty() && (seg.in_flight() || seg.have > 0 || !self.holds_back(seg.key)) {
            return true;
        }
        Some(seg.key.0) == self.active_rend
            && self.want_from.is_some_and(|w| seg.key.1 >= w)
            && !seg.delivered
            && self.prefetching()
            && !self.holds_back(seg.key)
    }

    /// Starting a fetch of `key` now, for the swarm or ahead of the player, would slow a
    /// segment the player needs sooner: its buffer is short (see `player_starving`), or the
    /// downlink is tight and an earlier segment the player needs is still arriving. On a
    /// downlink with little room over the bitrate, segments fetched one after the other each
    /// arrive at full speed, in the order the player needs them; fetched side by side, the
    /// one it needs next arrives late. (`mixed-mobile`, 1080p viewers on 7-10 Mbit/s: 42-46
    /// stalls over seeds 1-3 without this, 0-1 with it, CDN-only 0.)
    fn holds_back(&self, key: SegKey) -> bool {
        if self.downlink_tight(key) {
            self.player_starving() || self.earlier_incomplete(key)
        } else {
            // Before the first CDN transfer the downlink is unknown: treat it as tight while
            // the player starts (a viewer joining on a thin line otherwise fetches the newest
            // segment for its neighbours alongside its own first ones, and stalls).
            self.cdn.rate.samples() == 0 && self.player_starving()
        }
    }

    /// The player has not started, or its buffer is short: anything else arriving now shares
    /// the downlink with the segment it waits for. Unknown (no player state yet): not
    /// starving.
    fn player_starving(&self) -> bool {
        self.player.is_some() && !self.prefetching()
    }

    /// A segment the player needs before `key` is neither complete nor delivered yet.
    fn earlier_incomplete(&self, key: SegKey) -> bool {
        let Some(w) = self.want_from else { return false };
        if key.1 <= w || Some(key.0) != self.active_rend {
            return false;
        }
        self.segments.range((key.0, w)..key).any(|(_, s)| !s.complete && !s.delivered)
    }

    /// Fetch ahead of the player's requests? Not while its buffer is short (starting, or after
    /// a stall): segments fetched ahead share the downlink with the one the player waits for,
    /// and on a downlink only a little faster than the bitrate that one then misses its
    /// deadline. A player that reports nothing is fetched ahead for, as before.
    fn prefetching(&self) -> bool {
        let Some(p) = &self.player else { return true };
        let ahead = (p.state.buffered_ahead_ms as Millis).saturating_sub(self.now.saturating_sub(p.at));
        p.state.playing && ahead >= PREFETCH_MIN_BUFFER_MS
    }

    // ---------------------------------------------------------------- the decision

    fn p2p_on(&self) -> bool {
        self.cfg.p2p_enabled && self.origin_key.is_some()
    }

    /// Ready peers on rendition `r` that upload, excluding banned ones.
    fn eligible(&self, r: u16) -> impl Iterator<Item = &Peer> {
        self.peers.values().filter(move |p| p.ready && p.uploads_enabled && p.rendition == Some(r))
    }

    fn my_weight(&self) -> f64 {
        if self.cfg.consume_only {
            0.0
        } else {
            hrw::weight(self.cfg.upload_kbps)
        }
    }

    /// Decide this client's role for a segment the first time something wants it.
    fn decide_role(&mut self, key: SegKey) {
        let now = self.now;
        let rend = self.rends[key.0 as usize].name.clone();
        let my_score = if self.cfg.consume_only {
            0.0
        } else {
            hrw::score(&rend, key.1, &self.me.peer_id, self.my_weight())
        };
        let mut best: Option<(f64, PeerHandle)> = None;
        let mut m = 1u32;
        for p in self.eligible(key.0) {
            m += 1;
            let s = hrw::score(&rend, key.1, &p.id, hrw::weight(p.upload_kbps));
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, p.handle));
            }
        }
        let seg_learned = self.segments.get(&key).map_or(now, |s| s.learned_at);
        let (role, cdn_at, uphill) = match best {
            Some((s, h)) if s > my_score => (Role::Follower, seg_learned + self.cfg.uphill_wait_ms, Some(h)),
            _ => {
                // A local maximum. In a swarm much larger than the neighbourhood there are
                // about S/m of them; keep about `fetchers_target` fetching at once.
                let s = (self.swarm_size.max(m)) as f64;
                let p = (self.fetchers_target * m as f64 / s).min(1.0);
                if m == 1 || hrw::lottery(&rend, key.1, &self.me.peer_id) < p {
                    (Role::Primary, now, None)
                } else {
                    (Role::Secondary, seg_learned + self.cfg.secondary_wait_ms, None)
                }
            }
        };
        if let Some(seg) = self.segments.get_mut(&key) {
            seg.role = role;
            seg.cdn_at = Some(cdn_at);
            seg.uphill = uphill;
        }
    }

    /// Re-examine one segment: deliver it, start or move a download, or set a timer.
    fn step(&mut self, key: SegKey) {
        let now = self.now;
        let Some(seg) = self.segments.get(&key) else { return };
        if seg.complete || (seg.raw.is_some() && seg.http.is_none()) {
            // A CDN body whose signed entry is still on its way waits for it (bounded), so
            // what reaches the player is verified whenever the origin signs at all.
            if let Some(t) = seg.raw_hold_until.filter(|&t| t > now && !seg.complete) {
                let r = &self.rends[key.0 as usize];
                if r.manifest_http.is_some() || r.manifest_wanted {
                    self.wake_at(t);
                    return;
                }
            }
            if seg.player_wants && !seg.delivered {
                self.deliver(key);
            }
            return;
        }
        if !self.wanted(seg) {
            return;
        }
        if let Some(t) = seg.retry_at {
            if t > now {
                self.wake_at(t);
                return;
            }
        }
        if seg.http.is_some() {
            return; // the CDN is the last resort; it runs to the end
        }
        let deadline = self.deadline(key);
        let fallback_size = self.estimated_size(key);
        let missing = seg.missing_bytes(fallback_size);
        // On a tight downlink what other downloads still have on the way arrives ahead of a
        // CDN fetch started now (it sits in the same queue): count it in.
        let queued_ahead =
            if seg.player_wants && self.downlink_tight(key) { self.inbound_elsewhere(key) } else { 0 };
        let switch_at = deadline.map(|d| {
            // Each run of missing chunks is its own CDN request (see `deadline_fallback`).
            let extra_requests = seg.missing_runs().saturating_sub(1);
            let per_request = (self.cdn.ttfb_ms.get() * 1.5) as u64;
            d.saturating_sub(
                self.cdn.time_for(missing + queued_ahead)
                    + extra_requests * per_request
                    + self.cfg.cdn_margin_ms,
            )
        });

        if !self.p2p_on() || self.ready_count() == 0 {
            if seg.player_wants || seg.role == Role::Primary {
                self.start_cdn(key, CdnReason::Startup);
            } else if let Some(t) = switch_at {
                if t <= now {
                    self.start_cdn(key, CdnReason::Deadline);
                } else {
                    self.wake_at(t);
                }
            }
            return;
        }
        if switch_at.is_some_and(|t| t <= now) {
            let had_source = seg.dls.iter().any(|d| d.got_any);
            let reason = if self.player.as_ref().is_some_and(|p| p.state.playing) {
                CdnReason::Deadline
            } else {
                CdnReason::Startup
            };
            if reason == CdnReason::Deadline && !had_source {
                self.late_signal();
            }
            if reason == CdnReason::Deadline {
                if let Some(d) = deadline {
                    self.begin_rescue(key);
                    self.deadline_fallback(key, d);
                    return;
                }
            }
            self.cancel_download(key);
            self.start_cdn(key, reason);
            return;
        }
        if seg.role == Role::Undecided {
            // A source already announced it: follow that instead of ranking.
            if self.announcers(key) > 0 {
                if let Some(s) = self.segments.get_mut(&key) {
                    s.role = Role::Follower;
                    s.cdn_at = Some(s.learned_at + self.cfg.uphill_wait_ms);
                }
            } else {
                self.decide_role(key);
            }
            self.step_after_role(key, switch_at);
            return;
        }
        self.step_after_role(key, switch_at);
    }

    fn step_after_role(&mut self, key: SegKey, switch_at: Option<Millis>) {
        let now = self.now;
        let Some(seg) = self.segments.get(&key) else { return };
        if seg.http.is_some() || seg.complete {
            return;
        }
        if seg.role == Role::Primary && !seg.in_flight() {
            self.start_cdn(key, CdnReason::Edge);
            return;
        }
        // Drop requests that stalled, and requests waiting at a neighbour that has nothing yet
        // while another neighbour has the segment: their chunks go into the next plan.
        let mut announced = 0;
        let mut usable = 0;
        let mut holders = 0;
        let mut a_holder = 0;
        for p in self.peers.values() {
            if p.ready && p.uploads_enabled {
                let Some(h) = p.haves.get(&key) else { continue };
                announced += 1;
                if p.busy_until <= now && !seg.skipping(p.handle, now) {
                    usable += 1;
                }
                if *h == HaveState::Complete {
                    holders += 1;
                    a_holder = p.handle;
                }
            }
        }
        let mut dropped: Vec<(PeerHandle, u32, bool)> = Vec::new();
        for dl in &seg.dls {
            let src = self.peers.get(&dl.peer).and_then(|p| p.haves.get(&key)).copied();
            // Nothing yet from a source that holds it, or from one still waiting for it while
            // another neighbour holds it: that source is slow or stuck; ask elsewhere.
            let stalled = if dl.got_any {
                now.saturating_sub(dl.last_progress) > self.cfg.peer_stall_ms
            } else {
                let held_elsewhere = holders > 1 || (holders == 1 && a_holder != dl.peer);
                (src == Some(HaveState::Complete) || held_elsewhere)
                    && now.saturating_sub(dl.requested_at) > self.cfg.peer_stall_ms
            };
            if stalled {
                dropped.push((dl.peer, dl.req_id, true));
            } else if !dl.got_any && dl.uphill && src.is_none() && usable > 0 {
                dropped.push((dl.peer, dl.req_id, false));
            }
        }
        for (peer, req_id, stalled) in dropped {
            if stalled {
                if let Some(s) = self.segments.get_mut(&key) {
                    s.skip_peers.push((peer, now + STALL_SKIP_MS));
                }
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.failures += 1;
                }
            }
            self.cancel_request(key, peer, req_id);
        }
        self.fill(key);
        let Some(seg) = self.segments.get(&key) else { return };
        let receiving = seg.dls.iter().any(|d| d.got_any);
        if !receiving && announced == 0 {
            // Nothing arrives and no neighbour has it: the CDN, at the role's time or before the
            // deadline, whichever comes first.
            let cdn_at = seg.cdn_at.unwrap_or(now);
            let t = switch_at.map_or(cdn_at, |s| s.min(cdn_at));
            if t <= now {
                self.cancel_download(key);
                self.start_cdn(key, CdnReason::NoSource);
                return;
            }
            self.wake_at(t);
        }
        let Some(seg) = self.segments.get(&key) else { return };
        let mut next = seg
            .dls
            .iter()
            .map(|d| if d.got_any { d.last_progress } else { d.requested_at } + self.cfg.peer_stall_ms + 1)
            .min();
        if seg.dls.is_empty() && announced > 0 {
            // Sources exist but none can be asked now (busy, skipped): look again soon.
            next = Some(next.map_or(now + 250, |t| t.min(now + 250)));
        }
        if let Some(t) = switch_at {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if let Some(t) = next {
            self.wake_at(t);
        }
    }

    /// CDN fetches run at under three times the stream's rate: a fetch for the player shares
    /// the downlink with everything else arriving, with little room to spare.
    fn downlink_tight(&self, key: SegKey) -> bool {
        self.cdn.rate.samples() > 0 && self.cdn.rate.get() < 3.0 * self.stream_rate(key.0)
    }

    /// The rendition's declared bitrate in bytes per millisecond (3 Mbit/s while unknown, as
    /// `estimated_size` assumes).
    fn stream_rate(&self, r: u16) -> f64 {
        let bw = self.rends[r as usize].bandwidth_bps;
        (if bw > 0 { bw } else { 3_000_000 }) as f64 / 8_000.0
    }

    /// Bytes other segments' peer downloads may still have queued towards this client (at most
    /// a send window each): they arrive before anything requested now.
    fn inbound_elsewhere(&self, key: SegKey) -> u64 {
        let chunk = shoal_proto::manifest::DEFAULT_CHUNK_SIZE as u64;
        self.segments
            .iter()
            .filter(|(k, _)| **k != key)
            .flat_map(|(_, s)| s.dls.iter())
            .filter(|d| d.got_any)
            .map(|d| (d.end.saturating_sub(d.next) as u64 * chunk).min(self.cfg.send_window_bytes))
            .sum()
    }

    /// The player's next segment is late and the downlink is tight: stop every download of a
    /// later segment (each would compete with the rescue) until it is delivered.
    fn begin_rescue(&mut self, key: SegKey) {
        if !self.downlink_tight(key) || !self.segments.get(&key).is_some_and(|s| s.player_wants) {
            return;
        }
        self.rescue = Some(key);
        let later: Vec<SegKey> = self
            .segments
            .range((key.0, key.1 + 1)..)
            .filter(|(_, s)| (!s.player_wants || s.delivered) && !s.dls.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for k in later {
            self.cancel_download(k);
        }
    }

    /// A rescue is under way for another segment: this one waits.
    fn yields_to_rescue(&self, key: SegKey) -> bool {
        self.rescue.is_some_and(|k| {
            k != key && self.segments.get(&k).is_some_and(|s| s.player_wants && !s.delivered)
        })
    }

    /// The deadline is near: keep the peer downloads that will still finish in time (each
    /// with time to spare for a CDN fetch of what it has left, should it slow down), cancel the
    /// others, and fetch from the CDN only the chunks nobody kept is bringing. Re-examined
    /// until the segment is complete, so a kept download that falls behind is replaced.
    fn deadline_fallback(&mut self, key: SegKey, deadline: Millis) {
        let now = self.now;
        let Some(seg) = self.segments.get(&key) else { return };
        let Some(entry) = seg.entry.clone() else {
            self.cancel_download(key);
            self.start_cdn(key, CdnReason::Deadline);
            return;
        };
        let n = entry.chunk_count() as u32;
        let chunk = entry.chunk_size as u64;
        let mut drop: Vec<(PeerHandle, u32)> = Vec::new();
        for d in &seg.dls {
            let left = (d.next..d.end.min(n)).filter(|&c| !seg.has_chunk(c as usize)).count() as u64 * chunk;
            let rate = self.peers.get(&d.peer).map_or(0.0, |p| p.rate.get());
            let on_track = d.got_any
                && now.saturating_sub(d.last_progress) < self.cfg.peer_stall_ms / 2
                && rate > 0.0
                && now + (left as f64 / rate) as u64 + self.cdn.time_for(left) + self.cfg.cdn_margin_ms
                    <= deadline;
            if !on_track {
                drop.push((d.peer, d.req_id));
            }
        }
        for (peer, req_id) in drop {
            self.cancel_request(key, peer, req_id);
        }
        let Some(seg) = self.segments.get(&key) else { return };
        let first = seg.next_uncovered(seg.prefix as u32, n);
        let Some(first) = first else {
            // Every missing chunk is on its way in time: look again shortly.
            self.wake_at(now + 100);
            return;
        };
        // Only the first run of missing chunks (bridging gaps of a chunk or two): a range over
        // chunks already here would bring them again (CDN bytes for nothing, and on a downlink
        // with little room the bytes that make the rescue late). The next run follows when this
        // one is in.
        let end = seg.uncovered_run_end(first, n);
        self.start_cdn_range(key, CdnReason::Deadline, first as usize, end as usize);
        if self.segments.get(&key).is_some_and(|s| !s.dls.is_empty()) {
            self.wake_at(now + 100);
        }
    }

    /// Rank the ready neighbours for a segment once (rendezvous order against this client, and a
    /// per-segment draw that spreads stripes), again when the neighbours change.
    fn rank_peers(&mut self, key: SegKey) {
        let Some(seg) = self.segments.get(&key) else { return };
        if seg.ranks_version == Some(self.peers_version) {
            return;
        }
        let rend = &self.rends[key.0 as usize].name;
        let mine = if self.cfg.consume_only {
            0.0
        } else {
            hrw::score(rend, key.1, &self.me.peer_id, self.my_weight())
        };
        let ranks: Vec<(PeerHandle, bool, u64)> = self
            .peers
            .values()
            .filter(|p| p.ready)
            .map(|p| {
                let above =
                    p.uploads_enabled && hrw::score(rend, key.1, &p.id, hrw::weight(p.upload_kbps)) > mine;
                (p.handle, above, hrw::hash(2, rend, key.1, &p.id))
            })
            .collect();
        if let Some(seg) = self.segments.get_mut(&key) {
            seg.ranks = ranks;
            seg.ranks_version = Some(self.peers_version);
        }
    }

    /// Chunk ranges of the segment's stripes: `stripes` contiguous parts, from the signed
    /// entry, or before it is known from the size the bitrate suggests (the last part then
    /// runs to the end, whatever it is).
    fn stripe_bounds(&self, key: SegKey) -> Vec<(u32, u32)> {
        let Some(seg) = self.segments.get(&key) else { return Vec::new() };
        let (n, known) = match &seg.entry {
            Some(e) => (e.chunk_count() as u32, true),
            None => {
                let est = self.estimated_size(key).div_ceil(shoal_proto::manifest::DEFAULT_CHUNK_SIZE as u64);
                (est.max(1) as u32, false)
            }
        };
        // A stripe is one request to one source; below ~256 KB a stripe buys no speed (a source
        // finishes it in a few hundred milliseconds anyway) and splits each source's upload over
        // more requesters, so every request progresses slower and more of them miss the deadline.
        let size = seg.entry.as_ref().map_or_else(|| self.estimated_size(key), |e| e.size);
        let by_size = (size / MIN_STRIPE_BYTES).max(1) as u32;
        let k = self.cfg.stripes.min(by_size).clamp(1, n.max(1));
        (0..k)
            .map(|i| {
                let b0 = i * n / k;
                let b1 = if i + 1 == k {
                    if known {
                        n
                    } else {
                        u32::MAX
                    }
                } else {
                    (i + 1) * n / k
                };
                (b0, b1)
            })
            .collect()
    }

    /// Ask sources for the chunks nobody is bringing yet, stripe by stripe: each stripe (a
    /// contiguous part of the segment) from its own source, so a new segment spreads through
    /// the swarm along several trees at once and a peer whose upload is below the bitrate
    /// still relays a stripe to a few neighbours instead of holding up whole segments.
    ///
    /// A stripe's source is, best first: a neighbour that holds the segment; one receiving it
    /// that ranks above this client (rendezvous order, so requests flow one way and never in
    /// circles); one receiving it that ranks below; a neighbour ranking above that has nothing
    /// yet (the request waits there: it is about to fetch it). Each stripe weighs the
    /// candidates with its own rendezvous draw, so the stripes of a segment go to different
    /// neighbours.
    fn fill(&mut self, key: SegKey) {
        let now = self.now;
        let Some(seg) = self.segments.get(&key) else { return };
        if seg.complete || seg.http.is_some() {
            return;
        }
        // Most steps find every chunk held or asked for already: nothing to plan.
        let n = seg.entry.as_ref().map(|e| e.chunk_count() as u32);
        if n.is_some_and(|n| seg.next_uncovered(seg.prefix as u32, n).is_none()) {
            return;
        }
        let bounds = self.stripe_bounds(key);
        if bounds.is_empty() {
            return;
        }
        self.rank_peers(key);
        let Some(seg) = self.segments.get(&key) else { return };
        let mut cands: Vec<(f64, PeerHandle, bool, u64)> = Vec::new();
        for p in self.peers.values() {
            if !p.ready || !p.uploads_enabled || p.busy_until > now || seg.skipping(p.handle, now) {
                continue;
            }
            let Some(&(_, above, draw)) = seg.ranks.iter().find(|r| r.0 == p.handle) else { continue };
            let base = match p.haves.get(&key) {
                Some(HaveState::Complete) => 8.0,
                Some(HaveState::Arriving { .. }) if above => 4.0,
                Some(HaveState::Arriving { .. }) => 2.0,
                None if above => 1.0,
                None => continue,
            };
            let load = p.requests.len() as f64;
            let score = base * p.rate.get().max(1.0) / (1.0 + load) / (1.0 + p.failures as f64);
            cands.push((score, p.handle, !p.haves.contains_key(&key), draw));
        }
        // Neighbours that have nothing yet are asked only while nobody near has anything.
        if cands.iter().any(|c| !c.2) {
            cands.retain(|c| !c.2);
        }
        if cands.is_empty() {
            return;
        }
        let known = seg.entry.is_some();
        let mut plan: Vec<(PeerHandle, u32, u32, bool)> = Vec::new();
        let mut extra: Vec<(PeerHandle, u32)> = Vec::new();
        for (i, &(b0, b1)) in bounds.iter().enumerate() {
            // The uncovered runs of this stripe (the whole stripe while the size is unknown).
            let mut runs: Vec<(u32, u32)> = Vec::new();
            if known {
                let mut c = b0.max(seg.prefix as u32);
                while let Some(start) = seg.next_uncovered(c, b1) {
                    c = start + 1;
                    while c < b1 && !seg.covered(c) {
                        c += 1;
                    }
                    runs.push((start, c));
                }
            } else if !seg.dls.iter().any(|d| d.next <= b0 && b0 < d.end) {
                runs.push((b0, b1));
            }
            if runs.is_empty() {
                continue;
            }
            // Each stripe from a source not already sending this segment, while there are such
            // sources: one source per stripe is what spreads the load.
            let pick = cands
                .iter()
                .map(|&(sc, h, up, draw)| {
                    let more = extra.iter().filter(|e| e.0 == h).map(|e| e.1).sum::<u32>()
                        + seg.dls.iter().filter(|d| d.peer == h).count() as u32;
                    // This stripe's own draw: 4 bits of the peer's per-segment hash.
                    let jitter = ((draw >> (4 * (i % 16))) & 0xf) as f64 / 15.0;
                    (more, sc * (0.5 + jitter), h, up)
                })
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)))
                .map(|(_, sc, h, up)| (sc, h, up));
            let Some((_, h, up)) = pick else { continue };
            for (a, b) in runs {
                plan.push((h, a, b, up));
            }
            match extra.iter_mut().find(|e| e.0 == h) {
                Some(e) => e.1 += 1,
                None => extra.push((h, 1)),
            }
        }
        for (h, first, end, up) in plan {
            self.request_range(key, h, first, end, up);
        }
    }

    /// Adapt how many clients fetch at once: a segment that reached nobody in time means too
    /// few did.
    fn late_signal(&mut self) {
        self.fetchers_target = (self.fetchers_target + 0.5).min(self.cfg.fetchers_max);
    }

    fn estimated_size(&self, key: SegKey) -> u64 {
        let r = &self.rends[key.0 as usize];
        let dur =
            self.segments.get(&key).map_or(2_000, |s| if s.duration_ms > 0 { s.duration_ms } else { 2_000 });
        let bw = if r.bandwidth_bps > 0 { r.bandwidth_bps } else { 3_000_000 };
        bw as u64 / 8 * dur as u64 / 1_000
    }

    fn ready_count(&self) -> usize {
        self.peers.values().filter(|p| p.ready).count()
    }

    /// Neighbours that said they hold the segment or are receiving it.
    fn announcers(&self, key: SegKey) -> usize {
        self.peers.values().filter(|p| p.ready && p.uploads_enabled && p.haves.contains_key(&key)).count()
    }

    fn request_range(&mut self, key: SegKey, peer: PeerHandle, first: u32, end: u32, asked_uphill: bool) {
        let now = self.now;
        let Some(seg) = self.segments.get(&key) else { return };
        if seg.complete || first >= end {
            return;
        }
        let want_entry = seg.entry.is_none();
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        let rendition = self.rends[key.0 as usize].name.clone();
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.requests.insert(req_id, key);
        // A request to a peer that never said it has the segment only waits there.
        let uphill = asked_uphill || !p.haves.contains_key(&key);
        if let Some(seg) = self.segments.get_mut(&key) {
            seg.dls.push(PeerDownload {
                peer,
                req_id,
                requested_at: now,
                last_progress: now,
                got_any: false,
                uphill,
                next: first,
                end,
            });
        }
        self.send(peer, Message::Request { req_id, rendition, seq: key.1, first, end, want_entry });
        self.wake_at(now + self.cfg.peer_stall_ms + 1);
    }

    fn cancel_request(&mut self, key: SegKey, peer: PeerHandle, req_id: u32) {
        if let Some(seg) = self.segments.get_mut(&key) {
            seg.dls.retain(|d| !(d.peer == peer && d.req_id == req_id));
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.requests.remove(&req_id);
            self.send(peer, Message::Cancel { req_id });
        }
    }

    /// Cancel every request for the segment.
    fn cancel_download(&mut self, key: SegKey) {
        let Some(seg) = self.segments.get_mut(&key) else { return };
        let dls = std::mem::take(&mut seg.dls);
        for dl in dls {
            if let Some(p) = self.peers.get_mut(&dl.peer) {
                p.requests.remove(&dl.req_id);
                self.send(dl.peer, Message::Cancel { req_id: dl.req_id });
            }
        }
    }

    fn start_cdn(&mut self, key: SegKey, reason: CdnReason) {
        let first = self.segments.get(&key).map_or(0, |s| if s.entry.is_some() { s.prefix } else { 0 });
        self.start_cdn_range(key, reason, first, usize::MAX);
    }

    /// Fetch chunks `[first_chunk, end_chunk)` of the segment from the CDN (the whole segment
    /// while its entry is unknown).
    fn start_cdn_range(&mut self, key: SegKey, reason: CdnReason, first_chunk: usize, end_chunk: usize) {
        let now = self.now;
        let Some(seg) = self.segments.get(&key) else { return };
        if seg.http.is_some() || seg.complete {
            return;
        }
        let url = match (&seg.url, &seg.entry) {
            (Some(u), _) => u.clone(),
            (None, Some(e)) => sibling_url(&self.rends[key.0 as usize].playlist_url, &e.uri),
            (None, None) => {
                // Nothing says where the segment lives yet: the manifest will.
                self.want_manifest(key.0);
                if let Some(s) = self.segments.get_mut(&key) {
                    if s.cdn_at.is_none_or(|t| t > now) {
                        s.cdn_at = Some(now);
                    }
                }
                return;
            }
        };
        let (first_chunk, end_chunk) = match &seg.entry {
            Some(e) => (first_chunk, end_chunk.min(e.chunk_count())),
            None => (0, usize::MAX),
        };
        let range = match &seg.entry {
            Some(e) if first_chunk > 0 || end_chunk < e.chunk_count() => {
                Some((e.chunk_range(first_chunk).0, Some(e.chunk_range(end_chunk - 1).1 - 1)))
            }
            _ => None,
        };
        if seg.entry.is_none() && self.p2p_on() {
            self.want_manifest(key.0);
        }
        let id = self.next_http;
        self.next_http += 1;
        self.http.insert(id, HttpTarget::Segment(key));
        let r_first = first_chunk;
        if let Some(seg) = self.segments.get_mut(&key) {
            seg.http = Some(HttpJob {
                id,
                first_chunk: r_first,
                end_chunk,
                received: 0,
                skip: 0,
                started: now,
                first_byte_at: None,
                status_ok: false,
                buf: Pieces::default(),
            });
            seg.http_attempts += 1;
            seg.retry_at = None;
        }
        match reason {
            CdnReason::Edge => self.stats.cdn_fetches_edge += 1,
            CdnReason::Deadline => self.stats.cdn_fallback_deadline += 1,
            CdnReason::NoSource => self.stats.cdn_fallback_no_source += 1,
            CdnReason::Startup => self.stats.cdn_fallback_startup += 1,
        }
        self.out.push_back(Output::HttpFetch { id, url, range, kind: FetchKind::Segment });
        // Neighbours waiting for this segment may now follow us.
        self.announce_arriving(key);
    }

    fn want_manifest(&mut self, r: u16) {
        let now = self.now;
        let rend = &mut self.rends[r as usize];
        if rend.manifest_url.is_empty() || rend.manifest_http.is_some() {
            rend.manifest_wanted = rend.manifest_http.is_some();
            return;
        }
        if rend.manifest_last.is_some_and(|t| now < t + MANIFEST_MIN_INTERVAL_MS) {
            rend.manifest_wanted = true;
            let next = rend_manifest_next(rend);
            self.wake_at(next);
            return;
        }
        let id = self.next_http;
        self.next_http += 1;
        rend.manifest_http = Some(id);
        rend.manifest_last = Some(now);
        rend.manifest_wanted = false;
        rend.manifest_buf.clear();
        let url = rend.manifest_url.clone();
        self.http.insert(id, HttpTarget::Manifest(r));
        self.out.push_back(Output::HttpFetch { id, url, range: None, kind: FetchKind::Manifest });
    }

    // ---------------------------------------------------------------- HTTP

    fn on_http(&mut self, id: HttpId, event: HttpEvent) {
        let Some(target) = self.http.get(&id) else { return };
        match *target {
            HttpTarget::Manifest(r) => self.on_manifest_http(id, r, event),
            HttpTarget::Segment(key) => self.on_segment_http(id, key, event),
        }
    }

    fn on_manifest_http(&mut self, id: HttpId, r: u16, event: HttpEvent) {
        let rend = &mut self.rends[r as usize];
        match event {
            HttpEvent::Response { status, .. } => {
                if !(200..300).contains(&status) {
                    self.finish_manifest(id, r, None);
                }
            }
            HttpEvent::Data(b) => {
                self.stats.manifest_bytes += b.len() as u64;
                if rend.manifest_buf.len() + b.len() > MAX_MANIFEST_BYTES {
                    self.finish_manifest(id, r, None);
                } else {
                    rend.manifest_buf.extend_from_slice(&b);
                }
            }
            HttpEvent::Done => {
                let body = std::mem::take(&mut rend.manifest_buf).freeze();
                self.finish_manifest(id, r, Some(body));
            }
            HttpEvent::Failed(_) => {
                self.stats.http_failures += 1;
                self.finish_manifest(id, r, None);
            }
        }
    }

    fn finish_manifest(&mut self, id: HttpId, r: u16, body: Option<Bytes>) {
        self.http.remove(&id);
        let rend = &mut self.rends[r as usize];
        rend.manifest_http = None;
        let again = rend.manifest_wanted;
        let Some(body) = body else {
            if again {
                self.wake_at(self.now + MANIFEST_MIN_INTERVAL_MS);
            }
            return;
        };
        let Ok(m) = SignedManifest::from_json(&body) else {
            self.stats.verify_failures += 1;
            return;
        };
        if m.stream != self.me.stream || m.rendition != self.rends[r as usize].name {
            return;
        }
        for e in m.segments {
            self.accept_entry(r, e, None);
        }
        // Bodies still without an entry will not get one from this origin: stop holding them.
        for seg in self.segments.values_mut() {
            if seg.key.0 == r && seg.entry.is_none() {
                seg.raw_hold_until = None;
            }
        }
        self.wake_at(self.now);
    }

    fn on_segment_http(&mut self, id: HttpId, key: SegKey, event: HttpEvent) {
        let now = self.now;
        let Some(seg) = self.segments.get_mut(&key) else {
            self.http.remove(&id);
            return;
        };
        let Some(job) = seg.http.as_mut().filter(|j| j.id == id) else {
            self.http.remove(&id);
            return;
        };
        match event {
            HttpEvent::Response { status, .. } => {
                job.first_byte_at = Some(now);
                self.cdn.record_ttfb(now.saturating_sub(job.started));
                if status == 200 && job.first_chunk > 0 {
                    // Range ignored: skip to where we wanted to start.
                    job.skip = seg.entry.as_ref().map_or(0, |e| e.chunk_range(job.first_chunk).0);
                    job.status_ok = true;
                } else if (200..300).contains(&status) {
                    job.status_ok = true;
                } else {
                    self.http_failed(key, format!("HTTP {status}"));
                }
            }
            HttpEvent::Data(mut b) => {
                if !job.status_ok {
                    return;
                }
                if job.first_byte_at.is_none() {
                    job.first_byte_at = Some(now);
                }
                if job.skip > 0 {
                    let n = (job.skip as usize).min(b.len());
                    job.skip -= n as u64;
                    self.stats.wasted_bytes += n as u64;
                    b = b.slice(n..);
                    if b.is_empty() {
                        return;
                    }
                }
                job.received += b.len() as u64;
                self.stats.http_bytes += b.len() as u64;
                if seg.first_data_at.is_none() {
                    seg.first_data_at = Some(now);
                }
                if seg.entry.is_some() && !seg.unshareable {
                    self.http_chunks(key, Some(b));
                } else {
                    job.buf.push(b);
                }
            }
            HttpEvent::Done => {
                if !job.status_ok {
                    return;
                }
                let elapsed = now.saturating_sub(job.first_byte_at.unwrap_or(job.started));
                self.cdn.record_transfer(job.received, elapsed);
                self.http_done(key);
            }
            HttpEvent::Failed(reason) => self.http_failed(key, reason),
        }
    }

    /// Cut CDN bytes (`data` and what is already buffered) into chunks, verify each against
    /// the signed entry, store it and let waiting uploads relay it at once.
    fn http_chunks(&mut self, key: SegKey, data: Option<Bytes>) {
        let mut new_chunks = false;
        let mismatch;
        {
            let Some(seg) = self.segments.get_mut(&key) else { return };
            let Some(entry) = seg.entry.clone() else { return };
            let Some(mut job) = seg.http.take() else { return };
            if let Some(data) = data {
                job.buf.push(data);
            }
            mismatch = loop {
                // Position of the first unconsumed byte: start of the range + what arrived
                // - what is still buffered.
                let pos = entry.chunk_range(job.first_chunk).0 + job.received - job.buf.len() as u64;
                let idx = (pos / entry.chunk_size as u64) as usize;
                if idx >= entry.chunk_count() {
                    break false;
                }
                let (s, e) = entry.chunk_range(idx);
                let need = (e - s) as usize;
                if job.buf.len() < need {
                    break false;
                }
                let chunk = job.buf.take(need);
                if self.crypto.chunk_digest(&chunk) != entry.chunk_hashes[idx] {
                    // The CDN has different bytes than the origin signed (stale cache, another
                    // origin instance): give the player what the CDN has, share none of it.
                    self.stats.verify_failures += 1;
                    seg.unshareable = true;
                    let mut all = Pieces::default();
                    for c in seg.chunks.iter().take(idx).flatten() {
                        all.push(c.clone());
                    }
                    all.push(chunk);
                    for c in job.buf.to_vec() {
                        all.push(c);
                    }
                    job.buf = all;
                    break true;
                }
                if seg.put_chunk(idx, chunk) {
                    seg.cdn_bytes += need as u64;
                    new_chunks = true;
                } else {
                    self.stats.wasted_bytes += need as u64;
                }
            };
            seg.http = Some(job);
        }
        if mismatch {
            let rendition = self.rends[key.0 as usize].name.clone();
            self.out.push_back(Output::Event(Event::CdnMismatch { rendition, seq: key.1 }));
            return;
        }
        if new_chunks {
            self.on_new_chunks(key);
        }
    }

    fn http_done(&mut self, key: SegKey) {
        let Some(seg) = self.segments.get_mut(&key) else { return };
        let Some(job) = seg.http.take() else { return };
        self.http.remove(&job.id);
        if seg.entry.is_some() && !seg.unshareable {
            // Every chunk asked for is here, yet the segment is not complete: the rest comes
            // from the peer downloads a deadline fallback kept (not a short body).
            let end = seg.entry.as_ref().map_or(0, |e| e.chunk_count()).min(job.end_chunk);
            let range_done = !seg.complete
                && (job.first_chunk..end).all(|c| seg.chunks.get(c).is_some_and(|x| x.is_some()));
            if range_done {
                self.step(key);
                return;
            }
            if !seg.complete {
                if job.buf.is_empty() {
                    // The server sent less than the entry says: try again.
                    self.stats.http_failures += 1;
                    seg.retry_at = Some(self.now + 200);
                    self.step(key);
                    return;
                }
                self.stats.http_failures += 1;
                seg.retry_at = Some(self.now + 200);
                self.step(key);
            }
            return;
        }
        // Body kept whole: the entry was unknown (or did not match).
        let body = job.buf;
        if let Some(entry) = seg.entry.clone().filter(|_| !seg.unshareable) {
            self.adopt_raw(key, entry, body);
            return;
        }
        seg.raw = Some(body);
        if seg.entry.is_none() && self.origin_key.is_some() {
            // Hold it briefly for the manifest (fetched alongside, and much smaller, so usually
            // already here), never past a playing player's deadline.
            let mut until = self.now + RAW_HOLD_MS;
            if self.player.as_ref().is_some_and(|p| p.state.playing) {
                if let Some(d) = self.deadline(key) {
                    until = until.min(d.saturating_sub(200));
                }
            }
            if let Some(seg) = self.segments.get_mut(&key) {
                seg.raw_hold_until = Some(until);
            }
            self.want_manifest(key.0);
        }
        self.step(key);
    }

    /// A CDN body arrived whole before its entry; now the entry is here, cut and verify it.
    fn adopt_raw(&mut self, key: SegKey, entry: Arc<SegmentEntry>, body: Pieces) {
        let Some(seg) = self.segments.get_mut(&key) else { return };
        if body.len() as u64 != entry.size {
            seg.unshareable = true;
            seg.raw = Some(body);
            self.stats.verify_failures += 1;
            self.step(key);
            return;
        }
        let mut ok = true;
        let mut parts = Vec::with_capacity(entry.chunk_count());
        for i in 0..entry.chunk_count() {
            let (s, e) = entry.chunk_range(i);
            let c = body.slice(s as usize, e as usize);
            if self.crypto.chunk_digest(&c) != entry.chunk_hashes[i] {
                ok = false;
                break;
            }
            parts.push(c);
        }
        if !ok {
            seg.unshareable = true;
            seg.raw = Some(body);
            self.stats.verify_failures += 1;
            let rendition = self.rends[key.0 as usize].name.clone();
            self.out.push_back(Output::Event(Event::CdnMismatch { rendition, seq: key.1 }));
            self.step(key);
            return;
        }
        for (i, c) in parts.into_iter().enumerate() {
            let n = c.len() as u64;
            if seg.put_chunk(i, c) {
                seg.cdn_bytes += n;
            }
        }
        self.on_new_chunks(key);
    }

    fn http_failed(&mut self, key: SegKey, reason: String) {
        self.stats.http_failures += 1;
        let Some(seg) = self.segments.get_mut(&key) else { return };
        if let Some(job) = seg.http.take() {
            self.http.remove(&job.id);
            self.out.push_back(Output::HttpCancel { id: job.id });
        }
        if seg.http_attempts >= HTTP_ATTEMPTS {
            if seg.player_wants && !seg.delivered {
                seg.delivered = true;
                let rendition = self.rends[key.0 as usize].name.clone();
                self.out.push_back(Output::DeliverFailed { rendition, seq: key.1, reason });
            }
            return;
        }
        seg.retry_at = Some(self.now + 250 * seg.http_attempts as u64);
        seg.role = Role::Primary; // retry from the CDN, peers are not faster now
        let t = self.now + 250 * seg.http_attempts as u64;
        self.wake_at(t);
    }

    // ---------------------------------------------------------------- entries and chunks

    /// A signed entry arrived (manifest or peer). Verify once, attach, learn the segment.
    /// Returns false if it did not verify.
    fn accept_entry(&mut self, r: u16, entry: SegmentEntry, from: Option<PeerHandle>) -> bool {
        let key = (r, entry.seq);
        if self.segments.get(&key).is_some_and(|s| s.entry.is_some()) {
            return true;
        }
        let Some(origin) = self.origin_key else { return false };
        if entry.stream != self.me.stream || !self.crypto.entry_valid(&entry, &origin) {
            self.stats.verify_failures += 1;
            let rendition = self.rends[r as usize].name.clone();
            self.out.push_back(Output::Event(Event::BadEntry { rendition, seq: entry.seq }));
            if let Some(p) = from {
                self.misbehaved(p, ByeReason::BadData, "forged segment entry".into());
            }
            return false;
        }
        if entry.chunk_count() > MAX_WIRE_CHUNKS {
            // Too big to announce over a DataChannel: leave it to the CDN.
            if let Some(seg) = self.segments.get_mut(&key) {
                seg.unshareable = true;
            }
            return true;
        }
        let too_old =
            self.rends[r as usize].newest.is_some_and(|n| entry.seq + self.cfg.cache_segments as u64 <= n);
        if too_old && !self.segments.contains_key(&key) {
            return true;
        }
        let now = self.now;
        let is_new = self.rends[r as usize].newest.is_none_or(|n| entry.seq > n);
        if is_new {
            self.rends[r as usize].newest = Some(entry.seq);
        }
        let seg = self.segments.entry(key).or_insert_with(|| Segment::new(key, now));
        seg.set_entry(Arc::new(entry));
        // A whole CDN body waiting for this entry can be verified now.
        if let Some(raw) = seg.raw.take() {
            if !seg.unshareable {
                let entry = seg.entry.clone().expect("just set");
                self.adopt_raw(key, entry, raw);
                return true;
            }
            seg.raw = Some(raw);
        }
        if seg.http.as_ref().is_some_and(|job| !job.buf.is_empty()) {
            // The CDN body so far was kept whole; cut it into chunks now (positions are
            // computed from `received - buf.len()`).
            self.http_chunks(key, None);
        }
        self.step(key);
        self.pump_subscribers(key);
        true
    }

    /// New verified chunks of a segment: relay them, and finish the segment when complete.
    fn on_new_chunks(&mut self, key: SegKey) {
        self.announce_arriving(key);
        self.pump_subscribers(key);
        let complete = self.segments.get(&key).is_some_and(|s| s.complete);
        if complete {
            self.segment_complete(key);
        }
    }

    fn segment_complete(&mut self, key: SegKey) {
        let now = self.now;
        let Some(seg) = self.segments.get_mut(&key) else { return };
        if let Some(job) = seg.http.take() {
            // The body usually completes the segment before its Done arrives: this is the
            // transfer's one chance to teach the CDN estimate (without it a client never
            // learns that its downlink is slower than the default guess).
            if let (true, Some(t0)) = (job.status_ok, job.first_byte_at) {
                self.cdn.record_transfer(job.received, now.saturating_sub(t0));
            }
            self.http.remove(&job.id);
            self.out.push_back(Output::HttpCancel { id: job.id });
        }
        for dl in std::mem::take(&mut seg.dls) {
            if let Some(p) = self.peers.get_mut(&dl.peer) {
                p.requests.remove(&dl.req_id);
                self.out
                    .push_back(Output::Send { peer: dl.peer, msg: Message::Cancel { req_id: dl.req_id } });
            }
        }
        self.stats.segments_verified += 1;
        if self.cfg.p2p_enabled && !self.cfg.consume_only {
            let rendition = self.rends[key.0 as usize].name.clone();
            let targets: Vec<PeerHandle> = self
                .peers
                .values()
                .filter(|p| {
                    p.ready && p.rendition == Some(key.0) && p.haves.get(&key) != Some(&HaveState::Complete)
                })
                .map(|p| p.handle)
                .collect();
            for h in targets {
                self.send(
                    h,
                    Message::Have { rendition: rendition.clone(), seq: key.1, state: HaveState::Complete },
                );
            }
        }
        self.pump_subscribers(key);
        self.step(key);
    }

    fn announce_arriving(&mut self, key: SegKey) {
        if !self.cfg.p2p_enabled || self.cfg.consume_only {
            return;
        }
        let Some(seg) = self.segments.get_mut(&key) else { return };
        if seg.announced_arriving || seg.complete || seg.unshareable {
            return;
        }
        seg.announced_arriving = true;
        let chunks = seg.prefix as u32;
        let rendition = self.rends[key.0 as usize].name.clone();
        let targets: Vec<PeerHandle> = self
            .peers
            .values()
            .filter(|p| p.ready && p.rendition == Some(key.0) && !p.haves.contains_key(&key))
            .map(|p| p.handle)
            .collect();
        for h in targets {
            self.send(
                h,
                Message::Have {
                    rendition: rendition.clone(),
                    seq: key.1,
                    state: HaveState::Arriving { chunks },
                },
            );
        }
    }

    fn deliver(&mut self, key: SegKey) {
        let now = self.now;
        let deadline = self.deadline(key);
        let Some(seg) = self.segments.get_mut(&key) else { return };
        if seg.delivered || !seg.player_wants {
            return;
        }
        let (chunks, size, verified) = if seg.complete {
            let chunks: Vec<Bytes> = seg.chunks.iter().flatten().cloned().collect();
            (chunks, seg.size().unwrap_or(0), true)
        } else if let Some(raw) = &seg.raw {
            (raw.to_vec(), raw.len() as u64, false)
        } else {
            return;
        };
        seg.delivered = true;
        seg.player_wants = false;
        if self.rescue == Some(key) {
            self.rescue = None;
            self.wake = Some(now);
        }
        let source = match (seg.cdn_bytes > 0 || seg.raw.is_some(), seg.peer_bytes > 0) {
            (true, false) | (false, false) => Source::Cdn,
            (false, true) => Source::Peers,
            (true, true) => Source::Mixed,
        };
        let asked = seg.player_asked_at.unwrap_or(now);
        let timing = match source {
            Source::Cdn => Timing {
                first_byte_ms: seg.first_data_at.unwrap_or(now).saturating_sub(asked),
                total_ms: now.saturating_sub(asked).max(1),
            },
            // Report what the CDN would have taken, so the player's ABR sees CDN bandwidth.
            _ => Timing {
                first_byte_ms: self.cdn.ttfb_ms.get() as u64,
                total_ms: self.cdn.ttfb_ms.get() as u64 + (size as f64 / self.cdn.rate.get().max(1.0)) as u64,
            },
        };
        self.stats.delivered += 1;
        match source {
            Source::Cdn => self.stats.delivered_from_cdn += 1,
            Source::Peers => self.stats.delivered_from_peers += 1,
            Source::Mixed => self.stats.delivered_mixed += 1,
        }
        if !verified {
            self.stats.unverified_deliveries += 1;
        }
        if deadline.is_some_and(|d| now > d + 100) && self.player.as_ref().is_some_and(|p| p.state.playing) {
            self.stats.delivered_late += 1;
        } else if source == Source::Peers {
            self.fetchers_target = (self.fetchers_target - 0.02).max(self.cfg.fetchers_target.min(1.0));
        }
        if self.stats.startup_ms.is_none() {
            self.stats.startup_ms = Some(now.saturating_sub(self.first_request_at.unwrap_or(now)));
        }
        let rendition = self.rends[key.0 as usize].name.clone();
        self.out.push_back(Output::Deliver(Delivery {
            rendition,
            seq: key.1,
            chunks,
            size,
            source,
            verified,
            timing,
        }));
    }

    // ---------------------------------------------------------------- peers

    fn send(&mut self, peer: PeerHandle, msg: Message) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if let Message::Data { payload, .. } = &msg {
                let b = payload.len() as u64 + shoal_proto::wire::DATA_HEADER as u64;
                p.buffered += b;
                self.buffered_total += b;
            }
            self.out.push_back(Output::Send { peer, msg });
        }
    }

    fn on_peer_connected(&mut self, peer: PeerHandle) {
        if !self.cfg.p2p_enabled || self.peers.len() >= MAX_CONNECTED {
            self.out.push_back(Output::Send {
                peer,
                msg: Message::Bye { reason: ByeReason::TooManyPeers, text: "not accepting peers".into() },
            });
            self.out.push_back(Output::Disconnect { peer, reason: ByeReason::TooManyPeers });
            return;
        }
        let now = self.now;
        if let Some(old) = self.peers.insert(peer, Peer::new(peer, now, self.cfg.ping_interval_ms)) {
            self.buffered_total -= old.buffered;
        }
        let renditions =
            self.active_rend.map(|r| vec![self.rends[r as usize].name.clone()]).unwrap_or_default();
        let mut c = caps::CUT_THROUGH;
        if !self.cfg.consume_only {
            c |= caps::UPLOAD;
        }
        self.send(
            peer,
            Message::Hello(Hello {
                version_min: MIN_PROTOCOL_VERSION,
                version_max: PROTOCOL_VERSION,
                peer_id: self.me.peer_id.clone(),
                stream: self.me.stream.clone(),
                renditions,
                caps: c,
                upload_kbps: if self.cfg.consume_only { 0 } else { self.cfg.upload_kbps },
            }),
        );
        self.wake_at(now + HELLO_TIMEOUT_MS);
    }

    fn remove_peer(&mut self, peer: PeerHandle) {
        let Some(p) = self.peers.remove(&peer) else { return };
        self.buffered_total -= p.buffered;
        self.peers_version += 1;
        if p.ready {
            self.stats.peers_connected = self.stats.peers_connected.saturating_sub(1);
            if self.by_id.get(&p.id) == Some(&peer) {
                self.by_id.remove(&p.id);
            }
        }
        for u in &p.uploads {
            if let Some(seg) = self.segments.get_mut(&u.key) {
                seg.subscribers.retain(|&(h, r)| !(h == peer && r == u.req_id));
            }
        }
        let mut keys: Vec<SegKey> = p.requests.values().copied().collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            if let Some(seg) = self.segments.get_mut(&key) {
                seg.dls.retain(|d| d.peer != peer);
                if seg.uphill == Some(peer) {
                    seg.uphill = None;
                }
            }
            self.step(key);
        }
    }

    fn misbehaved(&mut self, peer: PeerHandle, reason: ByeReason, text: String) {
        let id = self.peers.get(&peer).map(|p| p.id.clone()).unwrap_or_default();
        if !id.is_empty() {
            self.banned.insert(id.clone());
        }
        self.stats.peers_banned += 1;
        self.out.push_back(Output::Event(Event::PeerMisbehaved { peer_id: id, reason: text.clone() }));
        self.out.push_back(Output::Send { peer, msg: Message::Bye { reason, text: truncate(&text, 200) } });
        self.out.push_back(Output::Disconnect { peer, reason });
        self.remove_peer(peer);
    }

    fn refuse(&mut self, peer: PeerHandle, reason: ByeReason, text: &str) {
        self.out.push_back(Output::Event(Event::PeerRefused { peer, reason: text.to_owned() }));
        self.out.push_back(Output::Send { peer, msg: Message::Bye { reason, text: text.to_owned() } });
        self.out.push_back(Output::Disconnect { peer, reason });
        self.remove_peer(peer);
    }

    fn on_peer_message(&mut self, peer: PeerHandle, msg: Message) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.last_heard = now;
        if !p.ready {
            let Message::Hello(h) = msg else {
                self.misbehaved(peer, ByeReason::ProtocolError, "message before hello".into());
                return;
            };
            self.on_hello(peer, h);
            return;
        }
        match msg {
            Message::Hello(_) => self.misbehaved(peer, ByeReason::ProtocolError, "second hello".into()),
            Message::Entry(e) => {
                let Some(r) = self.find_rend(&e.rendition) else { return };
                self.accept_entry(r, *e, Some(peer));
            }
            Message::Have { rendition, seq, state } => self.on_have(peer, &rendition, seq, state),
            Message::HaveMap { rendition, base, count, bits } => {
                let Some(r) = self.find_rend(&rendition) else { return };
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.rendition = Some(r);
                    for i in 0..count.min(64) as u64 {
                        if bits[(i / 8) as usize] & (1 << (i % 8)) != 0 {
                            p.haves.insert((r, base + i), HaveState::Complete);
                        }
                    }
                }
            }
            Message::Request { req_id, rendition, seq, first, end, want_entry } => {
                self.on_request(peer, req_id, &rendition, seq, first, end, want_entry)
            }
            Message::Data { req_id, chunk, payload } => self.on_data(peer, req_id, chunk, payload),
            Message::Done { req_id } => self.request_ended(peer, req_id, None),
            Message::Absent { req_id } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if let Some(key) = p.requests.get(&req_id) {
                        p.haves.remove(key);
                    }
                }
                self.request_ended(peer, req_id, Some(ABSENT_SKIP_MS))
            }
            Message::Busy { req_id, retry_ms } => {
                // It has the segment but too much to send: ask others, and it again shortly.
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.busy_until = now + (retry_ms as Millis).clamp(100, 2_000);
                }
                self.wake_at(now + (retry_ms as Millis).clamp(100, 2_000));
                self.request_ended(peer, req_id, None)
            }
            Message::Cancel { req_id } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if let Some(i) = p.uploads.iter().position(|u| u.req_id == req_id) {
                        let u = p.uploads.remove(i);
                        if let Some(seg) = self.segments.get_mut(&u.key) {
                            seg.subscribers.retain(|&(h, r)| !(h == peer && r == req_id));
                        }
                    }
                }
            }
            Message::Ping { nonce } => self.send(peer, Message::Pong { nonce }),
            Message::Pong { nonce } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if let Some((n, at)) = p.ping {
                        if n == nonce {
                            p.rtt_ms = Some(now.saturating_sub(at));
                            p.ping = None;
                        }
                    }
                }
            }
            Message::Bye { .. } => {
                self.out.push_back(Output::Disconnect { peer, reason: ByeReason::Normal });
                self.remove_peer(peer);
            }
        }
    }

    fn on_hello(&mut self, peer: PeerHandle, h: Hello) {
        let Some(version) = negotiate(MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, h.version_min, h.version_max)
        else {
            self.refuse(peer, ByeReason::IncompatibleVersion, "no common protocol version");
            return;
        };
        if h.stream != self.me.stream {
            self.refuse(peer, ByeReason::WrongStream, "different stream");
            return;
        }
        if self.banned.contains(&h.peer_id) || h.peer_id == self.me.peer_id {
            self.refuse(peer, ByeReason::BadData, "peer not accepted");
            return;
        }
        if let Some(&other) = self.by_id.get(&h.peer_id) {
            if other != peer && self.peers.contains_key(&other) {
                self.refuse(peer, ByeReason::Normal, "already connected");
                return;
            }
        }
        let rend = h.renditions.first().map(|n| self.rend_index(n));
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.ready = true;
        self.peers_version += 1;
        p.version = version;
        p.id = h.peer_id.clone();
        p.uploads_enabled = h.caps & caps::UPLOAD != 0;
        p.upload_kbps = h.upload_kbps;
        p.rendition = rend;
        self.by_id.insert(h.peer_id, peer);
        self.stats.peers_connected += 1;
        // Tell the newcomer what we hold for our rendition.
        if let Some(msg) = self.have_map() {
            self.send(peer, msg);
        }
    }

    /// The complete segments of the rendition being played, as one `HaveMap` (empty if none:
    /// it still tells neighbours which rendition this client is on).
    fn have_map(&self) -> Option<Message> {
        let r = self.active_rend?;
        if self.cfg.consume_only || !self.cfg.p2p_enabled {
            return None;
        }
        let rendition = self.rends[r as usize].name.clone();
        let newest = self.rends[r as usize].newest.unwrap_or(0);
        let base = newest.saturating_sub(63);
        let mut bits = [0u8; 8];
        for (&(sr, seq), s) in self.segments.range((r, base)..=(r, newest)) {
            if sr == r && s.complete && !s.unshareable {
                let i = seq - base;
                bits[(i / 8) as usize] |= 1 << (i % 8);
            }
        }
        Some(Message::HaveMap { rendition, base, count: 64, bits })
    }

    /// The player moved to another rendition: neighbours learn it from a fresh `HaveMap`.
    fn set_active_rend(&mut self, r: u16) {
        if self.active_rend == Some(r) {
            return;
        }
        self.active_rend = Some(r);
        if let Some(msg) = self.have_map() {
            let ready: Vec<PeerHandle> = self.peers.values().filter(|p| p.ready).map(|p| p.handle).collect();
            for h in ready {
                self.send(h, msg.clone());
            }
        }
    }

    fn on_have(&mut self, peer: PeerHandle, rendition: &str, seq: u64, state: HaveState) {
        let Some(r) = self.find_rend(rendition) else { return };
        let key = (r, seq);
        let too_old =
            self.rends[r as usize].newest.is_some_and(|n| seq + self.cfg.cache_segments as u64 <= n);
        if too_old {
            return;
        }
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.rendition = Some(r);
        p.haves.insert(key, state);
        // News from the peer: whatever it refused before may be there now.
        if let Some(seg) = self.segments.get_mut(&key) {
            seg.skip_peers.retain(|&(h, _)| h != peer);
        }
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if p.haves.len() > 4 * self.cfg.cache_segments {
            let newest = self.rends[r as usize].newest.unwrap_or(seq).max(seq);
            let keep = self.cfg.cache_segments as u64;
            p.haves.retain(|&(_, s), _| s + keep > newest);
        }
        if Some(r) != self.active_rend {
            return;
        }
        let now = self.now;
        if self.rends[r as usize].newest.is_none_or(|n| seq > n) {
            self.rends[r as usize].newest = Some(seq);
        }
        self.segments.entry(key).or_insert_with(|| Segment::new(key, now));
        self.step(key);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_request(
        &mut self,
        peer: PeerHandle,
        req_id: u32,
        rendition: &str,
        seq: u64,
        first: u32,
        end: u32,
        want_entry: bool,
    ) {
        let now = self.now;
        let budget_left = self.cfg.upload_budget_bytes == 0 || self.uploaded < self.cfg.upload_budget_bytes;
        if self.cfg.consume_only || !self.p2p_on() || !budget_left {
            self.stats.uploads_absent += 1;
            self.send(peer, Message::Absent { req_id });
            return;
        }
        let r = match self.find_rend(rendition) {
            Some(r) => r,
            None => {
                self.stats.uploads_absent += 1;
                self.send(peer, Message::Absent { req_id });
                return;
            }
        };
        let key = (r, seq);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.rendition = Some(r);
            if p.uploads.iter().any(|u| u.req_id == req_id) || p.uploads.len() >= 64 {
                self.misbehaved(peer, ByeReason::ProtocolError, "duplicate or excessive requests".into());
                return;
            }
        }
        let newest = self.rends[r as usize].newest;
        let seg = self.segments.get(&key);
        let holding = seg.is_some_and(|s| s.shareable() && s.has_chunk(first as usize));
        // The segment is on its way here from the CDN or from other peers than the asker: keep
        // the request and relay the chunks as they arrive. Unless the first chunk asked for is
        // coming only from the asker itself: two peers waiting on each other for the same chunk
        // would wait forever.
        let coming = seg.is_some_and(|s| {
            let via_asker_only = !s.coming(first, peer)
                && s.dls.iter().any(|d| d.peer == peer && d.next <= first && first < d.end);
            let elsewhere = s.http.is_some() || s.dls.iter().any(|d| d.peer != peer);
            !s.unshareable && !via_asker_only && elsewhere
        });
        // Nothing under way for it yet, but it is at or just past our live edge: we are about
        // to fetch it (this is how a better-ranked neighbour is asked before it has anything).
        let idle = seg.is_none_or(|s| !s.in_flight() && s.have == 0 && !s.unshareable);
        let upcoming = Some(r) == self.active_rend
            && newest.is_none_or(|n| seq + 1 >= n && seq <= n + 2)
            && !self.holds_back(key);
        let Some(p) = self.peers.get(&peer) else { return };
        if holding {
            if self.upload_backlog_full() {
                self.stats.uploads_busy += 1;
                self.send(peer, Message::Busy { req_id, retry_ms: 200 });
                return;
            }
        } else if !(coming || (idle && upcoming))
            || p.parked_uploads() >= self.cfg.max_parked_uploads as usize
        {
            self.stats.uploads_absent += 1;
            self.send(peer, Message::Absent { req_id });
            return;
        }
        let parked_until = if holding { None } else { Some(now + self.cfg.park_timeout_ms) };
        let Some(p) = self.peers.get_mut(&peer) else { return };
        // Requests are served in the order peers first asked for the segment, so a peer asking
        // block after block is served through to the end before the next one: a few peers get
        // it fast and pass it on, rather than everyone getting it slowly.
        let started = p.first_asked(key, now);
        p.uploads.push(Upload {
            req_id,
            key,
            next: first,
            end,
            send_entry: want_entry,
            started,
            parked_until,
        });
        self.stats.uploads_served += 1;
        if !holding {
            if newest.is_none_or(|n| seq > n) {
                self.rends[r as usize].newest = Some(seq);
            }
            self.segments.entry(key).or_insert_with(|| Segment::new(key, now));
            self.wake_at(now + self.cfg.park_timeout_ms);
        }
        if let Some(seg) = self.segments.get_mut(&key) {
            seg.subscribers.push((peer, req_id));
        }
        // Someone downstream needs it: make sure we are getting it.
        self.step(key);
        self.pump_peer(peer);
    }

    /// A request of ours ended at the peer (done, or refused: then the peer is not asked for
    /// this segment again for `skip_ms`).
    fn request_ended(&mut self, peer: PeerHandle, req_id: u32, skip_ms: Option<Millis>) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        let Some(key) = p.requests.remove(&req_id) else { return };
        let Some(seg) = self.segments.get_mut(&key) else { return };
        if let Some(i) = seg.dls.iter().position(|d| d.req_id == req_id && d.peer == peer) {
            seg.dls.remove(i);
            if let Some(ms) = skip_ms {
                seg.skip_peers.retain(|&(_, until)| until > now);
                seg.skip_peers.push((peer, now + ms));
                if seg.uphill == Some(peer) {
                    seg.uphill = None;
                }
            }
        }
        self.step(key);
    }

    fn on_data(&mut self, peer: PeerHandle, req_id: u32, chunk: u32, payload: Bytes) {
        let now = self.now;
        let len = payload.len() as u64;
        let Some(p) = self.peers.get(&peer) else { return };
        let Some(&key) = p.requests.get(&req_id) else {
            // Late data for a request we cancelled.
            self.stats.wasted_bytes += len;
            return;
        };
        let Some(seg) = self.segments.get(&key) else {
            self.stats.wasted_bytes += len;
            return;
        };
        let Some(entry) = seg.entry.clone() else {
            self.misbehaved(peer, ByeReason::ProtocolError, "data before entry".into());
            return;
        };
        let idx = chunk as usize;
        if idx >= entry.chunk_count() {
            self.misbehaved(peer, ByeReason::ProtocolError, "chunk out of range".into());
            return;
        }
        let duplicate = seg.has_chunk(idx);
        if let Some(dl) = self
            .segments
            .get_mut(&key)
            .and_then(|s| s.dls.iter_mut().find(|d| d.req_id == req_id && d.peer == peer))
        {
            let gap = now.saturating_sub(dl.last_progress).max(1);
            dl.last_progress = now;
            dl.next = dl.next.max(chunk + 1);
            let measured = dl.got_any;
            dl.got_any = true;
            if measured {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.rate.add(len as f64 / gap as f64, 0.3, 0.3);
                }
            }
        }
        if duplicate {
            self.stats.wasted_bytes += len;
            return;
        }
        if entry.chunk_len(idx) != Some(payload.len())
            || self.crypto.chunk_digest(&payload) != entry.chunk_hashes[idx]
        {
            self.stats.verify_failures += 1;
            self.stats.wasted_bytes += len;
            if let Some(seg) = self.segments.get_mut(&key) {
                seg.dls.retain(|d| d.peer != peer);
            }
            self.misbehaved(
                peer,
                ByeReason::BadData,
                format!("chunk {idx} of segment {} failed verification", key.1),
            );
            self.step(key);
            return;
        }
        let Some(seg) = self.segments.get_mut(&key) else { return };
        seg.put_chunk(idx, payload);
        seg.peer_bytes += len;
        if seg.first_data_at.is_none() {
            seg.first_data_at = Some(now);
        }
        self.stats.p2p_down_bytes += len;
        self.on_new_chunks(key);
    }

    // ---------------------------------------------------------------- uploading

    fn pump_subscribers(&mut self, key: SegKey) {
        if self.segments.get(&key).is_some_and(|s| !s.subscribers.is_empty()) {
            self.pump_all();
        }
    }

    /// Requests served at once across all peers.
    fn active_uploads(&self) -> usize {
        self.peers.values().map(|p| p.active_uploads()).sum()
    }

    /// A new request would wait too long here: the bytes already promised to peers and not
    /// sent yet are half a second of this client's upload (or, upload unknown, `max_uploads`
    /// requests are being served). The asker is told `Busy` and asks another source; requests
    /// are for one stripe, so a slow uploader still serves one or two of them and adds its
    /// upload to the swarm instead of holding up whole segments.
    fn upload_backlog_full(&self) -> bool {
        let active = self.active_uploads();
        let max = self.cfg.max_uploads.max(1) as usize;
        let kbps = match (self.cfg.upload_kbps, self.cfg.max_upload_kbps) {
            (0, 0) => return active >= max,
            (0, m) | (m, 0) => m,
            (a, b) => a.min(b),
        };
        if active >= 4 * max {
            return true;
        }
        // Chunks still to send (a range's end is clamped to the segment at its first pump; one
        // not pumped yet counts at most MAX_WIRE_CHUNKS).
        let mut chunks = 0u64;
        for p in self.peers.values() {
            for u in p.uploads.iter().filter(|u| u.parked_until.is_none()) {
                chunks +=
                    u.end.min(u.next.saturating_add(MAX_WIRE_CHUNKS as u32)).saturating_sub(u.next) as u64;
            }
        }
        chunks * shoal_proto::manifest::DEFAULT_CHUNK_SIZE as u64
            >= kbps as u64 * 1_000 / 8 * UPLOAD_BACKLOG_MS / 1_000
    }

    /// Bytes this client lets sit in all its DataChannel buffers together: about 150 ms of
    /// its upload. Per-channel windows alone would let twenty channels queue seconds of data
    /// on one uplink, and everything queued is late for everyone.
    fn upload_window(&self) -> u64 {
        let kbps = match (self.cfg.upload_kbps, self.cfg.max_upload_kbps) {
            (0, 0) => return 512 * 1024,
            (0, m) | (m, 0) => m,
            (a, b) => a.min(b),
        };
        (kbps as u64 * 1000 / 8 * 15 / 100).clamp(64 * 1024, 4 * self.cfg.send_window_bytes)
    }

    /// Serve every peer with pending uploads, the most urgent first: the newest segment, then
    /// the oldest request.
    fn pump_all(&mut self) {
        let mut order: Vec<(u64, Millis, PeerHandle)> = self
            .peers
            .values()
            .filter(|p| !p.uploads.is_empty())
            .map(|p| {
                let newest = p.uploads.iter().map(|u| u.key.1).max().unwrap_or(0);
                let oldest = p.uploads.iter().map(|u| u.started).min().unwrap_or(0);
                (newest, oldest, p.handle)
            })
            .collect();
        if order.is_empty() {
            return;
        }
        // Nothing can go out while the upload window is full; the next buffer report pumps.
        let queued = self.buffered_total;
        if queued >= self.upload_window() {
            return;
        }
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        // One chunk per peer per round: the peers served at once all get data as it arrives
        // (a relay feeding several neighbours lets each pass chunks on at once, rather than
        // one after the other), within the upload window.
        loop {
            let mut sent = 0;
            for &(_, _, h) in &order {
                sent += self.pump_peer_limited(h, 1);
            }
            if sent == 0 {
                break;
            }
        }
    }

    fn refill_tokens(&mut self) {
        if self.cfg.max_upload_kbps == 0 {
            return;
        }
        let rate = self.cfg.max_upload_kbps as f64 / 8.0; // bytes per ms
        let cap = (rate * 250.0).max(32_000.0);
        let dt = self.now.saturating_sub(self.tokens_at) as f64;
        self.tokens = (self.tokens + dt * rate).min(cap);
        self.tokens_at = self.now;
    }

    /// Send what can be sent to one peer: the newest segment first, chunk by chunk, within its
    /// DataChannel window, the upload rate limit and the byte budget.
    fn pump_peer(&mut self, peer: PeerHandle) {
        self.pump_peer_limited(peer, usize::MAX);
    }

    /// [`pump_peer`](Self::pump_peer), at most `limit` chunks; returns how many were sent.
    fn pump_peer_limited(&mut self, peer: PeerHandle, limit: usize) -> usize {
        let mut sent = 0;
        self.refill_tokens();
        let total = self.buffered_total;
        let global_free = self.upload_window().saturating_sub(total);
        let backlog_full =
            self.peers.get(&peer).is_some_and(|p| p.uploads.iter().any(|u| u.parked_until.is_some()))
                && self.upload_backlog_full();
        let Some(p) = self.peers.get_mut(&peer) else { return 0 };
        if p.uploads.is_empty() {
            return 0;
        }
        p.uploads.sort_by(|a, b| b.key.1.cmp(&a.key.1).then(a.started.cmp(&b.started)));
        let mut uploads = std::mem::take(&mut p.uploads);
        let mut keep = Vec::with_capacity(uploads.len());
        let mut msgs: Vec<Message> = Vec::new();
        let mut window = self.cfg.send_window_bytes.saturating_sub(p.buffered).min(global_free);
        let mut rate_blocked = false;
        for mut u in uploads.drain(..) {
            let Some(seg) = self.segments.get(&u.key) else {
                msgs.push(Message::Absent { req_id: u.req_id });
                continue;
            };
            if seg.unshareable {
                msgs.push(Message::Absent { req_id: u.req_id });
                continue;
            }
            let Some(entry) = seg.entry.clone() else {
                keep.push(u);
                continue;
            };
            let total = entry.chunk_count() as u32;
            u.end = u.end.min(total);
            if u.next >= u.end {
                msgs.push(Message::Done { req_id: u.req_id });
                continue;
            }
            if !seg.has_chunk(u.next as usize) {
                keep.push(u);
                continue;
            }
            if u.parked_until.is_some() {
                // Data exists now: it becomes an active upload unless too much is promised.
                if backlog_full {
                    self.stats.uploads_busy += 1;
                    msgs.push(Message::Busy { req_id: u.req_id, retry_ms: 200 });
                    continue;
                }
                u.parked_until = None;
            }
            if u.send_entry {
                msgs.push(Message::Entry(Box::new((*entry).clone())));
                u.send_entry = false;
            }
            while u.next < u.end && window > 0 && !rate_blocked && sent < limit {
                let Some(Some(c)) = seg.chunks.get(u.next as usize) else { break };
                let cost = c.len() as u64;
                if self.cfg.upload_budget_bytes > 0 && self.uploaded + cost > self.cfg.upload_budget_bytes {
                    rate_blocked = true;
                    break;
                }
                if self.cfg.max_upload_kbps > 0 {
                    if self.tokens < cost as f64 {
                        rate_blocked = true;
                        break;
                    }
                    self.tokens -= cost as f64;
                }
                msgs.push(Message::Data { req_id: u.req_id, chunk: u.next, payload: c.clone() });
                self.uploaded += cost;
                self.stats.p2p_up_bytes += cost;
                window = window.saturating_sub(cost + shoal_proto::wire::DATA_HEADER as u64);
                u.next += 1;
                sent += 1;
            }
            if u.next >= u.end {
                msgs.push(Message::Done { req_id: u.req_id });
            } else {
                keep.push(u);
            }
        }
        let finished: Vec<u32> = msgs
            .iter()
            .filter_map(|m| match m {
                Message::Done { req_id } | Message::Absent { req_id } | Message::Busy { req_id, .. } => {
                    Some(*req_id)
                }
                _ => None,
            })
            .collect();
        if let Some(p) = self.peers.get_mut(&peer) {
            p.uploads = keep;
        }
        for m in msgs {
            self.send(peer, m);
        }
        if !finished.is_empty() {
            for seg in self.segments.values_mut() {
                if !seg.subscribers.is_empty() {
                    seg.subscribers.retain(|&(h, r)| !(h == peer && finished.contains(&r)));
                }
            }
        }
        if rate_blocked && self.cfg.max_upload_kbps > 0 {
            let rate = self.cfg.max_upload_kbps as f64 / 8.0;
            let t = self.now + (16_000.0 / rate).ceil() as u64;
            self.wake_at(t);
        }
        sent
    }

    // ---------------------------------------------------------------- time

    fn wake_at(&mut self, t: Millis) {
        if self.wake.is_none_or(|w| t < w || w <= self.now) {
            self.wake = Some(t.max(self.now));
        }
    }

    /// Everything time-driven: deadlines, stalls, parked requests, pings, manifest retries.
    fn run_timers(&mut self) {
        let now = self.now;
        self.wake = None;
        // Peers: hello timeout, silence, pings, parked uploads.
        let handles: Vec<PeerHandle> = self.peers.keys().copied().collect();
        for h in handles {
            let Some(p) = self.peers.get_mut(&h) else { continue };
            if !p.ready && now >= p.connected_at + HELLO_TIMEOUT_MS {
                self.refuse(h, ByeReason::ProtocolError, "no hello");
                continue;
            }
            if now >= p.last_heard + self.cfg.peer_timeout_ms {
                self.out.push_back(Output::Disconnect { peer: h, reason: ByeReason::Normal });
                self.remove_peer(h);
                continue;
            }
            if p.ready && now >= p.next_ping {
                let nonce = (now as u32) ^ (h as u32);
                p.ping = Some((nonce, now));
                p.next_ping = now + self.cfg.ping_interval_ms;
                self.send(h, Message::Ping { nonce });
            }
            let Some(p) = self.peers.get_mut(&h) else { continue };
            let mut expired = Vec::new();
            p.uploads.retain(|u| {
                let gone = u.parked_until.is_some_and(|t| t <= now);
                if gone {
                    expired.push((u.req_id, u.key));
                }
                !gone
            });
            let next_ping = p.next_ping;
            let silent_at = p.last_heard + self.cfg.peer_timeout_ms;
            let parked_next = p.uploads.iter().filter_map(|u| u.parked_until).min();
            let hello_at = (!p.ready).then_some(p.connected_at + HELLO_TIMEOUT_MS);
            for (req_id, key) in expired {
                if let Some(seg) = self.segments.get_mut(&key) {
                    seg.subscribers.retain(|&(ph, r)| !(ph == h && r == req_id));
                }
                self.stats.uploads_absent += 1;
                self.send(h, Message::Absent { req_id });
            }
            self.wake_at(next_ping);
            self.wake_at(silent_at);
            if let Some(t) = parked_next {
                self.wake_at(t);
            }
            if let Some(t) = hello_at {
                self.wake_at(t);
            }
            if self.cfg.max_upload_kbps > 0 {
                self.pump_peer(h);
            }
        }
        // Manifests wanted but rate-limited.
        for r in 0..self.rends.len() {
            if self.rends[r].manifest_wanted && self.rends[r].manifest_http.is_none() {
                let due = rend_manifest_next(&self.rends[r]);
                if due <= now {
                    self.want_manifest(r as u16);
                } else {
                    self.wake_at(due);
                }
            }
        }
        // Segments: every one that is not done.
        let keys: Vec<SegKey> = self
            .segments
            .iter()
            .filter(|(_, s)| !s.complete || (s.player_wants && !s.delivered))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.step(key);
        }
        // Too few peers?
        let ready = self.ready_count() as u32;
        if self.p2p_on()
            && ready < self.cfg.min_peers
            && self.last_need_peers.is_none_or(|t| now >= t + NEED_PEERS_EVERY_MS)
        {
            self.last_need_peers = Some(now);
            self.out.push_back(Output::NeedPeers { want: self.cfg.min_peers - ready });
        }
        if self.p2p_on() {
            self.wake_at(now + NEED_PEERS_EVERY_MS);
        }
    }

    fn evict(&mut self, r: u16) {
        let Some(newest) = self.rends[r as usize].newest else { return };
        let keep = self.cfg.cache_segments as u64;
        if newest < keep {
            return;
        }
        let cutoff = newest - keep;
        let old: Vec<SegKey> = self.segments.range((r, 0)..=(r, cutoff)).map(|(k, _)| *k).collect();
        for key in old {
            let Some(seg) = self.segments.get(&key) else { continue };
            if seg.player_wants && !seg.delivered {
                continue; // the player still waits for it
            }
            let Some(seg) = self.segments.remove(&key) else { continue };
            if let Some(job) = seg.http {
                self.http.remove(&job.id);
                self.out.push_back(Output::HttpCancel { id: job.id });
            }
            for dl in seg.dls {
                if let Some(p) = self.peers.get_mut(&dl.peer) {
                    p.requests.remove(&dl.req_id);
                }
                self.send(dl.peer, Message::Cancel { req_id: dl.req_id });
            }
            for (peer, req_id) in seg.subscribers {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.uploads.retain(|u| u.req_id != req_id);
                }
                self.send(peer, Message::Absent { req_id });
            }
        }
        for p in self.peers.values_mut() {
            p.haves.retain(|&(pr, s), _| pr != r || s > cutoff);
        }
    }

    /// Milliseconds since the engine was created (for logs and tests).
    pub fn uptime(&self) -> Millis {
        self.now - self.started_at
    }
}

fn rend_manifest_next(r: &Rendition) -> Millis {
    r.manifest_last.map_or(0, |t| t + MANIFEST_MIN_INTERVAL_MS)
}

/// `base`'s directory joined with `name` (a relative URI as found in playlists).
pub fn sibling_url(base: &str, name: &str) -> String {
    if name.contains("://") {
        return name.to_owned();
    }
    let base = base.split(['?', '#']).next().unwrap_or(base);
    match base.rfind('/') {
        Some(i) => format!("{}{}", &base[..=i], name),
        None => name.to_owned(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
