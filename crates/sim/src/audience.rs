//! The viewers of a run, drawn before it starts so the P2P run and its CDN-only baseline see
//! exactly the same people: a flash crowd at stream start, then Poisson arrivals; session
//! lengths log-normal (heavy-tailed); access links, locality, NAT, device kind per viewer.

use crate::net::NatKind;
use crate::rng::Rng;
use crate::scenario::{Abr, LinkClass, Scenario};

#[derive(Clone, Debug)]
pub struct Viewer {
    pub join_us: u64,
    /// When the viewer leaves (may be after the end of the run).
    pub leave_us: u64,
    pub up_bps: u64,
    pub down_bps: u64,
    pub locality: u16,
    pub nat: NatKind,
    pub consume_only: bool,
    pub liar: bool,
    pub lossy: bool,
    pub rendition: u16,
    /// Phase of the playlist refresh within a target duration.
    pub refresh_phase_us: u64,
}

fn draw_link(rng: &mut Rng, classes: &[LinkClass]) -> u64 {
    let weights: Vec<f64> = classes.iter().map(|c| c.share).collect();
    let c = &classes[rng.pick(&weights)];
    (rng.log_uniform(c.min_mbps, c.max_mbps) * 1e6) as u64
}

/// Every viewer of the run, ordered by arrival. Arrivals start at `start_us` and stop at
/// `end_us`.
pub fn draw(sc: &Scenario, seed: u64, start_us: u64, end_us: u64) -> Vec<Viewer> {
    let a = &sc.audience;
    let mut times = Vec::new();
    let mut arr = Rng::derive(seed, "arrivals");
    for _ in 0..a.viewers {
        times.push(start_us + (arr.f64() * a.flash_crowd_s * 1e6) as u64);
    }
    times.sort_unstable();
    let rate = a.arrival_rate_per_s();
    if rate > 0.0 {
        let mut t = start_us as f64 + a.flash_crowd_s * 1e6;
        loop {
            t += arr.exp(1e6 / rate);
            if t >= end_us as f64 {
                break;
            }
            times.push(t as u64);
        }
    }
    let mut rng = Rng::derive(seed, "viewers");
    let net = &sc.network;
    let loc_w: Vec<f64> = net.localities.iter().map(|l| l.share).collect();
    let n = &net.nat;
    let nat_w = [n.open, n.eim, n.symmetric, n.firewalled];
    let rend_w: Vec<f64> = sc.stream.renditions.iter().map(|r| r.share).collect();
    let seg_us = sc.stream.segment_ms as u64 * 1_000;
    times
        .into_iter()
        .map(|join_us| {
            let session = rng.lognormal_median_mean(a.session_median_s, a.session_mean_s).max(5.0);
            let up_bps = draw_link(&mut rng, &net.upload);
            let down_bps = draw_link(&mut rng, &net.download);
            let locality = rng.pick(&loc_w) as u16;
            let nat =
                [NatKind::Open, NatKind::Eim, NatKind::Symmetric, NatKind::Firewalled][rng.pick(&nat_w)];
            let consume_only = rng.chance(a.consume_only_share);
            let liar = rng.chance(a.liar_share);
            let lossy = rng.chance(net.lossy_share);
            let by_share = rng.pick(&rend_w) as u16;
            let rendition = match sc.stream.abr {
                Abr::Share => by_share,
                Abr::Downlink => {
                    let fits = sc
                        .stream
                        .renditions
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.bitrate_kbps as f64 * 1_000.0 <= 0.7 * down_bps as f64)
                        .max_by_key(|(_, r)| r.bitrate_kbps)
                        .map(|(i, _)| i);
                    let lowest = sc
                        .stream
                        .renditions
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, r)| r.bitrate_kbps)
                        .map_or(0, |(i, _)| i);
                    fits.unwrap_or(lowest) as u16
                }
            };
            let refresh_phase_us = rng.below(seg_us);
            Viewer {
                join_us,
                leave_us: join_us + (session * 1e6) as u64,
                up_bps,
                down_bps,
                locality,
                nat,
                consume_only,
                liar,
                lossy,
                rendition,
                refresh_phase_us,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_crowd_then_poisson_and_deterministic() {
        let sc = Scenario::parse(
            "name = \"t\"\nduration_s = 600\n[audience]\nviewers = 1000\nflash_crowd_s = 60\n\
             arrivals_per_min = 60\nconsume_only_share = 0.3\n",
        )
        .expect("parses");
        let v = draw(&sc, 5, 0, 600_000_000);
        let crowd = v.iter().filter(|x| x.join_us < 60_000_000).count();
        assert!((1_000..1_080).contains(&crowd), "{crowd}");
        let later = v.len() - crowd;
        assert!((480..620).contains(&later), "about 1/s for 540 s: {later}");
        let co = v.iter().filter(|x| x.consume_only).count() as f64 / v.len() as f64;
        assert!((co - 0.3).abs() < 0.04, "{co}");
        let w = draw(&sc, 5, 0, 600_000_000);
        assert_eq!(v.len(), w.len());
        assert!(v.iter().zip(&w).all(|(a, b)| a.join_us == b.join_us && a.up_bps == b.up_bps));
    }
}
