//! The headless player: consumes the stream through the local proxy in real time, the way
//! hls.js does (start three segments behind the live edge, refresh the playlist every target
//! duration, fetch each listed segment in order, play at 1x, keep at most 30 s ahead), counts
//! stalls, and checks every segment it receives against the origin-signed manifest on its own
//! (independently of the engine's verification). It tells the core its exact state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_engine::PlayerState;
use shoal_proto::manifest::{verifying_key_from_b64, SignedManifest, MAX_MANIFEST_BYTES};
use shoal_proto::SegmentEntry;
use tokio::sync::{mpsc, watch};

use crate::msg::CoreMsg;
use crate::stats::StatsSnapshot;

const MAX_AHEAD_MS: u64 = 30_000;
const TICK: Duration = Duration::from_millis(50);
const REPORT_EVERY: Duration = Duration::from_millis(250);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the headless player waits for the join before it starts (it plays from the CDN
/// either way).
const JOIN_WAIT: Duration = Duration::from_secs(3);

/// What the headless player saw, as printed at the end of `shoal play --headless`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeadlessSummary {
    pub rendition: String,
    /// Wall time from start to the end of the run, seconds.
    pub run_s: f64,
    /// Media time played, seconds.
    pub played_s: f64,
    pub segments: u64,
    /// Times the buffer ran dry after playback started.
    pub stalls: u32,
    pub stall_ms: u64,
    /// From the first segment request to the first segment received.
    pub startup_ms: Option<u64>,
    /// Segments whose bytes matched a signed manifest entry (checked here, independently).
    pub checked_ok: u64,
    /// Segments whose bytes did NOT match their signed entry (must be 0).
    pub checked_bad: u64,
    /// Segments whose entry was not available to check.
    pub unchecked: u64,
    /// Segments the engine marked verified (every chunk matched).
    pub engine_verified: u64,
    pub from_peers: u64,
    pub from_cdn: u64,
    pub mixed: u64,
    /// Answered by the proxy straight from the CDN (engine failure or timeout).
    pub direct: u64,
    /// Segments skipped because the player fell out of the playlist window.
    pub skipped: u64,
    pub request_errors: u64,
}

pub struct HeadlessParams {
    /// `http://127.0.0.1:PORT` of the proxy.
    pub base: String,
    pub rendition: Option<String>,
    pub duration: Option<Duration>,
    pub status_every: Option<Duration>,
    pub core: mpsc::UnboundedSender<CoreMsg>,
    pub stats: watch::Receiver<StatsSnapshot>,
    pub stop: watch::Receiver<bool>,
    /// An API is configured: wait (briefly) for the join before playing.
    pub wait_join: bool,
    /// Where the player publishes what pingback reports (stalls, play time, latency).
    pub progress: Option<watch::Sender<crate::pingback::PlayerProgress>>,
}

struct Fetched {
    seq: u64,
    bytes: Result<(bytes::Bytes, String, bool), String>,
}

