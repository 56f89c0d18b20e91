//! The core task: one tokio task owns the UDP socket, every peer's str0m `Rtc` and the
//! shoal-engine, and is fed by messages (proxy, headless player, HTTP tasks, tracker, join).
//! No locks around `Rtc` or the engine: nothing else touches them.
//!
//! Loop: wait for a datagram, a message or the earliest timer (engine, every `Rtc`, announce,
//! STUN retransmit); handle it; then settle — drain the engine's outputs completely, carry
//! them out (writes to DataChannels are each followed by a drain of that `Rtc`, str0m's
//! single-mutation invariant), and feed the `Rtc` events they caused back to the engine.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_engine::{
    Config as EngineConfig, Engine, Event as EngineEvent, Identity, Input, ListedSegment, Output, PeerHandle,
    PlayerState,
};
use shoal_proto::api::JoinResponse;
use shoal_proto::tracker::{
    offer_wins, Announce, ClientMsg, ErrorCode, Nat, Position, ServerMsg, SignalTo, SwarmId,
};
use shoal_proto::wire::{Message, DATA_HEADER};
use shoal_stun::{BindingRequest, ResponseMatch};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event as RtcEvent, IceConnectionState, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cdn::{spawn_fetch, Cdn};
use crate::config::ClientConfig;
use crate::msg::{CoreMsg, RenditionInfo, Reply, TrackerEvent};
use crate::net::{parse_stun_url, HostAddrs};
use crate::signal::{first_mid, Signal};
use crate::stats::StatsSnapshot;

/// str0m's send buffer per DataChannel: above the engine's per-peer window so a write the
/// engine decided on is normally accepted; what is not waits in the connection's overflow.
const SCTP_BUFFER: usize = 1024 * 1024;
/// Largest DataChannel message accepted (the wire protocol's are ≤ 16 KiB).
const SCTP_MAX_MESSAGE: u32 = 64 * 1024;
const BUFFERED_LOW: usize = 64 * 1024;
/// How often the DataChannel buffer levels are reported to the engine at most.
const BUFFER_REPORT_EVERY: Duration = Duration::from_millis(5);
/// A peer id whose connection failed is not tried again for this long.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);
const STUN_RTO: [u64; 5] = [0, 250, 500, 1_000, 2_000];
const STUN_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The first announce waits at most this long for the server-reflexive address.
const STUN_WAIT: Duration = Duration::from_millis(1_500);
/// Candidates that arrive before their offer are kept this long, this many per peer.
const EARLY_CANDIDATES: usize = 16;
const MAX_DATAGRAMS_PER_WAKE: usize = 256;
const PLAYER_REPORT_EVERY: Duration = Duration::from_millis(250);
const STATS_EVERY: Duration = Duration::from_millis(500);

/// Player requests waiting for one segment: (waiter id, where to answer).
type Waiters = Vec<(u64, oneshot::Sender<Reply>)>;

enum Pending {
    Rtc(PeerHandle, Box<RtcEvent>),
    /// The connection broke while the engine still counts it.
    Lost(PeerHandle),
}

struct Conn {
    rtc: Rtc,
    remote: String,
    gen: u32,
    chan: Option<ChannelId>,
    offerer: bool,
    pending_offer: Option<SdpPendingOffer>,
    mid: Option<String>,
    created: Instant,
    /// The engine knows this connection (its DataChannel opened).
    open: bool,
    dead: bool,
    next_timeout: Instant,
    overflow: VecDeque<Vec<u8>>,
    overflow_bytes: usize,
    reported_buffered: u64,
    buffer_dirty: bool,
}

struct Probe {
    server: SocketAddr,
    req: BindingRequest,
    attempt: usize,
    next_at: Instant,
}

/// What the player is doing, guessed from its requests (a real player through the proxy):
/// playback starts with the first delivered segment and advances at real time while media is
/// buffered; buffer ahead = delivered media − played.
#[derive(Default)]
struct PlayerGuess {
    rendition: Option<String>,
    started: bool,
    playing: bool,
    playhead_ms: u64,
    buffer_end_ms: u64,
    last: Option<Instant>,
    next_seq: Option<u64>,
    last_delivered: Option<u64>,
}

impl PlayerGuess {
    fn advance(&mut self, now: Instant) {
        let dt = self.last.map_or(0, |l| now.saturating_duration_since(l).as_millis() as u64);
        self.last = Some(now);
        if self.playing {
            let ahead = self.buffer_end_ms.saturating_sub(self.playhead_ms);
            if dt >= ahead {
                self.playhead_ms = self.buffer_end_ms;
                self.playing = false;
            } else {
                self.playhead_ms += dt;
            }
        }
    }

    fn state(&self) -> Option<PlayerState> {
        Some(PlayerState {
            rendition: self.rendition.clone()?,
            playing: self.playing,
            buffered_ahead_ms: self.buffer_end_ms.saturating_sub(self.playhead_ms).min(u32::MAX as u64)
                as u32,
            next_seq: self.next_seq,
        })
    }
}

pub(crate) struct Core {
    cfg: ClientConfig,
    start: Instant,
    socket: Arc<UdpSocket>,
    hosts: HostAddrs,
    rx: mpsc::UnboundedReceiver<CoreMsg>,
    tx: mpsc::UnboundedSender<CoreMsg>,
    cdn: Arc<Cdn>,
    stats_tx: watch::Sender<StatsSnapshot>,
    joined_tx: watch::Sender<Option<Arc<JoinResponse>>>,
    lies: bool,
    stream: String,

    engine: Engine,
    gen: u32,
    joined: Option<JoinResponse>,
    join_task: Option<tokio::task::AbortHandle>,
    /// Joins in a row that found no live tracker (P2P off with `no_tracker`): the next one
    /// waits 5 s doubling to 60 s.
    no_tracker_joins: u32,
    http_tasks: HashMap<u64, tokio::task::AbortHandle>,
    carried: StatsSnapshot,

    renditions: Vec<RenditionInfo>,
    playlists: HashMap<String, Vec<ListedSegment>>,
    waiters: HashMap<(String, u64), Waiters>,
    guess: PlayerGuess,
    exact_player: Option<PlayerState>,
    last_player_report: Instant,

