//! `shoal origin`: run the Origin — a live HLS source (synthetic, ffmpeg PUT ingest, or relay
//! of an upstream URL) that publishes signed segment hashes.
//!
//! Made to be driven by tests: bind `--listen 127.0.0.1:0`, and read stdout, which carries
//! exactly two machine-readable lines (logs go to stderr):
//!
//! ```text
//! SHOAL_ORIGIN_KEY <public key, base64> <key id> <ephemeral|file>
//! SHOAL_ORIGIN_READY http://127.0.0.1:PORT http://127.0.0.1:PORT/live/STREAM/master.m3u8
//! ```
//!
//! With `--synthetic`, READY comes once every rendition has published its first segment
//! (the master playlist is complete); otherwise as soon as the listener is bound.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use shoal_origin::CancellationToken;
use shoal_origin::{Origin, OriginConfig, RelayConfig, RenditionConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// TOML file with the origin configuration (see `OriginConfig`); flags override it.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:0 (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Publish the synthetic test stream (OpenH264 in-process).
    #[arg(long)]
    pub synthetic: bool,
    /// Relay an upstream live HLS URL (master or media playlist).
    #[arg(long, value_name = "URL")]
    pub relay: Option<String>,
    /// Accept ffmpeg HLS pushes to /ingest/... with this key.
    #[arg(long, env = "SHOAL_INGEST_KEY", hide_env_values = true)]
    pub ingest_key: Option<String>,
    /// Secret key file written by `shoal keygen` (default: an ephemeral key).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Stream name of the synthetic source or the relay (default demo).
    #[arg(long)]
    pub stream: Option<String>,
    /// Segments per media playlist (default 10).
    #[arg(long)]
    pub window: Option<usize>,
    /// Entries per manifest.json (default 6).
    #[arg(long)]
    pub manifest_window: Option<usize>,
    /// Segment duration of the synthetic source, seconds (default 2).
    #[arg(long, value_name = "SECONDS")]
    pub segment_duration: Option<f64>,
    /// Frame rate of the synthetic source (default 30).
    #[arg(long)]
    pub fps: Option<u32>,
    /// Synthetic ABR ladder: `name:WxH@kbps,...` (default `360p:640x360@800,720p:1280x720@2500`).
    #[arg(long)]
    pub ladder: Option<String>,
}

/// Parse `360p:640x360@800,720p:1280x720@2500`.
pub fn parse_ladder(s: &str) -> anyhow::Result<Vec<RenditionConfig>> {
    s.split(',')
        .map(|item| {
            let item = item.trim();
            let (name, rest) = item
                .split_once(':')
                .with_context(|| format!("ladder entry {item:?}: expected name:WxH@kbps"))?;
            let (size, kbps) = rest
                .split_once('@')
                .with_context(|| format!("ladder entry {item:?}: expected name:WxH@kbps"))?;
            let (w, h) = size
                .split_once(['x', 'X'])
                .with_context(|| format!("ladder entry {item:?}: size must be WxH"))?;
            Ok(RenditionConfig {
                name: name.to_owned(),
                width: w.parse().with_context(|| format!("ladder entry {item:?}: width"))?,
                height: h.parse().with_context(|| format!("ladder entry {item:?}: height"))?,
                bitrate_kbps: kbps
                    .trim_end_matches("k")
                    .parse()
                    .with_context(|| format!("ladder entry {item:?}: kbit/s"))?,
            })
        })
        .collect()
}

/// The configuration the flags describe (file first, flags on top).
pub fn config_from_args(a: &Args) -> anyhow::Result<OriginConfig> {
    let mut c = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => OriginConfig::default(),
    };
    if let Some(l) = a.listen {
        c.listen = l;
    }
    if a.synthetic {
        c.synthetic.enabled = true;
    }
    if let Some(url) = &a.relay {
        c.relay = Some(RelayConfig { url: url.clone(), ..c.relay.clone().unwrap_or_default() });
    }
    if let Some(k) = &a.ingest_key {
        c.ingest.key = Some(k.clone());
    }
    if let Some(k) = &a.key {
        c.key_file = Some(k.clone());
    }
    if let Some(s) = &a.stream {
        c.stream = s.clone();
    }
    if let Some(w) = a.window {
        c.window = w;
    }
    if let Some(w) = a.manifest_window {
        c.manifest_window = w;
    }
    if let Some(d) = a.segment_duration {
        c.synthetic.segment_duration_s = d;
    }
    if let Some(f) = a.fps {
        c.synthetic.fps = f;
    }
    if let Some(l) = &a.ladder {
        c.synthetic.renditions = parse_ladder(l)?;
    }
    if c.synthetic.enabled && c.relay.is_some() {
        bail!("--synthetic and --relay both publish stream {:?}; choose one", c.stream);
    }
    if !c.synthetic.enabled && c.relay.is_none() && c.ingest.key.is_none() {
        bail!("nothing to publish: give --synthetic, --relay URL or --ingest-key KEY");
    }
    c.validate()?;
    Ok(c)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = config_from_args(&args)?;
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(serve(cfg))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve(cfg: OriginConfig) -> anyhow::Result<()> {
    let key_source = if cfg.key_file.is_some() { "file" } else { "ephemeral" };
    let origin = Origin::new(cfg)?;
    let listener = tokio::net::TcpListener::bind(origin.config.listen)
        .await
        .with_context(|| format!("binding {}", origin.config.listen))?;
    let mut addr = listener.local_addr()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let base = format!("http://{addr}");
    let cancel = CancellationToken::new();
    let sources = origin.start_sources(cancel.clone())?;
    let server = tokio::spawn(shoal_origin::serve(listener, origin.router(), cancel.clone()));
    println!("SHOAL_ORIGIN_KEY {} {} {key_source}", origin.store.public_key_b64(), origin.store.key_id());
    if key_source == "ephemeral" {
        tracing::warn!(
            public_key = origin.store.public_key_b64(),
            "no --key given: signing with an ephemeral key (viewers must be given this public key)"
        );
    }
    if origin.config.synthetic.enabled && !origin.wait_synthetic_ready(Duration::from_secs(60)).await {
        cancel.cancel();
        if let Some(s) = sources.synthetic {
            if let Ok(Err(e)) = s.task.await {
                return Err(e.context("synthetic source failed"));
            }
        }
        bail!("the synthetic source published nothing within 60 s");
    }
    println!("SHOAL_ORIGIN_READY {base} {}", origin.master_url(&base));
    std::io::stdout().flush()?;
    tracing::info!(url = base, master = origin.master_url(&base), ingest = origin.config.ingest.key.is_some(), relay = ?origin.config.relay.as_ref().map(|r| &r.url), "origin ready");

    let synthetic_failed = async {
        match sources.synthetic {
            Some(s) => match s.task.await {
                Ok(Err(e)) => Some(e),
                Err(e) => Some(anyhow::anyhow!("synthetic task: {e}")),
                Ok(Ok(())) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        _ = shutdown_signal() => { tracing::info!("shutting down"); Ok(()) }
        e = synthetic_failed => Err(e.map_or_else(|| anyhow::anyhow!("synthetic source ended"), |e| e.context("synthetic source failed"))),
    };
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_parses() {
        let l = parse_ladder("360p:640x360@800,720p:1280x720@2500k").expect("parses");
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[1].name.as_str(), l[1].width, l[1].height, l[1].bitrate_kbps),
            ("720p", 1280, 720, 2500)
        );
        assert!(parse_ladder("720p:1280@2500").is_err());
        assert!(parse_ladder("x").is_err());
    }
}
