//! Pingback: every `pingback.interval_ms` of the join response (10 s by default), the counters
//! since the previous report go to `pingback.url` as a `shoal_proto::pingback::Report`
//! (`docs/pingback.md`). A task of its own, fed by watch channels: playback never waits on it.
//!
//! Delivery: a short timeout per POST; unsent reports are kept (at most [`MAX_QUEUE`], the
//! oldest dropped first, none older than `MAX_AGE_MS`) and sent together with the next one,
//! each with its own sequence number and age, so the server counts every report once. A
//! 4xx answer other than 429 means the reports can never be accepted: they are dropped. On
//! stop, one last report is sent with a 1 s timeout.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_proto::api::JoinResponse;
use shoal_proto::pingback::{Ack, Report, MAX_AGE_MS, MAX_BATCH, PINGBACK_VERSION};
use tokio::sync::watch;

use crate::stats::StatsSnapshot;

/// Most unsent reports kept while the pingback server is unreachable.
pub const MAX_QUEUE: usize = 4;
const POST_TIMEOUT: Duration = Duration::from_secs(3);
const FINAL_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_ANSWER: usize = 4 * 1024;

/// What the player saw, cumulative since the client started. The headless player publishes it;
/// a client without a player it can see sends zeros (left out of stall figures server-side).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlayerProgress {
    pub rendition: String,
    pub stalls: u64,
    pub stall_ms: u64,
    /// Time spent playing, ms.
    pub play_ms: u64,
    pub startup_ms: Option<u64>,
    /// Playhead to the playlist's live edge, ms.
    pub behind_live_ms: Option<u64>,
}

pub(crate) struct Params {
    pub joined: watch::Receiver<Option<Arc<JoinResponse>>>,
    pub stats: watch::Receiver<StatsSnapshot>,
    pub player: Option<watch::Receiver<PlayerProgress>>,
    pub http: reqwest::Client,
    pub stop: watch::Receiver<bool>,
    pub started: Instant,
}

/// The counters a report is the difference of.
#[derive(Clone, Debug, Default)]
struct Mark {
    stats: StatsSnapshot,
    player: PlayerProgress,
    at: Option<Instant>,
}

struct Sender {
    http: reqwest::Client,
    queue: VecDeque<(Report, Instant)>,
    dropped: u64,
    /// Index into the session's pingback URLs (`url`, then `alternates`): moves on when a
    /// node does not answer, so reports go to another pingback node of a cluster.
    target: usize,
}

/// The session's pingback URLs in the order to use them.
fn pingback_urls(join: &JoinResponse) -> Vec<String> {
    let mut v = vec![join.pingback.url.clone()];
    for a in &join.pingback.alternates {
        if !a.is_empty() && !v.contains(a) && v.len() < 8 {
            v.push(a.clone());
        }
    }
    v
}

impl Sender {
    fn push(&mut self, r: Report) {
        self.queue.push_back((r, Instant::now()));
        while self.queue.len() > MAX_QUEUE {
            self.queue.pop_front();
            self.dropped += 1;
        }
    }

    /// [`Sender::flush_to`] the current URL; if that node does not answer (network error,
    /// timeout, 5xx), once more to the next one right away.
    async fn flush(&mut self, urls: &[String], timeout: Duration) {
        if urls.is_empty() {
            return;
        }
        for _ in 0..urls.len().min(2) {
            let url = &urls[self.target % urls.len()];
            if self.flush_to(url, timeout).await {
                return;
            }
            self.target += 1;
            tracing::info!(next = %urls[self.target % urls.len()], "pingback: {url} did not answer; switching");
        }
    }

