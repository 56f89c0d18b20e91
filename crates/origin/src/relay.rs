//! Relay: pull an upstream live HLS URL (another origin, SRS, a CDN) and republish it, signed,
//! under `/live/{stream}/`.
//!
//! A master playlist becomes one rendition per variant (named after the variant's directory
//! or file, e.g. `360p/index.m3u8` → `360p`); a media playlist becomes one rendition
//! (`relay.rendition`). Upstream sequence numbers are kept (offset 0) so renditions stay
//! aligned and a relay of a relay keeps the same numbers; an upstream restart continues the
//! numbering with a discontinuity (see `numbering`). Only MPEG-TS segments are relayed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use m3u8_rs::Playlist;
use reqwest::Url;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::RelayConfig;
use crate::ingest::rendition_from_uri;
use crate::media::tsinfo::inspect;
use crate::numbering::{RenditionNumbering, StreamNumbering};
use crate::store::{NewSegment, RenditionInfo, SourceKind, Stream};
use crate::Origin;

/// Largest upstream playlist read.
const MAX_PLAYLIST_BYTES: usize = 1024 * 1024;

struct Upstream {
    name: String,
    url: Url,
    declared: RenditionInfo,
}

/// The upstream no longer has (or never had) what its playlist listed: 404 or 410.
#[derive(Debug)]
struct Gone(String);

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Gone {}

