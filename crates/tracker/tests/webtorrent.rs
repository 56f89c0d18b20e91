//! The WebTorrent tracker protocol on `/announce`, spoken by hand (message shapes exactly as
//! the `bittorrent-tracker` client sends them). The stock npm client is exercised in
//! `webtorrent_npm.rs`.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use serde_json::{json, Value};

/// 20-character binary strings, including bytes ≥ 0x80 as the client produces them.
fn id(tag: char) -> String {
    let mut s: String = std::iter::repeat_n(tag, 10).collect();
    s.push_str("\u{00ff}\u{0080}\u{0001}\"\\abcde");
    assert_eq!(s.chars().count(), 20);
    s
}

fn wt_announce(info_hash: &str, peer_id: &str, offers: Value) -> Value {
    json!({
        "numwant": 5, "uploaded": 0, "downloaded": 0, "event": "started", "action": "announce",
        "info_hash": info_hash, "peer_id": peer_id, "offers": offers
    })
}

fn offers(n: usize, tag: char) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let oid: String =
                    std::iter::repeat_n(tag, 19).chain(std::iter::once(char::from(b'0' + i as u8))).collect();
                json!({"offer": {"type": "offer", "sdp": format!("v=0\r\ns=offer {i}\r\n")}, "offer_id": oid})
            })
            .collect(),
    )
}

#[tokio::test]
async fn offers_and_answers_are_relayed_within_an_info_hash() -> Result<()> {
    let srv = start(fast_config()).await?;
    let hash = id('h');
    let (pa, pb) = (id('a'), id('b'));
    let mut a = Client::connect(srv.addr, "/announce").await?;
    let mut b = Client::connect(srv.addr, "/announce").await?;

    b.send(wt_announce(&hash, &pb, json!([]))).await?;
    let reply = b.recv().await?;
    assert_eq!(
        reply,
        json!({"action": "announce", "interval": 120, "info_hash": hash, "complete": 0, "incomplete": 1})
    );

    a.send(wt_announce(&hash, &pa, offers(3, 'o'))).await?;
    let reply = a.recv().await?;
    assert_eq!(reply["incomplete"], 2);
    // One other member: exactly one of the three offers goes to it.
    let offer = b.recv().await?;
    assert_eq!(offer["action"], "announce");
    assert_eq!(offer["info_hash"], hash.as_str());
    assert_eq!(offer["peer_id"], pa.as_str());
    let oid = offer["offer_id"].as_str().expect("offer_id").to_owned();
    assert!(oid.starts_with(&"o".repeat(19)));
    assert_eq!(offer["offer"]["type"], "offer");
    assert!(b.silent_for(Duration::from_millis(150)).await?, "only one offer per receiver");

    let answer = json!({"type": "answer", "sdp": "v=0\r\ns=answer\r\n"});
    b.send(json!({"action": "announce", "info_hash": hash, "peer_id": pb, "to_peer_id": pa, "answer": answer, "offer_id": oid}))
        .await?;
    let got = a.recv().await?;
    assert_eq!(
        got,
        json!({"action": "announce", "info_hash": hash, "peer_id": pb, "answer": answer, "offer_id": oid})
    );
    assert!(b.silent_for(Duration::from_millis(150)).await?, "an answer gets no announce reply");

    b.send(json!({"action": "scrape", "info_hash": [hash, id('z')]})).await?;
    let scrape = b.recv().await?;
    assert_eq!(scrape["files"][hash.as_str()]["incomplete"], 2);
    assert_eq!(scrape["files"][id('z').as_str()]["incomplete"], 0);

    b.send(json!({"action": "announce", "event": "stopped", "info_hash": hash, "peer_id": pb})).await?;
    assert!(eventually(WAIT, || srv.tracker.stats().peers == 1).await);
    a.send(wt_announce(&hash, &pa, offers(2, 'p'))).await?;
    assert_eq!(a.recv().await?["incomplete"], 1);
    assert!(b.silent_for(Duration::from_millis(150)).await?, "a stopped peer gets no offers");
    Ok(())
}

