//! The pingback role over real HTTP on loopback: reports aggregate to exactly what was sent,
//! malformed, oversized, forged and duplicate reports are handled as documented, the queries
//! and the dashboard answer, and the policy follows the protection board.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shoal_pingback::{Deps, Pingback, PingbackConfig};
use shoal_proto::pingback::{Ack, Report, WindowsAnswer, MAX_PINGBACK_BODY};
use shoal_proto::ticket::{HmacKeys, Ticket};

struct Server {
    base: String,
    pb: Arc<Pingback>,
    keys: HmacKeys,
    http: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

async fn start(cfg: PingbackConfig) -> Server {
    let keys = HmacKeys::parse(&["k1:pingback-test-secret-0123456789"], "").expect("keys");
    let deps = Deps { tickets: Some(keys.clone()), ..Default::default() };
    let pb = Arc::new(Pingback::new(cfg, deps).expect("pingback"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("addr");
    let app = pb.router();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Server { base: format!("http://{addr}"), pb, keys, http: reqwest::Client::new(), _task: task }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

impl Server {
    fn ticket(&self, session: &str, stream: &str) -> String {
        Ticket {
            peer_id: "0123456789abcdef".into(),
            stream: stream.into(),
            session_id: session.into(),
            expires_ms: now_ms() + 60_000,
        }
        .mint(&self.keys)
        .expect("mint")
    }

    fn report(&self, session: &str, seq: u64, p2p: bool) -> Report {
        Report {
            v: 1,
            session_id: session.into(),
            ticket: self.ticket(session, "demo"),
            seq,
            stream: "demo".into(),
            rendition: "720p".into(),
            p2p,
            p2p_reason: (!p2p).then(|| "holdback".into()),
            platform: "linux".into(),
            sdk: "test".into(),
            sdk_version: "1".into(),
            period_ms: 10_000,
            http_bytes: 1_000_000,
            p2p_down_bytes: if p2p { 3_000_000 } else { 0 },
            p2p_up_bytes: if p2p { 2_000_000 } else { 0 },
            wasted_bytes: if p2p { 50_000 } else { 0 },
            segments_verified: 5,
            stalls: 1,
            stall_ms: 200,
            play_ms: 9_800,
            startup_ms: (seq == 1).then_some(700),
            latency_ms: Some(6_000),
            peers_connected: if p2p { 4 } else { 0 },
            connect_attempts: if p2p { 2 } else { 0 },
            connects_opened: if p2p { 2 } else { 0 },
            ..Default::default()
        }
    }

    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/pingback", self.base))
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post_json(&self, v: &impl serde::Serialize) -> (u16, Value) {
        self.post(serde_json::to_vec(v).expect("serialize")).await
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).send().await.expect("get")
    }

    /// Everything merged over the last `secs`, by `by`.
    async fn totals(&self, query: &str) -> WindowsAnswer {
        let r = self.get(&format!("/v1/pingback/windows?last_s=3600&step_s=3600&{query}")).await;
        assert_eq!(r.status(), 200);
        r.json().await.expect("windows json")
    }
}

#[tokio::test]
async fn reports_aggregate_to_what_was_sent() {
    let s = start(PingbackConfig::default()).await;
    // 6 P2P sessions and 2 control sessions, 3 reports each; the reports go as batches of 3.
    for i in 0..8u64 {
        let p2p = i < 6;
        let batch: Vec<Report> = (1..=3).map(|seq| s.report(&format!("sess{i}"), seq, p2p)).collect();
        let (status, body) = s.post_json(&batch).await;
        assert_eq!(status, 200, "{body}");
        let ack: Ack = serde_json::from_value(body).expect("ack");
        assert_eq!(ack, Ack { accepted: 3, duplicates: 0 });
    }
    let a = s.totals("by=group").await;
    assert_eq!(a.series.len(), 2, "{a:?}");
    let fig = |g: &str| {
        a.series
            .iter()
            .find(|x| x.key.group == g)
            .map(|x| x.points.iter().map(|p| p.figures.clone()).collect::<Vec<_>>())
            .expect("group present")
    };
    let p2p = fig("p2p");
    let sum = |f: &dyn Fn(&shoal_proto::pingback::Figures) -> f64, v: &[shoal_proto::pingback::Figures]| {
        v.iter().map(f).sum::<f64>()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    assert!(close(sum(&|f| f.http_bytes, &p2p), 18.0 * 1_000_000.0));
    assert!(close(sum(&|f| f.p2p_bytes, &p2p), 18.0 * 3_000_000.0));
    assert!(close(sum(&|f| f.upload_bytes, &p2p), 18.0 * 2_000_000.0));
    assert!(close(sum(&|f| f.wasted_bytes, &p2p), 18.0 * 50_000.0));
    assert!(close(sum(&|f| f.stalls, &p2p), 18.0));
    assert_eq!(p2p.iter().map(|f| f.reports).sum::<u64>(), 18);
    assert_eq!(p2p.iter().map(|f| f.startup_samples).sum::<u64>(), 6, "startup once per session");
    let control = fig("control");
    assert!(close(sum(&|f| f.http_bytes, &control), 6.0 * 1_000_000.0));
    assert_eq!(sum(&|f| f.p2p_bytes, &control), 0.0);

    // Merged over every dimension: one series whose sums are the totals sent; a day-long
    // step gives one point (unless the test runs across midnight UTC, then two).
    let merged =
        s.get("/v1/pingback/windows?last_s=3600&step_s=86400&by=").await.json::<Value>().await.expect("json");
    assert_eq!(merged["series"].as_array().map(Vec::len), Some(1), "{merged}");
    let points = merged["series"][0]["points"].as_array().expect("points").clone();
    let tot = |k: &str| points.iter().map(|p| p[k].as_f64().unwrap_or(0.0)).sum::<f64>();
    let (http, peer, wasted) = (tot("http_bytes"), tot("p2p_bytes"), tot("wasted_bytes"));
    assert!(close(http, 24e6) && close(peer, 54e6) && close(wasted, 0.9e6), "{http} {peer} {wasted}");
    if points.len() == 1 {
        let p = &points[0];
        assert!(close(p["offload"].as_f64().expect("offload"), 54.0 / 78.0));
        assert!(close(p["net_offload"].as_f64().expect("net"), 1.0 - 24e6 / (78e6 - 0.9e6)));
        assert!(close(p["stall_ratio"].as_f64().expect("stall ratio"), 0.02));
        assert!(close(p["connect_success"].as_f64().expect("success"), 1.0));
        assert!(close(p["peers_per_viewer"].as_f64().expect("peers"), 4.0 * 18.0 / 24.0));
    }
    // Filters and dimensions.
    let by_platform = s.totals("by=platform,rendition&stream=demo").await;
    assert_eq!(by_platform.series.len(), 1);
    assert_eq!(
        (by_platform.series[0].key.platform.as_str(), by_platform.series[0].key.rendition.as_str()),
        ("linux", "720p")
    );
    assert_eq!(by_platform.series[0].key.stream, "*");
    assert!(s.totals("stream=nope").await.series.is_empty());
    for bad in ["by=colour", "step_s=7", "from_ms=10&to_ms=5", "last_s=999999999&step_s=10", "stream=%0A"] {
        let r = s.get(&format!("/v1/pingback/windows?{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.expect("error json");
        assert_eq!(e["error"], "bad_request", "{bad}");
    }
}

#[tokio::test]
async fn bad_reports_are_refused_and_change_nothing() {
    let s = start(PingbackConfig::default()).await;
    let (status, body) = s.post_json(&s.report("good", 1, true)).await;
    assert_eq!(status, 200, "{body}");
    let before = s.totals("by=").await;

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not json", b"{\"session_id\":".to_vec(), 400, "malformed"),
        ("wrong shape", b"\"hello\"".to_vec(), 400, "malformed"),
        ("empty batch", b"[]".to_vec(), 400, "malformed"),
        (
            "missing field",
            br#"{"session_id":"x","seq":1,"stream":"demo","p2p":true}"#.to_vec(),
            400,
            "malformed",
        ),
        ("oversized", vec![b' '; MAX_PINGBACK_BODY + 10], 413, "too_large"),
    ];
    for (what, body, code, err) in cases {
        let (status, e) = s.post(body).await;
        assert_eq!(status, code, "{what}: {e}");
        assert_eq!(e["error"], err, "{what}: {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: a clear message");
    }
    // Out of bounds: named field; a batch with one bad report is refused whole.
    let mut bad = s.report("bad", 1, true);
    bad.stall_ms = 60_000;
    let (status, e) = s.post_json(&vec![s.report("ok2", 1, true), bad]).await;
    assert_eq!(status, 400);
    assert_eq!(e["error"], "invalid_report");
    assert!(e["message"].as_str().expect("message").starts_with("reports[1].stall_ms"), "{e}");
    let nine: Vec<Report> = (1..=9).map(|q| s.report("nine", q, true)).collect();
    assert_eq!(s.post_json(&nine).await.0, 400, "more than 8 in a batch");
    // Forged or borrowed tickets.
    let mut forged = s.report("forged", 1, true);
    forged.ticket = "t1.k1.AAAA.AAAA".into();
    let (status, e) = s.post_json(&forged).await;
    assert_eq!((status, e["error"].as_str()), (401, Some("bad_ticket")), "{e}");
    let mut borrowed = s.report("thief", 1, true);
    borrowed.ticket = s.ticket("victim", "demo");
    assert_eq!(s.post_json(&borrowed).await.0, 401, "a ticket of another session");
    let mut other_stream = s.report("x", 1, true);
    other_stream.ticket = s.ticket("x", "other");
    assert_eq!(s.post_json(&other_stream).await.0, 401, "a ticket of another stream");
    let mut none = s.report("none", 1, true);
    none.ticket.clear();
    assert_eq!(s.post_json(&none).await.0, 401, "no ticket");

    let after = s.totals("by=").await;
    assert_eq!(before.series, after.series, "refused reports changed the aggregates");
}

#[tokio::test]
async fn a_retried_report_counts_once() {
    let s = start(PingbackConfig::default()).await;
    let r1 = s.report("retry", 1, true);
    let r2 = s.report("retry", 2, true);
    assert_eq!(s.post_json(&r1).await.1["accepted"], 1);
    // The client did not see the answer and sends report 1 again, with report 2.
    let (status, body) = s.post_json(&vec![r1.clone(), r2]).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_value::<Ack>(body).expect("ack"), Ack { accepted: 1, duplicates: 1 });
    assert_eq!(s.post_json(&r1).await.1["duplicates"], 1);
    let a = s.totals("by=").await;
    let reports: u64 = a.series[0].points.iter().map(|p| p.figures.reports).sum();
    let http: f64 = a.series[0].points.iter().map(|p| p.figures.http_bytes).sum();
    assert_eq!(reports, 2);
    assert!((http - 2e6).abs() < 1e-3, "{http}");
    // A session claiming far more time than has passed is refused (422), nothing counted.
    let mut long = s.report("greedy", 1, true);
    long.period_ms = 600_000;
    assert_eq!(s.post_json(&long).await.0, 200);
    let mut again = s.report("greedy", 2, true);
    again.period_ms = 600_000;
    let (status, e) = s.post_json(&again).await;
    assert_eq!((status, e["error"].as_str()), (422, Some("implausible")), "{e}");
}

#[tokio::test]
async fn dashboard_summary_and_windows_answer() {
    let cfg = PingbackConfig { window_s: 1, interval_ms: 1_000, ..Default::default() };
    let s = start(cfg).await;
    let html = s.get("/dashboard").await;
    assert_eq!(html.status(), 200);
    let csp =
        html.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    let text = html.text().await.expect("html");
    assert!(
        text.contains("/dashboard/dashboard.js") && !text.contains("http://") && !text.contains("https://"),
        "no external asset"
    );
    for (path, ty) in
        [("/dashboard/dashboard.js", "text/javascript"), ("/dashboard/dashboard.css", "text/css")]
    {
        let r = s.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()["content-type"].to_str().expect("ascii").starts_with(ty));
        assert!(
            !r.text().await.expect("body").contains("https://"),
            "{path} loads nothing from the internet"
        );
    }
    // Reports 3 s in the past (age) so their windows are already complete.
    let mut r = s.report("dash", 1, true);
    r.period_ms = 1_000;
    r.age_ms = 4_000;
    r.http_bytes = 100_000;
    r.p2p_down_bytes = 300_000;
    r.stall_ms = 0;
    r.stalls = 0;
    r.play_ms = 1_000;
    assert_eq!(s.post_json(&r).await.0, 200);
    let sum: Value = s.get("/v1/pingback/summary").await.json().await.expect("summary json");
    assert_eq!(sum["window_ms"], 1000);
    let chart = sum["chart"].as_array().expect("chart");
    assert!(!chart.is_empty());
    let with_reports: Vec<&Value> = chart.iter().filter(|p| p["all"]["reports"].as_u64() > Some(0)).collect();
    assert_eq!(with_reports.len(), 1, "{sum}");
    let peers_mbps: f64 = chart.iter().map(|p| p["all"]["p2p_mbps"].as_f64().unwrap_or(0.0)).sum();
    assert!((peers_mbps - 2.4).abs() < 1e-6, "300 kB in one 1-s window = 2.4 Mbit/s: {peers_mbps}");
    let streams = sum["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["stream"], "demo");
    assert_eq!(streams[0]["p2p_on"], true);
    let d: Value = s.get("/v1/pingback/decisions").await.json().await.expect("decisions json");
    assert!(d["decisions"].as_array().is_some_and(|v| v.is_empty()));
    assert_eq!(d["rule"]["alpha"], json!(0.01));
    // The background tick runs without data trouble and keeps the store within its bounds.
    s.pb.tick(now_ms()).await;
    assert!(s.pb.summary(now_ms()).await.expect("summary").store.windows >= 1);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
