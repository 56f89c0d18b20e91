//! API and tracker down at start: two native peers play from the CDN without a stall, keep
//! retrying the join in the background, and once the servers come up they join, find each
//! other through the tracker and share segments — without restarting and without a stall.

mod native_common;

use std::time::Duration;

use native_common::*;
use shoal_testkit::{Proc, TestDir};

const RUN_S: u64 = 55;

#[test]
fn native_plays_from_the_cdn_while_the_api_is_down_then_joins() {
    let dir = TestDir::new("native_resilience").expect("test dir");
    let mut origin = Proc::builder("origin", SHOAL)
        .args(["origin", "--synthetic", "--listen", "127.0.0.1:0", "--ladder", "360p:640x360@1200"])
        .log_dir(dir.path())
        .spawn()
        .expect("origin");
    let key_line =
        origin.wait_for_line(|l| l.starts_with("SHOAL_ORIGIN_KEY "), Duration::from_secs(60)).expect("key");
    let key = key_line.split_whitespace().nth(1).expect("key field").to_owned();
    let ready = origin.wait_ready("ORIGIN", Duration::from_secs(60)).expect("origin ready");
    let base = ready.url.trim_end_matches('/').to_owned();
    let master = ready.fields.get(1).cloned().expect("master URL");

    // A port nobody listens on yet: the API the peers are told about.
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let api = format!("http://127.0.0.1:{port}");
    let udp = ["--udp", "127.0.0.1:0"];
    let mut a = play(dir.path(), "peer-a", None, &master, Some(&api), RUN_S, &udp).expect("peer a");
    let mut b = play(dir.path(), "peer-b", None, &master, Some(&api), RUN_S, &udp).expect("peer b");

    std::thread::sleep(Duration::from_secs(12));
    let mut serve = Proc::builder("serve", SHOAL)
        .env("SHOAL_API_HOLDBACK_PERCENT", "0") // every viewer in the swarm: no control group
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--stun-listen", "127.0.0.1:0"])
        .args(["--set", "auth.require_token=false"])
        .args(["--set", &format!("api.origin_public_key={key}")])
        .args(["--set", &format!("api.cdn=[\"{base}/live/{{stream}}/\"]")])
        .log_dir(dir.path())
        .spawn()
        .expect("serve");
    serve.wait_ready("SERVE", Duration::from_secs(30)).expect("serve ready");

    let sa = summary(&mut a, Duration::from_secs(RUN_S + 40)).expect("summary a");
    let sb = summary(&mut b, Duration::from_secs(RUN_S + 40)).expect("summary b");
    let show = format!("a: {sa}\nb: {sb}");
    for (name, s) in [("a", &sa), ("b", &sb)] {
        let h = &s["headless"];
        assert_eq!(s["stats"]["joined"], true, "{name} never joined after the API came up\n{show}");
        assert_eq!(u(h, &["stalls"]), 0, "{name} stalled\n{show}");
        assert!(u(h, &["segments"]) >= (RUN_S - 15) / 2, "{name} played too little\n{show}");
        assert_eq!(u(h, &["checked_bad"]), 0, "{name}\n{show}");
        assert_eq!(u(h, &["direct"]), 0, "{name}: no proxy fallback\n{show}");
    }
    let shared = u(&sa, &["stats", "p2p_down_bytes"]) + u(&sb, &["stats", "p2p_down_bytes"]);
    assert!(shared > 0, "the peers never shared a segment after joining\n{show}");
}
