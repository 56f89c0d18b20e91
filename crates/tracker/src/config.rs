//! The tracker's configuration: one TOML section (`[tracker]` in `shoal serve`'s file), every
//! field optional with the default documented here.

use serde::{Deserialize, Serialize};
use shoal_swarm::SelectionConfig;

/// Tracker configuration. `TrackerConfig::default()` is a sensible production start; every
/// count and length that comes from a client is bounded by one of these fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// Shoal path: heartbeat (re-announce) interval told to clients, ms. Default 15 000.
    pub announce_interval_ms: u64,
    /// Shoal path: a member not heard from for this long is removed, and its connection
    /// closed. Must leave room for one sweep within two intervals
    /// (`peer_timeout_ms + sweep_interval_ms <= 2 × announce_interval_ms`). Default 22 500.
    pub peer_timeout_ms: u64,
    /// How often expired members are swept, ms. Default 2 000.
    pub sweep_interval_ms: u64,
    /// A new connection must announce within this many ms. Default 10 000.
    pub handshake_timeout_ms: u64,
    /// Members per swarm; announces beyond it get `swarm_full`. Default 20 000.
    pub max_peers_per_swarm: usize,
    /// Swarms per tracker (both protocols together). Default 100 000.
    pub max_swarms: usize,
    /// Open WebSocket connections (both paths); upgrades beyond it get HTTP 503. Default 100 000.
    pub max_connections: usize,
    /// Largest WebSocket message (and frame) accepted, bytes. Default 65 536.
    pub max_message_bytes: usize,
    /// Largest `signal` payload (Shoal) or offer/answer object (WebTorrent), bytes.
    /// Default 16 384.
    pub max_signal_bytes: usize,
    /// Most candidates returned per announce (`want` is clamped to it). Default 32.
    pub max_want: u32,
    /// Most entries in an announce's `connected` list. Default 64.
    pub max_connected: usize,
    /// Messages queued towards one connection; beyond it messages to it are dropped (and
    /// counted) rather than buffered. Default 64.
    pub outbound_queue: usize,
    /// A write to a client that takes longer than this closes it (`slow_consumer`), ms.
    /// Default 10 000.
    pub write_timeout_ms: u64,
    /// Sustained client messages per second per connection. Default 20.
    pub rate_per_sec: u32,
    /// Burst of client messages above the sustained rate. Default 40.
    pub rate_burst: u32,
    /// How long a departed member is remembered, so a `signal` to it is answered with the
    /// non-fatal `peer_gone` instead of closing the sender, ms. Default 30 000.
    pub departed_grace_ms: u64,
    /// WebSocket read buffer per connection, bytes (it grows up to the largest message read).
    /// Default 4 096.
    pub read_buffer_bytes: usize,
    /// Neighbour scoring and sampling.
    pub selection: SelectionConfig,
    /// IP prefix → locality label table and client hints.
    pub locality: LocalityConfig,
    /// The WebTorrent tracker protocol on `/announce`.
    pub webtorrent: WebTorrentConfig,
    /// Seed of the selection's random tie-breaks and sampling (0 = from the clock).
    pub seed: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            announce_interval_ms: 15_000,
            peer_timeout_ms: 22_500,
            sweep_interval_ms: 2_000,
            handshake_timeout_ms: 10_000,
            max_peers_per_swarm: 20_000,
            max_swarms: 100_000,
            max_connections: 100_000,
            max_message_bytes: 64 * 1024,
            max_signal_bytes: 16 * 1024,
            max_want: 32,
            max_connected: 64,
            outbound_queue: 64,
            write_timeout_ms: 10_000,
            rate_per_sec: 20,
            rate_burst: 40,
            departed_grace_ms: 30_000,
            read_buffer_bytes: 4_096,
            selection: SelectionConfig::default(),
            locality: LocalityConfig::default(),
            webtorrent: WebTorrentConfig::default(),
            seed: 0,
        }
    }
}

/// One row of the locality table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalityRule {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (= /32 or /128).
    pub cidr: String,
    /// Label, `[a-z0-9_.:-]{1,64}`, e.g. `isp-a:eu-west`.
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalityConfig {
    /// Longest prefix wins. Default empty (every peer's locality is "").
    pub table: Vec<LocalityRule>,
    /// Use the client's `locality` hint when the table has no match. Default true.
    pub accept_client_hint: bool,
    /// Read the client address from the first `X-Forwarded-For` entry (behind a reverse
    /// proxy you run). Default false.
    pub trust_forwarded_for: bool,
}

