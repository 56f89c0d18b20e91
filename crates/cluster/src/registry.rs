//! The node registry: every node writes its record (roles, public URLs, live load) to Redis
//! every heartbeat with a time to live of two heartbeats, and reads everybody's.
//!
//! Keys: `{prefix}:node:{id}` (JSON, `PX` = 2 heartbeats: Redis itself forgets a dead node) and
//! `{prefix}:nodes` (sorted set of ids scored by the writer's expiry time, only an index: a
//! member whose record has expired is ignored, and members older than a minute are trimmed).
//! A reader sees a node gone at its next read after the record expired.
//!
//! When Redis is unavailable the last view is kept as it was (a swarm stays where it is; no
//! node is declared dead because Redis is), and the record is written again as soon as the
//! link is back — the registry rebuilds itself without a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::keys::Keys;
use crate::link::Link;
use crate::now_ms;

/// Most nodes read from the registry (a cap on what a corrupted index could make us load).
pub const MAX_NODES: usize = 1_000;
/// Largest record accepted.
const MAX_RECORD: usize = 16 * 1024;

/// What a node reports about its load (all roles it runs; zeros for the others).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Open tracker WebSockets, and the most this node accepts.
    pub connections: u64,
    pub max_connections: u64,
    pub swarms: u64,
    /// Tracker members connected here.
    pub peers: u64,
    pub announces_per_s: f64,
    /// Share of the machine's CPU this process used since the last heartbeat (0..=1).
    pub cpu: f64,
    /// Pingback reports accepted per second.
    pub reports_per_s: f64,
    /// API joins per second.
    pub joins_per_s: f64,
}

impl Load {
    /// 0..=1: the fuller of connections and CPU.
    pub fn utilization(&self) -> f64 {
        let conns = if self.max_connections > 0 {
            self.connections as f64 / self.max_connections as f64
        } else {
            0.0
        };
        conns.max(self.cpu).clamp(0.0, 1.0)
    }
}

/// One node's registry record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    /// `api`, `tracker`, `stun`, `pingback`.
    pub roles: Vec<String>,
    /// API base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Tracker WebSocket URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracker: Option<String>,
    /// Pingback POST URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pingback: Option<String>,
    /// `stun:host:port` URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stun: Vec<String>,
    /// Configured capacity for new swarms.
    pub weight: f64,
    pub load: Load,
    pub started_ms: u64,
    /// Writer's clock at this heartbeat.
    pub seen_ms: u64,
    pub version: String,
}

impl NodeRecord {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Weight for new swarms: the configured weight scaled down by load, in steps of a tenth
    /// (so small load changes do not reshuffle answers between API nodes), never below a
    /// tenth of it.
    pub fn effective_weight(&self) -> f64 {
        let free = 1.0 - self.load.utilization();
        let step = ((free * 10.0).round() / 10.0).max(0.1);
        self.weight * step
    }
}

/// A change in the set of live nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    Joined(String),
    Left { id: String, roles: Vec<String>, at_ms: u64 },
}

/// The current view of the cluster.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub nodes: BTreeMap<String, NodeRecord>,
    /// When this view was read from Redis (0: never).
    pub read_ms: u64,
    /// Redis was unavailable at the last attempt: the view is the last one read.
    pub stale: bool,
}

impl View {
    pub fn with_role<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a NodeRecord> + 'a {
        self.nodes.values().filter(move |n| n.has_role(role))
    }
}

/// Produces this node's record at each heartbeat.
pub type RecordFn = Arc<dyn Fn() -> NodeRecord + Send + Sync>;
/// Told about nodes joining and leaving.
pub type Listener = Arc<dyn Fn(&NodeEvent) + Send + Sync>;

struct Inner {
    link: Link,
    keys: Keys,
    id: String,
    heartbeat: Duration,
    record: RwLock<Option<RecordFn>>,
    view: RwLock<Arc<View>>,
    view_tx: watch::Sender<u64>,
    listeners: Mutex<Vec<Listener>>,
    departures: Mutex<Vec<(String, Vec<String>, u64)>>,
    /// Until then, nodes missing from a read are kept: Redis came back (maybe empty) and not
    /// every live node has written its record again yet.
    settle_until: Mutex<Option<tokio::time::Instant>>,
}

