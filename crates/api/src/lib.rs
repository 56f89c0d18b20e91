//! The API role: `POST /v1/join` admits a viewer to a stream and tells it everything it needs
//! (ids, trackers, STUN, pingback, CDN bases, the origin's key, the P2P decision, a tracker
//! ticket); `POST /v1/admin/tokens` mints viewer tokens.
//!
//! The API is stateless: any number of nodes behind a load balancer answer identically given
//! the same configuration (tokens and tickets are HMACs over shared secrets, tracker choice is
//! rendezvous hashing over the candidate list). Build an [`Api`] from the config sections and
//! the advertised [`Endpoints`], then mount [`router`]. Serve it with
//! `into_make_service_with_connect_info::<SocketAddr>()` so the per-address rate limit sees
//! client addresses.
//!
//! Contract for clients, including what to do when the API is unreachable (play from the CDN):
//! `docs/api.md`.

pub mod config;
pub mod error;
pub mod policy;
pub mod rendezvous;
pub mod token;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use shoal_proto::api::{
    error_code, JoinRequest, JoinResponse, MintTokenRequest, MintTokenResponse, Pingback, API_VERSION,
    MAX_JOIN_BODY,
};
use shoal_proto::ids::valid_name;
use shoal_proto::manifest::{key_id, verifying_key_from_b64};
use shoal_proto::ticket::{HmacKeys, Ticket};
use shoal_stun::ratelimit::{KeyedLimiter, Verdict};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::{ApiConfig, AuthConfig, TicketsConfig, TrackerNodeConfig};
pub use error::ApiError;
pub use policy::{P2pDecision, P2pPolicy, PolicyInput, StaticPolicy};
pub use rendezvous::{LiveEndpoints, StaticTrackers, TrackerDirectory, TrackerNode};

/// Path of the join endpoint.
pub const JOIN_PATH: &str = "/v1/join";
/// Path of the admin token endpoint.
pub const ADMIN_TOKENS_PATH: &str = "/v1/admin/tokens";
/// In advertised URLs, replaced by the host name the client used to reach the API (its
/// `Host` header) — for single-process deployments bound to `0.0.0.0` without a public URL.
pub const HOST_PLACEHOLDER: &str = "{host}";

/// What the API tells clients about the other roles. Strings may contain [`HOST_PLACEHOLDER`].
pub struct Endpoints {
    pub trackers: Arc<dyn TrackerDirectory>,
    /// `stun:host:port` URLs.
    pub stun: Vec<String>,
    pub pingback_url: String,
    pub pingback_interval_ms: u64,
    /// Live lists (a cluster's registry); `None`: the static lists above and `api.api_urls`.
    pub live: Option<Arc<dyn LiveEndpoints>>,
}

/// The API role's state; cheap to share (`Arc`).
pub struct Api {
    cfg: ApiConfig,
    auth: AuthConfig,
    token_keys: Option<HmacKeys>,
    ticket_keys: HmacKeys,
    ticket_ttl_ms: u64,
    /// Base64 key and its key id.
    origin_key: Option<(String, String)>,
    endpoints: Endpoints,
    policy: Arc<dyn P2pPolicy>,
    limiter: Mutex<KeyedLimiter>,
    admin_secret_hash: Option<[u8; 32]>,
}

