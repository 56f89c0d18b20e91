//! `shoal bench cluster`: what sharing state through Redis costs.
//!
//! 1. **Tracker**: two tracker nodes (child processes of this binary: a tracker with the Redis
//!    backplane, as `shoal serve --roles tracker` with `cluster.redis` runs it) and WebSocket
//!    peers in swarms of two (the workload of `shoal bench tracker`: announce, offer to the
//!    candidate, answer). Same node: both members of a swarm on one node, so nothing crosses
//!    Redis. Cross node: one member on each, so every announce is mirrored and every offer and
//!    answer is relayed through Redis pub/sub. Announces/s, announce and relay p50/p99, CPU of
//!    the nodes and of redis-server, Redis commands per announce.
//! 2. **Pingback**: `shoal serve --roles pingback` nodes with the Redis store, loaded with
//!    reports (one per POST, closed loop, each from a new session) by concurrent HTTP clients: reports/s
//!    per node with one node and with two sharing Redis, CPU, Redis commands per report.
//!
//! Redis: a `redis-server` started here on a free loopback port (or `--redis URL`).

use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tokio::io::AsyncReadExt;

use super::tracker::{pct, peer, raise_fd_limit, Proto, Shared, Ws};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// WebSocket peers in the tracker part (in swarms of two).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(4..=20_000))]
    pub peers: u32,
    /// Milliseconds between a peer's announces.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub period_ms: u64,
    /// Measured seconds per configuration.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub duration: u64,
    /// Concurrent HTTP clients per pingback node.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub clients: u32,
    /// Use this Redis instead of starting a redis-server (its keys under a bench prefix).
    #[arg(long)]
    pub redis: Option<String>,
    /// Internal: run one tracker node against `--redis` and print its address.
    #[arg(long, hide = true)]
    pub serve_child: bool,
    #[arg(long, hide = true, default_value = "n0")]
    pub node_id: String,
    #[arg(long, hide = true, default_value = "benchc")]
    pub prefix: String,
}

const READY: &str = "SHOAL_BENCH_CLUSTER_READY";