    conns: HashMap<PeerHandle, Conn>,
    by_remote: HashMap<String, PeerHandle>,
    by_addr: HashMap<SocketAddr, PeerHandle>,
    next_handle: PeerHandle,
    failed: HashMap<String, Instant>,
    banned: HashSet<String>,
    early: HashMap<String, (Instant, Vec<Candidate>)>,
    pending: VecDeque<Pending>,
    tx_queue: Vec<(SocketAddr, Vec<u8>)>,
    last_buffer_report: Instant,

    tracker: Option<mpsc::UnboundedSender<ClientMsg>>,
    tracker_url: Option<String>,
    announce_at: Option<Instant>,
    announce_interval: Duration,
    announced_rendition: Option<String>,
    want_extra: u32,

    stun_servers: Vec<String>,
    probe: Option<Probe>,
    probe_again_at: Option<Instant>,
    stun_settled_at: Option<Instant>,
    srflx: Option<SocketAddr>,

    snapshot: StatsSnapshot,
    last_stats: Instant,
    /// Something a reader waits for changed (a delivery): publish at the end of this wake.
    stats_dirty: bool,
}

pub(crate) struct CoreParts {
    pub cfg: ClientConfig,
    pub socket: UdpSocket,
    pub rx: mpsc::UnboundedReceiver<CoreMsg>,
    pub tx: mpsc::UnboundedSender<CoreMsg>,
    pub cdn: Arc<Cdn>,
    pub stats_tx: watch::Sender<StatsSnapshot>,
    pub stream: String,
    /// Every successful join, for pingback (which reports under the join's session).
    pub joined_tx: watch::Sender<Option<Arc<JoinResponse>>>,
}

fn cdn_only_engine(stream: &str, now: u64) -> Engine {
    let cfg = EngineConfig { p2p_enabled: false, ..EngineConfig::default() };
    Engine::new(cfg, Identity { peer_id: "local".into(), stream: stream.to_owned() }, None, now)
}

/// Engine defaults, then the API's overrides, then the app's.
pub(crate) fn engine_config(
    api: &serde_json::Map<String, serde_json::Value>,
    local: &serde_json::Map<String, serde_json::Value>,
) -> Result<EngineConfig, String> {
    let mut v = serde_json::to_value(EngineConfig::default()).map_err(|e| e.to_string())?;
    if let Some(m) = v.as_object_mut() {
        for (k, x) in api.iter().chain(local.iter()) {
            m.insert(k.clone(), x.clone());
        }
    }
    let cfg: EngineConfig = serde_json::from_value(v).map_err(|e| format!("engine overrides: {e}"))?;
    cfg.validate()?;
    Ok(cfg)
}

impl Core {
    pub(crate) fn new(p: CoreParts) -> anyhow::Result<Core> {
        let local = p.socket.local_addr()?;
        let hosts = HostAddrs::new(local);
        let start = Instant::now();
        let lies = p.cfg.lies();
        if lies {
            tracing::warn!("SHOAL_TEST_LIE: this client corrupts every chunk it uploads (test only)");
        }
        let stun_servers = p.cfg.stun.clone();
        let engine = cdn_only_engine(&p.stream, 0);
        let mut snapshot = StatsSnapshot { stream: p.stream.clone(), ..Default::default() };
        snapshot.local_candidates = hosts.addrs().iter().map(|a| a.to_string()).collect();
        Ok(Core {
            cfg: p.cfg,
            start,
            socket: Arc::new(p.socket),
            hosts,
            rx: p.rx,
            tx: p.tx,
            cdn: p.cdn,
            stats_tx: p.stats_tx,
            joined_tx: p.joined_tx,
            lies,
            stream: p.stream,
            engine,
            gen: 0,
            joined: None,
            join_task: None,
            no_tracker_joins: 0,
            http_tasks: HashMap::new(),
            carried: StatsSnapshot::default(),
            renditions: Vec::new(),
            playlists: HashMap::new(),
            waiters: HashMap::new(),
            guess: PlayerGuess::default(),
            exact_player: None,
            last_player_report: start,
            conns: HashMap::new(),
            by_remote: HashMap::new(),
            by_addr: HashMap::new(),
            next_handle: 1,
            failed: HashMap::new(),
            banned: HashSet::new(),
            early: HashMap::new(),
            pending: VecDeque::new(),
            tx_queue: Vec::new(),
            last_buffer_report: start,
            tracker: None,
            tracker_url: None,
            announce_at: None,
            announce_interval: Duration::from_secs(15),
            announced_rendition: None,
            want_extra: 0,
            stun_servers,
            probe: None,
            probe_again_at: None,
            stun_settled_at: None,
            srflx: None,
            snapshot,
            last_stats: start,
            stats_dirty: true,
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn instant_of(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    pub(crate) async fn run(mut self) -> StatsSnapshot {
        self.publish_stats();
        let apis = self.cfg.api_urls();
        if !apis.is_empty() {
            self.join_task = Some(crate::join::spawn(
                self.cdn.http.clone(),
                apis,
                self.stream.clone(),
                self.cfg.token.clone(),
                self.tx.clone(),
            ));
        }
        if !self.stun_servers.is_empty() {
            self.start_probe().await;
        }
        let socket = Arc::clone(&self.socket);
        let mut buf = vec![0u8; 2048];
        loop {
            let deadline = tokio::time::Instant::from_std(self.next_deadline());
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    let now = Instant::now();
                    match r {
                        Ok((n, from)) => self.on_datagram(&buf[..n], from, now),
                        Err(e) => tracing::debug!("udp recv: {e}"),
                    }
                    for _ in 0..MAX_DATAGRAMS_PER_WAKE {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, from)) => self.on_datagram(&buf[..n], from, now),
                            Err(_) => break,
                        }
                    }
                }
                m = self.rx.recv() => match m {
                    Some(CoreMsg::Stop(reply)) => {
                        self.shutdown().await;
                        let _ = reply.send(self.snapshot.clone());
                        return self.snapshot.clone();
                    }
                    Some(m) => self.on_msg(m).await,
                    None => {
                        self.shutdown().await;
                        return self.snapshot.clone();
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {}
            }
            self.on_time().await;
            self.settle();
            self.flush_tx().await;
        }
    }

    async fn shutdown(&mut self) {
        let handles: Vec<PeerHandle> = self.conns.keys().copied().collect();
        for h in handles {
            self.close_conn(h, true, false);
        }
        self.flush_tx().await;
        for (_, t) in self.http_tasks.drain() {
            t.abort();
        }
        if let Some(j) = self.join_task.take() {
            j.abort();
        }
        self.tracker = None;
        self.publish_stats();
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut t = now + Duration::from_millis(250);
        if let Some(e) = self.engine.poll_timeout() {
            t = t.min(self.instant_of(e));
        }
        for c in self.conns.values() {
            t = t.min(c.next_timeout);
            if c.buffer_dirty {
                t = t.min(self.last_buffer_report + BUFFER_REPORT_EVERY);
            }
        }
        if let Some(a) = self.announce_at {
            t = t.min(a);
        }
        if let Some(p) = &self.probe {
            t = t.min(p.next_at);
        }
        t.max(now)
    }

    // ------------------------------------------------------------------ datagrams

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr, now: Instant) {
        if let Some(p) = &self.probe {
            if from == p.server {
                match p.req.match_response(data) {
                    ResponseMatch::Mapped(a) => {
                        self.on_srflx(a);
                        return;
                    }
                    ResponseMatch::Error { code, reason } => {
                        tracing::warn!("STUN error {code} {reason}");
                        self.probe = None;
                        self.stun_settled_at.get_or_insert(now);
                        return;
                    }
                    ResponseMatch::Invalid => return,
                    ResponseMatch::OtherStun | ResponseMatch::NotStun => {}
                }
            }
        }
        let Ok(contents) = DatagramRecv::try_from(data) else { return };
        let destination = self.hosts.destination_for(from);
        let input =
            str0m::Input::Receive(now, Receive { proto: Protocol::Udp, source: from, destination, contents });
        let cached = self
            .by_addr
            .get(&from)
            .copied()
            .filter(|h| self.conns.get(h).is_some_and(|c| c.rtc.accepts(&input)));
        let handle =
            cached.or_else(|| self.conns.iter().find(|(_, c)| c.rtc.accepts(&input)).map(|(h, _)| *h));
        let Some(h) = handle else { return };
        self.by_addr.insert(from, h);
        let Some(c) = self.conns.get_mut(&h) else { return };
        if let Err(e) = c.rtc.handle_input(input) {
            tracing::debug!(peer = %c.remote, "rtc input: {e}");
            c.dead = true;
        }
        Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
    }

