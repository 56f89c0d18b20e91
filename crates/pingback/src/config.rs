//! `[pingback]` of `shoal serve`: collection, windows, memory caps and the automatic protection
//! rule. Every key has a default (see `config/shoal.example.toml` and `docs/pingback.md`).

use serde::{Deserialize, Serialize};

/// `[pingback]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PingbackConfig {
    /// URL clients POST reports to. Empty: `/v1/pingback` on the pingback role's listener.
    pub url: String,
    /// How often clients report, ms (handed out by the API).
    pub interval_ms: u64,
    /// Length of an aggregation window, seconds. Windows are aligned to the Unix epoch, so
    /// every node of a cluster cuts them at the same instants.
    pub window_s: u64,
    /// How long windows are kept, seconds.
    pub retention_s: u64,
    /// Most distinct (stream, rendition, locality, platform, group) keys in one window; beyond
    /// it new keys are folded into `_other` (first rendition/locality/platform, then the stream).
    pub max_keys_per_window: usize,
    /// Most aggregates kept over all windows (about 250 bytes each); beyond it the oldest
    /// windows are dropped before `retention_s`.
    pub max_aggregates: usize,
    /// Most sessions remembered for duplicate detection (about 150 bytes each). When full and
    /// nothing has expired, reports of new sessions are refused with 503 (`overloaded`).
    pub max_sessions: usize,
    /// A session not heard from for this long is forgotten, seconds.
    pub session_ttl_s: u64,
    /// Refuse reports without a valid join ticket (`ticket` field). Needs `tickets.keys` (or
    /// the api role in the same process).
    pub require_ticket: bool,
    /// A ticket stays good for reports this long after its expiry, seconds (sessions outlive
    /// the ticket's tracker lifetime).
    pub ticket_grace_s: u64,
    /// Trusted reverse proxies in front of pingback: the client address (for the locality
    /// table) is the n-th `X-Forwarded-For` entry from the right (0: the TCP peer).
    pub forwarded_hops: usize,
    /// Serve `/dashboard` and the JSON queries on the pingback listener.
    pub dashboard: bool,
    /// Automatic protection: switch P2P off where it makes playback measurably worse.
    pub protection: ProtectionConfig,
}

impl Default for PingbackConfig {
    fn default() -> Self {
        PingbackConfig {
            url: String::new(),
            interval_ms: 10_000,
            window_s: 10,
            retention_s: 24 * 3600,
            max_keys_per_window: 256,
            max_aggregates: 250_000,
            max_sessions: 200_000,
            session_ttl_s: 900,
            require_ticket: true,
            ticket_grace_s: 24 * 3600,
            forwarded_hops: 0,
            dashboard: true,
            protection: ProtectionConfig::default(),
        }
    }
}

/// `[pingback.protection]`: the rule of `docs/pingback.md` ("Automatic protection").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectionConfig {
    pub enabled: bool,
    /// Evaluate per locality bucket too (not only per stream).
    pub localities: bool,
    /// Span of data each evaluation looks at, seconds (trailing).
    pub eval_window_s: u64,
    /// Minimum watch time (play + stall) of P2P sessions in the span, seconds.
    pub min_p2p_watch_s: u64,
    /// Minimum watch time of control (holdback) sessions in the span, seconds.
    pub min_control_watch_s: u64,
    /// Significance level of the one-sided test on stall rates.
    pub alpha: f64,
    /// P2P stall ratio must exceed control's by more than this many percentage points.
    pub margin_pp: f64,
    /// To switch back on, the excess must be at most this many percentage points.
    pub recover_margin_pp: f64,
    /// Consecutive evaluations that must find P2P worse before switching off.
    pub trip_evaluations: u32,
    /// Consecutive clean evaluations (after `min_off_s`) before switching back on.
    pub recover_evaluations: u32,
    /// Shortest time P2P stays off, seconds.
    pub min_off_s: u64,
    /// After this long off without enough data to decide, switch back on to measure again.
    pub max_off_s: u64,
    /// While off, this share (%) of new sessions still gets P2P (the probe group), so that
    /// recovery can be measured.
    pub probe_percent: f64,
    /// Most scopes (streams + locality buckets) tracked.
    pub max_scopes: usize,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        ProtectionConfig {
            enabled: true,
            localities: true,
            eval_window_s: 300,
            min_p2p_watch_s: 600,
            min_control_watch_s: 600,
            alpha: 0.01,
            margin_pp: 0.05,
            recover_margin_pp: 0.025,
            trip_evaluations: 3,
            recover_evaluations: 6,
            min_off_s: 600,
            max_off_s: 3600,
            probe_percent: 5.0,
            max_scopes: 1000,
        }
    }
}

impl PingbackConfig {
    pub fn window_ms(&self) -> u64 {
        self.window_s.saturating_mul(1000)
    }

    /// How long after a window ends until every report that can fall into it has arrived: one
    /// report interval (reports are spread over the interval they cover) plus 2 s of transit.
    pub fn settle_ms(&self) -> u64 {
        self.interval_ms.saturating_add(2_000)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3600).contains(&self.window_s) {
            return Err("pingback.window_s must be 1..=3600".into());
        }
        if !(1_000..=600_000).contains(&self.interval_ms) {
            return Err("pingback.interval_ms must be 1000..=600000".into());
        }
        if self.retention_s < self.window_s || self.retention_s > 30 * 24 * 3600 {
            return Err("pingback.retention_s must be at least one window and at most 30 days".into());
        }
        if self.max_keys_per_window < 4 || self.max_aggregates < 16 || self.max_sessions < 16 {
            return Err("pingback.max_keys_per_window >= 4, max_aggregates >= 16, max_sessions >= 16".into());
        }
        let p = &self.protection;
        if !(p.alpha > 0.0 && p.alpha < 0.5) {
            return Err("pingback.protection.alpha must be in (0, 0.5)".into());
        }
        if !(p.margin_pp >= 0.0 && p.recover_margin_pp >= 0.0 && p.recover_margin_pp <= p.margin_pp) {
            return Err("pingback.protection: 0 <= recover_margin_pp <= margin_pp".into());
        }
        if !(0.0..=100.0).contains(&p.probe_percent) {
            return Err("pingback.protection.probe_percent must be 0..=100".into());
        }
        if p.eval_window_s < self.window_s {
            return Err("pingback.protection.eval_window_s must be at least one window".into());
        }
        if p.trip_evaluations == 0 || p.recover_evaluations == 0 {
            return Err("pingback.protection: trip_evaluations and recover_evaluations must be >= 1".into());
        }
        if p.max_off_s < p.min_off_s {
            return Err("pingback.protection.max_off_s must be >= min_off_s".into());
        }
        if p.max_scopes == 0 {
            return Err("pingback.protection.max_scopes must be >= 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_mistakes_are_not() {
        assert_eq!(PingbackConfig::default().validate(), Ok(()));
        let mut c = PingbackConfig { window_s: 0, ..Default::default() };
        assert!(c.validate().is_err());
        c = PingbackConfig::default();
        c.protection.recover_margin_pp = 1.0;
        assert!(c.validate().is_err());
        c = PingbackConfig::default();
        c.protection.alpha = 0.0;
        assert!(c.validate().is_err());
        c = PingbackConfig { interval_ms: 10, ..Default::default() };
        assert!(c.validate().is_err());
    }
}