impl Api {
    /// Check the configuration and build the role. Token keys are required when
    /// `auth.require_token` is set or the admin endpoint is on.
    pub fn new(
        cfg: ApiConfig,
        auth: AuthConfig,
        ticket_keys: HmacKeys,
        ticket_ttl_s: u64,
        endpoints: Endpoints,
    ) -> anyhow::Result<Self> {
        let token_keys = if auth.keys.is_empty() {
            None
        } else {
            Some(HmacKeys::parse(&auth.keys, &auth.mint_kid).context("auth.keys")?)
        };
        if token_keys.is_none() && auth.require_token {
            anyhow::bail!(
                "auth.require_token is on but auth.keys is empty: add a `kid:secret` key \
                 (SHOAL_AUTH_KEYS=k1:$(head -c 32 /dev/urandom | base64)) or set auth.require_token = false"
            );
        }
        if token_keys.is_none() && !auth.admin_secret.is_empty() {
            anyhow::bail!(
                "auth.admin_secret is set but auth.keys is empty: the admin endpoint could not mint"
            );
        }
        if !auth.admin_secret.is_empty() && auth.admin_secret.len() < 16 {
            anyhow::bail!("auth.admin_secret must be at least 16 bytes");
        }
        let origin_key = if cfg.origin_public_key.trim().is_empty() {
            None
        } else {
            let k = verifying_key_from_b64(&cfg.origin_public_key).context("api.origin_public_key")?;
            Some((cfg.origin_public_key.trim().to_owned(), key_id(&k)))
        };
        for s in &cfg.streams {
            anyhow::ensure!(valid_name(s), "api.streams: invalid stream name {s:?}");
        }
        for o in &cfg.allowed_origins {
            anyhow::ensure!(
                token::valid_origin_pattern(o),
                "api.allowed_origins: invalid origin pattern {o:?}"
            );
        }
        anyhow::ensure!(
            (0.0..=100.0).contains(&cfg.holdback_percent),
            "api.holdback_percent must be 0..=100"
        );
        anyhow::ensure!(cfg.tracker_count >= 1, "api.tracker_count must be at least 1");
        let admin_secret_hash =
            (!auth.admin_secret.is_empty()).then(|| Sha256::digest(auth.admin_secret.as_bytes()).into());
        let policy = Arc::new(StaticPolicy { enabled: cfg.p2p, holdback_percent: cfg.holdback_percent });
        Ok(Api {
            limiter: Mutex::new(KeyedLimiter::new(&cfg.rate_limit)),
            cfg,
            auth,
            token_keys,
            ticket_keys,
            ticket_ttl_ms: ticket_ttl_s.saturating_mul(1000),
            origin_key,
            endpoints,
            policy,
            admin_secret_hash,
        })
    }

    /// Replace the P2P policy (default: [`StaticPolicy`] from `api.p2p` and
    /// `api.holdback_percent`). The pingback role plugs its live decision in here.
    pub fn with_policy(mut self, policy: Arc<dyn P2pPolicy>) -> Self {
        self.policy = policy;
        self
    }

    pub fn token_keys(&self) -> Option<&HmacKeys> {
        self.token_keys.as_ref()
    }

    fn check_rate(&self, ip: IpAddr) -> Result<(), ApiError> {
        let verdict = self.limiter.lock().map(|mut l| l.check(ip, Instant::now())).unwrap_or(Verdict::Allow);
        match verdict {
            Verdict::Allow => Ok(()),
            Verdict::Deny { retry_after_s } => {
                metrics::counter!("shoal_api_rate_limited_total").increment(1);
                Err(ApiError::rate_limited(retry_after_s.ceil() as u64))
            }
        }
    }
}

/// The API routes (`POST /v1/join`, `POST /v1/admin/tokens`) with CORS for browser pages.
pub fn router(api: Arc<Api>) -> Router {
    let cors = CorsLayer::new()
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
        .max_age(std::time::Duration::from_secs(600))
        .allow_origin(if api.cfg.allowed_origins.is_empty() {
            AllowOrigin::mirror_request()
        } else {
            let patterns = api.cfg.allowed_origins.clone();
            AllowOrigin::predicate(move |o, _| {
                o.to_str().is_ok_and(|o| patterns.iter().any(|p| token::origin_matches(p, o)))
            })
        });
    Router::new()
        .route(JOIN_PATH, post(join))
        .route(ADMIN_TOKENS_PATH, post(mint_token))
        .layer(DefaultBodyLimit::max(MAX_JOIN_BODY))
        .layer(cors)
        .with_state(api)
}

/// The TCP peer address (from `ConnectInfo`), if the server provides it.
struct PeerAddr(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

/// The client address (rate limits, locality, pingback): the TCP peer, or with `hops` trusted
/// proxies the `hops`-th `X-Forwarded-For` entry from the right.
pub fn client_ip(peer: Option<SocketAddr>, headers: &HeaderMap, hops: usize) -> Option<IpAddr> {
    let fallback = peer.map(|p| p.ip());
    if hops == 0 {
        return fallback;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    entries.len().checked_sub(hops).and_then(|i| entries.get(i)).and_then(|s| s.parse().ok()).or(fallback)
}

/// [`client_ip`] for rate limiting, where an unknown client shares one bucket.
fn rate_ip(peer: Option<SocketAddr>, headers: &HeaderMap, hops: usize) -> IpAddr {
    client_ip(peer, headers, hops).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The host part of the `Host` header, if it is a plain host name or IP literal.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let h = headers.get(header::HOST)?.to_str().ok()?;
    let host = if h.starts_with('[') {
        &h[..=h.find(']')?]
    } else {
        h.rsplit_once(':')
            .map_or(h, |(host, port)| if port.bytes().all(|b| b.is_ascii_digit()) { host } else { h })
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then(|| host.to_owned())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn random_hex<const N: usize>() -> String {
    hex::encode(rand::random::<[u8; N]>())
}

fn origin_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).filter(|o| *o != "null")
}

fn count_join(outcome: &'static str) {
    metrics::counter!("shoal_api_joins_total", "outcome" => outcome).increment(1);
}

/// The body, or a JSON error when it is over the limit or unreadable.
fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                error_code::TOO_LARGE,
                format!("request body over {MAX_JOIN_BODY} bytes"),
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    })
}

