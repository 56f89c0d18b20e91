//! Two tracker nodes, one swarm: members announced on one node are ranked and reachable from
//! the other through Redis (real redis-server, real trackers on loopback, real WebSockets).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use shoal_cluster::{Backplane, Cluster, ClusterConfig, NodeInfo};
use shoal_testkit::redis::RedisServer;
use shoal_testkit::TestDir;
use shoal_tracker::{AllowAll, Tracker, TrackerConfig};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Node {
    cluster: Cluster,
    tracker: Tracker,
    bp: Backplane,
    url: String,
}

async fn node(redis: &str, id: &str) -> anyhow::Result<Node> {
    let cfg = ClusterConfig {
        redis: redis.into(),
        node_id: id.into(),
        prefix: "bp".into(),
        heartbeat_ms: 300,
        op_timeout_ms: 500,
        ..Default::default()
    };
    let cluster = Cluster::new(&cfg)?;
    let tcfg = TrackerConfig::default();
    let bp = cluster.backplane(Duration::from_millis(tcfg.peer_timeout_ms));
    let tracker = Tracker::with_relay(tcfg, Arc::new(AllowAll), Arc::new(bp.clone()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = tracker.router();
    tokio::spawn(async move {
        let _ =
            axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
    });
    let url = format!("ws://{addr}/v1/tracker");
    let info = NodeInfo { roles: vec!["tracker".into()], tracker: Some(url.clone()), ..Default::default() };
    let t = tracker.clone();
    cluster.begin(
        info,
        Box::new(move || {
            let s = t.stats();
            shoal_cluster::Load {
                connections: s.connections,
                peers: s.peers,
                swarms: s.swarms,
                ..Default::default()
            }
        }),
        Some(tracker.clone()),
    );
    Ok(Node { cluster, tracker, bp, url })
}

async fn connect(url: &str) -> anyhow::Result<Ws> {
    Ok(tokio_tungstenite::connect_async(url).await?.0)
}

async fn send(ws: &mut Ws, v: serde_json::Value) -> anyhow::Result<()> {
    ws.send(Message::text(v.to_string())).await?;
    Ok(())
}

async fn recv(ws: &mut Ws, limit: Duration) -> anyhow::Result<serde_json::Value> {
    loop {
        let m = tokio::time::timeout(limit, ws.next()).await?.ok_or_else(|| anyhow::anyhow!("closed"))??;
        if let Message::Text(t) = m {
            return Ok(serde_json::from_str(t.as_str())?);
        }
    }
}

fn announce(peer: &str, want: u32) -> serde_json::Value {
    serde_json::json!({"type":"announce","swarm":{"stream":"demo","rendition":"720p"},"peer_id":peer,
        "ticket":"","position":{"seq":100,"buffer_ms":4000},"upload_kbps":4000,"nat":"open","connected":[],"want":want})
}

fn candidates(v: &serde_json::Value) -> Vec<String> {
    v["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["peer_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_meet_and_signal_through_redis() -> anyhow::Result<()> {
    let dir = TestDir::new("members_on_two_nodes_meet_and_signal_through_redis")?;
    let mut redis = RedisServer::start(dir.path())?;
    let a = node(&redis.url(), "node-a").await?;
    let b = node(&redis.url(), "node-b").await?;
    assert!(a.cluster.link().wait_healthy(Duration::from_secs(5)).await);
    assert!(b.cluster.link().wait_healthy(Duration::from_secs(5)).await);
    // Both see each other in the registry (the relay only sends to live nodes).
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.cluster.registry().view().nodes.len() < 2 || b.cluster.registry().view().nodes.len() < 2 {
        anyhow::ensure!(Instant::now() < deadline, "nodes never saw each other");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Two members on A, then one on B: B's first announce already ranks A's members (A answers
    // B's hello with a snapshot; the announce waits for nothing, so ask again after a moment).
    let mut a1 = connect(&a.url).await?;
    send(&mut a1, announce("a1", 0)).await?;
    assert_eq!(recv(&mut a1, Duration::from_secs(2)).await?["swarm_size"], 1);
    let mut a2 = connect(&a.url).await?;
    send(&mut a2, announce("a2", 0)).await?;
    recv(&mut a2, Duration::from_secs(2)).await?;
    let mut b1 = connect(&b.url).await?;
    send(&mut b1, announce("b1", 8)).await?;
    recv(&mut b1, Duration::from_secs(2)).await?;
    let t = Instant::now();
    let mut seen = Vec::new();
    while t.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        send(&mut b1, announce("b1", 8)).await?;
        let p = recv(&mut b1, Duration::from_secs(2)).await?;
        seen = candidates(&p);
        if seen.len() == 2 {
            assert_eq!(p["swarm_size"], 3, "{p}");
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ["a1", "a2"], "B ranks A's members");
    println!("B saw A's members {:?} after its first announce", t.elapsed());
    assert_eq!(a.bp.others(&shoal_proto::tracker::SwarmId::new("demo", "720p")), ["node-b"]);

    // A's members see B's member too (A now publishes, B mirrored them; B's announces mirror
    // to A).
    let t = Instant::now();
    loop {
        send(&mut a1, announce("a1", 8)).await?;
        let p = recv(&mut a1, Duration::from_secs(2)).await?;
        if candidates(&p).contains(&"b1".to_string()) {
            break;
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(2), "A never ranked b1: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Signals cross: b1 → a1 (offer), a1 → b1 (answer), each delivered verbatim.
    let mut lat = Vec::new();
    // (Paced under the tracker's per-connection rate limit, 20 messages/s.)
    for i in 0..30 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let t = Instant::now();
        send(&mut b1, serde_json::json!({"type":"signal","to":"a1","payload":{"kind":"offer","sdp":format!("v=0 {i}")}}))
            .await?;
        let m = match recv(&mut a1, Duration::from_secs(2)).await {
            Ok(m) => m,
            Err(e) => {
                let b_said = recv(&mut b1, Duration::from_millis(200)).await;
                anyhow::bail!(
                    "signal {i} not delivered ({e}); b1 was told {b_said:?}; A {:?}, B {:?}; B's live view {:?}",
                    a.bp.stats(),
                    b.bp.stats(),
                    b.cluster.registry().view().nodes.keys().collect::<Vec<_>>()
                )
            }
        };
        lat.push(t.elapsed());
        assert_eq!(m["type"], "signal");
        assert_eq!(m["from"], "b1");
        assert_eq!(m["payload"]["sdp"], format!("v=0 {i}"));
    }
    send(&mut a1, serde_json::json!({"type":"signal","to":"b1","payload":{"kind":"answer","sdp":"x"}}))
        .await?;
    let m = recv(&mut b1, Duration::from_secs(2)).await?;
    assert_eq!((m["from"].as_str(), m["payload"]["kind"].as_str()), (Some("a1"), Some("answer")));
    lat.sort();
    println!("cross-node signal latency p50 {:?} max {:?}", lat[lat.len() / 2], lat[lat.len() - 1]);
    assert!(lat[lat.len() / 2] < Duration::from_millis(50));

    // a2 leaves A: B drops it at once (no waiting for the peer timeout).
    drop(a2);
    let t = Instant::now();
    loop {
        send(&mut b1, announce("b1", 8)).await?;
        let p = recv(&mut b1, Duration::from_secs(2)).await?;
        if !candidates(&p).contains(&"a2".to_string()) {
            break;
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(3), "a2 still offered by B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Redis restarts: each node keeps serving its own members meanwhile; afterwards the
    // channels and the mirrored state come back by themselves (hello → snapshot).
    redis.kill()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&mut a1, announce("a1", 8)).await?;
    let p = recv(&mut a1, Duration::from_secs(2)).await?;
    assert_eq!(p["type"], "peers", "A answers during the outage: {p}");
    redis.restart(None)?;
    assert!(a.cluster.link().wait_healthy(Duration::from_secs(10)).await);
    assert!(b.cluster.link().wait_healthy(Duration::from_secs(10)).await);
    let mut b2 = connect(&b.url).await?;
    send(&mut b2, announce("b2", 0)).await?;
    recv(&mut b2, Duration::from_secs(2)).await?;
    let t = Instant::now();
    loop {
        send(&mut a1, announce("a1", 8)).await?;
        let p = recv(&mut a1, Duration::from_secs(2)).await?;
        if candidates(&p).contains(&"b2".to_string()) {
            break;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let subs: Vec<redis::Value> = b
                .cluster
                .link()
                .query(redis::cmd("PUBSUB").arg("NUMSUB").arg("bp:sw:demo:720p").arg("bp:to:node-a"))
                .await?;
            anyhow::bail!(
                "b2 (joined after the restart) never reached A: {p}; subscribers {subs:?}; A {:?} {:?}; B {:?} {:?}",
                a.bp.stats(),
                a.cluster.link().stats(),
                b.bp.stats(),
                b.cluster.link().stats()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(&mut a1, serde_json::json!({"type":"signal","to":"b2","payload":{"kind":"offer","sdp":"after"}}))
        .await?;
    let m = recv(&mut b2, Duration::from_secs(3)).await?;
    assert_eq!(m["payload"]["sdp"], "after", "signals cross again after the restart");
    println!("after the Redis restart: backplane {:?}", b.bp.stats());

    // B dies without a goodbye: A forgets its members within the registry's two heartbeats.
    b.cluster.link().close().await;
    let t = Instant::now();
    loop {
        send(&mut a1, announce("a1", 8)).await?;
        let p = recv(&mut a1, Duration::from_secs(2)).await?;
        if candidates(&p).is_empty() && p["swarm_size"] == 1 {
            break;
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(3), "B's members still offered: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("B's members dropped by A {:?} after B died", t.elapsed());
    assert_eq!(a.tracker.member_counts(&shoal_proto::tracker::SwarmId::new("demo", "720p")), (1, 0));
    Ok(())
}
