//! `shoal bench tracker`: thousands of concurrent WebSocket peers on loopback announcing and
//! exchanging offers and answers through a tracker; reports announces/s, latency percentiles
//! (announce → reply, offer relay), server CPU and memory per connected peer.
//!
//! The tracker under test runs as a child process (this binary, `--serve-child`), so its RSS and
//! CPU time are its own. With `--aquatic PATH` the same WebTorrent load is run against
//! aquatic_ws (built outside the repository, bound to loopback) in the same run, and the report
//! gives the ratios. Peers use a compact WebSocket client written here (one small buffer per
//! connection, frames masked with a zero key) so the load generator stays light on 2 cores.
//!
//! Workload per peer, every `--period-ms` (0 = closed loop: next announce as soon as the reply
//! arrives): announce; on the reply, offer (a 1.3 KB SDP) to one peer (Shoal: `signal` to the
//! first candidate; WebTorrent: one offer inside the announce, placed by the tracker); whoever
//! receives an offer answers it through the tracker.

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Concurrent WebSocket peers (each its own TCP connection).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(2..=50_000))]
    pub peers: u32,
    /// Swarms the peers are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub swarms: u32,
    /// Measured seconds, after every peer has connected and announced once.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub duration: u64,
    /// Milliseconds between a peer's announces (0 = closed loop, as fast as replies come).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub period_ms: u64,
    /// Which protocol(s) to load Shoal's tracker with.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    pub protocol: Which,
    /// Path of an aquatic_ws binary: measure it with the same WebTorrent load in this run.
    #[arg(long)]
    pub aquatic: Option<PathBuf>,
    /// Tokio worker threads of the Shoal tracker under test.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub server_threads: u32,
    /// Internal: run only the tracker under test and print its address.
    #[arg(long, hide = true)]
    pub serve_child: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Which {
    Shoal,
    Webtorrent,
    Both,
}

const READY: &str = "SHOAL_BENCH_TRACKER_READY";
/// A realistic SDP size (p2p-media-loader offers are ~1.3 KB).
const SDP_PAD: usize = 1_250;

