//! Every rejected input closes the connection with a reason (an `error` message, then a close
//! frame with the same code), and limits hold.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Send `msg` on a fresh connection (after announcing if `announce_first`) and return how the
/// server closed.
async fn rejected(srv: &Server, announce_first: bool, msg: Message) -> Result<Closed> {
    let mut c = Client::connect(srv.addr, "/v1/tracker").await?;
    if announce_first {
        c.announce(announce("sender", "s", "r", json!({}))).await?;
    }
    c.send_raw(msg).await?;
    c.expect_close().await
}

fn text(s: impl Into<String>) -> Message {
    Message::Text(s.into().into())
}

fn assert_rejected(closed: &Closed, code: &str, close_code: u16) {
    assert_eq!(closed.error_code(), Some(code), "{closed:?}");
    assert_eq!(closed.close_code(), Some(close_code), "{closed:?}");
    assert_eq!(closed.close_reason(), Some(code), "{closed:?}");
    let last = closed.texts.last().expect("an error message precedes the close");
    assert_eq!(last["type"], "error");
    assert_eq!(last["fatal"], true);
    assert!(!last["reason"].as_str().unwrap_or_default().is_empty(), "a reason is given");
}

#[tokio::test]
async fn malformed_and_unknown_messages() -> Result<()> {
    let srv = start(fast_config()).await?;
    assert_rejected(&rejected(&srv, false, text("{not json")).await?, "bad_json", 1007);
    assert_rejected(&rejected(&srv, false, text("[1,2]")).await?, "bad_json", 1007);
    assert_rejected(&rejected(&srv, true, text(r#"{"type":"announce","swarm":5}"#)).await?, "bad_json", 1007);
    assert_rejected(&rejected(&srv, false, text(r#"{"type":"hello"}"#)).await?, "unknown_type", 1008);
    assert_rejected(&rejected(&srv, false, Message::Binary(vec![1, 2, 3].into())).await?, "binary", 1003);
    let s = srv.tracker.stats();
    assert_eq!(s.rejects, 5);
    assert!(eventually(WAIT, || srv.tracker.stats().connections == 0).await);
    Ok(())
}

#[tokio::test]
async fn oversized_frames_and_payloads() -> Result<()> {
    let cfg = fast_config();
    let max = cfg.max_message_bytes;
    let max_signal = cfg.max_signal_bytes;
    let srv = start(cfg).await?;
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(max + 10));
    assert_rejected(&rejected(&srv, false, text(huge)).await?, "too_large", 1009);
    // Far beyond the limit the frame is refused from its header, before its payload is read.
    let mut c = Client::connect(srv.addr, "/v1/tracker").await?;
    let _ = c.send_raw(text("x".repeat(max * 3))).await;
    let closed = c.expect_close().await?;
    if let Some(code) = closed.error_code() {
        assert_eq!(code, "too_large");
    }
    assert!(eventually(WAIT, || srv.tracker.stats().rejects == 2).await, "{:?}", srv.tracker.stats());

    let mut a = Client::connect(srv.addr, "/v1/tracker").await?;
    a.announce(announce("target", "s", "r", json!({}))).await?;
    let big = json!({"type": "signal", "to": "target", "payload": {"sdp": "y".repeat(max_signal)}});
    assert_rejected(&rejected(&srv, true, text(big.to_string())).await?, "too_large", 1009);
    let not_object = json!({"type": "signal", "to": "target", "payload": "offer"});
    assert_rejected(&rejected(&srv, true, text(not_object.to_string())).await?, "bad_request", 1008);
    assert!(a.silent_for(Duration::from_millis(200)).await?, "nothing was relayed to the target");
    Ok(())
}

#[tokio::test]
async fn floods_are_cut_off() -> Result<()> {
    let mut cfg = fast_config();
    cfg.rate_per_sec = 5;
    cfg.rate_burst = 10;
    let srv = start(cfg).await?;
    let mut c = Client::connect(srv.addr, "/v1/tracker").await?;
    c.announce(announce("flooder", "s", "r", json!({}))).await?;
    for _ in 0..50 {
        if c.send(json!({"type": "ping"})).await.is_err() {
            break;
        }
    }
    let closed = c.expect_close().await?;
    let pongs = closed.texts.iter().filter(|v| v["type"] == "pong").count();
    assert!(pongs <= 10, "at most the burst is served: {pongs}");
    assert_rejected(&closed, "rate_limited", 1008);
    assert!(eventually(WAIT, || srv.tracker.stats().peers == 0).await, "the flooder's membership is gone");
    Ok(())
}

#[tokio::test]
async fn signaling_outside_the_swarm_is_refused() -> Result<()> {
    let srv = start(fast_config()).await?;
    let mut elsewhere = Client::connect(srv.addr, "/v1/tracker").await?;
    elsewhere.announce(announce("elsewhere", "other-stream", "r", json!({}))).await?;
    let msg = json!({"type": "signal", "to": "elsewhere", "payload": {"kind": "offer", "sdp": "v=0"}});
    assert_rejected(&rejected(&srv, true, text(msg.to_string())).await?, "not_in_swarm", 1008);
    let never = json!({"type": "signal", "to": "nobody", "payload": {}});
    assert_rejected(&rejected(&srv, true, text(never.to_string())).await?, "not_in_swarm", 1008);
    assert!(elsewhere.silent_for(Duration::from_millis(200)).await?, "the outsider received nothing");
    assert_eq!(srv.tracker.stats().signals_relayed, 0);
    Ok(())
}

#[tokio::test]
async fn protocol_order_and_field_bounds() -> Result<()> {
    let mut cfg = fast_config();
    cfg.max_connected = 4;
    let srv = start(cfg).await?;
    let signal = json!({"type": "signal", "to": "x", "payload": {}});
    assert_rejected(&rejected(&srv, false, text(signal.to_string())).await?, "not_announced", 1008);
    assert_rejected(&rejected(&srv, false, text(r#"{"type":"ping"}"#)).await?, "not_announced", 1008);

    let bad_id = announce("a/b", "s", "r", json!({}));
    assert_rejected(&rejected(&srv, false, text(bad_id.to_string())).await?, "bad_request", 1008);
    let bad_swarm = announce("p", "", "r", json!({}));
    assert_rejected(&rejected(&srv, false, text(bad_swarm.to_string())).await?, "bad_request", 1008);
    let too_many = announce("p", "s", "r", json!({"connected": ["a", "b", "c", "d", "e"]}));
    assert_rejected(&rejected(&srv, false, text(too_many.to_string())).await?, "bad_request", 1008);
    let bad_hint = announce("p", "s", "r", json!({"locality": "Not A Label"}));
    assert_rejected(&rejected(&srv, false, text(bad_hint.to_string())).await?, "bad_request", 1008);
    let bad_nat = announce("p", "s", "r", json!({"nat": "cone"}));
    assert_rejected(&rejected(&srv, false, text(bad_nat.to_string())).await?, "bad_json", 1007);
    let to_self = json!({"type": "signal", "to": "sender", "payload": {}});
    assert_rejected(&rejected(&srv, true, text(to_self.to_string())).await?, "bad_request", 1008);

    let other_id = announce("someone-else", "s", "r", json!({}));
    assert_rejected(&rejected(&srv, true, text(other_id.to_string())).await?, "peer_id_changed", 1008);
    Ok(())
}

#[tokio::test]
async fn silent_connections_time_out() -> Result<()> {
    let mut cfg = fast_config();
    cfg.handshake_timeout_ms = 300;
    let srv = start(cfg).await?;
    let mut c = Client::connect(srv.addr, "/v1/tracker").await?;
    let closed = c.expect_close().await?;
    assert_rejected(&closed, "timeout", 1008);
    Ok(())
}

#[tokio::test]
async fn swarm_and_connection_limits() -> Result<()> {
    let mut cfg = fast_config();
    cfg.max_peers_per_swarm = 2;
    cfg.max_swarms = 2;
    cfg.max_connections = 5;
    let srv = start(cfg).await?;
    let mut keep = Vec::new();
    for id in ["a", "b"] {
        let mut c = Client::connect(srv.addr, "/v1/tracker").await?;
        c.announce(announce(id, "s", "r", json!({}))).await?;
        keep.push(c);
    }
    let third = announce("c", "s", "r", json!({}));
    assert_rejected(&rejected(&srv, false, text(third.to_string())).await?, "swarm_full", 1008);

    let mut other = Client::connect(srv.addr, "/v1/tracker").await?;
    other.announce(announce("d", "s2", "r", json!({}))).await?;
    keep.push(other);
    let third_swarm = announce("e", "s3", "r", json!({}));
    assert_rejected(&rejected(&srv, false, text(third_swarm.to_string())).await?, "swarm_full", 1008);

    // 3 open; two more fill the limit; the sixth upgrade is refused with 503.
    assert!(eventually(WAIT, || srv.tracker.stats().connections == 3).await);
    keep.push(Client::connect(srv.addr, "/v1/tracker").await?);
    keep.push(Client::connect(srv.addr, "/v1/tracker").await?);
    let refused = Client::connect(srv.addr, "/v1/tracker").await;
    let err = refused.err().expect("over the connection limit").to_string();
    assert!(err.contains("503"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_reader_that_stops_reading_does_not_grow_the_server() -> Result<()> {
    let mut cfg = fast_config();
    cfg.outbound_queue = 8;
    cfg.rate_per_sec = 10_000;
    cfg.rate_burst = 10_000;
    cfg.announce_interval_ms = 15_000;
    cfg.peer_timeout_ms = 20_000;
    let srv = start(cfg).await?;
    // The victim announces and then never reads again.
    let mut victim = Client::connect(srv.addr, "/v1/tracker").await?;
    victim.announce(announce("victim", "s", "r", json!({}))).await?;
    let mut sender = Client::connect(srv.addr, "/v1/tracker").await?;
    sender.announce(announce("sender", "s", "r", json!({}))).await?;
    let payload = json!({"kind": "candidate", "pad": "z".repeat(8_000)});
    for _ in 0..2_000 {
        sender.send(json!({"type": "signal", "to": "victim", "payload": payload})).await?;
    }
    sender.send(json!({"type": "ping"})).await?;
    assert_eq!(sender.recv().await?["type"], "pong", "the sender is still served");
    let s = srv.tracker.stats();
    assert!(s.dropped > 0, "messages beyond the victim's queue are dropped: {s:?}");
    assert_eq!(s.signals_relayed + s.dropped, 2_000);
    Ok(())
}
