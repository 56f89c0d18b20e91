//! HTTP: `POST /v1/pingback` (reports) and the JSON queries.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Query as QueryParams, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use shoal_api::client_ip;
use shoal_proto::api::ErrorBody;
use shoal_proto::pingback::{
    error_code, parse_batch, Ack, BatchError, GroupKey, Point, Report, Series, WindowsAnswer,
    MAX_PINGBACK_BODY, PINGBACK_PATH,
};
use shoal_proto::ticket::Ticket;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::agg::{spread, Aggregate};
use crate::store::{Claim, ClaimRequest, Dims, KeyFilter, Query};
use crate::{now_ms, Pingback};

/// Most points in one series of a windows query.
pub const MAX_POINTS: u64 = 2_000;
/// Most series in one windows query.
pub const MAX_SERIES: usize = 500;

pub fn router(pb: Arc<Pingback>) -> Router {
    // Pages on any origin report; the POST is a CORS "simple request" when sent as text/plain
    // (the browser SDK does), and the answer is readable so the SDK knows what was counted.
    let cors = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .allow_origin(AllowOrigin::any())
        .max_age(std::time::Duration::from_secs(600));
    let mut r = Router::new()
        .route(PINGBACK_PATH, post(ingest))
        .route("/v1/pingback/windows", get(windows))
        .route("/v1/pingback/summary", get(summary))
        .route("/v1/pingback/decisions", get(decisions));
    if pb.cfg.dashboard {
        r = r.merge(crate::dashboard::routes());
    }
    r.layer(DefaultBodyLimit::max(MAX_PINGBACK_BODY)).layer(cors).with_state(pb)
}

pub(crate) struct ApiErr {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiErr {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiErr { status, code, message: message.into() }
    }
    fn bad(message: impl Into<String>) -> Self {
        ApiErr::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.code.to_owned(), message: self.message })).into_response()
    }
}

struct PeerAddr(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

fn count(outcome: &'static str, n: u64) {
    metrics::counter!("shoal_pingback_reports_total", "outcome" => outcome).increment(n);
}

async fn ingest(
    State(pb): State<Arc<Pingback>>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Ack>, ApiErr> {
    let r = ingest_inner(&pb, client_ip(peer, &headers, pb.cfg.forwarded_hops), body).await;
    let status = match &r {
        Ok(_) => "200",
        Err(e) => e.status.as_str(),
    };
    metrics::counter!("shoal_pingback_requests_total", "status" => status.to_owned()).increment(1);
    r.map(Json)
}

async fn ingest_inner(
    pb: &Pingback,
    ip: Option<IpAddr>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Ack, ApiErr> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            count("too_large", 1);
            ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                error_code::TOO_LARGE,
                format!("body over {MAX_PINGBACK_BODY} bytes"),
            )
        } else {
            count("malformed", 1);
            ApiErr::new(StatusCode::BAD_REQUEST, error_code::MALFORMED, e.body_text())
        }
    })?;
    let reports = parse_batch(&body).map_err(|e| match e {
        BatchError::TooLarge => {
            count("too_large", 1);
            ApiErr::new(StatusCode::PAYLOAD_TOO_LARGE, error_code::TOO_LARGE, e.to_string())
        }
        BatchError::Malformed(m) => {
            count("malformed", 1);
            ApiErr::new(StatusCode::BAD_REQUEST, error_code::MALFORMED, m)
        }
        BatchError::Invalid(m) => {
            count("invalid", 1);
            ApiErr::new(StatusCode::BAD_REQUEST, error_code::INVALID_REPORT, m)
        }
    })?;
    let now = now_ms();
    if pb.cfg.require_ticket {
        let keys = pb.deps.tickets.as_ref().ok_or_else(|| {
            ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no ticket keys configured")
        })?;
        let grace = pb.cfg.ticket_grace_s.saturating_mul(1000);
        for (i, r) in reports.iter().enumerate() {
            let t = Ticket::verify(&r.ticket, keys, now.saturating_sub(grace)).map_err(|e| {
                count("bad_ticket", 1);
                ApiErr::new(
                    StatusCode::UNAUTHORIZED,
                    error_code::BAD_TICKET,
                    format!("reports[{i}].ticket: {e}"),
                )
            })?;
            if t.session_id != r.session_id || t.stream != r.stream {
                count("bad_ticket", 1);
                return Err(ApiErr::new(
                    StatusCode::UNAUTHORIZED,
                    error_code::BAD_TICKET,
                    format!("reports[{i}].ticket: issued for another session or stream"),
                ));
            }
        }
    }
    let mut ack = Ack::default();
    for (i, r) in reports.iter().enumerate() {
        let claim = pb
            .ledger
            .claim(ClaimRequest {
                session_id: &r.session_id,
                seq: r.seq,
                period_ms: r.period_ms,
                has_startup: r.startup_ms.is_some(),
                now_ms: now,
            })
            .await
            .map_err(|e| {
                ApiErr::new(StatusCode::SERVICE_UNAVAILABLE, error_code::OVERLOADED, e.to_string())
            })?;
        match claim {
            Claim::Duplicate => {
                count("duplicate", 1);
                ack.duplicates += 1;
            }
            Claim::New { startup } => {
                let locality = pb.locality_of(ip, &r.locality);
                pb.store.add(now, parts(r, &locality, startup, now, pb.cfg.window_ms())).await.map_err(
                    |e| ApiErr::new(StatusCode::SERVICE_UNAVAILABLE, error_code::OVERLOADED, e.to_string()),
                )?;
                count("accepted", 1);
                for (kind, v) in [
                    ("http", r.http_bytes),
                    ("p2p_down", r.p2p_down_bytes),
                    ("p2p_up", r.p2p_up_bytes),
                    ("wasted", r.wasted_bytes),
                ] {
                    metrics::counter!("shoal_pingback_bytes_total", "kind" => kind).increment(v);
                }
                ack.accepted += 1;
            }
            Claim::Implausible => {
                count("implausible", 1);
                return Err(ApiErr::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    error_code::IMPLAUSIBLE,
                    format!(
                        "reports[{i}]: the session reports more time than has passed since its first report \
                         ({} reports before it were counted)",
                        ack.accepted
                    ),
                ));
            }
            Claim::Overloaded => {
                count("overloaded", 1);
                return Err(ApiErr::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    error_code::OVERLOADED,
                    "too many sessions tracked; retry later",
                ));
            }
        }
    }
    Ok(ack)
}

