//! Automatic protection, scripted through `shoal serve` (api + tracker + pingback) with short
//! windows: 40 sessions join (half held back), then report every second. While the P2P
//! sessions stall and the control sessions do not, protection switches P2P off for new
//! sessions of the stream (except the probe group), logs the decision and shows it in the
//! summary and /metrics; once every session plays smoothly again it switches P2P back on after
//! its minimum off time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_pingback::policy::group_point;
use shoal_proto::manifest::key_to_b64;
use shoal_proto::SigningKey;
use shoal_testkit::{Proc, TestDir};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const HOLDBACK: f64 = 50.0;
const PROBE: f64 = 10.0;
const SESSIONS: usize = 40;

#[derive(Clone)]
struct Session {
    id: String,
    ticket: String,
    p2p: bool,
    reason: Option<String>,
}

async fn join(http: &reqwest::Client, base: &str) -> (Value, Session) {
    let r = http.post(format!("{base}/v1/join")).json(&json!({"stream": "demo"})).send().await.expect("join");
    assert_eq!(r.status(), 200);
    let j: Value = r.json().await.expect("join json");
    let s = Session {
        id: j["session_id"].as_str().expect("session").to_owned(),
        ticket: j["ticket"].as_str().expect("ticket").to_owned(),
        p2p: j["p2p"] == true,
        reason: j["p2p_reason"].as_str().map(str::to_owned),
    };
    (j, s)
}

/// What a join must answer, by the documented group function.
fn expected(session: &str, protected: bool) -> &'static str {
    let u = group_point(session);
    if u < HOLDBACK {
        "holdback"
    } else if !protected || u < HOLDBACK + PROBE {
        "p2p"
    } else {
        "protection"
    }
}

async fn decisions(http: &reqwest::Client, base: &str) -> Value {
    http.get(format!("{base}/v1/pingback/decisions"))
        .send()
        .await
        .expect("decisions")
        .json()
        .await
        .expect("json")
}

