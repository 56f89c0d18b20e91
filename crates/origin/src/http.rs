//! The HTTP face of the origin: serving (`/live/...`, `/.well-known/shoal/origin.pub`,
//! `/health`) and ffmpeg ingest (`/ingest/...`).
//!
//! Caching rules: live playlists and `manifest.json` get a short `max-age` (they change every
//! segment); segments are immutable (a sequence number is never reused, see `synth`), so they
//! get a year and `immutable`; errors get `no-store` so a CDN never caches "not yet there".
//! Segments answer single byte ranges (a client completing a segment peers delivered in part).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use shoal_proto::ids::valid_name;
use tower_http::cors::{Any, CorsLayer};

use crate::ingest;
use crate::store::Cached;
use crate::Origin;

pub const CT_PLAYLIST: &str = "application/vnd.apple.mpegurl";
pub const CT_SEGMENT: &str = "video/mp2t";
pub const CC_SEGMENT: &str = "public, max-age=31536000, immutable";
pub const CC_ERROR: &str = "no-store";

/// A plain-text error response, logged with the request it answers.
pub fn error(method: &Method, uri: &Uri, status: StatusCode, msg: &str) -> Response {
    if status == StatusCode::NOT_FOUND {
        tracing::debug!(%method, path = %uri.path(), status = status.as_u16(), "{msg}");
    } else {
        tracing::warn!(%method, path = %uri.path(), status = status.as_u16(), "{msg}");
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, CC_ERROR)],
        format!("{msg}\n"),
    )
        .into_response()
}

/// Build the origin's router: serving (with CORS) and ingest.
pub fn router(origin: Origin) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([header::RANGE, header::IF_NONE_MATCH, header::IF_RANGE])
        .expose_headers([
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ETAG,
            header::ACCEPT_RANGES,
            header::AGE,
            header::DATE,
        ])
        .max_age(std::time::Duration::from_secs(86_400));
    let serving = Router::new()
        .route("/health", get(health))
        .route("/.well-known/shoal/origin.pub", get(public_key))
        .route("/live/{stream}/master.m3u8", get(master))
        .route("/live/{stream}/{rendition}/{file}", get(rendition_file))
        .layer(cors);
    let ingest = Router::new()
        .route("/ingest/{stream}/{file}", any(ingest::handle_flat))
        .route("/ingest/{stream}/{rendition}/{file}", any(ingest::handle_nested));
    Router::new().merge(serving).merge(ingest).fallback(fallback).with_state(origin)
}

async fn fallback(method: Method, uri: Uri, ci: Option<ConnectInfoExt>) -> Response {
    let peer = ci.map(|c| c.0);
    if uri.path().starts_with("/ingest/") {
        return error(
            &method,
            &uri,
            StatusCode::BAD_REQUEST,
            "ingest path must be /ingest/{stream}/[{rendition}/]{file}",
        );
    }
    if uri.path().starts_with("/live/") {
        return error(
            &method,
            &uri,
            StatusCode::BAD_REQUEST,
            "path must be /live/{stream}/master.m3u8 or /live/{stream}/{rendition}/{file}",
        );
    }
    tracing::info!(%method, path = %uri.path(), ?peer, "no such path");
    (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, CC_ERROR)], "not found\n").into_response()
}

/// The peer address when the server was started with connect info (optional extractor).
pub struct ConnectInfoExt(pub SocketAddr);

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for ConnectInfoExt {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| ConnectInfoExt(c.0)))
    }
}

pub fn peer_of(req: &Request) -> Option<SocketAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

async fn health(State(o): State<Origin>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "role": "origin",
        "streams": o.store.stream_names(),
        "key_id": o.store.key_id(),
        "memory_bytes": o.store.memory_bytes(),
    });
    ([(header::CACHE_CONTROL, CC_ERROR)], axum::Json(body)).into_response()
}

async fn public_key(State(o): State<Origin>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")],
        format!("{}\n", o.store.public_key_b64()),
    )
        .into_response()
}

fn short_cache(o: &Origin) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={}", o.config.playlist_max_age_s))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

/// Does `If-None-Match` match `etag`?
fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    let Some(v) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else { return false };
    v.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

fn document(o: &Origin, headers: &HeaderMap, doc: &Cached, content_type: &'static str) -> Response {
    let cc = short_cache(o);
    if etag_matches(headers, &doc.etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, doc.etag.clone())], [(header::CACHE_CONTROL, cc)])
            .into_response();
    }
    let mut r = Response::new(Body::from(doc.body.clone()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, cc);
    if let Ok(v) = HeaderValue::from_str(&doc.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(doc.body.len()));
    r
}

