//! Counters: atomics for [`TrackerStats`] (tests, benchmarks) mirrored to Prometheus through
//! the `metrics` facade (`/metrics` is mounted by `shoal serve`).
//!
//! Metric names:
//! - `shoal_tracker_connections{path}` gauge — open WebSockets (`path` = `shoal` | `webtorrent`)
//! - `shoal_tracker_swarms`, `shoal_tracker_peers` gauges — set every sweep
//! - `shoal_tracker_announces_total{path}`, `shoal_tracker_signals_relayed_total{path}`
//! - `shoal_tracker_rejects_total{reason}` — connections closed or messages refused, by error code
//! - `shoal_tracker_dropped_total` — messages dropped because the receiver's queue was full
//! - `shoal_tracker_expired_total` — members removed for silence

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use shoal_proto::tracker::ErrorCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    Shoal,
    WebTorrent,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Shoal => "shoal",
            Path::WebTorrent => "webtorrent",
        }
    }
}

/// A snapshot of the tracker's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub connections: u64,
    pub swarms: u64,
    pub peers: u64,
    pub announces: u64,
    pub signals_relayed: u64,
    pub rejects: u64,
    pub dropped: u64,
    pub expired: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    connections: AtomicU64,
    swarms: AtomicU64,
    peers: AtomicU64,
    announces: AtomicU64,
    signals: AtomicU64,
    rejects: AtomicU64,
    dropped: AtomicU64,
    expired: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> TrackerStats {
        TrackerStats {
            connections: self.connections.load(Relaxed),
            swarms: self.swarms.load(Relaxed),
            peers: self.peers.load(Relaxed),
            announces: self.announces.load(Relaxed),
            signals_relayed: self.signals.load(Relaxed),
            rejects: self.rejects.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            expired: self.expired.load(Relaxed),
        }
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }

    pub fn conn_opened(&self, path: Path) {
        self.connections.fetch_add(1, Relaxed);
        metrics::gauge!("shoal_tracker_connections", "path" => path.label()).increment(1.0);
    }

    pub fn conn_closed(&self, path: Path) {
        self.connections.fetch_sub(1, Relaxed);
        metrics::gauge!("shoal_tracker_connections", "path" => path.label()).decrement(1.0);
    }

    pub fn swarm_created(&self) {
        self.swarms.fetch_add(1, Relaxed);
    }

    pub fn swarm_dropped(&self) {
        self.swarms.fetch_sub(1, Relaxed);
    }

    pub fn swarm_count(&self) -> u64 {
        self.swarms.load(Relaxed)
    }

    pub fn peer_joined(&self) {
        self.peers.fetch_add(1, Relaxed);
    }

    pub fn peers_left(&self, n: u64) {
        self.peers.fetch_sub(n, Relaxed);
    }

    pub fn announce(&self, path: Path) {
        self.announces.fetch_add(1, Relaxed);
        metrics::counter!("shoal_tracker_announces_total", "path" => path.label()).increment(1);
    }

    pub fn relayed(&self, path: Path, n: u64) {
        self.signals.fetch_add(n, Relaxed);
        metrics::counter!("shoal_tracker_signals_relayed_total", "path" => path.label()).increment(n);
    }

    pub fn reject(&self, code: ErrorCode) {
        self.rejects.fetch_add(1, Relaxed);
        metrics::counter!("shoal_tracker_rejects_total", "reason" => code.as_str()).increment(1);
    }

    pub fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
        metrics::counter!("shoal_tracker_dropped_total").increment(n);
    }

    pub fn expired(&self, n: u64) {
        self.expired.fetch_add(n, Relaxed);
        metrics::counter!("shoal_tracker_expired_total").increment(n);
    }

    /// Publish the gauges that are only exact between sweeps.
    pub fn publish_gauges(&self) {
        metrics::gauge!("shoal_tracker_swarms").set(self.swarms.load(Relaxed) as f64);
        metrics::gauge!("shoal_tracker_peers").set(self.peers.load(Relaxed) as f64);
    }
}