    /// POST everything queued as one batch; forget it once the server has it (or refuses it
    /// for good). False when the server did not answer usefully (try another node).
    async fn flush_to(&mut self, url: &str, timeout: Duration) -> bool {
        let max_age = Duration::from_millis(MAX_AGE_MS - 5_000);
        self.queue.retain(|(_, t)| t.elapsed() < max_age);
        if self.queue.is_empty() || url.is_empty() {
            return true;
        }
        let batch: Vec<Report> = self
            .queue
            .iter()
            .take(MAX_BATCH)
            .map(|(r, t)| Report { age_ms: t.elapsed().as_millis() as u64, ..r.clone() })
            .collect();
        let n = batch.len();
        // text/plain keeps a browser's POST a CORS simple request; the server ignores the type,
        // and the native SDK sends the same bytes.
        let send = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(serde_json::to_vec(&batch).unwrap_or_default())
            .send();
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok(r)) if r.status().is_success() => {
                let body = tokio::time::timeout(timeout, r.bytes()).await.ok().and_then(Result::ok);
                let ack = body
                    .filter(|b| b.len() <= MAX_ANSWER)
                    .and_then(|b| serde_json::from_slice::<Ack>(&b).ok());
                tracing::debug!(?ack, "pingback: {n} report(s) delivered");
                self.queue.drain(..n);
                true
            }
            Ok(Ok(r)) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                tracing::warn!(status = %r.status(), "pingback refused {n} report(s); dropping them");
                self.queue.drain(..n);
                true
            }
            Ok(Ok(r)) if r.status().as_u16() == 429 => {
                tracing::debug!("pingback: rate limited, keeping {} report(s)", self.queue.len());
                true
            }
            Ok(Ok(r)) => {
                tracing::debug!(status = %r.status(), "pingback: server busy, keeping {} report(s)", self.queue.len());
                false
            }
            Ok(Err(e)) => {
                tracing::debug!("pingback: {e}; keeping {} report(s)", self.queue.len());
                false
            }
            Err(_) => {
                tracing::debug!("pingback: no answer in {timeout:?}; keeping {} report(s)", self.queue.len());
                false
            }
        }
    }
}

fn build(
    join: &JoinResponse,
    seq: u64,
    now: Instant,
    prev: &Mark,
    stats: &StatsSnapshot,
    player: &PlayerProgress,
    startup: Option<u64>,
) -> Report {
    // A counter that went down was reset: count it from zero.
    let d = |a: u64, b: u64| if a >= b { a - b } else { a };
    let (s, p) = (&prev.stats, &prev.player);
    let period_ms = prev.at.map_or(0, |t| now.duration_since(t).as_millis() as u64);
    let max_time = period_ms + shoal_proto::pingback::TIME_SLACK_MS;
    let play_ms = d(player.play_ms, p.play_ms).min(max_time);
    let stall_ms = d(player.stall_ms, p.stall_ms).min(max_time - play_ms);
    Report {
        v: PINGBACK_VERSION,
        session_id: join.session_id.clone(),
        ticket: join.ticket.clone(),
        seq,
        stream: join.stream.clone(),
        rendition: player.rendition.clone(),
        p2p: join.p2p,
        p2p_reason: join.p2p_reason.clone(),
        platform: std::env::consts::OS.to_owned(),
        sdk: "shoal-native".into(),
        sdk_version: env!("CARGO_PKG_VERSION").into(),
        locality: String::new(),
        period_ms,
        age_ms: 0,
        http_bytes: d(stats.http_bytes, s.http_bytes),
        manifest_bytes: d(stats.manifest_bytes, s.manifest_bytes),
        p2p_down_bytes: d(stats.p2p_down_bytes, s.p2p_down_bytes),
        p2p_up_bytes: d(stats.p2p_up_bytes, s.p2p_up_bytes),
        wasted_bytes: d(stats.wasted_bytes, s.wasted_bytes),
        segments_verified: d(stats.segments_verified, s.segments_verified),
        verify_failures: d(stats.verify_failures, s.verify_failures),
        stalls: if play_ms + stall_ms > 0 { d(player.stalls, p.stalls) } else { 0 },
        stall_ms,
        play_ms,
        startup_ms: startup,
        latency_ms: player.behind_live_ms,
        peers_connected: stats.peers_connected.min(shoal_proto::pingback::MAX_PEERS),
        connect_attempts: d(stats.connect_attempts, s.connect_attempts),
        connects_opened: d(stats.connects_opened, s.connects_opened),
    }
}

