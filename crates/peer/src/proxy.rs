//! The local HTTP proxy the app's player reads from: rewritten playlists, and segments that
//! the engine delivers (from peers or the CDN). Whatever goes wrong on Shoal's side, the
//! player still gets its segment: a failed or late delivery is answered from the CDN directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::cdn::Cdn;
use crate::msg::{CoreMsg, RenditionInfo, Reply};
use crate::playlist::{rewrite_master, rewrite_media, MAX_PLAYLIST};

/// A segment request with no answer from the engine after this long is served from the CDN
/// directly. The engine switches to the CDN long before a player would stall; this only
/// guards against a bug leaving a request unanswered.
pub const DELIVER_TIMEOUT: Duration = Duration::from_secs(8);
/// Segment URLs remembered per rendition (playlists list far fewer).
const KNOWN_PER_RENDITION: usize = 256;

pub(crate) struct Proxy {
    core: mpsc::UnboundedSender<CoreMsg>,
    cdn: Arc<Cdn>,
    master_url: String,
    renditions: Mutex<HashMap<String, RenditionInfo>>,
    known: Mutex<HashMap<String, BTreeMap<u64, String>>>,
    next_waiter: AtomicU64,
    pub fallbacks: AtomicU64,
}

impl Proxy {
    pub(crate) fn new(core: mpsc::UnboundedSender<CoreMsg>, cdn: Arc<Cdn>, master_url: String) -> Arc<Proxy> {
        Arc::new(Proxy {
            core,
            cdn,
            master_url,
            renditions: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            next_waiter: AtomicU64::new(1),
            fallbacks: AtomicU64::new(0),
        })
    }

    pub(crate) fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/master.m3u8", get(master))
            .route("/{rendition}/index.m3u8", get(media))
            .route("/{rendition}/{file}", get(segment))
            .fallback(passthrough)
            .with_state(Arc::clone(self))
    }

    async fn load_master(&self) -> Result<String, String> {
        let (_, body) = self.cdn.get_text(&self.master_url, MAX_PLAYLIST).await?;
        let m = rewrite_master(&self.master_url, &body)?;
        {
            let mut r = self.renditions.lock().unwrap_or_else(|e| e.into_inner());
            r.clear();
            for x in &m.renditions {
                r.insert(x.name.clone(), x.clone());
            }
        }
        let _ = self.core.send(CoreMsg::Renditions(m.renditions));
        Ok(m.text)
    }

    fn rendition(&self, name: &str) -> Option<RenditionInfo> {
        self.renditions.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    fn segment_url(&self, rendition: &str, seq: u64) -> Option<String> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).get(rendition)?.get(&seq).cloned()
    }
}

fn playlist_response(text: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.apple.mpegurl")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        text,
    )
        .into_response()
}

fn bad_gateway(e: String) -> Response {
    tracing::warn!("proxy: {e}");
    (StatusCode::BAD_GATEWAY, e).into_response()
}

async fn master(State(p): State<Arc<Proxy>>) -> Response {
    match p.load_master().await {
        Ok(text) => playlist_response(text),
        Err(e) => bad_gateway(e),
    }
}

async fn media(State(p): State<Arc<Proxy>>, Path(rendition): Path<String>) -> Response {
    if p.rendition(&rendition).is_none() {
        if let Err(e) = p.load_master().await {
            return bad_gateway(e);
        }
    }
    let Some(r) = p.rendition(&rendition) else {
        return (StatusCode::NOT_FOUND, "unknown rendition").into_response();
    };
    let (final_url, body) = match p.cdn.get_text(&r.url, MAX_PLAYLIST).await {
        Ok(x) => x,
        Err(e) => return bad_gateway(e),
    };
    // Relative URIs resolve against where the playlist really was (after redirects or failover).
    let base = if final_url.is_empty() { r.url.clone() } else { final_url };
    let m = match rewrite_media(&base, &body) {
        Ok(m) => m,
        Err(e) => return bad_gateway(e),
    };
    {
        let mut known = p.known.lock().unwrap_or_else(|e| e.into_inner());
        let k = known.entry(rendition.clone()).or_default();
        for (seq, url, _) in &m.files {
            k.insert(*seq, url.clone());
        }
        while k.len() > KNOWN_PER_RENDITION {
            k.pop_first();
        }
    }
    if !m.segments.is_empty() {
        let _ = p.core.send(CoreMsg::Playlist { rendition, segments: m.segments });
    }
    playlist_response(m.text)
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("ts") => "video/mp2t",
        Some("m4s" | "mp4" | "m4v") => "video/mp4",
        Some("aac") => "audio/aac",
        Some("m4a") => "audio/mp4",
        _ => "application/octet-stream",
    }
}

