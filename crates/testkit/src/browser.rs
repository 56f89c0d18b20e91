//! Headless Chromium driven by playwright-core, from node scripts in `web/test/`, run inside a
//! [`Netns`]. The script gets a JSON config file and writes a JSON result file.
//!
//! [`play`] runs `web/test/play.mjs`: K viewers (one browser context each) playing one HLS
//! stream with hls.js, opened, closed and screenshotted on a schedule, each measured (startup,
//! stalls, currentTime and latency samples, errors, bytes). Any other script in `web/test/` can
//! be run the same way with [`run_script`].
//!
//! Nothing is skipped: missing root, node, Chromium or `web/node_modules` is an error that says
//! how to fix it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::netns::{require_netns_support, Netns};
use crate::outdir::{workspace_root, TestDir};
use crate::process::Proc;

/// What the browser tests need on this machine, found and checked.
#[derive(Debug, Clone)]
pub struct BrowserEnv {
    pub node: PathBuf,
    pub chromium: PathBuf,
    pub web_dir: PathBuf,
}

impl BrowserEnv {
    /// Checks root (for the namespace), node, Chromium (`SHOAL_CHROMIUM` or `/usr/bin/chromium`)
    /// and `web/node_modules` (playwright-core, hls.js).
    pub fn check() -> Result<BrowserEnv> {
        require_netns_support()?;
        let fix = "install them with `make deps` (scripts/install-deps.sh)";
        let chromium =
            PathBuf::from(std::env::var_os("SHOAL_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()));
        if !chromium.is_file() {
            bail!("Chromium not found at {} (Debian package `chromium`): {fix}", chromium.display());
        }
        let node =
            which("node").ok_or_else(|| anyhow!("`node` is not on PATH (Debian package `nodejs`): {fix}"))?;
        let version = Command::new(&node).arg("--version").output().context("running node --version")?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
        let major: u32 =
            version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        if major < 20 {
            bail!("node {version} is too old for web/test: playwright-core needs >= 20");
        }
        let web_dir = web_dir();
        for needed in ["node_modules/playwright-core/package.json", "node_modules/hls.js/dist/hls.min.js"] {
            if !web_dir.join(needed).is_file() {
                bail!("{} is missing: run `npm ci` in web/ ({fix})", web_dir.join(needed).display());
            }
        }
        Ok(BrowserEnv { node, chromium, web_dir })
    }
}

/// `<repo>/web`.
pub fn web_dir() -> PathBuf {
    workspace_root().join("web")
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Runs `web/test/<script> <config.json> <result.json>` with node inside `ns` and returns the
/// parsed result. The config must serialize to a JSON object; `chromium` and `outDir` are
/// filled in when absent. Files (config, result, logs `<name>.stdout.log`/`.stderr.log`, and
/// whatever the script writes to `outDir`) go to `dir/<name>/`.
pub fn run_script<T: DeserializeOwned>(
    ns: &Netns,
    dir: &TestDir,
    name: &str,
    script: &str,
    config: &impl Serialize,
    timeout: Duration,
) -> Result<T> {
    let env = BrowserEnv::check()?;
    let script_path = env.web_dir.join("test").join(script);
    anyhow::ensure!(script_path.is_file(), "{} does not exist", script_path.display());
    let out_dir = dir.subdir(name)?;
    let mut config = serde_json::to_value(config).context("serializing the browser config")?;
    let obj = config.as_object_mut().ok_or_else(|| anyhow!("browser config must be a JSON object"))?;
    obj.entry("chromium").or_insert_with(|| env.chromium.to_string_lossy().into_owned().into());
    obj.entry("outDir").or_insert_with(|| out_dir.to_string_lossy().into_owned().into());
    let config_path = out_dir.join("config.json");
    let result_path = out_dir.join("result.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("writing {}", config_path.display()))?;

    let mut proc = Proc::builder(name, &env.node)
        .arg(&script_path)
        .arg(&config_path)
        .arg(&result_path)
        .current_dir(&env.web_dir)
        .netns(ns)
        .log_dir(&out_dir)
        .spawn()?;
    let status = match proc.wait_exit(timeout) {
        Ok(s) => s,
        Err(e) => {
            let _ = proc.stop(Duration::from_secs(3));
            return Err(e.context(format!("{script} did not finish within {timeout:?}")));
        }
    };
    if !status.success() {
        bail!("{script} failed ({status})\n{}", proc.log_tails());
    }
    let text = std::fs::read_to_string(&result_path)
        .with_context(|| format!("{script} exited 0 but wrote no {}", result_path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", result_path.display()))
}

/// Runs `web/test/play.mjs` (see [`PlayConfig`]); output in `dir/<name>/`.
pub fn play(ns: &Netns, dir: &TestDir, name: &str, config: &PlayConfig) -> Result<PlayReport> {
    // Browser start, page loads and the final collection take seconds; hangs are caught by
    // play.mjs's own watchdog at duration + 90 s.
    let timeout = Duration::from_millis(config.duration_ms) + Duration::from_secs(120);
    run_script(ns, dir, name, "play.mjs", config, timeout)
}

/// Config of `web/test/play.mjs` (camelCase in JSON; `web/test/lib/config.mjs` validates).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayConfig {
    /// The master playlist.
    pub url: String,
    pub duration_ms: u64,
    pub viewers: Vec<ViewerSpec>,
    /// Origin the player page is served from (by interception, under `/__shoal_test/`).
    /// Default: the stream's origin, so no CORS is involved; set another to test CORS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_origin: Option<String>,
    /// Merged into every page's hls.js config.
    pub hls_config: serde_json::Value,
    /// Scripts (absolute paths) injected into every page before its own scripts run; they can
    /// set `window.__shoalTestHooks` (see web/test/player.js).
    pub init_scripts: Vec<PathBuf>,
    /// Local directories served to the pages under a URL prefix (`/__shoal_test/<x>/`).
    pub serve: Vec<ServeDir>,
    pub sample_interval_ms: u64,
    /// Leave Chromium's default of hiding host IPs behind mDNS names (real browsers do).
    pub hide_local_ips_with_mdns: bool,
    pub extra_chromium_args: Vec<String>,
}

impl PlayConfig {
    /// `viewers` viewers open from the start to the end.
    pub fn new(url: impl Into<String>, duration: Duration, viewers: usize) -> PlayConfig {
        PlayConfig {
            url: url.into(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            viewers: (0..viewers).map(|i| ViewerSpec::new(&format!("v{i}"))).collect(),
            page_origin: None,
            hls_config: serde_json::json!({}),
            init_scripts: Vec::new(),
            serve: Vec::new(),
            sample_interval_ms: 500,
            hide_local_ips_with_mdns: false,
            extra_chromium_args: Vec::new(),
        }
    }

    pub fn viewer_mut(&mut self, id: &str) -> Option<&mut ViewerSpec> {
        self.viewers.iter_mut().find(|v| v.id == id)
    }
}

/// One viewer (page) of a play run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewerSpec {
    pub id: String,
    pub open_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_at_ms: Option<u64>,
    /// Another stream URL for this viewer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub init_scripts: Vec<PathBuf>,
    /// Screenshots saved as `<id>-<t>ms.png` in the run's directory.
    pub screenshots_at_ms: Vec<u64>,
    pub hls_config: serde_json::Value,
}

impl ViewerSpec {
    pub fn new(id: &str) -> ViewerSpec {
        ViewerSpec {
            id: id.to_string(),
            open_at_ms: 0,
            close_at_ms: None,
            url: None,
            init_scripts: Vec::new(),
            screenshots_at_ms: Vec::new(),
            hls_config: serde_json::json!({}),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServeDir {
    /// `/__shoal_test/<something>/`
    pub prefix: String,
    pub dir: PathBuf,
}

/// Result of `play.mjs`. Times are ms since the run started unless named otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayReport {
    pub browser_version: String,
    pub duration_ms: f64,
    pub viewers: Vec<ViewerReport>,
}

impl PlayReport {
    pub fn viewer(&self, id: &str) -> Result<&ViewerReport> {
        self.viewers.iter().find(|v| v.id == id).ok_or_else(|| anyhow!("no viewer {id:?} in the report"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewerReport {
    pub id: String,
    pub opened_at_ms: Option<f64>,
    pub closed_at_ms: Option<f64>,
    /// Page navigation start to the first `playing` event.
    #[serde(default)]
    pub startup_ms: Option<f64>,
    #[serde(default)]
    pub first_playing_at_ms: Option<f64>,
    /// `waiting` events after startup while not seeking.
    #[serde(default)]
    pub stalls: Vec<Stall>,
    /// hls.js BUFFER_STALLED_ERROR after startup (times).
    #[serde(default)]
    pub buffer_stalled_errors: Vec<f64>,
    /// Every hls.js ERROR event, fatal or not.
    #[serde(default)]
    pub hls_errors: Vec<HlsError>,
    /// Fatal hls.js errors, media element errors, uncaught exceptions in the page.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Errors of the runner around the page (navigation, screenshots, page crashes).
    #[serde(default)]
    pub page_errors: Vec<String>,
    #[serde(default)]
    pub samples: Vec<Sample>,
    #[serde(default)]
    pub frag_count: u64,
    /// Fragment bytes hls.js loaded (FRAG_LOADED stats), whatever loader fetched them.
    #[serde(default)]
    pub frag_bytes: u64,
    /// What went over HTTP from this page, as Chromium saw it (test assets excluded).
    pub http: HttpStats,
    #[serde(default)]
    pub screenshots: Vec<Screenshot>,
    /// The frame on screen when the viewer closed.
    #[serde(default)]
    pub frame: Option<FrameStats>,
    #[serde(default)]
    pub video_width: u32,
    #[serde(default)]
    pub video_height: u32,
    /// `window.__shoalTestHooks.report()` of an injected script.
    #[serde(default)]
    pub extra: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stall {
    pub at_ms: f64,
    /// None if playback never resumed.
    pub duration_ms: Option<f64>,
    pub current_time: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HlsError {
    pub at_ms: f64,
    #[serde(rename = "type")]
    pub kind: String,
    pub details: String,
    pub fatal: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub at_ms: f64,
    pub current_time: f64,
    pub buffered_ahead: f64,
    /// hls.js's estimate of the distance to the live edge, seconds.
    pub latency: Option<f64>,
    pub target_latency: Option<f64>,
    /// Wall clock minus the PROGRAM-DATE-TIME of the frame playing, seconds.
    pub pdt_latency: Option<f64>,
    pub paused: bool,
    pub ready_state: u8,
    pub playback_rate: f64,
    pub decoded_frames: Option<u64>,
    pub dropped_frames: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Screenshot {
    pub path: PathBuf,
    pub at_ms: f64,
    pub frame: Option<FrameStats>,
}

/// The video frame scaled to 64x36: a black or blank frame has one colour.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameStats {
    pub mean_luma: f64,
    /// Colours quantised to 3 bits per channel.
    pub distinct_colours: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpStats {
    pub requests: u64,
    pub bytes: u64,
    pub playlist_requests: u64,
    pub media_requests: u64,
    pub media_bytes: u64,
    #[serde(default)]
    pub failed: Vec<serde_json::Value>,
}

impl ViewerReport {
    /// How far `currentTime` advanced between the first sample at or after `from_ms` and the
    /// last sample at or before `to_ms`; None without two such samples.
    pub fn advanced_between(&self, from_ms: f64, to_ms: f64) -> Option<(f64, f64)> {
        let first = self.samples.iter().find(|s| s.at_ms >= from_ms)?;
        let last = self.samples.iter().rev().find(|s| s.at_ms <= to_ms && s.at_ms > first.at_ms)?;
        Some((last.current_time - first.current_time, (last.at_ms - first.at_ms) / 1000.0))
    }

    /// `(min, mean, max)` of a per-sample value over samples after startup.
    pub fn summary(&self, value: impl Fn(&Sample) -> Option<f64>) -> Option<(f64, f64, f64)> {
        let start = self.first_playing_at_ms?;
        let vals: Vec<f64> = self.samples.iter().filter(|s| s.at_ms >= start).filter_map(value).collect();
        if vals.is_empty() {
            return None;
        }
        let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((min, vals.iter().sum::<f64>() / vals.len() as f64, max))
    }

    /// Every problem that means "playback was not smooth" in one list: fatal errors, runner
    /// errors, stalls and BUFFER_STALLED_ERRORs after startup, no startup at all.
    pub fn smoothness_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.first_playing_at_ms.is_none() {
            p.push("never started playing".to_string());
        }
        p.extend(self.errors.iter().map(|e| format!("error: {e}")));
        p.extend(self.page_errors.iter().map(|e| format!("runner: {e}")));
        p.extend(self.stalls.iter().map(|s| {
            format!(
                "stall at {:.0} ms (currentTime {:.2}) for {:?} ms",
                s.at_ms, s.current_time, s.duration_ms
            )
        }));
        p.extend(self.buffer_stalled_errors.iter().map(|t| format!("BUFFER_STALLED_ERROR at {t:.0} ms")));
        p
    }

    /// One line for test output.
    pub fn one_line(&self) -> String {
        let lat = self.summary(|s| s.latency).map(|(a, b, c)| format!("{a:.2}/{b:.2}/{c:.2}"));
        let pdt = self.summary(|s| s.pdt_latency).map(|(a, b, c)| format!("{a:.2}/{b:.2}/{c:.2}"));
        format!(
            "viewer {}: startup {:?} ms, stalls {}, latency min/mean/max {} s (PDT {} s), {} frags {} B, http {} req {} B",
            self.id,
            self.startup_ms.map(|s| s.round()),
            self.stalls.len() + self.buffer_stalled_errors.len(),
            lat.unwrap_or_else(|| "-".into()),
            pdt.unwrap_or_else(|| "-".into()),
            self.frag_count,
            self.frag_bytes,
            self.http.requests,
            self.http.bytes,
        )
    }
}

/// A screenshot file the run saved, checked to be a non-trivial PNG.
pub fn check_png(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    anyhow::ensure!(bytes.len() > 10_000, "{} is suspiciously small ({} bytes)", path.display(), bytes.len());
    Ok(())
}
