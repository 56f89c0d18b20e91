//! What a running client reports: the engine's counters plus the SDK's own (connections,
//! NAT, tracker). Serialized as the JSON of `shoal_client_stats_json` and of status lines.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Milliseconds since the client started.
    pub uptime_ms: u64,
    /// A join succeeded and the API allowed P2P.
    pub joined: bool,
    pub p2p: bool,
    pub peer_id: String,
    pub stream: String,
    /// The tracker URL connected now ("" = none).
    pub tracker: String,
    /// Server-reflexive address learned from STUN ("" = none yet).
    pub srflx: String,
    pub local_candidates: Vec<String>,
    /// Base64 Ed25519 key the origin signs segment entries with (from the join; "" = none).
    pub origin_public_key: String,
    // --- engine counters (bytes are segment payload bytes)
    pub http_bytes: u64,
    pub manifest_bytes: u64,
    pub p2p_down_bytes: u64,
    pub p2p_up_bytes: u64,
    pub wasted_bytes: u64,
    pub delivered: u64,
    pub delivered_from_peers: u64,
    pub delivered_from_cdn: u64,
    pub delivered_mixed: u64,
    pub delivered_late: u64,
    pub segments_verified: u64,
    pub verify_failures: u64,
    pub unverified_deliveries: u64,
    pub http_failures: u64,
    pub peers_banned: u64,
    pub startup_ms: Option<u64>,
    /// Share of segment bytes that came from peers.
    pub p2p_share: f64,
    // --- connections
    pub peers_connected: u32,
    pub connect_attempts: u64,
    pub connects_opened: u64,
    pub connect_failures: u64,
    /// Peer ids dropped by the engine for bad data or protocol errors.
    pub misbehaving_peers: Vec<String>,
    /// Proxy: segment requests answered by fetching the CDN directly (engine failure or timeout).
    pub proxy_fallbacks: u64,
}

impl StatsSnapshot {
    pub(crate) fn fill_engine(&mut self, s: &shoal_engine::Stats) {
        self.http_bytes = s.http_bytes;
        self.manifest_bytes = s.manifest_bytes;
        self.p2p_down_bytes = s.p2p_down_bytes;
        self.p2p_up_bytes = s.p2p_up_bytes;
        self.wasted_bytes = s.wasted_bytes;
        self.delivered = s.delivered;
        self.delivered_from_peers = s.delivered_from_peers;
        self.delivered_from_cdn = s.delivered_from_cdn;
        self.delivered_mixed = s.delivered_mixed;
        self.delivered_late = s.delivered_late;
        self.segments_verified = s.segments_verified;
        self.verify_failures = s.verify_failures;
        self.unverified_deliveries = s.unverified_deliveries;
        self.http_failures = s.http_failures;
        self.peers_banned = s.peers_banned;
        self.startup_ms = s.startup_ms;
        self.p2p_share = s.offload();
    }

    /// Add the counters of a previous engine (the client replaces its engine when it joins).
    pub(crate) fn add_carried(&mut self, c: &StatsSnapshot) {
        self.http_bytes += c.http_bytes;
        self.manifest_bytes += c.manifest_bytes;
        self.p2p_down_bytes += c.p2p_down_bytes;
        self.p2p_up_bytes += c.p2p_up_bytes;
        self.wasted_bytes += c.wasted_bytes;
        self.delivered += c.delivered;
        self.delivered_from_peers += c.delivered_from_peers;
        self.delivered_from_cdn += c.delivered_from_cdn;
        self.delivered_mixed += c.delivered_mixed;
        self.delivered_late += c.delivered_late;
        self.segments_verified += c.segments_verified;
        self.verify_failures += c.verify_failures;
        self.unverified_deliveries += c.unverified_deliveries;
        self.http_failures += c.http_failures;
        self.peers_banned += c.peers_banned;
        self.startup_ms = c.startup_ms.or(self.startup_ms);
        let total = self.http_bytes + self.p2p_down_bytes;
        self.p2p_share = if total == 0 { 0.0 } else { self.p2p_down_bytes as f64 / total as f64 };
    }
}
