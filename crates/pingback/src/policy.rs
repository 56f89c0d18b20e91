//! The API's P2P decision, driven by pingback: the master switch, the holdback (control) group,
//! and automatic protection (P2P off where the [`Board`] says so, except for a probe group).
//!
//! Group assignment is a pure function of the viewer id (the token's `sub`) or, without one,
//! the session id: SHA-256 of `"shoal-holdback\0" || key`, first 8 bytes as a big-endian
//! integer, modulo 10 000, divided by 100 — a number `u` in [0, 100). The same on every API
//! node and identical to `shoal_api::StaticPolicy`, so switching policies keeps viewers in
//! their groups. `u < holdback_percent`: control group. While protection is on for the
//! stream or the client's locality bucket, `holdback ≤ u < holdback + probe_percent` still
//! gets P2P (the probe group) and the rest is told `protection`.

use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use shoal_api::{P2pDecision, P2pPolicy, PolicyInput};

use crate::protection::Board;

/// Maps a client address to its locality label ("" = none): the tracker's IP table.
pub type LocalityFn = Arc<dyn Fn(IpAddr) -> String + Send + Sync>;

/// The group coordinate of a viewer or session, in [0, 100).
pub fn group_point(key: &str) -> f64 {
    let d = Sha256::digest([b"shoal-holdback\0".as_slice(), key.as_bytes()].concat());
    let x = u64::from_be_bytes(d[..8].try_into().expect("SHA-256 has 32 bytes"));
    (x % 10_000) as f64 / 100.0
}

pub struct PingbackPolicy {
    pub enabled: bool,
    pub holdback_percent: f64,
    pub probe_percent: f64,
    pub board: Arc<Board>,
    pub locality: Option<LocalityFn>,
}

impl P2pPolicy for PingbackPolicy {
    fn decide(&self, input: &PolicyInput<'_>) -> P2pDecision {
        if !self.enabled {
            return P2pDecision::Deny("disabled".into());
        }
        let u = group_point(input.viewer_id.unwrap_or(input.session_id));
        if u < self.holdback_percent {
            return P2pDecision::Deny("holdback".into());
        }
        let locality = match (&self.locality, input.client_ip) {
            (Some(f), Some(ip)) => f(ip),
            _ => String::new(),
        };
        if self.board.is_off(input.stream, &locality) {
            if u < self.holdback_percent + self.probe_percent {
                return P2pDecision::Allow;
            }
            return P2pDecision::Deny("protection".into());
        }
        P2pDecision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_api::StaticPolicy;
    use shoal_proto::api::JoinRequest;

    fn input<'a>(req: &'a JoinRequest, session: &'a str) -> PolicyInput<'a> {
        PolicyInput {
            stream: "demo",
            session_id: session,
            peer_id: "p",
            viewer_id: None,
            request: req,
            client_ip: Some(IpAddr::from([10, 1, 2, 3])),
        }
    }

    #[test]
    fn same_groups_as_the_static_policy() {
        let req = JoinRequest::default();
        let p = PingbackPolicy {
            enabled: true,
            holdback_percent: 5.0,
            probe_percent: 5.0,
            board: Arc::new(Board::default()),
            locality: None,
        };
        let s = StaticPolicy { enabled: true, holdback_percent: 5.0 };
        for i in 0..2_000 {
            let id = format!("session-{i}");
            assert_eq!(p.decide(&input(&req, &id)), s.decide(&input(&req, &id)), "{id}");
        }
    }
}