#[tokio::test]
async fn lenient_events_as_stock_clients_send_them() -> Result<()> {
    let srv = start(fast_config()).await?;
    let hash = id('h');
    let mut a = Client::connect(srv.addr, "/announce").await?;
    for event in [json!(null), json!("update"), json!("paused"), json!("completed"), json!("empty")] {
        let mut msg = wt_announce(&hash, &id('a'), json!([]));
        msg["event"] = event.clone();
        a.send(msg).await?;
        assert_eq!(a.recv().await?["action"], "announce", "event {event}");
    }
    let mut msg = wt_announce(&hash, &id('a'), json!([]));
    msg.as_object_mut().map(|o| o.remove("event"));
    a.send(msg).await?;
    assert_eq!(a.recv().await?["interval"], 120);
    Ok(())
}

#[tokio::test]
async fn bad_webtorrent_input_closes_with_a_failure_reason() -> Result<()> {
    let srv = start(fast_config()).await?;
    let hash = id('h');
    let cases = [
        (json!({"action": "announce", "info_hash": "short", "peer_id": id('a')}), None),
        (json!({"action": "announce", "info_hash": hash, "peer_id": "short"}), Some(hash.clone())),
        (json!({"action": "dance", "info_hash": hash}), None),
        (
            json!({"action": "announce", "info_hash": hash, "peer_id": id('a'), "answer": {"type": "answer", "sdp": "x"}, "to_peer_id": id('n'), "offer_id": id('o')}),
            Some(hash.clone()),
        ),
        (json!({"action": "scrape"}), None),
    ];
    for (msg, attributed) in cases {
        let mut c = Client::connect(srv.addr, "/announce").await?;
        c.send(msg.clone()).await?;
        let closed = c.expect_close().await?;
        let failure = closed.texts.last().unwrap_or_else(|| panic!("no failure for {msg}"));
        assert!(failure["failure reason"].is_string(), "{msg} → {failure}");
        match attributed {
            Some(h) => {
                assert_eq!(failure["action"], "announce", "{failure}");
                assert_eq!(failure["info_hash"], h.as_str());
            }
            None => assert!(failure.get("info_hash").is_none(), "{failure}"),
        }
        assert!(closed.close_code().is_some(), "{closed:?}");
    }
    let mut c = Client::connect(srv.addr, "/announce").await?;
    c.send_raw(tokio_tungstenite::tungstenite::Message::Text("nope".into())).await?;
    let closed = c.expect_close().await?;
    assert_eq!(closed.close_code(), Some(1007));
    Ok(())
}

#[tokio::test]
async fn one_peer_id_per_info_hash_and_per_connection() -> Result<()> {
    let srv = start(fast_config()).await?;
    let hash = id('h');
    let mut a = Client::connect(srv.addr, "/announce").await?;
    a.send(wt_announce(&hash, &id('a'), json!([]))).await?;
    a.recv().await?;
    // Another connection cannot take over the peer id.
    let mut thief = Client::connect(srv.addr, "/announce").await?;
    thief.send(wt_announce(&hash, &id('a'), json!([]))).await?;
    let reply = thief.recv().await?;
    assert!(reply["failure reason"].as_str().unwrap_or_default().contains("in use"), "{reply}");
    // The same connection cannot switch peer id within an info hash.
    a.send(wt_announce(&hash, &id('b'), json!([]))).await?;
    let closed = a.expect_close().await?;
    assert!(closed.texts[0]["failure reason"].as_str().unwrap_or_default().contains("Only one peer id"));
    Ok(())
}

#[tokio::test]
async fn a_webtorrent_membership_expires_while_its_connection_lives_on() -> Result<()> {
    let mut cfg = fast_config();
    cfg.webtorrent.announce_interval_s = 1;
    let srv = start(cfg).await?;
    let mut a = Client::connect(srv.addr, "/announce").await?;
    a.send(wt_announce(&id('h'), &id('a'), json!([]))).await?;
    a.recv().await?;
    // Keep announcing a second info hash only; the first is abandoned (as p2p-media-loader
    // does when it switches rendition without `stopped`).
    let mut expired = false;
    for _ in 0..30 {
        a.send(wt_announce(&id('k'), &id('b'), json!([]))).await?;
        assert_eq!(a.recv().await?["info_hash"], id('k').as_str());
        if srv.tracker.stats().expired == 1 {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(expired, "{:?}", srv.tracker.stats());
    let s = srv.tracker.stats();
    assert_eq!((s.peers, s.swarms, s.connections), (1, 1, 1));
    Ok(())
}
