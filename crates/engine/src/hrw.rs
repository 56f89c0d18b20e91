//! Weighted rendezvous (highest-random-weight) hashing: every client ranks the members of its
//! neighbourhood for a segment the same way without exchanging a message.
//!
//! Score = −w / ln(u) with u ∈ (0, 1) a hash of (rendition, seq, peer id): the logarithmic
//! method of Schindelhauer & Schomaker (SPAA 2005), so a member wins a share of segments
//! proportional to its weight. The hash is spelled out here (FNV-1a then the splitmix64
//! finaliser), not taken from std, because native and wasm clients must agree bit for bit.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform 64-bit hash of (salt, rendition, seq, peer).
pub fn hash(salt: u8, rendition: &str, seq: u64, peer_id: &str) -> u64 {
    let mut h = fnv(FNV_OFFSET ^ salt as u64, rendition.as_bytes());
    h = fnv(h, &[0xff]);
    h = fnv(h, &seq.to_be_bytes());
    h = fnv(h, peer_id.as_bytes());
    mix(h)
}

/// A uniform value in (0, 1) for (salt, rendition, seq, peer).
pub fn unit(salt: u8, rendition: &str, seq: u64, peer_id: &str) -> f64 {
    let z = hash(salt, rendition, seq, peer_id);
    ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Weight of a member from its announced upload capacity: capped so one fibre client does not
/// take every segment, and never zero for an uploader whose capacity is unknown.
pub fn weight(upload_kbps: u32) -> f64 {
    (upload_kbps.clamp(1_000, 50_000) as f64) / 1_000.0
}

/// Rendezvous score of a member for a segment; higher wins.
pub fn score(rendition: &str, seq: u64, peer_id: &str, w: f64) -> f64 {
    let u = unit(0, rendition, seq, peer_id);
    -w / u.ln()
}

/// A second, independent draw used to thin the set of fetchers in large swarms.
pub fn lottery(rendition: &str, seq: u64, peer_id: &str) -> f64 {
    unit(1, rendition, seq, peer_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_values() {
        // Pinned: the wasm and native builds must produce the same ranking.
        let u = unit(0, "720p", 42, "peer-a");
        assert!(u > 0.0 && u < 1.0);
        assert_eq!(unit(0, "720p", 42, "peer-a"), u);
        assert_ne!(unit(0, "720p", 43, "peer-a"), u);
        assert_ne!(unit(1, "720p", 42, "peer-a"), u);
    }

    #[test]
    fn wins_are_proportional_to_weight() {
        let mut wins = [0u32; 2];
        for seq in 0..20_000u64 {
            let a = score("r", seq, "a", 1.0);
            let b = score("r", seq, "b", 3.0);
            wins[(b > a) as usize] += 1;
        }
        let share_b = wins[1] as f64 / 20_000.0;
        assert!((share_b - 0.75).abs() < 0.02, "{share_b}");
    }

    #[test]
    fn equal_weights_are_fair() {
        let peers: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        let mut wins = [0u32; 8];
        for seq in 0..16_000u64 {
            let best = (0..8)
                .max_by(|&i, &j| score("r", seq, &peers[i], 1.0).total_cmp(&score("r", seq, &peers[j], 1.0)))
                .expect("non-empty");
            wins[best] += 1;
        }
        for w in wins {
            assert!((1_700..2_300).contains(&w), "{wins:?}");
        }
    }
}
