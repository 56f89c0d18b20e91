//! Whether a session may use P2P: the hook the pingback role will later drive from live
//! statistics (e.g. switch a stream to CDN-only when its peers hurt playback).

use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use shoal_proto::api::JoinRequest;

/// Everything known about a join when the policy decides.
#[derive(Clone, Copy, Debug)]
pub struct PolicyInput<'a> {
    pub stream: &'a str,
    pub session_id: &'a str,
    pub peer_id: &'a str,
    /// The token's `sub`, when the token carries one.
    pub viewer_id: Option<&'a str>,
    pub request: &'a JoinRequest,
    /// The client's address as the rate limit sees it (a policy may map it to a locality).
    pub client_ip: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum P2pDecision {
    Allow,
    /// CDN-only, with the reason reported to the client (`p2p_reason`).
    Deny(String),
}

pub trait P2pPolicy: Send + Sync + 'static {
    fn decide(&self, input: &PolicyInput<'_>) -> P2pDecision;
}

impl<F> P2pPolicy for F
where
    F: Fn(&PolicyInput<'_>) -> P2pDecision + Send + Sync + 'static,
{
    fn decide(&self, input: &PolicyInput<'_>) -> P2pDecision {
        self(input)
    }
}

/// The configured policy: a master switch and a holdback (control) group, chosen by hashing
/// the viewer id when there is one (a viewer stays in its group across sessions) or else the
/// session id.
#[derive(Clone, Debug)]
pub struct StaticPolicy {
    pub enabled: bool,
    /// 0–100.
    pub holdback_percent: f64,
}

impl StaticPolicy {
    fn in_holdback(&self, key: &str) -> bool {
        if self.holdback_percent <= 0.0 {
            return false;
        }
        let d = Sha256::digest([b"shoal-holdback\0".as_slice(), key.as_bytes()].concat());
        let x = u64::from_be_bytes(d[..8].try_into().expect("SHA-256 has 32 bytes"));
        (x % 10_000) as f64 / 100.0 < self.holdback_percent
    }
}

impl P2pPolicy for StaticPolicy {
    fn decide(&self, input: &PolicyInput<'_>) -> P2pDecision {
        if !self.enabled {
            return P2pDecision::Deny("disabled".into());
        }
        if self.in_holdback(input.viewer_id.unwrap_or(input.session_id)) {
            return P2pDecision::Deny("holdback".into());
        }
        P2pDecision::Allow
    }
}

pub type SharedPolicy = Arc<dyn P2pPolicy>;

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(req: &'a JoinRequest, session: &'a str, viewer: Option<&'a str>) -> PolicyInput<'a> {
        PolicyInput {
            stream: "demo",
            session_id: session,
            peer_id: "p",
            viewer_id: viewer,
            request: req,
            client_ip: None,
        }
    }

    #[test]
    fn switch_and_holdback_share() {
        let req = JoinRequest::default();
        let off = StaticPolicy { enabled: false, holdback_percent: 0.0 };
        assert_eq!(off.decide(&input(&req, "s", None)), P2pDecision::Deny("disabled".into()));
        let p = StaticPolicy { enabled: true, holdback_percent: 10.0 };
        let held = (0..10_000)
            .filter(|i| p.decide(&input(&req, &format!("s{i}"), None)) != P2pDecision::Allow)
            .count();
        assert!((850..1150).contains(&held), "10% holdback gave {held}/10000");
        // A viewer id keeps the viewer in one group whatever the session.
        let v = p.decide(&input(&req, "a", Some("viewer-1")));
        assert!((0..50).all(|i| p.decide(&input(&req, &format!("x{i}"), Some("viewer-1"))) == v));
        let all = StaticPolicy { enabled: true, holdback_percent: 100.0 };
        assert_ne!(all.decide(&input(&req, "s", None)), P2pDecision::Allow);
    }

    #[test]
    fn closures_are_policies() {
        let req = JoinRequest::default();
        let p: SharedPolicy = Arc::new(|i: &PolicyInput<'_>| {
            if i.stream == "demo" {
                P2pDecision::Deny("stats_say_no".into())
            } else {
                P2pDecision::Allow
            }
        });
        assert_eq!(p.decide(&input(&req, "s", None)), P2pDecision::Deny("stats_say_no".into()));
    }
}
