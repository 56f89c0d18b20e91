//! JSON types of the API role (`POST /v1/join`, the admin token endpoint, errors).
//!
//! The API is versioned in the path (`/v1/...`) and in the body (`version`). Within a version,
//! fields are only ever added: clients ignore fields they do not know, so the server may grow
//! the response, and the server ignores unknown request fields, so newer SDKs may send more
//! facts. The full contract, including what clients do when the API is unreachable, is in
//! `docs/api.md` and `docs/openapi.yaml`.

use serde::{Deserialize, Serialize};

/// Version of the join response body.
pub const API_VERSION: u32 = 1;
/// Largest join request body the API reads.
pub const MAX_JOIN_BODY: usize = 16 * 1024;
/// Longest free-text client fact (platform, SDK name/version, ...). Longer values are refused.
pub const MAX_FACT_LEN: usize = 128;

/// `POST /v1/join` request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Stream name (`[A-Za-z0-9_.-]{1,64}`), the same the origin publishes.
    pub stream: String,
    /// Viewer token (see `docs/api.md`, "Tokens"). May be omitted only when the server runs
    /// with `auth.require_token = false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default)]
    pub client: ClientInfo,
}

/// Facts the client reports about itself; all optional, all informational (the server may use
/// them to choose trackers or the P2P policy, never to grant access).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// `web`, `android`, `ios`, `linux`, `macos`, `windows`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// SDK name, e.g. `shoal-web`, `shoal-native`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
    /// Network facts the client already knows (from a previous session or its own probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatHints>,
    /// `wifi`, `ethernet`, `cellular`, `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
}

/// What the client believes about its network path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NatHints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_type: Option<NatType>,
    /// UDP to the STUN server failed last time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_blocked: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
}

/// Same vocabulary as the tracker's `Nat`, plus a catch-all for values from newer SDKs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatType {
    /// Public address, no NAT.
    Open,
    /// Endpoint-independent mapping (full/restricted/port-restricted cone), as
    /// `shoal_proto::tracker::Nat::Eim`.
    #[serde(alias = "cone")]
    Eim,
    /// Endpoint-dependent mapping: only pairs well with open or cone peers.
    Symmetric,
    /// Anything else, including values from newer SDKs.
    #[serde(other)]
    Unknown,
}

impl JoinRequest {
    /// Bounds on the free-text facts; the stream name is checked by the server.
    pub fn facts_within_limits(&self) -> bool {
        let c = &self.client;
        [&c.platform, &c.sdk, &c.sdk_version, &c.connection]
            .iter()
            .all(|f| f.as_ref().is_none_or(|s| s.len() <= MAX_FACT_LEN))
    }
}

/// `POST /v1/join` success response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinResponse {
    /// [`API_VERSION`].
    pub version: u32,
    /// Opaque id of this playback session (pingback reports carry it).
    pub session_id: String,
    /// The client's id in the swarm, unique per join (`[0-9a-f]{16}`).
    pub peer_id: String,
    pub stream: String,
    /// Tracker WebSocket URLs: primary first, then standbys in the order to try.
    pub trackers: Vec<String>,
    /// STUN server URLs (`stun:host:port`), for `RTCPeerConnection.iceServers` and the native
    /// SDK's server-reflexive probe.
    pub stun: Vec<String>,
    pub pingback: Pingback,
    /// CDN base URLs (ordered): the stream's playlists and segments live under each; clients
    /// fail over from one to the next.
    pub cdn: Vec<String>,
    /// Base64 Ed25519 public key that signs the stream's `manifest.json` entries; empty when
    /// the server knows none (then `p2p` is false).
    pub origin_public_key: String,
    /// Key id of `origin_public_key` (hex of the first 8 bytes of its SHA-256), as written in
    /// `manifest.json`.
    pub key_id: String,
    /// `false`: play from the CDN only (P2P switched off, no origin key, or holdback group).
    pub p2p: bool,
    /// Why `p2p` is false (`disabled`, `holdback`, `no_origin_key`, `no_tracker`, or a policy's
    /// own word); absent when `p2p` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p_reason: Option<String>,
    /// Ticket the tracker verifies (see [`crate::ticket`]).
    pub ticket: String,
    /// Unix milliseconds; after it the client joins again before reconnecting to a tracker.
    pub ticket_expires_ms: u64,
    /// Engine configuration overrides, passed through from the server config (the engine
    /// crate owns the schema).
    pub engine: serde_json::Map<String, serde_json::Value>,
    /// Other API base URLs, in the order to try when this one fails.
    pub api: Vec<String>,
    /// Server clock, Unix milliseconds (lets clients judge `ticket_expires_ms` despite skew).
    pub server_time_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pingback {
    /// Where the client POSTs its periodic stats.
    pub url: String,
    pub interval_ms: u64,
    /// Other pingback URLs, in the order to try when `url` fails (a cluster's live pingback
    /// nodes). Absent from older servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternates: Vec<String>,
}