async fn wait_for_action(
    http: &reqwest::Client,
    base: &str,
    action: &str,
    n: usize,
    limit: Duration,
) -> Value {
    let until = Instant::now() + limit;
    loop {
        let d = decisions(http, base).await;
        let count =
            d["decisions"].as_array().map_or(0, |v| v.iter().filter(|x| x["action"] == action).count());
        if count >= n {
            return d;
        }
        assert!(Instant::now() < until, "no `{action}` decision within {limit:?}: {d}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_switches_p2p_off_and_back_on() {
    let dir = TestDir::new("pingback_protection").expect("test dir");
    let key = key_to_b64(SigningKey::from_bytes(&[9u8; 32]).verifying_key().as_bytes());
    let mut serve = Proc::builder("serve", SHOAL)
        .args(["serve", "--roles", "api,tracker,pingback", "--listen", "127.0.0.1:0"])
        .args(["--set", "auth.require_token=false", "--set", &format!("api.origin_public_key={key}")])
        .args(["--set", &format!("api.holdback_percent={HOLDBACK}")])
        .args(["--set", "api.rate_limit.per_second=100000", "--set", "api.rate_limit.burst=100000"])
        .args(["--set", "pingback.window_s=1", "--set", "pingback.interval_ms=1000"])
        .args(["--set", "pingback.protection.eval_window_s=6"])
        .args([
            "--set",
            "pingback.protection.min_p2p_watch_s=30",
            "--set",
            "pingback.protection.min_control_watch_s=30",
        ])
        .args([
            "--set",
            "pingback.protection.trip_evaluations=2",
            "--set",
            "pingback.protection.recover_evaluations=2",
        ])
        .args(["--set", "pingback.protection.min_off_s=8", "--set", "pingback.protection.max_off_s=300"])
        .args(["--set", &format!("pingback.protection.probe_percent={PROBE}")])
        .env("RUST_LOG", "info")
        .log_dir(dir.path())
        .spawn()
        .expect("spawn shoal serve");
    let base = serve
        .wait_ready("SERVE", Duration::from_secs(60))
        .expect("ready")
        .url
        .trim_end_matches('/')
        .to_owned();
    let http = reqwest::Client::new();

    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        let (_, s) = join(&http, &base).await;
        assert_eq!(if s.p2p { "p2p" } else { s.reason.as_deref().unwrap_or("?") }, expected(&s.id, false));
        sessions.push(s);
    }
    let p2p_n = sessions.iter().filter(|s| s.p2p).count();
    assert!((8..=32).contains(&p2p_n), "both groups well represented: {p2p_n} P2P of {SESSIONS}");

    // Every second, every session reports; `bad`: P2P sessions stall 300 ms per second.
    let bad = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let reporter = {
        let (http, base, bad, stop, sessions) =
            (http.clone(), base.clone(), bad.clone(), stop.clone(), sessions.clone());
        tokio::spawn(async move {
            let mut seq = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            // Bounded: at most 5 minutes of reports.
            for _ in 0..300 {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    return seq;
                }
                seq += 1;
                let stalling = bad.load(Ordering::Relaxed);
                let reports: Vec<Value> = sessions
                    .iter()
                    .map(|s| {
                        let (stalls, stall_ms) = if s.p2p && stalling { (1, 300) } else { (0, 0) };
                        json!({
                            "session_id": s.id, "ticket": s.ticket, "seq": seq, "stream": "demo", "rendition": "720p",
                            "p2p": s.p2p, "p2p_reason": s.reason, "platform": "test", "sdk": "script", "sdk_version": "1",
                            "period_ms": if seq == 1 { 0 } else { 1000 }, "http_bytes": 100_000, "play_ms": 1000 - stall_ms,
                            "stall_ms": stall_ms, "stalls": stalls,
                        })
                    })
                    .collect();
                for chunk in reports.chunks(8) {
                    let r = http
                        .post(format!("{base}/v1/pingback"))
                        .body(serde_json::to_vec(chunk).expect("json"))
                        .send()
                        .await;
                    let status = r.map(|r| r.status().as_u16()).unwrap_or(0);
                    assert_eq!(status, 200, "reports accepted");
                }
            }
            seq
        })
    };

    // P2P switched off for the stream.
    let t0 = Instant::now();
    let d = wait_for_action(&http, &base, "off", 1, Duration::from_secs(30)).await;
    let off = &d["decisions"][0];
    println!("off after {:?}: {}", t0.elapsed(), off["reason"]);
    assert_eq!(off["stream"], "demo");
    assert_eq!(off["locality"], "");
    assert_eq!(off["evidence"]["sufficient"], true);
    assert!(off["evidence"]["p_value"].as_f64().is_some_and(|p| p < 0.01), "{off}");
    let excess = off["evidence"]["p2p_stall_ratio"].as_f64().unwrap_or(0.0)
        - off["evidence"]["control_stall_ratio"].as_f64().unwrap_or(1.0);
    assert!(excess > 0.0005, "{off}");
    // New sessions: control group as before, the probe slice keeps P2P, the rest is protected.
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for _ in 0..200 {
        let (_, s) = join(&http, &base).await;
        let got = if s.p2p { "p2p" } else { s.reason.as_deref().unwrap_or("?") };
        assert_eq!(got, expected(&s.id, true), "session {}", s.id);
        *seen.entry(got.to_owned()).or_default() += 1;
    }
    println!("joins while off: {seen:?}");
    assert!(seen.get("protection").copied().unwrap_or(0) > 40, "{seen:?}");
    // The summary shows complete windows only (settled for one report interval + 2 s).
    let mut summary = Value::Null;
    for _ in 0..40 {
        summary = http
            .get(format!("{base}/v1/pingback/summary"))
            .send()
            .await
            .expect("summary")
            .json()
            .await
            .expect("json");
        if summary["streams"].as_array().is_some_and(|s| !s.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(summary["streams"][0]["p2p_on"], false, "the dashboard shows P2P off: {summary}");
    assert_eq!(summary["decisions"][0]["action"], "off");

    // Everyone plays smoothly again: back on after min_off_s and two clean evaluations.
    bad.store(false, Ordering::Relaxed);
    let t1 = Instant::now();
    let d = wait_for_action(&http, &base, "on", 1, Duration::from_secs(60)).await;
    let on = &d["decisions"][0];
    println!("on after {:?}: {}", t1.elapsed(), on["reason"]);
    assert!(on["reason"].as_str().is_some_and(|r| r.starts_with("recovered")), "{on}");
    let off_at = off["at_ms"].as_u64().expect("at_ms");
    assert!(on["at_ms"].as_u64().expect("at_ms") >= off_at + 8_000, "min_off_s respected");
    for _ in 0..50 {
        let (_, s) = join(&http, &base).await;
        let got = if s.p2p { "p2p" } else { s.reason.as_deref().unwrap_or("?") };
        assert_eq!(got, expected(&s.id, false), "P2P is back for new sessions");
    }
    stop.store(true, Ordering::Relaxed);
    let sent = reporter.await.expect("reporter");
    assert!(sent > 10, "{sent} rounds of reports");

    let text = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    for action in ["off", "on"] {
        let line = format!("shoal_pingback_protection_decisions_total{{action=\"{action}\"}} 1");
        assert!(text.contains(&line), "{line} in /metrics");
    }
    let log = std::fs::read_to_string(dir.join("serve.stderr.log")).expect("serve log");
    let logged: Vec<&str> = log.lines().filter(|l| l.contains("pingback protection")).collect();
    assert_eq!(logged.len(), 2, "both decisions are logged: {logged:?}");
    assert!(
        logged[0].contains("stall more than the control group") && logged[1].contains("recovered"),
        "{logged:?}"
    );
}
