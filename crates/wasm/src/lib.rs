//! `shoal-wasm`: shoal-engine for the browser SDK, through wasm-bindgen.
//!
//! The TypeScript layer (`web/src/`) owns every I/O object — `RTCPeerConnection`s,
//! `RTCDataChannel`s, the tracker WebSocket, `fetch` — and the clock (`performance.now()`).
//! It feeds each event into [`ShoalEngine`] and carries out what [`ShoalEngine::poll`] returns,
//! exactly as the native SDK and the simulator drive the same engine. Numbers cross the
//! boundary as `f64` (JavaScript numbers); sequence numbers and byte counts stay below 2^53.

use bytes::Bytes;
use shoal_engine::{
    Config, Engine, Event, FetchKind, HttpEvent, Identity, Input, ListedSegment, Output, PlayerState, Source,
};
use shoal_proto::manifest::verifying_key_from_b64;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct ShoalEngine {
    engine: Engine,
}

/// One thing the engine wants done. `kind` says which fields are set:
/// `send` (peer, data), `disconnect` (peer), `fetch` (id, url, rangeStart/rangeEnd, fetchKind),
/// `cancel` (id), `deliver` (rendition, seq, data, source, verified, firstByteMs, totalMs),
/// `deliverFailed` (rendition, seq, reason), `needPeers` (count), `event` (reason).
#[wasm_bindgen(getter_with_clone)]
#[derive(Default)]
pub struct Action {
    pub kind: String,
    pub peer: u32,
    pub data: Option<Vec<u8>>,
    pub id: f64,
    pub url: String,
    #[wasm_bindgen(js_name = rangeStart)]
    pub range_start: Option<f64>,
    #[wasm_bindgen(js_name = rangeEnd)]
    pub range_end: Option<f64>,
    #[wasm_bindgen(js_name = fetchKind)]
    pub fetch_kind: String,
    pub rendition: String,
    pub seq: f64,
    pub source: String,
    pub verified: bool,
    #[wasm_bindgen(js_name = firstByteMs)]
    pub first_byte_ms: f64,
    #[wasm_bindgen(js_name = totalMs)]
    pub total_ms: f64,
    pub reason: String,
    pub count: u32,
}

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn ms(now: f64) -> u64 {
    if now.is_finite() && now > 0.0 {
        now as u64
    } else {
        0
    }
}

