//! The Redis link, registry and tracker directory against a real `redis-server` on loopback,
//! including a Redis restart (subscriptions and the registry come back by themselves).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_api::{LiveEndpoints, TrackerDirectory};
use shoal_cluster::{Directory, Keys, Link, Load, NodeEvent, NodeRecord, Registry};
use shoal_testkit::redis::RedisServer;
use shoal_testkit::TestDir;
use tokio::sync::watch;

const OP: Duration = Duration::from_millis(500);

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_resubscribes_after_a_redis_restart() -> anyhow::Result<()> {
    let dir = TestDir::new("link_resubscribes_after_a_redis_restart")?;
    let mut redis = RedisServer::start(dir.path())?;
    let link = Link::new(&redis.url(), OP, Duration::from_millis(200))?;
    assert!(link.wait_healthy(Duration::from_secs(5)).await, "link never came up");
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    link.subscribe(
        "t:chan".into(),
        Arc::new(move |_, p| g.lock().unwrap().push(String::from_utf8_lossy(p).into())),
    )
    .await;
    let publisher = Link::new(&redis.url(), OP, Duration::from_millis(200))?;
    assert!(publisher.wait_healthy(Duration::from_secs(5)).await);
    let n: i64 = publisher.query(redis::cmd("PUBLISH").arg("t:chan").arg("one")).await?;
    assert_eq!(n, 1, "one subscriber");
    assert!(wait_until(Duration::from_secs(2), || got.lock().unwrap().len() == 1).await);
    let gen_before = *link.generation().borrow();
    // An empty pipeline (e.g. no complete window to read yet) answers empty, not an error.
    let empty: Vec<Vec<String>> = link.pipe(&redis::pipe()).await?;
    assert!(empty.is_empty());

    // Redis dies: commands fail fast with "unavailable", nothing hangs.
    redis.kill()?;
    assert!(wait_until(Duration::from_secs(3), || !link.healthy()).await, "outage not noticed");
    let t = Instant::now();
    let r: Result<String, _> = link.query(&redis::cmd("PING")).await;
    assert!(matches!(r, Err(shoal_cluster::LinkError::Unavailable(_))), "{r:?}");
    assert!(t.elapsed() < OP * 2, "a command during the outage waited {:?}", t.elapsed());

    // Redis comes back empty, on the same port: the link reconnects and subscribes again by
    // itself; messages published now arrive.
    tokio::time::sleep(Duration::from_millis(600)).await;
    redis.restart(None)?;
    let t = Instant::now();
    assert!(link.wait_healthy(Duration::from_secs(10)).await, "link did not come back");
    assert!(publisher.wait_healthy(Duration::from_secs(10)).await);
    println!("link back {:?} after the restart", t.elapsed());
    assert!(*link.generation().borrow() > gen_before, "generation bumped after the reconnection");
    let subscribers: Vec<redis::Value> =
        publisher.query(redis::cmd("PUBSUB").arg("NUMSUB").arg("t:chan")).await?;
    assert_eq!(subscribers.get(1), Some(&redis::Value::Int(1)), "resubscribed: {subscribers:?}");
    let n: i64 = publisher.query(redis::cmd("PUBLISH").arg("t:chan").arg("two")).await?;
    assert_eq!(n, 1);
    assert!(wait_until(Duration::from_secs(2), || got.lock().unwrap().len() == 2).await);
    assert_eq!(*got.lock().unwrap(), ["one", "two"]);
    assert!(link.stats().reconnects >= 2);
    Ok(())
}

fn record(tracker: &str, connections: u64) -> NodeRecord {
    NodeRecord {
        roles: vec!["tracker".into(), "api".into(), "stun".into(), "pingback".into()],
        tracker: Some(tracker.into()),
        api: Some(tracker.replace("ws://", "http://").replace("/v1/tracker", "")),
        pingback: Some(tracker.replace("ws://", "http://").replace("/v1/tracker", "/v1/pingback")),
        stun: vec![format!("stun:{}", tracker.trim_start_matches("ws://").replace("/v1/tracker", ""))],
        weight: 1.0,
        load: Load { connections, max_connections: 1000, ..Default::default() },
        ..Default::default()
    }
}

struct Node {
    reg: Registry,
    dir: Directory,
    link: Link,
    stop: watch::Sender<bool>,
}

