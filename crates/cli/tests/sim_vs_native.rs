//! The simulator's honesty check: one small swarm run both as real native peers on loopback
//! (six `shoal play --headless`, the synthetic 360p stream at 1.2 Mbit/s, 2 s segments, joining
//! 0.3 s apart, 75 s) and in the simulator with matching parameters
//! (`sim/scenarios/native-6.toml`), and how close their offload and CDN copies per segment come.
//!
//! Stated tolerance: the simulator's offload within 12 points of the native swarm's P2P share.
//! What the simulator does not model here — real WebRTC/SCTP and HTTP costs, the player's
//! actual timing, the native peers' start-up order — is what that margin is for; a larger gap
//! means the model no longer describes what the engine does with real sockets.

mod native_common;

use std::path::PathBuf;
use std::time::Duration;

use native_common::*;
use shoal_testkit::TestDir;

const PEERS: usize = 6;
const RUN_S: u64 = 75;
const TOLERANCE: f64 = 0.12;

#[test]
fn the_simulator_and_native_peers_agree_on_a_small_swarm() {
    // The simulator's side first (a fraction of a second).
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sim/scenarios/native-6.toml");
    let sc = shoal_sim::Scenario::load(&path).expect("native-6 scenario");
    assert_eq!(sc.audience.viewers as usize, PEERS, "the scenario matches the native run");
    assert_eq!(sc.duration_s, RUN_S, "the scenario matches the native run");
    let sim = shoal_sim::run(&sc, &shoal_sim::Options { no_baseline: true, ..Default::default() });
    assert!(sim.p2p.invariants_ok, "simulator invariants: {:?}", sim.p2p.invariants.failures);
    let sim_share = sim.p2p.offload;
    let sim_copies = PEERS as f64 * (1.0 - sim_share);
    let sim_fetches = sim.p2p.cdn_fetches_per_segment.mean.expect("segments counted");

    // The native side.
    let dir = TestDir::new("sim_vs_native").expect("test dir");
    let stack = start_stack(dir.path(), None, "127.0.0.1", "360p:640x360@1200").expect("origin and servers");
    let mut peers = play_swarm(dir.path(), &stack, PEERS, RUN_S).expect("peers start");
    let (mut http, mut p2p, mut segments, mut stalls) = (0u64, 0u64, 0u64, 0u64);
    for p in &mut peers {
        let s = summary(p, Duration::from_secs(RUN_S + 40)).expect("summary");
        http += u(&s, &["stats", "http_bytes"]);
        p2p += u(&s, &["stats", "p2p_down_bytes"]);
        segments += u(&s["headless"], &["segments"]);
        stalls += u(&s["headless"], &["stalls"]);
    }
    assert!(segments >= PEERS as u64 * (RUN_S - 15) / 2, "the native peers played only {segments} segments");
    let native_share = p2p as f64 / (http + p2p).max(1) as f64;
    // Segment bytes from the CDN per segment played by the swarm: viewers × (1 − share).
    let native_copies = PEERS as f64 * (1.0 - native_share);

    let line = format!(
        "sim vs native, {PEERS} peers, {RUN_S} s: offload {:.1} % vs {:.1} % (P2P share), CDN copies per segment \
         {sim_copies:.2} vs {native_copies:.2} (simulator: {sim_fetches:.2} CDN fetches per steady segment), \
         stalls {} vs {stalls}",
        sim_share * 100.0,
        native_share * 100.0,
        sim.p2p.qoe.stalls
    );
    println!("{line}");
    std::fs::write(dir.path().join("result.txt"), &line).expect("write result");
    assert_eq!(stalls, 0, "a native peer stalled: {line}");
    assert_eq!(sim.p2p.qoe.stalls, 0, "a simulated viewer stalled: {line}");
    assert!(
        (sim_share - native_share).abs() <= TOLERANCE,
        "the simulator's offload is more than {:.0} points from the native swarm's: {line}",
        TOLERANCE * 100.0
    );
}
