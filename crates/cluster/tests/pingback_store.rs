//! Pingback windows and the duplicate ledger in a real Redis, shared by two "nodes".

use std::time::Duration;

use shoal_cluster::pbstore::{RedisLedger, RedisStore};
use shoal_cluster::{Keys, Link};
use shoal_pingback::agg::Aggregate;
use shoal_pingback::store::{Claim, ClaimRequest, Dims, KeyFilter, Ledger, Query, Store};
use shoal_pingback::PingbackConfig;
use shoal_proto::pingback::GroupKey;
use shoal_testkit::redis::RedisServer;
use shoal_testkit::TestDir;

fn key(stream: &str, platform: &str) -> GroupKey {
    GroupKey {
        stream: stream.into(),
        rendition: "720p".into(),
        locality: "isp-a".into(),
        platform: platform.into(),
        group: "p2p".into(),
    }
}

fn part(http: f64, p2p: f64, reports: u64) -> Aggregate {
    let mut a = Aggregate {
        http_bytes: http,
        p2p_down_bytes: p2p,
        session_ms: 10_000.0,
        play_ms: 10_000.0,
        reports,
        ..Default::default()
    };
    if reports > 0 {
        a.startup.record(650);
        a.latency.record(6_000);
    }
    a
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

fn total(r: &shoal_pingback::store::QueryResult) -> Aggregate {
    let mut a = Aggregate::default();
    for steps in r.values() {
        for s in steps.values() {
            a.merge(s);
        }
    }
    a
}

async fn link(url: &str) -> anyhow::Result<Link> {
    let l = Link::new(url, Duration::from_millis(500), Duration::from_millis(150))?;
    anyhow::ensure!(l.wait_healthy(Duration::from_secs(5)).await, "redis link not up");
    Ok(l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_fill_the_same_windows() -> anyhow::Result<()> {
    let dir = TestDir::new("two_nodes_fill_the_same_windows")?;
    let mut redis = RedisServer::start(dir.path())?;
    // 16 keys per window: 2 per shard.
    let cfg = PingbackConfig { max_keys_per_window: 16, ..Default::default() };
    let keys = Keys::new("pb");
    let (l1, l2) = (link(&redis.url()).await?, link(&redis.url()).await?);
    let s1 = RedisStore::new(l1.clone(), keys.clone(), "n1".into(), &cfg);
    let s2 = RedisStore::new(l2.clone(), keys.clone(), "n2".into(), &cfg);
    let now = now_ms();
    let w = now - now % 10_000;

    // Each node counts reports of the same window and key: one figure everywhere.
    s1.add(now, vec![(w, key("demo", "web"), part(100.0, 300.0, 1))]).await?;
    s2.add(now, vec![(w, key("demo", "web"), part(50.0, 150.0, 1))]).await?;
    s2.add(now, vec![(w - 10_000, key("demo", "linux"), part(7.0, 0.0, 0))]).await?;
    let q = Query {
        from_ms: w - 10_000,
        to_ms: w + 10_000,
        step_ms: 10_000,
        filter: KeyFilter { stream: Some("demo".into()), ..Default::default() },
        by: Dims::parse("stream,platform").map_err(anyhow::Error::msg)?,
    };
    for s in [&s1, &s2] {
        let r = s.query(&q).await?;
        assert_eq!(r.len(), 2, "{r:?}");
        let web = r.iter().find(|(k, _)| k.platform == "web").map(|(_, v)| v).expect("web series");
        let a = &web[&w];
        assert_eq!((a.http_bytes, a.p2p_down_bytes, a.reports), (150.0, 450.0, 2));
        assert_eq!(a.startup.count(), 2);
        assert!(a.figures(10_000).offload.is_some_and(|o| (o - 0.75).abs() < 1e-9));
        let linux = r.iter().find(|(k, _)| k.platform == "linux").map(|(_, v)| v).expect("linux series");
        assert_eq!(linux[&(w - 10_000)].http_bytes, 7.0);
    }
    let by_node = s1.reports_by_node(w).await?;
    assert_eq!(by_node.get("n1"), Some(&1));
    assert_eq!(by_node.get("n2"), Some(&1));

    // Too many keys in one window fold into `_other` like the in-memory store; nothing lost.
    let parts: Vec<_> = (0..60).map(|i| (w, key(&format!("s{i}"), "web"), part(1.0, 0.0, 0))).collect();
    s1.add(now, parts).await?;
    let all = Query { filter: KeyFilter::default(), by: Dims::default(), ..q.clone() };
    let t = total(&s2.query(&all).await?);
    assert_eq!(t.http_bytes, 150.0 + 7.0 + 60.0, "folding keeps every byte");
    let every = Query { by: Dims::parse("stream").map_err(anyhow::Error::msg)?, ..all.clone() };
    let streams = s2.query(&every).await?.len();
    assert!(streams <= 16 + 8 + 2, "61 streams folded into {streams} series");
    assert!(s1.stats().keys_folded > 0);

    // Redis down: reports are still accepted (kept locally) and counted in this node's
    // answers; when Redis is back they are written and every node sees them.
    redis.kill()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s1.add(now_ms(), vec![(w, key("demo", "web"), part(1000.0, 0.0, 1))]).await?;
    assert!(s1.pending_parts() > 0);
    let during = total(&s1.query(&q).await?);
    assert_eq!(during.http_bytes, 157.0 + 1000.0 - 7.0 + 7.0, "cache + local during the outage: {during:?}");
    redis.restart(None)?;
    assert!(l1.wait_healthy(Duration::from_secs(10)).await);
    assert!(l2.wait_healthy(Duration::from_secs(10)).await);
    s1.prune(now_ms()).await; // the periodic tick flushes
    assert_eq!(s1.pending_parts(), 0);
    let after = total(&s2.query(&Query { from_ms: w, ..q.clone() }).await?);
    assert_eq!(after.http_bytes, 1000.0, "the restarted Redis holds what was kept during the outage");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_counts_a_report_once_whichever_node_gets_it() -> anyhow::Result<()> {
    let dir = TestDir::new("the_ledger_counts_a_report_once_whichever_node_gets_it")?;
    let redis = RedisServer::start(dir.path())?;
    let cfg = PingbackConfig::default();
    let keys = Keys::new("pb");
    let a = RedisLedger::new(link(&redis.url()).await?, keys.clone(), &cfg);
    let b = RedisLedger::new(link(&redis.url()).await?, keys, &cfg);
    let t0 = now_ms();
    let c = |seq, now_ms, has_startup| ClaimRequest {
        session_id: "sess-1",
        seq,
        period_ms: 10_000,
        has_startup,
        now_ms,
    };
    assert_eq!(a.claim(c(1, t0, true)).await?, Claim::New { startup: true });
    assert_eq!(b.claim(c(1, t0 + 100, true)).await?, Claim::Duplicate, "resent to another node");
    assert_eq!(b.claim(c(3, t0 + 20_000, false)).await?, Claim::New { startup: false });
    assert_eq!(
        a.claim(c(2, t0 + 20_100, true)).await?,
        Claim::New { startup: false },
        "late, startup counted once"
    );
    assert_eq!(a.claim(c(2, t0 + 20_200, false)).await?, Claim::Duplicate);
    assert_eq!(b.claim(c(60, t0 + 30_000, false)).await?, Claim::New { startup: false });
    assert_eq!(b.claim(c(3, t0 + 30_000, false)).await?, Claim::Duplicate, "older than the window");
    // More time than has passed: refused.
    let big =
        ClaimRequest { session_id: "sess-2", seq: 1, period_ms: 10_000, has_startup: false, now_ms: t0 };
    assert_eq!(a.claim(big).await?, Claim::New { startup: false });
    let big =
        ClaimRequest { seq: 2, period_ms: shoal_proto::pingback::MAX_PERIOD_MS, now_ms: t0 + 1_000, ..big };
    assert_eq!(b.claim(big).await?, Claim::Implausible);
    assert!(a.sessions() >= 1 && b.sessions() >= 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batching_node_writes_merged_parts_and_every_node_sees_them() -> anyhow::Result<()> {
    let dir = TestDir::new("a_batching_node_writes_merged_parts_and_every_node_sees_them")?;
    let redis = RedisServer::start(dir.path())?;
    let cfg = PingbackConfig::default();
    let keys = Keys::new("pbb");
    let (l1, l2) = (link(&redis.url()).await?, link(&redis.url()).await?);
    let s1 = std::sync::Arc::new(RedisStore::new(l1.clone(), keys.clone(), "n1".into(), &cfg));
    let s2 = RedisStore::new(l2, keys, "n2".into(), &cfg);
    s1.batch(Duration::from_millis(100));
    let now = now_ms();
    let w = now - now % 10_000;
    let q = Query {
        from_ms: w,
        to_ms: w + 10_000,
        step_ms: 10_000,
        filter: KeyFilter::default(),
        by: Dims::default(),
    };
    let ops = |l: &Link| l.stats().ops;
    let before = ops(&l1);
    // 200 reports of two keys: merged into two parts before they reach Redis.
    for i in 0..200 {
        let platform = if i % 2 == 0 { "web" } else { "linux" };
        s1.add(now, vec![(w, key("demo", platform), part(10.0, 30.0, 1))]).await?;
    }
    // This node counts what it has not written yet in its own answers.
    assert_eq!(total(&s1.query(&q).await?).reports, 200);
    let t = std::time::Instant::now();
    let mut seen = 0;
    while t.elapsed() < Duration::from_secs(3) {
        seen = total(&s2.query(&q).await?).reports;
        if seen == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 200, "the other node sees every report after a flush");
    let a = total(&s2.query(&q).await?);
    assert_eq!((a.http_bytes, a.p2p_down_bytes), (2_000.0, 6_000.0));
    assert_eq!(s1.reports_by_node(w).await?.get("n1"), Some(&200), "reports per node add up");
    // Round trips to Redis: a handful of flushes and reads, not one per report.
    let trips = ops(&l1) - before;
    assert!(trips < 60, "{trips} round trips for 200 reports");
    Ok(())
}
