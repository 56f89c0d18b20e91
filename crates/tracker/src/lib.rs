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
use shoal_proto::tracker::{ErrorCode, TRACKER_PATH, WEBTORRENT_PATH};

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
