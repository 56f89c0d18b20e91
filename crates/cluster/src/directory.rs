//! What an API node tells clients, from the live registry: tracker URLs per stream (primary
//! and ordered standbys), and the live API, STUN and pingback URLs.
//!
//! **Tracker assignment.** A new stream gets weighted rendezvous hashing over the live tracker
//! nodes, each weighted by its configured weight scaled down by its load in tenths
//! ([`NodeRecord::effective_weight`]): every API node with the same view gives the same answer,
//! and a hot node gets fewer new swarms. The answer is then made sticky in Redis
//! (`{p}:assign:{stream}`, `SET NX`): later joins of the stream get the stored order whatever
//! the loads have become, so a swarm never moves because a node got busier. When the stored
//! primary is no longer live, the answer is the stored list without it (its first standby
//! leads), and that order is written back (compare-and-set): the swarm stays on the standby
//! when the old primary returns, instead of splitting between the two.
//!
//! `assign` runs inside the join handler, so it never waits for Redis: it answers from a
//! local cache (or from rendezvous on a miss) and refreshes the cache in the background. While
//! Redis is unavailable the cache and the last registry view keep every stream where it was.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_api::rendezvous::rank;
use shoal_api::{LiveEndpoints, TrackerDirectory, TrackerNode};

use crate::keys::Keys;
use crate::link::Link;
use crate::registry::{NodeEvent, Registry};

/// Streams whose assignment is cached; beyond it the least recently used half goes.
const MAX_CACHED: usize = 50_000;
/// A cached assignment is re-read from Redis after this long (another API node may have
/// moved it).
const REFRESH: Duration = Duration::from_secs(5);
/// Tracker URLs stored per stream.
const STORED: usize = 8;
/// STUN URLs handed out.
const MAX_STUN: usize = 8;

struct Cached {
    urls: Vec<String>,
    fetched: Option<Instant>,
    touched: Instant,
    pending: bool,
}

struct Inner {
    registry: Registry,
    link: Link,
    keys: Keys,
    ttl_ms: u64,
    cache: Mutex<HashMap<String, Cached>>,
}

/// The cluster's [`TrackerDirectory`] and [`LiveEndpoints`] for the API role.
#[derive(Clone)]
pub struct Directory(Arc<Inner>);

const CAS: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] or not cur then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return ARGV[2]
end
return cur
";

impl Directory {
    pub fn new(registry: Registry, link: Link, keys: Keys, assignment_ttl: Duration) -> Directory {
        let d = Directory(Arc::new(Inner {
            registry: registry.clone(),
            link,
            keys,
            ttl_ms: assignment_ttl.as_millis() as u64,
            cache: Mutex::new(HashMap::new()),
        }));
        // Promote at once, not at the stream's next join: until then a returning primary
        // would look live again and take new viewers while the swarm's viewers sit on the
        // standby their lists led them to.
        // After every reconnection to Redis the cache may be from before a partition or an
        // outage (another API node may have promoted a standby meanwhile): the next join of
        // each stream reads Redis again before answering, instead of answering once from the
        // old cache and refreshing behind it.
        let weak = Arc::downgrade(&d.0);
        let mut generation = d.0.link.generation();
        tokio::spawn(async move {
            while generation.changed().await.is_ok() {
                let Some(inner) = weak.upgrade() else { return };
                for e in inner.cache.lock().unwrap_or_else(|p| p.into_inner()).values_mut() {
                    e.fetched = None;
                }
            }
        });
        let weak = Arc::downgrade(&d.0);
        registry.on_event(Arc::new(move |e| {
            if let (NodeEvent::Left { roles, .. }, Some(inner)) = (e, weak.upgrade()) {
                if roles.iter().any(|r| r == "tracker") {
                    Directory(inner).promote_standbys();
                }
            }
        }));
        d
    }