/// Run until `stop`; then send one last report.
pub(crate) fn spawn(mut p: Params) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sender = Sender { http: p.http.clone(), queue: VecDeque::new(), dropped: 0, target: 0 };
        // Counters before the join belong to the first session's first report.
        let mut prev = Mark { at: Some(p.started), ..Default::default() };
        let mut session: Option<Arc<JoinResponse>> = None;
        let mut seq = 0u64;
        let mut startup_sent = false;
        let mut joins_open = true;
        loop {
            let interval = session.as_ref().map_or(Duration::from_secs(3600), |j| {
                Duration::from_millis(j.pingback.interval_ms.clamp(1_000, 600_000))
            });
            let stopping = tokio::select! {
                r = p.stop.wait_for(|s| *s) => { let _ = r; true }
                r = p.joined.changed(), if joins_open => {
                    if r.is_err() {
                        // The core is gone: no new session will come.
                        joins_open = false;
                        continue;
                    }
                    let j = p.joined.borrow_and_update().clone();
                    if let Some(j) = j.filter(|j| !j.pingback.url.is_empty()) {
                        if session.as_ref().is_none_or(|s| s.session_id != j.session_id) {
                            seq = 0;
                            sender.target = 0;
                            session = Some(j);
                        }
                    }
                    continue;
                }
                _ = tokio::time::sleep(interval) => false,
            };
            let Some(join) = session.clone() else {
                if stopping {
                    return;
                }
                continue;
            };
            let stats = p.stats.borrow().clone();
            let player = p.player.as_ref().map(|r| r.borrow().clone()).unwrap_or_default();
            let now = Instant::now();
            let startup = if startup_sent { None } else { player.startup_ms.or(stats.startup_ms) };
            startup_sent |= startup.is_some();
            seq += 1;
            sender.push(build(&join, seq, now, &prev, &stats, &player, startup));
            prev = Mark { stats, player, at: Some(now) };
            let timeout = if stopping { FINAL_TIMEOUT } else { POST_TIMEOUT };
            sender.flush(&pingback_urls(&join), timeout).await;
            if stopping {
                if sender.dropped > 0 || !sender.queue.is_empty() {
                    tracing::info!(
                        dropped = sender.dropped,
                        unsent = sender.queue.len(),
                        "pingback: stopped"
                    );
                }
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join() -> JoinResponse {
        serde_json::from_value(serde_json::json!({
            "version": 1, "session_id": "s1", "peer_id": "0123456789abcdef", "stream": "demo",
            "trackers": [], "stun": [], "pingback": {"url": "http://127.0.0.1:9/v1/pingback", "interval_ms": 10000},
            "cdn": [], "origin_public_key": "", "key_id": "", "p2p": false, "p2p_reason": "holdback",
            "ticket": "t", "ticket_expires_ms": 0, "engine": {}, "api": [], "server_time_ms": 0
        }))
        .expect("a join response")
    }

    #[test]
    fn alternates_follow_the_url() {
        let mut j = join();
        assert_eq!(pingback_urls(&j), ["http://127.0.0.1:9/v1/pingback"]);
        j.pingback.alternates = vec!["http://b/v1/pingback".into(), j.pingback.url.clone(), String::new()];
        assert_eq!(pingback_urls(&j), ["http://127.0.0.1:9/v1/pingback", "http://b/v1/pingback"]);
    }

    #[tokio::test]
    async fn a_dead_pingback_node_is_left_for_the_next() {
        // One URL nobody listens on (refused at once), one real server that counts batches.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead_url = format!("http://{}/v1/pingback", dead.local_addr().expect("addr"));
        drop(dead);
        let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let g = got.clone();
        let app = axum::Router::new().route(
            "/v1/pingback",
            axum::routing::post(move |body: String| {
                let g = g.clone();
                async move {
                    let batch: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
                    g.fetch_add(batch.len(), std::sync::atomic::Ordering::Relaxed);
                    axum::Json(serde_json::json!({"accepted": batch.len(), "duplicates": 0}))
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let live_url = format!("http://{}/v1/pingback", l.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(l, app).await });
        let mut s = Sender { http: reqwest::Client::new(), queue: VecDeque::new(), dropped: 0, target: 0 };
        let urls = vec![dead_url, live_url];
        let r = build(
            &join(),
            1,
            Instant::now(),
            &Mark::default(),
            &StatsSnapshot::default(),
            &PlayerProgress::default(),
            None,
        );
        s.push(r.clone());
        s.flush(&urls, Duration::from_secs(2)).await;
        assert_eq!(got.load(std::sync::atomic::Ordering::Relaxed), 1, "delivered to the live node at once");
        assert!(s.queue.is_empty());
        assert_eq!(s.target, 1, "and it stays there");
        s.push(Report { seq: 2, ..r });
        s.flush(&urls, Duration::from_secs(2)).await;
        assert_eq!(got.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn reports_are_differences_and_valid() {
        let t0 = Instant::now();
        let prev = Mark {
            stats: StatsSnapshot {
                http_bytes: 1_000,
                p2p_down_bytes: 500,
                connect_attempts: 3,
                ..Default::default()
            },
            player: PlayerProgress { stalls: 1, stall_ms: 100, play_ms: 5_000, ..Default::default() },
            at: Some(t0),
        };
        let stats = StatsSnapshot {
            http_bytes: 4_000,
            p2p_down_bytes: 9_500,
            connect_attempts: 5,
            connects_opened: 2,
            peers_connected: 2,
            ..Default::default()
        };
        let player = PlayerProgress {
            rendition: "720p".into(),
            stalls: 2,
            stall_ms: 600,
            play_ms: 14_000,
            behind_live_ms: Some(6_000),
            ..Default::default()
        };
        let r = build(&join(), 3, t0 + Duration::from_secs(10), &prev, &stats, &player, Some(900));
        assert_eq!((r.http_bytes, r.p2p_down_bytes), (3_000, 9_000));
        assert_eq!((r.stalls, r.stall_ms, r.play_ms), (1, 500, 9_000));
        assert_eq!((r.connect_attempts, r.connects_opened, r.peers_connected), (2, 2, 2));
        assert_eq!(r.period_ms, 10_000);
        assert_eq!(r.seq, 3);
        assert_eq!(r.group(), shoal_proto::pingback::Group::Control);
        assert_eq!(r.validate(), Ok(()));
        // A counter that went down was reset: it counts from zero, never negative.
        let reset = StatsSnapshot { http_bytes: 700, ..Default::default() };
        let r =
            build(&join(), 4, t0 + Duration::from_secs(1), &prev, &reset, &PlayerProgress::default(), None);
        assert_eq!((r.http_bytes, r.stalls, r.play_ms), (700, 0, 0));
        assert_eq!(r.validate(), Ok(()));
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_kept_while_unreachable() {
        let http = reqwest::Client::new();
        let mut s = Sender { http, queue: VecDeque::new(), dropped: 0, target: 0 };
        for seq in 1..=6 {
            s.push(Report { seq, ..Default::default() });
        }
        assert_eq!(s.queue.len(), MAX_QUEUE);
        assert_eq!(s.dropped, 2);
        assert_eq!(s.queue.front().map(|(r, _)| r.seq), Some(3), "the oldest go first");
        // Port 9 on loopback: connection refused; the reports stay for the next attempt.
        s.flush(&["http://127.0.0.1:9/v1/pingback".to_owned()], Duration::from_millis(500)).await;
        assert_eq!(s.queue.len(), MAX_QUEUE);
    }
}