pub fn run_cmd(args: Args) -> Result<()> {
    if args.serve_child {
        return serve_child(&args);
    }
    let need = u64::from(args.peers) + 1_024;
    ensure!(raise_fd_limit(need) >= need, "{need} file descriptors needed: raise ulimit -Hn");
    let _redis_server;
    let redis = match &args.redis {
        Some(r) => r.clone(),
        None => {
            let r = RedisChild::start()?;
            let url = r.url.clone();
            _redis_server = r;
            url
        }
    };
    let redis_pid = redis_pid(&redis)?;
    println!(
        "shoal bench cluster: redis {redis}; tracker part {} peers in swarms of 2, announce every {} ms, {} s measured",
        args.peers, args.period_ms, args.duration
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut rows = Vec::new();
    for (i, cross) in [false, true].into_iter().enumerate() {
        let prefix = format!("{}{}t{i}", args.prefix, std::process::id());
        let nodes =
            [TrackerChild::start(&redis, "t0", &prefix)?, TrackerChild::start(&redis, "t1", &prefix)?];
        rows.push(rt.block_on(tracker_load(&args, &nodes, cross, &redis, redis_pid))?);
    }
    println!();
    println!(
        "{:<12} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>7}",
        "swarm pairs",
        "announce/s",
        "ann p50",
        "ann p99",
        "relay p50",
        "relay p99",
        "nodes cpu",
        "redis cpu",
        "redis cmd/ann",
        "errors"
    );
    for r in &rows {
        println!(
            "{:<12} {:>10.0} {:>7.2}ms {:>7.2}ms {:>8.2}ms {:>8.2}ms {:>10.2} {:>10.2} {:>12.2} {:>7}",
            r.name,
            r.announces_per_s,
            r.ann_p50,
            r.ann_p99,
            r.relay_p50,
            r.relay_p99,
            r.nodes_cpu,
            r.redis_cpu,
            r.redis_cmds_per_announce,
            r.errors
        );
    }

    println!();
    println!("api: {} HTTP clients, joins to 1 000 streams, two tracker nodes in the registry", args.clients);
    {
        let prefix = format!("{}{}a", args.prefix, std::process::id());
        let _trackers =
            [TrackerChild::start(&redis, "t0", &prefix)?, TrackerChild::start(&redis, "t1", &prefix)?];
        let api = [ServeChild::api(&redis, "api0", &prefix)?];
        // Both trackers in the API's registry view before measuring.
        std::thread::sleep(Duration::from_secs(3));
        let probe: serde_json::Value = rt.block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{}/v1/join", api[0].url))
                .json(&serde_json::json!({"stream": "bench-probe"}))
                .send()
                .await?;
            anyhow::Ok(r.json().await?)
        })?;
        let trackers = probe["trackers"].as_array().map_or(0, Vec::len);
        ensure!(trackers == 2 && probe["p2p"] == true, "a join answers both trackers: {probe}");
        let r = rt.block_on(http_load(&args, &api, "/v1/join", join_body, &redis, redis_pid))?;
        println!(
            "{:<8} {:>12} {:>9} {:>10} {:>10} {:>14} {:>8}",
            "nodes", "joins/s", "p99 ms", "node cpu", "redis cpu", "redis cmd/join", "errors"
        );
        println!(
            "{:<8} {:>12.0} {:>9.2} {:>10.2} {:>10.2} {:>14.2} {:>8}",
            1, r.reports_per_s, r.p99_ms, r.nodes_cpu, r.redis_cpu, r.redis_cmds_per_report, r.errors
        );
    }

    println!();
    println!("pingback: {} HTTP clients per node, one report per POST, Redis store", args.clients);
    println!(
        "{:<8} {:>12} {:>10} {:>9} {:>10} {:>10} {:>14} {:>8}",
        "nodes", "reports/s", "per node", "p99 ms", "nodes cpu", "redis cpu", "redis cmd/rep", "errors"
    );
    for n in [1usize, 2] {
        let prefix = format!("{}{}p{n}", args.prefix, std::process::id());
        let nodes: Vec<ServeChild> = (0..n)
            .map(|i| ServeChild::pingback(&redis, &format!("pb{i}"), &prefix))
            .collect::<Result<_>>()?;
        let r = rt.block_on(http_load(&args, &nodes, "/v1/pingback", report_body, &redis, redis_pid))?;
        println!(
            "{:<8} {:>12.0} {:>10.0} {:>9.2} {:>10.2} {:>10.2} {:>14.2} {:>8}",
            n,
            r.reports_per_s,
            r.reports_per_s / n as f64,
            r.p99_ms,
            r.nodes_cpu,
            r.redis_cpu,
            r.redis_cmds_per_report,
            r.errors
        );
    }
    Ok(())
}

struct TrackerRow {
    name: &'static str,
    announces_per_s: f64,
    ann_p50: f64,
    ann_p99: f64,
    relay_p50: f64,
    relay_p99: f64,
    nodes_cpu: f64,
    redis_cpu: f64,
    redis_cmds_per_announce: f64,
    errors: u64,
}

