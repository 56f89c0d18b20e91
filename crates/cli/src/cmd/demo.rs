//! `shoal demo`: the whole system in one process with a synthetic live stream.
//!
//! - the **Origin** (synthetic 360p + 720p ladder, signed manifests) and the demo player page
//!   (`web/dist/demo`, built by `make web`) on one listener — it plays the CDN's part;
//! - the server roles **API**, **Tracker** (+ signaling), **STUN** and **Pingback** (with its
//!   `/dashboard`) on a second listener, exactly as `shoal serve` runs them;
//! - optionally `--peers N` headless native peers (the native SDK) so one browser tab already
//!   has neighbours to share with.
//!
//! The page learns where everything is from `/config.json` (stream, master playlist, API,
//! a viewer token minted for this run).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use axum::routing::get;
use axum::Json;
use shoal_api::token::{self, Claims};
use shoal_origin::{CancellationToken, Origin, OriginConfig};
use shoal_proto::ticket::HmacKeys;

use crate::cmd::serve::{load, start, Role, Sources};

#[derive(clap::Args)]
pub struct Args {
    /// Address of the page and the origin ("CDN"). Port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the API, tracker and pingback (port 0: a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub serve_listen: SocketAddr,
    /// UDP address of the STUN server (port 0: a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub stun_listen: SocketAddr,
    /// Stream name.
    #[arg(long, default_value = "demo")]
    pub stream: String,
    /// Headless native peers (the native SDK) to add to the swarm.
    #[arg(long, default_value_t = 0)]
    pub peers: usize,
    /// Rendition the headless peers play (default: the highest).
    #[arg(long)]
    pub peer_rendition: Option<String>,
    /// Directory of the demo page (default: web/dist/demo of this source tree).
    #[arg(long)]
    pub web: Option<PathBuf>,
    /// Share of sessions kept CDN-only as the control group (percent).
    #[arg(long, default_value_t = 5.0)]
    pub holdback_percent: f64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
}

fn default_web_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/dist/demo"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !shoal_proto::ids::valid_name(&args.stream) {
        bail!("--stream {:?}: 1-64 characters of [A-Za-z0-9_.-]", args.stream);
    }
    let web = args.web.clone().unwrap_or_else(default_web_dir);
    if !web.join("index.html").is_file() {
        bail!(
            "{} has no index.html: build the page first with `make web` (or pass --web DIR)",
            web.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(run_async(args, web))
}

async fn run_async(args: Args, web: PathBuf) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();

    // Origin + page.
    let mut ocfg = OriginConfig::default();
    ocfg.synthetic.enabled = true;
    ocfg.stream = args.stream.clone();
    let origin = Origin::new(ocfg).context("origin")?;
    let _sources = origin.start_sources(cancel.clone()).context("starting the synthetic stream")?;
    let public_key = origin.store.public_key_b64().to_owned();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {} (pass --listen 127.0.0.1:0 for a free port)", args.listen))?;
    let page_addr = listener.local_addr()?;
    let base = format!("http://{page_addr}");
    let master = format!("{base}/live/{}/master.m3u8", args.stream);

    // Server roles, configured like `shoal serve --set ...`.
    let demo_key = format!("demo:{}", random_hex(24)?);
    let set = vec![
        format!("serve.listen={}", args.serve_listen),
        format!("stun.listen={}", args.stun_listen),
        format!("auth.keys=[\"{demo_key}\"]"),
        format!("api.cdn=[\"{base}/live/{{stream}}/\"]"),
        format!("api.origin_public_key={public_key}"),
        format!("api.holdback_percent={}", args.holdback_percent),
    ];
    let cfg = load(&Sources { file: None, env: Vec::new(), set }).context("demo server configuration")?;
    let serve = start(cfg).await.context("starting API, tracker, STUN and pingback")?;
    let api = serve.url(Role::Api).context("the API listener")?;
    let dashboard = format!("{}/dashboard", serve.url(Role::Pingback).unwrap_or_else(|| api.clone()));

    // A viewer token for this run, handed to the page.
    let keys = HmacKeys::parse(&[demo_key.as_str()], "demo").context("demo key")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("clock before 1970")?.as_secs();
    let claims = Claims {
        stream: args.stream.clone(),
        exp: now + 7 * 24 * 3600,
        nbf: None,
        iat: Some(now),
        sub: None,
        origins: vec![],
    };
    let token = token::mint(&claims, &keys).context("minting the demo token")?;

    let config = serde_json::json!({
        "src": master,
        "api": api,
        "stream": args.stream,
        "token": token,
        "dashboard": dashboard,
    });
    let app = origin
        .router()
        .route("/config.json", get(move || std::future::ready(Json(config.clone()))))
        .fallback_service(tower_http::services::ServeDir::new(&web));
    // The origin's own server loop (axum::serve would drop half-closed ffmpeg uploads).
    let page = tokio::spawn(shoal_origin::serve(listener, app, cancel.clone()));

    // Native peers, once the first segments exist.
    let mut peers = Vec::new();
    if args.peers > 0 {
        wait_for_playlist(&master).await;
        let mut tmpl = shoal_peer::config::ClientConfig::new(&master);
        tmpl.api = Some(api.clone());
        tmpl.token = Some(token.clone());
        tmpl.stream = Some(args.stream.clone());
        tmpl.rendition = args.peer_rendition.clone();
        tmpl.status_interval_ms = 0;
        peers =
            shoal_peer::swarm::start_headless(args.peers, &tmpl).await.context("starting native peers")?;
    }

    println!("Shoal demo is running (stream {:?}).", args.stream);
    println!("  Player page  {base}/   <- open it in two tabs: the share from peers rises");
    println!("  Dashboard    {dashboard}");
    println!("  Master       {master}   (plain HLS: any player plays it)");
    println!("  API          {api}/v1/join");
    println!("  Native SDK   shoal play {master} --api {api} --token {token}");
    if args.peers > 0 {
        println!("  {} headless native peers joined the swarm", peers.len());
    }
    println!("{}", serve.ready_line());
    println!("SHOAL_DEMO_READY {base}/ api={api} dashboard={dashboard} master={master}");
    println!("Press Ctrl-C to stop.");

    let stop = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        _ = stop => {}
        r = page => {
            r.context("page server task")?.context("page server")?;
            bail!("the page server stopped");
        }
    }
    println!("stopping...");
    let reports = shoal_peer::swarm::stop_all(peers).await;
    for (i, r) in reports.iter().enumerate() {
        println!("native peer {i}: {}", serde_json::to_string(r).unwrap_or_default());
    }
    cancel.cancel();
    serve.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

/// Headless peers start three segments behind the live edge: let a few exist first.
async fn wait_for_playlist(master: &str) {
    let client = reqwest::Client::new();
    for _ in 0..40 {
        if let Ok(r) = client.get(master).send().await {
            if r.status().is_success() {
                tokio::time::sleep(Duration::from_secs(6)).await;
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn random_hex(n: usize) -> anyhow::Result<String> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(hex::encode(b))
}
