//! Shoal **Origin**: a live HLS source that publishes, for every segment, its size, SHA-256
//! and per-chunk hashes in an Ed25519-signed manifest (`shoal_proto::manifest`).
//!
//! Sources: an in-process synthetic stream (test pattern → OpenH264 → MPEG-TS, [`synth`]),
//! HLS pushed by ffmpeg over HTTP PUT ([`ingest`]), or a relay of an upstream live HLS URL
//! ([`relay`]). Serving ([`http`]): master and media playlists with a sliding window, segments
//! (immutable, byte ranges), `manifest.json`, the public key, `/health`.
//!
//! Embedding (as `shoal demo` does):
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let mut cfg = shoal_origin::OriginConfig::default();
//! cfg.synthetic.enabled = true;
//! let origin = shoal_origin::Origin::new(cfg)?;
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let _sources = origin.start_sources(cancel.clone())?;
//! let app = origin.router(); // merge into your own axum Router, or:
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! shoal_origin::serve(listener, app, cancel).await?;
//! # Ok(()) }
//! ```

pub mod bench;
pub mod clock;
pub mod config;
pub mod hls;
pub mod http;
pub mod ingest;
pub mod keys;
pub mod media;
pub mod numbering;
pub mod relay;
pub mod store;
pub mod synth;

use std::sync::Arc;
use std::time::Duration;

use shoal_proto::SigningKey;

pub use config::{OriginConfig, RelayConfig, RenditionConfig, SyntheticConfig};
pub use store::{SourceKind, Store};
/// Re-exported so embedders need no direct `tokio-util` dependency.
pub use tokio_util::sync::CancellationToken;

/// One origin: configuration, signing key, published segments. Cheap to clone (shared).
#[derive(Clone)]
pub struct Origin {
    pub config: Arc<OriginConfig>,
    pub store: Arc<Store>,
    pub(crate) ingest: Arc<ingest::IngestState>,
}

/// The background tasks [`Origin::start_sources`] started.
pub struct Sources {
    pub synthetic: Option<synth::SyntheticHandle>,
    pub relay: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub janitor: tokio::task::JoinHandle<()>,
}

impl Origin {
    /// Validate `config` and load its key (`key_file`), or make an ephemeral key.
    pub fn new(config: OriginConfig) -> anyhow::Result<Self> {
        let key = match &config.key_file {
            Some(p) => keys::load(p)?,
            None => keys::ephemeral()?,
        };
        Self::with_key(config, key)
    }

    /// Validate `config` and use `key` for signing.
    pub fn with_key(config: OriginConfig, key: SigningKey) -> anyhow::Result<Self> {
        config.validate()?;
        let store = Arc::new(Store::new(key, store::Limits::from_config(&config)));
        Ok(Origin { config: Arc::new(config), store, ingest: Arc::new(ingest::IngestState::default()) })
    }

    /// The axum router for serving and ingest. Serve it with connect info
    /// (`into_make_service_with_connect_info::<SocketAddr>()`) to get peer addresses in logs.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Start what the configuration asks for: the synthetic source, the relay, and the janitor
    /// that drops idle ingest streams. All stop when `cancel` fires.
    pub fn start_sources(&self, cancel: CancellationToken) -> anyhow::Result<Sources> {
        let synthetic =
            if self.config.synthetic.enabled { Some(self.start_synthetic(cancel.clone())?) } else { None };
        let relay = self.config.relay.clone().map(|r| {
            let (o, c, name) = (self.clone(), cancel.clone(), self.config.stream.clone());
            tokio::spawn(relay::run(o, r, name, c))
        });
        Ok(Sources { synthetic, relay, janitor: self.start_janitor(cancel) })
    }

    /// Start the synthetic source of `config.stream` with `config.synthetic`.
    pub fn start_synthetic(&self, cancel: CancellationToken) -> anyhow::Result<synth::SyntheticHandle> {
        let stream = self.store.open_stream(&self.config.stream, SourceKind::Synthetic)?;
        synth::spawn(self.store.clone(), stream, &self.config.synthetic, cancel)
    }

    fn start_janitor(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let o = self.clone();
        tokio::spawn(async move {
            let idle_ms = o.config.ingest.idle_timeout_s.saturating_mul(1000);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = cancel.cancelled() => return,
                }
                for name in o.store.remove_idle(SourceKind::Ingest, idle_ms) {
                    o.ingest.forget(&name);
                    tracing::info!(stream = name, "ingest stream idle, removed");
                }
            }
        })
    }

    /// Wait until every rendition of the synthetic stream has published a segment (so its
    /// master playlist is complete). `false` on timeout.
    pub async fn wait_synthetic_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.store.subscribe();
        let want = self.config.synthetic.renditions.len();
        let check = || {
            self.store.stream(&self.config.stream).is_some_and(|s| {
                s.rendition_names().len() >= want
                    && s.rendition_names()
                        .iter()
                        .all(|n| s.rendition(n).is_some_and(|r| !r.snapshot().segments.is_empty()))
                    && s.master().is_some()
            })
        };
        tokio::time::timeout(timeout, async {
            loop {
                if check() {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// URL of the master playlist of the configured stream under `base` (`http://host:port`).
    pub fn master_url(&self, base: &str) -> String {
        format!("{base}/live/{}/master.m3u8", self.config.stream)
    }
}

/// Serve `app` on `listener` until `cancel` fires, with peer addresses in request extensions
/// (`ConnectInfo<SocketAddr>`).
///
/// Use this rather than `axum::serve` when ingest is on: ffmpeg half-closes its connection
/// right after the last byte of a PUT and never reads the answer, and hyper by default treats
/// that as an aborted request and drops the handler before the segment is stored. Here
/// HTTP/1 half-close is allowed, so every complete upload is processed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().half_close(true).timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = app.clone().map_request(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            req
        });
        let conn =
            builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => tracing::debug!("connections still open after 5 s, closing"),
    }
    Ok(())
}
