//! HLS pushed by ffmpeg over HTTP PUT (or POST):
//! `ffmpeg ... -f hls -method PUT -headers 'X-Shoal-Ingest-Key: KEY' http://HOST/ingest/STREAM/index.m3u8`
//! or, several renditions, `.../ingest/STREAM/%v/index.m3u8` with `-var_stream_map` and
//! `-master_pl_name master.m3u8`.
//!
//! ffmpeg uploads each segment, then the playlist naming it. Uploaded segments wait (checked,
//! bounded) until a playlist names them; then the origin numbers, signs and publishes them
//! under `/live/STREAM/RENDITION/` with its own playlists. ffmpeg's playlist is only read for
//! which file is complete and how long it is. Nothing a client sends can change what is
//! already published: bad input is refused before it reaches the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use m3u8_rs::Playlist;
use shoal_proto::ids::valid_name;

use crate::clock::now_ms;
use crate::http::{error, peer_of};
use crate::media::tsinfo::{inspect, TsInfo};
use crate::numbering::{RenditionNumbering, StreamNumbering};
use crate::store::{NewSegment, RenditionInfo, SourceKind, StoreError};
use crate::Origin;

pub const KEY_HEADER: &str = "x-shoal-ingest-key";
/// Longest EXTINF accepted from an ingest playlist.
const MAX_SEGMENT_MS: f64 = 60_000.0;

struct PendingSegment {
    name: String,
    data: Bytes,
    info: TsInfo,
}

#[derive(Default)]
struct StreamIngest {
    numbering: StreamNumbering,
    renditions: HashMap<String, RenditionIngest>,
    /// Attributes from ffmpeg's master playlist, by rendition.
    declared: HashMap<String, RenditionInfo>,
}

impl StreamIngest {
    /// The ingest state of `stream`, made on its first upload.
    fn entry<'a>(all: &'a mut HashMap<String, StreamIngest>, stream: &str) -> &'a mut StreamIngest {
        all.entry(stream.to_owned()).or_insert_with(|| StreamIngest {
            // Numbers start at the current Unix second so a restarted origin does not reuse
            // numbers CDNs may hold as immutable.
            numbering: StreamNumbering::new(now_ms() / 1000),
            ..Default::default()
        })
    }

    /// The rendition's state, or `None` when it would be one rendition more than `max`.
    fn rendition(&mut self, rendition: &str, max: usize) -> Option<&mut RenditionIngest> {
        if !self.renditions.contains_key(rendition) && self.renditions.len() >= max {
            return None;
        }
        Some(self.renditions.entry(rendition.to_owned()).or_default())
    }
}

const TOO_MANY_RENDITIONS: &str = "too many renditions in this ingest stream";

#[derive(Default)]
struct RenditionIngest {
    numbering: RenditionNumbering,
    pending: VecDeque<PendingSegment>,
    /// ffmpeg's newest playlist. ffmpeg sends a segment and the playlist naming it on two
    /// connections at once, so either may complete first: both events run the publish pass.
    playlist: Option<m3u8_rs::MediaPlaylist>,
    /// The newest playlist showed the upstream starting over; applies to its first segment.
    restart: bool,
}

/// Ingest bookkeeping of all streams.
#[derive(Default)]
pub struct IngestState {
    streams: Mutex<HashMap<String, StreamIngest>>,
}

impl IngestState {
    pub fn forget(&self, stream: &str) {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).remove(stream);
    }
}

pub async fn handle_flat(
    State(o): State<Origin>,
    Path((stream, file)): Path<(String, String)>,
    req: Request,
) -> Response {
    handle(o, stream, None, file, req).await
}

pub async fn handle_nested(
    State(o): State<Origin>,
    Path((stream, rendition, file)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    handle(o, stream, Some(rendition), file, req).await
}

/// Compare without an early exit, so response timing does not reveal a key prefix.
fn key_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_key(uri: &Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| kv.strip_prefix("key=")).map(|v| v.to_owned())
}

