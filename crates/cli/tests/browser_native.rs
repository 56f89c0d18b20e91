//! Browser and native peers in one swarm: Chromium pages with the browser SDK and a native
//! `shoal play --headless` exchange segments in both directions. Chromium runs as real
//! viewers' browsers do, hiding its host addresses behind mDNS names the native peer cannot
//! resolve, so the pairs connect through what Shoal's STUN server tells each side.

mod browser_support;

use std::time::Duration;

use anyhow::{anyhow, Context};
use browser_support::{sdk_line, sdk_play_config, sdk_report, shoal_bin, start_stack, LADDER};
use shoal_testkit::browser;
use shoal_testkit::{Netns, Proc, TestDir};

const PAGES: usize = 3;
const DURATION_MS: u64 = 70_000;

#[test]
fn browser_native_mixed_swarm_exchanges_both_ways_with_mdns_hiding() -> anyhow::Result<()> {
    let dir = TestDir::new("browser_native_mixed_swarm_exchanges_both_ways_with_mdns_hiding")?;
    let ns = Netns::new()?;
    let stack = start_stack(&ns, &dir, LADDER)?;

    // The native peer joins first and keeps playing until the pages are done.
    let mut native = Proc::builder("native", shoal_bin())
        .args(["play", "--headless", "--api", &stack.api, "--status-every", "5"])
        .arg(&stack.master)
        .env("RUST_LOG", "info")
        .netns(&ns)
        .log_dir(dir.path())
        .spawn()?;
    native.wait_ready("PLAY", Duration::from_secs(30))?;

    let mut cfg = sdk_play_config(&stack, &dir, Duration::from_millis(DURATION_MS), PAGES, true)?;
    for (i, v) in cfg.viewers.iter_mut().enumerate() {
        v.open_at_ms = 2_000 + i as u64 * 2_000;
    }
    let report = browser::play(&ns, &dir, "play", &cfg)?;

    native.stop(Duration::from_secs(15))?;
    let summary = native.wait_for_line(|l| l.starts_with("SHOAL_PLAY_SUMMARY "), Duration::from_secs(5))?;
    let summary: serde_json::Value = serde_json::from_str(summary.trim_start_matches("SHOAL_PLAY_SUMMARY "))
        .context("parsing the native summary")?;
    let nstats = summary.get("stats").ok_or_else(|| anyhow!("native summary without stats: {summary}"))?;
    let num = |k: &str| nstats.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let native_id = nstats.get("peer_id").and_then(|v| v.as_str()).unwrap_or("").to_string();
    println!(
        "native {native_id}: p2p {}, from peers {} B, to peers {} B, from CDN {} B, verify failures {}, headless {}",
        nstats.get("p2p").unwrap_or(&serde_json::Value::Null),
        num("p2p_down_bytes"),
        num("p2p_up_bytes"),
        num("http_bytes"),
        num("verify_failures"),
        summary.get("headless").unwrap_or(&serde_json::Value::Null)
    );

    let mut pages_with_native = 0;
    let mut page_down = 0u64;
    let mut page_up = 0u64;
    for v in &report.viewers {
        println!("{}", v.one_line());
        let r = sdk_report(v)?;
        println!("  {}", sdk_line(&v.id, &r));
        browser_support::assert_plays_smoothly(v);
        assert!(r.stats.p2p, "viewer {}: P2P off ({:?})", v.id, r.stats.p2p_reason);
        assert_eq!(r.stats.verify_failures, 0, "viewer {}: verification failures", v.id);
        for s in r.segments.iter().filter(|s| s.source != "cdn") {
            assert!(s.verified, "viewer {}: segment {} from {} unverified", v.id, s.seq, s.source);
        }
        let met_native = r.events.iter().any(|e| {
            e.get("kind").and_then(|k| k.as_str()) == Some("peerConnected")
                && e.get("peerId").and_then(|p| p.as_str()) == Some(native_id.as_str())
        });
        if met_native {
            pages_with_native += 1;
        }
        page_down += r.stats.p2p_bytes;
        page_up += r.stats.upload_bytes;
    }

    assert!(!native_id.is_empty(), "the native peer did not join: {summary}");
    assert!(nstats.get("p2p").and_then(|v| v.as_bool()) == Some(true), "native P2P off: {summary}");
    assert!(pages_with_native >= 1, "no page opened a DataChannel with the native peer {native_id}");
    // One native peer among browsers: whatever it received came from a browser, whatever it
    // sent went to one.
    assert!(num("p2p_down_bytes") > 0, "browser -> native: the native peer received nothing from peers");
    assert!(num("p2p_up_bytes") > 0, "native -> browser: the native peer sent nothing to peers");
    assert_eq!(num("verify_failures"), 0, "native verification failures");
    assert!(page_down > 0 && page_up > 0, "pages exchanged nothing ({page_down} B in, {page_up} B out)");
    if let Some(h) = summary.get("headless") {
        let stalls = h.get("stalls").and_then(|v| v.as_u64()).unwrap_or(0);
        let bad = h.get("checked_bad").and_then(|v| v.as_u64()).unwrap_or(0);
        assert_eq!(bad, 0, "the native player got segments that do not match their signed entries");
        assert_eq!(stalls, 0, "the native player stalled: {h}");
    }
    Ok(())
}
