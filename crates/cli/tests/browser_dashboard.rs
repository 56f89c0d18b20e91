//! The pingback dashboard in headless Chromium, inside a network namespace.
//!
//! 1. `shoal serve` (api + tracker + pingback, 1-second windows) receives reports from a
//!    scripted audience that grows, then whose P2P sessions start to stall; the page renders,
//!    its charts gain points as reports arrive, the stream table and the tiles show the
//!    figures, the protection decision appears, nothing is loaded from anywhere but the server
//!    itself, and screenshots are saved
//!    (`target/test-output/browser_dashboard/dashboard/dashboard-*.png`).
//! 2. Real browser-SDK viewers (web/dist, `make web`) play the synthetic stream through hls.js
//!    and report with `web/src/pingback.ts`; pingback counts each page once with its startup
//!    time and about the bytes the SDK counted, and the dashboard shows them
//!    (`target/test-output/browser_dashboard_sdk/dashboard/`).

mod browser_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shoal_proto::manifest::key_to_b64;
use shoal_proto::SigningKey;
use shoal_testkit::browser::{check_png, run_script};
use shoal_testkit::{Netns, Proc, TestDir};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const RUN_MS: u64 = 32_000;
/// From this second on, P2P sessions stall.
const BAD_FROM_S: u64 = 14;

struct Session {
    id: String,
    ticket: String,
    p2p: bool,
    reason: Option<String>,
}

