//! Shoal tracker messages: JSON text frames on the `GET /v1/tracker` WebSocket.
//!
//! A client announces itself in one swarm (stream + rendition), gets back neighbour candidates
//! ranked best first, and exchanges opaque signaling payloads (offers, answers, trickled ICE
//! candidates) with members of the same swarm through the tracker. Every message is one JSON
//! object with a `type` tag. The exact rules (order, limits, errors, who initiates) are written
//! down in `docs/tracker-protocol.md`; this module is the typed form both sides share.
//!
//! Payloads of `signal` messages stay raw JSON ([`RawValue`]) so the tracker forwards them
//! without building a tree of values. serde cannot read a `RawValue` inside an internally tagged
//! enum, so the enums here are read with [`ClientMsg::parse`] / [`ServerMsg::parse`] (tag first,
//! then the body) rather than with `Deserialize`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::valid_name;

/// The WebSocket path of the Shoal tracker protocol.
pub const TRACKER_PATH: &str = "/v1/tracker";
/// The WebSocket path of the WebTorrent tracker protocol (stock `bittorrent-tracker` clients).
pub const WEBTORRENT_PATH: &str = "/announce";
/// Longest locality label (server table or client hint), in bytes.
pub const MAX_LOCALITY_LEN: usize = 64;
/// Longest ticket text the tracker reads, in bytes.
pub const MAX_TICKET_LEN: usize = 1024;

/// The swarm a peer plays: one rendition of one stream. Peers only meet peers of their swarm.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SwarmId {
    pub stream: String,
    pub rendition: String,
}

impl SwarmId {
    pub fn new(stream: impl Into<String>, rendition: impl Into<String>) -> Self {
        Self { stream: stream.into(), rendition: rendition.into() }
    }

    /// Both names are [`valid_name`]s.
    pub fn is_valid(&self) -> bool {
        valid_name(&self.stream) && valid_name(&self.rendition)
    }
}

/// What the peer knows of its NAT's mapping behaviour (RFC 4787), from STUN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nat {
    /// Public address or full-cone: anyone can reach it.
    Open,
    /// Endpoint-independent mapping: hole punching works with anything but symmetric.
    Eim,
    /// Endpoint-dependent ("symmetric") mapping: two of these cannot connect directly.
    Symmetric,
    /// Not measured.
    #[default]
    Unknown,
}

/// Where the peer is in the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Media sequence number of the newest segment the peer holds (or plays, if it holds none
    /// yet); 0 = not known yet.
    #[serde(default)]
    pub seq: u64,
    /// Milliseconds of media buffered ahead of the playhead.
    #[serde(default)]
    pub buffer_ms: u32,
}

/// Client → tracker. Unknown fields are ignored everywhere so clients can add hints later.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Join (first message) or heartbeat (every `interval_ms`); answered with `peers`.
    Announce(Announce),
    /// Relay `payload` to the member `to` of the sender's swarm.
    Signal(SignalTo),
    /// Cheap heartbeat: refreshes membership, answered with `pong`, selects nobody.
    Ping,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignalTo {
    pub to: String,
    /// A JSON object, forwarded byte for byte.
    pub payload: Box<RawValue>,
}

/// Why a text frame is not a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed message: {0}")]
    Json(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
}

#[derive(Deserialize)]
struct Tag {
    #[serde(rename = "type")]
    kind: String,
}

fn json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ParseError> {
    serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))
}

impl ClientMsg {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let tag: Tag = json(text)?;
        match tag.kind.as_str() {
            "announce" => Ok(ClientMsg::Announce(json(text)?)),
            "signal" => Ok(ClientMsg::Signal(json(text)?)),
            "ping" => Ok(ClientMsg::Ping),
            _ => Err(ParseError::UnknownType(tag.kind.chars().take(32).collect())),
        }
    }
}