async fn join(
    State(api): State<Arc<Api>>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<JoinResponse>, ApiError> {
    let started = Instant::now();
    let ip = rate_ip(peer, &headers, api.cfg.forwarded_hops);
    let r = api
        .check_rate(ip)
        .and_then(|()| body_or_error(body))
        .and_then(|body| join_inner(&api, &headers, &body, ip));
    metrics::histogram!("shoal_api_join_duration_seconds").record(started.elapsed().as_secs_f64());
    match &r {
        Ok(resp) => {
            count_join("ok");
            let decision = if resp.p2p { "p2p" } else { resp.p2p_reason.as_deref().unwrap_or("cdn_only") };
            metrics::counter!("shoal_api_join_p2p_total", "decision" => decision.to_owned()).increment(1);
        }
        Err(e) => count_join(e.code),
    }
    r.map(Json)
}

fn join_inner(api: &Api, headers: &HeaderMap, body: &[u8], ip: IpAddr) -> Result<JoinResponse, ApiError> {
    let req: JoinRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("join request: {e}")))?;
    if !valid_name(&req.stream) {
        return Err(ApiError::bad_request("stream must be 1-64 characters of [A-Za-z0-9_.-]"));
    }
    if !req.facts_within_limits() {
        return Err(ApiError::bad_request("a client fact is too long"));
    }
    if !api.cfg.streams.is_empty() && !api.cfg.streams.contains(&req.stream) {
        return Err(ApiError::not_found(format!("unknown stream {:?}", req.stream)));
    }
    let origin = origin_header(headers);
    if !api.cfg.allowed_origins.is_empty() {
        let ok = origin.is_none_or(|o| api.cfg.allowed_origins.iter().any(|p| token::origin_matches(p, o)));
        if !ok {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                error_code::ORIGIN_NOT_ALLOWED,
                "page origin not allowed on this server",
            ));
        }
    }
    let now = now_ms();
    let viewer_id = match (&req.token, &api.token_keys) {
        (Some(t), Some(keys)) => {
            let claims = token::verify(t, keys, now / 1000, api.auth.leeway_s)?;
            claims.admits(&req.stream, origin)?;
            claims.sub
        }
        (None, _) if api.auth.require_token => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                error_code::TOKEN_MISSING,
                "a token is required",
            ))
        }
        _ => None,
    };

    let session_id = random_hex::<16>();
    let peer_id = random_hex::<8>();
    let host = request_host(headers).unwrap_or_else(|| "localhost".into());
    let subst = |s: &str| s.replace(HOST_PLACEHOLDER, &host);

    let trackers: Vec<String> =
        api.endpoints.trackers.assign(&req.stream, api.cfg.tracker_count).iter().map(|u| subst(u)).collect();
    let decision = if api.origin_key.is_none() {
        P2pDecision::Deny("no_origin_key".into())
    } else if trackers.is_empty() {
        P2pDecision::Deny("no_tracker".into())
    } else {
        api.policy.decide(&PolicyInput {
            stream: &req.stream,
            session_id: &session_id,
            peer_id: &peer_id,
            viewer_id: viewer_id.as_deref(),
            request: &req,
            client_ip: (!ip.is_unspecified()).then_some(ip),
        })
    };
    let ticket_expires_ms = now.saturating_add(api.ticket_ttl_ms);
    let ticket = Ticket {
        peer_id: peer_id.clone(),
        stream: req.stream.clone(),
        session_id: session_id.clone(),
        expires_ms: ticket_expires_ms,
    }
    .mint(&api.ticket_keys)
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error_code::INTERNAL, e.to_string()))?;
    let (origin_public_key, key_id) = api.origin_key.clone().unwrap_or_default();
    let (p2p, p2p_reason) = match decision {
        P2pDecision::Allow => (true, None),
        P2pDecision::Deny(why) => (false, Some(why)),
    };
    let live = api.endpoints.live.as_deref();
    let nonempty = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let stun = live.and_then(|l| nonempty(l.stun())).unwrap_or_else(|| api.endpoints.stun.clone());
    let mut pingback_urls = live.and_then(|l| nonempty(l.pingback(&session_id))).unwrap_or_default();
    let pingback_url =
        if pingback_urls.is_empty() { api.endpoints.pingback_url.clone() } else { pingback_urls.remove(0) };
    let api_urls = live.and_then(|l| nonempty(l.api())).unwrap_or_else(|| api.cfg.api_urls.clone());
    Ok(JoinResponse {
        version: API_VERSION,
        session_id,
        peer_id,
        stream: req.stream.clone(),
        trackers,
        stun: stun.iter().map(|s| subst(s)).collect(),
        pingback: Pingback {
            url: subst(&pingback_url),
            interval_ms: api.endpoints.pingback_interval_ms,
            alternates: pingback_urls.iter().map(|u| subst(u)).collect(),
        },
        cdn: api.cfg.cdn.iter().map(|c| c.replace("{stream}", &req.stream)).collect(),
        origin_public_key,
        key_id,
        p2p,
        p2p_reason,
        ticket,
        ticket_expires_ms,
        engine: api.cfg.engine.clone(),
        api: api_urls,
        server_time_ms: now,
    })
}

