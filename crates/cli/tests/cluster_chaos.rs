//! Chaos on a real cluster, on a schedule: a real `redis-server`, a synthetic `shoal origin`
//! (the CDN), two API+pingback nodes, three tracker+STUN nodes and native peers
//! (`shoal play --headless`) in one swarm. In turn: the swarm's tracker node is killed, an API
//! and pingback node is killed, Redis is stopped and started again, a tracker node freezes
//! (SIGSTOP: silent, no FIN — what a partition looks like from outside), then every tracker
//! node is killed and later brought back.
//!
//! Asserted: no peer ever stalls; peers re-announce on the standby within a bound and their
//! DataChannels keep carrying data meanwhile; a new viewer joins through the second API URL;
//! reports reach the other pingback node with at most one window short; nothing restarts for
//! Redis and the registry is whole again; the frozen node's peers move on and its return does
//! not split the swarm; with every tracker gone a new viewer plays CDN-only and the dashboard
//! says so; offload recovers within a stated time once trackers are back. The measured times
//! are printed (`CHAOS ...` lines).

mod cluster_support;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use cluster_support::{node_ids, spawn_node, status, wait_for, NodeSpec, Peer, SHOAL};
use serde_json::Value;
use shoal_testkit::redis::RedisServer;
use shoal_testkit::{Proc, SyntheticOrigin, TestDir};

/// Re-announce bound after a tracker node dies (its sockets close: the SDK moves to the next
/// URL at once) and after one goes silent (`IDLE_PING` + `REPLY_TIMEOUT` = 8 s in the SDK).
const REANNOUNCE_KILL_MAX: Duration = Duration::from_secs(5);
const REANNOUNCE_SILENT_MAX: Duration = Duration::from_secs(16);
/// Offload back above zero after the trackers return: the CDN-only viewer's `no_tracker`
/// re-join backoff (5 s doubling) plus connecting and a pingback window or two.
const OFFLOAD_RECOVERY_MAX: Duration = Duration::from_secs(45);

impl Peer {
    fn p2p_down(&self) -> u64 {
        self.last()["p2p_down_bytes"].as_u64().unwrap_or(0)
    }

    /// When this peer first reported a tracker that passes `f`, at or after `since`.
    fn first_tracker_after(&self, since: Instant, f: impl Fn(&str) -> bool) -> Option<Instant> {
        self.statuses
            .iter()
            .find(|(t, v)| *t >= since && f(v["tracker"].as_str().unwrap_or("")))
            .map(|(t, _)| *t)
    }
}

struct World {
    dir: TestDir,
    redis: RedisServer,
    master: String,
    apis: Vec<NodeSpec>,
    trackers: Vec<NodeSpec>,
    api_procs: Vec<Option<Proc>>,
    tracker_procs: Vec<Option<Proc>>,
    peers: Vec<Peer>,
    generation: u32,
}

impl World {
    fn all_specs(&self) -> impl Iterator<Item = &NodeSpec> {
        self.apis.iter().chain(self.trackers.iter())
    }

    fn api_list(&self, first: usize) -> String {
        let n = self.apis.len();
        (0..n).map(|i| self.apis[(first + i) % n].url()).collect::<Vec<_>>().join(",")
    }

    fn start_peer(&mut self, name: &str, api: &str) -> Result<()> {
        let mut p = Proc::builder(name, SHOAL)
            .args(["play", &self.master, "--headless", "--duration", "600", "--status-every", "0.25"])
            .args(["--api", api, "--udp", "127.0.0.1:0"])
            .env("RUST_LOG", "info,str0m=warn")
            .log_dir(self.dir.path())
            .spawn()?;
        p.wait_ready("PLAY", Duration::from_secs(30))?;
        self.peers.push(Peer::new(p));
        Ok(())
    }

    fn poll(&mut self) {
        for p in &mut self.peers {
            p.poll();
        }
    }

