//! Tracker assignment: weighted rendezvous (highest-random-weight) hashing.
//!
//! Every API node, given the same candidate list, ranks the trackers for a stream the same
//! way, with no coordination: all viewers of a stream meet on the same primary tracker, and
//! when a node leaves only the streams it held move (to their next-ranked node). The candidate
//! list is an input, so a live node registry (the cluster issue: Redis) plugs in by supplying
//! it; see [`TrackerDirectory`].

use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq)]
pub struct TrackerNode {
    /// WebSocket URL clients connect to.
    pub url: String,
    /// Relative capacity (> 0; non-positive or non-finite weights never win).
    pub weight: f64,
}

/// Where candidate trackers come from: static configuration, or a cluster's live node
/// registry (`shoal-cluster`).
pub trait TrackerDirectory: Send + Sync + 'static {
    fn candidates(&self) -> Vec<TrackerNode>;

    /// The `n` tracker URLs for `stream`, primary first. Default: [`rank`] over
    /// [`candidates`](Self::candidates). A cluster directory keeps a stream on the primary it
    /// was first given (while that node lives) instead of re-ranking on every join.
    fn assign(&self, stream: &str, n: usize) -> Vec<String> {
        rank(stream, &self.candidates(), n)
    }
}

/// Endpoint lists that change at run time (a cluster's live node registry). Each non-empty
/// answer replaces the statically configured list in join responses.
pub trait LiveEndpoints: Send + Sync + 'static {
    /// `stun:host:port` URLs of live STUN nodes.
    fn stun(&self) -> Vec<String>;
    /// Base URLs of live API nodes, in the order clients should try them.
    fn api(&self) -> Vec<String>;
    /// Pingback URLs for `session_id`: the first is where it reports (sessions are spread over
    /// the live pingback nodes), the rest are where to go when that one fails.
    fn pingback(&self, session_id: &str) -> Vec<String>;
}

/// A fixed list (from the config file or this process's own tracker role).
#[derive(Clone, Debug, Default)]
pub struct StaticTrackers(pub Vec<TrackerNode>);

impl TrackerDirectory for StaticTrackers {
    fn candidates(&self) -> Vec<TrackerNode> {
        self.0.clone()
    }
}

/// Score of `node` for `key`: `-weight / ln(u)` with `u` in (0, 1) from SHA-256(key, url).
/// The node with the highest score wins; with equal weights this is plain rendezvous hashing,
/// and a node's expected share of keys is proportional to its weight.
fn score(key: &str, node: &TrackerNode) -> f64 {
    if !(node.weight.is_finite() && node.weight > 0.0) {
        return f64::NEG_INFINITY;
    }
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_be_bytes());
    h.update(key.as_bytes());
    h.update(node.url.as_bytes());
    let d = h.finalize();
    let x = u64::from_be_bytes(d[..8].try_into().expect("SHA-256 has 32 bytes"));
    // 53 random bits, mapped into the open interval (0, 1).
    let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -node.weight / u.ln()
}

/// The `n` best trackers for `stream`, best first (primary, then standbys). Deterministic for
/// a given candidate set, independent of its order; duplicates are listed once.
pub fn rank(stream: &str, candidates: &[TrackerNode], n: usize) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = Vec::with_capacity(candidates.len());
    for c in candidates {
        if !scored.iter().any(|(_, u)| *u == c.url) {
            scored.push((score(stream, c), c.url.as_str()));
        }
    }
    scored.retain(|(s, _)| s.is_finite());
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().take(n).map(|(_, u)| u.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<TrackerNode> {
        (0..n).map(|i| TrackerNode { url: format!("ws://t{i}:8080/v1/tracker"), weight: 1.0 }).collect()
    }

    #[test]
    fn deterministic_and_order_independent() {
        let a = nodes(5);
        let mut b = a.clone();
        b.reverse();
        for s in ["demo", "news", "sport-1"] {
            let r = rank(s, &a, 3);
            assert_eq!(r.len(), 3);
            assert_eq!(r, rank(s, &b, 3));
            assert_eq!(r, rank(s, &a, 3));
        }
        assert_eq!(rank("demo", &a, 10).len(), 5);
        assert!(rank("demo", &[], 3).is_empty());
    }

    #[test]
    fn spread_and_minimal_movement() {
        let all = nodes(4);
        let streams: Vec<String> = (0..4000).map(|i| format!("s{i}")).collect();
        let mut counts = [0usize; 4];
        for s in &streams {
            let p = rank(s, &all, 1).remove(0);
            counts[all.iter().position(|n| n.url == p).expect("known")] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread {counts:?}");
        }
        // Remove node 2: only its streams move.
        let without: Vec<TrackerNode> = all.iter().filter(|n| n.url != all[2].url).cloned().collect();
        for s in &streams {
            let before = rank(s, &all, 2);
            let after = rank(s, &without, 1).remove(0);
            if before[0] != all[2].url {
                assert_eq!(after, before[0], "stream {s} moved although its tracker stayed");
            } else {
                assert_eq!(after, before[1], "stream {s} went to its first standby");
            }
        }
    }

    #[test]
    fn weights() {
        let mut n = nodes(2);
        n[0].weight = 3.0;
        let heavy = (0..4000).filter(|i| rank(&format!("s{i}"), &n, 1)[0] == n[0].url).count();
        assert!((2800..3200).contains(&heavy), "weight 3:1 gave {heavy}/4000");
        n[1].weight = 0.0;
        assert_eq!(rank("x", &n, 3), vec![n[0].url.clone()], "zero weight never listed");
    }
}