    /// Every cached stream whose stored primary is no longer live: its first live standby
    /// leads (compare-and-set in Redis, as on a join).
    fn promote_standbys(&self) {
        let live = self.live_trackers();
        if live.is_empty() {
            return;
        }
        let is_live = |u: &String| live.iter().any(|t| t.url == *u);
        let orphaned: Vec<(String, Vec<String>)> = {
            let c = self.0.cache.lock().unwrap_or_else(|p| p.into_inner());
            c.iter()
                .filter(|(_, e)| e.urls.first().is_some_and(|u| !is_live(u)))
                .map(|(s, e)| (s.clone(), e.urls.clone()))
                .collect()
        };
        for (stream, stored) in orphaned {
            let ranked = rank(&stream, &live, live.len());
            let mut answer: Vec<String> = stored.iter().filter(|u| is_live(u)).cloned().collect();
            for u in ranked {
                if !answer.contains(&u) {
                    answer.push(u);
                }
            }
            answer.truncate(STORED);
            self.refresh(&stream, answer, Some(stored));
        }
    }

    /// What Redis holds for `stream` (for tests and diagnostics).
    pub async fn stored(&self, stream: &str) -> Option<Vec<String>> {
        let v: Option<String> =
            self.0.link.query(redis::cmd("GET").arg(self.0.keys.assign(stream))).await.ok()?;
        v.and_then(|v| serde_json::from_str(&v).ok())
    }

    fn live_trackers(&self) -> Vec<TrackerNode> {
        let view = self.0.registry.view();
        view.with_role("tracker")
            .filter_map(|n| {
                n.tracker.as_ref().map(|u| TrackerNode { url: u.clone(), weight: n.effective_weight() })
            })
            .collect()
    }

    /// Read (or claim) the stored assignment in the background and cache it.
    fn refresh(&self, stream: &str, proposal: Vec<String>, replace: Option<Vec<String>>) {
        {
            let mut c = self.0.cache.lock().unwrap_or_else(|p| p.into_inner());
            match c.get_mut(stream) {
                Some(e) if e.pending => return,
                Some(e) => e.pending = true,
                None => {
                    if c.len() >= MAX_CACHED {
                        evict(&mut c);
                    }
                    c.insert(
                        stream.to_owned(),
                        Cached { urls: Vec::new(), fetched: None, touched: Instant::now(), pending: true },
                    );
                }
            }
        }
        let this = self.clone();
        let stream = stream.to_owned();
        tokio::spawn(async move {
            let got = this.fetch(&stream, proposal, replace).await;
            let mut c = this.0.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = c.get_mut(&stream) {
                e.pending = false;
                if let Some(urls) = got {
                    e.urls = urls;
                    e.fetched = Some(Instant::now());
                }
            }
        });
    }

    async fn fetch(
        &self,
        stream: &str,
        proposal: Vec<String>,
        replace: Option<Vec<String>>,
    ) -> Option<Vec<String>> {
        let key = self.0.keys.assign(stream);
        let ttl = self.0.ttl_ms;
        let new = serde_json::to_string(&proposal).expect("a list of strings serializes");
        let value: Option<String> = match replace {
            Some(old) => {
                let old = serde_json::to_string(&old).expect("a list of strings serializes");
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(CAS).arg(1).arg(&key).arg(old).arg(&new).arg(ttl);
                self.0.link.query(&cmd).await.ok()?
            }
            None => {
                let mut p = redis::pipe();
                p.cmd("SET").arg(&key).arg(&new).arg("NX").arg("PX").arg(ttl).ignore();
                p.cmd("GET").arg(&key);
                p.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
                let (v,): (Option<String>,) = self.0.link.pipe(&p).await.ok()?;
                v
            }
        };
        let urls: Vec<String> = serde_json::from_str(&value?).ok()?;
        // Bounded and well-formed, whatever is in Redis.
        let urls: Vec<String> = urls.into_iter().filter(|u| u.len() <= 512).take(STORED).collect();
        (!urls.is_empty()).then_some(urls)
    }
}

