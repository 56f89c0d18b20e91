//! `shoal bench browser`: one live stream, one machine, three kinds of players in turn —
//! CDN-only hls.js, hls.js with Shoal's browser SDK, and hls.js with p2p-media-loader 2.3.1
//! (WebTorrent tracker on Shoal's `/announce` path) — each as N headless Chromium pages that
//! join one after another and play together.
//!
//! Offload is counted at the HTTP server: the origin runs in this process behind a layer that
//! counts the body bytes it sends per path, against the bytes hls.js consumed in the pages.
//! Needs root (a network namespace), Debian's Chromium, `web/node_modules` and `make web`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures::Stream;
use serde::Serialize;
use shoal_origin::{CancellationToken, Origin, OriginConfig};
use shoal_testkit::browser::{self, BrowserEnv, PlayConfig, PlayReport, ServeDir};
use shoal_testkit::{workspace_root, Netns, Proc, TestDir, VETH_ADDR};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Viewers (pages) per player kind.
    #[arg(long, default_value_t = 6)]
    pub viewers: usize,
    /// A new viewer opens every this many ms.
    #[arg(long, default_value_t = 2_000)]
    pub join_every_ms: u64,
    /// Seconds every viewer plays after the last one joined.
    #[arg(long, default_value_t = 90)]
    pub play_s: u64,
    /// Synthetic ladder of the origin (`name:WxH@kbps,...`).
    #[arg(long, default_value = "360p:640x360@800")]
    pub ladder: String,
    /// Player kinds to run, in order: cdn, shoal, p2pml.
    #[arg(long, value_delimiter = ',', default_value = "cdn,shoal,p2pml")]
    pub players: Vec<String>,
}

/// Bytes the origin sent, by kind of object; segments also per path with their full size.
#[derive(Default)]
struct Counters {
    segments: u64,
    manifests: u64,
    playlists: u64,
    /// path -> (bytes sent, full size)
    per_segment: HashMap<String, (u64, u64)>,
}

type Shared = Arc<Mutex<Counters>>;

/// A response body that adds what it yields to the counters.
struct Counted {
    inner: axum::body::BodyDataStream,
    counters: Shared,
    path: String,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Segment,
    Manifest,
    Playlist,
    Other,
}

impl Stream for Counted {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let p = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(b))) = &p {
            let n = b.len() as u64;
            if let Ok(mut c) = self.counters.lock() {
                match self.kind {
                    Kind::Segment => {
                        c.segments += n;
                        c.per_segment.entry(self.path.clone()).or_default().0 += n;
                    }
                    Kind::Manifest => c.manifests += n,
                    Kind::Playlist => c.playlists += n,
                    Kind::Other => {}
                }
            }
        }
        p
    }
}