async fn mint_token(
    State(api): State<Arc<Api>>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MintTokenResponse>, ApiError> {
    api.check_rate(rate_ip(peer, &headers, api.cfg.forwarded_hops))?;
    let body = body_or_error(body)?;
    let (Some(expected), Some(keys)) = (&api.admin_secret_hash, &api.token_keys) else {
        return Err(ApiError::not_found("admin endpoint is off (auth.admin_secret is empty)"));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let given_hash: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    // Compare digests without an early exit.
    if given_hash.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            error_code::ADMIN_FORBIDDEN,
            "admin secret missing or wrong",
        ));
    }
    let req: MintTokenRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("mint request: {e}")))?;
    let ttl = req.ttl_s.unwrap_or(api.auth.default_ttl_s);
    if ttl == 0 || ttl > api.auth.max_ttl_s {
        return Err(ApiError::bad_request(format!("ttl_s must be 1..={}", api.auth.max_ttl_s)));
    }
    let now_s = now_ms() / 1000;
    let claims = token::Claims {
        stream: req.stream,
        exp: now_s + ttl,
        nbf: None,
        iat: Some(now_s),
        sub: req.viewer_id,
        origins: req.origins,
    };
    let token = token::mint(&claims, keys).map_err(|e| ApiError::bad_request(e.to_string()))?;
    metrics::counter!("shoal_api_tokens_minted_total").increment(1);
    Ok(Json(MintTokenResponse { token, kid: keys.mint_kid().to_owned(), expires_at: claims.exp }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn forwarded_for_hops() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().expect("addr");
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 198.51.100.7"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.9"));
        assert_eq!(rate_ip(Some(peer), &h, 0), peer.ip(), "hops=0 ignores the header");
        assert_eq!(rate_ip(Some(peer), &h, 1).to_string(), "10.0.0.9");
        assert_eq!(rate_ip(Some(peer), &h, 2).to_string(), "198.51.100.7");
        assert_eq!(rate_ip(Some(peer), &h, 9), peer.ip(), "too few entries");
        assert_eq!(rate_ip(None, &HeaderMap::new(), 0), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn host_header() {
        let mut h = HeaderMap::new();
        for (value, want) in [
            ("example.com:8080", Some("example.com")),
            ("example.com", Some("example.com")),
            ("[::1]:8080", Some("[::1]")),
            ("127.0.0.1:1", Some("127.0.0.1")),
            ("evil.com/x", None),
            ("a b", None),
        ] {
            h.insert(header::HOST, HeaderValue::from_str(value).expect("header value"));
            assert_eq!(request_host(&h).as_deref(), want, "{value}");
        }
    }
}
