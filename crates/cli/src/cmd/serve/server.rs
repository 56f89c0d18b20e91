//! Starting the server roles in-process: [`start`] binds every listener, wires the roles
//! together and returns a [`ServeHandle`]. `shoal serve` and `shoal demo` both use it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use shoal_api::{Api, Endpoints, StaticTrackers, TrackerDirectory, TrackerNode, HOST_PLACEHOLDER};
use shoal_cluster::Cluster;
use shoal_pingback::Pingback;
use shoal_proto::ticket::{HmacKeys, Ticket};
use shoal_proto::tracker::TRACKER_PATH;
use shoal_stun::StunServer;
use shoal_tracker::{TicketRequest, TicketVerifier, Tracker};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::config::{Role, ServeConfig};

/// Path of the pingback endpoint.
pub const PINGBACK_PATH: &str = shoal_pingback::PINGBACK_PATH;

/// The process-wide Prometheus recorder (installed on first use). Every role records through
/// the `metrics` facade; `/metrics` renders this handle. Code that runs next to `serve` in one
/// process (the demo's origin) must use this handle rather than install its own recorder.
pub fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("shoal_api_join_duration_seconds".into()),
                    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
                )
                .and_then(|b| b.install_recorder())
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("installing the Prometheus recorder: {e}"))
}

/// One bound HTTP listener and the roles it serves.
#[derive(Clone, Debug)]
pub struct HttpListener {
    pub roles: Vec<Role>,
    pub addr: SocketAddr,
}

/// Running roles. Dropping it does not stop them; call [`shutdown`](Self::shutdown).
pub struct ServeHandle {
    pub http: Vec<HttpListener>,
    pub stun: Option<SocketAddr>,
    pub roles: Vec<Role>,
    /// The tracker role, for its statistics.
    #[allow(dead_code)] // in-process surface, read by `shoal demo`
    pub tracker: Option<Tracker>,
    /// The pingback role (its router is mounted on its listener; `shoal demo` may mount it
    /// elsewhere too, and read its summary).
    #[allow(dead_code)] // in-process surface, read by `shoal demo`
    pub pingback: Option<Arc<Pingback>>,
    /// Cluster membership (`[cluster]`), when configured.
    pub cluster: Option<Arc<Cluster>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<(String, anyhow::Result<()>)>,
}

/// `http://` URL for a bound address (unspecified addresses shown as loopback, which is where
/// a local client reaches them).
fn http_url(addr: SocketAddr) -> String {
    format!("http://{}", connectable(addr))
}

fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(v6) if v6.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

impl ServeHandle {
    /// Base URL of the listener serving `role`.
    #[allow(dead_code)] // in-process surface, used by `shoal demo`
    pub fn url(&self, role: Role) -> Option<String> {
        self.http.iter().find(|l| l.roles.contains(&role)).map(|l| http_url(l.addr))
    }

    /// `SHOAL_SERVE_READY http://HOST:PORT stun=HOST:PORT [role=URL ...]`: the first URL is the
    /// listener carrying the API, else the first HTTP listener (there is always one: a STUN-only
    /// process still serves /health and /metrics); `stun=` is present when the STUN role runs,
    /// and every role on another listener is named with its URL.
    pub fn ready_line(&self) -> String {
        let main = self.http.iter().find(|l| l.roles.contains(&Role::Api)).or(self.http.first());
        let mut line =
            format!("SHOAL_SERVE_READY {}", main.map(|l| http_url(l.addr)).unwrap_or_else(|| "-".into()));
        if let Some(s) = self.stun {
            line.push_str(&format!(" stun={}", connectable(s)));
        }
        for l in &self.http {
            if main.is_some_and(|m| m.addr == l.addr) {
                continue;
            }
            for r in &l.roles {
                line.push_str(&format!(" {}={}", r.name(), http_url(l.addr)));
            }
        }
        if let Some(c) = &self.cluster {
            line.push_str(&format!(" node={}", c.node_id()));
        }
        line
    }

    /// Wait until a role stops by itself (an error: roles run until shut down).
    pub async fn wait_any(&mut self) -> anyhow::Result<()> {
        match self.tasks.join_next().await {
            None => Ok(()),
            Some(Ok((name, Ok(())))) => bail!("{name} stopped unexpectedly"),
            Some(Ok((name, Err(e)))) => Err(e.context(format!("{name} failed"))),
            Some(Err(e)) => bail!("a role panicked: {e}"),
        }
    }

