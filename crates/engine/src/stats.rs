//! Counters the engine keeps; pingback reports them every 10 s (as differences).

/// All byte counts are payload bytes of segments unless the name says otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segment bytes received from the CDN.
    pub http_bytes: u64,
    /// Manifest bytes received from the CDN (overhead of verification).
    pub manifest_bytes: u64,
    /// Segment bytes received from peers and accepted.
    pub p2p_down_bytes: u64,
    /// Segment bytes sent to peers.
    pub p2p_up_bytes: u64,
    /// Bytes received and thrown away: duplicates, data after a cancel, failed verification.
    pub wasted_bytes: u64,
    /// Segments handed to the player.
    pub delivered: u64,
    pub delivered_from_peers: u64,
    pub delivered_from_cdn: u64,
    pub delivered_mixed: u64,
    /// Deliveries after the deadline the engine computed for them.
    pub delivered_late: u64,
    /// Segments whose every chunk matched the signed hashes.
    pub segments_verified: u64,
    /// Chunks (from peers) or segments (from the CDN) that failed verification.
    pub verify_failures: u64,
    /// Segments whose signed entry was never available (delivered unverified from the CDN).
    pub unverified_deliveries: u64,
    /// CDN downloads started: first fetches at the live edge, and fallbacks by cause.
    pub cdn_fetches_edge: u64,
    pub cdn_fallback_deadline: u64,
    pub cdn_fallback_no_source: u64,
    pub cdn_fallback_startup: u64,
    /// HTTP requests that failed (and were retried or reported).
    pub http_failures: u64,
    /// Requests from peers: served, answered busy, answered absent.
    pub uploads_served: u64,
    pub uploads_busy: u64,
    pub uploads_absent: u64,
    /// Peers disconnected for bad data or protocol errors.
    pub peers_banned: u64,
    /// Peers with an open, greeted channel right now.
    pub peers_connected: u32,
    /// Milliseconds from the first player request to the first delivery.
    pub startup_ms: Option<u64>,
}

impl Stats {
    /// Share of segment bytes that came from peers.
    pub fn offload(&self) -> f64 {
        let total = self.http_bytes + self.p2p_down_bytes;
        if total == 0 {
            0.0
        } else {
            self.p2p_down_bytes as f64 / total as f64
        }
    }
}
