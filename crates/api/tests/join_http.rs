//! `POST /v1/join` and `POST /v1/admin/tokens` over real HTTP: an in-process server on
//! 127.0.0.1:0 and a real HTTP client (reqwest).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{json, Value};
use shoal_api::token::{self, Claims};
use shoal_api::{
    ApiConfig, AuthConfig, Endpoints, P2pDecision, PolicyInput, StaticTrackers, TrackerNode,
    TrackerNodeConfig,
};
use shoal_proto::api::{ErrorBody, JoinResponse, MintTokenResponse};
use shoal_proto::manifest::{key_id, key_to_b64};
use shoal_proto::ticket::{HmacKeys, Ticket};
use shoal_proto::SigningKey;
use shoal_stun::ratelimit::RateLimitConfig;

const K1: &str = "k1:first-secret-0123456789abcdef";
const K2: &str = "k2:second-secret-0123456789abcdef";
const TICKET_KEY: &str = "t1:ticket-secret-0123456789abcdef";
const ADMIN: &str = "admin-secret-0123456789";

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

fn origin_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn ticket_keys() -> HmacKeys {
    HmacKeys::parse(&[TICKET_KEY], "").expect("ticket keys")
}

fn trackers() -> Vec<TrackerNode> {
    (0..4).map(|i| TrackerNode { url: format!("ws://tracker{i}.test/v1/tracker"), weight: 1.0 }).collect()
}

fn api_config() -> ApiConfig {
    ApiConfig {
        cdn: vec!["https://cdn-a.test/live/{stream}/".into(), "https://cdn-b.test/{stream}/".into()],
        origin_public_key: key_to_b64(origin_key().verifying_key().as_bytes()),
        trackers: trackers().into_iter().map(|t| TrackerNodeConfig::Url(t.url)).collect(),
        api_urls: vec!["https://api2.test".into()],
        rate_limit: RateLimitConfig::new(100.0, 100),
        engine: json!({"max_peers": 7, "nested": {"x": true}}).as_object().expect("object").clone(),
        holdback_percent: 0.0, // these tests check P2P joins one by one
        ..ApiConfig::default()
    }
}

fn auth(keys: &[&str], mint: &str) -> AuthConfig {
    AuthConfig {
        keys: keys.iter().map(|s| s.to_string()).collect(),
        mint_kid: mint.into(),
        admin_secret: ADMIN.into(),
        ..AuthConfig::default()
    }
}

fn endpoints() -> Endpoints {
    Endpoints {
        trackers: Arc::new(StaticTrackers(trackers())),
        stun: vec!["stun:{host}:3478".into()],
        pingback_url: "http://{host}:8080/v1/pingback".into(),
        pingback_interval_ms: 10_000,
        live: None,
    }
}

struct Server {
    base: String,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(api: shoal_api::Api) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("addr");
    let app = shoal_api::router(Arc::new(api));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Server { base: format!("http://{addr}"), http: reqwest::Client::new(), task }
}

async fn default_server() -> Server {
    serve(shoal_api::Api::new(api_config(), auth(&[K1], ""), ticket_keys(), 600, endpoints()).expect("api"))
        .await
}

fn keys(entries: &[&str], mint: &str) -> HmacKeys {
    HmacKeys::parse(entries, mint).expect("keys")
}

fn claims(stream: &str) -> Claims {
    Claims { stream: stream.into(), exp: now_s() + 300, nbf: None, iat: None, sub: None, origins: vec![] }
}

fn tok(c: &Claims, ring: &HmacKeys) -> String {
    token::mint(c, ring).expect("mint")
}

impl Server {
    async fn join(&self, body: Value, origin: Option<&str>) -> reqwest::Response {
        let mut r = self.http.post(format!("{}/v1/join", self.base)).json(&body);
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        r.send().await.expect("request")
    }
}

async fn expect_error(resp: reqwest::Response, status: StatusCode, code: &str) -> ErrorBody {
    assert_eq!(resp.status(), status);
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let body: ErrorBody = resp.json().await.expect("JSON error body");
    assert_eq!(body.error, code, "{}", body.message);
    assert!(!body.message.is_empty());
    body
}

