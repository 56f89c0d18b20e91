//! The running client: start it, give its local URL to the player, read its stats, stop it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cdn::Cdn;
use crate::config::ClientConfig;
use crate::core::{Core, CoreParts};
use crate::msg::CoreMsg;
use crate::player::{HeadlessParams, HeadlessSummary};
use crate::proxy::Proxy;
use crate::stats::StatsSnapshot;

/// Everything a finished client reports (the final JSON of `shoal play --headless`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub stats: StatsSnapshot,
    pub headless: Option<HeadlessSummary>,
}

/// A cheap, cloneable view of a running client's counters (for pingback, status lines, FFI).
#[derive(Clone)]
pub struct StatsHandle {
    rx: watch::Receiver<StatsSnapshot>,
    proxy: Arc<Proxy>,
}

impl StatsHandle {
    /// The latest counters (refreshed twice a second).
    pub fn get(&self) -> StatsSnapshot {
        let mut s = self.rx.borrow().clone();
        s.proxy_fallbacks = self.proxy.fallbacks.load(Ordering::Relaxed);
        s
    }
}

pub struct Client {
    core: mpsc::UnboundedSender<CoreMsg>,
    local_url: String,
    stats: StatsHandle,
    core_task: tokio::task::JoinHandle<StatsSnapshot>,
    server_task: tokio::task::JoinHandle<()>,
    headless: Option<tokio::task::JoinHandle<HeadlessSummary>>,
    stop_headless: watch::Sender<bool>,
    /// The pingback task, its stop switch and the headless player's progress it reads.
    pingback:
        (watch::Sender<bool>, tokio::task::JoinHandle<()>, watch::Sender<crate::pingback::PlayerProgress>),
}

impl Client {
    /// Bind the proxy and the UDP socket, start the core, join in the background. Returns as
    /// soon as the proxy accepts requests; playback works from the CDN from that moment on.
    pub async fn start(cfg: ClientConfig) -> anyhow::Result<Client> {
        cfg.validate().map_err(|e| anyhow::anyhow!(e))?;
        let stream = cfg.stream_name().context("cannot tell the stream name from the URL: set `stream`")?;
        let primary = {
            let u = reqwest::Url::parse(&cfg.url)?;
            let s = u.as_str();
            let cut = s.split(['?', '#']).next().unwrap_or(s);
            match cut.rfind('/') {
                Some(i) => cut[..=i].to_owned(),
                None => cut.to_owned(),
            }
        };
        let cdn = Arc::new(Cdn::new(primary)?);
        let socket = tokio::net::UdpSocket::bind(cfg.udp_bind)
            .await
            .with_context(|| format!("binding the peer socket {}", cfg.udp_bind))?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding the proxy {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (stats_tx, stats_rx) = watch::channel(StatsSnapshot::default());
        let proxy = Proxy::new(tx.clone(), Arc::clone(&cdn), cfg.url.clone());
        let router = proxy.router();
        let server_task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!("proxy server: {e}");
            }
        });
        let wait_join = cfg.api.is_some();
        let headless_cfg =
            cfg.headless.then(|| (cfg.rendition.clone(), cfg.duration_s, cfg.status_interval_ms));
        let (joined_tx, joined_rx) = watch::channel(None);
        let (progress_tx, progress_rx) = watch::channel(crate::pingback::PlayerProgress::default());
        let (stop_pingback, pingback_stop_rx) = watch::channel(false);
        let pingback_task = crate::pingback::spawn(crate::pingback::Params {
            joined: joined_rx,
            stats: stats_rx.clone(),
            player: headless_cfg.is_some().then_some(progress_rx),
            http: cdn.http.clone(),
            stop: pingback_stop_rx,
            started: std::time::Instant::now(),
        });
        let core =
            Core::new(CoreParts { cfg, socket, rx, tx: tx.clone(), cdn, stats_tx, stream, joined_tx })?;
        let core_task = tokio::spawn(core.run());
        let stats = StatsHandle { rx: stats_rx, proxy };
        let (stop_headless, stop_rx) = watch::channel(false);
        let base = format!("http://{addr}");
        let headless = headless_cfg.map(|(rendition, duration, status)| {
            tokio::spawn(crate::player::run(HeadlessParams {
                base: base.clone(),
                rendition,
                duration: duration.map(Duration::from_secs_f64),
                status_every: (status > 0).then(|| Duration::from_millis(status)),
                core: tx.clone(),
                stats: stats.rx.clone(),
                stop: stop_rx,
                wait_join,
                progress: Some(progress_tx.clone()),
            }))
        });
        Ok(Client {
            core: tx,
            local_url: format!("{base}/master.m3u8"),
            stats,
            core_task,
            server_task,
            headless,
            stop_headless,
            pingback: (stop_pingback, pingback_task, progress_tx),
        })
    }

    /// `http://127.0.0.1:PORT/master.m3u8`: give this to the player.
    pub fn local_url(&self) -> &str {
        &self.local_url
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.get()
    }

    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Fresh counters straight from the core (waits for it).
    pub async fn stats_now(&self) -> StatsSnapshot {
        let (tx, rx) = oneshot::channel();
        if self.core.send(CoreMsg::Stats(tx)).is_ok() {
            if let Ok(s) = rx.await {
                let mut s = s;
                s.proxy_fallbacks = self.stats.proxy.fallbacks.load(Ordering::Relaxed);
                return s;
            }
        }
        self.stats()
    }

    /// Headless mode: wait until the player's `duration_s` is over. Immediately `false` when
    /// not headless.
    pub async fn headless_done(&mut self) -> bool {
        match &mut self.headless {
            Some(h) => {
                while !h.is_finished() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                true
            }
            None => false,
        }
    }

    /// Stop everything and report. Peers are told (DTLS close) so they move on at once.
    pub async fn stop(self) -> Report {
        let _ = self.stop_headless.send(true);
        let headless = match self.headless {
            Some(h) => h.await.ok(),
            None => None,
        };
        // Pingback's last report: the player's final figures and fresh counters, then at most
        // about a second to send it (it never holds playback; here playback is over).
        let (stop_pingback, pingback_task, progress) = self.pingback;
        if let Some(h) = &headless {
            progress.send_modify(|p| {
                p.stalls = h.stalls as u64;
                p.stall_ms = h.stall_ms;
                p.play_ms = (h.played_s * 1000.0) as u64;
                p.startup_ms = h.startup_ms;
            });
        }
        let (tx, rx) = oneshot::channel();
        if self.core.send(CoreMsg::Stats(tx)).is_ok() {
            let _ = rx.await;
        }
        let _ = stop_pingback.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), pingback_task).await;
        let (tx, rx) = oneshot::channel();
        let mut stats = if self.core.send(CoreMsg::Stop(tx)).is_ok() {
            rx.await.unwrap_or_default()
        } else {
            StatsSnapshot::default()
        };
        let _ = self.core_task.await;
        self.server_task.abort();
        stats.proxy_fallbacks = self.stats.proxy.fallbacks.load(Ordering::Relaxed);
        Report { stats, headless }
    }
}
