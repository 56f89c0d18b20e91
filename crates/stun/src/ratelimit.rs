//! Per-source token buckets with bounded memory, shared by the STUN and API roles.
//!
//! Sources are keyed by IP address; IPv6 sources by their /64, since one host (or one
//! attacker) holds a whole /64 and could otherwise mint a fresh key per packet.
//!
//! Memory is bounded with two generations: lookups go to the current map, fall back to the
//! previous one (moving the entry forward), and when the current map reaches half the capacity
//! the previous one is dropped and the current one becomes previous. A source that was quiet
//! for a whole generation therefore starts again with a full bucket — forgetting errs on the
//! side of admitting, so a flood of spoofed sources can never lock real ones out.
//!
//! The limiter reads no clock: callers pass `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Rate limit settings of one role (a config section).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second allowed from one source (0 = no limit).
    pub per_second: f64,
    /// Requests a source may send in a burst above the sustained rate.
    pub burst: u32,
    /// Most sources tracked at once (memory bound).
    pub max_sources: usize,
}

impl RateLimitConfig {
    pub fn new(per_second: f64, burst: u32) -> Self {
        RateLimitConfig { per_second, burst, max_sources: 100_000 }
    }
}

/// The key a source is limited under: its IPv4 address, or the /64 of its IPv6 address.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Outcome of [`KeyedLimiter::check`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Allow,
    /// Refused; a token will be available after this many seconds.
    Deny {
        retry_after_s: f64,
    },
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        matches!(self, Verdict::Allow)
    }
}

pub struct KeyedLimiter {
    rate: f64,
    burst: f64,
    half_capacity: usize,
    current: HashMap<IpAddr, Bucket>,
    previous: HashMap<IpAddr, Bucket>,
}

impl KeyedLimiter {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        KeyedLimiter {
            rate: cfg.per_second.max(0.0),
            burst: f64::from(cfg.burst.max(1)),
            half_capacity: (cfg.max_sources / 2).max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// Is the limiter switched off (`per_second = 0`)?
    pub fn unlimited(&self) -> bool {
        self.rate == 0.0
    }

    /// Take one token for `ip` at time `now`.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.unlimited() {
            return Verdict::Allow;
        }
        let key = source_key(ip);
        let mut bucket = match self.current.get(&key) {
            Some(b) => *b,
            None => self.previous.remove(&key).unwrap_or(Bucket { tokens: self.burst, last: now }),
        };
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        let verdict = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Allow
        } else {
            Verdict::Deny { retry_after_s: (1.0 - bucket.tokens) / self.rate }
        };
        if !self.current.contains_key(&key) && self.current.len() >= self.half_capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, bucket);
        verdict
    }

    /// Sources currently remembered (both generations).
    pub fn tracked(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip literal")
    }

    #[test]
    fn burst_then_refill() {
        let mut l = KeyedLimiter::new(&RateLimitConfig::new(2.0, 3));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(l.check(a, t0), Verdict::Allow);
        }
        let Verdict::Deny { retry_after_s } = l.check(a, t0) else { panic!("4th in burst allowed") };
        assert!((retry_after_s - 0.5).abs() < 1e-9, "{retry_after_s}");
        // Other sources are unaffected.
        assert_eq!(l.check(ip("192.0.2.2"), t0), Verdict::Allow);
        // Half a second later one token is back, not two.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.check(a, t1), Verdict::Allow);
        assert!(!l.check(a, t1).allowed());
        // Long idle refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(l.check(a, t2).allowed());
        }
        assert!(!l.check(a, t2).allowed());
    }

    #[test]
    fn ipv6_grouped_by_64_and_mapped_v4() {
        let mut l = KeyedLimiter::new(&RateLimitConfig::new(1.0, 1));
        let t = Instant::now();
        assert!(l.check(ip("2001:db8:1:2::1"), t).allowed());
        assert!(!l.check(ip("2001:db8:1:2:ffff::9"), t).allowed(), "same /64");
        assert!(l.check(ip("2001:db8:1:3::1"), t).allowed(), "other /64");
        assert!(l.check(ip("198.51.100.7"), t).allowed());
        assert!(!l.check(ip("::ffff:198.51.100.7"), t).allowed(), "v4-mapped is the same source");
    }

    #[test]
    fn memory_is_bounded_and_forgetting_admits() {
        let mut cfg = RateLimitConfig::new(1.0, 1);
        cfg.max_sources = 100;
        let mut l = KeyedLimiter::new(&cfg);
        let t = Instant::now();
        let victim = ip("203.0.113.1");
        assert!(l.check(victim, t).allowed());
        assert!(!l.check(victim, t).allowed());
        for i in 0..10_000u32 {
            let [a, b, c, d] = (0x0a00_0000 + i).to_be_bytes();
            l.check(IpAddr::from([a, b, c, d]), t);
            assert!(l.tracked() <= 100, "tracked {} at {i}", l.tracked());
        }
        // The victim was forgotten: it gets a fresh bucket rather than being locked out.
        assert!(l.check(victim, t).allowed());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut l = KeyedLimiter::new(&RateLimitConfig::new(0.0, 1));
        let t = Instant::now();
        assert!((0..1000).all(|_| l.check(ip("192.0.2.1"), t).allowed()));
        assert_eq!(l.tracked(), 0);
    }
}