/// Join until there are 8 P2P and 3 control sessions (bounded), then report every second:
/// session i starts reporting at second i; P2P sessions stall from BAD_FROM_S on.
async fn audience(base: String, stop: Arc<AtomicBool>) -> anyhow::Result<u64> {
    let http = reqwest::Client::new();
    let mut sessions = Vec::new();
    let (mut p2p, mut control) = (0, 0);
    for _ in 0..400 {
        if p2p >= 8 && control >= 3 {
            break;
        }
        let j: Value = http
            .post(format!("{base}/v1/join"))
            .json(&json!({"stream": "demo"}))
            .send()
            .await?
            .json()
            .await?;
        let s = Session {
            id: j["session_id"].as_str().unwrap_or_default().to_owned(),
            ticket: j["ticket"].as_str().unwrap_or_default().to_owned(),
            p2p: j["p2p"] == true,
            reason: j["p2p_reason"].as_str().map(str::to_owned),
        };
        match (s.p2p, s.reason.as_deref()) {
            (true, _) if p2p < 8 => p2p += 1,
            (false, Some("holdback")) if control < 3 => control += 1,
            _ => continue,
        }
        sessions.push(s);
    }
    anyhow::ensure!(p2p >= 8 && control >= 3, "could not form the audience: {p2p} P2P, {control} control");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut accepted = 0u64;
    for second in 0..(RUN_MS / 1000 + 30) {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut batch = Vec::new();
        for (i, s) in sessions.iter().enumerate() {
            let i = i as u64;
            if second < i {
                continue;
            }
            let seq = second - i + 1;
            let wave = 1.0 + 0.3 * ((second as f64) / 3.0 + i as f64).sin();
            let stalling = s.p2p && second >= BAD_FROM_S;
            let (stalls, stall_ms) = if stalling && second % 2 == 0 { (1, 400) } else { (0, 0) };
            let (http_b, p2p_b, up_b) = if s.p2p {
                (150_000.0 * wave, 450_000.0 * wave, 420_000.0 * wave)
            } else {
                (600_000.0 * wave, 0.0, 0.0)
            };
            let mut r = json!({
                "session_id": s.id, "ticket": s.ticket, "seq": seq, "stream": "demo", "rendition": if i.is_multiple_of(3) { "360p" } else { "720p" },
                "p2p": s.p2p, "p2p_reason": s.reason, "platform": "web", "sdk": "script", "sdk_version": "1",
                "period_ms": if seq == 1 { 0 } else { 1000 }, "http_bytes": http_b as u64, "p2p_down_bytes": p2p_b as u64,
                "p2p_up_bytes": up_b as u64, "wasted_bytes": (p2p_b * 0.02) as u64, "segments_verified": 1,
                "play_ms": 1000 - stall_ms, "stall_ms": stall_ms, "stalls": stalls, "latency_ms": 6000 + 100 * i,
                "peers_connected": if s.p2p { 3 + i % 3 } else { 0 }, "connect_attempts": u64::from(seq == 2) * 4,
                "connects_opened": u64::from(seq == 2) * 3,
            });
            if seq == 1 {
                r["startup_ms"] = json!(if s.p2p { 650 + 40 * i } else { 600 + 30 * i });
            }
            batch.push(r);
        }
        for chunk in batch.chunks(8) {
            let r = http.post(format!("{base}/v1/pingback")).body(serde_json::to_vec(chunk)?).send().await?;
            anyhow::ensure!(
                r.status() == 200,
                "report refused: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
            accepted += chunk.len() as u64;
        }
    }
    Ok(accepted)
}

#[test]
fn browser_dashboard_renders_and_updates_as_reports_arrive() {
    let dir = TestDir::new("browser_dashboard").expect("test dir");
    let ns = Netns::new().expect("network namespace");
    let key = key_to_b64(SigningKey::from_bytes(&[5u8; 32]).verifying_key().as_bytes());
    let mut serve = Proc::builder("serve", SHOAL)
        .args(["serve", "--roles", "api,tracker,pingback", "--listen", "127.0.0.1:0"])
        .args(["--set", "auth.require_token=false", "--set", &format!("api.origin_public_key={key}")])
        .args(["--set", "api.holdback_percent=25"])
        .args(["--set", "api.rate_limit.per_second=100000", "--set", "api.rate_limit.burst=100000"])
        .args(["--set", "pingback.window_s=1", "--set", "pingback.interval_ms=1000"])
        .args(["--set", "pingback.protection.eval_window_s=8"])
        .args([
            "--set",
            "pingback.protection.min_p2p_watch_s=20",
            "--set",
            "pingback.protection.min_control_watch_s=10",
        ])
        .args(["--set", "pingback.protection.trip_evaluations=2"])
        .env("RUST_LOG", "info")
        .netns(&ns)
        .log_dir(dir.path())
        .spawn()
        .expect("spawn shoal serve");
    let base = serve
        .wait_ready("SERVE", Duration::from_secs(60))
        .expect("ready")
        .url
        .trim_end_matches('/')
        .to_owned();

    let rt = ns.tokio_runtime(1).expect("runtime in the namespace");
    let stop = Arc::new(AtomicBool::new(false));
    let reporter = rt.handle().spawn(audience(base.clone(), stop.clone()));

    let cfg = json!({
        "url": format!("{base}/dashboard"),
        "durationMs": RUN_MS,
        "screenshotsAtMs": [10_000, RUN_MS - 1_000],
    });
    let result: Value = run_script(&ns, &dir, "dashboard", "dashboard.mjs", &cfg, Duration::from_secs(150))
        .expect("dashboard run");
    stop.store(true, Ordering::Relaxed);
    let accepted = rt.block_on(reporter).expect("reporter task").expect("reports accepted");
    std::fs::write(dir.join("result-summary.json"), serde_json::to_vec_pretty(&result).expect("json"))
        .expect("write");

    assert!(result["error"].is_null(), "{}", result["error"]);
    assert!(accepted > 100, "{accepted} reports sent");
    let samples = result["samples"].as_array().expect("samples").clone();
    let last = samples.last().expect("at least one sample");
    println!("last sample: {last:#}");
    // Renders and keeps updating.
    assert!(last["updates"].as_u64().unwrap_or(0) >= 8, "the page polled and rendered repeatedly: {last}");
    assert_eq!(last["errors"], 0, "no failed poll");
    assert!(result["consoleErrors"].as_array().is_some_and(|e| e.is_empty()), "{}", result["consoleErrors"]);
    // Nothing from anywhere else: every request went to the server itself.
    let requests = result["requests"].as_array().expect("requests");
    assert!(requests.len() >= 4, "{requests:?}");
    for r in requests {
        assert!(r.as_str().is_some_and(|u| u.starts_with(&base)), "request to another origin: {r}");
    }
    assert!(
        result["failedRequests"].as_array().is_some_and(|f| f.is_empty()),
        "{}",
        result["failedRequests"]
    );
    // Charts gain points as reports arrive.
    let points = |s: &Value, chart: &str| s["points"][chart].as_u64().unwrap_or(0);
    let early = samples.iter().find(|s| s["t"].as_u64().unwrap_or(0) >= 8_000).expect("a sample at 8 s");
    for chart in ["c-viewers", "c-rates", "c-offload", "c-stall", "c-startup", "c-peers"] {
        assert!(
            points(last, chart) > points(early, chart),
            "{chart}: {} then {}",
            points(early, chart),
            points(last, chart)
        );
    }
    assert!(last["paths"].as_u64().unwrap_or(0) >= 10, "chart lines drawn: {last}");
    // Tiles and the stream table show the audience.
    let viewers: f64 =
        last["tiles"]["t-viewers"].as_str().and_then(|t| t.parse().ok()).expect("viewers tile is a number");
    assert!((9.0..=12.5).contains(&viewers), "11 sessions reporting, tile says {viewers}");
    assert!(last["tiles"]["t-offload"].as_str().is_some_and(|t| t.ends_with('%')), "{}", last["tiles"]);
    let rows = last["streams"].as_array().expect("stream rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], "demo");
    // The protection decision is on the page.
    let decisions = last["decisions"].as_array().expect("decisions");
    assert!(
        decisions.iter().any(|d| d.as_str().is_some_and(|t| t.contains("demo") && t.contains("P2P OFF"))),
        "protection decision shown: {decisions:?}"
    );
    assert!(
        rows[0].as_array().and_then(|r| r.last()).and_then(Value::as_str).is_some_and(|t| t.contains("OFF")),
        "{rows:?}"
    );
    // Screenshots, for a human to look at.
    let shots = result["screenshots"].as_array().expect("screenshots");
    assert_eq!(shots.len(), 2);
    for s in shots {
        let p = std::path::PathBuf::from(s["path"].as_str().expect("path"));
        check_png(&p).expect("a real PNG");
    }
    serve.stop(Duration::from_secs(10)).expect("serve stops");
}

/// Viewers of the second test.
const SDK_VIEWERS: usize = 3;
const SDK_PLAY_MS: u64 = 45_000;

#[test]
fn browser_dashboard_counts_browser_sdk_viewers() {
    use shoal_testkit::browser;

    let dir = TestDir::new("browser_dashboard_sdk").expect("test dir");
    let ns = Netns::new().expect("network namespace");
    let stack = browser_support::start_stack(&ns, &dir, browser_support::LADDER).expect("origin and servers");
    let mut cfg = browser_support::sdk_play_config(
        &stack,
        &dir,
        Duration::from_millis(SDK_PLAY_MS),
        SDK_VIEWERS,
        false,
    )
    .expect("play config");
    for (i, v) in cfg.viewers.iter_mut().enumerate() {
        v.open_at_ms = i as u64 * 2_000;
    }
    let report = browser::play(&ns, &dir, "play", &cfg).expect("pages play");
    let mut sdk = Vec::new();
    for v in &report.viewers {
        let r = browser_support::sdk_report(v).expect("SDK report");
        println!("{}", browser_support::sdk_line(&v.id, &r));
        sdk.push(r);
    }
    let totals = browser_support::Totals::of(&sdk);
    let api = stack.api.trim_end_matches('/').to_owned();
    let get = |path: &str| -> Value {
        let r = shoal_testkit::http::get(Some(&ns), &format!("{api}{path}"), Duration::from_secs(10))
            .expect("GET");
        serde_json::from_str(&r.text()).expect("JSON")
    };
    // The pages' last reports go by beacon as they close: give them a moment.
    let mut figures = Value::Null;
    for _ in 0..20 {
        let w = get("/v1/pingback/windows?last_s=900&step_s=900&by=platform,group");
        figures = w["series"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["key"]["platform"] == "web"))
            .cloned()
            .unwrap_or(Value::Null);
        let startups: u64 = figures["points"]
            .as_array()
            .map_or(0, |p| p.iter().map(|x| x["startup_samples"].as_u64().unwrap_or(0)).sum());
        if startups >= SDK_VIEWERS as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let sum = |k: &str| {
        figures["points"]
            .as_array()
            .map_or(0.0, |p| p.iter().map(|x| x[k].as_f64().unwrap_or(0.0)).sum::<f64>())
    };
    println!(
        "pingback (web): {} reports, http {} B, peers {} B, startup samples {}; SDK totals: http {} B, peers {} B",
        sum("reports"), sum("http_bytes"), sum("p2p_bytes"), sum("startup_samples"), totals.http, totals.p2p
    );
    assert_eq!(figures["key"]["group"], "p2p", "every page was allowed P2P: {figures}");
    assert_eq!(sum("startup_samples") as usize, SDK_VIEWERS, "one startup per page: {figures}");
    assert!(sum("reports") >= (SDK_VIEWERS * 3) as f64, "reports every 10 s from each page: {figures}");
    // Every report covers what the SDK counted up to it; the last one goes by beacon as the
    // page closes (best effort), so pingback has at most the SDK's totals and most of them.
    let (http, peers) = (sum("http_bytes"), sum("p2p_bytes"));
    assert!(
        http <= totals.http as f64 * 1.001 + 1.0 && http >= totals.http as f64 * 0.6,
        "{http} vs {}",
        totals.http
    );
    assert!(peers <= totals.p2p as f64 * 1.001 + 1.0, "{peers} vs {}", totals.p2p);
    assert!(sum("play_ms") > (SDK_VIEWERS as f64) * 20_000.0, "play time seen by the pages: {figures}");

    // The dashboard shows them.
    let cfg = json!({ "url": format!("{api}/dashboard"), "durationMs": 4_000, "screenshotsAtMs": [3_500] });
    let result: Value = run_script(&ns, &dir, "dashboard", "dashboard.mjs", &cfg, Duration::from_secs(90))
        .expect("dashboard");
    assert!(result["error"].is_null(), "{}", result["error"]);
    let last = result["samples"].as_array().and_then(|s| s.last()).cloned().expect("a sample");
    assert!(last["points"]["c-viewers"].as_u64().unwrap_or(0) > 0, "viewers charted: {last}");
    assert!(
        last["streams"].as_array().is_some_and(|r| r.first().and_then(|r| r[0].as_str()) == Some("demo")),
        "{last}"
    );
    for s in result["screenshots"].as_array().expect("screenshots") {
        check_png(std::path::Path::new(s["path"].as_str().expect("path"))).expect("a real PNG");
    }
}
