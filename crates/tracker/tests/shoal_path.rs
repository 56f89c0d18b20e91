//! The Shoal protocol against a running tracker with real WebSocket clients: announce,
//! neighbour ranking, locality from the client address, signaling relay, freshness.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::*;
use serde_json::json;
use shoal_tracker::{LocalityRule, TicketRequest, TrackerConfig};

fn rule(cidr: &str, label: &str) -> LocalityRule {
    LocalityRule { cidr: cidr.into(), label: label.into() }
}

#[tokio::test]
async fn announce_ranks_neighbours_by_locality_nat_position_and_excludes_connected() -> Result<()> {
    let mut cfg = fast_config();
    cfg.announce_interval_ms = 15_000;
    cfg.peer_timeout_ms = 20_000;
    cfg.locality.table =
        vec![rule("127.0.0.1/32", "isp-a"), rule("127.0.0.2/32", "isp-a"), rule("127.0.0.3/32", "isp-b")];
    let srv = start(cfg).await?;
    let ip = |s: &str| s.parse().expect("test address");

    let mut far = Client::connect_from(srv.addr, ip("127.0.0.3"), "/v1/tracker").await?;
    far.announce(announce("far", "live", "720p", json!({"nat": "open", "upload_kbps": 5000}))).await?;
    let mut near = Client::connect_from(srv.addr, ip("127.0.0.2"), "/v1/tracker").await?;
    let p = near
        .announce(announce(
            "near",
            "live",
            "720p",
            json!({"position": {"seq": 101, "buffer_ms": 3000}, "upload_kbps": 3000}),
        ))
        .await?;
    assert_eq!(p["locality"], "isp-a", "locality comes from the source address");
    let mut sym = Client::connect_from(srv.addr, ip("127.0.0.2"), "/v1/tracker").await?;
    sym.announce(announce("sym", "live", "720p", json!({"nat": "symmetric"}))).await?;
    let mut linked = Client::connect_from(srv.addr, ip("127.0.0.2"), "/v1/tracker").await?;
    linked.announce(announce("linked", "live", "720p", json!({}))).await?;
    let mut other = Client::connect_from(srv.addr, ip("127.0.0.2"), "/v1/tracker").await?;
    other.announce(announce("other", "live", "1080p", json!({}))).await?;

    let mut me = Client::connect_from(srv.addr, ip("127.0.0.1"), "/v1/tracker").await?;
    let peers = me
        .announce(announce(
            "me",
            "live",
            "720p",
            json!({"nat": "symmetric", "connected": ["linked"], "locality": "isp-q"}),
        ))
        .await?;
    assert_eq!(peers["swarm_size"], 5, "{peers}");
    assert_eq!(peers["interval_ms"], 15_000);
    assert_eq!(peers["locality"], "isp-a", "the table wins over the client hint");
    // `sym` (symmetric × symmetric), `linked` (already connected) and `other` (another
    // rendition) are never offered; the local peer one segment ahead beats the remote one.
    assert_eq!(candidate_ids(&peers), ["near", "far"], "{peers}");
    let c = &peers["candidates"];
    assert_eq!(c[0]["locality"], "isp-a");
    assert_eq!(c[0]["nat"], "eim");
    assert_eq!(c[0]["seq"], 101);
    assert_eq!(c[1]["locality"], "isp-b");
    assert!(c[0]["score"].as_u64() > c[1]["score"].as_u64(), "{peers}");

    // `want` bounds the list.
    let again = |want: u32| {
        announce("me", "live", "720p", json!({"nat": "symmetric", "connected": ["linked"], "want": want}))
    };
    let peers = me.announce(again(1)).await?;
    assert_eq!(candidate_ids(&peers), ["near"]);
    let peers = me.announce(again(0)).await?;
    assert!(candidate_ids(&peers).is_empty(), "want 0 is a plain heartbeat");
    Ok(())
}

#[tokio::test]
async fn locality_hint_is_used_when_the_table_has_no_match() -> Result<()> {
    let mut cfg = fast_config();
    cfg.locality.table = vec![rule("127.0.0.1/32", "isp-a")];
    let srv = start(cfg).await?;
    let mut c = Client::connect_from(srv.addr, "127.0.0.9".parse()?, "/v1/tracker").await?;
    let p = c.announce(announce("hinted", "s", "r", json!({"locality": "isp-z:eu"}))).await?;
    assert_eq!(p["locality"], "isp-z:eu");
    let mut d = Client::connect_from(srv.addr, "127.0.0.10".parse()?, "/v1/tracker").await?;
    let p = d.announce(announce("plain", "s", "r", json!({}))).await?;
    assert_eq!(p["locality"], "");
    assert_eq!(p["candidates"][0]["locality"], "isp-z:eu");
    Ok(())
}

