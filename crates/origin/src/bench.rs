//! `shoal bench origin`: the encoder's real-time factor and the origin's segment-serving
//! throughput, in one report.
//!
//! 1. **Encoder**: the synthetic ladder is encoded for `encode_seconds` of media on one
//!    thread (all renditions interleaved, as fast as possible). Real-time factor = media
//!    seconds / CPU seconds of that thread, so `rtf > 1` means one core keeps up with the
//!    whole ladder; wall-clock RTF is reported too.
//! 2. **Serving**: those segments are published into an origin served on `127.0.0.1:0` by its
//!    own runtime (`server_threads` workers), and `concurrency` HTTP/1.1 keep-alive clients
//!    on another runtime (`client_threads` workers) fetch whole segments for `duration`
//!    (bounded by `max_requests`). Reported: requests/s, Gbit/s of body bytes, p50/p99
//!    latency to the last byte. With `target` set, an external origin's master or media
//!    playlist is loaded instead and its segments are fetched.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::response::IntoResponse as _;
use bytes::Bytes;
use serde::Serialize;
use shoal_proto::SigningKey;

use crate::clock::now_ms;
use crate::config::{OriginConfig, SyntheticConfig};
use crate::store::{NewSegment, SourceKind};
use crate::synth::RenditionEncoder;
use crate::Origin;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub synthetic: SyntheticConfig,
    /// Media seconds to encode for the real-time factor (and to serve).
    pub encode_seconds: f64,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: u64,
    pub server_threads: usize,
    pub client_threads: usize,
    /// External master or media playlist URL to load instead of an in-process origin.
    pub target: Option<String>,
    /// Skip the encoder part (serving only).
    pub skip_encoder: bool,
    /// Fetch `range` bytes at a chunk-aligned offset of each segment instead of the whole
    /// segment (a client completing a segment peers delivered in part). 0: whole segments.
    pub range: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            synthetic: SyntheticConfig::default(),
            encode_seconds: 20.0,
            concurrency: 32,
            duration: Duration::from_secs(10),
            max_requests: 5_000_000,
            server_threads: 1,
            client_threads: 1,
            target: None,
            skip_encoder: false,
            range: 0,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RenditionReport {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub target_kbps: u32,
    pub measured_kbps: f64,
    pub cpu_s: f64,
    pub rtf: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EncoderReport {
    pub fps: u32,
    pub segment_duration_s: f64,
    pub media_s: f64,
    pub cpu_s: f64,
    pub wall_s: f64,
    /// Media seconds per CPU second of the one encoding thread (whole ladder).
    pub rtf_cpu: f64,
    pub rtf_wall: f64,
    /// Where the CPU time came from (`/proc/thread-self/schedstat`, or wall clock).
    pub cpu_clock: String,
    pub renditions: Vec<RenditionReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServeReport {
    pub target: String,
    pub concurrency: usize,
    /// Bytes per request when fetching ranges; 0 for whole segments.
    pub range: u64,
    pub server_threads: usize,
    pub client_threads: usize,
    pub segments: usize,
    pub mean_segment_bytes: f64,
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub requests_per_s: f64,
    pub gbit_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU cores the in-process server's threads used during the load (from
    /// `/proc/self/task/*/schedstat`); `None` for an external target.
    pub server_cores: Option<f64>,
    /// Same for the load generator's threads.
    pub client_cores: Option<f64>,
    /// Gbit/s per server core: the figure that holds on a shared, busy machine.
    pub gbit_per_server_core: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub cores: usize,
    pub encoder: Option<EncoderReport>,
    pub serve: ServeReport,
    /// Baseline measured in the same run (in-process mode): the same segments from a bare
    /// handler (`/seg/{i}` → bytes) on the same server stack, so `serve / baseline` is the cost
    /// of the origin's routing, lookups and headers.
    pub baseline: Option<ServeReport>,
}

const SERVER_THREAD: &str = "bench-origin";
const CLIENT_THREAD: &str = "bench-client";

/// CPU time of the calling thread in seconds, if the kernel tells us.
fn thread_cpu_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Summed on-CPU time (seconds) of this process's threads whose name starts with `prefix`.
fn threads_cpu_s(prefix: &str) -> Option<f64> {
    let mut total = 0f64;
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = t.ok()?.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
        total += stat.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1e9;
    }
    Some(total)
}

/// Encoded segments of every rendition, by rendition name.
type Encoded = Vec<(String, Vec<Bytes>)>;

/// Encode the ladder on the calling thread; returns the report and the segments.
pub fn measure_encoder(s: &SyntheticConfig, media_seconds: f64) -> anyhow::Result<(EncoderReport, Encoded)> {
    let seg_s = s.segment_duration_ms() as f64 / 1000.0;
    let segments = ((media_seconds / seg_s).ceil() as u64).max(1);
    let mut encoders =
        s.renditions.iter().map(|r| RenditionEncoder::new(r, s)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut out: Encoded = encoders.iter().map(|e| (e.name.clone(), Vec::new())).collect();
    let mut cpu = vec![0f64; encoders.len()];
    let wall0 = Instant::now();
    let cpu0 = thread_cpu_s();
    for k in 0..segments {
        for (j, e) in encoders.iter_mut().enumerate() {
            let c = thread_cpu_s();
            let t = Instant::now();
            let seg = e
                .encode_segment(k, k, |i| i * 1000 / u64::from(s.fps), |_| true)?
                .context("encoder stopped")?;
            cpu[j] += match (c, thread_cpu_s()) {
                (Some(a), Some(b)) => b - a,
                _ => t.elapsed().as_secs_f64(),
            };
            out[j].1.push(Bytes::from(seg.data));
        }
    }
    let wall_s = wall0.elapsed().as_secs_f64();
    let (cpu_s, cpu_clock) = match (cpu0, thread_cpu_s()) {
        (Some(a), Some(b)) => (b - a, "/proc/thread-self/schedstat".to_owned()),
        _ => (wall_s, "wall clock (no per-thread CPU time available)".to_owned()),
    };
    let media_s = segments as f64 * seg_s;
    let renditions = encoders
        .iter()
        .zip(&out)
        .zip(&cpu)
        .map(|((e, (_, segs)), c)| {
            let bytes: usize = segs.iter().map(Bytes::len).sum();
            RenditionReport {
                name: e.name.clone(),
                width: e.width,
                height: e.height,
                target_kbps: e.bitrate_kbps,
                measured_kbps: bytes as f64 * 8.0 / media_s / 1000.0,
                cpu_s: *c,
                rtf: media_s / c.max(1e-9),
            }
        })
        .collect();
    Ok((
        EncoderReport {
            fps: s.fps,
            segment_duration_s: seg_s,
            media_s,
            cpu_s,
            wall_s,
            rtf_cpu: media_s / cpu_s.max(1e-9),
            rtf_wall: media_s / wall_s.max(1e-9),
            cpu_clock,
            renditions,
        },
        out,
    ))
}

/// Run the whole benchmark. Blocking: it makes its own runtimes.
pub fn run(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    if opts.concurrency == 0 || opts.concurrency > 4096 {
        bail!("concurrency must be 1..=4096");
    }
    if opts.range > 1_000_000 {
        bail!("range must be at most 1,000,000 bytes");
    }
    if opts.duration.is_zero() || opts.duration > Duration::from_secs(600) {
        bail!("duration must be 1..=600 s");
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let need_segments = opts.target.is_none();
    let (encoder, encoded) = if opts.skip_encoder && !need_segments {
        (None, Vec::new())
    } else {
        let s = opts.synthetic.clone();
        let secs = opts.encode_seconds;
        // Its own thread, so the CPU clock counts the encoder alone.
        let (r, e) = std::thread::spawn(move || measure_encoder(&s, secs))
            .join()
            .map_err(|_| anyhow::anyhow!("encoder thread panicked"))??;
        (Some(r), e)
    };

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.server_threads.max(1))
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads.max(1))
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()?;
    let cancel = tokio_util::sync::CancellationToken::new();

    let mut baseline_urls = Vec::new();
    let (urls, target) = match &opts.target {
        Some(t) => (client_rt.block_on(segment_urls(t))?, t.clone()),
        None => {
            let segs = encoded.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
            let cfg = OriginConfig {
                stream: "bench".into(),
                window: segs.max(1),
                retain_after_window: 0,
                ..Default::default()
            };
            let origin = Origin::with_key(cfg, SigningKey::from_bytes(&[0x42; 32]))?;
            let stream = origin.store.open_stream("bench", SourceKind::Synthetic)?;
            let seg_ms = opts.synthetic.segment_duration_ms() as u32;
            let t0 = now_ms();
            for (name, segs) in &encoded {
                for (k, data) in segs.iter().enumerate() {
                    let k = k as u64;
                    origin.store.publish(
                        &stream,
                        name,
                        NewSegment {
                            seq: k,
                            duration_ms: seg_ms,
                            pdt_ms: t0 + k * u64::from(seg_ms),
                            discontinuity: false,
                            data: data.clone(),
                        },
                    )?;
                }
            }
            let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
            let addr: SocketAddr = listener.local_addr()?;
            let app = origin.router();
            let c = cancel.clone();
            server_rt.spawn(async move {
                if let Err(e) = crate::serve(listener, app, c).await {
                    tracing::error!(error = %e, "bench server failed");
                }
            });
            // Baseline: the same bytes from a bare handler on the same server stack.
            let all: Arc<Vec<Bytes>> =
                Arc::new(encoded.iter().flat_map(|(_, v)| v.iter().cloned()).collect());
            let bare = axum::Router::new().route(
                "/seg/{i}",
                axum::routing::get(
                    move |axum::extract::Path(i): axum::extract::Path<usize>,
                          headers: axum::http::HeaderMap| {
                        let all = all.clone();
                        async move {
                            let Some(b) = all.get(i) else {
                                return axum::http::StatusCode::NOT_FOUND.into_response();
                            };
                            // Just enough Range for the bench's own `bytes=a-b` requests.
                            let range = headers
                                .get(axum::http::header::RANGE)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.strip_prefix("bytes="))
                                .and_then(|v| v.split_once('-'))
                                .and_then(|(a, z)| Some((a.parse::<usize>().ok()?, z.parse::<usize>().ok()?)))
                                .filter(|&(a, z)| a <= z && z < b.len());
                            match range {
                                Some((a, z)) => (
                                    axum::http::StatusCode::PARTIAL_CONTENT,
                                    [(axum::http::header::CONTENT_TYPE, "video/mp2t")],
                                    b.slice(a..=z),
                                )
                                    .into_response(),
                                None => ([(axum::http::header::CONTENT_TYPE, "video/mp2t")], b.clone())
                                    .into_response(),
                            }
                        }
                    },
                ),
            );
            let bare_listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
            let bare_addr = bare_listener.local_addr()?;
            let c = cancel.clone();
            server_rt.spawn(async move {
                if let Err(e) = crate::serve(bare_listener, bare, c).await {
                    tracing::error!(error = %e, "bench baseline server failed");
                }
            });
            let n: usize = encoded.iter().map(|(_, v)| v.len()).sum();
            baseline_urls = (0..n).map(|i| format!("http://{bare_addr}/seg/{i}")).collect();
            let urls = encoded
                .iter()
                .flat_map(|(name, segs)| {
                    (0..segs.len()).map(move |k| format!("http://{addr}/live/bench/{name}/{k}.ts"))
                })
                .collect::<Vec<_>>();
            (urls, format!("in-process origin on {addr}"))
        }
    };
    if urls.is_empty() {
        bail!("no segments to fetch");
    }
    let baseline = if baseline_urls.is_empty() {
        None
    } else {
        Some(client_rt.block_on(load(
            baseline_urls,
            opts,
            "baseline: bare handler, same server stack".into(),
        ))?)
    };
    let serve = client_rt.block_on(load(urls, opts, target));
    cancel.cancel();
    server_rt.shutdown_timeout(Duration::from_secs(2));
    Ok(BenchReport { cores, encoder, serve: serve?, baseline })
}