#[wasm_bindgen]
impl ShoalEngine {
    /// `config_json`: engine configuration overrides (the API's `engine` object, may be `{}`).
    /// `origin_key`: base64 Ed25519 public key of the origin; without it P2P stays off.
    #[wasm_bindgen(constructor)]
    pub fn new(
        config_json: &str,
        peer_id: &str,
        stream: &str,
        origin_key: Option<String>,
        now: f64,
    ) -> Result<ShoalEngine, JsError> {
        let cfg: Config = if config_json.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(config_json).map_err(|e| err(format!("engine config: {e}")))?
        };
        cfg.validate().map_err(err)?;
        let key = match origin_key.filter(|k| !k.is_empty()) {
            Some(k) => Some(verifying_key_from_b64(&k).map_err(err)?),
            None => None,
        };
        let me = Identity { peer_id: peer_id.to_owned(), stream: stream.to_owned() };
        Ok(ShoalEngine { engine: Engine::new(cfg, me, key, ms(now)) })
    }

    fn feed(&mut self, input: Input, now: f64) {
        self.engine.handle(input, ms(now));
    }

    #[wasm_bindgen(js_name = addRendition)]
    pub fn add_rendition(&mut self, name: String, playlist_url: String, bandwidth_bps: u32, now: f64) {
        self.feed(Input::Rendition { name, playlist_url, bandwidth_bps }, now);
    }

    /// The player loaded a media playlist: parallel arrays of sequence numbers, absolute URLs
    /// and durations (ms).
    pub fn playlist(
        &mut self,
        rendition: String,
        seqs: Vec<f64>,
        urls: Vec<String>,
        durations_ms: Vec<u32>,
        now: f64,
    ) {
        let segments = seqs
            .iter()
            .zip(urls)
            .zip(durations_ms.iter())
            .map(|((&seq, url), &duration_ms)| ListedSegment { seq: seq as u64, url, duration_ms })
            .collect();
        self.feed(Input::Playlist { rendition, segments }, now);
    }

    #[wasm_bindgen(js_name = playerRequest)]
    pub fn player_request(&mut self, rendition: String, seq: f64, now: f64) {
        self.feed(Input::PlayerRequest { rendition, seq: seq as u64 }, now);
    }

    #[wasm_bindgen(js_name = playerAbort)]
    pub fn player_abort(&mut self, rendition: String, seq: f64, now: f64) {
        self.feed(Input::PlayerAbort { rendition, seq: seq as u64 }, now);
    }

    #[wasm_bindgen(js_name = playerState)]
    pub fn player_state(
        &mut self,
        rendition: String,
        playing: bool,
        buffered_ahead_ms: f64,
        next_seq: Option<f64>,
        now: f64,
    ) {
        let state = PlayerState {
            rendition,
            playing,
            buffered_ahead_ms: buffered_ahead_ms.clamp(0.0, u32::MAX as f64) as u32,
            next_seq: next_seq.map(|s| s as u64),
        };
        self.feed(Input::Player(state), now);
    }

    #[wasm_bindgen(js_name = swarmSize)]
    pub fn swarm_size(&mut self, n: u32, now: f64) {
        self.feed(Input::SwarmSize(n), now);
    }

    #[wasm_bindgen(js_name = peerConnected)]
    pub fn peer_connected(&mut self, peer: u32, now: f64) {
        self.feed(Input::PeerConnected { peer: peer as u64 }, now);
    }

    #[wasm_bindgen(js_name = peerDisconnected)]
    pub fn peer_disconnected(&mut self, peer: u32, now: f64) {
        self.feed(Input::PeerDisconnected { peer: peer as u64 }, now);
    }

    /// A DataChannel message from a peer (malformed ones get the peer disconnected).
    #[wasm_bindgen(js_name = peerMessage)]
    pub fn peer_message(&mut self, peer: u32, data: &[u8], now: f64) {
        self.feed(Input::PeerBytes { peer: peer as u64, bytes: Bytes::copy_from_slice(data) }, now);
    }

    /// The DataChannel's `bufferedAmount`, reported when it falls.
    #[wasm_bindgen(js_name = peerBuffered)]
    pub fn peer_buffered(&mut self, peer: u32, amount: f64, now: f64) {
        self.feed(Input::PeerBuffered { peer: peer as u64, bytes: amount.max(0.0) as u64 }, now);
    }

    #[wasm_bindgen(js_name = httpResponse)]
    pub fn http_response(&mut self, id: f64, status: u16, total: Option<f64>, now: f64) {
        let event = HttpEvent::Response { status, total: total.map(|t| t as u64) };
        self.feed(Input::Http { id: id as u64, event }, now);
    }

    #[wasm_bindgen(js_name = httpData)]
    pub fn http_data(&mut self, id: f64, data: &[u8], now: f64) {
        self.feed(Input::Http { id: id as u64, event: HttpEvent::Data(Bytes::copy_from_slice(data)) }, now);
    }

    #[wasm_bindgen(js_name = httpDone)]
    pub fn http_done(&mut self, id: f64, now: f64) {
        self.feed(Input::Http { id: id as u64, event: HttpEvent::Done }, now);
    }

    #[wasm_bindgen(js_name = httpFailed)]
    pub fn http_failed(&mut self, id: f64, reason: String, now: f64) {
        self.feed(Input::Http { id: id as u64, event: HttpEvent::Failed(reason) }, now);
    }

    pub fn tick(&mut self, now: f64) {
        self.feed(Input::Tick, now);
    }

    /// When to call [`tick`](Self::tick) next (same clock as `now`), if ever.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.engine.poll_timeout().map(|t| t as f64)
    }

    /// The next action, or `undefined` when there is none. Drain after every call.
    pub fn poll(&mut self) -> Option<Action> {
        let out = self.engine.poll_output()?;
        let mut a = Action::default();
        match out {
            Output::Send { peer, msg } => {
                a.kind = "send".into();
                a.peer = peer as u32;
                match msg.encode() {
                    Ok(b) => a.data = Some(b),
                    Err(e) => {
                        a.kind = "event".into();
                        a.reason = format!("unencodable message dropped: {e}");
                    }
                }
            }
            Output::Disconnect { peer, reason } => {
                a.kind = "disconnect".into();
                a.peer = peer as u32;
                a.reason = (reason as u8).to_string();
            }
            Output::HttpFetch { id, url, range, kind } => {
                a.kind = "fetch".into();
                a.id = id as f64;
                a.url = url;
                a.range_start = range.map(|r| r.0 as f64);
                a.range_end = range.and_then(|r| r.1).map(|e| e as f64);
                a.fetch_kind = match kind {
                    FetchKind::Segment => "segment".into(),
                    FetchKind::Manifest => "manifest".into(),
                };
            }
            Output::HttpCancel { id } => {
                a.kind = "cancel".into();
                a.id = id as f64;
            }
            Output::Deliver(d) => {
                a.kind = "deliver".into();
                a.data = Some(d.to_vec());
                a.rendition = d.rendition;
                a.seq = d.seq as f64;
                a.source = match d.source {
                    Source::Cdn => "cdn",
                    Source::Peers => "peers",
                    Source::Mixed => "mixed",
                }
                .into();
                a.verified = d.verified;
                a.first_byte_ms = d.timing.first_byte_ms as f64;
                a.total_ms = d.timing.total_ms as f64;
            }
            Output::DeliverFailed { rendition, seq, reason } => {
                a.kind = "deliverFailed".into();
                a.rendition = rendition;
                a.seq = seq as f64;
                a.reason = reason;
            }
            Output::NeedPeers { want } => {
                a.kind = "needPeers".into();
                a.count = want;
            }
            Output::Event(e) => {
                a.kind = "event".into();
                a.reason = describe(&e);
            }
        }
        Some(a)
    }

    /// Counters as a JSON object (see `shoal_engine::Stats`).
    #[wasm_bindgen(js_name = statsJson)]
    pub fn stats_json(&self) -> String {
        let s = self.engine.stats();
        serde_json::json!({
            "httpBytes": s.http_bytes,
            "manifestBytes": s.manifest_bytes,
            "p2pDownBytes": s.p2p_down_bytes,
            "p2pUpBytes": s.p2p_up_bytes,
            "wastedBytes": s.wasted_bytes,
            "delivered": s.delivered,
            "deliveredFromPeers": s.delivered_from_peers,
            "deliveredFromCdn": s.delivered_from_cdn,
            "deliveredMixed": s.delivered_mixed,
            "deliveredLate": s.delivered_late,
            "segmentsVerified": s.segments_verified,
            "verifyFailures": s.verify_failures,
            "unverifiedDeliveries": s.unverified_deliveries,
            "cdnFetchesEdge": s.cdn_fetches_edge,
            "cdnFallbackDeadline": s.cdn_fallback_deadline,
            "cdnFallbackNoSource": s.cdn_fallback_no_source,
            "cdnFallbackStartup": s.cdn_fallback_startup,
            "httpFailures": s.http_failures,
            "uploadsServed": s.uploads_served,
            "peersBanned": s.peers_banned,
            "peersConnected": s.peers_connected,
            "startupMs": s.startup_ms,
            "offload": s.offload(),
        })
        .to_string()
    }

    /// The protocol version range this build speaks, for logs.
    #[wasm_bindgen(js_name = protocolVersion)]
    pub fn protocol_version() -> u16 {
        shoal_proto::wire::PROTOCOL_VERSION
    }
}

fn describe(e: &Event) -> String {
    match e {
        Event::PeerMisbehaved { peer_id, reason } => format!("peer {peer_id} misbehaved: {reason}"),
        Event::BadEntry { rendition, seq } => format!("forged entry for {rendition}/{seq}"),
        Event::CdnMismatch { rendition, seq } => {
            format!("CDN bytes of {rendition}/{seq} do not match the signed manifest")
        }
        Event::PeerRefused { peer, reason } => format!("peer {peer} refused: {reason}"),
    }
}
