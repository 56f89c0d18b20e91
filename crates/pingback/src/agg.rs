//! Aggregates: sums that merge by addition (so a Redis store can keep them with `HINCRBYFLOAT`
//! and every node can add to the same window) and log-bucket histograms for percentiles.

use serde::{Deserialize, Serialize};
use shoal_proto::pingback::{Figures, Report};

/// Smallest histogram bucket bound, ms; values below land in bucket 0.
const HIST_BASE_MS: f64 = 20.0;
/// Ratio between consecutive bucket bounds: percentiles are within ±6 % of the true value.
const HIST_RATIO: f64 = 1.12;
/// Buckets: 20 ms · 1.12^111 ≈ 97 min, beyond every bounded field (latency ≤ 60 min).
const HIST_BUCKETS: usize = 112;

/// A sparse histogram of millisecond values on fixed log-scale buckets (identical on every
/// node, so histograms merge by adding counts). Holds only the buckets in use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// (bucket, count), sorted by bucket.
    buckets: Vec<(u8, u32)>,
}

fn bucket_of(ms: f64) -> u8 {
    if ms < HIST_BASE_MS {
        return 0;
    }
    let b = ((ms / HIST_BASE_MS).ln() / HIST_RATIO.ln()).floor() as usize + 1;
    b.min(HIST_BUCKETS - 1) as u8
}

/// `[low, high)` of a bucket, ms.
fn bucket_bounds(b: u8) -> (f64, f64) {
    if b == 0 {
        return (0.0, HIST_BASE_MS);
    }
    let low = HIST_BASE_MS * HIST_RATIO.powi(b as i32 - 1);
    (low, low * HIST_RATIO)
}

impl Histogram {
    pub fn record(&mut self, ms: u64) {
        self.add_count(bucket_of(ms as f64), 1);
    }

    fn add_count(&mut self, b: u8, n: u32) {
        match self.buckets.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => self.buckets[i].1 = self.buckets[i].1.saturating_add(n),
            Err(i) => self.buckets.insert(i, (b, n)),
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        for &(b, n) in &other.buckets {
            self.add_count(b, n);
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| *n as u64).sum()
    }

    pub fn buckets(&self) -> &[(u8, u32)] {
        &self.buckets
    }

    /// The q-quantile (0..=1), interpolated inside its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0.0;
        for &(b, n) in &self.buckets {
            let n = n as f64;
            if seen + n >= rank {
                let (lo, hi) = bucket_bounds(b);
                let within = if n > 0.0 { ((rank - seen) / n).clamp(0.0, 1.0) } else { 0.5 };
                return Some(lo + (hi - lo) * within);
            }
            seen += n;
        }
        self.buckets.last().map(|&(b, _)| bucket_bounds(b).1)
    }
}

/// The sums of one key in one window (or several merged). Every field adds up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Session time covered, ms (viewers = session_ms / span).
    pub session_ms: f64,
    pub reports: u64,
    pub http_bytes: f64,
    pub manifest_bytes: f64,
    pub p2p_down_bytes: f64,
    pub p2p_up_bytes: f64,
    pub wasted_bytes: f64,
    pub segments_verified: f64,
    pub verify_failures: f64,
    pub stalls: f64,
    pub stall_ms: f64,
    pub play_ms: f64,
    /// Σ peers_connected × time, peer·ms.
    pub peer_ms: f64,
    pub connect_attempts: f64,
    pub connects_opened: f64,
    pub startup: Histogram,
    pub latency: Histogram,
}

impl Aggregate {
    /// The spread part of a report: its counters × `fraction` (the share of its period that
    /// falls in one window). Reports count, startup and latency go where the period ends
    /// ([`Aggregate::point_part`]).
    pub fn spread_part(r: &Report, fraction: f64) -> Aggregate {
        let f = |v: u64| v as f64 * fraction;
        Aggregate {
            session_ms: f(r.period_ms),
            reports: 0,
            http_bytes: f(r.http_bytes),
            manifest_bytes: f(r.manifest_bytes),
            p2p_down_bytes: f(r.p2p_down_bytes),
            p2p_up_bytes: f(r.p2p_up_bytes),
            wasted_bytes: f(r.wasted_bytes),
            segments_verified: f(r.segments_verified),
            verify_failures: f(r.verify_failures),
            stalls: f(r.stalls),
            stall_ms: f(r.stall_ms),
            play_ms: f(r.play_ms),
            peer_ms: f(r.period_ms) * r.peers_connected as f64,
            connect_attempts: f(r.connect_attempts),
            connects_opened: f(r.connects_opened),
            startup: Histogram::default(),
            latency: Histogram::default(),
        }
    }

