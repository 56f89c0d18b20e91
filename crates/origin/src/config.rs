//! `OriginConfig`: everything the Origin can be told, with documented defaults. Read from TOML
//! by `shoal serve` / `shoal demo` (an `[origin]` table) or built from `shoal origin` flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shoal_proto::ids::valid_name;
use shoal_proto::manifest::{MAX_CHUNKS, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// Address to listen on (`shoal origin` only; embedders serve the router themselves).
    /// Default `127.0.0.1:8080`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Stream the synthetic source or the relay publishes. Default `demo`.
    pub stream: String,
    /// Segments named by each media playlist (sliding window). Default 10.
    pub window: usize,
    /// Entries in each rendition's `manifest.json`. Default 6.
    pub manifest_window: usize,
    /// Segments still served after they leave the playlist, for players that fetched the
    /// playlist just before it slid. Default 4.
    pub retain_after_window: usize,
    /// Chunk size of the per-chunk hashes in the signed manifest. Default 16,000 bytes.
    pub chunk_size: u32,
    /// `Cache-Control: max-age` of live playlists and manifests, seconds. Default 1.
    pub playlist_max_age_s: u32,
    /// Most bytes of segments held in memory over all streams. Default 1 GiB.
    pub max_memory_bytes: u64,
    /// Secret key file (base64 of the 32-byte Ed25519 seed, as `shoal keygen` writes it).
    /// Default none: an ephemeral key is generated at start.
    pub key_file: Option<PathBuf>,
    pub synthetic: SyntheticConfig,
    pub ingest: IngestConfig,
    /// Pull an upstream live HLS URL and republish it. Default none.
    pub relay: Option<RelayConfig>,
}

/// The in-process live source: a test pattern encoded with OpenH264 and muxed to MPEG-TS.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Run it. Default false.
    pub enabled: bool,
    /// Frames per second. Default 30.
    pub fps: u32,
    /// Segment duration in seconds; rounded to whole frames. Default 2.0.
    pub segment_duration_s: f64,
    /// The ABR ladder. Default 360p at 800 kbit/s and 720p at 2,500 kbit/s.
    pub renditions: Vec<RenditionConfig>,
    /// Amplitude (0..=127) of the noise panel that keeps the encoder at its bitrate. Default 48.
    pub noise: u8,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RenditionConfig {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
}

/// HLS pushed by ffmpeg (`-f hls -method PUT http://HOST/ingest/STREAM/index.m3u8`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// The ingest key (header `X-Shoal-Ingest-Key` or `?key=`). Default none: ingest is off
    /// and every ingest request gets 403.
    pub key: Option<String>,
    /// Largest segment accepted. Default 10,240,000 bytes (640 chunks of 16,000 B, the most a
    /// signed entry may list).
    pub max_segment_bytes: usize,
    /// Largest playlist accepted. Default 256 KiB.
    pub max_playlist_bytes: usize,
    /// Most ingest streams at once. Default 8.
    pub max_streams: usize,
    /// Most renditions per ingest stream. Default 6.
    pub max_renditions: usize,
    /// Uploaded segments waiting for a playlist that names them, per rendition (also capped
    /// at three `max_segment_bytes` in bytes). Default 8.
    pub max_pending_segments: usize,
    /// Rendition name used for single-rendition ingest (`/ingest/{stream}/index.m3u8`).
    /// Default `src`.
    pub default_rendition: String,
    /// An ingest stream with no new segment for this long is dropped. Default 300 s.
    pub idle_timeout_s: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Upstream master or media playlist URL.
    pub url: String,
    /// Rendition name when the upstream URL is a media playlist. Default `src`.
    pub rendition: String,
    /// Playlist poll interval in ms. Default: half the upstream target duration (0.5–5 s).
    pub poll_interval_ms: Option<u64>,
    /// Timeout of each upstream request, seconds. Default 10.
    pub timeout_s: u64,
    /// Largest upstream segment accepted. Default 10,240,000 bytes.
    pub max_segment_bytes: usize,
}

pub fn default_ladder() -> Vec<RenditionConfig> {
    vec![
        RenditionConfig { name: "360p".into(), width: 640, height: 360, bitrate_kbps: 800 },
        RenditionConfig { name: "720p".into(), width: 1280, height: 720, bitrate_kbps: 2500 },
    ]
}

const DEFAULT_MAX_SEGMENT: usize = MAX_CHUNKS * MAX_CHUNK_SIZE as usize;

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            stream: "demo".into(),
            window: 10,
            manifest_window: 6,
            retain_after_window: 4,
            chunk_size: shoal_proto::manifest::DEFAULT_CHUNK_SIZE,
            playlist_max_age_s: 1,
            max_memory_bytes: 1 << 30,
            key_file: None,
            synthetic: SyntheticConfig::default(),
            ingest: IngestConfig::default(),
            relay: None,
        }
    }
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            enabled: false,
            fps: 30,
            segment_duration_s: 2.0,
            renditions: default_ladder(),
            noise: 48,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            key: None,
            max_segment_bytes: DEFAULT_MAX_SEGMENT,
            max_playlist_bytes: 256 * 1024,
            max_streams: 8,
            max_renditions: 6,
            max_pending_segments: 8,
            default_rendition: "src".into(),
            idle_timeout_s: 300,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            url: String::new(),
            rendition: "src".into(),
            poll_interval_ms: None,
            timeout_s: 10,
            max_segment_bytes: DEFAULT_MAX_SEGMENT,
        }
    }
}

