//! A real network partition: Redis, three `shoal serve` nodes (every role) and the viewers
//! (a synthetic origin and three native peers) each in their own network namespace on one LAN.
//! The node that hosts the swarm is cut off (nftables in its namespace drops everything but
//! loopback: no FIN, no RST — silence, as a partition looks), then healed.
//!
//! Asserted: the peers leave the silent tracker and re-announce on a standby within a bound;
//! the other nodes drop the cut-off node from the registry; the cut-off node keeps running and
//! reconnects to Redis by itself once healed; afterwards every node (the healed one included)
//! sends new joins to where the swarm is — it is not split in two; no peer stalls.

mod cluster_support;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use cluster_support::{node_ids, spawn_node, status, wait_for, NodeSpec, Peer, SHOAL};
use serde_json::Value;
use shoal_testkit::redis::RedisServer;
use shoal_testkit::{Netns, Proc, SyntheticOrigin, TestDir, Topology};

/// A silent tracker is left after `IDLE_PING + REPLY_TIMEOUT` = 8 s in the SDK; the status
/// lines come every 250 ms; the rest is margin for a loaded 2-core machine.
const REANNOUNCE_MAX: Duration = Duration::from_secs(16);
const PARTITION: Duration = Duration::from_secs(14);

fn poll_all(peers: &mut [Peer], d: Duration) {
    let until = Instant::now() + d;
    loop {
        for p in peers.iter_mut() {
            p.poll();
        }
        if Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn report(peers: &[Peer]) -> String {
    peers.iter().map(|p| format!("{}: {}\n", p.proc.name(), p.last())).collect()
}

/// The tracker list a join on `base` answers (curl from `ns`).
fn join_trackers(ns: &Netns, base: &str) -> Result<Vec<String>> {
    let out = ns.run(
        "curl",
        &[
            "-s",
            "--max-time",
            "5",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"stream":"demo"}"#,
            &format!("{base}/v1/join"),
        ],
    )?;
    let j: Value = serde_json::from_str(&out).with_context(|| format!("{base}: join answer {out:?}"))?;
    Ok(j["trackers"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect())
}

const CUT: &str = "table inet shoal_partition {
  chain input { type filter hook input priority 0; policy drop; iif \"lo\" accept; }
  chain output { type filter hook output priority 0; policy drop; oif \"lo\" accept; }
}
";

#[test]
fn cluster_partition_of_the_swarms_node_fails_over_and_heals_without_a_split() -> Result<()> {
    let started = Instant::now();
    let dir = TestDir::new("cluster_partition")?;
    let topo = Topology::builder()
        .lan("net", "10.99.0.0/24")
        .host("redis", "net")
        .host("n0", "net")
        .host("n1", "net")
        .host("n2", "net")
        .host("viewers", "net")
        .build()?;
    let raddr = topo.addr("redis").to_string();
    let redis = RedisServer::start_on(dir.path(), Some(topo.ns("redis")), &raddr, 6379)?;
    let vns = topo.ns("viewers");
    let vaddr = topo.addr("viewers").to_string();
    let origin =
        SyntheticOrigin::start(SHOAL, dir.path(), Some(vns), &format!("{vaddr}:0"), "360p:640x360@800")?;
    let (key, cdn, master) = (&origin.key, &origin.url, origin.master.clone());

    let names = ["n0", "n1", "n2"];
    let mut specs = Vec::new();
    let mut nodes = Vec::new();
    for n in names {
        let a = topo.addr(n);
        let mut s = NodeSpec::new(n, "api,tracker,stun,pingback", &format!("{a}:8080"));
        s.stun = Some(format!("{a}:3478"));
        s.sets =
            vec![format!("api.origin_public_key={key}"), format!("api.cdn=[\"{cdn}/live/{{stream}}/\"]")];
        nodes.push(spawn_node(&dir, Some(topo.ns(n)), &s, &redis.url(), 0)?);
        specs.push(s);
    }
    let all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    wait_for(Duration::from_secs(10), "every node registered", || {
        status(Some(vns), &specs[0].url()).map(|st| node_ids(&st) == all).unwrap_or(false)
    })?;

    let mut peers = Vec::new();
    for i in 0..3 {
        let api: Vec<String> = (0..3).map(|k| specs[(i + k) % 3].url()).collect();
        let mut p = Proc::builder(&format!("peer{i}"), SHOAL)
            .args(["play", &master, "--headless", "--duration", "300", "--status-every", "0.25"])
            .args(["--api", &api.join(","), "--udp", &format!("{vaddr}:0")])
            .env("RUST_LOG", "info,str0m=warn")
            .netns(vns)
            .log_dir(dir.path())
            .spawn()?;
        p.wait_ready("PLAY", Duration::from_secs(30))?;
        peers.push(Peer::new(p));
    }
    let t = Instant::now();
    loop {
        poll_all(&mut peers, Duration::from_millis(200));
        let on = peers.iter().all(|p| !p.tracker().is_empty() && p.last()["peers"].as_u64().unwrap_or(0) > 0);
        if on && peers.iter().any(|p| p.last()["p2p_down_bytes"].as_u64().unwrap_or(0) > 0) {
            break;
        }
        ensure!(t.elapsed() < Duration::from_secs(45), "the swarm never shared\n{}", report(&peers));
    }
    let swarm_url = peers[0].tracker();
    ensure!(peers.iter().all(|p| p.tracker() == swarm_url), "one tracker\n{}", report(&peers));
    let cut = specs.iter().position(|s| swarm_url.contains(&s.listen)).context("the swarm's node")?;
    println!("PARTITION warm-up {:?}; the swarm is on {}", t.elapsed(), specs[cut].name);

    // Cut the swarm's node off.
    let rules = dir.path().join("partition.nft");
    std::fs::write(&rules, CUT)?;
    let cut_ns = topo.ns(specs[cut].name.as_str());
    cut_ns.run("nft", &["-f", &rules.to_string_lossy()])?;
    let cut_at = Instant::now();
    let others: Vec<usize> = (0..3).filter(|i| *i != cut).collect();
    let mut left = None;
    loop {
        poll_all(&mut peers, Duration::from_millis(100));
        if left.is_none()
            && others.iter().all(|i| {
                status(Some(vns), &specs[*i].url())
                    .map(|st| !node_ids(&st).contains(&specs[cut].name))
                    .unwrap_or(false)
            })
        {
            left = Some(cut_at.elapsed());
        }
        let moved = peers.iter().all(|p| {
            p.statuses.iter().any(|(t, v)| {
                let u = v["tracker"].as_str().unwrap_or("");
                *t >= cut_at && !u.is_empty() && u != swarm_url
            })
        });
        if moved && left.is_some() {
            break;
        }
        ensure!(cut_at.elapsed() < REANNOUNCE_MAX * 2, "no failover after the cut\n{}", report(&peers));
    }
    let reannounce = peers
        .iter()
        .filter_map(|p| {
            p.statuses.iter().find(|(t, v)| {
                let u = v["tracker"].as_str().unwrap_or("");
                *t >= cut_at && !u.is_empty() && u != swarm_url
            })
        })
        .map(|(t, _)| *t - cut_at)
        .max()
        .unwrap_or_default();
    let new_url = peers[0].tracker();
    println!(
        "PARTITION: the other nodes dropped the cut-off node after {:?}; every peer re-announced on the standby after {reannounce:?} (bound {REANNOUNCE_MAX:?})",
        left.unwrap_or_default()
    );
    ensure!(reannounce <= REANNOUNCE_MAX, "{reannounce:?}");
    ensure!(peers.iter().all(|p| p.tracker() == new_url), "one standby\n{}", report(&peers));
    poll_all(&mut peers, PARTITION.saturating_sub(cut_at.elapsed()));
    ensure!(nodes[cut].try_exit()?.is_none(), "the cut-off node kept running");

    // Heal: the node reconnects and re-registers by itself.
    cut_ns.run("nft", &["delete", "table", "inet", "shoal_partition"])?;
    let healed = Instant::now();
    loop {
        poll_all(&mut peers, Duration::from_millis(100));
        let whole = (0..3).all(|i| {
            status(Some(vns), &specs[i].url())
                .map(|st| st["redis"]["up"] == true && node_ids(&st) == all && st["view"]["stale"] == false)
                .unwrap_or(false)
        });
        if whole {
            break;
        }
        ensure!(healed.elapsed() < Duration::from_secs(20), "the cluster did not heal");
    }
    let rejoined = healed.elapsed();
    // Past the API nodes' assignment refresh (5 s): no node, the healed one included, sends
    // new viewers back to the old node, and the peers stay where they are.
    poll_all(&mut peers, Duration::from_secs(6));
    for s in &specs {
        let t = join_trackers(vns, &s.url())?;
        ensure!(t.first() == Some(&new_url), "{}: joins go to {t:?}, the swarm is on {new_url}", s.name);
    }
    ensure!(peers.iter().all(|p| p.tracker() == new_url), "no split after healing\n{}", report(&peers));
    println!(
        "PARTITION healed: registry whole {rejoined:?} after; every node sends joins to the swarm's node"
    );

    let mut stalls = 0;
    let mut show = String::new();
    for p in &mut peers {
        let _ = std::process::Command::new("kill").args(["-TERM", &p.proc.pid().to_string()]).status();
    }
    for p in &mut peers {
        let until = Instant::now() + Duration::from_secs(20);
        while p.summary.is_none() && Instant::now() < until {
            p.poll();
            std::thread::sleep(Duration::from_millis(50));
        }
        let s = p.summary.clone().ok_or_else(|| anyhow!("{}: no summary", p.proc.name()))?;
        stalls += s["headless"]["stalls"].as_u64().unwrap_or(9);
        ensure!(s["headless"]["checked_bad"] == 0, "{}: {s}", p.proc.name());
        show.push_str(&format!("{}: {s}\n", p.proc.name()));
    }
    ensure!(stalls == 0, "stalls\n{show}");
    println!("PARTITION total wall time {:?}", started.elapsed());
    Ok(())
}