impl Default for LocalityConfig {
    fn default() -> Self {
        Self { table: Vec::new(), accept_client_hint: true, trust_forwarded_for: false }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebTorrentConfig {
    /// Serve the WebTorrent protocol on `/announce`. Default true.
    pub enabled: bool,
    /// `interval` told to WebTorrent clients, seconds. Default 120 (as aquatic_ws and
    /// bittorrent-tracker); members expire after 1.5 × this.
    pub announce_interval_s: u64,
    /// Offers forwarded per announce (extra offers are ignored). Default 10.
    pub max_offers: usize,
    /// Swarms (info hashes) one connection may join. Default 16.
    pub max_swarms_per_connection: usize,
    /// Info hashes per scrape. Default 64.
    pub max_scrape: usize,
    /// Upload capacity assumed for WebTorrent peers in scoring (they do not report one),
    /// kbit/s. Default 2 000.
    pub assumed_upload_kbps: u32,
}

impl Default for WebTorrentConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            announce_interval_s: 120,
            max_offers: 10,
            max_swarms_per_connection: 16,
            max_scrape: 64,
            assumed_upload_kbps: 2_000,
        }
    }
}

impl TrackerConfig {
    /// Reject configurations that cannot keep the protocol's promises.
    pub fn validate(&self) -> Result<(), String> {
        let c = self;
        let positive = [
            ("announce_interval_ms", c.announce_interval_ms),
            ("peer_timeout_ms", c.peer_timeout_ms),
            ("sweep_interval_ms", c.sweep_interval_ms),
            ("handshake_timeout_ms", c.handshake_timeout_ms),
            ("write_timeout_ms", c.write_timeout_ms),
            ("rate_per_sec", u64::from(c.rate_per_sec)),
            ("rate_burst", u64::from(c.rate_burst)),
            ("max_peers_per_swarm", c.max_peers_per_swarm as u64),
            ("max_swarms", c.max_swarms as u64),
            ("max_connections", c.max_connections as u64),
            ("outbound_queue", c.outbound_queue as u64),
            ("webtorrent.announce_interval_s", c.webtorrent.announce_interval_s),
            ("webtorrent.max_swarms_per_connection", c.webtorrent.max_swarms_per_connection as u64),
            ("selection.sample_size", c.selection.sample_size as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("tracker.{name} must be positive"));
        }
        if c.peer_timeout_ms < c.announce_interval_ms {
            return Err("tracker.peer_timeout_ms must be at least announce_interval_ms".into());
        }
        if c.peer_timeout_ms + c.sweep_interval_ms > 2 * c.announce_interval_ms {
            return Err(
                "tracker: peer_timeout_ms + sweep_interval_ms must not exceed 2 × announce_interval_ms \
                 (dead peers must be gone within two intervals)"
                    .into(),
            );
        }
        if c.max_message_bytes < 1024 || c.max_message_bytes > 16 << 20 {
            return Err("tracker.max_message_bytes must be within 1 KiB..=16 MiB".into());
        }
        if c.max_signal_bytes == 0 || c.max_signal_bytes > c.max_message_bytes {
            return Err("tracker.max_signal_bytes must be within 1..=max_message_bytes".into());
        }
        if c.read_buffer_bytes < 256 || c.read_buffer_bytes > c.max_message_bytes {
            return Err("tracker.read_buffer_bytes must be within 256..=max_message_bytes".into());
        }
        if c.max_want > 256 || c.max_connected > 1024 || c.webtorrent.max_offers > 100 {
            return Err("tracker: max_want ≤ 256, max_connected ≤ 1024, webtorrent.max_offers ≤ 100".into());
        }
        if c.webtorrent.max_scrape > 1024 {
            return Err("tracker.webtorrent.max_scrape must be ≤ 1024".into());
        }
        crate::locality::LocalityTable::new(&c.locality.table)?;
        Ok(())
    }

    /// Member timeout of the WebTorrent path (1.5 × its interval), ms.
    pub fn webtorrent_peer_timeout_ms(&self) -> u64 {
        self.webtorrent.announce_interval_s.saturating_mul(1_500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let c = TrackerConfig::default();
        c.validate().expect("defaults are valid");
        let text = toml::to_string(&c).expect("serializes");
        let back: TrackerConfig = toml::from_str(&text).expect("parses");
        assert_eq!(back, c);
        let partial: TrackerConfig = toml::from_str("announce_interval_ms = 20000\npeer_timeout_ms = 30000")
            .expect("partial config parses");
        assert_eq!(partial.max_want, 32);
        partial.validate().expect("valid");
    }

    #[test]
    fn rejects_a_timeout_beyond_two_intervals() {
        let c = TrackerConfig { peer_timeout_ms: 30_000, ..TrackerConfig::default() };
        assert!(c.validate().expect_err("too long").contains("two intervals"));
        let c = TrackerConfig { max_signal_bytes: 1 << 20, ..TrackerConfig::default() };
        assert!(c.validate().is_err());
        let c = TrackerConfig { rate_per_sec: 0, ..TrackerConfig::default() };
        assert!(c.validate().is_err());
        assert!(toml::from_str::<TrackerConfig>("no_such_key = 1").is_err());
    }
}