    /// The point part of a report: it counts once, with its startup (first report only, as
    /// the ledger decides) and latency samples.
    pub fn point_part(r: &Report, with_startup: bool) -> Aggregate {
        let mut a = Aggregate { reports: 1, ..Default::default() };
        if let (true, Some(s)) = (with_startup, r.startup_ms) {
            a.startup.record(s);
        }
        if let Some(l) = r.latency_ms {
            a.latency.record(l);
        }
        a
    }

    pub fn merge(&mut self, o: &Aggregate) {
        self.session_ms += o.session_ms;
        self.reports += o.reports;
        self.http_bytes += o.http_bytes;
        self.manifest_bytes += o.manifest_bytes;
        self.p2p_down_bytes += o.p2p_down_bytes;
        self.p2p_up_bytes += o.p2p_up_bytes;
        self.wasted_bytes += o.wasted_bytes;
        self.segments_verified += o.segments_verified;
        self.verify_failures += o.verify_failures;
        self.stalls += o.stalls;
        self.stall_ms += o.stall_ms;
        self.play_ms += o.play_ms;
        self.peer_ms += o.peer_ms;
        self.connect_attempts += o.connect_attempts;
        self.connects_opened += o.connects_opened;
        self.startup.merge(&o.startup);
        self.latency.merge(&o.latency);
    }

    /// Watch time (play + stall), ms.
    pub fn watch_ms(&self) -> f64 {
        self.play_ms + self.stall_ms
    }

    /// The derived figures over a span of `span_ms`.
    pub fn figures(&self, span_ms: u64) -> Figures {
        let ratio = |num: f64, den: f64| (den > 0.0).then(|| num / den);
        let span_s = span_ms.max(1) as f64 / 1000.0;
        let mbps = |bytes: f64| bytes * 8.0 / span_s / 1e6;
        let useful = self.http_bytes + self.p2p_down_bytes - self.wasted_bytes;
        Figures {
            viewers: self.session_ms / span_ms.max(1) as f64,
            reports: self.reports,
            http_bytes: self.http_bytes,
            manifest_bytes: self.manifest_bytes,
            p2p_bytes: self.p2p_down_bytes,
            upload_bytes: self.p2p_up_bytes,
            wasted_bytes: self.wasted_bytes,
            http_mbps: mbps(self.http_bytes),
            p2p_mbps: mbps(self.p2p_down_bytes),
            upload_mbps: mbps(self.p2p_up_bytes),
            offload: ratio(self.p2p_down_bytes, self.p2p_down_bytes + self.http_bytes),
            net_offload: (useful > 0.0).then(|| 1.0 - (self.http_bytes + self.manifest_bytes) / useful),
            stalls: self.stalls,
            stall_ms: self.stall_ms,
            play_ms: self.play_ms,
            stall_ratio: ratio(self.stall_ms, self.watch_ms()),
            stalls_per_hour: ratio(self.stalls * 3_600_000.0, self.watch_ms()),
            startup_samples: self.startup.count(),
            startup_p50_ms: self.startup.quantile(0.5),
            startup_p95_ms: self.startup.quantile(0.95),
            latency_samples: self.latency.count(),
            latency_p50_ms: self.latency.quantile(0.5),
            latency_p95_ms: self.latency.quantile(0.95),
            peers_per_viewer: ratio(self.peer_ms, self.session_ms),
            connect_attempts: self.connect_attempts,
            connects_opened: self.connects_opened,
            connect_success: ratio(self.connects_opened, self.connect_attempts).map(|r| r.min(1.0)),
            segments_verified: self.segments_verified,
            integrity_failures: self.verify_failures,
        }
    }
}