/// Segment URLs of a master or media playlist.
async fn segment_urls(url: &str) -> anyhow::Result<Vec<String>> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let base = reqwest::Url::parse(url)?;
    let text = client.get(base.clone()).send().await?.error_for_status()?.bytes().await?;
    let media_urls =
        match m3u8_rs::parse_playlist_res(&text).map_err(|_| anyhow::anyhow!("{url}: not a playlist"))? {
            m3u8_rs::Playlist::MasterPlaylist(m) => {
                m.variants.iter().map(|v| base.join(&v.uri)).collect::<Result<Vec<_>, _>>()?
            }
            m3u8_rs::Playlist::MediaPlaylist(_) => vec![base],
        };
    let mut out = Vec::new();
    for m in media_urls {
        let text = client.get(m.clone()).send().await?.error_for_status()?.bytes().await?;
        let pl = m3u8_rs::parse_media_playlist_res(&text)
            .map_err(|_| anyhow::anyhow!("{m}: not a media playlist"))?;
        // The newest three only: on a live origin older ones may expire during the run.
        let skip = pl.segments.len().saturating_sub(3);
        for s in pl.segments.iter().skip(skip) {
            out.push(m.join(&s.uri)?.to_string());
        }
    }
    Ok(out)
}

struct WorkerResult {
    latencies_us: Vec<u32>,
    bytes: u64,
    errors: u64,
}

