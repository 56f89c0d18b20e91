//! `shoal demo` as a newcomer meets it: the page at its root URL plays the live stream in two
//! headless-Chromium tabs next to two headless native peers, the figures on the page show the
//! share from peers rising, and the pingback dashboard counts the viewers. Screenshots go to
//! `target/test-output/browser_demo/tabs/`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_testkit::browser::{check_png, run_script};
use shoal_testkit::{Netns, Proc, TestDir, VETH_ADDR};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const WATCH_MS: u64 = 60_000;

#[derive(Deserialize, Debug)]
struct Sample {
    t: u64,
    #[serde(rename = "currentTime")]
    current_time: f64,
    share: String,
    peers: String,
    status: String,
    waits: Vec<u64>,
}

#[derive(Deserialize, Debug)]
struct Tab {
    samples: Vec<Sample>,
    stalls: u32,
    #[serde(rename = "consoleErrors")]
    console_errors: Vec<String>,
    screenshot: Option<String>,
}

#[derive(Deserialize, Debug)]
struct Run {
    tabs: Vec<Tab>,
    error: Option<String>,
}

fn percent(s: &str) -> Option<f64> {
    s.trim().strip_suffix('%')?.trim().parse::<f64>().ok().map(|p| p / 100.0)
}

#[test]
fn browser_demo_page_plays_and_shares_with_native_peers() -> anyhow::Result<()> {
    let dir = TestDir::new("browser_demo")?;
    let ns = Netns::new()?;
    let stun = format!("{VETH_ADDR}:0");
    let mut demo = Proc::builder("demo", SHOAL)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--stun-listen",
            &stun,
            "--peers",
            "2",
            "--duration",
            "240",
            // Every viewer in the swarm: the default 5 % control group would make the share random.
            "--holdback-percent",
            "0",
        ])
        .netns(&ns)
        .log_dir(dir.path())
        .spawn()?;
    let ready = demo.wait_ready("DEMO", Duration::from_secs(120))?;
    let field = |k: &str| -> anyhow::Result<String> {
        ready
            .fields
            .iter()
            .find_map(|f| f.strip_prefix(&format!("{k}=")).map(str::to_owned))
            .ok_or_else(|| anyhow::anyhow!("no {k}= in {:?}", ready.line))
    };
    let api = field("api")?;

    let run: Run = run_script(
        &ns,
        &dir,
        "tabs",
        "demo-page.mjs",
        &json!({ "url": ready.url, "tabs": 2, "durationMs": WATCH_MS, "tabGapMs": 4000 }),
        Duration::from_secs(240),
    )?;
    assert!(run.error.is_none(), "runner error: {:?}", run.error);
    assert_eq!(run.tabs.len(), 2);
    let mut best_share = 0.0f64;
    for (i, tab) in run.tabs.iter().enumerate() {
        let last = tab.samples.last().ok_or_else(|| anyhow::anyhow!("tab {i}: no samples"))?;
        let early = tab.samples.iter().find(|s| s.t >= 10_000).unwrap_or(&tab.samples[0]);
        let advanced = last.current_time - early.current_time;
        println!(
            "tab {i}: {:.1} s played in the last {:.1} s, share {}, peers {}, status {:?}, waits {:?}",
            advanced,
            (last.t - early.t) as f64 / 1000.0,
            last.share,
            last.peers,
            last.status,
            last.waits
        );
        assert!(
            advanced >= (last.t - early.t) as f64 / 1000.0 - 3.0,
            "tab {i}: video advanced {advanced:.1} s in {} ms",
            last.t - early.t
        );
        assert_eq!(tab.stalls, 0, "tab {i} stalled (waits {:?})", last.waits);
        assert!(last.peers.trim().parse::<u32>().unwrap_or(0) >= 1, "tab {i}: no peer connected");
        best_share = best_share.max(percent(&last.share).unwrap_or(0.0));
        let shot = tab.screenshot.as_deref().ok_or_else(|| anyhow::anyhow!("tab {i}: no screenshot"))?;
        check_png(std::path::Path::new(shot))?;
        assert!(
            tab.console_errors.iter().all(|e| !e.contains("pageerror")),
            "tab {i}: {:?}",
            tab.console_errors
        );
    }
    // Four viewers (two tabs, two native peers): the bound is 75 %.
    assert!(best_share >= 0.25, "share from peers on the page only reached {best_share:.3}");

    // The dashboard's figures come from the same viewers' reports.
    let resp =
        shoal_testkit::http::get(Some(&ns), &format!("{api}/v1/pingback/summary"), Duration::from_secs(10))?;
    let summary: Value = serde_json::from_slice(&resp.body)?;
    let stream = summary["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["stream"] == "demo"))
        .ok_or_else(|| anyhow::anyhow!("the dashboard does not list the demo stream"))?;
    let recent = &stream["recent"];
    println!(
        "pingback, last 5 minutes: offload {} viewers {} stalls {}",
        recent["offload"], recent["viewers"], recent["stalls"]
    );
    assert!(recent["offload"].as_f64().unwrap_or(0.0) >= 0.25, "dashboard offload {}", recent["offload"]);
    assert_eq!(recent["stalls"].as_f64(), Some(0.0), "the dashboard counted stalls");
    demo.stop(Duration::from_secs(10))?;
    Ok(())
}
