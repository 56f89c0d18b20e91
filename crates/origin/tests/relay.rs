//! Relay mode: a second origin pulls the first one's master playlist and republishes it under
//! the same sequence numbers, byte-identical segments, signed with its own key.

mod common;

use std::time::Duration;

use common::*;
use shoal_origin::{OriginConfig, RelayConfig, RenditionConfig};
use shoal_proto::manifest::{verifying_key_from_b64, SignedManifest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_of_a_second_origin() {
    let mut a_cfg = OriginConfig { stream: "src".into(), window: 5, ..Default::default() };
    a_cfg.synthetic.enabled = true;
    a_cfg.synthetic.segment_duration_s = 1.0;
    a_cfg.synthetic.renditions = vec![
        RenditionConfig { name: "low".into(), width: 192, height: 108, bitrate_kbps: 200 },
        RenditionConfig { name: "mid".into(), width: 320, height: 180, bitrate_kbps: 400 },
    ];
    let a = start(a_cfg).await;
    assert!(a.origin.wait_synthetic_ready(Duration::from_secs(30)).await);

    let mut b_cfg = OriginConfig { stream: "relayed".into(), window: 4, ..Default::default() };
    b_cfg.relay = Some(RelayConfig {
        url: format!("{}/live/src/master.m3u8", a.base),
        poll_interval_ms: Some(300),
        ..Default::default()
    });
    let b = start(b_cfg).await;

    let b_low = format!("{}/live/relayed/low/index.m3u8", b.base);
    let b_mid = format!("{}/live/relayed/mid/index.m3u8", b.base);
    let pl = wait_playlist(&b_low, Duration::from_secs(30), |p| p.segments.len() >= 4).await;
    // New segments keep flowing through the relay.
    let later =
        wait_playlist(&b_low, Duration::from_secs(15), |p| p.media_sequence >= pl.media_sequence + 2).await;
    let mid =
        wait_playlist(&b_mid, Duration::from_secs(10), |p| p.media_sequence >= later.media_sequence).await;
    assert!(later.segments.len() <= 4, "relay keeps its own window");

    // Same numbers and bytes as the upstream for every segment both still hold.
    let a_low = media_playlist(&format!("{}/live/src/low/index.m3u8", a.base)).await;
    let mut compared = 0;
    for s in &later.segments {
        let (sb, bb) = get_bytes(&format!("{}/live/relayed/low/{}", b.base, s.uri)).await;
        assert_eq!(sb, 200);
        let (sa, ab) = get_bytes(&format!("{}/live/src/low/{}", a.base, s.uri)).await;
        if sa == 200 {
            assert_eq!(ab, bb, "{} is byte-identical through the relay", s.uri);
            compared += 1;
        }
        // Upstream program-date-times are kept.
        if let Some(up) = a_low.segments.iter().find(|u| u.uri == s.uri) {
            assert_eq!(up.program_date_time, s.program_date_time);
        }
    }
    assert!(compared >= 2, "compared {compared} segments");
    assert!(mid.segments.iter().any(|s| later.segments.iter().any(|l| l.uri == s.uri)), "renditions aligned");

    // The relay signs with its own key; the upstream's key does not verify its manifest.
    let (_, kb) = get_bytes(&format!("{}/.well-known/shoal/origin.pub", b.base)).await;
    let b_key = verifying_key_from_b64(std::str::from_utf8(&kb).expect("utf-8")).expect("key");
    let (_, mtext) = get_bytes(&format!("{}/live/relayed/low/manifest.json", b.base)).await;
    let m = SignedManifest::from_json(&mtext).expect("manifest");
    assert_eq!(m.stream, "relayed");
    m.verify_all(&b_key).expect("verifies with the relay's key");
    assert!(m.verify_all(&a.origin.store.verifying_key()).is_err(), "not with the upstream's");

    let (status, master) = get_bytes(&format!("{}/live/relayed/master.m3u8", b.base)).await;
    assert_eq!(status, 200);
    let m = m3u8_rs::parse_master_playlist_res(&master).expect("master");
    let uris: Vec<&str> = m.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(uris, ["low/index.m3u8", "mid/index.m3u8"]);
    assert_eq!(m.variants[1].resolution.map(|r| (r.width, r.height)), Some((320, 180)));
    assert!(m.variants[1].codecs.as_deref().is_some_and(|c| c.starts_with("avc1.")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_waits_for_a_missing_upstream() {
    // Nothing listens there: the relay keeps retrying and serves nothing, without failing.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/live/x/master.m3u8", dead.local_addr().expect("addr"));
    drop(dead);
    let cfg = OriginConfig {
        relay: Some(RelayConfig { url, timeout_s: 1, ..Default::default() }),
        ..Default::default()
    };
    let b = start(cfg).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = get_bytes(&format!("{}/live/demo/master.m3u8", b.base)).await;
    assert_eq!(status, 404);
    let (status, _) = get_bytes(&format!("{}/health", b.base)).await;
    assert_eq!(status, 200);
}