pub async fn run(p: HeadlessParams) -> HeadlessSummary {
    let started = Instant::now();
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
    let mut sum = HeadlessSummary::default();
    let mut stop = p.stop.clone();
    let ended =
        |stop: &watch::Receiver<bool>| *stop.borrow() || p.duration.is_some_and(|d| started.elapsed() >= d);

    // Give the join a moment: segments played before it cannot be verified (no origin key yet).
    if p.wait_join {
        let until = Instant::now() + JOIN_WAIT;
        while Instant::now() < until && !p.stats.borrow().joined && !ended(&stop) {
            let _ = tokio::time::timeout(Duration::from_millis(50), stop.changed()).await;
        }
    }
    // Master playlist → rendition.
    let rendition = loop {
        if ended(&stop) {
            sum.run_s = started.elapsed().as_secs_f64();
            return sum;
        }
        match get(&http, &format!("{}/master.m3u8", p.base)).await {
            Ok((body, _, _)) => match pick_rendition(&body, p.rendition.as_deref()) {
                Some(r) => break r,
                None => {
                    tracing::error!("headless: no usable rendition in the master playlist");
                    sum.request_errors += 1;
                }
            },
            Err(e) => {
                tracing::warn!("headless: master playlist: {e}");
                sum.request_errors += 1;
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), stop.changed()).await;
    };
    sum.rendition = rendition.clone();
    tracing::info!(%rendition, "headless player started");

    let mut listed: Vec<(u64, u32)> = Vec::new();
    let mut target = Duration::from_secs(2);
    let mut next_refresh = Instant::now();
    let mut entries: BTreeMap<u64, SegmentEntry> = BTreeMap::new();
    let mut next: Option<u64> = None;
    let mut in_flight: Option<tokio::task::JoinHandle<Fetched>> = None;
    let mut first_request: Option<Instant> = None;
    let mut playing = false;
    let mut started_play = false;
    let mut playhead_ms = 0u64;
    let mut buffer_end_ms = 0u64;
    let mut last_tick = Instant::now();
    let mut stalled_since: Option<Instant> = None;
    let mut last_report = Instant::now() - REPORT_EVERY;
    let mut last_status = Instant::now();

    while !ended(&stop) {
        let now = Instant::now();
        // Play.
        let dt = now.duration_since(last_tick).as_millis() as u64;
        last_tick = now;
        if playing {
            let ahead = buffer_end_ms.saturating_sub(playhead_ms);
            if dt >= ahead {
                playhead_ms = buffer_end_ms;
                playing = false;
                sum.stalls += 1;
                stalled_since = Some(now - Duration::from_millis(dt - ahead));
                tracing::warn!(next = ?next, "headless player stalled");
            } else {
                playhead_ms += dt;
            }
        }
        // Playlist refresh, about every target duration.
        if now >= next_refresh {
            next_refresh = now + target;
            match get(&http, &format!("{}/{rendition}/index.m3u8", p.base)).await {
                Ok((body, _, _)) => match m3u8_rs::parse_media_playlist_res(&body) {
                    Ok(m) => {
                        target = Duration::from_secs(m.target_duration.clamp(1, 20));
                        next_refresh = now + target;
                        listed = m
                            .segments
                            .iter()
                            .enumerate()
                            .map(|(i, s)| {
                                (m.media_sequence + i as u64, (s.duration.max(0.0) * 1000.0) as u32)
                            })
                            .collect();
                    }
                    Err(_) => sum.request_errors += 1,
                },
                Err(e) => {
                    tracing::warn!("headless: playlist: {e}");
                    sum.request_errors += 1;
                    next_refresh = now + Duration::from_millis(500);
                }
            }
            refresh_entries(&http, &p, &rendition, &mut entries).await;
        }
        // A finished download.
        if in_flight.as_ref().is_some_and(|t| t.is_finished()) {
            if let Some(t) = in_flight.take() {
                let f = match t.await {
                    Ok(f) => f,
                    Err(_) => Fetched { seq: next.unwrap_or(0), bytes: Err("fetch task failed".into()) },
                };
                match f.bytes {
                    Ok((data, source, verified)) => {
                        let dur = listed.iter().find(|(s, _)| *s == f.seq).map_or(2_000, |(_, d)| *d as u64);
                        if !entries.contains_key(&f.seq) {
                            refresh_entries(&http, &p, &rendition, &mut entries).await;
                        }
                        match entries.get(&f.seq) {
                            Some(e) if e.verify_segment(&data) => sum.checked_ok += 1,
                            Some(_) => {
                                sum.checked_bad += 1;
                                tracing::error!(seq = f.seq, "segment bytes do not match the signed entry");
                            }
                            None => sum.unchecked += 1,
                        }
                        if verified {
                            sum.engine_verified += 1;
                        }
                        match source.as_str() {
                            "peers" => sum.from_peers += 1,
                            "mixed" => sum.mixed += 1,
                            "cdn" => sum.from_cdn += 1,
                            _ => sum.direct += 1,
                        }
                        sum.segments += 1;
                        buffer_end_ms += dur;
                        next = Some(f.seq + 1);
                        let now = Instant::now();
                        if !started_play {
                            started_play = true;
                            playing = true;
                            sum.startup_ms = first_request.map(|t| now.duration_since(t).as_millis() as u64);
                        } else if !playing && buffer_end_ms > playhead_ms {
                            playing = true;
                            if let Some(s) = stalled_since.take() {
                                sum.stall_ms += now.duration_since(s).as_millis() as u64;
                            }
                        }
                        last_report = Instant::now() - REPORT_EVERY;
                    }
                    Err(e) => {
                        tracing::warn!(seq = f.seq, "headless: segment: {e}");
                        sum.request_errors += 1;
                    }
                }
            }
        }
        // Next request.
        if in_flight.is_none()
            && !listed.is_empty()
            && buffer_end_ms.saturating_sub(playhead_ms) <= MAX_AHEAD_MS
        {
            let first = listed.first().map_or(0, |s| s.0);
            let last = listed.last().map_or(0, |s| s.0);
            let want = match next {
                // Like hls.js's live start (three target durations behind the edge): wait
                // until the playlist lists three segments, or the player lives at the edge.
                None if last < first + 2 => last + 1,
                None => last - 2,
                Some(n) if n < first => {
                    sum.skipped += first - n;
                    first
                }
                Some(n) => n,
            };
            if want <= last {
                next = Some(want);
                first_request.get_or_insert_with(Instant::now);
                let url = format!("{}/{rendition}/{want}.ts", p.base);
                let http = http.clone();
                in_flight =
                    Some(tokio::spawn(async move { Fetched { seq: want, bytes: get(&http, &url).await } }));
                last_report = Instant::now() - REPORT_EVERY;
            }
        }
        // Tell the engine.
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            let state = PlayerState {
                rendition: rendition.clone(),
                playing,
                buffered_ahead_ms: buffer_end_ms.saturating_sub(playhead_ms).min(u32::MAX as u64) as u32,
                next_seq: next,
            };
            let _ = p.core.send(CoreMsg::PlayerState(state));
            if let Some(tx) = &p.progress {
                let unfetched: u64 = listed
                    .iter()
                    .filter(|(s, _)| next.is_some_and(|n| *s >= n))
                    .map(|(_, d)| *d as u64)
                    .sum();
                tx.send_replace(crate::pingback::PlayerProgress {
                    rendition: rendition.clone(),
                    stalls: sum.stalls as u64,
                    stall_ms: sum.stall_ms + stalled_since.map_or(0, |s| s.elapsed().as_millis() as u64),
                    play_ms: playhead_ms,
                    startup_ms: sum.startup_ms,
                    behind_live_ms: started_play
                        .then(|| buffer_end_ms.saturating_sub(playhead_ms) + unfetched),
                });
            }
        }
        if let Some(every) = p.status_every {
            if last_status.elapsed() >= every {
                last_status = Instant::now();
                let s = p.stats.borrow().clone();
                tracing::info!(
                    segments = sum.segments,
                    stalls = sum.stalls,
                    peers = s.peers_connected,
                    p2p_share = format!("{:.1}%", s.p2p_share * 100.0),
                    buffer_ms = buffer_end_ms.saturating_sub(playhead_ms),
                    "status"
                );
            }
        }
        let _ = tokio::time::timeout(TICK, stop.changed()).await;
    }
    if let Some(t) = in_flight.take() {
        t.abort();
    }
    if let Some(s) = stalled_since {
        sum.stall_ms += s.elapsed().as_millis() as u64;
    }
    sum.played_s = playhead_ms as f64 / 1000.0;
    sum.run_s = started.elapsed().as_secs_f64();
    sum
}