async fn count(counters: Shared, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let kind = if path.ends_with(".ts") || path.ends_with(".m4s") {
        Kind::Segment
    } else if path.ends_with("manifest.json") {
        Kind::Manifest
    } else if path.ends_with(".m3u8") {
        Kind::Playlist
    } else {
        Kind::Other
    };
    let resp = next.run(req).await;
    if let Kind::Segment = kind {
        let h = resp.headers();
        let full = h
            .get(axum::http::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|t| t.parse::<u64>().ok())
            .or_else(|| {
                h.get(axum::http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
            });
        if let (Some(full), Ok(mut c)) = (full, counters.lock()) {
            c.per_segment.entry(path.clone()).or_default().1 = full;
        }
    }
    let (parts, body) = resp.into_parts();
    let stream = Counted { inner: body.into_data_stream(), counters, path, kind };
    Response::from_parts(parts, Body::from_stream(stream))
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Sent {
    segments: u64,
    manifests: u64,
    playlists: u64,
    /// Sum of the full sizes of the distinct segments fetched.
    distinct_segment_bytes: u64,
}

fn snapshot(c: &Shared) -> (Sent, HashMap<String, (u64, u64)>) {
    let c = c.lock().map(|g| (g.segments, g.manifests, g.playlists, g.per_segment.clone()));
    match c {
        Ok((s, m, p, per)) => {
            (Sent { segments: s, manifests: m, playlists: p, distinct_segment_bytes: 0 }, per)
        }
        Err(_) => (Sent::default(), HashMap::new()),
    }
}

/// What one player kind did.
#[derive(Debug, Serialize)]
struct Outcome {
    player: String,
    viewers: usize,
    /// Segment bytes hls.js consumed in all pages.
    consumed: u64,
    sent: Sent,
    /// 1 − segment bytes sent / consumed (counted at the server).
    offload: f64,
    /// 1 − (segments + signed manifests) sent / consumed.
    net_offload: f64,
    /// Segment bytes sent / bytes of the distinct segments fetched.
    cdn_copies: f64,
    /// The player's own count of its share from peers, when it has one.
    reported_share: Option<f64>,
    stalls: usize,
    stall_ms: f64,
    startup_p50_ms: Option<f64>,
    startup_max_ms: Option<f64>,
    /// Wall clock minus PROGRAM-DATE-TIME of the frame on screen, median over every sample.
    behind_live_p50_s: Option<f64>,
    errors: usize,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn outcome(player: &str, report: &PlayReport, sent: Sent) -> Outcome {
    let consumed: u64 = report.viewers.iter().map(|v| v.frag_bytes).sum();
    let stalls: usize = report.viewers.iter().map(|v| v.stalls.len() + v.buffer_stalled_errors.len()).sum();
    let stall_ms: f64 =
        report.viewers.iter().flat_map(|v| v.stalls.iter()).map(|s| s.duration_ms.unwrap_or(0.0)).sum();
    let startups: Vec<f64> = report.viewers.iter().filter_map(|v| v.startup_ms).collect();
    let mut lat = Vec::new();
    for v in &report.viewers {
        if let Some(start) = v.first_playing_at_ms {
            lat.extend(v.samples.iter().filter(|s| s.at_ms > start + 2_000.0).filter_map(|s| s.pdt_latency));
        }
    }
    let errors: usize = report.viewers.iter().map(|v| v.errors.len() + v.page_errors.len()).sum();
    let reported_share = match player {
        "shoal" => {
            let (mut http, mut p2p) = (0.0, 0.0);
            for v in &report.viewers {
                http += v.extra.pointer("/stats/httpBytes").and_then(|x| x.as_f64()).unwrap_or(0.0);
                p2p += v.extra.pointer("/stats/p2pBytes").and_then(|x| x.as_f64()).unwrap_or(0.0);
            }
            (http + p2p > 0.0).then(|| p2p / (http + p2p))
        }
        "p2pml" => {
            let (mut http, mut p2p) = (0.0, 0.0);
            for v in &report.viewers {
                http += v.extra.pointer("/p2pml/http").and_then(|x| x.as_f64()).unwrap_or(0.0);
                p2p += v.extra.pointer("/p2pml/p2p").and_then(|x| x.as_f64()).unwrap_or(0.0);
            }
            (http + p2p > 0.0).then(|| p2p / (http + p2p))
        }
        _ => None,
    };
    let c = consumed.max(1) as f64;
    Outcome {
        player: player.to_owned(),
        viewers: report.viewers.len(),
        consumed,
        sent,
        offload: 1.0 - sent.segments as f64 / c,
        net_offload: 1.0 - (sent.segments + sent.manifests) as f64 / c,
        cdn_copies: sent.segments as f64 / sent.distinct_segment_bytes.max(1) as f64,
        reported_share,
        stalls,
        stall_ms,
        startup_p50_ms: median(startups.clone()),
        startup_max_ms: startups
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))),
        behind_live_p50_s: median(lat),
        errors,
    }
}

const P2PML_HOOK: &str = r#"
;(() => {
  const cfg = __CFG__;
  const st = { http: 0, p2p: 0, up: 0, peers: 0 };
  const engine = new window.P2PML.HlsJsP2PEngine({
    core: { announceTrackers: [cfg.tracker], rtcConfig: { iceServers: cfg.stun.length ? [{ urls: cfg.stun }] : [] } },
  });
  engine.addEventListener('onChunkDownloaded', (n, source) => { if (source === 'http') st.http += n; else st.p2p += n; });
  engine.addEventListener('onChunkUploaded', (n) => { st.up += n; });
  engine.addEventListener('onPeerConnect', () => { st.peers += 1; });
  window.__shoalTestHooks = {
    hlsConfig: (c) => ({ ...c, ...engine.getConfigForHlsJs() }),
    onHls: (hls, video) => {
      engine.bindHls(hls);
      // p2p-media-loader drops its state on hlsMediaAttaching: attach first, as its examples
      // do (the runner's player calls loadSource, then attachMedia, which becomes a no-op).
      hls.attachMedia(video);
      const attach = hls.attachMedia.bind(hls);
      hls.attachMedia = (m) => { if (m !== video) attach(m); };
      hls.on('hlsError', (_e, d) => console.log(`hls.js ${d.details}: ${d.error && (d.error.stack || d.error.message)} ${d.reason || ''}`));
    },
    report: () => ({ p2pml: st }),
  };
})();
"#;