fn node(url: &str, id: &str, tracker: &'static str, hb: Duration) -> anyhow::Result<Node> {
    let link = Link::new(url, OP, hb / 2)?;
    let keys = Keys::new("t");
    let reg = Registry::new(link.clone(), keys.clone(), id.into(), hb);
    let (stop, rx) = watch::channel(false);
    reg.spawn(Arc::new(move || record(tracker, 0)), rx);
    let dir = Directory::new(reg.clone(), link.clone(), keys, Duration::from_secs(60));
    Ok(Node { reg, dir, link, stop })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_drops_a_dead_node_within_two_heartbeats_and_survives_a_restart() -> anyhow::Result<()> {
    let dir = TestDir::new("registry_drops_a_dead_node_within_two_heartbeats_and_survives_a_restart")?;
    let mut redis = RedisServer::start(dir.path())?;
    let hb = Duration::from_millis(400);
    let a = node(&redis.url(), "a", "ws://10.0.0.1:1/v1/tracker", hb)?;
    let b = node(&redis.url(), "b", "ws://10.0.0.2:1/v1/tracker", hb)?;
    let c = node(&redis.url(), "c", "ws://10.0.0.3:1/v1/tracker", hb)?;
    let events: Arc<Mutex<Vec<(NodeEvent, Instant)>>> = Arc::default();
    let e = events.clone();
    a.reg.on_event(Arc::new(move |ev| e.lock().unwrap().push((ev.clone(), Instant::now()))));
    assert!(wait_until(Duration::from_secs(5), || a.reg.view().nodes.len() == 3).await, "{:?}", a.reg.view());
    let view = a.reg.view();
    assert_eq!(view.with_role("tracker").count(), 3);
    assert_eq!(a.dir.pingback("s1").len(), 3);
    assert_eq!(a.dir.api().len(), 3);

    // c dies without a goodbye: its link goes away, heartbeats stop.
    let died = Instant::now();
    c.link.close().await;
    let gone = wait_until(Duration::from_secs(5), || !a.reg.view().nodes.contains_key("c")).await;
    assert!(gone, "dead node still listed");
    let seen = died.elapsed();
    println!("dead node gone from the view after {seen:?} (heartbeat {hb:?})");
    // Record TTL is 2 heartbeats after its last write (≤ 2 hb after death), plus one read.
    assert!(seen <= hb * 3 + Duration::from_millis(300), "{seen:?}");
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|(ev, _)| matches!(ev, NodeEvent::Left { id, .. } if id == "c")));

    // A clean stop removes the record at once.
    let _ = b.stop.send(true);
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(3), || !a.reg.view().nodes.contains_key("b")).await);
    assert!(t.elapsed() <= hb * 2, "clean stop seen after {:?}", t.elapsed());

    // Redis restarts empty: the view is kept meanwhile (stale), then rebuilt from the
    // heartbeats, without restarting anything.
    redis.kill()?;
    assert!(wait_until(Duration::from_secs(3), || a.reg.view().stale).await);
    assert!(a.reg.view().nodes.contains_key("a"), "the last view is kept during the outage");
    redis.restart(None)?;
    let d = node(&redis.url(), "d", "ws://10.0.0.4:1/v1/tracker", hb)?;
    let rebuilt = wait_until(Duration::from_secs(10), || {
        let v = a.reg.view();
        !v.stale && v.nodes.contains_key("a") && v.nodes.contains_key("d")
    })
    .await;
    assert!(rebuilt, "registry not rebuilt: {:?}", a.reg.view());
    assert!(wait_until(Duration::from_secs(3), || d.reg.view().nodes.contains_key("a")).await);
    drop((b, d));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignment_is_the_same_everywhere_sticky_and_moves_to_the_standby() -> anyhow::Result<()> {
    let dir = TestDir::new("assignment_is_the_same_everywhere_sticky_and_moves_to_the_standby")?;
    let redis = RedisServer::start(dir.path())?;
    let hb = Duration::from_millis(300);
    let urls = ["ws://10.0.0.1:1/v1/tracker", "ws://10.0.0.2:1/v1/tracker", "ws://10.0.0.3:1/v1/tracker"];
    let a = node(&redis.url(), "a", urls[0], hb)?;
    let b = node(&redis.url(), "b", urls[1], hb)?;
    let c = node(&redis.url(), "c", urls[2], hb)?;
    for n in [&a, &b, &c] {
        assert!(wait_until(Duration::from_secs(5), || n.reg.view().nodes.len() == 3).await);
    }
    // Every API node gives the same answer for every stream.
    for s in 0..50 {
        let stream = format!("s{s}");
        let x = a.dir.assign(&stream, 3);
        assert_eq!(x.len(), 3);
        assert_eq!(x, b.dir.assign(&stream, 3), "{stream}");
        assert_eq!(x, c.dir.assign(&stream, 3), "{stream}");
    }
    let first = a.dir.assign("demo", 3);
    assert!(
        wait_until(Duration::from_secs(3), || {
            futures::executor::block_on(a.dir.stored("demo")).is_some()
        })
        .await
    );
    assert_eq!(a.dir.stored("demo").await.as_deref(), Some(&first[..]), "claimed in Redis");

    // The primary dies: joins go to the first standby, and that is written back.
    let primary = first[0].clone();
    let dead = [&a, &b, &c]
        .into_iter()
        .find(|n| n.reg.view().nodes[n.reg.id()].tracker.as_deref() == Some(&primary));
    let dead = dead.expect("the primary is one of the nodes");
    let dead_id = dead.reg.id().to_owned();
    dead.link.close().await;
    let alive: Vec<&Node> = [&a, &b, &c].into_iter().filter(|n| n.reg.id() != dead_id).collect();
    assert!(wait_until(Duration::from_secs(5), || !alive[0].reg.view().nodes.contains_key(&dead_id)).await);
    assert!(wait_until(Duration::from_secs(5), || !alive[1].reg.view().nodes.contains_key(&dead_id)).await);
    let moved = alive[0].dir.assign("demo", 3);
    assert_eq!(moved, first[1..].to_vec(), "the standby leads, in the stored order");
    assert_eq!(alive[1].dir.assign("demo", 3), moved);
    // (Joins keep coming; each one retries the write-back until it is done.)
    let stored = wait_until(Duration::from_secs(3), || {
        alive[0].dir.assign("demo", 3);
        futures::executor::block_on(alive[0].dir.stored("demo")).is_some_and(|s| s[0] == first[1])
    })
    .await;
    assert!(stored, "new order written back: {:?}", alive[0].dir.stored("demo").await);

    // The old primary comes back (same URL): the swarm stays on the standby.
    let back = node(&redis.url(), &dead_id, Box::leak(primary.clone().into_boxed_str()), hb)?;
    assert!(wait_until(Duration::from_secs(5), || alive[0].reg.view().nodes.contains_key(&dead_id)).await);
    tokio::time::sleep(Duration::from_millis(5_500)).await; // past the cache refresh
    for n in [alive[0], alive[1], &back] {
        let got = n.dir.assign("demo", 3);
        assert_eq!(got[0], first[1], "the returning node did not take the swarm back");
        assert_eq!(got.len(), 3, "it is listed again, as the last standby: {got:?}");
    }
    // A new stream may go to it (weighted rendezvous over all live nodes).
    assert!((0..60).any(|i| back.dir.assign(&format!("new{i}"), 1)[0] == primary));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_node_gets_fewer_new_swarms() -> anyhow::Result<()> {
    let dir = TestDir::new("a_loaded_node_gets_fewer_new_swarms")?;
    let redis = RedisServer::start(dir.path())?;
    let hb = Duration::from_millis(300);
    let keys = Keys::new("t");
    let mut nodes = Vec::new();
    for (i, conns) in [(0, 900u64), (1, 0), (2, 0)] {
        let link = Link::new(&redis.url(), OP, hb / 2)?;
        let reg = Registry::new(link.clone(), keys.clone(), format!("n{i}"), hb);
        let (stop, rx) = watch::channel(false);
        let url: &'static str = Box::leak(format!("ws://10.0.0.{i}:1/v1/tracker").into_boxed_str());
        reg.spawn(Arc::new(move || record(url, conns)), rx);
        nodes.push((reg, link, stop));
    }
    let (reg, link, _) = &nodes[0];
    let d = Directory::new(reg.clone(), link.clone(), keys, Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(5), || reg.view().nodes.len() == 3).await);
    let hot = (0..3000)
        .filter(|i| d.candidates().is_empty() || rank_first(&d, *i) == "ws://10.0.0.0:1/v1/tracker")
        .count();
    // Weights 0.1 : 1 : 1 → the hot node should get about 1/21 of new streams.
    println!("hot node got {hot} of 3000 new streams");
    assert!(hot < 300, "{hot}");
    assert!(hot > 40, "it still gets some: {hot}");
    Ok(())
}

fn rank_first(d: &Directory, i: usize) -> String {
    shoal_api::rendezvous::rank(&format!("x{i}"), &d.candidates(), 1).remove(0)
}