/// GET a body with the proxy's source headers.
async fn get(http: &reqwest::Client, url: &str) -> Result<(bytes::Bytes, String, bool), String> {
    let r = tokio::time::timeout(REQUEST_TIMEOUT, http.get(url).send())
        .await
        .map_err(|_| format!("{url}: timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url}: HTTP {}", r.status()));
    }
    let source = r.headers().get("x-shoal-source").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let verified = r.headers().get("x-shoal-verified").is_some_and(|v| v == "1");
    let body = tokio::time::timeout(REQUEST_TIMEOUT, r.bytes())
        .await
        .map_err(|_| format!("{url}: body timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
    Ok((body, source, verified))
}

/// The rendition to play: the asked one, else the one with the highest bandwidth.
fn pick_rendition(master: &[u8], wanted: Option<&str>) -> Option<String> {
    let m = m3u8_rs::parse_master_playlist_res(master).ok()?;
    let names: Vec<(String, u64)> = m
        .variants
        .iter()
        .filter(|v| !v.is_i_frame)
        .filter_map(|v| v.uri.strip_suffix("/index.m3u8").map(|n| (n.to_owned(), v.bandwidth)))
        .collect();
    match wanted {
        Some(w) => names.into_iter().find(|(n, _)| n == w).map(|(n, _)| n),
        None => names.into_iter().max_by_key(|(_, b)| *b).map(|(n, _)| n),
    }
}

/// Fetch the rendition's signed manifest (through the proxy's pass-through) and keep the
/// entries whose signature verifies with the origin key the API gave.
async fn refresh_entries(
    http: &reqwest::Client,
    p: &HeadlessParams,
    rendition: &str,
    entries: &mut BTreeMap<u64, SegmentEntry>,
) {
    let key_b64 = p.stats.borrow().origin_public_key.clone();
    if key_b64.is_empty() {
        return;
    }
    let Ok(key) = verifying_key_from_b64(&key_b64) else { return };
    let Ok((body, _, _)) = get(http, &format!("{}/{rendition}/manifest.json", p.base)).await else { return };
    if body.len() > MAX_MANIFEST_BYTES {
        return;
    }
    let Ok(m) = SignedManifest::from_json(&body) else { return };
    for e in m.segments {
        if e.verify(&key).is_ok() {
            entries.insert(e.seq, e);
        }
    }
    while entries.len() > 64 {
        entries.pop_first();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_or_named() {
        let m = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=900000\n360p/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2800000\n720p/index.m3u8\n";
        assert_eq!(pick_rendition(m, None).as_deref(), Some("720p"));
        assert_eq!(pick_rendition(m, Some("360p")).as_deref(), Some("360p"));
        assert_eq!(pick_rendition(m, Some("1080p")), None);
    }
}
