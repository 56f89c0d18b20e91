//! A lying native peer (test-only `--test-lie`: it corrupts every chunk it uploads) joins three
//! honest ones. Its bad data is rejected by verification, it is dropped and banned, and the
//! honest players never see a wrong byte nor stall.

mod native_common;

use std::time::Duration;

use native_common::*;
use shoal_testkit::TestDir;

const RUN_S: u64 = 40;

#[test]
fn native_liar_is_rejected_and_dropped() {
    let dir = TestDir::new("native_liar").expect("test dir");
    let stack = start_stack(dir.path(), None, "127.0.0.1", "360p:640x360@1200").expect("origin and servers");
    let udp = ["--udp", "127.0.0.1:0"];
    let mut liar = play(
        dir.path(),
        "liar",
        None,
        &stack.master,
        Some(&stack.api),
        RUN_S,
        &["--udp", "127.0.0.1:0", "--test-lie"],
    )
    .expect("liar starts");
    std::thread::sleep(Duration::from_secs(2));
    let mut honest = Vec::new();
    for i in 0..3 {
        honest.push(
            play(dir.path(), &format!("honest{i}"), None, &stack.master, Some(&stack.api), RUN_S, &udp)
                .expect("peer"),
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let liar_sum = summary(&mut liar, Duration::from_secs(RUN_S + 40)).expect("liar summary");
    let liar_id = liar_sum["stats"]["peer_id"].as_str().unwrap_or_default().to_owned();
    assert!(!liar_id.is_empty(), "{liar_sum}");
    assert!(
        u(&liar_sum, &["stats", "p2p_up_bytes"]) > 0,
        "the liar must have uploaded something: {liar_sum}"
    );

    let mut caught_by = 0;
    for p in &mut honest {
        let s = summary(p, Duration::from_secs(RUN_S + 40)).expect("summary");
        let h = &s["headless"];
        let name = p.name().to_owned();
        assert_eq!(u(h, &["stalls"]), 0, "{name} stalled: {s}");
        assert_eq!(u(h, &["checked_bad"]), 0, "{name} received corrupted bytes: {s}");
        assert_eq!(u(h, &["checked_ok"]), u(h, &["segments"]), "{name}: {s}");
        let banned: Vec<String> = s["stats"]["misbehaving_peers"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        assert!(banned.iter().all(|b| *b == liar_id), "{name} banned an honest peer: {banned:?}");
        if banned.contains(&liar_id) {
            caught_by += 1;
            assert!(u(&s, &["stats", "verify_failures"]) >= 1, "{name}: {s}");
        }
    }
    // Everyone the liar served caught it; with three neighbours and rendezvous-chosen CDN
    // fetchers the liar serves someone within the first few segments.
    assert!(caught_by >= 1, "nobody caught the liar ({liar_id})");
}