/// A counted report as store parts: counters spread over the windows its period covers,
/// the report itself (count, startup, latency) where it ends.
pub(crate) fn parts(
    r: &Report,
    locality: &str,
    startup: bool,
    now_ms: u64,
    window_ms: u64,
) -> Vec<(u64, GroupKey, Aggregate)> {
    let key = GroupKey {
        stream: r.stream.clone(),
        rendition: r.rendition.clone(),
        locality: locality.to_owned(),
        platform: r.platform.to_ascii_lowercase(),
        group: r.group().name().to_owned(),
    };
    let end = now_ms.saturating_sub(r.age_ms);
    let mut out: Vec<(u64, GroupKey, Aggregate)> = spread(end, r.period_ms, window_ms)
        .into_iter()
        .map(|(w, f)| (w, key.clone(), Aggregate::spread_part(r, f)))
        .collect();
    out.push((end - end % window_ms.max(1), key, Aggregate::point_part(r, startup)));
    out
}

// ---------------------------------------------------------------------------------- queries

fn param<'a>(p: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    p.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

fn num(p: &HashMap<String, String>, k: &str) -> Result<Option<u64>, ApiErr> {
    param(p, k)
        .map(|v| v.parse::<u64>().map_err(|_| ApiErr::bad(format!("{k}: expected a non-negative integer"))))
        .transpose()
}

fn label(p: &HashMap<String, String>, k: &str) -> Result<Option<String>, ApiErr> {
    match p.get(k) {
        None => Ok(None),
        Some(v) if v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(v.clone())),
        Some(_) => Err(ApiErr::bad(format!("{k}: at most 64 printable characters"))),
    }
}

