//! Throughput and latency estimates. Conservative on purpose: a fast decrease and a slow
//! increase, as player ABR estimators do, because a too-optimistic CDN estimate is what makes a
//! deadline switch-over come too late.

/// Exponentially weighted moving average that drops fast and climbs slowly.
#[derive(Clone, Debug)]
pub struct Ewma {
    value: f64,
    samples: u32,
}

impl Ewma {
    pub fn new(initial: f64) -> Self {
        Ewma { value: initial, samples: 0 }
    }

    pub fn get(&self) -> f64 {
        self.value
    }

    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// Add a sample; `down` and `up` are the weights of the new sample when it is below or
    /// above the current value.
    pub fn add(&mut self, sample: f64, down: f64, up: f64) {
        if !sample.is_finite() || sample < 0.0 {
            return;
        }
        if self.samples == 0 {
            self.value = sample;
        } else {
            let a = if sample < self.value { down } else { up };
            self.value += a * (sample - self.value);
        }
        self.samples = self.samples.saturating_add(1);
    }
}

/// The CDN as this client sees it: time to first byte and bytes per millisecond.
#[derive(Clone, Debug)]
pub struct CdnEstimate {
    pub ttfb_ms: Ewma,
    /// Bytes per millisecond (= kB/s).
    pub rate: Ewma,
}

impl CdnEstimate {
    pub fn new(ttfb_ms: u64, kbps: u32) -> Self {
        CdnEstimate { ttfb_ms: Ewma::new(ttfb_ms as f64), rate: Ewma::new(kbps as f64 / 8.0) }
    }

    pub fn record_ttfb(&mut self, ms: u64) {
        // Higher TTFB is the pessimistic direction here: adopt it fast.
        self.ttfb_ms.add(ms as f64, 0.2, 0.5);
    }

    pub fn record_transfer(&mut self, bytes: u64, ms: u64) {
        if bytes < 16_000 {
            return; // too small to say anything about throughput
        }
        self.rate.add(bytes as f64 / ms.max(1) as f64, 0.5, 0.15);
    }

    /// Milliseconds the CDN needs for `bytes`, first byte included, pessimistically.
    pub fn time_for(&self, bytes: u64) -> u64 {
        let rate = self.rate.get().max(1.0);
        (self.ttfb_ms.get() * 1.5) as u64 + (bytes as f64 / (rate * 0.7)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_fast_climbs_slow() {
        let mut e = Ewma::new(0.0);
        e.add(100.0, 0.5, 0.1);
        assert_eq!(e.get(), 100.0);
        e.add(0.0, 0.5, 0.1);
        assert_eq!(e.get(), 50.0);
        e.add(150.0, 0.5, 0.1);
        assert!((e.get() - 60.0).abs() < 1e-9);
        e.add(f64::NAN, 0.5, 0.1);
        assert!((e.get() - 60.0).abs() < 1e-9);
    }

    #[test]
    fn cdn_time_is_pessimistic() {
        let c = CdnEstimate::new(100, 8_000);
        // 1 MB at 1000 B/ms is 1000 ms; the estimate adds margin.
        assert!(c.time_for(1_000_000) > 1_100);
    }
}