impl SyntheticConfig {
    /// Frames in one segment (at least one).
    pub fn frames_per_segment(&self) -> u32 {
        ((self.segment_duration_s * f64::from(self.fps)).round() as u32).max(1)
    }

    /// Segment duration after rounding to whole frames, in ms.
    pub fn segment_duration_ms(&self) -> u64 {
        u64::from(self.frames_per_segment()) * 1000 / u64::from(self.fps.max(1))
    }
}

impl OriginConfig {
    /// Check every value; the error names the offending field.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if !valid_name(&self.stream) {
            bail!(
                "stream name {:?} must be 1–64 characters of [A-Za-z0-9_.-], not starting with '.'",
                self.stream
            );
        }
        if !(1..=1000).contains(&self.window) {
            bail!("window must be 1..=1000 segments (got {})", self.window);
        }
        if !(1..=64).contains(&self.manifest_window) {
            bail!("manifest_window must be 1..=64 entries (got {})", self.manifest_window);
        }
        if self.retain_after_window > 100 {
            bail!("retain_after_window must be at most 100 (got {})", self.retain_after_window);
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            bail!("chunk_size must be {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} (got {})", self.chunk_size);
        }
        let max_signable = MAX_CHUNKS * self.chunk_size as usize;
        let s = &self.synthetic;
        if s.enabled {
            if !(1..=120).contains(&s.fps) {
                bail!("synthetic fps must be 1..=120 (got {})", s.fps);
            }
            if !(s.segment_duration_s.is_finite() && (0.1..=30.0).contains(&s.segment_duration_s)) {
                bail!("segment duration must be 0.1..=30 s (got {})", s.segment_duration_s);
            }
            if s.renditions.is_empty() || s.renditions.len() > 8 {
                bail!("synthetic ladder must have 1..=8 renditions");
            }
            for (i, r) in s.renditions.iter().enumerate() {
                if !valid_name(&r.name) {
                    bail!("rendition name {:?} is not a valid name", r.name);
                }
                if s.renditions[..i].iter().any(|o| o.name == r.name) {
                    bail!("rendition name {:?} is used twice", r.name);
                }
                if r.width % 2 != 0
                    || r.height % 2 != 0
                    || !(16..=3840).contains(&r.width)
                    || !(16..=2160).contains(&r.height)
                {
                    bail!(
                        "rendition {}: size {}x{} must be even, 16..=3840 x 16..=2160",
                        r.name,
                        r.width,
                        r.height
                    );
                }
                if !(50..=50_000).contains(&r.bitrate_kbps) {
                    bail!("rendition {}: bitrate must be 50..=50000 kbit/s", r.name);
                }
                // Rate control overshoots a little; keep twice the nominal size signable.
                let nominal = f64::from(r.bitrate_kbps) * 1000.0 / 8.0 * s.segment_duration_s;
                if nominal * 2.0 > max_signable as f64 {
                    bail!(
                        "rendition {}: {} kbit/s × {} s segments exceed the signable segment size",
                        r.name,
                        r.bitrate_kbps,
                        s.segment_duration_s
                    );
                }
            }
        }
        let i = &self.ingest;
        if let Some(k) = &i.key {
            if k.is_empty() || k.len() > 256 {
                bail!("ingest key must be 1..=256 bytes");
            }
        }
        if !valid_name(&i.default_rendition) {
            bail!("ingest default_rendition {:?} is not a valid name", i.default_rendition);
        }
        if i.max_segment_bytes == 0 || i.max_segment_bytes > max_signable {
            bail!("ingest max_segment_bytes must be 1..={max_signable}");
        }
        if let Some(r) = &self.relay {
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                bail!("relay url must be http:// or https:// (got {:?})", r.url);
            }
            if !valid_name(&r.rendition) {
                bail!("relay rendition {:?} is not a valid name", r.rendition);
            }
            if r.max_segment_bytes == 0 || r.max_segment_bytes > max_signable {
                bail!("relay max_segment_bytes must be 1..={max_signable}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_roundtrip_toml() {
        let mut c = OriginConfig::default();
        c.synthetic.enabled = true;
        c.validate().expect("defaults are valid");
        let text = toml::to_string(&c).expect("serialize");
        let back: OriginConfig = toml::from_str(&text).expect("parse");
        assert_eq!(back, c);
        // A partial table takes defaults for the rest.
        let p: OriginConfig =
            toml::from_str("window = 5\n[synthetic]\nenabled = true\nfps = 25\n").expect("partial");
        assert_eq!((p.window, p.synthetic.fps, p.manifest_window), (5, 25, 6));
        assert!(toml::from_str::<OriginConfig>("windw = 5").is_err(), "unknown keys are refused");
    }

    #[test]
    fn documented_defaults_are_the_defaults() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/origin.md"))
            .expect("docs/origin.md");
        let start = doc.find("```toml\n").expect("a toml block") + 8;
        let end = start + doc[start..].find("```").expect("block end");
        let parsed: OriginConfig = toml::from_str(&doc[start..end]).expect("documented TOML parses");
        assert_eq!(parsed, OriginConfig::default(), "docs/origin.md shows the real defaults");
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = OriginConfig { stream: "../x".into(), ..Default::default() };
        assert!(c.validate().is_err());
        c.stream = "ok".into();
        c.synthetic.enabled = true;
        c.synthetic.renditions[0].width = 641;
        assert!(c.validate().is_err());
        c.synthetic.renditions = default_ladder();
        c.synthetic.renditions[1].bitrate_kbps = 40_000;
        assert!(c.validate().is_err(), "too large to sign at 2 s");
        assert_eq!(SyntheticConfig::default().frames_per_segment(), 60);
    }
}