const SHOAL_HOOK: &str = r#"
;(() => {
  const shoal = new window.Shoal(__CFG__);
  window.__shoalTestHooks = {
    hlsConfig: (c) => shoal.hlsConfig(c),
    onHls: (hls) => shoal.attach(hls),
    report: () => ({ stats: shoal.stats() }),
  };
})();
"#;

fn init_script(
    dir: &TestDir,
    name: &str,
    lib: &PathBuf,
    hook: &str,
    cfg: serde_json::Value,
) -> anyhow::Result<PathBuf> {
    let code = std::fs::read_to_string(lib).with_context(|| format!("reading {}", lib.display()))?;
    let path = dir.join(format!("{name}-init.js"));
    std::fs::write(&path, format!("{code}\n{}", hook.replace("__CFG__", &cfg.to_string())))?;
    Ok(path)
}

pub fn run_cmd(a: Args) -> anyhow::Result<()> {
    if a.viewers == 0 || a.viewers > 32 {
        bail!("--viewers must be 1..=32");
    }
    for p in &a.players {
        if !matches!(p.as_str(), "cdn" | "shoal" | "p2pml") {
            bail!("unknown player kind {p:?} (cdn, shoal, p2pml)");
        }
    }
    BrowserEnv::check()?;
    let dist = workspace_root().join("web/dist");
    for f in ["shoal.iife.js", "shoal_wasm_bg.wasm", "bench/p2pml.js"] {
        if !dist.join(f).is_file() {
            bail!("{} is missing: run `make web` first", dist.join(f).display());
        }
    }
    let dir = TestDir::new("bench_browser")?;
    let ns = Netns::new()?;
    let rt = ns.tokio_runtime(2)?;

    // The origin, in this process, behind the byte counter.
    let mut ocfg = OriginConfig::default();
    ocfg.synthetic.enabled = true;
    ocfg.synthetic.renditions = crate::cmd::origin::parse_ladder(&a.ladder)?;
    let origin = Origin::new(ocfg)?;
    let key = origin.store.public_key_b64();
    let counters: Shared = Arc::new(Mutex::new(Counters::default()));
    let cancel = CancellationToken::new();
    let (origin_url, master) = {
        let (o, c, k) = (origin.clone(), counters.clone(), cancel.clone());
        rt.block_on(async move {
            let _sources = o.start_sources(k.clone())?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            if !o.wait_synthetic_ready(Duration::from_secs(60)).await {
                bail!("the synthetic stream did not start within 60 s");
            }
            let app =
                o.router().layer(axum::middleware::from_fn(move |req, next| count(c.clone(), req, next)));
            tokio::spawn(async move {
                if let Err(e) = shoal_origin::serve(listener, app, k).await {
                    tracing::error!("origin: {e}");
                }
            });
            // Keep the sources running for the whole benchmark.
            std::mem::forget(_sources);
            let base = format!("http://{addr}");
            Ok::<_, anyhow::Error>((base.clone(), o.master_url(&base)))
        })?
    };

    let exe = std::env::current_exe().context("locating the shoal binary")?;
    let mut serve = Proc::builder("serve", &exe)
        .env("SHOAL_API_HOLDBACK_PERCENT", "0") // every viewer in the swarm: no control group
        .args(["serve", "--listen", "127.0.0.1:0", "--stun-listen", &format!("{VETH_ADDR}:0")])
        .args(["--set", "auth.require_token=false", "--set", &format!("api.origin_public_key={key}")])
        .netns(&ns)
        .log_dir(dir.path())
        .spawn()?;
    let ready = serve.wait_ready("SERVE", Duration::from_secs(30))?;
    let api = ready.url.clone();
    let stun = ready
        .fields
        .iter()
        .find_map(|f| f.strip_prefix("stun="))
        .map(|s| format!("stun:{s}"))
        .ok_or_else(|| anyhow!("serve readiness line without stun=: {}", ready.line))?;
    let tracker = format!("{}/announce", api.replacen("http://", "ws://", 1));
    println!("origin {origin_url} (stream {master}), api {api}, stun {stun}, WebTorrent tracker {tracker}");

    // Viewers join a stream that has been running: wait for a full-ish playlist, so hls.js
    // starts its usual three target durations behind the live edge from the first run on.
    let first = origin.config.synthetic.renditions.first().map_or("360p".to_string(), |r| r.name.clone());
    let media = format!("{origin_url}/live/{}/{first}/index.m3u8", origin.config.stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let n = shoal_testkit::http::get(Some(&ns), &media, Duration::from_secs(5))
            .map(|r| r.text().lines().filter(|l| l.starts_with("#EXTINF")).count())
            .unwrap_or(0);
        if n >= 6 {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("{media} lists {n} segments after 40 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    let duration_ms = (a.viewers as u64 - 1) * a.join_every_ms + a.play_s * 1000;
    let mut outcomes = Vec::new();
    for player in &a.players {
        let mut cfg = PlayConfig::new(master.clone(), Duration::from_millis(duration_ms), a.viewers);
        for (i, v) in cfg.viewers.iter_mut().enumerate() {
            v.open_at_ms = i as u64 * a.join_every_ms;
        }
        // Pages are served by interception; they may reach other loopback servers only with
        // Local Network Access checks off (and mDNS hiding off, as the runner does).
        cfg.extra_chromium_args =
            vec!["--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks".into()];
        match player.as_str() {
            "shoal" => {
                let opts =
                    serde_json::json!({ "api": api, "wasmUrl": "/__shoal_test/sdk/shoal_wasm_bg.wasm" });
                cfg.init_scripts.push(init_script(
                    &dir,
                    "shoal",
                    &dist.join("shoal.iife.js"),
                    SHOAL_HOOK,
                    opts,
                )?);
                cfg.serve.push(ServeDir { prefix: "/__shoal_test/sdk/".into(), dir: dist.clone() });
            }
            "p2pml" => {
                // With hls.js's transmuxing worker, hls.js transfers (detaches) the ArrayBuffer
                // p2p-media-loader keeps in its segment store; a segment handed over twice then
                // arrives empty ("Failed to find demuxer", then a fatal internalException).
                // Without the worker it plays.
                cfg.hls_config = serde_json::json!({ "enableWorker": false });
                let opts = serde_json::json!({ "tracker": tracker, "stun": [stun] });
                cfg.init_scripts.push(init_script(
                    &dir,
                    "p2pml",
                    &dist.join("bench/p2pml.js"),
                    P2PML_HOOK,
                    opts,
                )?);
            }
            _ => {}
        }
        let (before, _) = snapshot(&counters);
        println!(
            "{player}: {} viewers, one every {} ms, {} s of play after the last joins",
            a.viewers, a.join_every_ms, a.play_s
        );
        let report = browser::play(&ns, &dir, player, &cfg)?;
        // Let in-flight responses finish before reading the counters.
        std::thread::sleep(Duration::from_millis(500));
        let (after, per) = snapshot(&counters);
        let sent = Sent {
            segments: after.segments - before.segments,
            manifests: after.manifests - before.manifests,
            playlists: after.playlists - before.playlists,
            // The per-path table is cleared after every run: these are this run's segments.
            distinct_segment_bytes: per.values().map(|(_, full)| *full).sum(),
        };
        if let Ok(mut c) = counters.lock() {
            c.per_segment.clear();
        }
        let o = outcome(player, &report, sent);
        for v in &report.viewers {
            println!("  {}", v.one_line());
        }
        println!(
            "  => offload {:.3} (net {:.3}), CDN copies/segment {:.2}, stalls {}, startup p50 {:?} ms, behind live p50 {:?} s",
            o.offload, o.net_offload, o.cdn_copies, o.stalls, o.startup_p50_ms, o.behind_live_p50_s
        );
        outcomes.push(o);
    }
    cancel.cancel();
    drop(serve);

    let bound = 1.0 - 1.0 / a.viewers as f64;
    println!();
    println!("Browser swarm: {} viewers per player (one joins every {} ms, {} s of play after the last), ladder {}, same origin and machine; offload counted at the origin (bound 1 - 1/N = {bound:.3})", a.viewers, a.join_every_ms, a.play_s, a.ladder);
    println!();
    println!("| player | offload (server) | net of manifests | player's own share | CDN copies / segment | stalls (total ms) | startup p50 / max | behind live edge p50 | errors |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        let f = |x: Option<f64>, d: usize| x.map_or("–".to_string(), |v| format!("{v:.d$}"));
        println!(
            "| {} | {:.3} | {:.3} | {} | {:.2} | {} ({:.0}) | {} / {} ms | {} s | {} |",
            match o.player.as_str() {
                "cdn" => "CDN-only hls.js",
                "shoal" => "Shoal",
                _ => "p2p-media-loader 2.3.1",
            },
            o.offload,
            o.net_offload,
            f(o.reported_share, 3),
            o.cdn_copies,
            o.stalls,
            o.stall_ms,
            f(o.startup_p50_ms, 0),
            f(o.startup_max_ms, 0),
            f(o.behind_live_p50_s, 1),
            o.errors
        );
    }
    let json = dir.join("bench.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&outcomes)?)?;
    println!();
    println!("(details: {})", json.display());
    Ok(())
}
