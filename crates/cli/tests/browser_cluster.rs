//! Two headless-Chromium pages with the browser SDK on a three-node cluster (real
//! redis-server, synthetic origin, every node running every role, all inside one network
//! namespace). On a schedule while they play: the swarm's tracker node is killed, then Redis
//! is stopped and started again. Asserted: both pages play without a stall, they share before
//! and after, they re-announce on the standby within a bound (seen from the cluster registry:
//! the standby's tracker connections), and every node reconnects to Redis with a whole registry
//! without a restart.

mod browser_support;
mod cluster_support;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use browser_support::{
    assert_plays_smoothly, chromium_feature_args, sdk_init_script, sdk_line, sdk_report, shoal_bin,
    wait_for_segments, web_dist, LADDER, MIN_SEGMENTS,
};
use cluster_support::{node_ids, spawn_node, status, NodeSpec};
use shoal_testkit::browser::{self, PlayConfig, ServeDir, ViewerSpec};
use shoal_testkit::redis::RedisServer;
use shoal_testkit::{Netns, Proc, SyntheticOrigin, TestDir, VETH_ADDR};

const DURATION_MS: u64 = 45_000;
/// The tracker node dies this long after the pages open (both share by then).
const KILL_AT: Duration = Duration::from_secs(16);
/// Redis stops this long after the pages open, for 3 s.
const REDIS_AT: Duration = Duration::from_secs(28);
/// Pages back on a tracker after the kill: the socket closes, the SDK moves to the next URL at
/// once; the registry shows it at the standby's next heartbeat (500 ms) — 5 s is the margin.
const REANNOUNCE_MAX: Duration = Duration::from_secs(5);

/// Free TCP port inside `ns`.
fn ns_port(ns: &Netns) -> anyhow::Result<u16> {
    let h = ns.spawn_thread(|| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()))?;
    let addr = h.join().map_err(|_| anyhow::anyhow!("port thread panicked"))??;
    Ok(addr.port())
}

/// Tracker connections the node with `id` reports in the registry, as `base` sees it.
fn connections(ns: &Netns, base: &str, id: &str) -> u64 {
    status(Some(ns), base)
        .ok()
        .and_then(|st| {
            st["nodes"].as_array().and_then(|n| {
                n.iter().find(|r| r["id"] == id).and_then(|r| r["load"]["connections"].as_u64())
            })
        })
        .unwrap_or(0)
}

