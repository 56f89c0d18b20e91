//! shoal-cluster: many `shoal serve` nodes sharing state through Redis.
//!
//! - [`link`]: the Redis connection (bounded waits, subscriptions restored after every
//!   reconnection, a health flag: a Redis outage degrades to serving from local state).
//! - [`registry`]: every node's record (roles, public URLs, load) with a two-heartbeat time
//!   to live, and every node's view of the others.
//! - [`directory`]: the API's tracker assignment (weighted rendezvous over live trackers,
//!   load-weighted, sticky per stream, standby promoted when the primary dies) and the live
//!   API, STUN and pingback URLs.
//! - [`backplane`]: the tracker's `Relay` — swarms spread over several tracker nodes stay one
//!   swarm (mirrored membership for the ranking, signals relayed between nodes).
//! - [`pbstore`]: pingback windows and the duplicate ledger in Redis.
//!
//! [`Cluster`] holds them for one process; `shoal serve` builds it when `cluster.redis` is
//! set (`crates/cli/src/cmd/serve/server.rs`). Deployment: `docs/deploy.md`; capacity model:
//! `docs/scaling.md`.

pub mod backplane;
pub mod config;
pub mod directory;
pub mod keys;
pub mod link;
pub mod load;
pub mod pbstore;
pub mod registry;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

pub use backplane::{Backplane, BackplaneStats};
pub use config::ClusterConfig;
pub use directory::Directory;
pub use keys::Keys;
pub use link::{Link, LinkError, LinkStats};
pub use registry::{Load, NodeEvent, NodeRecord, Registry, View};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What this node advertises in the registry (its load is sampled at each heartbeat).
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub roles: Vec<String>,
    pub api: Option<String>,
    pub tracker: Option<String>,
    pub pingback: Option<String>,
    pub stun: Vec<String>,
}

/// Samples this node's load at each heartbeat.
pub type LoadFn = Box<dyn FnMut() -> Load + Send>;

/// The cluster membership of one process.
pub struct Cluster {
    cfg: ClusterConfig,
    node_id: String,
    keys: Keys,
    link: Link,
    registry: Registry,
    directory: Directory,
    backplane: OnceLock<(Backplane, Mutex<Option<backplane::BackplaneTasks>>)>,
    stop: watch::Sender<bool>,
}