pub fn run_cmd(args: Args) -> Result<()> {
    if args.serve_child {
        return serve_child(args.server_threads as usize);
    }
    let need = u64::from(args.peers) + 256;
    let limit = raise_fd_limit(need);
    ensure!(
        limit >= need,
        "{} peers need {need} file descriptors per process but the limit is {limit}: raise the hard limit (ulimit -Hn)",
        args.peers
    );
    println!("sans-IO selection (shoal-swarm, one core): upsert + select(want 8) per announce");
    for members in [100, 10_000, 100_000] {
        let (us, per_s) = selection_cost(members);
        println!("  {members:>7} members: {us:.2} µs per announce ({per_s:.0} announces/s)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut report = Vec::new();
    println!(
        "shoal bench tracker: {} peers in {} swarms, period {} ms, {} s measured; tracker threads {}, load generator 1 thread",
        args.peers, args.swarms, args.period_ms, args.duration, args.server_threads
    );
    if matches!(args.protocol, Which::Shoal | Which::Both) {
        let server = Server::shoal(args.server_threads)?;
        report.push(rt.block_on(measure("shoal /v1/tracker", Proto::Shoal, &server, &args))?);
    }
    if matches!(args.protocol, Which::Webtorrent | Which::Both) {
        let server = Server::shoal(args.server_threads)?;
        report.push(rt.block_on(measure(
            "shoal /announce",
            Proto::WebTorrent { answers_replied: false },
            &server,
            &args,
        ))?);
    }
    if let Some(path) = &args.aquatic {
        let server = Server::aquatic(path)?;
        report.push(rt.block_on(measure(
            "aquatic_ws",
            Proto::WebTorrent { answers_replied: true },
            &server,
            &args,
        ))?);
    }
    println!();
    println!(
        "{:<20} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>11} {:>10}",
        "server",
        "announce/s",
        "ann p50",
        "ann p99",
        "relay p50",
        "relay p99",
        "cpu cores",
        "KiB/peer",
        "errors"
    );
    for r in &report {
        println!(
            "{:<18} {:>10.0} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>9.2} {:>6.1} → {:>6.1} {:>7}",
            r.name,
            r.announces_per_s,
            r.announce_p50_ms,
            r.announce_p99_ms,
            r.relay_p50_ms,
            r.relay_p99_ms,
            r.cpu_cores,
            r.kib_per_peer,
            r.kib_per_peer_end,
            r.errors
        );
    }
    let wt = report.iter().find(|r| r.name == "shoal /announce");
    let aq = report.iter().find(|r| r.name == "aquatic_ws");
    if let (Some(s), Some(a)) = (wt, aq) {
        println!();
        println!("shoal /announce vs aquatic_ws (same WebTorrent load, same run):");
        println!("  announces/s        {:.2}×", s.announces_per_s / a.announces_per_s.max(1e-9));
        println!(
            "  CPU per announce   {:.2}× (lower is better)",
            s.cpu_per_announce() / a.cpu_per_announce().max(1e-12)
        );
        println!(
            "  memory per peer    {:.3}× (lower is better)",
            s.kib_per_peer_end / a.kib_per_peer_end.max(1e-9)
        );
        println!(
            "  announce p99       {:.3}× (lower is better)",
            s.announce_p99_ms / a.announce_p99_ms.max(1e-9)
        );
        println!("  relay p99          {:.3}× (lower is better)", s.relay_p99_ms / a.relay_p99_ms.max(1e-9));
    }
    Ok(())
}

/// Mean cost of one announce in the sans-IO swarm (what the simulator runs): refresh a random
/// member, then select 8 candidates for it. Returns (µs per announce, announces per second).
fn selection_cost(members: usize) -> (f64, f64) {
    use shoal_swarm::{Nat, PeerInfo, SelectionConfig, SplitMix64, Swarm};
    let cfg = SelectionConfig::default();
    let localities: Vec<Arc<str>> = (0..8).map(|i| Arc::from(format!("isp-{i}").as_str())).collect();
    let nats = [Nat::Open, Nat::Eim, Nat::Symmetric, Nat::Unknown];
    let mut rng = SplitMix64::new(1);
    let info = |rng: &mut SplitMix64| PeerInfo {
        locality: localities[rng.below(localities.len())].clone(),
        nat: nats[rng.below(nats.len())],
        seq: 1_000 + rng.below(6) as u64,
        buffer_ms: 4_000,
        upload_kbps: rng.below(8_000) as u32,
        connections: rng.below(12) as u32,
    };
    let ids: Vec<String> = (0..members).map(|i| format!("peer-{i}")).collect();
    let mut swarm: Swarm<()> = Swarm::new(members, 7);
    for id in &ids {
        let i = info(&mut rng);
        let _ = swarm.upsert(id, i, (), 0);
    }
    let rounds = 200_000;
    let start = Instant::now();
    let mut picked = 0usize;
    for n in 0..rounds {
        let id = &ids[rng.below(members)];
        let i = info(&mut rng);
        let _ = swarm.upsert(id, i.clone(), (), n as u64);
        picked += swarm.select(&cfg, id, &i, &[], 8).len();
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(picked);
    (secs * 1e6 / rounds as f64, rounds as f64 / secs)
}

struct Report {
    name: &'static str,
    announces_per_s: f64,
    announce_p50_ms: f64,
    announce_p99_ms: f64,
    relay_p50_ms: f64,
    relay_p99_ms: f64,
    cpu_cores: f64,
    /// RSS growth per peer with everyone connected and announced once.
    kib_per_peer: f64,
    /// RSS growth per peer at the end of the measured traffic (buffers grown, queues used).
    kib_per_peer_end: f64,
    errors: u64,
}

impl Report {
    fn cpu_per_announce(&self) -> f64 {
        self.cpu_cores / self.announces_per_s.max(1e-9)
    }
}

// ---------------------------------------------------------------------------------------------
// Servers under test (child processes).

struct Server {
    child: Child,
    addr: SocketAddr,
    pid: u32,
    /// aquatic's generated config, removed with the server.
    cfg_file: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(f) = &self.cfg_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Server {
    fn shoal(threads: u32) -> Result<Server> {
        let (child, addr) = super::spawn_server_child(
            &["bench", "tracker", "--serve-child", "--server-threads", &threads.to_string()],
            READY,
            "tracker child",
        )?;
        let pid = child.id();
        Ok(Server { child, addr, pid, cfg_file: None })
    }

    fn aquatic(path: &PathBuf) -> Result<Server> {
        // A free loopback port (aquatic cannot report one it picked itself).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let cfg =
            std::env::temp_dir().join(format!("shoal-bench-aquatic-{}-{port}.toml", std::process::id()));
        let mut f = std::fs::File::create(&cfg)?;
        writeln!(f, "socket_workers = 1\nswarm_workers = 1\nlog_level = \"warn\"\n")?;
        writeln!(f, "[network]\naddress = \"{addr}\"\ntcp_backlog = 4096\n")?;
        writeln!(f, "[protocol]\nmax_offers = 10\npeer_announce_interval = 120\n")?;
        drop(f);
        let child = Command::new(path)
            .arg("-c")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let pid = child.id();
        let server = Server { child, addr, pid, cfg_file: Some(cfg) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            ensure!(Instant::now() < deadline, "aquatic_ws did not listen on {addr} within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Resident set size, bytes.
    fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmRSS")?;
        Ok(kb * 1024)
    }

    /// CPU seconds used so far (user + system).
    fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).context("stat format")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        ensure!(f.len() > 13, "stat too short");
        let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
        Ok(ticks / 100.0) // USER_HZ is 100 on Linux
    }
}

fn serve_child(threads: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    rt.block_on(async {
        let cfg = shoal_tracker::TrackerConfig {
            announce_interval_ms: 60_000,
            peer_timeout_ms: 90_000,
            handshake_timeout_ms: 60_000,
            max_connections: 1_000_000,
            max_peers_per_swarm: 1_000_000,
            rate_per_sec: 1_000,
            rate_burst: 2_000,
            ..shoal_tracker::TrackerConfig::default()
        };
        let tracker = shoal_tracker::Tracker::new(cfg, Arc::new(shoal_tracker::AllowAll))?;
        let app = tracker.router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // Small frames must leave at once; Nagle + delayed ACK adds ~40 ms to relays.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        println!("{READY} {addr}");
        std::io::stdout().flush()?;
        // The parent kills this process when it is done; stdin closing also ends it.
        tokio::spawn(async {
            let mut sink = Vec::new();
            let _ = tokio::io::stdin().read_to_end(&mut sink).await;
            std::process::exit(0);
        });
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
        anyhow::Ok(())
    })
}

/// Raise the soft open-files limit towards `want` (at most the hard limit); returns the new
/// soft limit.
pub(super) fn raise_fd_limit(want: u64) -> u64 {
    #[repr(C)]
    struct Rlimit {
        cur: u64,
        max: u64,
    }
    extern "C" {
        fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
        fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
    }
    const RLIMIT_NOFILE: i32 = 7;
    let mut r = Rlimit { cur: 0, max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed, which matches the Linux
    // `struct rlimit` layout (two 64-bit values on 64-bit targets).
    unsafe {
        if getrlimit(RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.cur < want {
            let new = Rlimit { cur: want.min(r.max), max: r.max };
            if setrlimit(RLIMIT_NOFILE, &new) == 0 {
                r.cur = new.cur;
            }
        }
    }
    r.cur
}

// ---------------------------------------------------------------------------------------------
// The load.

#[derive(Clone, Copy)]
pub(super) enum Proto {
    Shoal,
    /// `answers_replied`: the server answers an answer-carrying announce with an announce reply
    /// (aquatic_ws does, bittorrent-tracker and Shoal do not), which the client must skip.
    WebTorrent {
        answers_replied: bool,
    },
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) measuring: AtomicBool,
    pub(super) stop: AtomicBool,
    pub(super) announces: AtomicU64,
    pub(super) relayed: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) announce_us: Mutex<Vec<u32>>,
    pub(super) relay_us: Mutex<Vec<u32>>,
}

async fn measure(name: &'static str, proto: Proto, server: &Server, args: &Args) -> Result<Report> {
    let shared = Arc::new(Shared::default());
    let epoch = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = server.rss()?;
    let path = match proto {
        Proto::Shoal => "/v1/tracker",
        Proto::WebTorrent { .. } => "/announce",
    };

    // Connect everyone (bounded concurrency), each announcing once.
    let connected = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(args.peers as usize);
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..args.peers {
        let (shared, connected, gate) = (shared.clone(), connected.clone(), gate.clone());
        let (addr, swarms, period) = (server.addr, args.swarms, args.period_ms);
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let ws = match Ws::connect(addr, path).await {
                Ok(ws) => ws,
                Err(_) => {
                    shared.errors.fetch_add(1, Relaxed);
                    return;
                }
            };
            drop(permit);
            connected.fetch_add(1, Relaxed);
            if peer(ws, i, i % swarms, proto, period, epoch, shared.clone()).await.is_err()
                && !shared.stop.load(Relaxed)
            {
                shared.errors.fetch_add(1, Relaxed);
            }
        }));
    }
    let ramp = Instant::now();
    while connected.load(Relaxed) + shared.errors.load(Relaxed) < u64::from(args.peers) {
        ensure!(ramp.elapsed() < Duration::from_secs(120), "{name}: peers did not connect within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the first announces settle, then sample memory with everyone connected.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = server.rss()?;

    shared.measuring.store(true, Relaxed);
    let (cpu0, t0, a0) = (server.cpu_seconds()?, Instant::now(), shared.announces.load(Relaxed));
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let (cpu1, elapsed, a1) =
        (server.cpu_seconds()?, t0.elapsed().as_secs_f64(), shared.announces.load(Relaxed));
    shared.measuring.store(false, Relaxed);
    let rss_end = server.rss()?;
    shared.stop.store(true, Relaxed);
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }

    let mut ann = std::mem::take(&mut *shared.announce_us.lock().unwrap_or_else(|p| p.into_inner()));
    let mut rel = std::mem::take(&mut *shared.relay_us.lock().unwrap_or_else(|p| p.into_inner()));
    let errors = shared.errors.load(Relaxed);
    let peers = f64::from(args.peers);
    let r = Report {
        name,
        announces_per_s: (a1 - a0) as f64 / elapsed,
        announce_p50_ms: pct(&mut ann, 0.50),
        announce_p99_ms: pct(&mut ann, 0.99),
        relay_p50_ms: pct(&mut rel, 0.50),
        relay_p99_ms: pct(&mut rel, 0.99),
        cpu_cores: (cpu1 - cpu0) / elapsed,
        kib_per_peer: rss_connected.saturating_sub(rss_before) as f64 / 1024.0 / peers,
        kib_per_peer_end: rss_end.saturating_sub(rss_before) as f64 / 1024.0 / peers,
        errors,
    };
    println!(
        "{name}: RSS {:.1} MiB idle, {:.1} MiB with {} peers, {:.1} MiB at the end; {} relays measured; {errors} errors",
        rss_before as f64 / 1048576.0,
        rss_connected as f64 / 1048576.0,
        args.peers,
        rss_end as f64 / 1048576.0,
        rel.len(),
    );
    if errors > u64::from(args.peers) / 100 {
        bail!("{name}: {errors} of {} peers failed", args.peers);
    }
    Ok(r)
}

pub(super) fn pct(v: &mut [u32], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    f64::from(v[i]) / 1000.0
}

fn micros(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// Value of the JSON string field `key` in `text` (no escapes expected in bench ids).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let start = text.find(&pat)? + pat.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// The send time stamped into an SDP by this bench (`ts=<micros>;`).
fn stamp(text: &str) -> Option<u64> {
    let start = text.find("ts=")? + 3;
    let len = text[start..].find(';')?;
    text[start..start + len].parse().ok()
}

fn sdp(kind: &str, now_us: u64) -> String {
    format!("v=0\\r\\ns={kind} ts={now_us};\\r\\na=x:{}", "y".repeat(SDP_PAD))
}

fn wt_id(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:0width$}", width = 20 - prefix.len())
}

struct PeerIds {
    me: String,
    info_hash: String,
}

/// One peer's life: announce every `period` (or closed loop), offer after each reply, answer
/// every offer. Ends on error or when the bench stops it.
pub(super) async fn peer(
    ws: Ws,
    i: u32,
    swarm: u32,
    proto: Proto,
    period_ms: u64,
    epoch: Instant,
    shared: Arc<Shared>,
) -> Result<()> {
    let (mut rd, wr) = ws.split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let ids = Arc::new(match proto {
        Proto::Shoal => PeerIds { me: format!("p{i}"), info_hash: format!("s{swarm}") },
        Proto::WebTorrent { .. } => {
            PeerIds { me: wt_id("-SB0001-", u64::from(i)), info_hash: wt_id("shoalbench", u64::from(swarm)) }
        }
    });
    // Send times of messages the server replies to, in order; 0 = a reply not to time.
    let pending: Arc<Mutex<VecDeque<u64>>> = Arc::new(Mutex::new(VecDeque::new()));
    let offer_seq = Arc::new(AtomicU64::new(0));

    let announce = {
        let (wr, ids, pending, offer_seq) = (wr.clone(), ids.clone(), pending.clone(), offer_seq.clone());
        move || {
            let (wr, ids, pending, offer_seq) = (wr.clone(), ids.clone(), pending.clone(), offer_seq.clone());
            async move {
                let now = micros(epoch);
                let text = match proto {
                    Proto::Shoal => format!(
                        r#"{{"type":"announce","swarm":{{"stream":"bench","rendition":"{}"}},"peer_id":"{}","position":{{"seq":100}},"upload_kbps":4000,"nat":"eim","want":4}}"#,
                        ids.info_hash, ids.me
                    ),
                    Proto::WebTorrent { .. } => {
                        let oid =
                            wt_id("o", (u64::from(i) << 24) | (offer_seq.fetch_add(1, Relaxed) & 0xFF_FFFF));
                        format!(
                            r#"{{"action":"announce","info_hash":"{}","peer_id":"{}","numwant":1,"uploaded":0,"downloaded":0,"offers":[{{"offer":{{"type":"offer","sdp":"{}"}},"offer_id":"{oid}"}}]}}"#,
                            ids.info_hash,
                            ids.me,
                            sdp("offer", now)
                        )
                    }
                };
                pending.lock().unwrap_or_else(|p| p.into_inner()).push_back(now);
                wr.lock().await.send_text(text.as_bytes()).await
            }
        }
    };

    // Periodic announces (spread over the period so the load is smooth).
    let _ticker = if period_ms > 0 {
        let announce = announce.clone();
        let shared = shared.clone();
        Some(AbortOnDrop(tokio::spawn(async move {
            let offset = Duration::from_millis(u64::from(i).wrapping_mul(7919) % period_ms);
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(Duration::from_millis(period_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !shared.stop.load(Relaxed) {
                tick.tick().await;
                if announce().await.is_err() {
                    break;
                }
            }
        })))
    } else {
        announce().await?;
        None
    };

    let mut buf = Vec::with_capacity(512);
    let result = async {
        loop {
            if !rd.recv(&mut buf, &wr).await? {
                bail!("closed by the server");
            }
            let text = std::str::from_utf8(&buf)?;
            let now = micros(epoch);
            let measuring = shared.measuring.load(Relaxed);
            let is_reply = match proto {
                Proto::Shoal => text.starts_with(r#"{"type":"peers""#),
                Proto::WebTorrent { .. } => text.contains("\"interval\":"),
            };
            if is_reply {
                let sent = pending.lock().unwrap_or_else(|p| p.into_inner()).pop_front().unwrap_or(0);
                if sent != 0 {
                    shared.announces.fetch_add(1, Relaxed);
                    if measuring {
                        shared.announce_us.lock().unwrap_or_else(|p| p.into_inner()).push((now - sent) as u32);
                    }
                    if let Proto::Shoal = proto {
                        if let Some(to) = field(text, "peer_id") {
                            let msg = format!(r#"{{"type":"signal","to":"{to}","payload":{{"kind":"offer","sdp":"{}"}}}}"#, sdp("offer", now));
                            wr.lock().await.send_text(msg.as_bytes()).await?;
                        }
                    }
                    if period_ms == 0 && !shared.stop.load(Relaxed) {
                        announce().await?;
                    }
                }
            } else if text.contains("failure reason") || text.starts_with(r#"{"type":"error""#) {
                if shared.errors.fetch_add(1, Relaxed) == 0 {
                    eprintln!("first error from the tracker: {}", &text[..text.len().min(300)]);
                }
            } else if match proto {
                Proto::Shoal => text.contains(r#""kind":"offer""#),
                Proto::WebTorrent { .. } => text.contains(r#""offer":{"#),
            } {
                // An offer relayed to us: time it, answer it.
                if let Some(sent) = stamp(text) {
                    shared.relayed.fetch_add(1, Relaxed);
                    if measuring {
                        shared.relay_us.lock().unwrap_or_else(|p| p.into_inner()).push(now.saturating_sub(sent) as u32);
                    }
                }
                let answer = match proto {
                    Proto::Shoal => {
                        let from = field(text, "from").unwrap_or_default();
                        format!(r#"{{"type":"signal","to":"{from}","payload":{{"kind":"answer","sdp":"{}"}}}}"#, sdp("answer", now))
                    }
                    Proto::WebTorrent { answers_replied } => {
                        let from = field(text, "peer_id").unwrap_or_default();
                        let oid = field(text, "offer_id").unwrap_or_default();
                        if answers_replied {
                            pending.lock().unwrap_or_else(|p| p.into_inner()).push_back(0);
                        }
                        format!(
                            r#"{{"action":"announce","info_hash":"{}","peer_id":"{}","to_peer_id":"{from}","offer_id":"{oid}","answer":{{"type":"answer","sdp":"{}"}}}}"#,
                            ids.info_hash,
                            ids.me,
                            sdp("answer", now)
                        )
                    }
                };
                wr.lock().await.send_text(answer.as_bytes()).await?;
            }
            // Answers relayed to us need no action.
        }
    }
    .await;
    result
}

/// Ends the task when the peer's future is dropped (the bench aborts peers when it stops).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// A compact WebSocket client: enough RFC 6455 for unfragmented text frames.

pub(super) struct Ws {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

struct WsRead {
    rd: BufReader<OwnedReadHalf>,
}

struct WsWrite {
    wr: OwnedWriteHalf,
    frame: Vec<u8>,
}

impl Ws {
    pub(super) async fn connect(addr: SocketAddr, path: &str) -> Result<Ws> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (r, mut wr) = tcp.into_split();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        wr.write_all(req.as_bytes()).await?;
        let mut rd = BufReader::with_capacity(2048, r);
        let mut line = String::new();
        rd.read_line(&mut line).await?;
        ensure!(line.contains(" 101 "), "upgrade refused: {}", line.trim());
        for _ in 0..64 {
            line.clear();
            if rd.read_line(&mut line).await? == 0 || line == "\r\n" {
                return Ok(Ws { rd, wr });
            }
        }
        bail!("too many response headers")
    }

    fn split(self) -> (WsRead, WsWrite) {
        (WsRead { rd: self.rd }, WsWrite { wr: self.wr, frame: Vec::new() })
    }
}

impl WsWrite {
    /// One masked text frame (a zero masking key: valid, and no XOR work).
    async fn send_text(&mut self, payload: &[u8]) -> Result<()> {
        self.frame.clear();
        self.frame.push(0x81);
        let n = payload.len();
        if n < 126 {
            self.frame.push(0x80 | n as u8);
        } else if n <= 0xFFFF {
            self.frame.push(0x80 | 126);
            self.frame.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.frame.push(0x80 | 127);
            self.frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
        self.frame.extend_from_slice(&[0, 0, 0, 0]);
        self.frame.extend_from_slice(payload);
        self.wr.write_all(&self.frame).await?;
        Ok(())
    }
}

impl WsRead {
    /// The next text message into `buf`; false on a close frame. Pings are answered.
    async fn recv(&mut self, buf: &mut Vec<u8>, wr: &tokio::sync::Mutex<WsWrite>) -> Result<bool> {
        for _ in 0..1_000 {
            let mut h = [0u8; 2];
            self.rd.read_exact(&mut h).await?;
            let opcode = h[0] & 0x0F;
            let len = match h[1] & 0x7F {
                126 => u64::from(self.rd.read_u16().await?),
                127 => self.rd.read_u64().await?,
                n => u64::from(n),
            };
            ensure!(h[1] & 0x80 == 0, "server frames are not masked");
            ensure!(len <= 1 << 20, "frame of {len} bytes");
            buf.resize(len as usize, 0);
            self.rd.read_exact(buf).await?;
            match opcode {
                0x1 | 0x2 => return Ok(true),
                0x8 => return Ok(false),
                0x9 => {
                    let mut w = wr.lock().await;
                    let mut frame = vec![0x8A, 0x80 | buf.len() as u8, 0, 0, 0, 0];
                    frame.extend_from_slice(buf);
                    w.wr.write_all(&frame).await?;
                }
                _ => {}
            }
        }
        bail!("1000 control frames in a row")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(field(r#"{"a":"x","peer_id":"p7","b":1}"#, "peer_id"), Some("p7"));
        assert_eq!(field(r#"{"a":1}"#, "peer_id"), None);
        assert_eq!(stamp(&sdp("offer", 1234)), Some(1234));
        assert_eq!(wt_id("-SB0001-", 42).len(), 20);
        let mut v = vec![5_000, 1_000, 3_000];
        assert_eq!(pct(&mut v, 0.5), 3.0);
        assert!(pct(&mut [], 0.5).is_nan());
    }
}