    /// Follow the peers for `d`.
    fn run_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.poll();
            std::thread::sleep(Duration::from_millis(50));
        }
        self.poll();
    }

    /// Follow the peers until `f` holds (checked every 50 ms) or `limit` passes.
    fn until(&mut self, limit: Duration, what: &str, f: impl Fn(&World) -> bool) -> Result<Duration> {
        let t = Instant::now();
        loop {
            self.poll();
            if f(self) {
                return Ok(t.elapsed());
            }
            if t.elapsed() > limit {
                return Err(anyhow!("{what}: not within {limit:?}\n{}", self.peer_report()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn peer_report(&self) -> String {
        self.peers.iter().map(|p| format!("{}: {}\n", p.proc.name(), p.last())).collect()
    }

    fn tracker_index(&self, url: &str) -> Option<usize> {
        self.trackers.iter().position(|s| url.contains(&s.listen))
    }

    fn start_tracker(&mut self, i: usize) -> Result<()> {
        self.generation += 1;
        let p = spawn_node(&self.dir, None, &self.trackers[i], &self.redis.url(), self.generation)?;
        self.tracker_procs[i] = Some(p);
        Ok(())
    }

    fn kill_tracker(&mut self, i: usize) -> Result<()> {
        self.tracker_procs[i].take().context("tracker node not running")?.kill()?;
        Ok(())
    }

    fn p2p_total(&self) -> u64 {
        self.peers.iter().map(Peer::p2p_down).sum()
    }

    fn live_nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for (s, p) in
            self.apis.iter().zip(&self.api_procs).chain(self.trackers.iter().zip(&self.tracker_procs))
        {
            if p.is_some() {
                v.push(s.name.clone());
            }
        }
        v.sort();
        v
    }
}

fn get_json(base: &str, path: &str) -> Result<Value> {
    let r = shoal_testkit::http::get(None, &format!("{base}{path}"), Duration::from_secs(3))?;
    ensure!(r.status == 200, "{base}{path}: HTTP {}: {}", r.status, r.text());
    Ok(serde_json::from_slice(&r.body)?)
}

/// Per pingback window (start ms, viewers, offload) for the stream, as `base` sees them.
fn windows(base: &str, last_s: u64) -> Result<Vec<(u64, f64, Option<f64>)>> {
    let w = get_json(base, &format!("/v1/pingback/windows?last_s={last_s}&by="))?;
    let pts = w["series"][0]["points"].as_array().cloned().unwrap_or_default();
    Ok(pts
        .iter()
        .map(|p| {
            (p["start_ms"].as_u64().unwrap_or(0), p["viewers"].as_f64().unwrap_or(0.0), p["offload"].as_f64())
        })
        .collect())
}

/// The tracker list a join on `base` answers.
fn join_trackers(base: &str, stream: &str) -> Result<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{base}/v1/join"))
            .json(&serde_json::json!({ "stream": stream }))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        ensure!(r.status().is_success(), "{base}: join HTTP {}", r.status());
        let j: Value = r.json().await?;
        Ok(j["trackers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect())
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn signal(p: &Proc, sig: &str) -> Result<()> {
    let st = std::process::Command::new("kill").args([sig, &p.pid().to_string()]).status()?;
    ensure!(st.success(), "kill {sig} {}", p.pid());
    Ok(())
}

#[test]
fn cluster_chaos_kills_each_role_in_turn_and_nobody_stalls() -> Result<()> {
    let started = Instant::now();
    let dir = TestDir::new("cluster_chaos")?;
    let redis = RedisServer::start(dir.path())?;

    let origin = SyntheticOrigin::start(SHOAL, dir.path(), None, "127.0.0.1:0", "360p:640x360@800")?;
    let (key, cdn, master) = (&origin.key, &origin.url, origin.master.clone());

    let mut apis = Vec::new();
    for i in 0..2 {
        let port = cluster_support::free_port()?;
        let mut s = NodeSpec::new(&format!("a{i}"), "api,pingback", &format!("127.0.0.1:{port}"));
        s.sets = vec![
            format!("api.origin_public_key={key}"),
            format!("api.cdn=[\"{cdn}/live/{{stream}}/\"]"),
            "pingback.window_s=2".into(),
            "pingback.interval_ms=2000".into(),
        ];
        apis.push(s);
    }
    let mut trackers = Vec::new();
    for i in 0..3 {
        let port = cluster_support::free_port()?;
        let stun = cluster_support::free_port()?;
        let mut s = NodeSpec::new(&format!("t{i}"), "tracker,stun", &format!("127.0.0.1:{port}"));
        s.stun = Some(format!("127.0.0.1:{stun}"));
        trackers.push(s);
    }
    let mut w = World {
        dir,
        redis,
        master,
        api_procs: (0..apis.len()).map(|_| None).collect(),
        tracker_procs: (0..trackers.len()).map(|_| None).collect(),
        apis,
        trackers,
        peers: Vec::new(),
        generation: 0,
    };
    for i in 0..w.apis.len() {
        w.api_procs[i] = Some(spawn_node(&w.dir, None, &w.apis[i], &w.redis.url(), 0)?);
    }
    for i in 0..w.trackers.len() {
        w.start_tracker(i)?;
    }
    let everyone = w.live_nodes();
    wait_for(Duration::from_secs(10), "every node in the registry", || {
        status(None, &w.apis[0].url()).map(|st| node_ids(&st) == everyone).unwrap_or(false)
    })?;

    // Four viewers, half of them with the API list in the other order (both API and pingback
    // nodes serve someone).
    for i in 0..4 {
        let api = w.api_list(i % 2);
        w.start_peer(&format!("peer{i}"), &api)?;
    }
    let warm = w.until(Duration::from_secs(45), "the swarm shares", |w| {
        w.peers.iter().all(|p| !p.tracker().is_empty() && p.last()["peers"].as_u64().unwrap_or(0) > 0)
            && w.peers.iter().filter(|p| p.p2p_down() > 0).count() >= 2
    })?;
    println!("CHAOS warm-up: 4 peers connected and sharing after {warm:?}");
    let primary_url = w.peers[0].tracker();
    ensure!(
        w.peers.iter().all(|p| p.tracker() == primary_url),
        "one tracker for the swarm\n{}",
        w.peer_report()
    );
    let primary = w.tracker_index(&primary_url).context("primary is a tracker node")?;

    // 1. Kill the swarm's tracker node.
    let p2p_before = w.p2p_total();
    let killed = Instant::now();
    w.kill_tracker(primary)?;
    let moved = w.until(REANNOUNCE_KILL_MAX * 3, "every peer on a standby tracker", |w| {
        w.peers.iter().all(|p| p.first_tracker_after(killed, |t| !t.is_empty() && t != primary_url).is_some())
    })?;
    let reannounce = w
        .peers
        .iter()
        .filter_map(|p| p.first_tracker_after(killed, |t| !t.is_empty() && t != primary_url))
        .map(|t| t - killed)
        .max()
        .unwrap_or(moved);
    let standby_url = w.peers[0].tracker();
    ensure!(w.peers.iter().all(|p| p.tracker() == standby_url), "one standby for all\n{}", w.peer_report());
    // Connections between peers outlive the tracker: data kept flowing during the switch.
    let p2p_during = w.p2p_total();
    let peers_never_zero = w.peers.iter().all(|p| {
        p.statuses
            .iter()
            .filter(|(t, _)| *t >= killed && *t <= killed + reannounce)
            .all(|(_, v)| v["peers"].as_u64().unwrap_or(0) > 0)
    });
    println!(
        "CHAOS tracker kill: all 4 peers re-announced on the standby after {reannounce:?} (bound {REANNOUNCE_KILL_MAX:?}); P2P bytes {p2p_before} -> {p2p_during}; peer connections kept: {peers_never_zero}"
    );
    ensure!(reannounce <= REANNOUNCE_KILL_MAX, "re-announce took {reannounce:?}");
    ensure!(peers_never_zero, "a peer lost its DataChannels with the tracker\n{}", w.peer_report());
    w.run_for(Duration::from_secs(3));
    ensure!(w.p2p_total() > p2p_during, "P2P data kept flowing after the switch\n{}", w.peer_report());
    // The dead node comes back: the swarm stays where it is (sticky, promoted standby).
    w.start_tracker(primary)?;

    // 2. Kill API+pingback node a0; a new viewer lists a0 first and joins through a1.
    let t_kill_api_ms = now_ms();
    let api_killed = Instant::now();
    w.api_procs[0].take().context("a0")?.kill()?;
    let api_list = w.api_list(0);
    w.start_peer("peer4", &api_list)?;
    let joined = w.until(Duration::from_secs(20), "the new viewer joins through a1", |w| {
        !w.peers[4].tracker().is_empty()
    })?;
    let joined_since_kill = api_killed.elapsed();
    println!("CHAOS API kill: a new viewer listing the dead API first joined through the next in {joined:?} after start ({joined_since_kill:?} after the kill)");
    ensure!(w.peers[4].tracker() == standby_url, "the new viewer joins the same swarm on the standby");
    // Reports now all go to a1 (and the figures are Redis's, so a0's earlier reports stay).
    w.run_for(Duration::from_secs(10));
    let a1 = w.apis[1].url();
    let pts = windows(&a1, 40)?;
    let around: Vec<&(u64, f64, Option<f64>)> =
        pts.iter().filter(|(s, _, _)| *s + 4_000 >= t_kill_api_ms && *s + 4_000 <= now_ms()).collect();
    let short = around.iter().filter(|(_, v, _)| *v < 3.0).count();
    println!(
        "CHAOS pingback kill: viewers per 2 s window on a1 around the kill: {:?}; windows short: {short}",
        around
            .iter()
            .map(|(s, v, _)| (*s as i64 - t_kill_api_ms as i64, (v * 10.0).round() / 10.0))
            .collect::<Vec<_>>()
    );
    ensure!(around.len() >= 4, "windows after the kill: {pts:?}");
    ensure!(short <= 1, "more than one window lost reports: {pts:?}");
    let last_complete = around.iter().rev().nth(1).map_or(0.0, |(_, v, _)| *v);
    ensure!(last_complete >= 4.0, "a1 counts every viewer now: {pts:?}");
    let health = get_json(&a1, "/v1/pingback/summary")?;
    let h = health.to_string();
    ensure!(h.contains("pingback node lost"), "the dashboard says a pingback node was lost: {h}");
    w.api_procs[0] = Some(spawn_node(&w.dir, None, &w.apis[0].clone(), &w.redis.url(), 9)?);

    // 3. Redis stops for 3 s, then starts again: no node restarts, the registry is rebuilt.
    let pids: Vec<u32> =
        w.api_procs.iter().chain(w.tracker_procs.iter()).map(|p| p.as_ref().map_or(0, Proc::pid)).collect();
    w.redis.kill()?;
    let p2p_redis_down = w.p2p_total();
    w.run_for(Duration::from_secs(3));
    for s in w.all_specs() {
        let st = status(None, &s.url())?;
        ensure!(st["redis"]["up"] == false, "{} noticed the outage: {st}", s.name);
    }
    ensure!(w.p2p_total() > p2p_redis_down, "peers kept sharing while Redis was down");
    w.redis.restart(None)?;
    let back = Instant::now();
    let everyone = w.live_nodes();
    let specs: Vec<NodeSpec> = w.all_specs().cloned().collect();
    for s in &specs {
        let e = everyone.clone();
        w.until(Duration::from_secs(15), "Redis back and the registry whole", |_| {
            status(None, &s.url())
                .map(|st| st["redis"]["up"] == true && node_ids(&st) == e && st["view"]["stale"] == false)
                .unwrap_or(false)
        })?;
    }
    let rebuilt = back.elapsed();
    let pids_after: Vec<u32> = w
        .api_procs
        .iter_mut()
        .chain(w.tracker_procs.iter_mut())
        .map(|p| match p {
            Some(p) => match p.try_exit() {
                Ok(None) => p.pid(),
                _ => 0,
            },
            None => 0,
        })
        .collect();
    ensure!(pids == pids_after, "no node restarted: {pids:?} -> {pids_after:?}");
    println!("CHAOS Redis restart: every node reconnected with the whole registry {rebuilt:?} after Redis came back; no restart");

    // 4. The swarm's tracker node freezes (no FIN, nothing answers), then thaws.
    let frozen = w.tracker_index(&standby_url).context("standby index")?;
    let froze = Instant::now();
    signal(w.tracker_procs[frozen].as_ref().context("frozen node")?, "-STOP")?;
    let limit = REANNOUNCE_SILENT_MAX * 2;
    w.until(limit, "every peer leaves the silent tracker", |w| {
        w.peers.iter().all(|p| p.first_tracker_after(froze, |t| !t.is_empty() && t != standby_url).is_some())
    })?;
    let silent_move = w
        .peers
        .iter()
        .filter_map(|p| p.first_tracker_after(froze, |t| !t.is_empty() && t != standby_url))
        .map(|t| t - froze)
        .max()
        .unwrap_or_default();
    let third_url = w.peers[0].tracker();
    println!("CHAOS freeze (partition-like): every peer re-announced elsewhere {silent_move:?} after the node went silent (bound {REANNOUNCE_SILENT_MAX:?})");
    ensure!(silent_move <= REANNOUNCE_SILENT_MAX, "{silent_move:?}");
    ensure!(w.peers.iter().all(|p| p.tracker() == third_url), "one tracker again\n{}", w.peer_report());
    signal(w.tracker_procs[frozen].as_ref().context("frozen node")?, "-CONT")?;
    w.run_for(Duration::from_secs(6));
    // Not split in two: every API node sends new joins to where the peers are, and they stay.
    let stream = w.master.rsplit('/').nth(1).context("stream in the master URL")?.to_owned();
    for s in w.apis.clone() {
        let t = join_trackers(&s.url(), &stream)?;
        ensure!(t.first() == Some(&third_url), "{}: joins go to {t:?}, the swarm is on {third_url}", s.name);
    }
    ensure!(w.peers.iter().all(|p| p.tracker() == third_url), "no split after the thaw\n{}", w.peer_report());

    // 5. All of P2P down: every tracker node dies. The viewers leave (their mesh would keep
    // sharing without a tracker) and two new ones arrive: told `no_tracker`, they play
    // CDN-only, and the dashboard shows viewers with offload falling to zero, not an error.
    let down_at = Instant::now();
    for i in 0..w.trackers.len() {
        if w.tracker_procs[i].is_some() {
            w.kill_tracker(i)?;
        }
    }
    let mut summaries = Vec::new();
    for p in &mut w.peers {
        summaries.push((p.proc.name().to_owned(), finish(p)?));
    }
    let old = w.peers.len();
    let left_ms = now_ms();
    let a1_list = w.api_list(1);
    w.start_peer("peer5", &a1_list)?;
    w.start_peer("peer6", &a1_list)?;
    w.run_for(Duration::from_secs(12));
    let summary = get_json(&a1, "/v1/pingback/summary")?;
    let h = summary["tracker"].to_string();
    println!("CHAOS all trackers down: dashboard {h}");
    ensure!(h.contains("no tracker node is live"), "the dashboard says P2P is down: {h}");
    let pts = windows(&a1, 20)?;
    let asked_ms = now_ms();
    // Whole windows only: a window fills until the last report covering it arrived (one
    // report interval, 2 s, plus pingback's 250 ms write batching).
    let after: Vec<(i64, f64, Option<f64>)> = pts
        .iter()
        .filter(|(s, _, _)| *s >= left_ms + 2_000 && *s + 2_000 + 2_500 < asked_ms)
        .map(|(s, v, o)| (*s as i64 - left_ms as i64, *v, *o))
        .collect();
    println!("CHAOS all trackers down: windows since the old viewers left (ms, viewers, offload): {after:?}");
    ensure!(after.len() >= 2, "windows: {pts:?}");
    ensure!(
        after.iter().all(|(_, v, o)| *v > 0.5 && *o == Some(0.0)),
        "viewers on the CDN only, offload zero: {pts:?}"
    );
    ensure!(w.peers[old..].iter().all(|p| p.tracker().is_empty()), "{}", w.peer_report());
    for i in 0..w.trackers.len() {
        w.start_tracker(i)?;
    }
    let up_at = Instant::now();
    let up_ms = now_ms();
    let rec = w.until(OFFLOAD_RECOVERY_MAX, "offload back on the dashboard", |_| {
        windows(&a1, 20)
            .map(|pts| pts.iter().any(|(s, _, o)| *s + 2_000 > up_ms && o.is_some_and(|o| o > 0.0)))
            .unwrap_or(false)
    })?;
    let peers_back = w
        .peers
        .iter()
        .skip(old)
        .filter_map(|p| p.first_tracker_after(up_at, |t| !t.is_empty()))
        .map(|t| t - up_at)
        .max();
    println!(
        "CHAOS recovery: trackers down {:?}; new viewers on a tracker {peers_back:?} and offload > 0 on the dashboard {rec:?} after the trackers came back (bound {OFFLOAD_RECOVERY_MAX:?})",
        up_at - down_at
    );

    // Zero stalls everywhere.
    for p in &mut w.peers[old..] {
        summaries.push((p.proc.name().to_owned(), finish(p)?));
    }
    let show: String = summaries.iter().map(|(n, s)| format!("{n}: {s}\n")).collect();
    let stalls: u64 = summaries.iter().map(|(_, s)| s["headless"]["stalls"].as_u64().unwrap_or(9)).sum();
    let bad: u64 = summaries.iter().map(|(_, s)| s["headless"]["checked_bad"].as_u64().unwrap_or(9)).sum();
    let played: Vec<u64> =
        summaries.iter().map(|(_, s)| s["headless"]["segments"].as_u64().unwrap_or(0)).collect();
    println!("CHAOS segments played per viewer {played:?}, stalls {stalls}");
    ensure!(stalls == 0, "stalls: {stalls}\n{show}");
    ensure!(bad == 0, "bad segments\n{show}");
    ensure!(played.iter().all(|n| *n >= 4), "every viewer played\n{show}");
    println!("CHAOS total wall time {:?}", started.elapsed());
    Ok(())
}

/// SIGTERM a viewer and read its final summary.
fn finish(p: &mut Peer) -> Result<Value> {
    signal(&p.proc, "-TERM")?;
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        p.poll();
        if let Some(s) = &p.summary {
            return Ok(s.clone());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(anyhow!("{}: no summary\n{}", p.proc.name(), p.proc.log_tails()))
}