/// The announce body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Announce {
    pub swarm: SwarmId,
    /// The id the API assigned at join ([`valid_name`]). Fixed for the connection.
    pub peer_id: String,
    /// Opaque ticket from the API's join response. Checked on the first announce and whenever
    /// the stream changes.
    #[serde(default)]
    pub ticket: String,
    #[serde(default)]
    pub position: Position,
    /// Upload capacity estimate; 0 = consume-only.
    #[serde(default)]
    pub upload_kbps: u32,
    #[serde(default)]
    pub nat: Nat,
    /// Peer ids this peer has a DataChannel with now (never returned as candidates).
    #[serde(default)]
    pub connected: Vec<String>,
    /// How many candidates to return (clamped to the tracker's maximum; 0 = heartbeat only).
    #[serde(default)]
    pub want: u32,
    /// Locality hint (`isp:region` label); used only when the tracker's IP table knows nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
}

/// Tracker → client.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Reply to every `announce`.
    Peers(Peers),
    /// A payload relayed from `from`, a member of the receiver's swarm.
    Signal(SignalFrom),
    /// Reply to `ping`.
    Pong,
    /// Something went wrong. `fatal` errors are followed by a close frame carrying the same code.
    Error(ErrorMsg),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignalFrom {
    pub from: String,
    pub payload: Box<RawValue>,
}

