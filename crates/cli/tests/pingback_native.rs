//! Pingback with real SDK clients: native peers (`shoal play --headless`) in one swarm report
//! every 2 s to the pingback role of `shoal serve`; what pingback aggregated equals what the
//! peers themselves counted (their final summaries), per field, and shows up in the queries,
//! the summary and `/metrics`.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use shoal_testkit::{Proc, TestDir};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const PEERS: usize = 4;
const RUN_S: u64 = 40;

struct Stack {
    _origin: Proc,
    _serve: Proc,
    master: String,
    api: String,
}

fn start_stack(dir: &std::path::Path) -> Result<Stack> {
    let mut origin = Proc::builder("origin", SHOAL)
        .args(["origin", "--synthetic", "--listen", "127.0.0.1:0", "--ladder", "360p:640x360@1200"])
        .log_dir(dir)
        .spawn()?;
    let key_line = origin.wait_for_line(|l| l.starts_with("SHOAL_ORIGIN_KEY "), Duration::from_secs(60))?;
    let key = key_line.split_whitespace().nth(1).ok_or_else(|| anyhow!("no key in {key_line:?}"))?.to_owned();
    let ready = origin.wait_ready("ORIGIN", Duration::from_secs(60))?;
    let base = ready.url.trim_end_matches('/').to_owned();
    let master = ready.fields.get(1).cloned().context("origin READY line without the master URL")?;
    let mut serve = Proc::builder("serve", SHOAL)
        .env("SHOAL_API_HOLDBACK_PERCENT", "0") // every viewer in the swarm: no control group
        .args(["serve", "--listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0"])
        .args(["--set", "auth.require_token=false", "--set", &format!("api.origin_public_key={key}")])
        .args(["--set", &format!("api.cdn=[\"{base}/live/{{stream}}/\"]")])
        .args(["--set", "pingback.interval_ms=2000", "--set", "pingback.window_s=1"])
        .env("RUST_LOG", "info")
        .log_dir(dir)
        .spawn()?;
    let ready = serve.wait_ready("SERVE", Duration::from_secs(60))?;
    Ok(Stack { _origin: origin, _serve: serve, master, api: ready.url.trim_end_matches('/').to_owned() })
}

/// GET a body on a small runtime of its own (the test itself is synchronous).
fn get(url: &str) -> Result<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let r = reqwest::Client::new().get(url).timeout(Duration::from_secs(10)).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    })
}

fn get_json(url: &str) -> Result<Value> {
    let (status, body) = get(url)?;
    anyhow::ensure!(status == 200, "{url}: HTTP {status}: {body}");
    Ok(serde_json::from_str(&body)?)
}

fn u(v: &Value, path: &[&str]) -> f64 {
    path.iter().fold(v, |x, k| &x[*k]).as_f64().unwrap_or(0.0)
}

