//! Messages into the core task: everything that is not a datagram on its socket.

use shoal_engine::{Delivery, HttpEvent, HttpId, ListedSegment, PlayerState};
use shoal_proto::api::JoinResponse;
use shoal_proto::tracker::ServerMsg;
use tokio::sync::oneshot;

use crate::stats::StatsSnapshot;

/// A rendition as the master playlist lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenditionInfo {
    pub name: String,
    /// Absolute CDN URL of its media playlist.
    pub url: String,
    pub bandwidth: u32,
}

/// The answer to a player's segment request.
#[derive(Debug)]
pub enum Reply {
    Delivered(Delivery),
    /// The engine gave up (the CDN failed too); the proxy fetches the CDN URL itself.
    Failed(String),
}

#[derive(Debug)]
pub enum TrackerEvent {
    Connected { url: String },
    Disconnected,
    Msg(Box<ServerMsg>),
}

#[derive(Debug)]
pub enum CoreMsg {
    Renditions(Vec<RenditionInfo>),
    Playlist {
        rendition: String,
        segments: Vec<ListedSegment>,
    },
    PlayerRequest {
        rendition: String,
        seq: u64,
        waiter: u64,
        reply: oneshot::Sender<Reply>,
    },
    /// The HTTP request of `waiter` went away before its answer.
    PlayerGone {
        rendition: String,
        seq: u64,
        waiter: u64,
    },
    /// Exact player state from the built-in headless player (turns request-based inference off).
    PlayerState(PlayerState),
    Http {
        gen: u32,
        id: HttpId,
        event: HttpEvent,
    },
    Tracker {
        gen: u32,
        ev: TrackerEvent,
    },
    Joined(Box<JoinResponse>),
    Stats(oneshot::Sender<StatsSnapshot>),
    Stop(oneshot::Sender<StatsSnapshot>),
}
