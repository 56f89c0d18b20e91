//! Shared tracker state: swarms sharded by key behind short synchronous locks (never held
//! across an await), the route to every connection, and the periodic sweep.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shoal_proto::tracker::{ErrorCode, SwarmId};
use shoal_swarm::{PeerInfo, Swarm, SwarmFull};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::TrackerConfig;
use crate::locality::LocalityTable;
use crate::stats::Counters;
use crate::ticket::TicketVerifier;

/// Shards of the swarm table; a power of two well above the core count keeps contention low.
const SHARDS: usize = 64;

/// A message for a connection's writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    Text(String),
    /// Send `text` (if any), then a close frame, then end the connection.
    Close {
        code: ErrorCode,
        text: Option<String>,
    },
}

/// How to reach a member: its connection id and outbound queue.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub conn: u64,
    pub tx: mpsc::Sender<Outbound>,
}

impl Route {
    /// Queue without waiting; a full queue drops the message (counted), a closed one means the
    /// connection is going away and its membership with it.
    pub fn deliver(&self, msg: Outbound, counters: &Counters) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                counters.dropped(1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// How to reach a swarm member: a connection on this node, or another tracker node of the
/// cluster that the member announced on (its node id; signals go through the [`Relay`]).
#[derive(Clone, Debug)]
pub(crate) enum Via {
    Local(Route),
    Remote(Arc<str>),
}

impl Via {
    /// The connection id of a local member.
    pub fn conn(&self) -> Option<u64> {
        match self {
            Via::Local(r) => Some(r.conn),
            Via::Remote(_) => None,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Via::Local(_))
    }

    /// Queue for a local member without waiting; a remote member cannot be reached this way.
    pub fn try_send(&self, msg: Outbound) -> Result<(), mpsc::error::TrySendError<Outbound>> {
        match self {
            Via::Local(r) => r.tx.try_send(msg),
            Via::Remote(_) => Err(mpsc::error::TrySendError::Closed(msg)),
        }
    }

    pub fn deliver(&self, msg: Outbound, counters: &Counters) -> bool {
        match self {
            Via::Local(r) => r.deliver(msg, counters),
            Via::Remote(_) => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SwarmKey {
    Shoal(SwarmId),
    /// A WebTorrent info hash (the JSON string as received, 20 code points ≤ U+00FF).
    WebTorrent(Box<str>),
}

/// Where a `signal` goes when its target is not a member on this node, and what other nodes
/// need to hear about this node's members.
///
/// This is the seam for a cluster backplane (`shoal-cluster`): a swarm's peers may be spread
/// over several tracker nodes (failover, overflow). Members announced on other nodes are
/// mirrored into the local swarm ([`crate::Tracker::remote_upsert`]) so the ranking sees the
/// whole swarm; a signal to such a member goes to [`Relay::forward_to`] with its node. The
/// single-node tracker uses [`LocalOnly`]. Every method is called with a shard lock held or on
/// a connection's task: it must not block (queue and return).
pub trait Relay: Send + Sync + 'static {
    /// `frame` is the complete text frame for the target, which is not known on this node.
    /// Return true if it was handed to another node; false makes the tracker treat the target
    /// as absent.
    fn forward_signal(&self, swarm: &SwarmId, to: &str, frame: &str) -> bool;

    /// `frame` for `to`, a member announced on tracker node `node`. Return false if that node
    /// cannot be reached (the sender is told `peer_gone`).
    fn forward_to(&self, node: &str, swarm: &SwarmId, to: &str, frame: &str) -> bool {
        let _ = node;
        self.forward_signal(swarm, to, frame)
    }

    /// A member of `swarm` announced on this node (every announce, after it was applied).
    fn member_announced(&self, swarm: &SwarmId, peer_id: &str, info: &PeerInfo) {
        let _ = (swarm, peer_id, info);
    }

    /// A member of `swarm` on this node left or expired.
    fn member_left(&self, swarm: &SwarmId, peer_id: &str) {
        let _ = (swarm, peer_id);
    }
}

/// No other nodes: every target is local or absent.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalOnly;

impl Relay for LocalOnly {
    fn forward_signal(&self, _swarm: &SwarmId, _to: &str, _frame: &str) -> bool {
        false
    }
}

type Shard = HashMap<SwarmKey, Swarm<Via>>;

pub(crate) struct State {
    pub cfg: TrackerConfig,
    pub verifier: Arc<dyn TicketVerifier>,
    pub relay: Arc<dyn Relay>,
    pub locality: LocalityTable,
    pub counters: Counters,
    shards: Box<[Mutex<Shard>]>,
    epoch: Instant,
    next_conn: std::sync::atomic::AtomicU64,
    seed: u64,
}

impl State {
    pub fn new(
        cfg: TrackerConfig,
        verifier: Arc<dyn TicketVerifier>,
        relay: Arc<dyn Relay>,
    ) -> Result<Self, String> {
        cfg.validate()?;
        let locality = LocalityTable::new(&cfg.locality.table)?;
        let seed = if cfg.seed != 0 {
            cfg.seed
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        };
        Ok(Self {
            cfg,
            verifier,
            relay,
            locality,
            counters: Counters::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            epoch: Instant::now(),
            next_conn: std::sync::atomic::AtomicU64::new(1),
            seed,
        })
    }

    /// Monotonic milliseconds since the tracker started: the sans-IO swarm's clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn shard_of(&self, key: &SwarmKey) -> (usize, u64) {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let hash = h.finish();
        ((hash as usize) % SHARDS, hash)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding a shard lock cannot leave a swarm half-updated in a way later
        // calls misread (every mutation is a single Swarm call), so poisoning is ignored.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the swarm `key`, creating it if `create` (subject to `max_swarms`). An empty
    /// swarm is dropped afterwards. `None` when the swarm does not exist and was not created.
    pub fn with_swarm<R>(
        &self,
        key: &SwarmKey,
        create: bool,
        f: impl FnOnce(&mut Swarm<Via>) -> R,
    ) -> Result<Option<R>, SwarmFull> {
        let (i, hash) = self.shard_of(key);
        let mut shard = self.lock(i);
        if let Some(swarm) = shard.get_mut(key) {
            let r = f(swarm);
            if swarm.is_empty() {
                shard.remove(key);
                self.counters.swarm_dropped();
            }
            return Ok(Some(r));
        }
        if !create {
            return Ok(None);
        }
        if self.counters.swarm_count() >= self.cfg.max_swarms as u64 {
            return Err(SwarmFull);
        }
        let mut swarm = Swarm::new(self.cfg.max_peers_per_swarm, self.seed ^ hash);
        let r = f(&mut swarm);
        if !swarm.is_empty() {
            shard.insert(key.clone(), swarm);
            self.counters.swarm_created();
        }
        Ok(Some(r))
    }

    /// Same as [`State::with_swarm`] without creating.
    pub fn with_existing<R>(&self, key: &SwarmKey, f: impl FnOnce(&mut Swarm<Via>) -> R) -> Option<R> {
        self.with_swarm(key, false, f).ok().flatten()
    }

    /// Remove `peer_id` from `key` if its membership still belongs to connection `conn`.
    pub fn leave(&self, key: &SwarmKey, peer_id: &str, conn: u64) {
        let now = self.now_ms();
        let removed =
            self.with_existing(key, |s| s.remove_if(peer_id, now, |r| r.conn() == Some(conn))).flatten();
        if removed.is_some() {
            self.counters.peers_left(1);
            if let SwarmKey::Shoal(swarm) = key {
                self.relay.member_left(swarm, peer_id);
            }
        }
    }

    /// Run `f` on every swarm (shard by shard, each lock held only for its shard).
    pub fn for_each_swarm(&self, mut f: impl FnMut(&SwarmKey, &mut Swarm<Via>)) {
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            let before = shard.len();
            shard.retain(|k, s| {
                f(k, s);
                !s.is_empty()
            });
            for _ in shard.len()..before {
                self.counters.swarm_dropped();
            }
        }
    }

    /// Expire silent members of every swarm. A Shoal connection whose member expired is
    /// closed (`timeout`); a WebTorrent connection may still announce other info hashes, so
    /// only the membership goes.
    pub fn sweep(&self) {
        let now = self.now_ms();
        let shoal_ttl = self.cfg.peer_timeout_ms;
        let wt_ttl = self.cfg.webtorrent_peer_timeout_ms();
        let mut removed = Vec::new();
        let mut closing = Vec::new();
        let mut left: Vec<(SwarmId, Box<str>)> = Vec::new();
        for i in 0..SHARDS {
            let mut expired = 0u64;
            let mut shard = self.lock(i);
            let before = shard.len();
            shard.retain(|key, swarm| {
                let ttl = match key {
                    SwarmKey::Shoal(_) => shoal_ttl,
                    SwarmKey::WebTorrent(_) => wt_ttl,
                };
                swarm.expire(now, ttl, &mut removed);
                // Mirrored members of other nodes expire like local ones but are not counted
                // here (their own node counts them) and have no connection to close.
                removed.retain(|(_, via)| via.is_local());
                expired += removed.len() as u64;
                if let SwarmKey::Shoal(id) = key {
                    for (peer, via) in removed.drain(..) {
                        left.push((id.clone(), peer));
                        closing.push(via);
                    }
                }
                removed.clear();
                !swarm.is_empty()
            });
            for _ in shard.len()..before {
                self.counters.swarm_dropped();
            }
            drop(shard);
            if expired > 0 {
                self.counters.peers_left(expired);
                self.counters.expired(expired);
            }
            for via in closing.drain(..) {
                // The same goodbye as the connection's own idle timer (which of the two fires
                // first is a race): the error frame, then the close.
                let text =
                    crate::shoal_ws::error_frame(ErrorCode::Timeout, "no message within the timeout", true);
                let msg = Outbound::Close { code: ErrorCode::Timeout, text: Some(text) };
                via.deliver(msg, &self.counters);
            }
            for (swarm, peer) in left.drain(..) {
                self.relay.member_left(&swarm, &peer);
            }
        }
        self.counters.publish_gauges();
    }
}

/// Sweep every `sweep_interval_ms` until the tracker is dropped.
pub(crate) fn spawn_sweeper(state: &Arc<State>) {
    let weak = Arc::downgrade(state);
    let period = Duration::from_millis(state.cfg.sweep_interval_ms);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { break };
            state.sweep();
        }
    });
}
