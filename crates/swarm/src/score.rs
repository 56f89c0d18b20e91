//! The neighbour scoring function: same locality first, NAT-compatible, near in the stream,
//! spare upload, fewest connections. Integer arithmetic only, so the simulator and the tracker
//! rank identically on every platform.

use serde::{Deserialize, Serialize};
use shoal_proto::tracker::Nat;

use crate::peer::PeerInfo;

/// Points each criterion can add to a score (the sum of the five is the best possible score).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    /// Same non-empty locality label (ISP / region).
    pub locality: u32,
    /// Scaled by how likely the two NAT types connect directly ([`nat_affinity`]).
    pub nat: u32,
    /// Scaled by closeness in media sequence; candidates ahead of the asker count as closer.
    pub position: u32,
    /// Scaled by the candidate's upload capacity per connection it already has.
    pub upload: u32,
    /// Scaled by the candidate's free connection slots.
    pub connections: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self { locality: 400, nat: 200, position: 200, upload: 100, connections: 100 }
    }
}

/// How candidates are chosen and scored. Part of the tracker's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectionConfig {
    pub weights: Weights,
    /// Members scored per selection in a swarm larger than this (half drawn from the asker's
    /// locality when it has members there). Bounds selection cost independently of swarm size.
    pub sample_size: usize,
    /// Segments of distance at which the position score reaches 0.
    pub position_window: u64,
    /// Upload per existing connection (kbit/s) that earns the full upload score.
    pub upload_reference_kbps: u32,
    /// Candidates with this many connections or more are not returned.
    pub max_degree: u32,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        Self {
            weights: Weights::default(),
            sample_size: 64,
            position_window: 8,
            upload_reference_kbps: 4_000,
            max_degree: 16,
        }
    }
}

/// Percent chance-like affinity of a NAT pair for a direct connection; `None` = do not pair
/// (two endpoint-dependent mappings cannot hole-punch).
pub fn nat_affinity(a: Nat, b: Nat) -> Option<u32> {
    use Nat::*;
    match (a, b) {
        (Symmetric, Symmetric) => None,
        (Open, _) | (_, Open) => Some(100),
        (Eim, Eim) => Some(90),
        (Unknown, Unknown) | (Unknown, Eim) | (Eim, Unknown) => Some(60),
        (Unknown, Symmetric) | (Symmetric, Unknown) => Some(35),
        (Eim, Symmetric) | (Symmetric, Eim) => Some(25),
    }
}

/// Score of `cand` as a neighbour for `asker`, or `None` when the pair must not be proposed
/// (NAT-incompatible, candidate full, or neither side uploads).
pub fn score(cfg: &SelectionConfig, asker: &PeerInfo, cand: &PeerInfo) -> Option<u32> {
    score_with_load(cfg, asker, cand, cand.connections)
}

/// [`score`] with the candidate's connection count replaced by `load` (its reported
/// connections plus those the tracker proposed since, which it has not reported yet).
pub(crate) fn score_with_load(
    cfg: &SelectionConfig,
    asker: &PeerInfo,
    cand: &PeerInfo,
    load: u32,
) -> Option<u32> {
    let w = &cfg.weights;
    if load >= cfg.max_degree {
        return None;
    }
    if asker.upload_kbps == 0 && cand.upload_kbps == 0 {
        return None;
    }
    let nat = nat_affinity(asker.nat, cand.nat)?;
    let mut s = w.nat * nat / 100;

    if !asker.locality.is_empty() && asker.locality == cand.locality {
        s += w.locality;
    }

    s += position_score(w.position, cfg.position_window, asker.seq, cand.seq);

    let per_conn = cand.upload_kbps / (load + 1);
    let reference = cfg.upload_reference_kbps.max(1);
    s += (u64::from(w.upload) * u64::from(per_conn.min(reference)) / u64::from(reference)) as u32;

    let degree = cfg.max_degree.max(1);
    s += w.connections * (degree - load.min(degree)) / degree;
    Some(s)
}