/// How a report's period `[end − period, end)` splits over windows of `window_ms`:
/// `(window start, fraction)` pairs whose fractions add up to 1.
pub fn spread(end_ms: u64, period_ms: u64, window_ms: u64) -> Vec<(u64, f64)> {
    let window_ms = window_ms.max(1);
    if period_ms == 0 {
        return vec![(end_ms - end_ms % window_ms, 1.0)];
    }
    let start = end_ms.saturating_sub(period_ms);
    let period = (end_ms - start).max(1) as f64;
    let mut out = Vec::new();
    let mut w = start - start % window_ms;
    // A period is at most MAX_PERIOD_MS and a window at least 1 s: at most 601 steps.
    while w < end_ms && out.len() <= 1_000 {
        let overlap = end_ms.min(w + window_ms) - start.max(w);
        out.push((w, overlap as f64 / period));
        w += window_ms;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 10); // 10 ms .. 10 s, uniform
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5).expect("non-empty");
        let p95 = h.quantile(0.95).expect("non-empty");
        assert!((p50 - 5_000.0).abs() / 5_000.0 < 0.07, "p50 {p50}");
        assert!((p95 - 9_500.0).abs() / 9_500.0 < 0.07, "p95 {p95}");
        assert_eq!(Histogram::default().quantile(0.5), None);
        // Merging equals recording into one.
        let (mut a, mut b, mut all) = (Histogram::default(), Histogram::default(), Histogram::default());
        for v in [5u64, 300, 800, 2_000, 3_600_000 * 10] {
            a.record(v);
            all.record(v);
        }
        for v in [40u64, 300, 9_000] {
            b.record(v);
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert!(a.buckets().windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    }

    #[test]
    fn spread_splits_periods_over_windows() {
        assert_eq!(spread(25_000, 10_000, 10_000), vec![(10_000, 0.5), (20_000, 0.5)]);
        assert_eq!(spread(20_000, 10_000, 10_000), vec![(10_000, 1.0)]);
        assert_eq!(spread(7_000, 0, 10_000), vec![(0, 1.0)]);
        let parts = spread(1_000_000, 600_000, 1_000);
        assert_eq!(parts.len(), 600);
        assert!((parts.iter().map(|p| p.1).sum::<f64>() - 1.0).abs() < 1e-9);
        // A period longer than the clock (early boot): starts at 0.
        assert_eq!(spread(5_000, 10_000, 10_000), vec![(0, 1.0)]);
    }

    #[test]
    fn figures_follow_the_definitions() {
        let r = Report {
            period_ms: 10_000,
            http_bytes: 1_000_000,
            manifest_bytes: 10_000,
            p2p_down_bytes: 3_000_000,
            wasted_bytes: 100_000,
            play_ms: 9_900,
            stall_ms: 100,
            stalls: 1,
            peers_connected: 4,
            connect_attempts: 5,
            connects_opened: 4,
            startup_ms: Some(700),
            latency_ms: Some(6_000),
            ..Default::default()
        };
        let mut a = Aggregate::spread_part(&r, 1.0);
        a.merge(&Aggregate::point_part(&r, true));
        let f = a.figures(10_000);
        assert!((f.viewers - 1.0).abs() < 1e-9);
        assert_eq!(f.offload, Some(0.75));
        let net = f.net_offload.expect("useful bytes");
        assert!((net - (1.0 - 1_010_000.0 / 3_900_000.0)).abs() < 1e-9, "{net}");
        assert_eq!(f.stall_ratio, Some(0.01));
        assert!((f.http_mbps - 0.8).abs() < 1e-9);
        assert_eq!(f.peers_per_viewer, Some(4.0));
        assert_eq!(f.connect_success, Some(0.8));
        assert_eq!(f.startup_samples, 1);
        let s = f.startup_p50_ms.expect("one sample");
        assert!((600.0..800.0).contains(&s), "{s}");
        let empty = Aggregate::default().figures(10_000);
        assert_eq!((empty.offload, empty.stall_ratio, empty.net_offload), (None, None, None));
    }
}
