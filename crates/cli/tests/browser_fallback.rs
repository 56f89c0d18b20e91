//! The player never depends on Shoal: pages whose API is unreachable, and pages whose API
//! answers but whose tracker is down, play the stream from the CDN as smoothly as without the
//! SDK.

mod browser_support;

use std::time::Duration;

use browser_support::{
    assert_plays_smoothly, chromium_feature_args, sdk_init_script, sdk_line, sdk_report, shoal_bin,
    wait_for_segments, web_dist, LADDER, MIN_SEGMENTS,
};
use shoal_testkit::browser::{self, PlayConfig, ServeDir, ViewerSpec};
use shoal_testkit::{Netns, Proc, SyntheticOrigin, TestDir, VETH_ADDR};

const DURATION_MS: u64 = 40_000;

#[test]
fn browser_sdk_plays_from_the_cdn_when_api_or_tracker_are_down() -> anyhow::Result<()> {
    let dir = TestDir::new("browser_sdk_plays_from_the_cdn_when_api_or_tracker_are_down")?;
    let ns = Netns::new()?;
    let origin = SyntheticOrigin::start(shoal_bin(), dir.path(), Some(&ns), "127.0.0.1:0", LADDER)?;
    let (key, master) = (&origin.key, origin.master.clone());
    // An API that answers, with STUN, whose only tracker is a closed port.
    let mut serve = Proc::builder("serve", shoal_bin())
        .env("SHOAL_API_HOLDBACK_PERCENT", "0") // both P2P pages must get P2P: no control group
        .args(["serve", "--roles", "api,stun", "--listen", "127.0.0.1:0"])
        .args(["--stun-listen", &format!("{VETH_ADDR}:0")])
        .args(["--set", "auth.require_token=false", "--set", &format!("api.origin_public_key={key}")])
        .args(["--set", "api.trackers=ws://127.0.0.1:9/v1/tracker"])
        .args(["--set", "tickets.keys=t1:browser-fallback-test-ticket-secret"])
        .netns(&ns)
        .log_dir(dir.path())
        .spawn()?;
    let api = serve.wait_ready("SERVE", Duration::from_secs(30))?.url;
    let first = LADDER.split(':').next().unwrap_or("240p");
    wait_for_segments(&ns, &format!("{}/live/demo/{first}/index.m3u8", origin.url), MIN_SEGMENTS)?;

    let no_api = sdk_init_script(&dir.subdir("no-api")?, serde_json::json!({ "api": "http://127.0.0.1:9" }))?;
    let no_tracker = sdk_init_script(&dir.subdir("no-tracker")?, serde_json::json!({ "api": api }))?;
    let mut cfg = PlayConfig::new(master, Duration::from_millis(DURATION_MS), 0);
    for (id, script, at) in [
        ("noapi0", &no_api, 0),
        ("noapi1", &no_api, 2_000),
        ("notracker0", &no_tracker, 1_000),
        ("notracker1", &no_tracker, 3_000),
    ] {
        cfg.viewers.push(ViewerSpec {
            open_at_ms: at,
            init_scripts: vec![script.clone()],
            ..ViewerSpec::new(id)
        });
    }
    cfg.serve.push(ServeDir { prefix: "/__shoal_test/sdk/".into(), dir: web_dist()? });
    cfg.extra_chromium_args = chromium_feature_args(false);
    let report = browser::play(&ns, &dir, "play", &cfg)?;

    for v in &report.viewers {
        println!("{}", v.one_line());
        let r = sdk_report(v)?;
        println!("  {}", sdk_line(&v.id, &r));
        assert_plays_smoothly(v);
        let (advanced, wall) = v
            .advanced_between(v.first_playing_at_ms.unwrap_or(0.0) + 2_000.0, report.duration_ms - 1_000.0)
            .ok_or_else(|| anyhow::anyhow!("viewer {}: too few samples", v.id))?;
        assert!(
            wall > 20.0 && advanced >= 0.95 * wall,
            "viewer {}: {advanced:.1} s played in {wall:.1} s",
            v.id
        );
        assert_eq!(r.stats.p2p_bytes, 0, "viewer {}: bytes from peers without a tracker", v.id);
        assert!(r.stats.http_bytes > 0 && r.stats.segments > 10, "viewer {}: too little played", v.id);
        if v.id.starts_with("noapi") {
            assert!(!r.stats.p2p, "viewer {}: P2P on without an API", v.id);
            assert_eq!(r.stats.p2p_reason.as_deref(), Some("api_unreachable"), "viewer {}", v.id);
            assert_eq!(
                r.stats.direct_loads, r.stats.segments,
                "viewer {}: every segment through hls.js's loader",
                v.id
            );
        } else {
            // Joined, engine running, no peers: the engine itself fetches from the CDN.
            assert!(r.stats.p2p, "viewer {}: P2P off ({:?})", v.id, r.stats.p2p_reason);
            assert_eq!(r.stats.peers, 0, "viewer {}: peers without a tracker", v.id);
            assert_eq!(r.stats.fallbacks, 0, "viewer {}: the engine failed to deliver", v.id);
            assert!(
                r.stats.engine_u64("delivered") >= 10,
                "viewer {}: the engine delivered too little",
                v.id
            );
            assert_eq!(r.stats.verify_failures, 0, "viewer {}", v.id);
        }
    }
    Ok(())
}