async fn master(
    State(o): State<Origin>,
    Path(stream): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if !valid_name(&stream) {
        return error(&method, &uri, StatusCode::BAD_REQUEST, "invalid stream name");
    }
    match o.store.stream(&stream).and_then(|s| s.master()) {
        Some(doc) => document(&o, &headers, &doc, CT_PLAYLIST),
        None => error(&method, &uri, StatusCode::NOT_FOUND, "no such stream (or nothing published yet)"),
    }
}

async fn rendition_file(
    State(o): State<Origin>,
    Path((stream, rendition, file)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if !valid_name(&stream) {
        return error(&method, &uri, StatusCode::BAD_REQUEST, "invalid stream name");
    }
    if !valid_name(&rendition) {
        return error(&method, &uri, StatusCode::BAD_REQUEST, "invalid rendition name");
    }
    let Some(r) = o.store.stream(&stream).and_then(|s| s.rendition(&rendition)) else {
        return error(&method, &uri, StatusCode::NOT_FOUND, "no such stream or rendition");
    };
    let snap = r.snapshot();
    match file.as_str() {
        "index.m3u8" => match &snap.playlist {
            Some(doc) => document(&o, &headers, doc, CT_PLAYLIST),
            None => error(&method, &uri, StatusCode::NOT_FOUND, "nothing published yet"),
        },
        "manifest.json" => match &snap.manifest {
            Some(doc) => document(&o, &headers, doc, "application/json"),
            None => error(&method, &uri, StatusCode::NOT_FOUND, "nothing published yet"),
        },
        f => {
            let Some(seq) = f
                .strip_suffix(".ts")
                .filter(|d| !d.is_empty() && d.len() <= 20 && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok())
            else {
                return error(
                    &method,
                    &uri,
                    StatusCode::NOT_FOUND,
                    "unknown file (expected index.m3u8, manifest.json or {seq}.ts)",
                );
            };
            match snap.segment(seq) {
                Some(seg) => segment_response(&headers, &seg.data, &seg.etag, &method, &uri),
                None => error(
                    &method,
                    &uri,
                    StatusCode::NOT_FOUND,
                    "segment not available (not yet published or already removed)",
                ),
            }
        }
    }
}

/// A parsed `Range` header against a body of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeReq {
    /// No (usable) range: send everything.
    Full,
    /// Inclusive byte range.
    Part(u64, u64),
    Unsatisfiable,
}

/// Single `bytes=` ranges only; anything else (several ranges, other units, garbage) is
/// ignored and the whole body is sent, as RFC 9110 §14.2 allows.
pub fn parse_range(value: &str, size: u64) -> RangeReq {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeReq::Full };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeReq::Full };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else { return RangeReq::Full };
        if n == 0 || size == 0 {
            return RangeReq::Unsatisfiable;
        }
        return RangeReq::Part(size.saturating_sub(n), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else { return RangeReq::Full };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return RangeReq::Full,
        }
    };
    if start >= size {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Part(start, end.min(size - 1))
}

fn segment_response(headers: &HeaderMap, data: &Bytes, etag: &str, method: &Method, uri: &Uri) -> Response {
    let size = data.len() as u64;
    let etag_v = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\""));
    if etag_matches(headers, etag) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(header::ETAG, etag_v);
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(CC_SEGMENT));
        return r;
    }
    // If-Range with another validator: the client's partial copy is stale, send everything.
    let if_range_ok =
        headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == etag);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) if if_range_ok => parse_range(v, size),
        _ => RangeReq::Full,
    };
    let (status, body, content_range) = match range {
        RangeReq::Full => (StatusCode::OK, data.clone(), None),
        RangeReq::Part(s, e) => (
            StatusCode::PARTIAL_CONTENT,
            data.slice(s as usize..=e as usize),
            Some(format!("bytes {s}-{e}/{size}")),
        ),
        RangeReq::Unsatisfiable => {
            tracing::info!(%method, path = %uri.path(), size, "unsatisfiable range");
            let mut r = (StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n").into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(CC_ERROR));
            return r;
        }
    };
    let len = body.len();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CT_SEGMENT));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CC_SEGMENT));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, etag_v);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert("timing-allow-origin", HeaderValue::from_static("*"));
    if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), RangeReq::Part(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), RangeReq::Part(900, 999));
        assert_eq!(parse_range("bytes=900-5000", 1000), RangeReq::Part(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), RangeReq::Part(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), RangeReq::Part(0, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), RangeReq::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), RangeReq::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 1000), RangeReq::Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeReq::Full);
        assert_eq!(parse_range("items=0-1", 1000), RangeReq::Full);
        assert_eq!(parse_range("bytes=x-", 1000), RangeReq::Full);
    }
}