#[test]
fn browser_cluster_pages_survive_a_tracker_kill_and_a_redis_restart() -> anyhow::Result<()> {
    let dir = TestDir::new("browser_cluster_pages_survive_a_tracker_kill_and_a_redis_restart")?;
    let ns = Netns::new()?;
    let redis_port = ns_port(&ns)?;
    let mut redis = RedisServer::start_on(dir.path(), Some(&ns), "127.0.0.1", redis_port)?;
    let origin = SyntheticOrigin::start(shoal_bin(), dir.path(), Some(&ns), "127.0.0.1:0", LADDER)?;
    let (key, master) = (&origin.key, origin.master.clone());

    let mut specs = Vec::new();
    for i in 0..3 {
        let mut s = NodeSpec::new(
            &format!("n{i}"),
            "api,tracker,stun,pingback",
            &format!("127.0.0.1:{}", ns_port(&ns)?),
        );
        s.stun = Some(format!("{VETH_ADDR}:{}", ns_port(&ns)?));
        s.sets = vec![
            format!("api.origin_public_key={key}"),
            format!("api.cdn=[\"{}/live/{{stream}}/\"]", origin.url),
        ];
        specs.push(s);
    }
    let mut nodes: Vec<Option<Proc>> = Vec::new();
    for s in &specs {
        nodes.push(Some(spawn_node(&dir, Some(&ns), s, &redis.url(), 0)?));
    }
    let all: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    cluster_support::wait_for(Duration::from_secs(10), "every node registered", || {
        status(Some(&ns), &specs[0].url()).map(|st| node_ids(&st) == all).unwrap_or(false)
    })?;
    // Where the stream's swarm will live: the first join fixes (and stores) the assignment.
    let join = ns.run(
        "curl",
        &[
            "-s",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"stream":"demo"}"#,
            &format!("{}/v1/join", specs[1].url()),
        ],
    )?;
    let join: serde_json::Value = serde_json::from_str(&join).context("join answer")?;
    let trackers: Vec<String> = join["trackers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    ensure!(trackers.len() == 3, "three trackers: {join}");
    let node_of = |url: &str| specs.iter().position(|s| url.contains(&s.listen)).context("a node's URL");
    let (primary, standby) = (node_of(&trackers[0])?, node_of(&trackers[1])?);
    let watcher = (0..3).find(|i| *i != primary && *i != standby).context("third node")?;
    let first = LADDER.split(':').next().unwrap_or("240p");
    wait_for_segments(&ns, &format!("{}/live/demo/{first}/index.m3u8", origin.url), MIN_SEGMENTS)?;

    let apis: Vec<String> = specs.iter().map(NodeSpec::url).collect();
    let script = sdk_init_script(dir.path(), serde_json::json!({ "api": apis }))?;
    let mut cfg = PlayConfig::new(master, Duration::from_millis(DURATION_MS), 0);
    for (id, at) in [("page0", 0), ("page1", 1_500)] {
        cfg.viewers.push(ViewerSpec {
            open_at_ms: at,
            init_scripts: vec![script.clone()],
            ..ViewerSpec::new(id)
        });
    }
    cfg.serve.push(ServeDir { prefix: "/__shoal_test/sdk/".into(), dir: web_dist()? });
    cfg.extra_chromium_args = chromium_feature_args(false);

    let mut killed_node = nodes[primary].take().context("primary running")?;
    let watch_url = specs[watcher].url();
    let standby_id = specs[standby].name.clone();
    let primary_id = specs[primary].name.clone();
    let node_names = all.clone();
    let (report, chaos) = std::thread::scope(|s| {
        let ns = &ns;
        let redis = &mut redis;
        let chaos = s.spawn(move || -> anyhow::Result<(Duration, Duration, u64)> {
            let t0 = Instant::now();
            // Both pages on the primary before it dies.
            let before = loop {
                let c = connections(ns, &watch_url, &primary_id);
                if c >= 2 || t0.elapsed() >= KILL_AT {
                    break c;
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            std::thread::sleep(KILL_AT.saturating_sub(t0.elapsed()));
            killed_node.kill()?;
            let killed = Instant::now();
            let moved = loop {
                if connections(ns, &watch_url, &standby_id) >= 2 {
                    break killed.elapsed();
                }
                ensure!(killed.elapsed() < Duration::from_secs(20), "the pages never reached the standby");
                std::thread::sleep(Duration::from_millis(100));
            };
            std::thread::sleep(REDIS_AT.saturating_sub(t0.elapsed()));
            redis.kill()?;
            std::thread::sleep(Duration::from_secs(3));
            redis.restart(Some(ns))?;
            let back = Instant::now();
            let live: Vec<String> = node_names.iter().filter(|n| **n != primary_id).cloned().collect();
            loop {
                let whole = status(Some(ns), &watch_url)
                    .map(|st| {
                        st["redis"]["up"] == true && node_ids(&st) == live && st["view"]["stale"] == false
                    })
                    .unwrap_or(false);
                if whole {
                    break;
                }
                ensure!(
                    back.elapsed() < Duration::from_secs(15),
                    "registry not rebuilt after Redis came back"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok((moved, back.elapsed(), before))
        });
        let report = browser::play(ns, &dir, "play", &cfg);
        (report, chaos.join())
    });
    let report = report?;
    let (moved, rebuilt, before) = chaos.map_err(|_| anyhow::anyhow!("chaos thread panicked"))??;
    println!(
        "BROWSER CLUSTER: pages on the primary before the kill: {before}; both on the standby {moved:?} after it (bound {REANNOUNCE_MAX:?}); registry whole {rebuilt:?} after Redis came back"
    );
    assert_eq!(before, 2, "both pages connected to the primary tracker before the kill");
    assert!(moved <= REANNOUNCE_MAX, "re-announce on the standby took {moved:?}");
    for (i, n) in nodes.iter_mut().enumerate() {
        if let Some(p) = n {
            assert!(p.try_exit()?.is_none(), "node n{i} kept running through the Redis restart");
        }
    }
    let mut p2p = 0;
    for v in &report.viewers {
        println!("{}", v.one_line());
        let r = sdk_report(v)?;
        println!("  {}", sdk_line(&v.id, &r));
        assert_plays_smoothly(v);
        assert!(r.stats.p2p, "viewer {}: P2P off ({:?})", v.id, r.stats.p2p_reason);
        assert_eq!(r.stats.verify_failures, 0, "viewer {}", v.id);
        assert!(r.stats.segments > 15, "viewer {}: too little played", v.id);
        p2p += r.stats.p2p_bytes;
    }
    assert!(p2p > 0, "the pages shared nothing");
    Ok(())
}
