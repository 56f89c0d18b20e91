//! shoal-tracker: the Tracker and signaling relay of Shoal.
//!
//! Two WebSocket endpoints on one axum [`Router`]:
//! - `GET /v1/tracker`: the Shoal protocol (`shoal_proto::tracker`, `docs/tracker-protocol.md`):
//!   announce → ranked neighbour candidates; `signal` relayed only between members of a swarm.
//! - `GET /announce`: the WebTorrent tracker protocol, so stock p2p-media-loader players (the
//!   `bittorrent-tracker` client) can use this tracker, and WebTorrent load testers can measure it.
//!
//! Peer selection is [`shoal_swarm`] (sans-IO, shared with the simulator). Swarms live in
//! sharded maps behind short synchronous locks; each connection is one task that owns its
//! socket and a bounded queue other connections deliver into.
//!
//! Mounting (what `shoal serve` does):
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use std::{net::SocketAddr, sync::Arc};
//! let tracker = shoal_tracker::Tracker::new(
//!     shoal_tracker::TrackerConfig::default(),
//!     Arc::new(shoal_tracker::AllowAll),
//! )?;
//! let app = axum::Router::new().merge(tracker.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! // Signaling frames are small: without TCP_NODELAY, Nagle + delayed ACKs add ~40 ms per relay.
//! let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
//!     let _ = tcp.set_nodelay(true);
//! });
//! // Connect info gives the tracker the client address for the locality table.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```

mod config;
mod conn;
mod locality;
mod shoal_ws;
mod state;
mod stats;
mod ticket;
mod webtorrent;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use shoal_proto::tracker::{ErrorCode, SwarmId, TRACKER_PATH, WEBTORRENT_PATH};
pub use shoal_swarm::PeerInfo;

pub use config::{LocalityConfig, LocalityRule, TrackerConfig, WebTorrentConfig};
pub use locality::LocalityTable;
pub use state::{LocalOnly, Relay};
pub use stats::TrackerStats;
pub use ticket::{AllowAll, TicketRequest, TicketVerifier};

use conn::Protocol;
use state::State;

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("invalid tracker configuration: {0}")]
    Config(String),
    #[error("the tracker must be created inside a tokio runtime (it spawns its sweeper)")]
    NoRuntime,
}

/// A running tracker: shared state plus its sweeper task. Cheap to clone.
#[derive(Clone)]
pub struct Tracker {
    state: Arc<State>,
}

impl Tracker {
    /// Validate `cfg` and start the sweeper (needs a tokio runtime; it stops when the last
    /// clone of the tracker and its router are dropped).
    pub fn new(cfg: TrackerConfig, verifier: Arc<dyn TicketVerifier>) -> Result<Self, TrackerError> {
        Self::with_relay(cfg, verifier, Arc::new(LocalOnly))
    }

