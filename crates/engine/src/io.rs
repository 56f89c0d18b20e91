//! What goes into the engine and what comes out of it.

use bytes::Bytes;
use shoal_proto::wire::{ByeReason, Message};

/// Monotonic time in milliseconds, chosen by the driver (any origin).
pub type Millis = u64;

/// A connection to one peer, numbered by the driver. A reconnect gets a new handle.
pub type PeerHandle = u64;

/// An HTTP request, numbered by the engine.
pub type HttpId = u64;

/// One segment of a media playlist as the player sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedSegment {
    pub seq: u64,
    /// Absolute URL of the segment on the CDN.
    pub url: String,
    pub duration_ms: u32,
}

/// What the player is doing. The engine derives every segment's deadline from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayerState {
    pub rendition: String,
    /// Media is playing (not paused, not waiting for its first frame, not stalled).
    pub playing: bool,
    /// Milliseconds of media buffered ahead of the playhead.
    pub buffered_ahead_ms: u32,
    /// Sequence number of the first segment not in the player's buffer, if known.
    pub next_seq: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpEvent {
    /// Status line and headers arrived. `total` is the whole object's size when the server
    /// said (Content-Length of a full response, or the total of a Content-Range).
    Response {
        status: u16,
        total: Option<u64>,
    },
    Data(Bytes),
    Done,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A rendition of the stream and its media playlist URL (the signed manifest lives next
    /// to it).
    Rendition {
        name: String,
        playlist_url: String,
        bandwidth_bps: u32,
    },
    /// The player loaded a media playlist.
    Playlist {
        rendition: String,
        segments: Vec<ListedSegment>,
    },
    /// The player wants a segment. The engine answers with [`Output::Deliver`] or
    /// [`Output::DeliverFailed`].
    PlayerRequest {
        rendition: String,
        seq: u64,
    },
    /// The player no longer wants a segment it asked for.
    PlayerAbort {
        rendition: String,
        seq: u64,
    },
    Player(PlayerState),
    /// Number of peers in this client's swarm, as the tracker last said.
    SwarmSize(u32),
    /// A DataChannel to a peer opened.
    PeerConnected {
        peer: PeerHandle,
    },
    /// A DataChannel closed or its connection failed.
    PeerDisconnected {
        peer: PeerHandle,
    },
    /// A decoded message from a peer (the driver may pass raw bytes with
    /// [`Input::PeerBytes`] instead).
    PeerMessage {
        peer: PeerHandle,
        msg: Message,
    },
    /// A raw DataChannel message; a malformed one gets the peer disconnected.
    PeerBytes {
        peer: PeerHandle,
        bytes: Bytes,
    },
    /// Bytes currently queued in the DataChannel to this peer (report it when it falls, e.g. on
    /// the "buffered amount low" event).
    PeerBuffered {
        peer: PeerHandle,
        bytes: u64,
    },
    Http {
        id: HttpId,
        event: HttpEvent,
    },
    /// Nothing happened; time passed. Call at [`crate::Engine::poll_timeout`].
    Tick,
}

/// Where the bytes of a delivered segment came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Cdn,
    Peers,
    Mixed,
}

/// Timing to report to the player for a delivery. For segments that came from peers it is
/// what the CDN would have taken at its measured speed, so P2P never inflates the player's
/// bandwidth estimate and never pushes its ABR to a rendition the CDN path cannot sustain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub first_byte_ms: u64,
    pub total_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub rendition: String,
    pub seq: u64,
    /// The segment's bytes in order (concatenate them, or stream them one by one).
    pub chunks: Vec<Bytes>,
    pub size: u64,
    pub source: Source,
    /// Every byte matched the origin-signed hashes. False only for a CDN download of a
    /// segment whose signed entry was never available (the player gets what a CDN-only player
    /// would get; such a segment is never shared).
    pub verified: bool,
    pub timing: Timing,
}

impl Delivery {
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.size as usize);
        for c in &self.chunks {
            v.extend_from_slice(c);
        }
        v
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchKind {
    Segment,
    Manifest,
}

/// Something the engine wants to tell the application (logs, pingback).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A peer sent data that failed verification, or broke the protocol; it was disconnected
    /// and will not be accepted again this session.
    PeerMisbehaved { peer_id: String, reason: String },
    /// A signed entry failed verification (forged or wrong key).
    BadEntry { rendition: String, seq: u64 },
    /// The CDN served bytes that do not match the signed manifest.
    CdnMismatch { rendition: String, seq: u64 },
    /// A peer's hello was refused.
    PeerRefused { peer: PeerHandle, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send a message on the peer's DataChannel.
    Send {
        peer: PeerHandle,
        msg: Message,
    },
    /// Close the connection to a peer (after sending a Bye).
    Disconnect {
        peer: PeerHandle,
        reason: ByeReason,
    },
    /// Start an HTTP GET. `range` is `(first_byte, last_byte_inclusive)`; `None` = whole object.
    HttpFetch {
        id: HttpId,
        url: String,
        range: Option<(u64, Option<u64>)>,
        kind: FetchKind,
    },
    /// Abort an HTTP request; no more events for it are expected (late ones are ignored).
    HttpCancel {
        id: HttpId,
    },
    /// A segment the player asked for, complete.
    Deliver(Delivery),
    /// A segment the player asked for could not be obtained (the CDN failed too).
    DeliverFailed {
        rendition: String,
        seq: u64,
        reason: String,
    },
    /// Fewer peers than wanted are connected; ask the tracker for this many more.
    NeedPeers {
        want: u32,
    },
    Event(Event),
}
