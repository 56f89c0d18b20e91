//! A scenario: the stream, the audience, the network, the CDN, the player, the tracker and the
//! engine configuration of one simulated run. Scenarios are TOML files in `sim/scenarios/`;
//! every field has a documented default, unknown fields are refused so a typo is noticed.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use shoal_engine::Config as EngineConfig;
use shoal_swarm::SelectionConfig;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Default seed (overridden by `--seed`).
    #[serde(default = "one")]
    pub seed: u64,
    /// Simulated seconds from the first viewer's arrival to the end.
    pub duration_s: u64,
    #[serde(default)]
    pub stream: Stream,
    pub audience: Audience,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub cdn: Cdn,
    #[serde(default)]
    pub player: Player,
    #[serde(default)]
    pub tracker: Tracker,
    /// Engine configuration overrides (the JSON object the API hands clients, as TOML).
    #[serde(default)]
    pub engine: EngineConfig,
}

fn one() -> u64 {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stream {
    pub name: String,
    /// Segment (and playlist target) duration.
    pub segment_ms: u32,
    pub renditions: Vec<Rendition>,
    /// Standard deviation of a segment's size relative to its nominal size (scene complexity,
    /// correlated from one segment to the next).
    pub size_variation: f64,
    /// Share of a segment's nominal bytes in its leading keyframe (the part that does not
    /// vary with scene complexity and comes first in the file).
    pub keyframe_share: f64,
    /// Segments listed in the live playlist (and in the signed manifest).
    pub playlist_window: u32,
    /// How a viewer picks its rendition: "share" (by each rendition's `share`) or "downlink"
    /// (the highest whose bitrate fits in 70 % of the viewer's downlink — a start-up ABR
    /// choice held for the session).
    pub abr: Abr,
}

impl Default for Stream {
    fn default() -> Self {
        Stream {
            name: "live".into(),
            segment_ms: 2_000,
            renditions: vec![Rendition { name: "720p".into(), bitrate_kbps: 2_500, share: 1.0 }],
            size_variation: 0.12,
            keyframe_share: 0.25,
            playlist_window: 6,
            abr: Abr::Share,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Abr {
    Share,
    Downlink,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rendition {
    pub name: String,
    pub bitrate_kbps: u32,
    #[serde(default = "one_f")]
    pub share: f64,
}

fn one_f() -> f64 {
    1.0
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Audience {
    /// Viewers arriving in the flash crowd at stream start.
    pub viewers: u32,
    /// The flash crowd arrives over this many seconds (uniformly).
    pub flash_crowd_s: f64,
    /// Poisson arrivals per minute after the flash crowd. Default: viewers / mean session, so
    /// arrivals replace departures and the audience holds near `viewers` (Little's law).
    pub arrivals_per_min: Option<f64>,
    /// Session length: log-normal with this median and mean (heavy-tailed).
    pub session_median_s: f64,
    pub session_mean_s: f64,
    /// Viewers that never upload (mobile or metered).
    pub consume_only_share: f64,
    /// Viewers that corrupt every chunk they send.
    pub liar_share: f64,
}

impl Default for Audience {
    fn default() -> Self {
        Audience {
            viewers: 20,
            flash_crowd_s: 30.0,
            arrivals_per_min: None,
            session_median_s: 360.0,
            session_mean_s: 1_200.0,
            consume_only_share: 0.0,
            liar_share: 0.0,
        }
    }
}

impl Audience {
    pub fn arrival_rate_per_s(&self) -> f64 {
        match self.arrivals_per_min {
            Some(r) => r / 60.0,
            None => self.viewers as f64 / self.session_mean_s.max(1.0),
        }
    }
}

/// A class of access links: `share` of viewers get a capacity log-uniform in [min, max].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkClass {
    pub share: f64,
    pub min_mbps: f64,
    pub max_mbps: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locality {
    pub name: String,
    pub share: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nat {
    /// Shares of NAT kinds (normalised). `open`: public or full cone; `eim`: endpoint-
    /// independent mapping; `symmetric`: endpoint-dependent mapping; `firewalled`: UDP
    /// blocked (no TURN in this model: connects to nobody).
    pub open: f64,
    pub eim: f64,
    pub symmetric: f64,
    pub firewalled: f64,
    /// Chance that an EIM–symmetric pair fails (port-restricted cone against symmetric).
    pub eim_symmetric_fail: f64,
}

impl Default for Nat {
    fn default() -> Self {
        Nat { open: 0.15, eim: 0.75, symmetric: 0.08, firewalled: 0.02, eim_symmetric_fail: 0.5 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    pub upload: Vec<LinkClass>,
    pub download: Vec<LinkClass>,
    pub localities: Vec<Locality>,
    /// One-way latency between two viewers of the same locality, uniform in [lo, hi] per pair.
    pub same_locality_ms: [f64; 2],
    /// One-way latency between viewers of different localities.
    pub other_locality_ms: [f64; 2],
    pub nat: Nat,
    /// Time to open a DataChannel besides round trips: signaling through the tracker, ICE
    /// gathering. Setup = this + 4 pair RTTs (ICE checks, DTLS, SCTP).
    pub setup_ms: f64,
    /// An attempt between two peers that cannot connect fails after this long.
    pub connect_timeout_ms: f64,
    /// Share of viewers on lossy links, their message loss rate and jitter. A lost message
    /// arrives late by a retransmission timeout (max(200 ms, 1.5 RTT)); jitter adds a uniform
    /// delay in [0, jitter]. DataChannels are ordered, so later messages wait behind it.
    pub lossy_share: f64,
    pub loss: f64,
    pub jitter_ms: f64,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            upload: vec![LinkClass { share: 1.0, min_mbps: 5.0, max_mbps: 20.0 }],
            download: vec![LinkClass { share: 1.0, min_mbps: 25.0, max_mbps: 100.0 }],
            localities: vec![
                Locality { name: "isp-a".into(), share: 0.4 },
                Locality { name: "isp-b".into(), share: 0.3 },
                Locality { name: "isp-c".into(), share: 0.2 },
                Locality { name: "isp-d".into(), share: 0.1 },
            ],
            same_locality_ms: [5.0, 20.0],
            other_locality_ms: [25.0, 60.0],
            nat: Nat::default(),
            setup_ms: 300.0,
            connect_timeout_ms: 5_000.0,
            lossy_share: 0.0,
            loss: 0.0,
            jitter_ms: 0.0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cdn {
    /// Server time to first byte, after one round trip.
    pub ttfb_ms: f64,
    /// Round trip between a viewer and its CDN edge.
    pub rtt_ms: f64,
    /// Throughput of one HTTP transfer (TCP to one client).
    pub flow_mbps: f64,
    /// Egress capacity shared by all transfers.
    pub capacity_gbps: f64,
}

impl Default for Cdn {
    fn default() -> Self {
        Cdn { ttfb_ms: 40.0, rtt_ms: 30.0, flow_mbps: 40.0, capacity_gbps: 400.0 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Player {
    /// hls.js `liveSyncDurationCount`: start this many target durations behind the live edge.
    pub live_sync_segments: u32,
    /// hls.js `maxBufferLength`: stop loading ahead beyond this much buffer.
    pub max_buffer_ms: u32,
    /// After a stall, resume once this much is buffered (0: as soon as a segment is appended).
    pub resume_buffer_ms: u32,
    /// How often the player's state is reported to the engine while nothing else happens.
    pub report_ms: u32,
    /// Round trips before the first media playlist is loaded (master + media playlist).
    pub playlist_round_trips: u32,
}

impl Default for Player {
    fn default() -> Self {
        Player {
            live_sync_segments: 3,
            max_buffer_ms: 30_000,
            resume_buffer_ms: 0,
            report_ms: 1_000,
            playlist_round_trips: 2,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tracker {
    /// Neighbours a viewer connects to on its own initiative.
    pub max_peers: u32,
    /// Connections a viewer accepts in total (its own and others').
    pub accept_peers: u32,
    /// Re-announce period (the tracker's `announce_interval_ms`).
    pub announce_interval_ms: u64,
    /// Round trip to the tracker.
    pub rtt_ms: f64,
    /// The tracker's neighbour selection configuration (shoal-swarm).
    pub selection: SelectionConfig,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            max_peers: 10,
            accept_peers: 16,
            announce_interval_ms: 15_000,
            rtt_ms: 60.0,
            selection: SelectionConfig::default(),
        }
    }
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Scenario::parse(&text).with_context(|| format!("scenario {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let st = &self.stream;
        if st.renditions.is_empty() || st.renditions.len() > 8 {
            bail!("stream.renditions: 1 to 8");
        }
        for r in &st.renditions {
            if !(100..=40_000).contains(&r.bitrate_kbps) {
                bail!("rendition {}: bitrate_kbps in 100..=40000", r.name);
            }
            if !shoal_proto::ids::valid_name(&r.name) {
                bail!("rendition name {:?} is not a valid name", r.name);
            }
        }
        if !(500..=10_000).contains(&st.segment_ms) {
            bail!("stream.segment_ms in 500..=10000");
        }
        if st.playlist_window < 3 || st.playlist_window > 30 {
            bail!("stream.playlist_window in 3..=30");
        }
        if !(0.0..=0.5).contains(&st.size_variation) || !(0.0..=0.9).contains(&st.keyframe_share) {
            bail!("stream.size_variation in [0, 0.5], keyframe_share in [0, 0.9]");
        }
        let a = &self.audience;
        if a.viewers == 0 || a.viewers > 200_000 {
            bail!("audience.viewers in 1..=200000");
        }
        if a.session_median_s <= 0.0 || a.session_mean_s < a.session_median_s {
            bail!("audience: session_median_s > 0 and session_mean_s >= session_median_s");
        }
        for (n, v) in [("consume_only_share", a.consume_only_share), ("liar_share", a.liar_share)] {
            if !(0.0..=1.0).contains(&v) {
                bail!("audience.{n} in [0, 1]");
            }
        }
        if self.duration_s == 0 || self.duration_s > 24 * 3600 {
            bail!("duration_s in 1..=86400");
        }
        let n = &self.network;
        for (what, classes) in [("upload", &n.upload), ("download", &n.download)] {
            if classes.is_empty()
                || classes.iter().any(|c| c.share < 0.0 || c.min_mbps <= 0.0 || c.max_mbps < c.min_mbps)
            {
                bail!("network.{what}: non-empty, share >= 0, 0 < min_mbps <= max_mbps");
            }
        }
        if n.localities.is_empty() {
            bail!("network.localities: at least one");
        }
        if !(0.0..=1.0).contains(&n.loss) || !(0.0..=1.0).contains(&n.lossy_share) {
            bail!("network.loss and lossy_share in [0, 1]");
        }
        let t = &self.tracker;
        if t.max_peers == 0 || t.accept_peers < t.max_peers || t.accept_peers > 48 {
            bail!("tracker: 1 <= max_peers <= accept_peers <= 48");
        }
        self.engine.validate().map_err(|e| anyhow::anyhow!("engine: {e}"))?;
        Ok(())
    }

    /// Mean upload capacity (Mbit/s) of the link classes.
    pub fn mean_upload_mbps(&self) -> f64 {
        mean_of(&self.network.upload)
    }

    /// Bitrate-weighted mean of the renditions by share (kbit/s).
    pub fn mean_bitrate_kbps(&self) -> f64 {
        let total: f64 = self.stream.renditions.iter().map(|r| r.share).sum();
        self.stream.renditions.iter().map(|r| r.bitrate_kbps as f64 * r.share).sum::<f64>() / total.max(1e-9)
    }
}

/// Mean of a log-uniform mixture.
pub fn mean_of(classes: &[LinkClass]) -> f64 {
    let total: f64 = classes.iter().map(|c| c.share).sum();
    classes
        .iter()
        .map(|c| {
            let m = if c.max_mbps > c.min_mbps {
                (c.max_mbps - c.min_mbps) / (c.max_mbps.ln() - c.min_mbps.ln())
            } else {
                c.min_mbps
            };
            m * c.share
        })
        .sum::<f64>()
        / total.max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::parse("name = \"t\"\nduration_s = 60\n[audience]\nviewers = 5\n").expect("parses");
        assert_eq!(s.stream.segment_ms, 2_000);
        assert_eq!(s.tracker.max_peers, 10);
        assert!(s.engine.p2p_enabled);
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        assert!(Scenario::parse("name = \"t\"\nduration_s = 60\n[audience]\nviewer = 5\n").is_err());
        assert!(Scenario::parse("name = \"t\"\nduration_s = 60\n[audience]\nviewers = 0\n").is_err());
        assert!(Scenario::parse(
            "name = \"t\"\nduration_s = 60\n[audience]\nviewers = 3\n[engine]\nfetchers_target = 0\n"
        )
        .is_err());
    }

    #[test]
    fn mean_of_log_uniform() {
        let m = mean_of(&[LinkClass { share: 1.0, min_mbps: 1.0, max_mbps: std::f64::consts::E }]);
        assert!((m - (std::f64::consts::E - 1.0)).abs() < 1e-9);
    }
}
