//! NAT traversal for real (needs root): network namespaces wired as a small internet with the
//! servers on it and three homes behind NAT routers (nftables masquerade, conntrack filtering).
//! Alice and Bob sit behind separate endpoint-independent NATs: they learn their
//! server-reflexive addresses from Shoal's STUN server on the socket that carries their peers
//! and connect directly (their host addresses are private and unroutable, so any DataChannel
//! between them went through the NAT mappings). Carol sits behind a symmetric NAT: her
//! connections fail, and she plays from the CDN without a stall.

mod native_common;

use std::time::Duration;

use native_common::*;
use shoal_testkit::{require_netns_support, NatKind, TestDir, Topology};

const RUN_S: u64 = 50;

#[test]
fn native_nat_traversal_eim_pairs_connect_symmetric_falls_back() {
    require_netns_support().expect("this test needs root and iproute2 (network namespaces)");
    let dir = TestDir::new("native_nat").expect("test dir");
    let topo = Topology::builder()
        .lan("internet", "198.51.100.0/24")
        .host("server", "internet")
        .nat("nat-a", NatKind::EndpointIndependent, "internet", "home-a", "192.168.10.0/24")
        .host("alice", "home-a")
        .nat("nat-b", NatKind::EndpointIndependent, "internet", "home-b", "192.168.20.0/24")
        .host("bob", "home-b")
        .nat("nat-s", NatKind::Symmetric, "internet", "home-s", "192.168.30.0/24")
        .host("carol", "home-s")
        .build()
        .expect("topology");
    let server_ip = topo.addr("server").to_string();
    let stack =
        start_stack(dir.path(), Some(topo.ns("server")), &server_ip, "360p:640x360@800").expect("servers");

    let mut alice =
        play(dir.path(), "alice", Some(topo.ns("alice")), &stack.master, Some(&stack.api), RUN_S, &[])
            .expect("alice");
    let mut bob = play(dir.path(), "bob", Some(topo.ns("bob")), &stack.master, Some(&stack.api), RUN_S, &[])
        .expect("bob");
    let mut carol =
        play(dir.path(), "carol", Some(topo.ns("carol")), &stack.master, Some(&stack.api), RUN_S, &[])
            .expect("carol");

    let a = summary(&mut alice, Duration::from_secs(RUN_S + 40)).expect("alice summary");
    let b = summary(&mut bob, Duration::from_secs(RUN_S + 40)).expect("bob summary");
    let c = summary(&mut carol, Duration::from_secs(RUN_S + 40)).expect("carol summary");
    let show = format!("alice: {a}\nbob: {b}\ncarol: {c}");
    std::fs::write(dir.join("result.txt"), &show).expect("write result");

    // Server-reflexive addresses are the NATs' public addresses.
    let srflx_ip = |s: &serde_json::Value| {
        s["stats"]["srflx"].as_str().unwrap_or("").rsplit_once(':').map(|x| x.0.to_owned())
    };
    assert_eq!(srflx_ip(&a), Some(topo.addr("nat-a").to_string()), "{show}");
    assert_eq!(srflx_ip(&b), Some(topo.addr("nat-b").to_string()), "{show}");
    assert_eq!(srflx_ip(&c), Some(topo.addr("nat-s").to_string()), "{show}");

    // Alice and Bob connected through their NATs and exchanged segments.
    assert!(u(&a, &["stats", "connects_opened"]) >= 1, "alice opened no connection\n{show}");
    assert!(u(&b, &["stats", "connects_opened"]) >= 1, "bob opened no connection\n{show}");
    let ab = u(&a, &["stats", "p2p_down_bytes"]) + u(&b, &["stats", "p2p_down_bytes"]);
    assert!(ab > 0, "no segment bytes went between alice and bob\n{show}");

    // Carol, behind the symmetric NAT, could not connect to anyone, and played from the CDN.
    assert_eq!(u(&c, &["stats", "connects_opened"]), 0, "carol connected through a symmetric NAT?\n{show}");
    assert!(u(&c, &["stats", "connect_failures"]) >= 1, "carol's attempts must have failed\n{show}");
    assert_eq!(u(&c, &["stats", "p2p_down_bytes"]), 0, "{show}");

    for (name, s) in [("alice", &a), ("bob", &b), ("carol", &c)] {
        let h = &s["headless"];
        assert_eq!(u(h, &["stalls"]), 0, "{name} stalled\n{show}");
        assert!(u(h, &["segments"]) >= (RUN_S - 15) / 2, "{name} played too little\n{show}");
        assert_eq!(u(h, &["checked_bad"]), 0, "{name}\n{show}");
        assert_eq!(u(h, &["checked_ok"]), u(h, &["segments"]), "{name}\n{show}");
    }
}
