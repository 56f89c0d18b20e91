//! Chromium WebRTC inside a test namespace: two pages open a DataChannel to each other over the
//! namespace's veth address. Later P2P tests rely on this. Needs root, node, Chromium.

use std::time::Duration;

use serde::Deserialize;
use shoal_testkit::{browser, Netns, TestDir, VETH_ADDR};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PairResult {
    browser_version: String,
    offer_candidates: Vec<String>,
    answer_candidates: Vec<String>,
    opened: bool,
    echoed: bool,
    selected_pair: Option<SelectedPair>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SelectedPair {
    local: String,
    remote: String,
}

#[test]
fn browser_datachannel_opens_between_two_pages_in_a_namespace() {
    let dir = TestDir::new("browser_datachannel_opens_between_two_pages").expect("test dir");
    let ns = Netns::new().expect("namespace");
    let cfg = serde_json::json!({ "timeoutMs": 15000 });
    let r: PairResult =
        browser::run_script(&ns, &dir, "pair", "webrtc-pair.mjs", &cfg, Duration::from_secs(60))
            .expect("script ran");
    println!("Chromium {}: {r:#?}", r.browser_version);
    assert_eq!(r.error, None);
    let host = format!(" {VETH_ADDR} ");
    for (side, cands) in [("offer", &r.offer_candidates), ("answer", &r.answer_candidates)] {
        assert!(
            cands.iter().any(|c| c.contains(&host) && c.contains("typ host")),
            "{side} must carry a host candidate on {VETH_ADDR} (plain address, mDNS hiding off): {cands:#?}"
        );
    }
    assert!(r.opened, "DataChannel did not open");
    assert!(r.echoed, "message did not come back over the DataChannel");
    let pair = r.selected_pair.expect("a nominated, succeeded candidate pair");
    assert!(pair.local.contains(&VETH_ADDR.to_string()), "{pair:?}");
    assert!(pair.remote.contains(&VETH_ADDR.to_string()), "{pair:?}");
}
