//! Three `shoal serve` nodes and a real `redis-server` on loopback: one registry, the same join
//! answer on every API node, a killed node gone within two heartbeats and its swarm moved to
//! the standby for good, pingback figures shared, and a Redis restart that needs no node
//! restart.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{node_ids, spawn_node, status, wait_for, NodeSpec, TICKETS};
use serde_json::json;
use shoal_proto::api::JoinResponse;
use shoal_proto::manifest::key_to_b64;
use shoal_proto::SigningKey;
use shoal_testkit::redis::RedisServer;
use shoal_testkit::TestDir;

fn origin_pub() -> String {
    key_to_b64(SigningKey::from_bytes(&[5u8; 32]).verifying_key().as_bytes())
}

async fn join(http: &reqwest::Client, base: &str) -> anyhow::Result<JoinResponse> {
    let r = http.post(format!("{base}/v1/join")).json(&json!({"stream": "demo"})).send().await?;
    anyhow::ensure!(r.status().is_success(), "{base}: HTTP {}", r.status());
    Ok(r.json().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_of_three_nodes_survives_a_node_and_a_redis_restart() -> anyhow::Result<()> {
    let dir = TestDir::new("cluster_of_three_nodes_survives_a_node_and_a_redis_restart")?;
    let mut redis = RedisServer::start(dir.path())?;
    let mut specs = Vec::new();
    for i in 0..3 {
        let port = cluster_support::free_port()?;
        let stun = cluster_support::free_port()?;
        let mut s =
            NodeSpec::new(&format!("n{i}"), "api,tracker,stun,pingback", &format!("127.0.0.1:{port}"));
        s.stun = Some(format!("127.0.0.1:{stun}"));
        s.sets = vec![
            format!("api.origin_public_key={}", origin_pub()),
            "api.cdn=http://cdn-a.test/live/{stream}/,http://cdn-b.test/live/{stream}/".into(),
            "pingback.window_s=1".into(),
            "pingback.interval_ms=1000".into(),
        ];
        specs.push(s);
    }
    let mut procs = Vec::new();
    for s in &specs {
        procs.push(Some(spawn_node(&dir, None, s, &redis.url(), 1)?));
    }
    let all: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    for s in &specs {
        let took = wait_for(Duration::from_secs(10), "every node sees the others", || {
            status(None, &s.url()).map(|st| node_ids(&st) == all).unwrap_or(false)
        })?;
        println!("{} sees the cluster after {took:?}", s.name);
    }

    // Every API node gives the same answer: trackers (primary + standbys), and lists of the
    // live API, STUN and pingback nodes to fail over to.
    let http = reqwest::Client::new();
    let first = join(&http, &specs[0].url()).await?;
    assert_eq!(first.trackers.len(), 3, "{:?}", first.trackers);
    for s in &specs[1..] {
        let j = join(&http, &s.url()).await?;
        assert_eq!(j.trackers, first.trackers, "same assignment on {}", s.name);
        assert_eq!(j.api.len(), 3, "{:?}", j.api);
        assert_eq!(j.stun.len(), 3, "{:?}", j.stun);
        assert_eq!(j.pingback.alternates.len(), 2, "{:?}", j.pingback);
        assert!(j.p2p, "{:?}", j.p2p_reason);
    }
    let tracker_of =
        |url: &str| specs.iter().position(|s| url.contains(&s.listen)).expect("a node's tracker");
    let primary = tracker_of(&first.trackers[0]);
    let standby = tracker_of(&first.trackers[1]);

    // A report to one pingback node shows on every node's figures.
    let report = json!([{"v": 1, "session_id": first.session_id, "ticket": first.ticket, "seq": 1, "stream": "demo",
        "rendition": "720p", "p2p": true, "platform": "linux", "sdk": "test", "sdk_version": "0", "period_ms": 1000,
        "http_bytes": 1000, "p2p_down_bytes": 3000, "play_ms": 1000}]);
    let r = http.post(&first.pingback.url).body(report.to_string()).send().await?;
    assert!(r.status().is_success(), "pingback: HTTP {}", r.status());
    let ack: serde_json::Value = r.json().await?;
    assert_eq!(ack["accepted"], 1, "{ack}");
    let other = &first.pingback.alternates[0];
    let base = other.trim_end_matches("/v1/pingback");
    let mut p2p = 0.0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let w: serde_json::Value =
            http.get(format!("{base}/v1/pingback/windows?last_s=60&by=stream")).send().await?.json().await?;
        p2p = w["series"][0]["points"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["p2p_bytes"].as_f64().unwrap_or(0.0))
            .sum();
        if p2p > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let w = http.get(format!("{base}/v1/pingback/windows?last_s=60&by=stream")).send().await?.text().await?;
    assert_eq!(p2p, 3000.0, "another node's figures include the report: {w}");

    // Kill the primary tracker's node: gone from every view within two heartbeats (1 s here,
    // plus one read), and new joins go to the standby.
    let killed = Instant::now();
    procs[primary].take().expect("running").kill()?;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != primary).collect();
    for &i in &survivors {
        let took = wait_for(Duration::from_secs(5), "the dead node leaves the view", || {
            status(None, &specs[i].url())
                .map(|st| !node_ids(&st).contains(&specs[primary].name))
                .unwrap_or(false)
        })?;
        let since_kill = killed.elapsed();
        println!("{} dropped the dead node {since_kill:?} after the kill (waited {took:?})", specs[i].name);
        assert!(
            since_kill < Duration::from_millis(1_500 + 500),
            "two heartbeats (1 s) + a read: {since_kill:?}"
        );
    }
    for &i in &survivors {
        let j = join(&http, &specs[i].url()).await?;
        assert_eq!(tracker_of(&j.trackers[0]), standby, "the first standby leads now");
        assert_eq!(j.trackers.len(), 2);
        assert_eq!(j.api.len(), 2);
    }

    // It comes back (same URL): listed again, but the swarm stays on the standby.
    procs[primary] = Some(spawn_node(&dir, None, &specs[primary], &redis.url(), 2)?);
    wait_for(Duration::from_secs(5), "the node is back", || {
        status(None, &specs[standby].url()).map(|st| node_ids(&st) == all).unwrap_or(false)
    })?;
    tokio::time::sleep(Duration::from_secs(6)).await; // past every cache refresh
    for s in &specs {
        let j = join(&http, &s.url()).await?;
        assert_eq!(tracker_of(&j.trackers[0]), standby, "{}: no split back to the returning node", s.name);
        assert_eq!(j.trackers.len(), 3);
    }

    // Redis restarts: joins keep working from local state during the outage (same answer),
    // and afterwards every node reconnects and the registry is whole again, with no restart.
    redis.kill()?;
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    for s in &specs {
        let j = join(&http, &s.url()).await?;
        assert_eq!(tracker_of(&j.trackers[0]), standby, "{} during the outage", s.name);
        let st = status(None, &s.url())?;
        assert_eq!(st["redis"]["up"], false, "{} noticed the outage", s.name);
    }
    redis.restart(None)?;
    let restarted = Instant::now();
    for s in &specs {
        let took = wait_for(Duration::from_secs(10), "reconnected with a whole registry", || {
            status(None, &s.url())
                .map(|st| st["redis"]["up"] == true && node_ids(&st) == all && st["view"]["stale"] == false)
                .unwrap_or(false)
        })?;
        println!("{}: Redis back and registry rebuilt {took:?} after the restart", s.name);
    }
    println!(
        "outage lasted {:?}; cluster whole {:?} after Redis came back",
        restarted - down,
        restarted.elapsed()
    );
    // The assignment was lost with Redis: the next joins agree again on every node.
    let a = join(&http, &specs[0].url()).await?;
    for s in &specs[1..] {
        assert_eq!(join(&http, &s.url()).await?.trackers, a.trackers);
    }
    let _ = TICKETS;
    Ok(())
}
