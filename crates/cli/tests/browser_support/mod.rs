//! Shared parts of the real-browser swarm tests: the servers (`shoal origin` with a synthetic
//! stream, `shoal serve` with API + tracker + STUN) in a network namespace, the browser SDK
//! injected into the runner's hls.js pages, and the SDK's report read back.
//!
//! Addresses: HTTP servers bind 127.0.0.1 inside the namespace (pages are served from the
//! stream's origin, and Chromium treats loopback as a secure context); STUN binds the veth
//! address 10.77.0.1 so its answers are the address peers really reach each other at.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use shoal_testkit::browser::{PlayConfig, ServeDir, ViewerReport};

use shoal_testkit::{workspace_root, Netns, Proc, SyntheticOrigin, TestDir, VETH_ADDR};

/// Chromium refuses a page served by interception (its address space is unknown, so
/// "public") to fetch loopback servers of another origin unless Local Network Access checks
/// are off. Chromium keeps only the last `--disable-features`, so the test's own list is
/// repeated here.
pub fn chromium_feature_args(hide_mdns: bool) -> Vec<String> {
    let features = if hide_mdns {
        "LocalNetworkAccessChecks"
    } else {
        "WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks"
    };
    vec![format!("--disable-features={features}")]
}

/// The origin and the servers of one test.
pub struct Stack {
    pub origin: Proc,
    pub serve: Proc,
    /// `http://127.0.0.1:PORT` of the origin.
    pub origin_url: String,
    pub master: String,
    /// API (and tracker) base URL.
    pub api: String,
    pub origin_key: String,
}

/// A synthetic ladder light enough for several Chromium decoders on two cores.
pub const LADDER: &str = "240p:426x240@500";

pub fn shoal_bin() -> &'static str {
    env!("CARGO_BIN_EXE_shoal")
}

/// `shoal origin --synthetic` and `shoal serve` in `ns`, both ready.
pub fn start_stack(ns: &Netns, dir: &TestDir, ladder: &str) -> Result<Stack> {
    let SyntheticOrigin { proc: origin, key: origin_key, url: origin_url, master } =
        SyntheticOrigin::start(shoal_bin(), dir.path(), Some(ns), "127.0.0.1:0", ladder)?;

    let mut serve = Proc::builder("serve", shoal_bin())
        .env("SHOAL_API_HOLDBACK_PERCENT", "0") // every viewer in the swarm: no control group
        .args(["serve", "--listen", "127.0.0.1:0", "--stun-listen", &format!("{VETH_ADDR}:0")])
        .args(["--set", "auth.require_token=false", "--set", &format!("api.origin_public_key={origin_key}")])
        .env("RUST_LOG", "debug")
        .netns(ns)
        .log_dir(dir.path())
        .spawn()?;
    let api = serve.wait_ready("SERVE", Duration::from_secs(30))?.url;
    let first = ladder.split(':').next().unwrap_or("360p");
    wait_for_segments(ns, &format!("{origin_url}/live/demo/{first}/index.m3u8"), MIN_SEGMENTS)?;
    Ok(Stack { origin, serve, origin_url, master, api, origin_key })
}

/// Segments the live playlist lists before pages open: viewers join a stream that has been
/// running, so hls.js starts its usual three target durations behind the live edge (with
/// fewer it starts closer, with less buffer than any real viewer has).
pub const MIN_SEGMENTS: usize = 5;