async fn load(urls: Vec<String>, opts: &BenchOptions, target: String) -> anyhow::Result<ServeReport> {
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(opts.concurrency)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    let urls = Arc::new(urls);
    // Warm-up: one pass over the URLs opens connections and checks they answer.
    for u in urls.iter().take(4) {
        let r = client.get(u).send().await?;
        if !r.status().is_success() {
            bail!("{u}: HTTP {}", r.status());
        }
        r.bytes().await?;
    }
    let mean_segment_bytes = {
        let mut total = 0u64;
        for u in urls.iter() {
            let r = client.head(u).send().await?;
            // reqwest reports the (empty) HEAD body's length, so read the header itself.
            total += r
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        total as f64 / urls.len() as f64
    };
    let stop = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(opts.max_requests));
    let start = Instant::now();
    let cpu0 = (threads_cpu_s(SERVER_THREAD), threads_cpu_s(CLIENT_THREAD));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..opts.concurrency {
        let (client, urls, stop, budget) = (client.clone(), urls.clone(), stop.clone(), budget.clone());
        let range = opts.range;
        tasks.spawn(async move {
            let mut res = WorkerResult { latencies_us: Vec::with_capacity(4096), bytes: 0, errors: 0 };
            let mut i = w * 7919;
            while !stop.load(Ordering::Relaxed) {
                if budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1)).is_err() {
                    break;
                }
                let url = &urls[i % urls.len()];
                let mut req = client.get(url);
                if range > 0 {
                    // A chunk-aligned range in the first 160 KB (every segment here is larger).
                    let start = (i as u64 / 7 % 10) * range;
                    req = req.header(reqwest::header::RANGE, format!("bytes={start}-{}", start + range - 1));
                }
                i += 1;
                let t = Instant::now();
                match req.send().await {
                    Ok(mut r) if r.status().is_success() => {
                        let mut n = 0u64;
                        let mut ok = true;
                        loop {
                            match r.chunk().await {
                                Ok(Some(c)) => n += c.len() as u64,
                                Ok(None) => break,
                                Err(_) => {
                                    ok = false;
                                    break;
                                }
                            }
                        }
                        if ok {
                            res.bytes += n;
                            res.latencies_us.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        } else {
                            res.errors += 1;
                        }
                    }
                    _ => res.errors += 1,
                }
            }
            res
        });
    }
    tokio::time::sleep(opts.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let (mut bytes, mut errors) = (0u64, 0u64);
    while let Some(r) = tasks.join_next().await {
        let r = r?;
        lat.extend(r.latencies_us);
        bytes += r.bytes;
        errors += r.errors;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cores = |before: Option<f64>, now: Option<f64>| match (before, now) {
        (Some(a), Some(b)) => Some((b - a) / seconds),
        _ => None,
    };
    let external = opts.target.is_some();
    let server_cores = if external { None } else { cores(cpu0.0, threads_cpu_s(SERVER_THREAD)) };
    let client_cores = cores(cpu0.1, threads_cpu_s(CLIENT_THREAD));
    let gbit_per_s = bytes as f64 * 8.0 / seconds / 1e9;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    let requests = lat.len() as u64;
    Ok(ServeReport {
        target,
        concurrency: opts.concurrency,
        range: opts.range,
        // 0: an external server (`target`), not ours.
        server_threads: if opts.target.is_some() { 0 } else { opts.server_threads },
        client_threads: opts.client_threads,
        segments: urls.len(),
        mean_segment_bytes,
        requests,
        errors,
        bytes,
        seconds,
        requests_per_s: requests as f64 / seconds,
        gbit_per_s,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
        server_cores,
        client_cores,
        gbit_per_server_core: server_cores.filter(|&c| c > 0.0).map(|c| gbit_per_s / c),
    })
}

impl BenchReport {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        use std::fmt::Write as _;
        let _ = writeln!(s, "shoal bench origin ({} cores)", self.cores);
        if let Some(e) = &self.encoder {
            let _ = writeln!(
                s,
                "encoder: {:.0} s of media at {} fps, {:.1} s segments, whole ladder on ONE thread: cpu {:.2} s, wall {:.2} s",
                e.media_s, e.fps, e.segment_duration_s, e.cpu_s, e.wall_s
            );
            let _ = writeln!(
                s,
                "  real-time factor (media s / cpu s): {:.2}   (wall clock: {:.2}; cpu clock: {})",
                e.rtf_cpu, e.rtf_wall, e.cpu_clock
            );
            for r in &e.renditions {
                let _ = writeln!(
                    s,
                    "  {:>6} {}x{}: target {} kbit/s, measured {:.0} kbit/s, cpu {:.2} s (rtf {:.2} alone)",
                    r.name, r.width, r.height, r.target_kbps, r.measured_kbps, r.cpu_s, r.rtf
                );
            }
        }
        for v in self.baseline.iter().chain(std::iter::once(&self.serve)) {
            let _ = writeln!(
                s,
                "serving: {} — {} clients (HTTP/1.1 keep-alive) on {} thread(s), server {}, {} segments of {:.0} B mean{}",
                v.target,
                v.concurrency,
                v.client_threads,
                if v.server_threads == 0 { "external".to_owned() } else { format!("on {} thread(s)", v.server_threads) },
                v.segments,
                v.mean_segment_bytes,
                if v.range > 0 { format!(", fetching {}-byte ranges", v.range) } else { String::new() }
            );
            let _ = writeln!(
                s,
                "  {} requests in {:.1} s: {:.0} req/s, {:.2} Gbit/s, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, {} errors",
                v.requests, v.seconds, v.requests_per_s, v.gbit_per_s, v.p50_ms, v.p99_ms, v.max_ms, v.errors
            );
            if let (Some(sc), Some(cc), Some(g)) = (v.server_cores, v.client_cores, v.gbit_per_server_core) {
                let _ = writeln!(
                    s,
                    "  cpu: server {sc:.2} cores, load generator {cc:.2} cores -> {g:.2} Gbit/s and {:.0} req/s per server core",
                    v.requests_per_s / sc.max(1e-9)
                );
            }
        }
        if let Some(b) = &self.baseline {
            let _ = writeln!(
                s,
                "origin / baseline: req/s {:.2}x, p99 latency {:.2}x",
                self.serve.requests_per_s / b.requests_per_s.max(1e-9),
                self.serve.p99_ms / b.p99_ms.max(1e-9)
            );
        }
        s
    }
}