    /// Like [`Tracker::new`], with a [`Relay`] for signals whose target is on another node.
    pub fn with_relay(
        cfg: TrackerConfig,
        verifier: Arc<dyn TicketVerifier>,
        relay: Arc<dyn Relay>,
    ) -> Result<Self, TrackerError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TrackerError::NoRuntime);
        }
        let state = Arc::new(State::new(cfg, verifier, relay).map_err(TrackerError::Config)?);
        state::spawn_sweeper(&state);
        Ok(Self { state })
    }

    /// `GET /v1/tracker` (and `GET /announce` when the WebTorrent path is enabled). Serve it
    /// with `into_make_service_with_connect_info::<SocketAddr>()` so locality can be derived
    /// from the client address; without it every peer's locality is its hint or "".
    pub fn router(&self) -> Router {
        let mut r = Router::new().route(TRACKER_PATH, get(shoal_upgrade));
        if self.state.cfg.webtorrent.enabled {
            r = r.route(WEBTORRENT_PATH, get(webtorrent_upgrade));
        }
        r.with_state(self.clone())
    }

    pub fn stats(&self) -> TrackerStats {
        self.state.counters.snapshot()
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.state.cfg
    }

    /// Run one expiry sweep now (the sweeper does this every `sweep_interval_ms`).
    pub fn sweep(&self) {
        self.state.sweep();
    }

    // ---- cluster backplane (see [`Relay`]) ----

    /// Add or refresh `peer_id` of `swarm` as announced on tracker node `node`, so this node's
    /// ranking sees it and signals to it go to [`Relay::forward_to`]. Only swarms with members
    /// here are touched (a node mirrors the swarms it serves); a member connected to this node
    /// is left alone (its own connection is the fresher truth). Returns whether it was applied.
    pub fn remote_upsert(&self, swarm: &SwarmId, peer_id: &str, node: &str, info: PeerInfo) -> bool {
        if !swarm.is_valid() || !shoal_proto::ids::valid_name(peer_id) {
            return false;
        }
        let now = self.state.now_ms();
        let key = state::SwarmKey::Shoal(swarm.clone());
        self.state
            .with_existing(&key, |s| {
                if s.get(peer_id).is_some_and(|(_, via)| via.is_local()) {
                    return false;
                }
                s.upsert(peer_id, info, state::Via::Remote(Arc::from(node)), now).is_ok()
            })
            .unwrap_or(false)
    }

    /// Remove a mirrored member (it left its node). Local members are not touched.
    pub fn remote_remove(&self, swarm: &SwarmId, peer_id: &str, node: &str) -> bool {
        let now = self.state.now_ms();
        let key = state::SwarmKey::Shoal(swarm.clone());
        self.state
            .with_existing(&key, |s| {
                s.remove_if(peer_id, now, |via| matches!(via, state::Via::Remote(n) if &**n == node))
            })
            .flatten()
            .is_some()
    }

    /// Remove every member mirrored from `node` (it left the cluster), or from any node when
    /// `node` is `None` and `swarm` is given. Returns how many were removed.
    pub fn remote_drop(&self, node: Option<&str>, swarm: Option<&SwarmId>) -> usize {
        let now = self.state.now_ms();
        let mut n = 0;
        let mut doomed: Vec<Box<str>> = Vec::new();
        self.state.for_each_swarm(|key, s| {
            let state::SwarmKey::Shoal(id) = key else { return };
            if swarm.is_some_and(|w| w != id) {
                return;
            }
            doomed.extend(
                s.iter()
                    .filter(|(_, _, via)| match via {
                        state::Via::Remote(r) => node.is_none_or(|want| **r == *want),
                        state::Via::Local(_) => false,
                    })
                    .map(|(p, _, _)| Box::from(p)),
            );
            for p in doomed.drain(..) {
                s.remove(&p, now);
                n += 1;
            }
        });
        n
    }

    /// Deliver a signal frame relayed by another node to the local member `to` of `swarm`.
    /// False when `to` is not connected here (or its queue is full).
    pub fn deliver_signal(&self, swarm: &SwarmId, to: &str, frame: &str) -> bool {
        let key = state::SwarmKey::Shoal(swarm.clone());
        let sent = self
            .state
            .with_existing(&key, |s| match s.get(to) {
                Some((_, via @ state::Via::Local(_))) => {
                    via.try_send(state::Outbound::Text(frame.to_owned())).is_ok()
                }
                _ => false,
            })
            .unwrap_or(false);
        if sent {
            self.state.counters.relayed(stats::Path::Shoal, 1);
        }
        sent
    }

    /// The members of `swarm` connected to this node, with what they last announced.
    pub fn local_members(&self, swarm: &SwarmId) -> Vec<(String, PeerInfo)> {
        let key = state::SwarmKey::Shoal(swarm.clone());
        self.state
            .with_existing(&key, |s| {
                s.iter()
                    .filter(|(_, _, via)| via.is_local())
                    .map(|(p, i, _)| (p.to_owned(), i.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many members of `swarm` are connected here and mirrored from other nodes.
    pub fn member_counts(&self, swarm: &SwarmId) -> (usize, usize) {
        let key = state::SwarmKey::Shoal(swarm.clone());
        self.state
            .with_existing(&key, |s| {
                let local = s.iter().filter(|(_, _, via)| via.is_local()).count();
                (local, s.len() - local)
            })
            .unwrap_or((0, 0))
    }
}

/// Build a tracker and its router in one call.
pub fn router(
    cfg: TrackerConfig,
    verifier: Arc<dyn TicketVerifier>,
) -> Result<(Router, Tracker), TrackerError> {
    let t = Tracker::new(cfg, verifier)?;
    Ok((t.router(), t))
}

type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

async fn shoal_upgrade(
    AxumState(t): AxumState<Tracker>,
    peer: Peer,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(t, peer, &headers, ws, shoal_ws::ShoalConn::default())
}

async fn webtorrent_upgrade(
    AxumState(t): AxumState<Tracker>,
    peer: Peer,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(t, peer, &headers, ws, webtorrent::WebTorrentConn::default())
}

fn upgrade<P: Protocol>(
    t: Tracker,
    peer: Peer,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
    proto: P,
) -> Response {
    let st = &t.state;
    if st.counters.connections() >= st.cfg.max_connections as u64 {
        st.counters.reject(ErrorCode::Unavailable);
        return (StatusCode::SERVICE_UNAVAILABLE, "tracker at its connection limit").into_response();
    }
    let ip = client_ip(peer, headers, st.cfg.locality.trust_forwarded_for);
    // The WebSocket layer's hard cap is twice the limit: a message between the two is read
    // whole and refused by the connection with a clean close (`too_large`); only beyond the
    // hard cap is the connection cut mid-frame.
    let hard_max = st.cfg.max_message_bytes * 2;
    let state = Arc::clone(st);
    ws.read_buffer_size(st.cfg.read_buffer_bytes)
        // Every send is flushed at once; frames are never batched in a write buffer.
        .write_buffer_size(0)
        .max_write_buffer_size(hard_max)
        .max_message_size(hard_max)
        .max_frame_size(hard_max)
        .on_upgrade(move |socket| conn::drive(state, socket, ip, proto))
}

fn client_ip(peer: Peer, headers: &HeaderMap, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    peer.map(|Extension(ConnectInfo(addr))| addr.ip())
}