/// Polls `media` until it lists `n` segments (bounded: 2 s per segment plus 20 s).
pub fn wait_for_segments(ns: &Netns, media: &str, n: usize) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2 * n as u64 + 20);
    let mut last = 0;
    while std::time::Instant::now() < deadline {
        if let Ok(r) = shoal_testkit::http::get(Some(ns), media, Duration::from_secs(5)) {
            last = r.text().lines().filter(|l| l.starts_with("#EXTINF")).count();
            if last >= n {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    anyhow::bail!("{media} listed {last} segments, not {n}, in time")
}

/// `web/dist/`, built by `make web` (`npm run build` in web/).
pub fn web_dist() -> Result<PathBuf> {
    let dist = workspace_root().join("web/dist");
    for f in ["shoal.iife.js", "shoal_wasm_bg.wasm"] {
        anyhow::ensure!(
            dist.join(f).is_file(),
            "{} is missing: build the browser SDK first (`make web`)",
            dist.join(f).display()
        );
    }
    Ok(dist)
}

/// Writes the init script that installs the SDK with `options` (a JSON object of
/// `ShoalOptions`, `wasmUrl` filled in) into every page, and returns its path.
pub fn sdk_init_script(dir: &Path, options: serde_json::Value) -> Result<PathBuf> {
    let dist = web_dist()?;
    let mut options = options;
    let obj = options.as_object_mut().ok_or_else(|| anyhow!("SDK options must be a JSON object"))?;
    obj.entry("wasmUrl").or_insert_with(|| "/__shoal_test/sdk/shoal_wasm_bg.wasm".into());
    let sdk = std::fs::read_to_string(dist.join("shoal.iife.js")).context("reading shoal.iife.js")?;
    let hook = include_str!("hook.js").replace("__SHOAL_TEST_CONFIG__", &options.to_string());
    let path = dir.join("shoal-sdk-init.js");
    std::fs::write(&path, format!("{sdk}\n{hook}")).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A play config for `viewers` pages of the stack's stream with the SDK installed.
pub fn sdk_play_config(
    stack: &Stack,
    dir: &TestDir,
    duration: Duration,
    viewers: usize,
    hide_mdns: bool,
) -> Result<PlayConfig> {
    let mut cfg = PlayConfig::new(stack.master.clone(), duration, viewers);
    cfg.init_scripts.push(sdk_init_script(dir.path(), serde_json::json!({ "api": stack.api }))?);
    cfg.serve.push(ServeDir { prefix: "/__shoal_test/sdk/".into(), dir: web_dist()? });
    cfg.hide_local_ips_with_mdns = hide_mdns;
    cfg.extra_chromium_args = chromium_feature_args(hide_mdns);
    Ok(cfg)
}

/// `shoal.stats()` (web/src/types.ts `ShoalStats`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SdkStats {
    pub p2p: bool,
    pub p2p_reason: Option<String>,
    pub peer_id: Option<String>,
    pub peers: u32,
    pub swarm_size: u32,
    pub http_bytes: u64,
    pub p2p_bytes: u64,
    pub upload_bytes: u64,
    pub manifest_bytes: u64,
    pub share: f64,
    pub segments: u64,
    pub segments_from_peers: u64,
    pub segments_verified: u64,
    pub verify_failures: u64,
    pub peers_banned: u64,
    pub direct_loads: u64,
    pub fallbacks: u64,
    pub wasted_bytes: u64,
    pub engine: Option<serde_json::Value>,
}

impl SdkStats {
    pub fn engine_u64(&self, key: &str) -> u64 {
        self.engine.as_ref().and_then(|e| e.get(key)).and_then(|v| v.as_u64()).unwrap_or(0)
    }
}

/// One segment the SDK handed to hls.js.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SdkSegment {
    pub at_ms: f64,
    pub rendition: String,
    pub seq: u64,
    pub bytes: u64,
    /// `cdn`, `peers` or `mixed`.
    pub source: String,
    pub verified: bool,
    /// Loaded by hls.js's own loader, not through the engine.
    #[serde(default)]
    pub direct: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SdkReport {
    pub stats: SdkStats,
    pub segments: Vec<SdkSegment>,
    #[serde(default)]
    pub events: Vec<serde_json::Value>,
}

/// The SDK's report of a viewer (from the injected hook).
pub fn sdk_report(v: &ViewerReport) -> Result<SdkReport> {
    serde_json::from_value(v.extra.clone())
        .with_context(|| format!("viewer {}: no SDK report in {:?}", v.id, v.extra))
}

/// Swarm totals of the SDK's counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub http: u64,
    pub p2p: u64,
    pub upload: u64,
    pub manifest: u64,
}

impl Totals {
    pub fn of(reports: &[SdkReport]) -> Totals {
        let mut t = Totals::default();
        for r in reports {
            t.http += r.stats.http_bytes;
            t.p2p += r.stats.p2p_bytes;
            t.upload += r.stats.upload_bytes;
            t.manifest += r.stats.manifest_bytes;
        }
        t
    }

    pub fn share(&self) -> f64 {
        if self.http + self.p2p == 0 {
            0.0
        } else {
            self.p2p as f64 / (self.http + self.p2p) as f64
        }
    }
}

/// Summary line of one viewer's SDK report.
pub fn sdk_line(id: &str, r: &SdkReport) -> String {
    let s = &r.stats;
    format!(
        "viewer {id}: p2p {} ({:?}), peers {}, swarm {}, share {:.3}, http {} B, peers {} B, up {} B, segments {} ({} from peers, {} verified), verify failures {}, direct {} (fallbacks {})",
        s.p2p,
        s.p2p_reason,
        s.peers,
        s.swarm_size,
        s.share,
        s.http_bytes,
        s.p2p_bytes,
        s.upload_bytes,
        s.segments,
        s.segments_from_peers,
        s.segments_verified,
        s.verify_failures,
        s.direct_loads,
        s.fallbacks,
    )
}

/// Media buffered ahead (seconds) above which a `waiting` event is not a delivery stall.
pub const HICCUP_MIN_BUFFER_S: f64 = 1.0;
/// Longest `waiting` that still counts as a hiccup.
pub const HICCUP_MAX_MS: f64 = 1_000.0;
/// Hiccups tolerated per page.
pub const MAX_HICCUPS: usize = 2;

/// What went wrong with one page's playback, split in two:
///
/// - `stalls`: the player ran out of media (a `waiting` with less than
///   [`HICCUP_MIN_BUFFER_S`] buffered, or longer than [`HICCUP_MAX_MS`], or one that never
///   ended), fatal errors, runner errors, no startup — what delivery is responsible for;
/// - `hiccups`: a `waiting` of a few milliseconds while seconds of media were buffered (and
///   hls.js's BUFFER_STALLED_ERROR reported within a second of it): the decoder did not get the
///   CPU, which happens on two cores running several Chromium pages, the encoder and the
///   servers — delivery had already done its part.
pub struct Playback {
    pub stalls: Vec<String>,
    pub hiccups: Vec<String>,
}

pub fn playback(v: &ViewerReport) -> Playback {
    let mut stalls = Vec::new();
    let mut hiccups = Vec::new();
    if v.first_playing_at_ms.is_none() {
        stalls.push("never started playing".to_string());
    }
    stalls.extend(v.errors.iter().map(|e| format!("error: {e}")));
    stalls.extend(v.page_errors.iter().map(|e| format!("runner: {e}")));
    let mut hiccup_times = Vec::new();
    let started = v.first_playing_at_ms.unwrap_or(f64::INFINITY);
    for s in &v.stalls {
        // The buffer just before the stall; for one right after startup (no sample since the
        // first frame), the first sample after it.
        let before = v.samples.iter().rev().find(|x| x.at_ms <= s.at_ms && x.at_ms >= started);
        let sample = before.or_else(|| v.samples.iter().find(|x| x.at_ms > s.at_ms));
        let buffered = sample.map_or(0.0, |x| x.buffered_ahead);
        let text = format!(
            "waiting at {:.0} ms (currentTime {:.2}, {buffered:.2} s buffered) for {:?} ms",
            s.at_ms, s.current_time, s.duration_ms
        );
        match s.duration_ms {
            Some(d) if d < HICCUP_MAX_MS && buffered >= HICCUP_MIN_BUFFER_S => {
                hiccup_times.push(s.at_ms);
                hiccups.push(text);
            }
            _ => stalls.push(text),
        }
    }
    for t in &v.buffer_stalled_errors {
        if hiccup_times.iter().any(|h| *t >= *h && *t <= *h + 1_000.0) {
            hiccups.push(format!("BUFFER_STALLED_ERROR at {t:.0} ms (with the hiccup before it)"));
        } else {
            stalls.push(format!("BUFFER_STALLED_ERROR at {t:.0} ms"));
        }
    }
    Playback { stalls, hiccups }
}

/// Asserts smooth playback of one page: no stall, at most [`MAX_HICCUPS`] hiccups.
pub fn assert_plays_smoothly(v: &ViewerReport) {
    let p = playback(v);
    assert!(p.stalls.is_empty(), "viewer {} stalled: {:#?}", v.id, p.stalls);
    let waits = p.hiccups.iter().filter(|h| h.starts_with("waiting")).count();
    assert!(waits <= MAX_HICCUPS, "viewer {}: {waits} decoder hiccups: {:#?}", v.id, p.hiccups);
    if !p.hiccups.is_empty() {
        println!("  viewer {}: hiccups (decoder short of CPU, media buffered): {:?}", v.id, p.hiccups);
    }
}

impl SdkReport {
    /// When P2P started in this page (the SDK's `p2p` event with `enabled`), ms since the
    /// hook was installed.
    pub fn p2p_started_at_ms(&self) -> Option<f64> {
        self.events.iter().find_map(|e| {
            let enabled = e.get("kind").and_then(|k| k.as_str()) == Some("p2p")
                && e.get("enabled").and_then(|v| v.as_bool()) == Some(true);
            if enabled {
                e.get("atMs").and_then(|t| t.as_f64())
            } else {
                None
            }
        })
    }
}