async fn read_limited(body: Body, limit: usize) -> Result<Bytes, StatusCode> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        if buf.len() + chunk.len() > limit {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

async fn handle(
    o: Origin,
    stream: String,
    rendition: Option<String>,
    file: String,
    req: Request,
) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let peer = peer_of(&req);
    tracing::debug!(%method, path = %uri.path(), ?peer, "ingest request");
    let cfg = &o.config.ingest;
    let Some(expected) = cfg.key.as_deref() else {
        return error(
            &method,
            &uri,
            StatusCode::FORBIDDEN,
            "ingest is disabled on this origin (no ingest key configured)",
        );
    };
    let given = req
        .headers()
        .get(KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_key(&uri));
    if !given.is_some_and(|g| key_eq(g.as_bytes(), expected.as_bytes())) {
        tracing::warn!(?peer, "ingest refused: missing or wrong ingest key");
        return error(&method, &uri, StatusCode::UNAUTHORIZED, "missing or wrong ingest key");
    }
    if !valid_name(&stream) {
        return error(&method, &uri, StatusCode::BAD_REQUEST, "invalid stream name");
    }
    let rendition = rendition.unwrap_or_else(|| cfg.default_rendition.clone());
    if !valid_name(&rendition) {
        return error(&method, &uri, StatusCode::BAD_REQUEST, "invalid rendition name");
    }
    if !valid_name(&file) {
        return error(&method, &uri, StatusCode::BAD_REQUEST, "invalid file name");
    }
    match method {
        Method::PUT | Method::POST => {}
        // ffmpeg's delete_segments: the origin keeps its own window, nothing to do.
        Method::DELETE => return StatusCode::NO_CONTENT.into_response(),
        _ => return error(&method, &uri, StatusCode::METHOD_NOT_ALLOWED, "ingest takes PUT, POST or DELETE"),
    }
    if let Some(s) = o.store.stream(&stream) {
        if s.kind != SourceKind::Ingest {
            return error(
                &method,
                &uri,
                StatusCode::CONFLICT,
                "stream is published by another source on this origin",
            );
        }
    }
    let is_segment = file.ends_with(".ts");
    let is_playlist = file.ends_with(".m3u8");
    if !is_segment && !is_playlist {
        return error(
            &method,
            &uri,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only MPEG-TS segments (.ts) and playlists (.m3u8) are accepted",
        );
    }
    let limit = if is_segment { cfg.max_segment_bytes } else { cfg.max_playlist_bytes };
    if let Some(len) = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return error(
                &method,
                &uri,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body of {len} bytes exceeds the limit of {limit}"),
            );
        }
    }
    let body = match read_limited(req.into_body(), limit).await {
        Ok(b) => b,
        Err(StatusCode::PAYLOAD_TOO_LARGE) => {
            return error(
                &method,
                &uri,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body exceeds the limit of {limit} bytes"),
            )
        }
        Err(s) => return error(&method, &uri, s, "could not read request body"),
    };
    if is_segment {
        let info = match inspect(&body) {
            Ok(i) => i,
            Err(e) => {
                return error(
                    &method,
                    &uri,
                    StatusCode::BAD_REQUEST,
                    &format!("not a valid MPEG-TS segment: {e}"),
                )
            }
        };
        if let Err(e) = o.store.open_stream(&stream, SourceKind::Ingest) {
            return store_error(&method, &uri, e);
        }
        let mut all = o.ingest.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let st = StreamIngest::entry(&mut all, &stream);
        let Some(r) = st.rendition(&rendition, cfg.max_renditions) else {
            return error(&method, &uri, StatusCode::SERVICE_UNAVAILABLE, TOO_MANY_RENDITIONS);
        };
        r.pending.retain(|p| p.name != file);
        r.pending.push_back(PendingSegment { name: file.clone(), data: body, info });
        // Bounded in count and in bytes (a playlist names a segment within a second or so;
        // waiting room for a few of the largest segments is plenty).
        let byte_cap = cfg.max_segment_bytes.saturating_mul(3);
        while r.pending.len() > cfg.max_pending_segments
            || (r.pending.len() > 1 && r.pending.iter().map(|p| p.data.len()).sum::<usize>() > byte_cap)
        {
            if let Some(old) = r.pending.pop_front() {
                tracing::warn!(
                    stream,
                    rendition,
                    file = old.name,
                    "dropping an uploaded segment no playlist named"
                );
            }
        }
        tracing::debug!(stream, rendition, file, "ingest segment received");
        return match publish_pending(&o, &stream, st, &rendition) {
            Ok(_) => StatusCode::CREATED.into_response(),
            Err(e) => store_error(&method, &uri, e),
        };
    }
    // A playlist.
    let parsed = match m3u8_rs::parse_playlist_res(&body) {
        Ok(p) => p,
        Err(_) => return error(&method, &uri, StatusCode::BAD_REQUEST, "malformed playlist"),
    };
    match parsed {
        Playlist::MasterPlaylist(m) => {
            let mut all = o.ingest.streams.lock().unwrap_or_else(PoisonError::into_inner);
            if !all.contains_key(&stream) && all.len() >= cfg.max_streams {
                return error(&method, &uri, StatusCode::SERVICE_UNAVAILABLE, "too many ingest streams");
            }
            let st = StreamIngest::entry(&mut all, &stream);
            for v in m.variants.iter().filter(|v| !v.is_i_frame).take(cfg.max_renditions) {
                let Some(name) = rendition_from_uri(&v.uri) else { continue };
                st.declared.insert(
                    name,
                    RenditionInfo {
                        bandwidth: Some(v.bandwidth),
                        resolution: v.resolution.map(|r| (r.width as u32, r.height as u32)),
                        codecs: v.codecs.clone(),
                        frame_rate: v.frame_rate,
                        independent: false,
                    },
                );
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Playlist::MediaPlaylist(pl) => {
            if let Err(e) = o.store.open_stream(&stream, SourceKind::Ingest) {
                return store_error(&method, &uri, e);
            }
            let mut all = o.ingest.streams.lock().unwrap_or_else(PoisonError::into_inner);
            if !all.contains_key(&stream) && all.len() >= cfg.max_streams {
                return error(&method, &uri, StatusCode::SERVICE_UNAVAILABLE, "too many ingest streams");
            }
            let st = StreamIngest::entry(&mut all, &stream);
            let Some(r) = st.rendition(&rendition, cfg.max_renditions) else {
                return error(&method, &uri, StatusCode::SERVICE_UNAVAILABLE, TOO_MANY_RENDITIONS);
            };
            let newest = pl.media_sequence + pl.segments.len().saturating_sub(1) as u64;
            if !pl.segments.is_empty() && r.numbering.last_upstream().is_some_and(|l| newest < l) {
                tracing::info!(
                    stream,
                    rendition,
                    newest,
                    "ingest restarted (sequence numbers went back): continuing with a discontinuity"
                );
                r.restart = true;
            }
            r.playlist = Some(pl);
            match publish_pending(&o, &stream, st, &rendition) {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(stream, rendition, published = n, "ingest playlist processed");
                    }
                    StatusCode::NO_CONTENT.into_response()
                }
                Err(e) => store_error(&method, &uri, e),
            }
        }
    }
}