#[tokio::test]
async fn signals_are_relayed_verbatim_between_members_of_a_swarm() -> Result<()> {
    let srv = start(fast_config()).await?;
    let mut a = Client::connect(srv.addr, "/v1/tracker").await?;
    let mut b = Client::connect(srv.addr, "/v1/tracker").await?;
    a.announce(announce("alice", "s", "r", json!({}))).await?;
    let pb = b.announce(announce("bob", "s", "r", json!({}))).await?;
    assert_eq!(candidate_ids(&pb), ["alice"]);

    // bob got alice as a candidate, so bob offers (docs/tracker-protocol.md, "Who offers").
    let offer =
        json!({"kind": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n", "n": [1, 2.5, null, "é"]});
    b.send(json!({"type": "signal", "to": "alice", "payload": offer})).await?;
    let got = a.recv().await?;
    assert_eq!(got, json!({"type": "signal", "from": "bob", "payload": offer}));

    let answer = json!({"kind": "answer", "sdp": "v=0\r\n"});
    a.send(json!({"type": "signal", "to": "bob", "payload": answer})).await?;
    assert_eq!(b.recv().await?, json!({"type": "signal", "from": "alice", "payload": answer}));

    for i in 0..5 {
        let cand = json!({"kind": "candidate", "candidate": format!("candidate:{i} 1 udp 1 127.0.0.1 {} typ host", 5000 + i), "mid": "0"});
        a.send(json!({"type": "signal", "to": "bob", "payload": cand})).await?;
        assert_eq!(b.recv().await?["payload"], cand, "trickled candidates arrive in order");
    }
    assert_eq!(srv.tracker.stats().signals_relayed, 7);

    a.send(json!({"type": "ping"})).await?;
    assert_eq!(a.recv().await?, json!({"type": "pong"}));
    Ok(())
}

#[tokio::test]
async fn a_signal_to_a_peer_that_just_left_is_a_soft_error() -> Result<()> {
    let srv = start(fast_config()).await?;
    let mut a = Client::connect(srv.addr, "/v1/tracker").await?;
    let mut b = Client::connect(srv.addr, "/v1/tracker").await?;
    a.announce(announce("alice", "s", "r", json!({}))).await?;
    b.announce(announce("bob", "s", "r", json!({}))).await?;
    b.ws.close(None).await?;
    drop(b);
    assert!(eventually(WAIT, || srv.tracker.stats().peers == 1).await, "bob's close removes him");
    a.send(json!({"type": "signal", "to": "bob", "payload": {"kind": "bye"}})).await?;
    let e = a.recv().await?;
    assert_eq!(e["type"], "error");
    assert_eq!(e["code"], "peer_gone");
    assert_eq!(e["fatal"], false);
    a.send(json!({"type": "ping"})).await?;
    assert_eq!(a.recv().await?["type"], "pong", "the connection stays open");
    Ok(())
}

#[tokio::test]
async fn dead_peers_are_gone_within_two_intervals() -> Result<()> {
    let cfg = TrackerConfig { rate_per_sec: 100, ..fast_config() };
    let interval = Duration::from_millis(cfg.announce_interval_ms);
    let srv = start(cfg).await?;
    let mut live = Client::connect(srv.addr, "/v1/tracker").await?;
    let mut dead = Client::connect(srv.addr, "/v1/tracker").await?;
    live.announce(announce("live", "s", "r", json!({}))).await?;
    let p = dead.announce(announce("dead", "s", "r", json!({}))).await?;
    assert_eq!(candidate_ids(&p), ["live"]);
    let last_heard = Instant::now();

    // `dead` keeps its socket open but says nothing; `live` heartbeats every 50 ms.
    let mut gone_after = None;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let p = live.announce(announce("live", "s", "r", json!({}))).await?;
        if candidate_ids(&p).is_empty() {
            assert_eq!(p["swarm_size"], 1);
            gone_after = Some(last_heard.elapsed());
            break;
        }
    }
    let gone_after = gone_after.expect("the silent peer expired");
    assert!(gone_after <= interval * 2, "expired after {gone_after:?}, interval {interval:?}");
    // Its connection is closed with the reason.
    let closed = dead.expect_close().await?;
    assert_eq!(closed.error_code(), Some("timeout"), "{closed:?}");
    Ok(())
}

#[tokio::test]
async fn churn_leaves_nothing_behind() -> Result<()> {
    let srv = start(fast_config()).await?;
    for round in 0..5 {
        let mut clients = Vec::new();
        for i in 0..40 {
            let mut c = Client::connect(srv.addr, "/v1/tracker").await?;
            let rendition = if i % 2 == 0 { "a" } else { "b" };
            c.announce(announce(&format!("p{round}-{i}"), "churn", rendition, json!({}))).await?;
            clients.push(c);
        }
        let s = srv.tracker.stats();
        assert_eq!((s.peers, s.swarms, s.connections), (40, 2, 40));
        for (i, mut c) in clients.into_iter().enumerate() {
            if i % 3 == 0 {
                c.ws.close(None).await?; // polite close
            } // others just drop the TCP connection
        }
        assert!(
            eventually(WAIT, || {
                let s = srv.tracker.stats();
                s.peers == 0 && s.swarms == 0 && s.connections == 0
            })
            .await,
            "round {round}: {:?}",
            srv.tracker.stats()
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_rendition_switch_moves_the_membership() -> Result<()> {
    let srv = start(fast_config()).await?;
    let mut a = Client::connect(srv.addr, "/v1/tracker").await?;
    let mut b = Client::connect(srv.addr, "/v1/tracker").await?;
    a.announce(announce("a", "s", "low", json!({}))).await?;
    b.announce(announce("b", "s", "low", json!({}))).await?;
    let p = a.announce(announce("a", "s", "high", json!({}))).await?;
    assert_eq!(p["swarm_size"], 1);
    let p = b.announce(announce("b", "s", "low", json!({}))).await?;
    assert_eq!(p["swarm_size"], 1, "a left the low swarm");
    assert_eq!(srv.tracker.stats().swarms, 2);
    Ok(())
}

#[tokio::test]
async fn the_same_peer_id_on_a_new_connection_replaces_the_old_one() -> Result<()> {
    let srv = start(fast_config()).await?;
    let mut old = Client::connect(srv.addr, "/v1/tracker").await?;
    old.announce(announce("p", "s", "r", json!({}))).await?;
    let mut new = Client::connect(srv.addr, "/v1/tracker").await?;
    let p = new.announce(announce("p", "s", "r", json!({}))).await?;
    assert_eq!(p["swarm_size"], 1);
    let closed = old.expect_close().await?;
    assert_eq!(closed.error_code(), Some("replaced"));
    assert_eq!(closed.close_reason(), Some("replaced"));
    // The old connection's goodbye does not remove the new membership.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(srv.tracker.stats().peers, 1);
    Ok(())
}

#[tokio::test]
async fn tickets_go_through_the_verifier() -> Result<()> {
    let verifier = Arc::new(|r: &TicketRequest<'_>| {
        if r.ticket == format!("ok:{}:{}", r.peer_id, r.stream) && r.now_unix_ms > 1_700_000_000_000 {
            Ok(())
        } else {
            Err("ticket does not match".to_owned())
        }
    });
    let srv = start_with(fast_config(), verifier).await?;
    let mut good = Client::connect(srv.addr, "/v1/tracker").await?;
    good.announce(announce("p1", "s1", "r", json!({"ticket": "ok:p1:s1"}))).await?;
    // A rendition change of the same stream needs no new check; a stream change does.
    good.announce(announce("p1", "s1", "r2", json!({"ticket": ""}))).await?;
    good.send(announce("p1", "s2", "r", json!({"ticket": "ok:p1:s1"}))).await?;
    let closed = good.expect_close().await?;
    assert_eq!(closed.error_code(), Some("unauthorized"));

    let mut bad = Client::connect(srv.addr, "/v1/tracker").await?;
    bad.send(announce("p2", "s1", "r", json!({"ticket": "ok:p1:s1"}))).await?;
    let closed = bad.expect_close().await?;
    assert_eq!(closed.error_code(), Some("unauthorized"));
    assert_eq!(closed.texts[0]["reason"], "ticket does not match");
    assert_eq!(closed.close_code(), Some(1008));
    Ok(())
}

#[tokio::test]
async fn config_is_validated() {
    let cfg = TrackerConfig { peer_timeout_ms: 10 * 60_000, ..TrackerConfig::default() };
    let err =
        shoal_tracker::Tracker::new(cfg, Arc::new(shoal_tracker::AllowAll)).err().expect("invalid config");
    assert!(err.to_string().contains("two intervals"), "{err}");
}