async fn tracker_load(
    args: &Args,
    nodes: &[TrackerChild; 2],
    cross: bool,
    redis: &str,
    redis_pid: Option<u32>,
) -> Result<TrackerRow> {
    let name = if cross { "cross node" } else { "same node" };
    let shared = Arc::new(Shared::default());
    let epoch = Instant::now();
    let connected = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(128));
    let mut tasks = Vec::new();
    for i in 0..args.peers {
        let swarm = i / 2;
        // Same node: a swarm's two members on one node; cross node: one on each.
        let node = if cross { i % 2 } else { swarm % 2 };
        let addr = nodes[node as usize].addr;
        let (shared, connected, gate, period) =
            (shared.clone(), connected.clone(), gate.clone(), args.period_ms);
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let Ok(ws) = Ws::connect(addr, "/v1/tracker").await else {
                shared.errors.fetch_add(1, Relaxed);
                return;
            };
            drop(permit);
            connected.fetch_add(1, Relaxed);
            if peer(ws, i, swarm, Proto::Shoal, period, epoch, shared.clone()).await.is_err()
                && !shared.stop.load(Relaxed)
            {
                shared.errors.fetch_add(1, Relaxed);
            }
        }));
    }
    let ramp = Instant::now();
    while connected.load(Relaxed) + shared.errors.load(Relaxed) < u64::from(args.peers) {
        ensure!(ramp.elapsed() < Duration::from_secs(60), "{name}: peers did not connect within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two announce periods: members mirrored across nodes before measuring.
    tokio::time::sleep(Duration::from_millis(2 * args.period_ms + 1_000)).await;
    shared.measuring.store(true, Relaxed);
    let cpu0: f64 = nodes.iter().map(|n| cpu_seconds(n.child.id()).unwrap_or(0.0)).sum();
    let rcpu0 = redis_pid.map_or(0.0, |p| cpu_seconds(p).unwrap_or(0.0));
    let cmds0 = redis_commands(redis).await?;
    let (t0, a0) = (Instant::now(), shared.announces.load(Relaxed));
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let (elapsed, a1) = (t0.elapsed().as_secs_f64(), shared.announces.load(Relaxed));
    let cmds1 = redis_commands(redis).await?;
    let cpu1: f64 = nodes.iter().map(|n| cpu_seconds(n.child.id()).unwrap_or(0.0)).sum();
    let rcpu1 = redis_pid.map_or(0.0, |p| cpu_seconds(p).unwrap_or(0.0));
    shared.measuring.store(false, Relaxed);
    shared.stop.store(true, Relaxed);
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut ann = std::mem::take(&mut *shared.announce_us.lock().unwrap_or_else(|p| p.into_inner()));
    let mut rel = std::mem::take(&mut *shared.relay_us.lock().unwrap_or_else(|p| p.into_inner()));
    let announces = (a1 - a0) as f64;
    println!("{name}: {} announces, {} relays measured", ann.len(), rel.len());
    ensure!(!rel.is_empty(), "{name}: no offer was relayed (members never saw each other)");
    Ok(TrackerRow {
        name,
        announces_per_s: announces / elapsed,
        ann_p50: pct(&mut ann, 0.50),
        ann_p99: pct(&mut ann, 0.99),
        relay_p50: pct(&mut rel, 0.50),
        relay_p99: pct(&mut rel, 0.99),
        nodes_cpu: (cpu1 - cpu0) / elapsed,
        redis_cpu: (rcpu1 - rcpu0) / elapsed,
        redis_cmds_per_announce: cmds1.saturating_sub(cmds0) as f64 / announces.max(1.0),
        errors: shared.errors.load(Relaxed),
    })
}

struct HttpRow {
    reports_per_s: f64,
    p99_ms: f64,
    nodes_cpu: f64,
    redis_cpu: f64,
    redis_cmds_per_report: f64,
    errors: u64,
}

/// `body(node, client, n)` is the n-th request body of a client.
async fn http_load(
    args: &Args,
    nodes: &[ServeChild],
    path: &str,
    body: fn(usize, u32, u64) -> String,
    redis: &str,
    redis_pid: Option<u32>,
) -> Result<HttpRow> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(1_000).build()?;
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let lat: Arc<std::sync::Mutex<Vec<u32>>> = Arc::default();
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for c in 0..args.clients {
            let url = format!("{}{path}", node.url);
            let (http, accepted, errors, lat, measuring, stop) = (
                http.clone(),
                accepted.clone(),
                errors.clone(),
                lat.clone(),
                measuring.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Relaxed) {
                    i += 1;
                    let body = body(n, c, i);
                    let t = Instant::now();
                    let req = http.post(&url).header("content-type", "application/json").body(body);
                    match req.send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            accepted.fetch_add(1, Relaxed);
                            if measuring.load(Relaxed) {
                                let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                                lat.lock().unwrap_or_else(|p| p.into_inner()).push(us);
                            }
                        }
                        other => {
                            if errors.fetch_add(1, Relaxed) == 0 {
                                let why = match other {
                                    Ok(r) => {
                                        format!("HTTP {}: {}", r.status(), r.text().await.unwrap_or_default())
                                    }
                                    Err(e) => e.to_string(),
                                };
                                eprintln!("{url}: first error: {why}");
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    measuring.store(true, Relaxed);
    let cpu0: f64 = nodes.iter().map(|n| cpu_seconds(n.child.id()).unwrap_or(0.0)).sum();
    let rcpu0 = redis_pid.map_or(0.0, |p| cpu_seconds(p).unwrap_or(0.0));
    let cmds0 = redis_commands(redis).await?;
    let (t0, a0, e0) = (Instant::now(), accepted.load(Relaxed), errors.load(Relaxed));
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let (elapsed, a1, e1) = (t0.elapsed().as_secs_f64(), accepted.load(Relaxed), errors.load(Relaxed));
    let cmds1 = redis_commands(redis).await?;
    let cpu1: f64 = nodes.iter().map(|n| cpu_seconds(n.child.id()).unwrap_or(0.0)).sum();
    let rcpu1 = redis_pid.map_or(0.0, |p| cpu_seconds(p).unwrap_or(0.0));
    stop.store(true, Relaxed);
    for t in &tasks {
        t.abort();
    }
    let mut l = std::mem::take(&mut *lat.lock().unwrap_or_else(|p| p.into_inner()));
    let reports = (a1 - a0) as f64;
    ensure!(reports > 0.0, "no request answered 2xx");
    Ok(HttpRow {
        reports_per_s: reports / elapsed,
        p99_ms: pct(&mut l, 0.99),
        nodes_cpu: (cpu1 - cpu0) / elapsed,
        redis_cpu: (rcpu1 - rcpu0) / elapsed,
        redis_cmds_per_report: cmds1.saturating_sub(cmds0) as f64 / reports,
        errors: e1 - e0,
    })
}

/// One report, from its own session (a closed loop per session would be implausibly fast for
/// the plausibility checks; 1 M viewers reporting every 10 s look like this to a node).
fn report_body(node: usize, client: u32, n: u64) -> String {
    format!(
        r#"[{{"v":1,"session_id":"b{}-{node}-{client}-{n}","seq":1,"stream":"bench","rendition":"720p","p2p":true,"platform":"linux","sdk":"bench","sdk_version":"0","period_ms":10000,"http_bytes":1000000,"p2p_down_bytes":3000000,"play_ms":10000}}]"#,
        std::process::id()
    )
}

/// A join to one of 1 000 streams (after its first join a stream's assignment is cached).
fn join_body(_node: usize, client: u32, n: u64) -> String {
    format!(r#"{{"stream":"bench-{}"}}"#, (u64::from(client) * 7_919 + n) % 1_000)
}

// ---------------------------------------------------------------------------------------------
// Processes.

struct RedisChild {
    child: Child,
    url: String,
}

impl RedisChild {
    fn start() -> Result<RedisChild> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting redis-server (scripts/install-deps.sh installs it), or pass --redis URL")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(Instant::now() < deadline, "redis-server did not listen within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(RedisChild { child, url: format!("redis://127.0.0.1:{port}/0") })
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pid of the Redis at `url` when it runs on this machine (its own INFO says).
fn redis_pid(url: &str) -> Result<Option<u32>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let info = rt.block_on(redis_info(url))?;
    let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).and_then(|v| v.trim().parse().ok());
    let local = url.contains("127.0.0.1") || url.contains("localhost");
    Ok(pid.filter(|_| local))
}

async fn redis_info(url: &str) -> Result<String> {
    // Plain RESP over one short TCP connection: no client state to keep between samples.
    let mut tcp = tokio::net::TcpStream::connect(redis_addr(url)?).await?;
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n").await?;
    let mut rd = tokio::io::BufReader::new(tcp);
    let mut head = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut rd, &mut head).await?;
    let len: usize = head.trim().strip_prefix('$').and_then(|n| n.parse().ok()).context("INFO reply")?;
    ensure!(len <= 1 << 20, "INFO reply of {len} bytes");
    let mut body = vec![0u8; len];
    rd.read_exact(&mut body).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// host:port of a redis:// URL (no password: INFO is read without AUTH).
fn redis_addr(url: &str) -> Result<String> {
    let rest = url.strip_prefix("redis://").context("a redis:// URL")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    ensure!(!hostport.contains('@'), "--redis with a password: INFO is read without AUTH");
    Ok(if hostport.contains(':') { hostport.to_owned() } else { format!("{hostport}:6379") })
}

/// Commands Redis processed so far (INFO stats), minus nothing: callers take differences.
async fn redis_commands(url: &str) -> Result<u64> {
    let info = redis_info(url).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .context("total_commands_processed in INFO")
}

/// CPU seconds (user + system) of a process.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("stat format")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    ensure!(f.len() > 13, "stat too short");
    Ok((f[11].parse::<f64>()? + f[12].parse::<f64>()?) / 100.0)
}

struct TrackerChild {
    child: Child,
    addr: SocketAddr,
}

impl TrackerChild {
    fn start(redis: &str, node: &str, prefix: &str) -> Result<TrackerChild> {
        let (child, addr) = super::spawn_server_child(
            &["bench", "cluster", "--serve-child", "--redis", redis, "--node-id", node, "--prefix", prefix],
            READY,
            "tracker node",
        )?;
        Ok(TrackerChild { child, addr })
    }
}

impl Drop for TrackerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct ServeChild {
    child: Child,
    url: String,
}

impl ServeChild {
    fn pingback(redis: &str, node: &str, prefix: &str) -> Result<ServeChild> {
        ServeChild::start("pingback", redis, node, prefix, &["pingback.require_ticket=false"])
    }

    fn api(redis: &str, node: &str, prefix: &str) -> Result<ServeChild> {
        // One client address sends every join: no per-address limit, no token.
        // Any valid origin key: with none the API answers p2p: false (a cheaper join).
        let key = shoal_proto::manifest::key_to_b64(
            shoal_proto::SigningKey::from_bytes(&[7u8; 32]).verifying_key().as_bytes(),
        );
        let key = format!("api.origin_public_key={key}");
        let sets = [
            "api.rate_limit.per_second=1000000",
            "api.rate_limit.burst=1000000",
            "auth.require_token=false",
            "api.holdback_percent=0",
            "api.cdn=http://cdn.example/live/{stream}/",
            key.as_str(),
        ];
        ServeChild::start("api", redis, node, prefix, &sets)
    }

    fn start(roles: &str, redis: &str, node: &str, prefix: &str, sets: &[&str]) -> Result<ServeChild> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["serve", "--roles", roles, "--listen", "127.0.0.1:0"])
            .args(["--set", &format!("cluster.redis={redis}")])
            .args(["--set", &format!("cluster.node_id={node}")])
            .args(["--set", &format!("cluster.prefix={prefix}")])
            // A cluster node needs the shared ticket secret even when no report carries one.
            .args(["--set", "tickets.keys=bench:shoal-bench-cluster-ticket-secret-0123"]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting a {roles} node"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut rd = std::io::BufReader::new(stdout);
        let mut line = String::new();
        for _ in 0..100 {
            line.clear();
            ensure!(rd.read_line(&mut line)? > 0, "{roles} node ended before it was ready");
            if let Some(rest) = line.strip_prefix("SHOAL_SERVE_READY ") {
                let url = rest.split_whitespace().next().context("ready line")?.to_owned();
                // Keep draining stdout so the child never blocks on a full pipe.
                std::thread::spawn(move || {
                    let mut sink = String::new();
                    while rd.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                        sink.clear();
                    }
                });
                return Ok(ServeChild { child, url });
            }
        }
        anyhow::bail!("no ready line from the {roles} node")
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tracker node with the Redis backplane (what `shoal serve --roles tracker` runs with
/// `cluster.redis`), without tickets so the bench's peers need no API.
fn serve_child(args: &Args) -> Result<()> {
    let redis = args.redis.clone().context("--redis")?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let ccfg = shoal_cluster::ClusterConfig {
            redis,
            node_id: args.node_id.clone(),
            prefix: args.prefix.clone(),
            ..Default::default()
        };
        let cluster = shoal_cluster::Cluster::new(&ccfg)?;
        let tcfg = shoal_tracker::TrackerConfig {
            announce_interval_ms: 60_000,
            peer_timeout_ms: 90_000,
            handshake_timeout_ms: 60_000,
            max_connections: 1_000_000,
            max_peers_per_swarm: 1_000_000,
            rate_per_sec: 1_000,
            rate_burst: 2_000,
            ..shoal_tracker::TrackerConfig::default()
        };
        let bp = cluster.backplane(Duration::from_millis(tcfg.peer_timeout_ms));
        let tracker = shoal_tracker::Tracker::with_relay(
            tcfg,
            Arc::new(shoal_tracker::AllowAll),
            Arc::new(bp.clone()),
        )?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let info = shoal_cluster::NodeInfo {
            roles: vec!["tracker".into()],
            tracker: Some(format!("ws://{addr}/v1/tracker")),
            ..Default::default()
        };
        cluster.begin(info, Box::new(shoal_cluster::Load::default), Some(tracker.clone()));
        ensure!(cluster.link().wait_healthy(Duration::from_secs(5)).await, "Redis does not answer");
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = tracker.router();
        println!("{READY} {addr}");
        std::io::stdout().flush()?;
        tokio::spawn(async {
            let mut sink = Vec::new();
            let _ = tokio::io::stdin().read_to_end(&mut sink).await;
            std::process::exit(0);
        });
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
        anyhow::Ok(())
    })
}
