//! Real browsers in one swarm: headless Chromium pages playing Shoal's synthetic live stream
//! through hls.js with the browser SDK (web/dist), inside a network namespace with only
//! loopback and the test's veth pair, against `shoal origin` and `shoal serve`.

mod browser_support;

use std::time::Duration;

use browser_support::{sdk_line, sdk_play_config, sdk_report, start_stack, SdkReport, Totals, LADDER};
use shoal_testkit::browser::{self, ViewerSpec};
use shoal_testkit::{Netns, TestDir};

/// Pages that play from start to end.
const STAYING: usize = 6;
/// The leaver opens with the others and closes at this time.
const LEAVER_CLOSES_MS: u64 = 45_000;
const DURATION_MS: u64 = 80_000;
/// Pages open one every this many ms (a live audience does not arrive in one instant).
const STAGGER_MS: u64 = 2_000;
/// Share of segment bytes the swarm took from peers, counted by the SDKs. The bound for six
/// viewers is 1 − 1/6 ≈ 0.83 (one CDN copy per segment); start-up segments come from the CDN
/// and the first pages join an empty swarm, so this run reaches about 0.75 (see
/// docs/benchmarks.md, "Browser swarm").
const SHARE_FLOOR: f64 = 0.55;

#[test]
fn browser_swarm_pages_share_segments_and_play_smoothly() -> anyhow::Result<()> {
    let dir = TestDir::new("browser_swarm_pages_share_segments_and_play_smoothly")?;
    let ns = Netns::new()?;
    let stack = start_stack(&ns, &dir, LADDER)?;
    let mut cfg = sdk_play_config(&stack, &dir, Duration::from_millis(DURATION_MS), STAYING, false)?;
    for (i, v) in cfg.viewers.iter_mut().enumerate() {
        v.open_at_ms = i as u64 * STAGGER_MS;
    }
    cfg.viewers.push(ViewerSpec {
        open_at_ms: STAYING as u64 * STAGGER_MS,
        close_at_ms: Some(LEAVER_CLOSES_MS),
        ..ViewerSpec::new("leaver")
    });
    cfg.viewer_mut("v0").expect("v0 exists").screenshots_at_ms = vec![60_000];
    let report = browser::play(&ns, &dir, "play", &cfg)?;

    let mut reports: Vec<(String, SdkReport)> = Vec::new();
    for v in &report.viewers {
        println!("{}", v.one_line());
        let r = sdk_report(v)?;
        println!("  {}", sdk_line(&v.id, &r));
        reports.push((v.id.clone(), r));
    }

    // Every page plays: started, no stall or error after startup, time advancing in real time.
    for v in &report.viewers {
        browser_support::assert_plays_smoothly(v);
        let start = v.first_playing_at_ms.expect("assert_plays_smoothly checks startup");
        let end = v.closed_at_ms.unwrap_or(report.duration_ms) - 1_000.0;
        let (advanced, wall) = v
            .advanced_between(start + 2_000.0, end)
            .ok_or_else(|| anyhow::anyhow!("viewer {}: too few samples", v.id))?;
        assert!(wall > 20.0, "viewer {} watched only {wall:.1} s", v.id);
        assert!(
            advanced >= 0.95 * wall,
            "viewer {}: currentTime advanced {advanced:.1} s in {wall:.1} s",
            v.id
        );
        let frame = v.frame.or_else(|| v.screenshots.last().and_then(|s| s.frame));
        let frame = frame.ok_or_else(|| anyhow::anyhow!("viewer {}: no frame captured", v.id))?;
        assert!(frame.distinct_colours > 8, "viewer {}: blank frame {frame:?}", v.id);
    }

    // Closing a page mid-way stalled nobody (checked above for every page, including the time
    // after the leaver closed) and the others did play past it.
    let leaver = report.viewer("leaver")?;
    assert!(
        leaver.closed_at_ms.is_some_and(|t| t < DURATION_MS as f64 - 20_000.0),
        "the leaver closed mid-way"
    );
    for v in report.viewers.iter().filter(|v| v.id != "leaver") {
        let (advanced, wall) = v
            .advanced_between(LEAVER_CLOSES_MS as f64 + 1_000.0, report.duration_ms - 1_000.0)
            .ok_or_else(|| anyhow::anyhow!("viewer {}: no samples after the leaver closed", v.id))?;
        assert!(
            advanced >= 0.95 * wall,
            "viewer {} slowed after the leaver closed: {advanced:.1} s in {wall:.1} s",
            v.id
        );
    }

    // P2P ran everywhere and the swarm shared.
    for (id, r) in &reports {
        assert!(r.stats.p2p, "viewer {id}: P2P off ({:?})", r.stats.p2p_reason);
        assert!(r.stats.p2p_bytes > 0, "viewer {id} received nothing from peers");
    }
    let uploaders = reports.iter().filter(|(_, r)| r.stats.upload_bytes > 0).count();
    assert!(uploaders >= STAYING / 2, "only {uploaders} pages uploaded");
    let totals = Totals::of(&reports.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>());
    let share = totals.share();
    // Cross-check with what Chromium saw go over HTTP (segments and manifests) against what
    // hls.js consumed.
    let consumed: u64 = report.viewers.iter().map(|v| v.frag_bytes).sum();
    let over_http: u64 = report.viewers.iter().map(|v| v.http.media_bytes).sum();
    let browser_offload = 1.0 - over_http as f64 / consumed.max(1) as f64;
    println!(
        "swarm: share from peers {share:.3} (SDK: {} B from peers, {} B from the CDN, {} B of manifests); \
         Chromium: {over_http} B of segments+manifests over HTTP for {consumed} B consumed, offload {browser_offload:.3}; floor {SHARE_FLOOR}",
        totals.p2p, totals.http, totals.manifest
    );
    assert!(share >= SHARE_FLOOR, "share from peers {share:.3} below the floor {SHARE_FLOOR}");
    assert!(
        browser_offload >= SHARE_FLOOR - 0.05,
        "offload seen by Chromium {browser_offload:.3} is below the floor"
    );
    let uploaded = totals.upload as f64;
    assert!(
        (uploaded - totals.p2p as f64).abs() <= 0.25 * totals.p2p as f64 + 2_000_000.0,
        "bytes uploaded ({}) and received from peers ({}) disagree",
        totals.upload,
        totals.p2p
    );

    // Verification: nothing failed, every segment from peers was verified before the player
    // got it, and every segment the engine delivered was checked against the signed entries.
    for (id, r) in &reports {
        assert_eq!(r.stats.verify_failures, 0, "viewer {id}: verification failures");
        assert_eq!(r.stats.peers_banned, 0, "viewer {id}: peers banned");
        for s in &r.segments {
            if s.source != "cdn" {
                assert!(s.verified, "viewer {id}: segment {} from {} unverified", s.seq, s.source);
            }
        }
        let delivered = r.stats.engine_u64("delivered");
        assert!(delivered > 0, "viewer {id}: the engine delivered nothing");
        assert!(
            r.stats.segments_verified >= delivered,
            "viewer {id}: {} of {delivered} engine deliveries verified",
            r.stats.segments_verified
        );
        // hls.js's own loader ran only at start-up, before P2P started, never as a fallback.
        assert_eq!(r.stats.fallbacks, 0, "viewer {id}: the SDK fell back to the CDN");
        let started = r.p2p_started_at_ms().ok_or_else(|| anyhow::anyhow!("viewer {id}: no p2p event"))?;
        // (A load hls.js started just before may complete a little after.)
        for s in r.segments.iter().filter(|s| s.direct) {
            assert!(
                s.at_ms <= started + 3_000.0,
                "viewer {id}: segment {} loaded directly at {:.0} ms, P2P started at {started:.0} ms",
                s.seq,
                s.at_ms
            );
        }
        let mut seqs: Vec<u64> = r.segments.iter().map(|s| s.seq).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), r.segments.len(), "viewer {id}: a segment was handed over twice in a row");
    }
    Ok(())
}
