//! Deterministic randomness: xoshiro256** seeded through SplitMix64, and the few distributions
//! the models need. Every stream of randomness is derived from the run seed and a purpose
//! label, so adding draws in one model does not shift the draws of another.

#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit hash of a few integers (FNV-1a over their bytes, then a SplitMix64 finaliser):
/// per-pair and per-item values that must not depend on draw order.
pub fn hash64(parts: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let mut x = h;
    splitmix(&mut x)
}

/// A uniform value in [0, 1) from a hash.
pub fn unit_of(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [splitmix(&mut x), splitmix(&mut x), splitmix(&mut x), splitmix(&mut x)];
        Rng { s }
    }

    /// An independent stream for one purpose.
    pub fn derive(seed: u64, purpose: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in purpose.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Rng::new(seed ^ h.rotate_left(17))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        unit_of(self.next_u64())
    }

    /// Uniform in (0, 1].
    fn f64_open(&mut self) -> f64 {
        1.0 - self.f64()
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        (((self.next_u64() >> 32) * n) >> 32).min(n - 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Exponential with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.f64_open().ln()
    }

    /// Standard normal (Box–Muller; one of the pair is dropped, which keeps the stream simple).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64_open();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and mean (mean ≥ median): heavy-tailed durations.
    pub fn lognormal_median_mean(&mut self, median: f64, mean: f64) -> f64 {
        let sigma = lognormal_sigma(median, mean);
        median * (sigma * self.normal()).exp()
    }

    /// Log-uniform in [lo, hi]: capacities spread evenly across orders of magnitude.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        if hi <= lo || lo <= 0.0 {
            return lo.max(hi);
        }
        (lo.ln() + (hi.ln() - lo.ln()) * self.f64()).exp()
    }

    /// Index drawn with probability proportional to `weights`.
    pub fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        if weights.is_empty() || total <= 0.0 {
            return 0;
        }
        let mut x = self.f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// σ of a log-normal with the given median and mean: mean = median · e^{σ²/2}.
pub fn lognormal_sigma(median: f64, mean: f64) -> f64 {
    if mean <= median || median <= 0.0 {
        return 0.0;
    }
    (2.0 * (mean / median).ln()).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_purposes_differ() {
        let a: Vec<u64> = (0..5).scan(Rng::new(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..5).scan(Rng::new(7), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::derive(7, "audience").next_u64(), Rng::derive(7, "network").next_u64());
    }

    #[test]
    fn distributions_have_their_moments() {
        let mut r = Rng::new(1);
        let n = 200_000;
        let mean_exp = (0..n).map(|_| r.exp(3.0)).sum::<f64>() / n as f64;
        assert!((mean_exp - 3.0).abs() < 0.05, "{mean_exp}");
        let mut v: Vec<f64> = (0..n).map(|_| r.lognormal_median_mean(360.0, 1200.0)).collect();
        let mean = v.iter().sum::<f64>() / n as f64;
        v.sort_by(f64::total_cmp);
        let median = v[n / 2];
        assert!((median - 360.0).abs() < 12.0, "median {median}");
        assert!((mean - 1200.0).abs() < 120.0, "mean {mean}");
        let picks = (0..n).filter(|_| r.pick(&[1.0, 3.0]) == 1).count() as f64 / n as f64;
        assert!((picks - 0.75).abs() < 0.01, "{picks}");
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
