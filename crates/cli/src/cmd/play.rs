//! `shoal play URL`: the native client SDK as a command. Joins the stream's swarm and serves
//! it on a local URL any HLS player can open (ffplay, mpv, VLC), or plays it itself with
//! `--headless`.
//!
//! stdout carries machine-readable lines only (logs go to stderr):
//!
//! ```text
//! SHOAL_PLAY_READY http://127.0.0.1:PORT/master.m3u8
//! SHOAL_PLAY_STATUS {"uptime_ms":...,"segments":...,"stalls":...,"peers":...,"p2p_share":...}
//! SHOAL_PLAY_SUMMARY {"stats":{...},"headless":{...}}
//! ```
//!
//! The summary comes at the end: after `--duration` seconds, on Ctrl-C or on SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use shoal_peer::{Client, ClientConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Master playlist URL on the CDN (e.g. http://127.0.0.1:8080/live/demo/master.m3u8).
    pub url: String,
    /// API base URL to join through (e.g. http://127.0.0.1:8090). Without it: CDN only.
    #[arg(long)]
    pub api: Option<String>,
    /// Viewer token for the join.
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Stream name (default: the master playlist's directory name).
    #[arg(long)]
    pub stream: Option<String>,
    /// Address of the local proxy the player reads from.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The UDP socket for every peer connection (0.0.0.0:0: all interfaces, a free port).
    #[arg(long, default_value = "0.0.0.0:0")]
    pub udp: SocketAddr,
    /// Play the stream here in real time, with no external player.
    #[arg(long)]
    pub headless: bool,
    /// Headless: the rendition to play (default: the highest bandwidth).
    #[arg(long)]
    pub rendition: Option<String>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Most peer connections at once.
    #[arg(long)]
    pub max_peers: Option<u32>,
    /// STUN URL (stun:host:port) to use instead of the API's; repeatable.
    #[arg(long)]
    pub stun: Vec<String>,
    /// Engine setting override, `name=JSON` (e.g. `min_peers=6`); repeatable.
    #[arg(long = "engine", value_name = "NAME=JSON")]
    pub engine: Vec<String>,
    /// Seconds between status lines (0: none).
    #[arg(long, default_value_t = 5.0)]
    pub status_every: f64,
    /// TEST ONLY: corrupt every chunk sent to peers (proves lying peers get dropped). Same as
    /// SHOAL_TEST_LIE=1.
    #[arg(long, hide = true)]
    pub test_lie: bool,
}

pub fn config(a: &Args) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new(a.url.clone());
    c.api = a.api.clone();
    c.token = a.token.clone();
    c.stream = a.stream.clone();
    c.listen = a.listen;
    c.udp_bind = a.udp;
    c.headless = a.headless;
    c.rendition = a.rendition.clone();
    c.duration_s = a.duration;
    if let Some(m) = a.max_peers {
        c.max_peers = m;
    }
    c.stun = a.stun.clone();
    for kv in &a.engine {
        let (k, v) = kv.split_once('=').with_context(|| format!("--engine {kv:?}: expected name=JSON"))?;
        let v: serde_json::Value = serde_json::from_str(v)
            .or_else(|_| Ok::<_, anyhow::Error>(serde_json::Value::String(v.into())))?;
        c.engine.insert(k.trim().to_owned(), v);
    }
    c.status_interval_ms = 0;
    c.test_lie = a.test_lie;
    c.validate().map_err(|e| anyhow::anyhow!(e))?;
    Ok(c)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = config(&a)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(play(cfg, a.status_every, a.duration))
}

fn line(tag: &str, body: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{tag} {body}");
    let _ = out.flush();
}

async fn play(cfg: ClientConfig, status_every: f64, duration: Option<f64>) -> anyhow::Result<()> {
    let headless = cfg.headless;
    let mut client = Client::start(cfg).await?;
    line("SHOAL_PLAY_READY", client.local_url());
    if !headless {
        eprintln!("play it with: ffplay {}  (or mpv, VLC)", client.local_url());
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let status = (status_every > 0.0).then(|| Duration::from_secs_f64(status_every));
    let mut next_status = tokio::time::Instant::now() + status.unwrap_or(Duration::from_secs(3600));
    let end = duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    loop {
        let wake = end.map_or(next_status, |e| e.min(next_status));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            done = client.headless_done(), if headless => {
                if done {
                    break;
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if end.is_some_and(|e| tokio::time::Instant::now() >= e) {
                    break;
                }
                if let Some(s) = status {
                    next_status = tokio::time::Instant::now() + s;
                    let st = client.stats();
                    let j = serde_json::json!({
                        "uptime_ms": st.uptime_ms,
                        "delivered": st.delivered,
                        "peers": st.peers_connected,
                        "p2p_share": (st.p2p_share * 1000.0).round() / 1000.0,
                        "http_bytes": st.http_bytes,
                        "p2p_down_bytes": st.p2p_down_bytes,
                        "p2p_up_bytes": st.p2p_up_bytes,
                        "tracker": st.tracker,
                    });
                    line("SHOAL_PLAY_STATUS", &j.to_string());
                }
            }
        }
    }
    let report = client.stop().await;
    line("SHOAL_PLAY_SUMMARY", &serde_json::to_string(&report)?);
    Ok(())
}
