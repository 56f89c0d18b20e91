//! Configuration of the API role: the `[auth]`, `[tickets]` and `[api]` sections of
//! `shoal serve`'s file. Every field has a default (see `config/shoal.example.toml`).

use serde::{Deserialize, Serialize};
use shoal_stun::ratelimit::RateLimitConfig;

/// `[auth]`: viewer tokens and the admin endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Token secrets as `kid:secret` (secret ≥ 16 bytes). Several may be listed so a secret
    /// rotates without downtime: add the new one, mint with it, remove the old one after the
    /// longest token lifetime.
    pub keys: Vec<String>,
    /// Key id `shoal token` and the admin endpoint mint with (empty: the first key).
    pub mint_kid: String,
    /// Refuse joins without a valid token. `false` admits anyone to any stream (demos, tests).
    pub require_token: bool,
    /// Clock skew tolerated on `exp`/`nbf`, seconds.
    pub leeway_s: u64,
    /// Lifetime of minted tokens when the request names none, seconds.
    pub default_ttl_s: u64,
    /// Longest lifetime the admin endpoint mints, seconds.
    pub max_ttl_s: u64,
    /// Bearer secret of `POST /v1/admin/tokens` (empty: the endpoint is off and answers 404).
    pub admin_secret: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            keys: Vec::new(),
            mint_kid: String::new(),
            require_token: true,
            leeway_s: 30,
            default_ttl_s: 3600,
            max_ttl_s: 7 * 24 * 3600,
            admin_secret: String::new(),
        }
    }
}

/// `[tickets]`: the API→tracker admission tickets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketsConfig {
    /// Shared with every tracker, as `kid:secret`. Empty: a random secret per process, which
    /// only works while API and tracker run in the same process.
    pub keys: Vec<String>,
    pub mint_kid: String,
    /// Ticket lifetime, seconds. A client whose ticket expired joins again before it
    /// reconnects to a tracker.
    pub ttl_s: u64,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        TicketsConfig { keys: Vec::new(), mint_kid: String::new(), ttl_s: 1800 }
    }
}

/// A tracker node a stream may be assigned to: its WebSocket URL and a weight (its share of
/// the streams). Written either as a plain URL string or as `{ url = "...", weight = 2.0 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TrackerNodeConfig {
    Url(String),
    Weighted { url: String, weight: f64 },
}

impl TrackerNodeConfig {
    pub fn url(&self) -> &str {
        match self {
            TrackerNodeConfig::Url(u) | TrackerNodeConfig::Weighted { url: u, .. } => u,
        }
    }
    pub fn weight(&self) -> f64 {
        match self {
            TrackerNodeConfig::Url(_) => 1.0,
            TrackerNodeConfig::Weighted { weight, .. } => *weight,
        }
    }
}

/// `[api]`: the join endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// CDN base URLs in failover order; `{stream}` is replaced by the stream name
    /// (e.g. `https://cdn.example.com/live/{stream}/`).
    pub cdn: Vec<String>,
    /// Base64 Ed25519 public key of the origin (`shoal keygen` writes it). Empty: joins
    /// answer `p2p = false` (`no_origin_key`), since peers could not verify segments.
    pub origin_public_key: String,
    /// Master switch for P2P; `false` sends every viewer to the CDN.
    pub p2p: bool,
    /// Share of sessions (0–100) kept CDN-only as a control group (`p2p_reason = holdback`).
    pub holdback_percent: f64,
    /// Candidate tracker nodes. Each stream gets `tracker_count` of them, chosen by weighted
    /// rendezvous hashing on the stream name (every API node picks the same ones). Empty: the
    /// tracker role of this process.
    pub trackers: Vec<TrackerNodeConfig>,
    /// How many tracker URLs a join returns (primary + standbys).
    pub tracker_count: usize,
    /// Other API base URLs handed to clients for failover, in order.
    pub api_urls: Vec<String>,
    /// Streams this API admits (empty: any valid stream name). Others get 404.
    pub streams: Vec<String>,
    /// Page origins allowed for every request, whatever the token says (empty: any). Same
    /// pattern syntax as the token's `origins` claim.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies in front of the API whose `X-Forwarded-For` entry is trusted: the
    /// client address is the n-th entry from the right (0: the TCP peer address).
    pub forwarded_hops: usize,
    /// Per-client-address limit on join and admin requests (429 beyond it).
    pub rate_limit: RateLimitConfig,
    /// Engine configuration overrides passed to clients verbatim (the engine owns the schema).
    pub engine: serde_json::Map<String, serde_json::Value>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            cdn: Vec::new(),
            origin_public_key: String::new(),
            p2p: true,
            holdback_percent: 5.0,
            trackers: Vec::new(),
            tracker_count: 3,
            api_urls: Vec::new(),
            streams: Vec::new(),
            allowed_origins: Vec::new(),
            forwarded_hops: 0,
            rate_limit: RateLimitConfig::new(5.0, 20),
            engine: serde_json::Map::new(),
        }
    }
}
