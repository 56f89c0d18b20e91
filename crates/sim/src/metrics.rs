//! What a run measures while it runs: fixed-bin histograms, time series in buckets, and the
//! invariant checks.

use serde::Serialize;

/// A histogram with fixed-width bins; the last bin holds everything beyond.
#[derive(Clone, Debug)]
pub struct Hist {
    bin: f64,
    counts: Vec<u64>,
    n: u64,
    sum: f64,
}

impl Hist {
    pub fn new(bin: f64, bins: usize) -> Self {
        Hist { bin, counts: vec![0; bins.max(1)], n: 0, sum: 0.0 }
    }

    pub fn add(&mut self, v: f64) {
        let i = ((v.max(0.0) / self.bin) as usize).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.n += 1;
        self.sum += v;
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The value below which a share `q` of the samples lie (bin midpoint).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let target = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target {
                return Some((i as f64 + 0.5) * self.bin);
            }
        }
        None
    }
}

/// Exact quantile of a list (sorted in place).
pub fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

/// One time bucket of a run.
#[derive(Clone, Debug)]
pub struct Bucket {
    pub viewers_sum: u64,
    pub viewer_samples: u64,
    pub playing_sum: u64,
    pub cdn_bytes: u64,
    pub peer_bytes: u64,
    pub stalls: u64,
    pub stall_us: u64,
    pub latency: Hist,
    pub connections_sum: u64,
}

impl Bucket {
    fn new() -> Self {
        Bucket {
            viewers_sum: 0,
            viewer_samples: 0,
            playing_sum: 0,
            cdn_bytes: 0,
            peer_bytes: 0,
            stalls: 0,
            stall_us: 0,
            latency: Hist::new(100.0, 600),
            connections_sum: 0,
        }
    }
}

/// Time series over the run, in buckets of `bucket_us` from `origin_us`.
pub struct Series {
    pub origin_us: u64,
    pub bucket_us: u64,
    pub buckets: Vec<Bucket>,
}

impl Series {
    pub fn new(origin_us: u64, bucket_us: u64, span_us: u64) -> Self {
        let n = span_us.div_ceil(bucket_us.max(1)) as usize + 1;
        Series { origin_us, bucket_us, buckets: (0..n).map(|_| Bucket::new()).collect() }
    }

    pub fn at(&mut self, t_us: u64) -> &mut Bucket {
        let i = (t_us.saturating_sub(self.origin_us) / self.bucket_us) as usize;
        let last = self.buckets.len() - 1;
        &mut self.buckets[i.min(last)]
    }
}

/// The honesty checks. Each is counted, with the first few failures described.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Invariants {
    /// Data messages checked: the sender had received that chunk (from the CDN or a peer)
    /// and its bytes were the origin's.
    pub data_checked: u64,
    /// A peer sent a chunk it never received, or sent bytes that are not the origin's
    /// (liars excepted: their corruption is deliberate and must be rejected).
    pub data_from_nowhere: u64,
    /// Bytes sent by peers = bytes arrived + bytes still in flight or dropped at a closed
    /// channel; CDN bytes sent = bytes arrived + bytes cut off by cancels and departures.
    pub peer_bytes_unbalanced: u64,
    pub cdn_bytes_unbalanced: u64,
    /// Worst one-second upload of any viewer divided by its capacity (must stay ≤ 1 plus one
    /// message of slack) and the number of windows above that.
    pub max_upload_over_capacity: f64,
    pub upload_over_capacity: u64,
    /// Viewers that uploaded more than their byte budget.
    pub over_budget: u64,
    /// Bytes of a segment that reached anyone before the origin published it.
    pub before_publish: u64,
    /// Deliveries checked, deliveries the engine did not verify, deliveries whose bytes
    /// differ from the origin's.
    pub deliveries_checked: u64,
    pub unverified_deliveries: u64,
    pub wrong_bytes_delivered: u64,
    pub failures: Vec<String>,
}

impl Invariants {
    pub fn fail(&mut self, what: String) {
        if self.failures.len() < 20 {
            self.failures.push(what);
        }
    }

    /// Every check held. `p2p` runs also require every delivery to be verified.
    pub fn ok(&self, p2p: bool) -> bool {
        self.data_from_nowhere == 0
            && self.peer_bytes_unbalanced == 0
            && self.cdn_bytes_unbalanced == 0
            && self.upload_over_capacity == 0
            && self.over_budget == 0
            && self.before_publish == 0
            && self.wrong_bytes_delivered == 0
            && (!p2p || self.unverified_deliveries == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = Hist::new(10.0, 100);
        for v in 0..1000 {
            h.add(v as f64);
        }
        assert_eq!(h.quantile(0.5), Some(495.0));
        assert_eq!(h.quantile(0.95), Some(945.0));
        assert_eq!(h.count(), 1000);
        let mut v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50.0));
        assert_eq!(quantile(&mut v, 0.95), Some(95.0));
    }
}