#[test]
fn native_peers_report_and_pingback_adds_up_to_what_they_counted() {
    let dir = TestDir::new("pingback_native").expect("test dir");
    let stack = start_stack(dir.path()).expect("origin and servers");
    let mut peers = Vec::new();
    for i in 0..PEERS {
        let mut p = Proc::builder(&format!("peer{i}"), SHOAL)
            .args([
                "play",
                &stack.master,
                "--headless",
                "--duration",
                &RUN_S.to_string(),
                "--status-every",
                "0",
            ])
            .args(["--api", &stack.api, "--udp", "127.0.0.1:0"])
            .env("RUST_LOG", "info,str0m=warn,shoal_peer=debug")
            .log_dir(dir.path())
            .spawn()
            .expect("peer starts");
        p.wait_ready("PLAY", Duration::from_secs(30)).expect("peer ready");
        peers.push(p);
        std::thread::sleep(Duration::from_millis(500));
    }
    // Live figures while they play: viewers in the newest complete windows.
    std::thread::sleep(Duration::from_secs(20));
    let live = get_json(&format!("{}/v1/pingback/summary", stack.api)).expect("summary");
    let viewers_now = u(&live, &["totals", "viewers"]);
    assert!(
        (PEERS as f64 - 0.6..=PEERS as f64 + 0.6).contains(&viewers_now),
        "{PEERS} peers playing, pingback counts {viewers_now} viewers: {}",
        live["totals"]
    );
    assert_eq!(live["streams"][0]["stream"], "demo", "{}", live["streams"]);

    let mut sums = Vec::new();
    for p in &mut peers {
        let line = p
            .wait_for_line(|l| l.starts_with("SHOAL_PLAY_SUMMARY "), Duration::from_secs(RUN_S + 40))
            .expect("summary line");
        let s: Value =
            serde_json::from_str(line.trim_start_matches("SHOAL_PLAY_SUMMARY ")).expect("summary JSON");
        sums.push(s);
    }
    // Every peer has sent its last report before printing its summary.
    let total = |path: &[&str]| sums.iter().map(|s| u(s, path)).sum::<f64>();
    let answer =
        get_json(&format!("{}/v1/pingback/windows?last_s=600&step_s=600&by=group,stream", stack.api))
            .expect("windows");
    let series = answer["series"].as_array().expect("series").clone();
    assert_eq!(series.len(), 1, "one stream, every session in the P2P group: {answer}");
    assert_eq!(series[0]["key"]["group"], "p2p");
    let agg = |k: &str| series[0]["points"].as_array().map_or(0.0, |p| p.iter().map(|x| u(x, &[k])).sum());
    let mut report = String::new();
    let mut check = |what: &str, got: f64, want: f64, slack: f64| {
        report.push_str(&format!("{what}: pingback {got:.0}, peers {want:.0}\n"));
        (got - want).abs() <= slack
    };
    // The last report is made from counters a moment before the client's final summary; a
    // peer may still upload or receive a little in between.
    let segment = 1200.0 * 1000.0 / 8.0 * 2.0;
    let mut ok = true;
    let http = total(&["stats", "http_bytes"]);
    let down = total(&["stats", "p2p_down_bytes"]);
    let up = total(&["stats", "p2p_up_bytes"]);
    ok &= check("http bytes", agg("http_bytes"), http, 0.03 * http + segment);
    ok &= check("peer bytes down", agg("p2p_bytes"), down, 0.03 * down + segment);
    ok &= check("peer bytes up", agg("upload_bytes"), up, 0.03 * up + 2.0 * segment);
    ok &= check(
        "wasted bytes",
        agg("wasted_bytes"),
        total(&["stats", "wasted_bytes"]),
        0.05 * (http + down) + segment,
    );
    ok &= check(
        "segments verified",
        agg("segments_verified"),
        total(&["stats", "segments_verified"]),
        PEERS as f64,
    );
    ok &= check("stalls", agg("stalls"), total(&["headless", "stalls"]), 0.0);
    let played_ms = total(&["headless", "played_s"]) * 1000.0;
    ok &= check("play ms", agg("play_ms"), played_ms, 0.02 * played_ms + 1_000.0);
    ok &= check("startup samples", agg("startup_samples"), PEERS as f64, 0.0);
    ok &=
        check("connects opened", agg("connects_opened"), total(&["stats", "connects_opened"]), PEERS as f64);
    let reports = agg("reports");
    ok &= check("reports", reports, (PEERS as u64 * RUN_S / 2) as f64, PEERS as f64 * 4.0);
    println!("{report}");
    std::fs::write(dir.join("result.txt"), &report).expect("write result");
    assert!(ok, "pingback does not add up to the peers' own counts:\n{report}");
    assert!(down > 0.0, "the peers shared nothing: the test proves little\n{report}");

    // Per-window figures: offload and peers per viewer are sane in the middle of the run.
    let w = get_json(&format!("{}/v1/pingback/windows?last_s=600&by=", stack.api)).expect("windows");
    let points = w["series"][0]["points"].as_array().expect("points").clone();
    let complete: Vec<&Value> =
        points.iter().filter(|p| p["complete"] == true && u(p, &["viewers"]) > 3.5).collect();
    assert!(complete.len() >= 10, "at least 10 one-second windows with all peers: {}", complete.len());
    assert!(complete.iter().any(|p| u(p, &["offload"]) > 0.0 && u(p, &["peers_per_viewer"]) >= 1.0));

    // Prometheus on the same listener.
    let (_, text) = get(&format!("{}/metrics", stack.api)).expect("metrics");
    let accepted = text
        .lines()
        .find(|l| l.starts_with("shoal_pingback_reports_total{outcome=\"accepted\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("shoal_pingback_reports_total accepted");
    assert_eq!(accepted, reports, "every accepted report is counted once in /metrics");
    assert!(text.contains("shoal_pingback_viewers{"), "viewer gauge exported");
}