    /// Drain one `Rtc` to its timeout: transmits are queued for the socket, events for
    /// [`Core::settle`].
    fn drain_rtc(
        h: PeerHandle,
        c: &mut Conn,
        txq: &mut Vec<(SocketAddr, Vec<u8>)>,
        pending: &mut VecDeque<Pending>,
    ) {
        for _ in 0..100_000 {
            match c.rtc.poll_output() {
                Ok(str0m::Output::Timeout(t)) => {
                    c.next_timeout = t;
                    return;
                }
                Ok(str0m::Output::Transmit(t)) => txq.push((t.destination, t.contents.to_vec())),
                Ok(str0m::Output::Event(e)) => pending.push_back(Pending::Rtc(h, Box::new(e))),
                Err(e) => {
                    tracing::debug!(peer = %c.remote, "rtc: {e}");
                    c.dead = true;
                    c.next_timeout = Instant::now() + Duration::from_secs(3600);
                    return;
                }
            }
        }
        c.next_timeout = Instant::now();
    }

    async fn flush_tx(&mut self) {
        if self.tx_queue.is_empty() {
            return;
        }
        let q = std::mem::take(&mut self.tx_queue);
        for (to, data) in &q {
            if let Err(e) = self.socket.send_to(data, *to).await {
                tracing::trace!(%to, "udp send: {e}");
            }
        }
        // Keep the allocation.
        let mut q = q;
        q.clear();
        self.tx_queue = q;
    }

    // ------------------------------------------------------------------ time