async fn fetch_limited(client: &reqwest::Client, url: &Url, limit: usize) -> anyhow::Result<Bytes> {
    let mut resp = client.get(url.clone()).send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
        return Err(Gone(format!("GET {url}: HTTP {status}")).into());
    }
    if !status.is_success() {
        bail!("GET {url}: HTTP {}", resp.status());
    }
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        bail!("GET {url}: body larger than {limit} bytes");
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("reading {url}"))? {
        if buf.len() + chunk.len() > limit {
            bail!("GET {url}: body larger than {limit} bytes");
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Sleep, or return `false` at once if cancelled.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}

async fn discover(client: &reqwest::Client, cfg: &RelayConfig) -> anyhow::Result<Vec<Upstream>> {
    let url = Url::parse(&cfg.url).with_context(|| format!("relay url {:?}", cfg.url))?;
    let body = fetch_limited(client, &url, MAX_PLAYLIST_BYTES).await?;
    let pl = m3u8_rs::parse_playlist_res(&body).map_err(|_| anyhow::anyhow!("{url}: not an HLS playlist"))?;
    match pl {
        Playlist::MediaPlaylist(_) => {
            Ok(vec![Upstream { name: cfg.rendition.clone(), url, declared: RenditionInfo::default() }])
        }
        Playlist::MasterPlaylist(m) => {
            let mut out: Vec<Upstream> = Vec::new();
            for (i, v) in m.variants.iter().filter(|v| !v.is_i_frame).enumerate().take(8) {
                let vurl = url.join(&v.uri).with_context(|| format!("variant uri {:?}", v.uri))?;
                let mut name = rendition_from_uri(&v.uri)
                    .or_else(|| v.resolution.map(|r| format!("{}p", r.height)))
                    .unwrap_or_else(|| format!("v{i}"));
                if out.iter().any(|u| u.name == name) {
                    name = format!("v{i}");
                }
                out.push(Upstream {
                    name,
                    url: vurl,
                    declared: RenditionInfo {
                        bandwidth: Some(v.bandwidth),
                        resolution: v.resolution.map(|r| (r.width as u32, r.height as u32)),
                        codecs: v.codecs.clone(),
                        frame_rate: v.frame_rate,
                        independent: m.independent_segments,
                    },
                });
            }
            if out.is_empty() {
                bail!("{url}: master playlist without variants");
            }
            Ok(out)
        }
    }
}

/// Run the relay until `cancel` fires. Upstream errors are logged and retried; only a bad
/// configuration ends it early.
pub async fn run(
    origin: Origin,
    cfg: RelayConfig,
    stream_name: String,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(cfg.timeout_s.max(1)))
        .connect_timeout(Duration::from_secs(cfg.timeout_s.clamp(1, 10)))
        .build()
        .context("building the relay HTTP client")?;
    let stream = origin.store.open_stream(&stream_name, SourceKind::Relay)?;
    let mut backoff = Duration::from_millis(500);
    let upstreams = loop {
        match discover(&client, &cfg).await {
            Ok(u) => break u,
            Err(e) => {
                tracing::warn!(url = cfg.url, error = %format!("{e:#}"), "relay: upstream not available yet");
                if !sleep_or_cancel(backoff, &cancel).await {
                    return Ok(());
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    tracing::info!(url = cfg.url, stream = stream_name, renditions = ?upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), "relay started");
    let numbering = Arc::new(Mutex::new(StreamNumbering::new(0)));
    let mut tasks = tokio::task::JoinSet::new();
    for up in upstreams {
        let (o, c, s, n, cfg, client) =
            (origin.clone(), cancel.clone(), stream.clone(), numbering.clone(), cfg.clone(), client.clone());
        tasks.spawn(async move { relay_rendition(o, s, up, n, cfg, client, c).await });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn relay_rendition(
    origin: Origin,
    stream: Arc<Stream>,
    up: Upstream,
    numbering: Arc<Mutex<StreamNumbering>>,
    cfg: RelayConfig,
    client: reqwest::Client,
    cancel: CancellationToken,
) {
    let mut rn = RenditionNumbering::default();
    let mut first_load = true;
    let mut errors_in_row = 0u32;
    loop {
        let mut interval = Duration::from_millis(cfg.poll_interval_ms.unwrap_or(1000));
        match poll_once(&origin, &stream, &up, &numbering, &mut rn, &cfg, &client, first_load).await {
            Ok(target_s) => {
                first_load = false;
                errors_in_row = 0;
                if cfg.poll_interval_ms.is_none() {
                    interval = Duration::from_millis((target_s * 500).clamp(500, 5000));
                }
            }
            Err(e) => {
                errors_in_row += 1;
                // Log the first failure and then every tenth, not every poll.
                if errors_in_row == 1 || errors_in_row.is_multiple_of(10) {
                    tracing::warn!(rendition = up.name, url = %up.url, errors_in_row, error = %format!("{e:#}"), "relay: upstream poll failed");
                }
                interval = Duration::from_millis(500u64.saturating_mul(u64::from(errors_in_row)).min(10_000));
            }
        }
        if !sleep_or_cancel(interval, &cancel).await {
            return;
        }
    }
}

/// One poll: fetch the media playlist, publish what is new. Returns the target duration.
#[allow(clippy::too_many_arguments)]
async fn poll_once(
    origin: &Origin,
    stream: &Stream,
    up: &Upstream,
    numbering: &Mutex<StreamNumbering>,
    rn: &mut RenditionNumbering,
    cfg: &RelayConfig,
    client: &reqwest::Client,
    first_load: bool,
) -> anyhow::Result<u64> {
    let body = fetch_limited(client, &up.url, MAX_PLAYLIST_BYTES).await?;
    let pl = m3u8_rs::parse_media_playlist_res(&body)
        .map_err(|_| anyhow::anyhow!("{}: not a media playlist", up.url))?;
    let n = pl.segments.len();
    let newest = pl.media_sequence + n.saturating_sub(1) as u64;
    let mut restart = n > 0 && rn.last_upstream().is_some_and(|l| newest < l);
    if restart {
        tracing::info!(
            rendition = up.name,
            newest,
            "relay: upstream restarted, continuing with a discontinuity"
        );
    }
    // On the first load take only what fits our window; older segments are of no use.
    let skip = if first_load { n.saturating_sub(origin.config.window) } else { 0 };
    for (i, seg) in pl.segments.iter().enumerate().skip(skip) {
        let up_seq = pl.media_sequence + i as u64;
        if !restart && !StreamNumbering::is_new(rn, up_seq) {
            continue;
        }
        let seg_url = up.url.join(&seg.uri).with_context(|| format!("segment uri {:?}", seg.uri))?;
        let data = match fetch_limited(client, &seg_url, cfg.max_segment_bytes).await {
            Ok(d) => d,
            // Left the upstream's window between its playlist and this fetch (a slow poll, a
            // short window): lost for good, so go on with the rest rather than retry the whole
            // playlist and fall further behind.
            Err(e) if e.downcast_ref::<Gone>().is_some() => {
                tracing::warn!(rendition = up.name, url = %seg_url, error = %e, "relay: upstream segment gone, skipped");
                continue;
            }
            Err(e) => return Err(e),
        };
        let info = match inspect(&data) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(rendition = up.name, url = %seg_url, error = %e, "relay: upstream segment is not valid MPEG-TS, skipped");
                continue;
            }
        };
        let duration = f64::from(seg.duration);
        if !(duration.is_finite() && duration > 0.0 && duration <= 60.0) {
            tracing::warn!(rendition = up.name, url = %seg_url, duration, "relay: invalid segment duration, skipped");
            continue;
        }
        let duration_ms = (duration * 1000.0).round() as u32;
        let upstream_pdt = seg.program_date_time.map(|t| t.timestamp_millis().max(0) as u64);
        let (assigned, pdt) = {
            let mut num = numbering.lock().unwrap_or_else(PoisonError::into_inner);
            let a = num.assign(rn, up_seq, restart);
            let pdt = num.pdt(
                rn,
                a.seq,
                upstream_pdt,
                duration_ms,
                now_ms().saturating_sub(u64::from(duration_ms)),
            );
            (a, pdt)
        };
        restart = false;
        if origin.store.info(stream, &up.name).is_none_or(|i| i.codecs.is_none() && i.resolution.is_none()) {
            let d = &up.declared;
            origin.store.set_info(
                stream,
                &up.name,
                RenditionInfo {
                    bandwidth: d.bandwidth,
                    resolution: d.resolution.or(info.resolution()),
                    codecs: d.codecs.clone().or(info.codecs()),
                    frame_rate: d.frame_rate,
                    independent: d.independent,
                },
            )?;
        }
        if let Err(e) = origin.store.publish(
            stream,
            &up.name,
            NewSegment {
                seq: assigned.seq,
                duration_ms,
                pdt_ms: pdt,
                discontinuity: assigned.discontinuity,
                data,
            },
        ) {
            tracing::warn!(rendition = up.name, seq = assigned.seq, error = %e, "relay: segment not published");
        }
    }
    if pl.end_list {
        origin.store.end(stream, &up.name);
    }
    Ok(pl.target_duration.max(1))
}