/// Writes this node's record and keeps the view of everyone's. Cheap to clone.
#[derive(Clone)]
pub struct Registry(Arc<Inner>);

impl Registry {
    /// A registry that reads and writes nothing until [`Registry::spawn`].
    pub fn new(link: Link, keys: Keys, id: String, heartbeat: Duration) -> Registry {
        Registry(Arc::new(Inner {
            link,
            keys,
            id,
            heartbeat,
            record: RwLock::new(None),
            view: RwLock::new(Arc::new(View::default())),
            view_tx: watch::channel(0).0,
            listeners: Mutex::new(Vec::new()),
            departures: Mutex::new(Vec::new()),
            settle_until: Mutex::new(None),
        }))
    }

    /// Start heartbeats with `record` (needs a tokio runtime). The task ends when `stop`
    /// turns true; the record is then deleted so the node disappears at once.
    pub fn spawn(&self, record: RecordFn, stop: watch::Receiver<bool>) {
        *self.0.record.write().unwrap_or_else(|p| p.into_inner()) = Some(record);
        tokio::spawn(self.clone().run(stop));
    }

    pub fn id(&self) -> &str {
        &self.0.id
    }

    pub fn heartbeat(&self) -> Duration {
        self.0.heartbeat
    }

    /// The latest view (cheap).
    pub fn view(&self) -> Arc<View> {
        self.0.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes every time the view is refreshed.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.0.view_tx.subscribe()
    }

    /// Call `f` for every node that joins or leaves from now on (on the registry's task).
    pub fn on_event(&self, f: Listener) {
        self.0.listeners.lock().unwrap_or_else(|p| p.into_inner()).push(f);
    }