impl Cluster {
    /// Connect (in the background: the node starts even when Redis is down) and prepare the
    /// registry and the directory. Needs a tokio runtime.
    pub fn new(cfg: &ClusterConfig) -> anyhow::Result<Cluster> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(cfg.enabled(), "cluster.redis is empty");
        let node_id = cfg.resolved_node_id();
        let keys = Keys::new(&cfg.prefix);
        let heartbeat = Duration::from_millis(cfg.heartbeat_ms);
        let link = Link::new(&cfg.redis, Duration::from_millis(cfg.op_timeout_ms), heartbeat / 2)
            .map_err(|e| anyhow::anyhow!("cluster.redis: {e}"))?;
        let registry = Registry::new(link.clone(), keys.clone(), node_id.clone(), heartbeat);
        let directory = Directory::new(
            registry.clone(),
            link.clone(),
            keys.clone(),
            Duration::from_secs(cfg.assignment_ttl_s),
        );
        Ok(Cluster {
            cfg: cfg.clone(),
            node_id,
            keys,
            link,
            registry,
            directory,
            backplane: OnceLock::new(),
            stop: watch::channel(false).0,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The API's tracker directory and live endpoint lists.
    pub fn directory(&self) -> Directory {
        self.directory.clone()
    }

    /// The tracker's relay (made once; give it to `Tracker::with_relay`, then
    /// [`Cluster::begin`] with the tracker).
    pub fn backplane(&self, peer_timeout: Duration) -> Backplane {
        self.backplane
            .get_or_init(|| {
                let (bp, tasks) = Backplane::new(
                    self.node_id.clone(),
                    self.keys.clone(),
                    self.link.clone(),
                    peer_timeout,
                    self.cfg.publish_queue,
                    self.stop.subscribe(),
                );
                (bp, Mutex::new(Some(tasks)))
            })
            .0
            .clone()
    }

    /// Start heartbeats (with `info` and `load`) and, with a tracker, the backplane.
    pub fn begin(&self, info: NodeInfo, mut load: LoadFn, tracker: Option<shoal_tracker::Tracker>) {
        if let (Some((bp, tasks)), Some(t)) = (self.backplane.get(), tracker) {
            bp.attach(t);
            if let Some(url) = &info.tracker {
                bp.claim_assignments(url.clone(), Duration::from_secs(self.cfg.assignment_ttl_s));
            }
            bp.follow(&self.registry);
            if let Some(tasks) = tasks.lock().unwrap_or_else(|p| p.into_inner()).take() {
                tasks.spawn();
            }
        }
        let started_ms = now_ms();
        let weight = self.cfg.weight;
        let record = Arc::new(Mutex::new(move || NodeRecord {
            id: String::new(),
            roles: info.roles.clone(),
            api: info.api.clone(),
            tracker: info.tracker.clone(),
            pingback: info.pingback.clone(),
            stun: info.stun.clone(),
            weight,
            load: load(),
            started_ms,
            seen_ms: 0,
            version: env!("CARGO_PKG_VERSION").into(),
        }));
        let link = self.link.clone();
        let bp = self.backplane.get().map(|(b, _)| b.clone());
        let view_of = self.registry.clone();
        self.registry.spawn(
            Arc::new(move || {
                export_metrics(&link, bp.as_ref(), &view_of.view());
                let mut f = record.lock().unwrap_or_else(|p| p.into_inner());
                (*f)()
            }),
            self.stop.subscribe(),
        );
    }

    /// `GET /v1/cluster` on every node: this node, its Redis link, the registry as it sees it,
    /// nodes seen leaving and the backplane's counters.
    pub fn status(&self) -> serde_json::Value {
        let view = self.registry.view();
        let l = self.link.stats();
        let bp = self.backplane.get().map(|(b, _)| b.stats());
        serde_json::json!({
            "node": self.node_id,
            "redis": { "up": l.healthy, "ops": l.ops, "errors": l.op_errors, "reconnects": l.reconnects,
                       "messages_in": l.messages_in, "messages_dropped": l.messages_dropped },
            "view": { "read_ms": view.read_ms, "stale": view.stale },
            "nodes": view.nodes.values().collect::<Vec<_>>(),
            "departures": self.registry.departures().iter()
                .map(|(id, roles, at)| serde_json::json!({"id": id, "roles": roles, "at_ms": at}))
                .collect::<Vec<_>>(),
            "backplane": bp.map(|b| serde_json::json!({
                "swarms": b.swarms, "spread_swarms": b.spread_swarms, "published": b.published,
                "dropped": b.dropped, "received": b.received, "mirrored": b.mirrored,
                "signals_out": b.signals_out, "signals_in": b.signals_in,
                "signals_undelivered": b.signals_undelivered,
            })),
        })
    }

    /// What the dashboard shows about the cluster (any JSON object).
    pub fn health(&self) -> serde_json::Value {
        let view = self.registry.view();
        let count = |role: &str| view.with_role(role).count();
        let trackers: Vec<&NodeRecord> = view.with_role("tracker").collect();
        let mut h = serde_json::json!({
            "cluster redis": if self.link.healthy() { "up" } else { "unavailable (serving from local state)" },
            "cluster nodes": view.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
            "tracker nodes live": trackers.len(),
            "tracker connections": trackers.iter().map(|n| n.load.connections).sum::<u64>(),
            "tracker swarms": trackers.iter().map(|n| n.load.swarms).sum::<u64>(),
            "tracker peers": trackers.iter().map(|n| n.load.peers).sum::<u64>(),
            "api nodes live": count("api"),
            "pingback nodes live": count("pingback"),
            "stun nodes live": count("stun"),
        });
        if trackers.is_empty() && !view.nodes.is_empty() {
            h["p2p"] = "no tracker node is live: every viewer plays from the CDN".into();
        }
        let departures = self.registry.departures();
        if let Some((id, roles, at)) =
            departures.iter().rev().find(|(_, r, _)| r.iter().any(|r| r == "pingback"))
        {
            h["pingback node lost"] = format!(
                "{id} ({}) left at {}: reports its clients sent in the window it died in may be missing (at most one window); they report to another node now",
                roles.join("+"),
                utc(*at)
            )
            .into();
        }
        if let Some((id, roles, at)) = departures.last() {
            h["last node lost"] = format!("{id} ({}) at {}", roles.join("+"), utc(*at)).into();
        }
        h
    }

    /// Stop heartbeats (the record is deleted) and background tasks.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        // Give the registry its last round trip.
        tokio::time::sleep(Duration::from_millis(50).min(self.link.op_timeout())).await;
        self.link.close().await;
    }
}

fn utc(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02} UTC", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

fn export_metrics(link: &Link, bp: Option<&Backplane>, view: &View) {
    let l = link.stats();
    metrics::gauge!("shoal_cluster_redis_up").set(if l.healthy { 1.0 } else { 0.0 });
    metrics::gauge!("shoal_cluster_redis_ops").set(l.ops as f64);
    metrics::gauge!("shoal_cluster_redis_errors").set(l.op_errors as f64);
    metrics::gauge!("shoal_cluster_redis_reconnects").set(l.reconnects as f64);
    metrics::gauge!("shoal_cluster_messages_in").set(l.messages_in as f64);
    for role in ["api", "tracker", "stun", "pingback"] {
        metrics::gauge!("shoal_cluster_nodes", "role" => role).set(view.with_role(role).count() as f64);
    }
    if let Some(bp) = bp {
        let s = bp.stats();
        metrics::gauge!("shoal_cluster_swarms_spread").set(s.spread_swarms as f64);
        metrics::gauge!("shoal_cluster_published").set(s.published as f64);
        metrics::gauge!("shoal_cluster_dropped").set(s.dropped as f64);
        metrics::gauge!("shoal_cluster_mirrored").set(s.mirrored as f64);
        metrics::gauge!("shoal_cluster_signals_out").set(s.signals_out as f64);
        metrics::gauge!("shoal_cluster_signals_in").set(s.signals_in as f64);
    }
}