impl ServerMsg {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let tag: Tag = json(text)?;
        match tag.kind.as_str() {
            "peers" => Ok(ServerMsg::Peers(json(text)?)),
            "signal" => Ok(ServerMsg::Signal(json(text)?)),
            "pong" => Ok(ServerMsg::Pong),
            "error" => Ok(ServerMsg::Error(json(text)?)),
            _ => Err(ParseError::UnknownType(tag.kind.chars().take(32).collect())),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Peers {
    /// Members of the swarm, the receiver included.
    pub swarm_size: u32,
    /// Announce again within this many milliseconds or be dropped.
    pub interval_ms: u64,
    /// The receiver's locality as the tracker decided it ("" = unknown).
    pub locality: String,
    /// Best first.
    pub candidates: Vec<Candidate>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub peer_id: String,
    pub locality: String,
    pub nat: Nat,
    /// The candidate's `position.seq` at its last announce.
    pub seq: u64,
    /// Higher is better; for diagnostics, the order already says it.
    pub score: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    pub reason: String,
    /// The connection closes right after this message.
    pub fatal: bool,
}

/// Why the tracker refused something. Also the WebSocket close reason of fatal errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, or a field of the wrong type.
    BadJson,
    /// Valid JSON whose `type` the tracker does not know.
    UnknownType,
    /// A field out of its bounds (names, lengths, counts).
    BadRequest,
    /// A message larger than the tracker's limit.
    TooLarge,
    /// Binary frames are not part of the protocol.
    Binary,
    /// More messages per second than allowed.
    RateLimited,
    /// The ticket did not verify or does not match peer id and stream.
    Unauthorized,
    /// `signal` or `ping` before the first `announce`.
    NotAnnounced,
    /// A later announce named a different peer id than the first.
    PeerIdChanged,
    /// `signal` to a peer id that is not a member of the sender's swarm.
    NotInSwarm,
    /// Non-fatal: the target of a `signal` left the swarm recently.
    PeerGone,
    /// The swarm (or the tracker's swarm table) is at its configured limit.
    SwarmFull,
    /// Nothing received for longer than the peer timeout, or no announce in time.
    Timeout,
    /// The same peer id announced on a newer connection; this one is closed.
    Replaced,
    /// The client does not read its messages fast enough.
    SlowConsumer,
    /// The tracker is shutting down or overloaded.
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Binary => "binary",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotAnnounced => "not_announced",
            ErrorCode::PeerIdChanged => "peer_id_changed",
            ErrorCode::NotInSwarm => "not_in_swarm",
            ErrorCode::PeerGone => "peer_gone",
            ErrorCode::SwarmFull => "swarm_full",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Replaced => "replaced",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// WebSocket close code sent with this error when it is fatal (RFC 6455 §7.4).
    pub fn close_code(self) -> u16 {
        match self {
            ErrorCode::TooLarge => 1009,
            ErrorCode::BadJson => 1007,
            ErrorCode::Binary => 1003,
            ErrorCode::Unavailable | ErrorCode::Replaced => 1001,
            _ => 1008,
        }
    }
}

/// Who sends the WebRTC offer between `a` and `b` when both would: the lower peer id (byte
/// order). Normally the peer that received the other as a candidate initiates; on glare (both
/// sent an offer), the offer of the peer for which this returns `true` wins.
pub fn offer_wins(own: &str, other: &str) -> bool {
    own.as_bytes() < other.as_bytes()
}

/// Server-side check of a client locality hint: 1..=64 bytes of `[a-z0-9_.:-]`.
pub fn valid_locality(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LOCALITY_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_round_trips_with_defaults() {
        let text = r#"{"type":"announce","swarm":{"stream":"demo","rendition":"720p"},"peer_id":"p1"}"#;
        let msg = ClientMsg::parse(text).expect("minimal announce parses");
        let ClientMsg::Announce(a) = msg else { panic!("expected announce") };
        assert_eq!(a.swarm, SwarmId::new("demo", "720p"));
        assert_eq!(a.nat, Nat::Unknown);
        assert_eq!(a.want, 0);
        assert!(a.connected.is_empty());
        assert_eq!(a.position, Position::default());
    }

    #[test]
    fn signal_payload_stays_verbatim() {
        let text = r#"{"type":"signal","to":"p2","payload":{"kind":"offer","sdp":"v=0\r\n"}}"#;
        let ClientMsg::Signal(s) = ClientMsg::parse(text).expect("signal parses") else {
            panic!("expected signal")
        };
        assert_eq!(s.to, "p2");
        assert_eq!(s.payload.get(), r#"{"kind":"offer","sdp":"v=0\r\n"}"#);
        let back = serde_json::to_string(&ClientMsg::Signal(s.clone())).expect("serializes");
        assert_eq!(back, text);
        let out = ServerMsg::Signal(SignalFrom { from: "p1".into(), payload: s.payload });
        let json = serde_json::to_string(&out).expect("serializes");
        assert_eq!(json, r#"{"type":"signal","from":"p1","payload":{"kind":"offer","sdp":"v=0\r\n"}}"#);
        let ServerMsg::Signal(back) = ServerMsg::parse(&json).expect("parses") else {
            panic!("expected signal")
        };
        assert_eq!(back.from, "p1");
    }

    #[test]
    fn unknown_type_and_unknown_fields() {
        assert_eq!(
            ClientMsg::parse(r#"{"type":"nope"}"#).err(),
            Some(ParseError::UnknownType("nope".into()))
        );
        assert!(matches!(ClientMsg::parse(r#"{"type":1}"#), Err(ParseError::Json(_))));
        assert!(matches!(ClientMsg::parse("not json"), Err(ParseError::Json(_))));
        assert!(matches!(ClientMsg::parse(r#"{"type":"signal","to":"x"}"#), Err(ParseError::Json(_))));
        assert!(matches!(ClientMsg::parse(r#"{"type":"ping","x":1}"#), Ok(ClientMsg::Ping)));
        let text = r#"{"type":"announce","swarm":{"stream":"s","rendition":"r"},"peer_id":"p","hint":1}"#;
        assert!(ClientMsg::parse(text).is_ok(), "announce ignores unknown fields");
    }

    #[test]
    fn error_wire_form() {
        let e = ServerMsg::Error(ErrorMsg { code: ErrorCode::NotInSwarm, reason: "x".into(), fatal: true });
        let json = serde_json::to_string(&e).expect("serializes");
        assert_eq!(json, r#"{"type":"error","code":"not_in_swarm","reason":"x","fatal":true}"#);
        assert_eq!(ErrorCode::NotInSwarm.as_str(), "not_in_swarm");
        assert_eq!(ErrorCode::TooLarge.close_code(), 1009);
    }

    #[test]
    fn glare_rule_is_antisymmetric() {
        assert!(offer_wins("a", "b"));
        assert!(!offer_wins("b", "a"));
        assert!(!offer_wins("a", "a"));
    }

    #[test]
    fn locality_labels() {
        assert!(valid_locality("isp-a:eu-west"));
        assert!(!valid_locality(""));
        assert!(!valid_locality("ISP"));
        assert!(!valid_locality(&"a".repeat(65)));
    }
}