fn store_error(method: &Method, uri: &Uri, e: StoreError) -> Response {
    let status = match e {
        StoreError::WrongSource(_) => StatusCode::CONFLICT,
        StoreError::TooManyStreams | StoreError::TooManyRenditions(_) | StoreError::Memory(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        StoreError::Stale { .. } => StatusCode::CONFLICT,
        StoreError::Sign(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(method, uri, status, &e.to_string())
}

/// `360p/index.m3u8` → `360p`; `stream_1.m3u8` → `stream_1`.
pub fn rendition_from_uri(uri: &str) -> Option<String> {
    let path = uri.split(['?', '#']).next()?;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let candidate = match parts.as_slice() {
        [.., dir, _file] => (*dir).to_owned(),
        [file] => file.strip_suffix(".m3u8")?.to_owned(),
        [] => return None,
    };
    valid_name(&candidate).then_some(candidate)
}

fn file_name(uri: &str) -> &str {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    path.rsplit('/').next().unwrap_or(path)
}

/// Publish, in order, every new segment the rendition's newest playlist names that has been
/// uploaded. Returns how many.
fn publish_pending(
    o: &Origin,
    stream: &str,
    st: &mut StreamIngest,
    rendition: &str,
) -> Result<usize, StoreError> {
    let s = o.store.open_stream(stream, SourceKind::Ingest)?;
    let declared = st.declared.get(rendition).cloned().unwrap_or_default();
    let Some(r) = st.renditions.get_mut(rendition) else { return Ok(0) };
    let Some(pl) = r.playlist.as_ref() else { return Ok(0) };
    let mut published = 0;
    for (i, seg) in pl.segments.iter().enumerate() {
        let up = pl.media_sequence + i as u64;
        if !r.restart && !StreamNumbering::is_new(&r.numbering, up) {
            continue;
        }
        let name = file_name(&seg.uri);
        let Some(pos) = r.pending.iter().position(|p| p.name == name) else { continue };
        let Some(p) = r.pending.remove(pos) else { continue };
        let duration = f64::from(seg.duration);
        if !(duration.is_finite() && duration > 0.0 && duration * 1000.0 <= MAX_SEGMENT_MS) {
            tracing::warn!(
                stream,
                rendition,
                uri = seg.uri,
                duration,
                "ingest segment with an invalid duration dropped"
            );
            continue;
        }
        let duration_ms = (duration * 1000.0).round() as u32;
        let assigned = st.numbering.assign(&mut r.numbering, up, r.restart);
        r.restart = false;
        let upstream_pdt = seg.program_date_time.map(|t| t.timestamp_millis().max(0) as u64);
        let pdt = st.numbering.pdt(
            &mut r.numbering,
            assigned.seq,
            upstream_pdt,
            duration_ms,
            now_ms().saturating_sub(u64::from(duration_ms)),
        );
        // Master-playlist attributes: ffmpeg's master if it sent one, else read from the TS.
        let mut info = o.store.info(&s, rendition).unwrap_or_default();
        let before = info.clone();
        info.bandwidth = declared.bandwidth.or(info.bandwidth);
        info.frame_rate = declared.frame_rate.or(info.frame_rate);
        info.resolution = declared.resolution.or(info.resolution).or(p.info.resolution());
        info.codecs = declared.codecs.clone().or(info.codecs).or(p.info.codecs());
        if info != before {
            o.store.set_info(&s, rendition, info)?;
        }
        match o.store.publish(
            &s,
            rendition,
            NewSegment {
                seq: assigned.seq,
                duration_ms,
                pdt_ms: pdt,
                discontinuity: assigned.discontinuity,
                data: p.data,
            },
        ) {
            Ok(_) => published += 1,
            Err(e @ StoreError::Stale { .. }) => {
                tracing::warn!(stream, rendition, error = %e, "ingest segment not published")
            }
            Err(e) => return Err(e),
        }
    }
    // The stream ended once the final playlist's last segment is out.
    let newest = pl.media_sequence + pl.segments.len().saturating_sub(1) as u64;
    if pl.end_list && r.numbering.last_upstream() == Some(newest) {
        o.store.end(&s, rendition);
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_uris() {
        assert_eq!(rendition_from_uri("360p/index.m3u8").as_deref(), Some("360p"));
        assert_eq!(rendition_from_uri("stream_1.m3u8").as_deref(), Some("stream_1"));
        assert_eq!(rendition_from_uri("../x/index.m3u8").as_deref(), Some("x"));
        assert_eq!(rendition_from_uri("a/../index.m3u8"), None);
        assert_eq!(file_name("http://h/a/b/seg7.ts?x=1"), "seg7.ts");
        assert!(key_eq(b"abc", b"abc") && !key_eq(b"abc", b"abd") && !key_eq(b"abc", b"ab"));
        assert_eq!(query_key(&"/ingest/a/i.m3u8?x=1&key=s3".parse().expect("uri")).as_deref(), Some("s3"));
    }
}