/// Full points at the same sequence, falling linearly to 0 at `window` segments; a candidate
/// behind the asker counts twice as far as one ahead (the one ahead holds what the asker needs
/// next). Unknown positions (seq 0) get half the points.
fn position_score(weight: u32, window: u64, asker: u64, cand: u64) -> u32 {
    if asker == 0 || cand == 0 {
        return weight / 2;
    }
    let window = window.max(1);
    let distance = if cand >= asker { cand - asker } else { (asker - cand).saturating_mul(2) };
    (u64::from(weight) * (window - distance.min(window)) / window) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn peer(locality: &str, nat: Nat, seq: u64, upload_kbps: u32, connections: u32) -> PeerInfo {
        PeerInfo { locality: Arc::from(locality), nat, seq, buffer_ms: 0, upload_kbps, connections }
    }

    #[test]
    fn each_criterion_moves_the_score() {
        let cfg = SelectionConfig::default();
        let me = peer("isp-a", Nat::Eim, 100, 2_000, 2);
        let base = peer("isp-b", Nat::Eim, 100, 2_000, 2);
        let s = |p: &PeerInfo| score(&cfg, &me, p).expect("pairable");
        let b = s(&base);
        assert!(s(&PeerInfo { locality: Arc::from("isp-a"), ..base.clone() }) > b, "locality");
        assert!(s(&PeerInfo { nat: Nat::Open, ..base.clone() }) > b, "nat");
        assert!(s(&PeerInfo { seq: 90, ..base.clone() }) < b, "position");
        assert!(s(&PeerInfo { upload_kbps: 8_000, ..base.clone() }) > b, "upload");
        assert!(s(&PeerInfo { connections: 0, ..base.clone() }) > b, "connections");
    }

    #[test]
    fn locality_outweighs_a_better_remote_peer() {
        // Locality has the largest weight, not absolute priority: a local peer that is worse
        // on every other criterion by a fair margin still wins, a hopeless one does not.
        let cfg = SelectionConfig::default();
        let me = peer("isp-a", Nat::Eim, 100, 2_000, 0);
        let local_weak = peer("isp-a", Nat::Unknown, 98, 1_000, 4);
        let remote_strong = peer("isp-b", Nat::Open, 100, 10_000, 0);
        assert!(score(&cfg, &me, &local_weak) > score(&cfg, &me, &remote_strong));
        let local_hopeless = peer("isp-a", Nat::Symmetric, 95, 100, 10);
        assert!(score(&cfg, &me, &local_hopeless) < score(&cfg, &me, &remote_strong));
    }

    #[test]
    fn exclusions() {
        let cfg = SelectionConfig::default();
        let sym = peer("", Nat::Symmetric, 1, 1_000, 0);
        assert_eq!(score(&cfg, &sym, &sym), None, "symmetric pair");
        let full = peer("", Nat::Open, 1, 1_000, cfg.max_degree);
        assert_eq!(score(&cfg, &sym, &full), None, "full candidate");
        let leech = peer("", Nat::Open, 1, 0, 0);
        assert_eq!(score(&cfg, &leech, &leech), None, "neither uploads");
        assert!(score(&cfg, &leech, &sym).is_some(), "one side uploads");
    }

    #[test]
    fn ahead_beats_behind() {
        assert!(position_score(200, 8, 100, 102) > position_score(200, 8, 100, 98));
        assert_eq!(position_score(200, 8, 100, 100), 200);
        assert_eq!(position_score(200, 8, 100, 200), 0);
        assert_eq!(position_score(200, 8, 0, 200), 100);
    }

    #[test]
    fn nat_table_is_symmetric() {
        let all = [Nat::Open, Nat::Eim, Nat::Symmetric, Nat::Unknown];
        for a in all {
            for b in all {
                assert_eq!(nat_affinity(a, b), nat_affinity(b, a), "{a:?} {b:?}");
            }
        }
    }
}
