//! The cluster seam: members mirrored from other tracker nodes are ranked like local ones,
//! signals to them go to the relay with their node, and the relay hears about local members.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use common::{announce, candidate_ids, eventually, fast_config, Client};
use serde_json::json;
use shoal_proto::tracker::{Nat, SwarmId};
use shoal_tracker::{AllowAll, PeerInfo, Relay, Tracker};

#[derive(Default)]
struct Recorder {
    /// (node, to, frame)
    forwarded: Mutex<Vec<(String, String, String)>>,
    announced: Mutex<Vec<String>>,
    left: Mutex<Vec<String>>,
    reachable: bool,
}

impl Relay for Recorder {
    fn forward_signal(&self, _: &SwarmId, _: &str, _: &str) -> bool {
        false
    }
    fn forward_to(&self, node: &str, _: &SwarmId, to: &str, frame: &str) -> bool {
        self.forwarded.lock().unwrap().push((node.into(), to.into(), frame.into()));
        self.reachable
    }
    fn member_announced(&self, _: &SwarmId, peer_id: &str, _: &PeerInfo) {
        self.announced.lock().unwrap().push(peer_id.into());
    }
    fn member_left(&self, _: &SwarmId, peer_id: &str) {
        self.left.lock().unwrap().push(peer_id.into());
    }
}

async fn serve(relay: Arc<Recorder>) -> Result<(SocketAddr, Tracker)> {
    let tracker = Tracker::with_relay(fast_config(), Arc::new(AllowAll), relay)?;
    let app = tracker.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Ok((addr, tracker))
}

fn info(seq: u64) -> PeerInfo {
    PeerInfo { nat: Nat::Open, seq, upload_kbps: 4_000, ..PeerInfo::default() }
}

#[tokio::test]
async fn remote_members_are_ranked_and_reached_through_the_relay() -> Result<()> {
    let relay = Arc::new(Recorder { reachable: true, ..Default::default() });
    let (addr, tracker) = serve(relay.clone()).await?;
    let swarm = SwarmId::new("demo", "720p");

    // Only swarms served here take mirrored members.
    assert!(!tracker.remote_upsert(&swarm, "r1", "node-b", info(100)));
    let mut a = Client::connect(addr, "/v1/tracker").await?;
    a.announce(announce("a", "demo", "720p", json!({}))).await?;
    assert_eq!(*relay.announced.lock().unwrap(), ["a"], "the relay hears local announces");
    assert!(tracker.remote_upsert(&swarm, "r1", "node-b", info(100)));
    assert!(!tracker.remote_upsert(&swarm, "a", "node-b", info(100)), "a local member stays local");
    assert!(!tracker.remote_upsert(&swarm, "bad id!", "node-b", info(100)));
    assert_eq!(tracker.member_counts(&swarm), (1, 1));

    let p = a.announce(announce("a", "demo", "720p", json!({"want": 8}))).await?;
    assert_eq!(candidate_ids(&p), ["r1"]);
    assert_eq!(p["swarm_size"], 2);

    // A signal to the remote member goes to its node, verbatim inside a `signal` frame.
    a.send(json!({"type":"signal","to":"r1","payload":{"kind":"offer","sdp":"x"}})).await?;
    assert!(eventually(Duration::from_secs(2), || !relay.forwarded.lock().unwrap().is_empty()).await);
    let (node, to, frame) = relay.forwarded.lock().unwrap()[0].clone();
    assert_eq!((node.as_str(), to.as_str()), ("node-b", "r1"));
    let f: serde_json::Value = serde_json::from_str(&frame)?;
    assert_eq!(f, json!({"type":"signal","from":"a","payload":{"kind":"offer","sdp":"x"}}));

    // A signal relayed from another node reaches the local member.
    let frame = r#"{"type":"signal","from":"r1","payload":{"kind":"answer","sdp":"y"}}"#;
    assert!(tracker.deliver_signal(&swarm, "a", frame));
    let got = a.recv().await?;
    assert_eq!(got["from"], "r1");
    assert!(!tracker.deliver_signal(&swarm, "r1", frame), "not connected here");

    // Removal by its node, and a node leaving the cluster.
    assert!(!tracker.remote_remove(&swarm, "r1", "node-c"), "only its own node removes it");
    assert!(tracker.remote_remove(&swarm, "r1", "node-b"));
    tracker.remote_upsert(&swarm, "r2", "node-b", info(100));
    tracker.remote_upsert(&swarm, "r3", "node-c", info(100));
    assert_eq!(tracker.remote_drop(Some("node-b"), None), 1);
    assert_eq!(tracker.member_counts(&swarm), (1, 1));

    // Mirrored members expire like local ones when their node stops refreshing them, and no
    // connection is closed for them.
    let before = tracker.stats().peers;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    a.announce(announce("a", "demo", "720p", json!({}))).await?;
    assert!(
        eventually(Duration::from_secs(3), || tracker.member_counts(&swarm) == (1, 0)).await,
        "r3 not expired"
    );
    assert_eq!(tracker.stats().peers, before, "the local count ignores mirrored members");

    // The local member leaves: the relay is told.
    drop(a);
    assert!(
        eventually(Duration::from_secs(2), || relay.left.lock().unwrap().contains(&"a".to_string())).await
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_node_is_a_soft_error() -> Result<()> {
    let relay = Arc::new(Recorder { reachable: false, ..Default::default() });
    let (addr, tracker) = serve(relay.clone()).await?;
    let swarm = SwarmId::new("demo", "720p");
    let mut a = Client::connect(addr, "/v1/tracker").await?;
    a.announce(announce("a", "demo", "720p", json!({}))).await?;
    tracker.remote_upsert(&swarm, "r1", "node-gone", info(1));
    a.send(json!({"type":"signal","to":"r1","payload":{"kind":"offer","sdp":"x"}})).await?;
    let e = a.recv().await?;
    assert_eq!((e["code"].as_str(), e["fatal"].as_bool()), (Some("peer_gone"), Some(false)), "{e}");
    // Still connected.
    let p = a.announce(announce("a", "demo", "720p", json!({}))).await?;
    assert_eq!(p["type"], "peers");
    Ok(())
}