    async fn on_time(&mut self) {
        let now = Instant::now();
        // Every Rtc that is due.
        let due: Vec<PeerHandle> =
            self.conns.iter().filter(|(_, c)| c.next_timeout <= now).map(|(h, _)| *h).collect();
        for h in due {
            if let Some(c) = self.conns.get_mut(&h) {
                if let Err(e) = c.rtc.handle_input(str0m::Input::Timeout(now)) {
                    tracing::debug!(peer = %c.remote, "rtc timeout: {e}");
                    c.dead = true;
                }
                Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
            }
        }
        self.settle();
        // Connections that never opened, or died.
        let timeout = Duration::from_millis(self.cfg.connect_timeout_ms);
        let stale: Vec<(PeerHandle, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.dead || !c.rtc.is_alive() || (!c.open && now.duration_since(c.created) > timeout)
            })
            .map(|(h, c)| (*h, !c.open && !c.dead && c.rtc.is_alive()))
            .collect();
        for (h, never_opened) in stale {
            if never_opened {
                if let Some(c) = self.conns.get(&h) {
                    tracing::info!(peer = %c.remote, "connection did not open in time");
                    self.failed.insert(c.remote.clone(), now);
                    self.snapshot.connect_failures += 1;
                }
            }
            self.close_conn(h, true, never_opened);
        }
        // Buffer levels.
        if now >= self.last_buffer_report + BUFFER_REPORT_EVERY {
            self.last_buffer_report = now;
            self.report_buffers(false);
        }
        // Engine.
        if self.engine.poll_timeout().is_some_and(|t| t <= self.now_ms()) {
            self.feed(Input::Tick);
        }
        // Player state.
        if now >= self.last_player_report + PLAYER_REPORT_EVERY {
            self.report_player();
        }
        // STUN.
        self.stun_tick(now).await;
        // Tracker.
        if self.announce_at.is_some_and(|a| a <= now) {
            self.announce();
        }
        if self.stats_dirty || now >= self.last_stats + STATS_EVERY {
            self.publish_stats();
        }
    }

    // ------------------------------------------------------------------ engine

    fn feed(&mut self, input: Input) {
        let now = self.now_ms();
        self.engine.handle(input, now);
        self.drain_engine();
    }

    fn drain_engine(&mut self) {
        for _ in 0..1_000_000 {
            let Some(out) = self.engine.poll_output() else { return };
            self.carry_out(out);
        }
    }

    /// Feed the `Rtc` events and lost connections caused so far back to the engine.
    fn settle(&mut self) {
        for _ in 0..1_000_000 {
            let Some(p) = self.pending.pop_front() else { return };
            match p {
                Pending::Rtc(h, ev) => self.on_rtc_event(h, *ev),
                Pending::Lost(h) => self.feed(Input::PeerDisconnected { peer: h }),
            }
        }
    }

    fn carry_out(&mut self, out: Output) {
        match out {
            Output::Send { peer, msg } => self.send_to_peer(peer, msg),
            Output::Disconnect { peer, reason } => {
                tracing::debug!(peer, ?reason, "engine disconnects peer");
                self.close_conn(peer, false, true);
            }
            Output::HttpFetch { id, url, range, .. } => {
                let t = spawn_fetch(Arc::clone(&self.cdn), url, range, self.gen, id, self.tx.clone());
                self.http_tasks.insert(id, t);
            }
            Output::HttpCancel { id } => {
                if let Some(t) = self.http_tasks.remove(&id) {
                    t.abort();
                }
            }
            Output::Deliver(d) => {
                self.stats_dirty = true;
                if self.exact_player.is_none()
                    && self.guess.rendition.as_deref() == Some(d.rendition.as_str())
                {
                    let now = Instant::now();
                    self.guess.advance(now);
                    let dur = self
                        .playlists
                        .get(&d.rendition)
                        .and_then(|p| p.iter().find(|s| s.seq == d.seq))
                        .map_or(2_000, |s| s.duration_ms as u64);
                    if self.guess.last_delivered.is_none_or(|l| d.seq > l) {
                        self.guess.last_delivered = Some(d.seq);
                        self.guess.buffer_end_ms += dur;
                        self.guess.started = true;
                        if self.guess.buffer_end_ms > self.guess.playhead_ms {
                            self.guess.playing = true;
                        }
                    }
                }
                if let Some(ws) = self.waiters.remove(&(d.rendition.clone(), d.seq)) {
                    for (_, w) in ws {
                        let _ = w.send(Reply::Delivered(d.clone()));
                    }
                }
            }
            Output::DeliverFailed { rendition, seq, reason } => {
                if let Some(ws) = self.waiters.remove(&(rendition, seq)) {
                    for (_, w) in ws {
                        let _ = w.send(Reply::Failed(reason.clone()));
                    }
                }
            }
            Output::NeedPeers { want } => {
                self.want_extra = want;
                if self.announce_at.is_none_or(|a| a > Instant::now()) && self.tracker_url.is_some() {
                    self.announce_at = Some(Instant::now());
                }
            }
            Output::Event(e) => match e {
                EngineEvent::PeerMisbehaved { peer_id, reason } => {
                    tracing::warn!(peer = %peer_id, "peer dropped: {reason}");
                    if !peer_id.is_empty() && self.banned.insert(peer_id.clone()) {
                        self.snapshot.misbehaving_peers.push(peer_id);
                    }
                }
                other => tracing::debug!("engine event: {other:?}"),
            },
        }
    }

    fn send_to_peer(&mut self, peer: PeerHandle, msg: Message) {
        let Some(c) = self.conns.get_mut(&peer) else { return };
        let Some(cid) = c.chan else { return };
        let mut bytes = match msg.encode() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("engine produced an unencodable message: {e}");
                return;
            }
        };
        if self.lies && matches!(msg, Message::Data { .. }) && bytes.len() > DATA_HEADER {
            bytes[DATA_HEADER] ^= 0xff;
        }
        c.buffer_dirty = true;
        if !c.overflow.is_empty() {
            c.overflow_bytes += bytes.len();
            c.overflow.push_back(bytes);
            return;
        }
        let accepted = match c.rtc.channel(cid) {
            Some(mut ch) => ch.write(true, &bytes),
            None => Ok(false),
        };
        match accepted {
            Ok(true) => {}
            Ok(false) => {
                c.overflow_bytes += bytes.len();
                c.overflow.push_back(bytes);
            }
            Err(e) => {
                tracing::debug!(peer = %c.remote, "channel write: {e}");
                c.dead = true;
            }
        }
        Self::drain_rtc(peer, c, &mut self.tx_queue, &mut self.pending);
    }

    /// Move queued messages into the DataChannel as far as it takes them.
    fn flush_overflow(&mut self, h: PeerHandle) {
        let Some(c) = self.conns.get_mut(&h) else { return };
        let Some(cid) = c.chan else { return };
        let mut wrote = false;
        while let Some(front) = c.overflow.front() {
            let ok = match c.rtc.channel(cid) {
                Some(mut ch) => ch.write(true, front).unwrap_or(false),
                None => false,
            };
            // A handle was taken (a mutation): drain before the next one.
            Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
            if !ok {
                break;
            }
            wrote = true;
            if let Some(b) = c.overflow.pop_front() {
                c.overflow_bytes -= b.len();
            }
        }
        if wrote {
            c.buffer_dirty = true;
        }
    }

    /// Tell the engine how much waits in each DataChannel (str0m's buffer plus our overflow).
    fn report_buffers(&mut self, force: bool) {
        let handles: Vec<PeerHandle> =
            self.conns.iter().filter(|(_, c)| c.open && (c.buffer_dirty || force)).map(|(h, _)| *h).collect();
        for h in handles {
            self.flush_overflow(h);
            let Some(c) = self.conns.get_mut(&h) else { continue };
            let Some(cid) = c.chan else { continue };
            let sctp = c.rtc.channel(cid).map_or(0, |mut ch| ch.buffered_amount());
            Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
            let level = (sctp + c.overflow_bytes) as u64;
            c.buffer_dirty = level > 0;
            if level != c.reported_buffered || level == 0 {
                c.reported_buffered = level;
                self.feed(Input::PeerBuffered { peer: h, bytes: level });
            }
        }
    }

    fn report_player(&mut self) {
        let now = Instant::now();
        self.last_player_report = now;
        let state = match &self.exact_player {
            Some(s) => Some(s.clone()),
            None => {
                self.guess.advance(now);
                self.guess.state()
            }
        };
        if let Some(s) = state {
            self.feed(Input::Player(s));
        }
    }

    // ------------------------------------------------------------------ Rtc events

    fn on_rtc_event(&mut self, h: PeerHandle, ev: RtcEvent) {
        match ev {
            RtcEvent::ChannelOpen(cid, label) => {
                let Some(c) = self.conns.get_mut(&h) else { return };
                if c.gen != self.gen || c.open {
                    return;
                }
                tracing::info!(peer = %c.remote, %label, "data channel open");
                c.chan = Some(cid);
                c.open = true;
                if let Some(mut ch) = c.rtc.channel(cid) {
                    ch.set_buffered_amount_low_threshold(BUFFERED_LOW);
                }
                Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
                self.snapshot.connects_opened += 1;
                self.failed.remove(&self.conns[&h].remote);
                self.feed(Input::PeerConnected { peer: h });
            }
            RtcEvent::ChannelData(d)
                if self.conns.get(&h).is_some_and(|c| c.open && Some(d.id) == c.chan) =>
            {
                self.feed(Input::PeerBytes { peer: h, bytes: Bytes::from(d.data) });
            }
            RtcEvent::ChannelBufferedAmountLow(_) => {
                if let Some(c) = self.conns.get_mut(&h) {
                    c.buffer_dirty = true;
                }
            }
            RtcEvent::ChannelClose(_) | RtcEvent::Closed => self.close_conn(h, true, false),
            RtcEvent::IceConnectionStateChange(s) => {
                if let Some(c) = self.conns.get(&h) {
                    tracing::debug!(peer = %c.remote, "ice {s:?}");
                    if s == IceConnectionState::Disconnected && !c.open {
                        // Checks are still running; the connect timeout decides.
                    }
                }
            }
            _ => {}
        }
    }

    /// Forget a connection. `notify` tells the engine (when it knew it); `bye` also tells the
    /// remote through the tracker (for connections that never opened).
    fn close_conn(&mut self, h: PeerHandle, notify: bool, bye: bool) {
        let Some(mut c) = self.conns.remove(&h) else { return };
        if self.by_remote.get(&c.remote) == Some(&h) {
            self.by_remote.remove(&c.remote);
        }
        self.by_addr.retain(|_, v| *v != h);
        if !c.dead && c.rtc.is_alive() {
            let _ = c.rtc.close();
            let mut ignored = VecDeque::new();
            Self::drain_rtc(h, &mut c, &mut self.tx_queue, &mut ignored);
        }
        if bye && !c.open {
            self.signal(&c.remote, &Signal::Bye);
        }
        if notify && c.open && c.gen == self.gen {
            self.pending.push_back(Pending::Lost(h));
        }
    }

    // ------------------------------------------------------------------ signaling

    fn signal(&mut self, to: &str, s: &Signal) {
        if let Some(t) = &self.tracker {
            let _ = t.send(ClientMsg::Signal(SignalTo { to: to.to_owned(), payload: s.to_raw() }));
        }
    }

    fn local_candidates(&self) -> Vec<Candidate> {
        let mut v: Vec<Candidate> =
            self.hosts.addrs().into_iter().filter_map(|a| Candidate::host(a, "udp").ok()).collect();
        if let Some(c) = self.srflx_candidate() {
            v.push(c);
        }
        v
    }

    fn srflx_candidate(&self) -> Option<Candidate> {
        let s = self.srflx?;
        if self.hosts.addrs().contains(&s) {
            return None;
        }
        let server = self.probe.as_ref().map(|p| p.server).unwrap_or(s);
        Candidate::server_reflexive(s, self.hosts.base_for(server), "udp").ok()
    }

    fn new_conn(&mut self, remote: &str, offerer: bool) -> PeerHandle {
        let now = Instant::now();
        let rtc = RtcConfig::new()
            .set_sctp_max_buffered_amount(SCTP_BUFFER)
            .set_sctp_max_message_size(SCTP_MAX_MESSAGE)
            .build(now);
        let cands = self.local_candidates();
        let h = self.next_handle;
        self.next_handle += 1;
        let conn = Conn {
            rtc,
            remote: remote.to_owned(),
            gen: self.gen,
            chan: None,
            offerer,
            pending_offer: None,
            mid: None,
            created: now,
            open: false,
            dead: false,
            next_timeout: now,
            overflow: VecDeque::new(),
            overflow_bytes: 0,
            reported_buffered: 0,
            buffer_dirty: false,
        };
        self.conns.insert(h, conn);
        self.by_remote.insert(remote.to_owned(), h);
        if let Some(c) = self.conns.get_mut(&h) {
            // One mutation, one drain (str0m's invariant), also for candidates.
            for cand in cands {
                c.rtc.add_local_candidate(cand);
                Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
            }
        }
        self.snapshot.connect_attempts += 1;
        h
    }

    /// Give a connection's ICE agent its first clock tick. str0m's agent reports no timeout
    /// until it has been handed one, and after an SDP exchange nothing else hands it one before
    /// a packet arrives: an answerer behind a NAT would never send its own checks, so its NAT
    /// would never open to the offerer's. (Feeding a timeout is always allowed.)
    fn wake_ice(&mut self, h: PeerHandle) {
        let Some(c) = self.conns.get_mut(&h) else { return };
        if let Err(e) = c.rtc.handle_input(str0m::Input::Timeout(Instant::now())) {
            tracing::debug!(peer = %c.remote, "rtc timeout: {e}");
            c.dead = true;
        }
        Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
    }

    fn connect_to(&mut self, remote: &str) {
        let h = self.new_conn(remote, true);
        let Some(c) = self.conns.get_mut(&h) else { return };
        let mut api = c.rtc.sdp_api();
        api.add_channel("shoal".into());
        let Some((offer, pending)) = api.apply() else {
            c.dead = true;
            return;
        };
        let sdp = offer.to_sdp_string();
        c.mid = first_mid(&sdp);
        c.pending_offer = Some(pending);
        Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
        self.wake_ice(h);
        tracing::debug!(peer = %remote, "offering");
        self.signal(remote, &Signal::Offer { sdp });
    }

    fn room(&self) -> u32 {
        self.cfg.max_peers.saturating_sub(self.conns.len() as u32)
    }

    fn may_connect(&self, remote: &str) -> bool {
        let me = self.joined.as_ref().map(|j| j.peer_id.as_str()).unwrap_or("");
        remote != me
            && !self.banned.contains(remote)
            && !self.by_remote.contains_key(remote)
            && self.failed.get(remote).is_none_or(|t| t.elapsed() > RETRY_FAILED_AFTER)
    }

    fn on_signal(&mut self, from: &str, raw: &str) {
        if self.banned.contains(from) || !self.p2p_on() {
            return;
        }
        let sig = match Signal::parse(raw) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer = %from, "{e}");
                return;
            }
        };
        let me = self.joined.as_ref().map(|j| j.peer_id.clone()).unwrap_or_default();
        match sig {
            Signal::Offer { sdp } => {
                let Ok(offer) = SdpOffer::from_sdp_string(&sdp) else {
                    tracing::debug!(peer = %from, "unparsable offer");
                    return;
                };
                if let Some(&h) = self.by_remote.get(from) {
                    let ours_pending =
                        self.conns.get(&h).is_some_and(|c| c.offerer && c.pending_offer.is_some());
                    if ours_pending && offer_wins(&me, from) {
                        return; // glare: our offer wins, theirs is dropped
                    }
                    self.close_conn(h, true, false);
                }
                if self.room() == 0 {
                    self.signal(from, &Signal::Bye);
                    return;
                }
                let h = self.new_conn(from, false);
                let Some(c) = self.conns.get_mut(&h) else { return };
                let answer = match c.rtc.sdp_api().accept_offer(offer) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(peer = %from, "offer refused: {e}");
                        c.dead = true;
                        return;
                    }
                };
                let sdp = answer.to_sdp_string();
                c.mid = first_mid(&sdp);
                Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
                self.signal(from, &Signal::Answer { sdp });
                self.wake_ice(h);
                self.apply_early(from, h);
            }
            Signal::Answer { sdp } => {
                let Some(&h) = self.by_remote.get(from) else { return };
                let Some(c) = self.conns.get_mut(&h) else { return };
                let Some(pending) = c.pending_offer.take() else { return };
                let Ok(answer) = SdpAnswer::from_sdp_string(&sdp) else {
                    c.dead = true;
                    return;
                };
                if let Err(e) = c.rtc.sdp_api().accept_answer(pending, answer) {
                    tracing::debug!(peer = %from, "answer refused: {e}");
                    c.dead = true;
                }
                Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
                self.wake_ice(h);
                self.apply_early(from, h);
            }
            Signal::Candidate { candidate, .. } => {
                let text = candidate.trim().trim_start_matches("a=");
                if text.is_empty() {
                    return;
                }
                let Ok(cand) = Candidate::from_sdp_string(text) else {
                    tracing::debug!(peer = %from, "ignoring candidate {text:?}");
                    return;
                };
                match self.by_remote.get(from).copied() {
                    Some(h) if self.conns.get(&h).is_some_and(|c| c.pending_offer.is_none()) => {
                        if let Some(c) = self.conns.get_mut(&h) {
                            c.rtc.add_remote_candidate(cand);
                            Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
                        }
                    }
                    _ => {
                        if self.early.len() < 64 || self.early.contains_key(from) {
                            let e = self
                                .early
                                .entry(from.to_owned())
                                .or_insert_with(|| (Instant::now(), Vec::new()));
                            if e.1.len() < EARLY_CANDIDATES {
                                e.1.push(cand);
                            }
                        }
                    }
                }
            }
            Signal::Bye => {
                if let Some(&h) = self.by_remote.get(from) {
                    if self.conns.get(&h).is_some_and(|c| !c.open) {
                        self.failed.insert(from.to_owned(), Instant::now());
                    }
                    self.close_conn(h, true, false);
                }
            }
        }
    }

    fn apply_early(&mut self, from: &str, h: PeerHandle) {
        let Some((at, cands)) = self.early.remove(from) else { return };
        if at.elapsed() > Duration::from_secs(20) {
            return;
        }
        let Some(c) = self.conns.get_mut(&h) else { return };
        for cand in cands {
            c.rtc.add_remote_candidate(cand);
            Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
        }
    }

    // ------------------------------------------------------------------ STUN

    async fn start_probe(&mut self) {
        self.probe = None;
        for url in self.stun_servers.clone() {
            let Some((host, port)) = parse_stun_url(&url) else { continue };
            let addr = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => Some(SocketAddr::new(ip, port)),
                Err(_) => match tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::lookup_host((host.as_str(), port)),
                )
                .await
                {
                    Ok(Ok(mut it)) => it.find(|a| a.is_ipv4()),
                    _ => None,
                },
            };
            if let Some(server) = addr {
                self.probe =
                    Some(Probe { server, req: BindingRequest::new(), attempt: 0, next_at: Instant::now() });
                return;
            }
        }
        self.stun_settled_at.get_or_insert(Instant::now());
    }

    async fn stun_tick(&mut self, now: Instant) {
        if self.probe_again_at.is_some_and(|t| t <= now) && self.srflx.is_none() {
            self.probe_again_at = None;
            self.start_probe().await;
        }
        let Some(p) = &mut self.probe else { return };
        if p.next_at > now {
            return;
        }
        if self.srflx.is_some() {
            return;
        }
        if p.attempt >= STUN_RTO.len() {
            tracing::info!(server = %p.server, "no STUN answer: no server-reflexive candidate for now");
            self.probe = None;
            self.probe_again_at = Some(now + STUN_RETRY_AFTER);
            self.stun_settled_at.get_or_insert(now);
            return;
        }
        let server = p.server;
        let bytes = p.req.bytes().to_vec();
        p.attempt += 1;
        p.next_at = now + Duration::from_millis(STUN_RTO.get(p.attempt).copied().unwrap_or(3_000).max(250));
        if let Err(e) = self.socket.send_to(&bytes, server).await {
            tracing::debug!("STUN send: {e}");
        }
    }

    fn on_srflx(&mut self, addr: SocketAddr) {
        let first = self.srflx.is_none();
        self.srflx = Some(addr);
        if let Some(p) = &mut self.probe {
            p.next_at = Instant::now() + Duration::from_secs(3600);
        }
        self.stun_settled_at.get_or_insert(Instant::now());
        self.snapshot.srflx = addr.to_string();
        tracing::info!(%addr, "server-reflexive address");
        if !first {
            return;
        }
        let Some(cand) = self.srflx_candidate() else { return };
        let handles: Vec<PeerHandle> = self.conns.keys().copied().collect();
        for h in handles {
            let Some(c) = self.conns.get_mut(&h) else { continue };
            let added = c.rtc.add_local_candidate(cand.clone()).map(|c| c.to_sdp_string());
            Self::drain_rtc(h, c, &mut self.tx_queue, &mut self.pending);
            if let Some(text) = added {
                let (remote, mid) = (c.remote.clone(), c.mid.clone());
                self.signal(&remote, &Signal::Candidate { candidate: text, mid });
            }
        }
        if self.announce_at.is_none() && self.tracker_url.is_some() {
            self.announce_at = Some(Instant::now());
        }
    }

    fn nat(&self) -> Nat {
        match self.srflx {
            Some(s) if self.hosts.addrs().contains(&s) => Nat::Open,
            _ => Nat::Unknown,
        }
    }

    // ------------------------------------------------------------------ tracker

    fn p2p_on(&self) -> bool {
        self.gen > 0 && self.engine.config().p2p_enabled
    }

    fn active_rendition(&self) -> Option<String> {
        self.exact_player.as_ref().map(|p| p.rendition.clone()).or_else(|| self.guess.rendition.clone())
    }

    fn announce(&mut self) {
        self.announce_at = None;
        let (Some(t), Some(j)) = (&self.tracker, &self.joined) else { return };
        if self.tracker_url.is_none() || !self.p2p_on() {
            return;
        }
        let Some(rendition) = self.active_rendition() else {
            self.announce_at = Some(Instant::now() + Duration::from_millis(500));
            return;
        };
        // Offers made before STUN answered would lack the server-reflexive candidate.
        let stun_wait_over = self.stun_settled_at.is_some()
            || self.probe.is_none()
            || self.start.elapsed() > STUN_WAIT + Duration::from_secs(1);
        if !stun_wait_over {
            self.announce_at = Some(Instant::now() + Duration::from_millis(100));
            return;
        }
        let open: Vec<String> = self.conns.values().filter(|c| c.open).map(|c| c.remote.clone()).collect();
        let wanted = self.engine.config().min_peers.max(self.want_extra);
        let want = if (open.len() as u32) < wanted || self.want_extra > 0 { self.room() } else { 0 };
        self.want_extra = 0;
        let p = self.exact_player.clone().or_else(|| self.guess.state());
        let cfg = self.engine.config();
        let msg = ClientMsg::Announce(Announce {
            swarm: SwarmId::new(self.stream.clone(), rendition.clone()),
            peer_id: j.peer_id.clone(),
            ticket: j.ticket.clone(),
            position: Position {
                seq: self.guess.last_delivered.or(p.as_ref().and_then(|p| p.next_seq)).unwrap_or(0),
                buffer_ms: p.map_or(0, |p| p.buffered_ahead_ms),
            },
            upload_kbps: if cfg.consume_only { 0 } else { cfg.upload_kbps.max(1) },
            nat: self.nat(),
            connected: open,
            want,
            locality: None,
        });
        let _ = t.send(msg);
        self.announced_rendition = Some(rendition);
        self.announce_at = Some(Instant::now() + self.announce_interval);
    }

    fn on_tracker(&mut self, ev: TrackerEvent) {
        match ev {
            TrackerEvent::Connected { url } => {
                self.snapshot.tracker = url.clone();
                self.tracker_url = Some(url);
                self.announce_at = Some(Instant::now());
            }
            TrackerEvent::Disconnected => {
                self.snapshot.tracker.clear();
                self.tracker_url = None;
                self.announce_at = None;
            }
            TrackerEvent::Msg(m) => match *m {
                ServerMsg::Peers(p) => {
                    self.announce_interval =
                        Duration::from_millis((p.interval_ms * 4 / 5).clamp(1_000, 60_000));
                    self.announce_at = Some(Instant::now() + self.announce_interval);
                    self.feed(Input::SwarmSize(p.swarm_size));
                    for c in p.candidates {
                        if self.room() == 0 {
                            break;
                        }
                        if self.may_connect(&c.peer_id) && shoal_proto::ids::valid_name(&c.peer_id) {
                            self.connect_to(&c.peer_id);
                        }
                    }
                }
                ServerMsg::Signal(s) => self.on_signal(&s.from, s.payload.get()),
                ServerMsg::Pong => {}
                ServerMsg::Error(e) => {
                    tracing::warn!(code = e.code.as_str(), fatal = e.fatal, "tracker: {}", e.reason);
                    if e.code == ErrorCode::Unauthorized {
                        self.rejoin();
                    }
                }
            },
        }
    }

    fn rejoin(&mut self) {
        if self.join_task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let mut apis = self.cfg.api_urls();
        if apis.is_empty() {
            return;
        }
        if let Some(j) = &self.joined {
            apis.extend(j.api.iter().filter(|a| !apis.contains(a)).cloned().collect::<Vec<_>>());
        }
        self.join_task = Some(crate::join::spawn(
            self.cdn.http.clone(),
            apis,
            self.stream.clone(),
            self.cfg.token.clone(),
            self.tx.clone(),
        ));
    }

    /// A join succeeded: switch to an engine with this identity and the origin's key, connect
    /// to the tracker, probe STUN. In-flight player requests move to the new engine.
    async fn on_joined(&mut self, resp: JoinResponse) {
        self.joined_tx.send_replace(Some(Arc::new(resp.clone())));
        tracing::info!(peer_id = %resp.peer_id, p2p = resp.p2p, trackers = ?resp.trackers, "joined");
        self.cdn.add_bases(&resp.cdn);
        self.snapshot.joined = true;
        self.snapshot.peer_id = resp.peer_id.clone();
        self.snapshot.origin_public_key = resp.origin_public_key.clone();
        let key = if resp.p2p {
            shoal_proto::manifest::verifying_key_from_b64(&resp.origin_public_key).ok()
        } else {
            None
        };
        let ecfg = match engine_config(&resp.engine, &self.cfg.engine) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{e}; using the engine defaults");
                EngineConfig::default()
            }
        };
        if key.is_none() {
            tracing::info!(reason = ?resp.p2p_reason, "P2P is off for this session: CDN only");
            // No tracker is live in the cluster right now (all of P2P down): a transient state,
            // unlike a policy's "no". Join again later; the CDN plays meanwhile.
            let retry = resp.p2p_reason.as_deref() == Some("no_tracker") && !self.snapshot.p2p;
            let mut apis = self.cfg.api_urls();
            apis.extend(resp.api.iter().filter(|a| !apis.contains(a)).cloned().collect::<Vec<_>>());
            self.joined = Some(resp);
            if retry && !apis.is_empty() {
                let delay =
                    Duration::from_secs(5 << self.no_tracker_joins.min(4)).min(Duration::from_secs(60));
                self.no_tracker_joins += 1;
                tracing::info!("no tracker is live: joining again in {delay:?}");
                self.join_task = Some(crate::join::spawn_after(
                    delay,
                    self.cdn.http.clone(),
                    apis,
                    self.stream.clone(),
                    self.cfg.token.clone(),
                    self.tx.clone(),
                ));
            }
            return;
        }
        self.no_tracker_joins = 0;
        self.snapshot.p2p = true;
        // Close the previous engine's world.
        let handles: Vec<PeerHandle> = self.conns.keys().copied().collect();
        for h in handles {
            self.close_conn(h, false, false);
        }
        self.pending.clear();
        for (_, t) in self.http_tasks.drain() {
            t.abort();
        }
        let mut prev = StatsSnapshot::default();
        prev.fill_engine(self.engine.stats());
        self.carried.add_carried(&prev);
        self.gen += 1;
        let now = self.now_ms();
        self.engine = Engine::new(
            ecfg,
            Identity { peer_id: resp.peer_id.clone(), stream: self.stream.clone() },
            key,
            now,
        );
        for r in self.renditions.clone() {
            self.feed(Input::Rendition { name: r.name, playlist_url: r.url, bandwidth_bps: r.bandwidth });
        }
        for (rendition, segments) in self.playlists.clone() {
            self.feed(Input::Playlist { rendition, segments });
        }
        self.report_player();
        let keys: Vec<(String, u64)> = self.waiters.keys().cloned().collect();
        for (rendition, seq) in keys {
            self.feed(Input::PlayerRequest { rendition, seq });
        }
        if self.cfg.stun.is_empty() {
            self.stun_servers = resp.stun.clone();
            if self.srflx.is_none() {
                self.start_probe().await;
            }
        }
        self.tracker_url = None;
        self.tracker = Some(crate::tracker::spawn(resp.trackers.clone(), self.gen, self.tx.clone()));
        self.joined = Some(resp);
    }

    // ------------------------------------------------------------------ messages

    async fn on_msg(&mut self, m: CoreMsg) {
        match m {
            CoreMsg::Renditions(rs) => {
                for r in &rs {
                    self.feed(Input::Rendition {
                        name: r.name.clone(),
                        playlist_url: r.url.clone(),
                        bandwidth_bps: r.bandwidth,
                    });
                }
                self.renditions = rs;
            }
            CoreMsg::Playlist { rendition, segments } => {
                self.playlists.insert(rendition.clone(), segments.clone());
                self.feed(Input::Playlist { rendition, segments });
            }
            CoreMsg::PlayerRequest { rendition, seq, waiter, reply } => {
                if self.exact_player.is_none() {
                    let now = Instant::now();
                    self.guess.advance(now);
                    if self.guess.rendition.as_deref() != Some(rendition.as_str()) {
                        self.guess.rendition = Some(rendition.clone());
                        self.guess.last_delivered = None;
                    }
                    self.guess.next_seq = Some(seq);
                    self.report_player();
                }
                self.waiters.entry((rendition.clone(), seq)).or_default().push((waiter, reply));
                self.feed(Input::PlayerRequest { rendition: rendition.clone(), seq });
                if self.announced_rendition.as_deref() != Some(rendition.as_str())
                    && self.tracker_url.is_some()
                {
                    self.announce_at = Some(Instant::now());
                }
            }
            CoreMsg::PlayerGone { rendition, seq, waiter } => {
                let key = (rendition, seq);
                if let Some(ws) = self.waiters.get_mut(&key) {
                    ws.retain(|(w, _)| *w != waiter);
                    if ws.is_empty() {
                        self.waiters.remove(&key);
                        self.feed(Input::PlayerAbort { rendition: key.0, seq: key.1 });
                    }
                }
            }
            CoreMsg::PlayerState(s) => {
                let changed = self.exact_player.as_ref().map(|p| &p.rendition) != Some(&s.rendition);
                self.exact_player = Some(s.clone());
                self.feed(Input::Player(s));
                if changed && self.tracker_url.is_some() {
                    self.announce_at = Some(Instant::now());
                }
            }
            CoreMsg::Http { gen, id, event } => {
                if gen != self.gen {
                    return;
                }
                if matches!(event, shoal_engine::HttpEvent::Done | shoal_engine::HttpEvent::Failed(_)) {
                    self.http_tasks.remove(&id);
                }
                self.feed(Input::Http { id, event });
            }
            CoreMsg::Tracker { gen, ev } => {
                if gen == self.gen {
                    self.on_tracker(ev);
                }
            }
            CoreMsg::Joined(resp) => self.on_joined(*resp).await,
            CoreMsg::Stats(reply) => {
                self.publish_stats();
                let _ = reply.send(self.snapshot.clone());
            }
            CoreMsg::Stop(_) => {}
        }
    }

    fn publish_stats(&mut self) {
        self.last_stats = Instant::now();
        self.stats_dirty = false;
        let s = &mut self.snapshot;
        s.uptime_ms = self.start.elapsed().as_millis() as u64;
        s.fill_engine(self.engine.stats());
        s.add_carried(&self.carried);
        s.peers_connected = self.conns.values().filter(|c| c.open).count() as u32;
        self.stats_tx.send_replace(self.snapshot.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_overrides_layer_and_refuse_unknown_fields() {
        let mut api = serde_json::Map::new();
        api.insert("min_peers".into(), serde_json::json!(2));
        api.insert("max_uploads".into(), serde_json::json!(3));
        let mut local = serde_json::Map::new();
        local.insert("min_peers".into(), serde_json::json!(5));
        let c = engine_config(&api, &local).expect("valid");
        assert_eq!(c.min_peers, 5, "the app's setting wins");
        assert_eq!(c.max_uploads, 3);
        local.insert("typo".into(), serde_json::json!(1));
        assert!(engine_config(&api, &local).is_err());
        let mut bad = serde_json::Map::new();
        bad.insert("cache_segments".into(), serde_json::json!(1));
        assert!(engine_config(&bad, &serde_json::Map::new()).is_err());
    }

    #[test]
    fn player_guess_plays_at_real_time_and_stalls() {
        let t0 = Instant::now();
        let mut g = PlayerGuess { rendition: Some("720p".into()), ..Default::default() };
        g.advance(t0);
        g.buffer_end_ms = 4_000;
        g.playing = true;
        g.advance(t0 + Duration::from_millis(1_500));
        assert_eq!(g.state().map(|s| s.buffered_ahead_ms), Some(2_500));
        g.advance(t0 + Duration::from_millis(5_000));
        assert!(!g.playing, "ran dry");
        assert_eq!(g.state().map(|s| s.buffered_ahead_ms), Some(0));
    }
}