/// `GET /v1/pingback/windows?stream=&rendition=&locality=&platform=&group=&by=&from_ms=&to_ms=&last_s=&step_s=`
async fn windows(
    State(pb): State<Arc<Pingback>>,
    QueryParams(p): QueryParams<HashMap<String, String>>,
) -> Result<Json<WindowsAnswer>, ApiErr> {
    let w = pb.cfg.window_ms();
    let now = now_ms();
    let to = num(&p, "to_ms")?.unwrap_or(now);
    let from = match (num(&p, "from_ms")?, num(&p, "last_s")?) {
        (Some(f), _) => f,
        (None, Some(s)) => to.saturating_sub(s.saturating_mul(1000)),
        (None, None) => to.saturating_sub(3_600_000),
    };
    if from >= to {
        return Err(ApiErr::bad("from_ms must be before to_ms"));
    }
    let step = num(&p, "step_s")?.map_or(w, |s| s.saturating_mul(1000));
    if step == 0 || step % w != 0 {
        return Err(ApiErr::bad(format!(
            "step_s must be a positive multiple of the window ({} s)",
            w / 1000
        )));
    }
    let from = from - from % step;
    if (to - from) / step > MAX_POINTS {
        return Err(ApiErr::bad(format!(
            "more than {MAX_POINTS} points per series: raise step_s or narrow the span"
        )));
    }
    let by = Dims::parse(param(&p, "by").unwrap_or("stream")).map_err(ApiErr::bad)?;
    let filter = KeyFilter {
        stream: label(&p, "stream")?,
        rendition: label(&p, "rendition")?,
        locality: label(&p, "locality")?,
        platform: label(&p, "platform")?,
        group: label(&p, "group")?,
    };
    let q = Query { from_ms: from, to_ms: to, step_ms: step, filter, by };
    let result = pb
        .store
        .query(&q)
        .await
        .map_err(|e| ApiErr::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))?;
    if result.len() > MAX_SERIES {
        return Err(ApiErr::bad(format!(
            "more than {MAX_SERIES} series: filter more or keep fewer dimensions in `by`"
        )));
    }
    let complete_before = pb.last_complete_start(now).map_or(0, |s| s + w);
    let series = result
        .into_iter()
        .map(|(key, steps)| Series {
            key,
            points: steps
                .into_iter()
                .map(|(start, a)| Point {
                    start_ms: start,
                    complete: start + step <= complete_before,
                    figures: a.figures(step),
                })
                .collect(),
        })
        .collect();
    Ok(Json(WindowsAnswer { window_ms: w, step_ms: step, from_ms: from, to_ms: to, series }))
}

async fn summary(State(pb): State<Arc<Pingback>>) -> Result<Json<crate::summary::Summary>, ApiErr> {
    pb.summary(now_ms())
        .await
        .map(Json)
        .map_err(|e| ApiErr::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))
}

async fn decisions(
    State(pb): State<Arc<Pingback>>,
    QueryParams(p): QueryParams<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiErr> {
    let limit = num(&p, "limit")?.unwrap_or(100).min(crate::protection::MAX_DECISIONS as u64) as usize;
    let ctl = pb.controller.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Json(serde_json::json!({
        "decisions": ctl.decisions(limit),
        "scopes": ctl.views(),
        "rule": ctl.config(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_parts_add_up() {
        let r = Report {
            session_id: "s".into(),
            seq: 1,
            stream: "demo".into(),
            platform: "Linux".into(),
            p2p: true,
            period_ms: 10_000,
            http_bytes: 1_000,
            startup_ms: Some(500),
            ..Default::default()
        };
        let p = parts(&r, "isp-a", true, 25_000, 10_000);
        assert_eq!(p.len(), 3, "two windows + the point part");
        assert_eq!(p[0].0, 10_000);
        assert_eq!(p[1].0, 20_000);
        assert_eq!(p[2].0, 20_000);
        assert_eq!(p[0].1.platform, "linux");
        assert_eq!(p[0].1.group, "p2p");
        assert_eq!(p[0].1.locality, "isp-a");
        let http: f64 = p.iter().map(|x| x.2.http_bytes).sum();
        assert!((http - 1_000.0).abs() < 1e-9);
        assert_eq!(p.iter().map(|x| x.2.reports).sum::<u64>(), 1);
        assert_eq!(p[2].2.startup.count(), 1);
    }

    #[test]
    fn forwarded_for() {
        let peer: SocketAddr = "10.0.0.1:5".parse().expect("addr");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.7, 10.0.0.9".parse().expect("value"));
        assert_eq!(client_ip(Some(peer), &h, 0), Some(peer.ip()));
        assert_eq!(client_ip(Some(peer), &h, 2).map(|i| i.to_string()).as_deref(), Some("198.51.100.7"));
        assert_eq!(client_ip(None, &h, 5), None);
    }
}