    /// Stop every role: listeners close, open connections get up to `grace` to finish, then
    /// whatever is left (long-lived WebSockets) is cut.
    pub async fn shutdown(mut self, grace: Duration) -> anyhow::Result<()> {
        // Leave the registry first, so no API node sends new viewers here meanwhile.
        if let Some(c) = &self.cluster {
            c.shutdown().await;
        }
        let _ = self.stop.send(true);
        let mut first_err = None;
        let drained = tokio::time::timeout(grace, async {
            while let Some(r) = self.tasks.join_next().await {
                match r {
                    Ok((_, Ok(()))) => {}
                    Ok((name, Err(e))) => {
                        first_err.get_or_insert(e.context(format!("{name} failed")));
                    }
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => {
                        first_err.get_or_insert(anyhow::anyhow!("a role panicked: {e}"));
                    }
                }
            }
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The host name clients are told for derived URLs: the public URL's host, else the bound IP,
/// else (bound to 0.0.0.0 / [::]) the host the client used, substituted per request.
fn advertised_host(public_url: &str, bound: SocketAddr) -> String {
    if let Some(h) = url_host(public_url) {
        return h;
    }
    match bound.ip() {
        ip if ip.is_unspecified() => HOST_PLACEHOLDER.to_owned(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// `https://host:port/path` → `host` (IPv6 literals keep their brackets).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Base URL (no trailing slash) of a listener as clients should use it.
fn public_base(cfg: &ServeConfig, bound: SocketAddr, shared: bool) -> String {
    let public = cfg.serve.public_url.trim_end_matches('/');
    if shared && !public.is_empty() {
        return public.to_owned();
    }
    let scheme = if public.starts_with("https://") { "https" } else { "http" };
    format!("{scheme}://{}:{}", advertised_host(public, bound), bound.port())
}

fn ws_url(http_base: &str) -> String {
    if let Some(rest) = http_base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = http_base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        http_base.to_owned()
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The tracker's admission check: the API's ticket, for this peer id and stream.
pub fn ticket_verifier(keys: HmacKeys) -> Arc<dyn TicketVerifier> {
    Arc::new(move |r: &TicketRequest<'_>| {
        Ticket::verify_for(r.ticket, &keys, r.now_unix_ms, r.peer_id, r.stream)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn ticket_keys(cfg: &ServeConfig) -> anyhow::Result<HmacKeys> {
    if !cfg.tickets.keys.is_empty() {
        return HmacKeys::parse(&cfg.tickets.keys, &cfg.tickets.mint_kid).context("tickets.keys");
    }
    let roles = &cfg.serve.roles;
    let api = roles.contains(&Role::Api);
    let tracker = roles.contains(&Role::Tracker);
    if roles.contains(&Role::Pingback) && !api && cfg.pingback.require_ticket {
        bail!(
            "tickets.keys is empty but pingback checks report tickets without the api role in this process: \
             set the same SHOAL_TICKETS_KEYS=kid:secret on every API and pingback node (or \
             pingback.require_ticket = false)"
        );
    }
    if api != tracker {
        bail!(
            "tickets.keys is empty but api and tracker do not run in the same process: set the same \
             SHOAL_TICKETS_KEYS=kid:secret on every API and tracker node"
        );
    }
    let secret = hex::encode(rand_bytes::<32>());
    HmacKeys::parse(&[format!("local:{secret}")], "").context("random ticket key")
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut b = [0u8; N];
    // /dev/urandom cannot fail short on Linux; fall back to the clock rather than abort.
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_err() {
        let t = now_unix_ms().to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % 8] ^ (i as u8).wrapping_mul(151);
        }
    }
    b
}

async fn health(roles: Vec<&'static str>) -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok", "roles": roles, "version": env!("CARGO_PKG_VERSION")}))
}

fn common_routes(roles: &[Role], metrics: PrometheusHandle) -> Router {
    let names: Vec<&'static str> = roles.iter().map(|r| r.name()).collect();
    Router::new().route("/health", get(move || health(names.clone()))).route(
        "/metrics",
        get(move || {
            let body = metrics.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
        }),
    )
}

/// Bind and start every configured role.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<ServeHandle> {
    let metrics = metrics_handle()?;
    let roles = cfg.serve.roles.clone();
    metrics::gauge!("shoal_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for r in &roles {
        metrics::gauge!("shoal_serve_role", "role" => r.name()).set(1.0);
    }
    let tickets = ticket_keys(&cfg)?;
    let cluster = if cfg.cluster.enabled() {
        let c = Cluster::new(&cfg.cluster)?;
        tracing::info!(node = %c.node_id(), redis = %cfg.cluster.redis, "cluster: joining");
        Some(Arc::new(c))
    } else {
        None
    };

    // The api, tracker and pingback roles share `serve.listen`; a role with its own
    // `serve.<role>_listen` gets a listener of its own.
    let mut groups: Vec<(String, Vec<Role>, bool)> = Vec::new();
    for r in roles.iter().copied().filter(|r| *r != Role::Stun) {
        let own = match r {
            Role::Api => &cfg.serve.api_listen,
            Role::Tracker => &cfg.serve.tracker_listen,
            Role::Pingback => &cfg.serve.pingback_listen,
            Role::Stun => unreachable!("filtered out above"),
        };
        if own.is_empty() {
            match groups.iter_mut().find(|(_, _, shared)| *shared) {
                Some(g) => g.1.push(r),
                None => groups.push((cfg.serve.listen.clone(), vec![r], true)),
            }
        } else {
            groups.push((own.clone(), vec![r], false));
        }
    }
    // A STUN-only process still serves /health and /metrics on the shared listener.
    if groups.is_empty() {
        groups.push((cfg.serve.listen.clone(), Vec::new(), true));
    }
    let mut bound: Vec<(TcpListener, HttpListener, bool)> = Vec::new();
    for (addr, group_roles, shared) in groups {
        let l = TcpListener::bind(&addr).await.with_context(|| format!("binding HTTP listener {addr}"))?;
        let local = l.local_addr()?;
        bound.push((l, HttpListener { roles: group_roles, addr: local }, shared));
    }
    let stun_server = if roles.contains(&Role::Stun) {
        Some(
            StunServer::bind(&cfg.stun)
                .await
                .with_context(|| format!("binding STUN socket {}", cfg.stun.listen))?,
        )
    } else {
        None
    };
    let stun_addr = stun_server.as_ref().map(|s| s.local_addr()).transpose()?;

    let base_of = |role: Role| {
        bound
            .iter()
            .find(|(_, h, _)| h.roles.contains(&role))
            .map(|(_, h, shared)| public_base(&cfg, h.addr, *shared))
    };
    let trackers: Vec<TrackerNode> = if !cfg.api.trackers.is_empty() {
        cfg.api.trackers.iter().map(|t| TrackerNode { url: t.url().to_owned(), weight: t.weight() }).collect()
    } else {
        base_of(Role::Tracker)
            .map(|b| vec![TrackerNode { url: format!("{}{TRACKER_PATH}", ws_url(&b)), weight: 1.0 }])
            .unwrap_or_default()
    };
    let stun_urls = if !cfg.stun.public.is_empty() {
        cfg.stun.public.clone()
    } else {
        let shared_addr = bound.iter().find(|(_, _, s)| *s).map(|(_, h, _)| h.addr);
        stun_addr
            .map(|s| {
                let host = advertised_host(&cfg.serve.public_url, shared_addr.unwrap_or(s));
                vec![format!("stun:{host}:{}", s.port())]
            })
            .unwrap_or_default()
    };
    let pingback_url = if !cfg.pingback.url.is_empty() {
        cfg.pingback.url.clone()
    } else {
        base_of(Role::Pingback).map(|b| format!("{b}{PINGBACK_PATH}")).unwrap_or_default()
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks: JoinSet<(String, anyhow::Result<()>)> = JoinSet::new();

    let api = if roles.contains(&Role::Api) {
        if cfg.api.cdn.is_empty() {
            tracing::warn!(
                "api.cdn is empty: clients get no CDN base and use the playlist URL they were given"
            );
        }
        if trackers.is_empty() && cluster.is_none() {
            tracing::warn!(
                "no tracker configured (api.trackers empty, no tracker role): joins answer p2p = false"
            );
        }
        // In a cluster the live registry says which trackers, STUN, API and pingback nodes
        // there are; the static lists are the fallback until it has been read.
        let (directory, live): (Arc<dyn TrackerDirectory>, Option<Arc<dyn shoal_api::LiveEndpoints>>) =
            match &cluster {
                Some(c) => {
                    if !cfg.api.trackers.is_empty() {
                        tracing::warn!("cluster: api.trackers is ignored, trackers come from the registry");
                    }
                    (Arc::new(c.directory()), Some(Arc::new(c.directory())))
                }
                None => (Arc::new(StaticTrackers(trackers.clone())), None),
            };
        let endpoints = Endpoints {
            trackers: directory,
            stun: stun_urls.clone(),
            pingback_url: pingback_url.clone(),
            pingback_interval_ms: cfg.pingback.interval_ms,
            live,
        };
        Some(Api::new(cfg.api.clone(), cfg.auth.clone(), tickets.clone(), cfg.tickets.ttl_s, endpoints)?)
    } else {
        None
    };
    let tracker = if roles.contains(&Role::Tracker) {
        let verifier = ticket_verifier(tickets.clone());
        Some(match &cluster {
            Some(c) => {
                let relay = c.backplane(Duration::from_millis(cfg.tracker.peer_timeout_ms));
                Tracker::with_relay(cfg.tracker.clone(), verifier, Arc::new(relay))?
            }
            None => Tracker::new(cfg.tracker.clone(), verifier)?,
        })
    } else {
        None
    };
    let pingback = if roles.contains(&Role::Pingback) {
        let table = shoal_tracker::LocalityTable::new(&cfg.tracker.locality.table)
            .map_err(|e| anyhow::anyhow!("tracker.locality.table: {e}"))?;
        let locality: Option<shoal_pingback::LocalityFn> =
            (!table.is_empty()).then(|| Arc::new(move |ip| table.lookup(ip).to_string()) as _);
        let local_health = tracker.clone().map(|t| {
            move || {
                let s = t.stats();
                serde_json::json!({
                    "connections": s.connections, "swarms": s.swarms, "peers": s.peers,
                    "announces": s.announces, "signals_relayed": s.signals_relayed,
                    "rejects": s.rejects, "dropped": s.dropped, "expired": s.expired,
                })
            }
        });
        let tracker_health: Option<shoal_pingback::HealthFn> = match (&cluster, local_health) {
            // In a cluster the dashboard shows the whole cluster's trackers (from the
            // registry), whichever node serves it.
            (Some(c), _) => {
                let c = c.clone();
                Some(Arc::new(move || c.health()) as _)
            }
            (None, Some(f)) => Some(Arc::new(f) as _),
            (None, None) => None,
        };
        let deps = shoal_pingback::Deps { tickets: Some(tickets.clone()), locality, tracker_health };
        Some(Arc::new(match &cluster {
            Some(c) => {
                let store = Arc::new(shoal_cluster::pbstore::RedisStore::new(
                    c.link().clone(),
                    c.keys().clone(),
                    c.node_id().to_owned(),
                    &cfg.pingback,
                ));
                // One Redis write per (window, key) every 250 ms, not one per report
                // (docs/scaling.md: Redis CPU per report was what pingback scaled on).
                store.batch(Duration::from_millis(250));
                let ledger = Arc::new(shoal_cluster::pbstore::RedisLedger::new(
                    c.link().clone(),
                    c.keys().clone(),
                    &cfg.pingback,
                ));
                Pingback::with_backends(cfg.pingback.clone(), deps, store, ledger)?
            }
            None => Pingback::new(cfg.pingback.clone(), deps)?,
        }))
    } else {
        None
    };
    // With pingback in the same process, its decisions (holdback, protection) drive the API.
    let api = api.map(|api| match &pingback {
        Some(pb) => Arc::new(api.with_policy(pb.policy(cfg.api.p2p, cfg.api.holdback_percent))),
        None => Arc::new(api),
    });

    // What this node advertises in the cluster registry: URLs other nodes hand out, so they
    // must name this host (not the `{host}` a single node fills in from the request).
    if cluster.is_some() {
        for l in bound.iter().map(|(_, h, shared)| public_base(&cfg, h.addr, *shared)) {
            if l.contains(HOST_PLACEHOLDER) {
                bail!(
                    "cluster: this node is bound to a wildcard address without serve.public_url, so its URLs \
                     cannot be given to clients by other nodes: set serve.public_url (or bind a specific address)"
                );
            }
        }
    }
    let node_info = cluster.as_ref().map(|_| shoal_cluster::NodeInfo {
        roles: roles.iter().map(|r| r.name().to_owned()).collect(),
        api: base_of(Role::Api),
        tracker: roles
            .contains(&Role::Tracker)
            .then(|| base_of(Role::Tracker).map(|b| format!("{}{TRACKER_PATH}", ws_url(&b))))
            .flatten(),
        pingback: (roles.contains(&Role::Pingback) && !pingback_url.is_empty()).then(|| pingback_url.clone()),
        stun: if roles.contains(&Role::Stun) { stun_urls.clone() } else { Vec::new() },
    });

    let mut listeners = Vec::new();
    for (listener, info, shared) in bound {
        // /health of the shared listener also answers for the STUN role (which has no HTTP).
        let mut health_roles = info.roles.clone();
        if shared && stun_addr.is_some() {
            health_roles.push(Role::Stun);
        }
        let mut app = common_routes(&health_roles, metrics.clone());
        if let Some(c) = &cluster {
            let c = c.clone();
            app = app.route("/v1/cluster", get(move || std::future::ready(Json(c.status()))));
        }
        if info.roles.contains(&Role::Api) {
            if let Some(api) = &api {
                app = app.merge(shoal_api::router(api.clone()));
            }
        }
        if info.roles.contains(&Role::Tracker) {
            if let Some(t) = &tracker {
                app = app.merge(t.router());
            }
        }
        if info.roles.contains(&Role::Pingback) {
            if let Some(pb) = &pingback {
                app = app.merge(pb.router());
            }
        }
        let mut stop = stop_rx.clone();
        let name = format!("http listener {} ({})", info.addr, role_names(&info.roles));
        // Signaling is many small messages: without TCP_NODELAY Nagle's algorithm holds relays
        // back (p99 42 ms against 2.4 ms in `shoal bench tracker`).
        let listener = axum::serve::ListenerExt::tap_io(listener, |t| {
            let _ = t.set_nodelay(true);
        });
        tasks.spawn(async move {
            let r = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .context("HTTP server");
            (name, r)
        });
        listeners.push(info);
    }
    if let Some(pb) = &pingback {
        let mut stop = stop_rx.clone();
        let pb = pb.clone();
        tasks.spawn(async move {
            pb.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
            ("pingback".to_owned(), Ok(()))
        });
    }
    if let Some(server) = stun_server {
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            server
                .run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            ("stun".to_owned(), Ok(()))
        });
    }
    if let (Some(c), Some(info)) = (&cluster, node_info) {
        c.begin(info, load_sampler(tracker.clone(), cfg.tracker.max_connections as u64), tracker.clone());
    }
    Ok(ServeHandle {
        http: listeners,
        stun: stun_addr,
        roles,
        tracker,
        pingback,
        cluster,
        stop: stop_tx,
        tasks,
    })
}

/// This node's load for the cluster registry, sampled at each heartbeat.
fn load_sampler(tracker: Option<Tracker>, max_connections: u64) -> shoal_cluster::LoadFn {
    let mut cpu = shoal_cluster::load::CpuSampler::default();
    let mut announces = shoal_cluster::load::Rate::default();
    Box::new(move || {
        let mut l = shoal_cluster::Load { cpu: cpu.sample(), ..Default::default() };
        if let Some(t) = &tracker {
            let s = t.stats();
            l.connections = s.connections;
            l.max_connections = max_connections;
            l.swarms = s.swarms;
            l.peers = s.peers;
            l.announces_per_s = announces.update(s.announces);
        }
        l
    })
}

fn role_names(roles: &[Role]) -> String {
    roles.iter().map(|r| r.name()).collect::<Vec<_>>().join("+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_helpers() {
        assert_eq!(url_host("https://shoal.example.com/x").as_deref(), Some("shoal.example.com"));
        assert_eq!(url_host("http://[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(url_host("").as_deref(), None);
        assert_eq!(ws_url("https://a.test"), "wss://a.test");
        assert_eq!(ws_url("http://a.test:1"), "ws://a.test:1");
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let lo: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        assert_eq!(advertised_host("", any), HOST_PLACEHOLDER);
        assert_eq!(advertised_host("", lo), "127.0.0.1");
        assert_eq!(advertised_host("https://pub.test", lo), "pub.test");
        assert_eq!(http_url(any), "http://127.0.0.1:8080");
    }
}