impl Directory {
    /// [`Directory::fetch`] from synchronous code, when the runtime allows blocking this
    /// worker thread for one round trip; the answer is cached.
    fn fetch_now(&self, stream: &str, proposal: Vec<String>) -> Option<Vec<String>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread || !self.0.link.healthy() {
            return None;
        }
        let urls = tokio::task::block_in_place(|| handle.block_on(self.fetch(stream, proposal, None)))?;
        let mut c = self.0.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= MAX_CACHED {
            evict(&mut c);
        }
        let e = c.entry(stream.to_owned()).or_insert(Cached {
            urls: Vec::new(),
            fetched: None,
            touched: Instant::now(),
            pending: false,
        });
        e.urls = urls.clone();
        e.fetched = Some(Instant::now());
        Some(urls)
    }
}

fn evict(c: &mut HashMap<String, Cached>) {
    let mut ages: Vec<Instant> = c.values().map(|e| e.touched).collect();
    ages.sort_unstable();
    let cut = ages[ages.len() / 2];
    c.retain(|_, e| e.touched > cut || e.pending);
}

impl TrackerDirectory for Directory {
    fn candidates(&self) -> Vec<TrackerNode> {
        self.live_trackers()
    }

    fn assign(&self, stream: &str, n: usize) -> Vec<String> {
        let live = self.live_trackers();
        if live.is_empty() {
            return Vec::new();
        }
        let ranked = rank(stream, &live, live.len());
        let is_live = |u: &String| live.iter().any(|t| t.url == *u);
        let (mut stored, mut fetched) = {
            let mut c = self.0.cache.lock().unwrap_or_else(|p| p.into_inner());
            match c.get_mut(stream) {
                Some(e) => {
                    e.touched = Instant::now();
                    (e.urls.clone(), e.fetched)
                }
                None => (Vec::new(), None),
            }
        };
        if fetched.is_none() {
            // First join of this stream on this API node: ask Redis now (one round trip, or an
            // immediate failure while it is down), so a fresh or restarted API node gives the
            // stored answer and not its own.
            // What this node answered before (if anything) is what its viewers hold: keep
            // that order should Redis have lost the key.
            let mut proposal = if stored.is_empty() { ranked.clone() } else { stored.clone() };
            proposal.truncate(STORED);
            if let Some(urls) = self.fetch_now(stream, proposal) {
                stored = urls;
                fetched = Some(Instant::now());
            }
        }
        let mut answer: Vec<String> = stored.iter().filter(|u| is_live(u)).cloned().collect();
        for u in &ranked {
            if !answer.contains(u) {
                answer.push(u.clone());
            }
        }
        answer.truncate(STORED);
        if stored.is_empty() {
            if fetched.is_none() {
                self.refresh(stream, answer.clone(), None);
            }
        } else if !is_live(&stored[0]) {
            // The primary is gone: its first live standby leads from now on, for every API node.
            self.refresh(stream, answer.clone(), Some(stored));
        } else if fetched.is_none_or(|f| f.elapsed() > REFRESH) {
            self.refresh(stream, answer.clone(), None);
        }
        answer.truncate(n);
        answer
    }
}

impl LiveEndpoints for Directory {
    fn stun(&self) -> Vec<String> {
        let view = self.0.registry.view();
        let mut out: Vec<String> = Vec::new();
        for n in view.with_role("stun") {
            for s in &n.stun {
                if !out.contains(s) && out.len() < MAX_STUN {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    fn api(&self) -> Vec<String> {
        let view = self.0.registry.view();
        view.with_role("api").filter_map(|n| n.api.clone()).collect()
    }

    fn pingback(&self, session_id: &str) -> Vec<String> {
        let view = self.0.registry.view();
        let nodes: Vec<TrackerNode> = view
            .with_role("pingback")
            .filter_map(|n| n.pingback.as_ref().map(|u| TrackerNode { url: u.clone(), weight: 1.0 }))
            .collect();
        rank(session_id, &nodes, nodes.len())
    }
}
