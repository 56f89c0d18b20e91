//! Every knob of the engine, with its default. The API hands clients a JSON object of
//! overrides (`JoinResponse.engine`); unknown fields are refused so a typo is noticed.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Master switch. Off: every segment comes from the CDN, no peer traffic at all.
    pub p2p_enabled: bool,
    /// Never serve other peers (metered or battery-powered devices). Downloads from peers
    /// still happen.
    pub consume_only: bool,
    /// This client's upload capacity estimate in kbit/s, announced to peers; it weighs how
    /// often this client is chosen to fetch a new segment from the CDN. 0 = unknown.
    pub upload_kbps: u32,
    /// Upload rate limit in kbit/s (0 = no limit).
    pub max_upload_kbps: u32,
    /// Total bytes this client may upload in its session (0 = no limit).
    pub upload_budget_bytes: u64,
    /// Requests served at once when the upload capacity is unknown; further requests get
    /// `Busy`. With a known capacity, a request is refused once half a second of upload is
    /// promised (and at most 4 × this many are served).
    pub max_uploads: u32,
    /// Requests for segments this client does not hold yet that it keeps open (it expects to
    /// receive them soon and relays them chunk by chunk).
    pub max_parked_uploads: u32,
    /// How long a parked request waits for its segment to start arriving.
    pub park_timeout_ms: u64,
    /// Bytes queued in one DataChannel before the engine stops writing to it.
    pub send_window_bytes: u64,
    /// Target number of clients in the whole swarm that fetch each new segment from the CDN
    /// at once; adapted up when segments arrive late, down when they do not.
    pub fetchers_target: f64,
    pub fetchers_max: f64,
    /// A local maximum of the rendezvous ranking that lost the thinning lottery waits this
    /// long for a peer to announce the segment before fetching it from the CDN itself.
    pub secondary_wait_ms: u64,
    /// A client that asked a better-ranked neighbour for a new segment waits this long for
    /// data before fetching it from the CDN itself.
    pub uphill_wait_ms: u64,
    /// Safety margin kept between the CDN switch-over and the playback deadline.
    pub cdn_margin_ms: u64,
    /// A peer download that makes no progress for this long is moved elsewhere.
    pub peer_stall_ms: u64,
    /// Parts a segment is split into, each fetched from its own source (so several
    /// neighbours relay a new segment at once, each a part).
    pub stripes: u32,
    /// Initial CDN estimates, replaced by measurements.
    pub cdn_ttfb_ms: u64,
    pub cdn_kbps: u32,
    /// Segments kept per rendition (for playback and for serving peers).
    pub cache_segments: usize,
    /// Ask for more peers when fewer than this many are connected.
    pub min_peers: u32,
    /// Keepalive ping interval per peer.
    pub ping_interval_ms: u64,
    /// A peer silent for this long is disconnected.
    pub peer_timeout_ms: u64,
    /// File name of the signed manifest next to each media playlist.
    pub manifest_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            p2p_enabled: true,
            consume_only: false,
            upload_kbps: 0,
            max_upload_kbps: 0,
            upload_budget_bytes: 0,
            max_uploads: 6,
            max_parked_uploads: 8,
            park_timeout_ms: 3_000,
            send_window_bytes: 256 * 1024,
            fetchers_target: 2.0,
            fetchers_max: 8.0,
            secondary_wait_ms: 100,
            uphill_wait_ms: 500,
            cdn_margin_ms: 700,
            peer_stall_ms: 1_000,
            stripes: 4,
            cdn_ttfb_ms: 300,
            cdn_kbps: 8_000,
            cache_segments: 10,
            min_peers: 4,
            ping_interval_ms: 5_000,
            peer_timeout_ms: 15_000,
            manifest_name: "manifest.json".to_owned(),
        }
    }
}

impl Config {
    /// Check ranges; a config that fails here is refused, never half-applied.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.max_uploads == 0 && !self.consume_only {
            return Err("max_uploads must be at least 1 unless consume_only");
        }
        if !(self.fetchers_target > 0.0 && self.fetchers_target <= self.fetchers_max) {
            return Err("fetchers_target must be in (0, fetchers_max]");
        }
        if !(1..=16).contains(&self.stripes) {
            return Err("stripes must be in 1..=16");
        }
        if self.cache_segments < 3 {
            return Err("cache_segments must be at least 3");
        }
        if self.send_window_bytes < 32 * 1024 {
            return Err("send_window_bytes must be at least 32 KiB");
        }
        if self.manifest_name.is_empty() || self.manifest_name.contains('/') {
            return Err("manifest_name must be a file name");
        }
        Ok(())
    }
}