    /// Nodes seen leaving (id, roles, when), newest last, at most 50.
    pub fn departures(&self) -> Vec<(String, Vec<String>, u64)> {
        self.0.departures.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut generation = self.0.link.generation();
        let mut tick = tokio::time::interval(self.0.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // 0: never connected; a change from there is the first connection, not a return.
        let mut seen_gen = *generation.borrow_and_update();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                // Redis came back: write the record and re-read at once.
                r = generation.changed() => {
                    let now_gen = *generation.borrow_and_update();
                    if r.is_ok() && seen_gen > 0 {
                        // Everybody re-registers within a heartbeat; nobody is declared gone
                        // before each had two chances.
                        let until = tokio::time::Instant::now() + self.0.heartbeat * 3;
                        *self.0.settle_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
                    }
                    seen_gen = now_gen;
                }
                _ = stop.wait_for(|s| *s) => break,
            }
            self.beat().await;
        }
        let mut p = redis::pipe();
        p.cmd("DEL").arg(self.0.keys.node(&self.0.id)).ignore();
        p.cmd("ZREM").arg(self.0.keys.nodes()).arg(&self.0.id).ignore();
        let _ = self.0.link.pipe::<()>(&p).await;
    }

    /// One heartbeat: write, then read.
    pub async fn beat(&self) {
        let now = now_ms();
        let record = self.0.record.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(record) = record else { return };
        let mut rec = record();
        rec.id = self.0.id.clone();
        rec.seen_ms = now;
        let ttl = self.0.heartbeat.as_millis() as u64 * 2;
        let json = serde_json::to_string(&rec).expect("records are plain data");
        let mut p = redis::pipe();
        p.cmd("SET").arg(self.0.keys.node(&self.0.id)).arg(&json).arg("PX").arg(ttl).ignore();
        p.cmd("ZADD").arg(self.0.keys.nodes()).arg(now + ttl).arg(&self.0.id).ignore();
        p.cmd("ZREMRANGEBYSCORE")
            .arg(self.0.keys.nodes())
            .arg("-inf")
            .arg(now.saturating_sub(60_000))
            .ignore();
        p.cmd("PEXPIRE").arg(self.0.keys.nodes()).arg(3_600_000).ignore();
        p.cmd("ZRANGE").arg(self.0.keys.nodes()).arg(0).arg(MAX_NODES as i64 - 1);
        let ids: Result<(Vec<String>,), _> = self.0.link.pipe(&p).await;
        let fresh = match ids {
            Ok((ids,)) => self.read(ids).await,
            Err(_) => None,
        };
        match fresh {
            Some(mut nodes) => {
                let settling = self
                    .0
                    .settle_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some_and(|t| tokio::time::Instant::now() < t);
                if settling {
                    for (id, rec) in &self.view().nodes {
                        nodes.entry(id.clone()).or_insert_with(|| rec.clone());
                    }
                }
                self.publish(View { nodes, read_ms: now, stale: false })
            }
            None => {
                let old = self.view();
                if !old.stale {
                    self.publish(View { nodes: old.nodes.clone(), read_ms: old.read_ms, stale: true });
                }
            }
        }
    }

    async fn read(&self, ids: Vec<String>) -> Option<BTreeMap<String, NodeRecord>> {
        let ids: Vec<String> = ids.into_iter().filter(|i| shoal_proto::ids::valid_name(i)).collect();
        let mut nodes = BTreeMap::new();
        if ids.is_empty() {
            return Some(nodes);
        }
        let mut cmd = redis::cmd("MGET");
        for id in &ids {
            cmd.arg(self.0.keys.node(id));
        }
        let values: Vec<Option<Vec<u8>>> = self.0.link.query(&cmd).await.ok()?;
        for (id, v) in ids.iter().zip(values) {
            let Some(v) = v.filter(|v| v.len() <= MAX_RECORD) else { continue };
            match serde_json::from_slice::<NodeRecord>(&v) {
                Ok(r) if r.id == *id => {
                    nodes.insert(id.clone(), r);
                }
                Ok(_) | Err(_) => tracing::debug!(%id, "unreadable registry record ignored"),
            }
        }
        Some(nodes)
    }

    fn publish(&self, view: View) {
        let old = self.view();
        let mut events = Vec::new();
        if !view.stale {
            for id in view.nodes.keys() {
                if !old.nodes.contains_key(id) {
                    events.push(NodeEvent::Joined(id.clone()));
                }
            }
            for (id, rec) in &old.nodes {
                if !view.nodes.contains_key(id) {
                    events.push(NodeEvent::Left {
                        id: id.clone(),
                        roles: rec.roles.clone(),
                        at_ms: view.read_ms,
                    });
                }
            }
        }
        *self.0.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
        self.0.view_tx.send_modify(|g| *g += 1);
        if events.is_empty() {
            return;
        }
        for e in &events {
            match e {
                NodeEvent::Joined(id) => tracing::info!(node = %id, "cluster: node joined"),
                NodeEvent::Left { id, roles, at_ms } => {
                    tracing::warn!(node = %id, ?roles, "cluster: node left");
                    let mut d = self.0.departures.lock().unwrap_or_else(|p| p.into_inner());
                    d.push((id.clone(), roles.clone(), *at_ms));
                    let excess = d.len().saturating_sub(50);
                    d.drain(..excess);
                }
            }
        }
        let listeners = self.0.listeners.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for e in &events {
            for l in &listeners {
                l(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_lowers_weight_in_steps() {
        let mut r = NodeRecord { weight: 2.0, ..Default::default() };
        assert_eq!(r.effective_weight(), 2.0);
        r.load = Load { connections: 500, max_connections: 1000, ..Default::default() };
        assert!((r.effective_weight() - 1.0).abs() < 1e-9);
        r.load.cpu = 0.93;
        assert!((r.effective_weight() - 0.2).abs() < 1e-9, "{}", r.effective_weight());
        r.load.cpu = 1.0;
        assert!((r.effective_weight() - 0.2).abs() < 1e-9, "a full node keeps a tenth");
        r.load.cpu = 0.52;
        let a = r.effective_weight();
        r.load.cpu = 0.54;
        assert_eq!(a, r.effective_weight(), "small changes do not move the weight");
    }
}