#[tokio::test]
async fn join_returns_everything_a_client_needs() {
    let srv = default_server().await;
    let t = tok(&claims("demo"), &keys(&[K1], ""));
    let resp = srv
        .join(json!({"stream":"demo","token":t,"client":{"platform":"web","sdk":"shoal-web","sdk_version":"0.1.0","nat":{"nat_type":"symmetric"}}}), Some("https://site.test"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let j: JoinResponse = resp.json().await.expect("join response JSON");
    assert_eq!(j.version, 1);
    assert_eq!(j.stream, "demo");
    assert_eq!(j.peer_id.len(), 16);
    assert!(j.peer_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(j.session_id.len(), 32);
    // Trackers: the rendezvous order, primary first, three of four.
    assert_eq!(j.trackers, shoal_api::rendezvous::rank("demo", &trackers(), 3));
    assert_eq!(j.trackers.len(), 3);
    // {host} is the host the client used.
    assert_eq!(j.stun, vec!["stun:127.0.0.1:3478".to_string()]);
    assert_eq!(j.pingback.url, "http://127.0.0.1:8080/v1/pingback");
    assert_eq!(j.pingback.interval_ms, 10_000);
    assert_eq!(j.cdn, vec!["https://cdn-a.test/live/demo/", "https://cdn-b.test/demo/"]);
    assert_eq!(j.origin_public_key, key_to_b64(origin_key().verifying_key().as_bytes()));
    assert_eq!(j.key_id, key_id(&origin_key().verifying_key()));
    assert!(j.p2p);
    assert_eq!(j.p2p_reason, None);
    assert_eq!(j.engine.get("max_peers"), Some(&json!(7)));
    assert_eq!(j.engine.get("nested"), Some(&json!({"x": true})));
    assert_eq!(j.api, vec!["https://api2.test"]);
    // The ticket verifies with the tracker's key and binds this join.
    let ticket = Ticket::verify(&j.ticket, &ticket_keys(), j.server_time_ms).expect("ticket verifies");
    assert_eq!(ticket.peer_id, j.peer_id);
    assert_eq!(ticket.stream, "demo");
    assert_eq!(ticket.session_id, j.session_id);
    assert_eq!(ticket.expires_ms, j.ticket_expires_ms);
    assert!(j.ticket_expires_ms >= j.server_time_ms + 599_000);
    // A second join is a new session and peer.
    let j2: JoinResponse =
        srv.join(json!({"stream":"demo","token":t}), None).await.json().await.expect("json");
    assert_ne!(j2.peer_id, j.peer_id);
    assert_ne!(j2.session_id, j.session_id);
    assert_eq!(j2.trackers, j.trackers, "same stream, same trackers");
}

#[tokio::test]
async fn token_failures_are_401_and_403_with_json() {
    let srv = default_server().await;
    let ring = keys(&[K1], "");
    expect_error(srv.join(json!({"stream":"demo"}), None).await, StatusCode::UNAUTHORIZED, "token_missing")
        .await;
    let expired = Claims { exp: now_s() - 120, ..claims("demo") };
    expect_error(
        srv.join(json!({"stream":"demo","token":tok(&expired, &ring)}), None).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    )
    .await;
    let forged = tok(&claims("demo"), &keys(&["k1:not-the-real-secret-000"], ""));
    expect_error(
        srv.join(json!({"stream":"demo","token":forged}), None).await,
        StatusCode::UNAUTHORIZED,
        "token_invalid",
    )
    .await;
    expect_error(
        srv.join(json!({"stream":"demo","token":"garbage"}), None).await,
        StatusCode::UNAUTHORIZED,
        "token_malformed",
    )
    .await;
    let other = tok(&claims("other"), &ring);
    expect_error(
        srv.join(json!({"stream":"demo","token":other}), None).await,
        StatusCode::FORBIDDEN,
        "wrong_stream",
    )
    .await;
    // Origin-bound token.
    let bound = tok(&Claims { origins: vec!["https://*.good.test".into()], ..claims("demo") }, &ring);
    let ok = srv.join(json!({"stream":"demo","token":bound}), Some("https://www.good.test")).await;
    assert_eq!(ok.status(), StatusCode::OK);
    expect_error(
        srv.join(json!({"stream":"demo","token":bound}), Some("https://evil.test")).await,
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
    )
    .await;
    expect_error(
        srv.join(json!({"stream":"demo","token":bound}), None).await,
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
    )
    .await;
    // 401s carry WWW-Authenticate.
    let r = srv.join(json!({"stream":"demo"}), None).await;
    assert_eq!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
}

#[tokio::test]
async fn bad_requests() {
    let srv = default_server().await;
    let url = format!("{}/v1/join", srv.base);
    let r = srv
        .http
        .post(&url)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("send");
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    expect_error(srv.join(json!({"stream":"../etc"}), None).await, StatusCode::BAD_REQUEST, "bad_request")
        .await;
    let long = "x".repeat(200);
    expect_error(
        srv.join(json!({"stream":"demo","client":{"platform":long}}), None).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let huge = json!({"stream":"demo","pad":"y".repeat(20_000)});
    expect_error(srv.join(huge, None).await, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
}

#[tokio::test]
async fn kid_rotation_without_downtime() {
    let old_ring = keys(&[K1], "");
    let new_ring = keys(&[K2], "");
    let old_tok = tok(&claims("demo"), &old_ring);
    let new_tok = tok(&claims("demo"), &new_ring);
    // Step 1: both keys configured, still minting with k1.
    let both = serve(
        shoal_api::Api::new(api_config(), auth(&[K1, K2], "k1"), ticket_keys(), 600, endpoints())
            .expect("api"),
    )
    .await;
    for t in [&old_tok, &new_tok] {
        assert_eq!(both.join(json!({"stream":"demo","token":t}), None).await.status(), StatusCode::OK);
    }
    // The admin endpoint mints with the configured mint key.
    let minted: MintTokenResponse = both
        .http
        .post(format!("{}/v1/admin/tokens", both.base))
        .bearer_auth(ADMIN)
        .json(&json!({"stream":"demo"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(minted.kid, "k1");
    // Step 3: k1 retired.
    let new_only = serve(
        shoal_api::Api::new(api_config(), auth(&[K2], ""), ticket_keys(), 600, endpoints()).expect("api"),
    )
    .await;
    assert_eq!(new_only.join(json!({"stream":"demo","token":new_tok}), None).await.status(), StatusCode::OK);
    expect_error(
        new_only.join(json!({"stream":"demo","token":old_tok}), None).await,
        StatusCode::UNAUTHORIZED,
        "token_invalid",
    )
    .await;
}

#[tokio::test]
async fn rate_limit_gives_429_per_address() {
    let mut cfg = api_config();
    cfg.rate_limit = RateLimitConfig::new(0.5, 3);
    cfg.forwarded_hops = 1;
    let mut a = auth(&[K1], "");
    a.require_token = false;
    let srv = serve(shoal_api::Api::new(cfg, a, ticket_keys(), 600, endpoints()).expect("api")).await;
    let url = format!("{}/v1/join", srv.base);
    let send = |xff: &'static str| {
        srv.http.post(&url).header("x-forwarded-for", xff).json(&json!({"stream":"demo"})).send()
    };
    for i in 0..3 {
        assert_eq!(
            send("198.51.100.1").await.expect("send").status(),
            StatusCode::OK,
            "request {i} in burst"
        );
    }
    let r = send("198.51.100.1").await.expect("send");
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another client address behind the same proxy is not affected.
    assert_eq!(send("198.51.100.2").await.expect("send").status(), StatusCode::OK);
    // The admin endpoint shares the limit (no brute-forcing the admin secret).
    let r = srv
        .http
        .post(format!("{}/v1/admin/tokens", srv.base))
        .header("x-forwarded-for", "198.51.100.1")
        .bearer_auth("guess")
        .json(&json!({"stream":"demo"}))
        .send()
        .await
        .expect("send");
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn admin_endpoint() {
    let srv = default_server().await;
    let url = format!("{}/v1/admin/tokens", srv.base);
    let body = json!({"stream":"demo","ttl_s":60,"viewer_id":"v-1","origins":["https://site.test"]});
    let r = srv.http.post(&url).json(&body).send().await.expect("send");
    expect_error(r, StatusCode::FORBIDDEN, "admin_forbidden").await;
    let r = srv.http.post(&url).bearer_auth("admin-secret-wrong-000").json(&body).send().await.expect("send");
    expect_error(r, StatusCode::FORBIDDEN, "admin_forbidden").await;
    let r = srv
        .http
        .post(&url)
        .bearer_auth(ADMIN)
        .json(&json!({"stream":"demo","ttl_s":0}))
        .send()
        .await
        .expect("send");
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = srv.http.post(&url).bearer_auth(ADMIN).json(&body).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let m: MintTokenResponse = r.json().await.expect("json");
    assert_eq!(m.kid, "k1");
    assert!(m.expires_at >= now_s() + 58 && m.expires_at <= now_s() + 61);
    let c = token::verify(&m.token, &keys(&[K1], ""), now_s(), 0).expect("minted token verifies");
    assert_eq!(c.sub.as_deref(), Some("v-1"));
    assert_eq!(
        srv.join(json!({"stream":"demo","token":m.token}), Some("https://site.test")).await.status(),
        StatusCode::OK
    );
    expect_error(
        srv.join(json!({"stream":"demo","token":m.token}), Some("https://other.test")).await,
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
    )
    .await;

    // Without an admin secret the endpoint does not exist.
    let mut a = auth(&[K1], "");
    a.admin_secret.clear();
    let off =
        serve(shoal_api::Api::new(api_config(), a, ticket_keys(), 600, endpoints()).expect("api")).await;
    let r = off
        .http
        .post(format!("{}/v1/admin/tokens", off.base))
        .bearer_auth("")
        .json(&body)
        .send()
        .await
        .expect("send");
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
}

async fn p2p_join(srv: &Server, t: String) -> JoinResponse {
    srv.join(json!({"stream":"demo","token":t}), None).await.json::<JoinResponse>().await.expect("join json")
}

#[tokio::test]
async fn p2p_decisions() {
    let t = tok(&claims("demo"), &keys(&[K1], ""));
    let mut cfg = api_config();
    cfg.origin_public_key.clear();
    let srv =
        serve(shoal_api::Api::new(cfg, auth(&[K1], ""), ticket_keys(), 600, endpoints()).expect("api")).await;
    let j = p2p_join(&srv, t.clone()).await;
    assert!(!j.p2p);
    assert_eq!(j.p2p_reason.as_deref(), Some("no_origin_key"));
    assert!(j.origin_public_key.is_empty());
    assert!(!j.cdn.is_empty(), "CDN-only clients still get CDN bases");

    let mut cfg = api_config();
    cfg.holdback_percent = 100.0;
    let srv =
        serve(shoal_api::Api::new(cfg, auth(&[K1], ""), ticket_keys(), 600, endpoints()).expect("api")).await;
    assert_eq!(p2p_join(&srv, t.clone()).await.p2p_reason.as_deref(), Some("holdback"));

    let mut cfg = api_config();
    cfg.p2p = false;
    let srv =
        serve(shoal_api::Api::new(cfg, auth(&[K1], ""), ticket_keys(), 600, endpoints()).expect("api")).await;
    assert_eq!(p2p_join(&srv, t.clone()).await.p2p_reason.as_deref(), Some("disabled"));

    // The hook the pingback role will use: any closure.
    let api = shoal_api::Api::new(api_config(), auth(&[K1], ""), ticket_keys(), 600, endpoints())
        .expect("api")
        .with_policy(Arc::new(|i: &PolicyInput<'_>| {
            if i.request.client.platform.as_deref() == Some("tv") {
                P2pDecision::Deny("platform".into())
            } else {
                P2pDecision::Allow
            }
        }));
    let srv = serve(api).await;
    assert!(p2p_join(&srv, t.clone()).await.p2p);
    let j: JoinResponse = srv
        .join(json!({"stream":"demo","token":t,"client":{"platform":"tv"}}), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!((j.p2p, j.p2p_reason.as_deref()), (false, Some("platform")));
}

#[tokio::test]
async fn server_wide_origins_streams_and_cors() {
    let mut cfg = api_config();
    cfg.allowed_origins = vec!["https://site.test".into()];
    cfg.streams = vec!["demo".into()];
    let mut a = auth(&[K1], "");
    a.require_token = false;
    let srv = serve(shoal_api::Api::new(cfg, a, ticket_keys(), 600, endpoints()).expect("api")).await;
    assert_eq!(srv.join(json!({"stream":"demo"}), Some("https://site.test")).await.status(), StatusCode::OK);
    assert_eq!(
        srv.join(json!({"stream":"demo"}), None).await.status(),
        StatusCode::OK,
        "native clients send no Origin"
    );
    expect_error(
        srv.join(json!({"stream":"demo"}), Some("https://evil.test")).await,
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
    )
    .await;
    expect_error(srv.join(json!({"stream":"nope"}), None).await, StatusCode::NOT_FOUND, "not_found").await;
    // Preflight from an allowed page.
    let r = srv
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/join", srv.base))
        .header("Origin", "https://site.test")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success());
    assert_eq!(
        r.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("https://site.test")
    );
    let r = srv
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/join", srv.base))
        .header("Origin", "https://evil.test")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("send");
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn config_errors_are_clear() {
    let mut a = AuthConfig::default();
    let e =
        shoal_api::Api::new(api_config(), a.clone(), ticket_keys(), 600, endpoints()).err().expect("no keys");
    assert!(e.to_string().contains("auth.keys"), "{e}");
    a.keys = vec!["k1:short".into()];
    let e =
        shoal_api::Api::new(api_config(), a, ticket_keys(), 600, endpoints()).err().expect("short secret");
    assert!(format!("{e:#}").contains("shorter than"), "{e:#}");
    let mut cfg = api_config();
    cfg.origin_public_key = "not-a-key".into();
    let e =
        shoal_api::Api::new(cfg, auth(&[K1], ""), ticket_keys(), 600, endpoints()).err().expect("bad key");
    assert!(format!("{e:#}").contains("origin_public_key"), "{e:#}");
}