/// Tells the core when the player's HTTP request goes away before its answer (dropped with
/// the handler's future).
struct Waiting {
    core: mpsc::UnboundedSender<CoreMsg>,
    rendition: String,
    seq: u64,
    waiter: u64,
    armed: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.core.send(CoreMsg::PlayerGone {
                rendition: std::mem::take(&mut self.rendition),
                seq: self.seq,
                waiter: self.waiter,
            });
        }
    }
}

async fn segment(
    State(p): State<Arc<Proxy>>,
    Path((rendition, file)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    let seq = file.split('.').next().and_then(|s| s.parse::<u64>().ok());
    let Some(url) = seq.and_then(|s| p.segment_url(&rendition, s)) else {
        // Other files of a rendition (its signed manifest, init segments) live next to its
        // media playlist on the CDN.
        if let Some(r) = p.rendition(&rendition) {
            if let Ok(u) = reqwest::Url::parse(&r.url).and_then(|b| b.join(&file)) {
                return direct(&p, u.as_str(), &file).await;
            }
        }
        return passthrough(State(p), uri).await;
    };
    let seq = seq.unwrap_or_default();
    let (tx, rx) = oneshot::channel();
    let waiter = p.next_waiter.fetch_add(1, Ordering::Relaxed);
    let mut guard = Waiting { core: p.core.clone(), rendition: rendition.clone(), seq, waiter, armed: true };
    if p.core.send(CoreMsg::PlayerRequest { rendition, seq, waiter, reply: tx }).is_err() {
        guard.armed = false;
        return direct(&p, &url, &file).await;
    }
    match tokio::time::timeout(DELIVER_TIMEOUT, rx).await {
        Ok(Ok(Reply::Delivered(d))) => {
            guard.armed = false;
            let source = match d.source {
                shoal_engine::Source::Cdn => "cdn",
                shoal_engine::Source::Peers => "peers",
                shoal_engine::Source::Mixed => "mixed",
            };
            let len = d.size;
            let body =
                Body::from_stream(futures::stream::iter(d.chunks.into_iter().map(Ok::<_, std::io::Error>)));
            Response::builder()
                .header(header::CONTENT_TYPE, content_type(&file))
                .header(header::CONTENT_LENGTH, len)
                .header(header::CACHE_CONTROL, "no-cache")
                .header("x-shoal-source", source)
                .header("x-shoal-verified", if d.verified { "1" } else { "0" })
                .body(body)
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Ok(Ok(Reply::Failed(reason))) => {
            guard.armed = false;
            tracing::info!(%file, "engine could not deliver ({reason}): serving from the CDN");
            p.fallbacks.fetch_add(1, Ordering::Relaxed);
            direct(&p, &url, &file).await
        }
        Ok(Err(_)) | Err(_) => {
            // Timed out (the guard withdraws the request) or the core stopped.
            tracing::warn!(%file, "no delivery in time: serving from the CDN");
            p.fallbacks.fetch_add(1, Ordering::Relaxed);
            drop(guard);
            direct(&p, &url, &file).await
        }
    }
}

/// Serve a CDN URL as it is, streaming.
async fn direct(p: &Proxy, url: &str, file: &str) -> Response {
    let r = match p.cdn.get(url, None).await {
        Ok(r) => r,
        Err(e) => return bad_gateway(e),
    };
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let len = r.content_length();
    let stream = r.bytes_stream().map(|c| c.map_err(std::io::Error::other));
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type(file))
        .header("x-shoal-source", "cdn-direct")
        .header("x-shoal-verified", "0");
    if let Some(l) = len {
        b = b.header(header::CONTENT_LENGTH, l);
    }
    b.body(Body::from_stream(stream)).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Anything else the player asks for lives next to the master playlist on the CDN.
async fn passthrough(State(p): State<Arc<Proxy>>, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let rel = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let Ok(url) = reqwest::Url::parse(&p.master_url).and_then(|b| b.join(&rel)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let file = path.rsplit('/').next().unwrap_or(path).to_owned();
    direct(&p, url.as_str(), &file).await
}