/// Body of every API error response (4xx/5xx).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code, see [`error_code`].
    pub error: String,
    /// Human-readable detail; not stable.
    pub message: String,
}

/// Error codes of [`ErrorBody::error`].
pub mod error_code {
    /// 400: body is not a valid join request, or a field is out of bounds.
    pub const BAD_REQUEST: &str = "bad_request";
    /// 401: token required but missing.
    pub const TOKEN_MISSING: &str = "token_missing";
    /// 401: token cannot be parsed.
    pub const TOKEN_MALFORMED: &str = "token_malformed";
    /// 401: signature does not verify, or its key id is unknown.
    pub const TOKEN_INVALID: &str = "token_invalid";
    /// 401: past its `exp` (or before its `nbf`).
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// 403: the token is for another stream.
    pub const WRONG_STREAM: &str = "wrong_stream";
    /// 403: the page `Origin` is not among the allowed origins.
    pub const ORIGIN_NOT_ALLOWED: &str = "origin_not_allowed";
    /// 403: admin secret missing or wrong.
    pub const ADMIN_FORBIDDEN: &str = "admin_forbidden";
    /// 413: request body larger than the server reads.
    pub const TOO_LARGE: &str = "too_large";
    /// 404: unknown stream (only when the server lists its streams) or endpoint disabled.
    pub const NOT_FOUND: &str = "not_found";
    /// 429: too many requests from this address; see `Retry-After`.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// 500.
    pub const INTERNAL: &str = "internal";
}

/// `POST /v1/admin/tokens` request (guarded by `Authorization: Bearer <admin secret>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintTokenRequest {
    pub stream: String,
    /// Lifetime in seconds; server default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer_id: Option<String>,
    /// Page origins allowed to use the token (`https://example.com`, `https://*.example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintTokenResponse {
    pub token: String,
    pub kid: String,
    /// Unix seconds.
    pub expires_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_request_minimal_and_unknown_fields() {
        let r: JoinRequest = serde_json::from_str(r#"{"stream":"demo","future_field":1}"#).expect("parse");
        assert_eq!(r.stream, "demo");
        assert_eq!(r.token, None);
        assert_eq!(r.client, ClientInfo::default());
        let r: JoinRequest = serde_json::from_str(
            r#"{"stream":"demo","token":"t","client":{"platform":"web","nat":{"nat_type":"weird"}}}"#,
        )
        .expect("parse");
        assert_eq!(r.client.nat.and_then(|n| n.nat_type), Some(NatType::Unknown));
        assert!(serde_json::from_str::<JoinRequest>(r#"{"token":"t"}"#).is_err(), "stream is required");
    }

    #[test]
    fn fact_limits() {
        let mut r = JoinRequest { stream: "demo".into(), ..Default::default() };
        assert!(r.facts_within_limits());
        r.client.sdk_version = Some("x".repeat(MAX_FACT_LEN + 1));
        assert!(!r.facts_within_limits());
    }

    #[test]
    fn join_response_roundtrip() {
        let resp = JoinResponse {
            version: API_VERSION,
            session_id: "s".into(),
            peer_id: "0123456789abcdef".into(),
            stream: "demo".into(),
            trackers: vec!["ws://a/v1/tracker".into()],
            stun: vec!["stun:127.0.0.1:3478".into()],
            pingback: Pingback {
                url: "http://a/v1/pingback".into(),
                interval_ms: 10_000,
                alternates: vec![],
            },
            cdn: vec!["http://cdn/live/demo/".into()],
            origin_public_key: "AAAA".into(),
            key_id: "00".into(),
            p2p: true,
            p2p_reason: None,
            ticket: "t1.k.a.b".into(),
            ticket_expires_ms: 1,
            engine: serde_json::Map::new(),
            api: vec![],
            server_time_ms: 0,
        };
        let text = serde_json::to_string(&resp).expect("serialize");
        assert!(!text.contains("p2p_reason"));
        let back: JoinResponse = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, resp);
    }
}
