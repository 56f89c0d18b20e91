//! Pingback's shared state in Redis: the 10-second windows ([`RedisStore`], a
//! `shoal_pingback::store::Store`) and the duplicate ledger ([`RedisLedger`], a `Ledger`), so
//! the dashboard, the API's policy and every pingback node see the same figures whichever node
//! received a report.
//!
//! **Windows.** One hash per (window, key) whose fields are the aggregate's sums
//! (`HINCRBYFLOAT`) and histogram buckets (`startup.17`, `latency.40`), and one index set of
//! the window's keys per shard. A Lua script adds one part atomically: it folds the key into
//! `_other` exactly like the in-memory store when the window already holds
//! `max_keys_per_window` keys, and sets the time to live (`retention_s`) of what it touched.
//! Keys of a window are spread over [`SHARDS`] hash tags `{w<window>.<shard>}` (index and
//! hashes of one shard share a slot, so the script runs on one Redis Cluster node and a window
//! does not land on one shard). A report costs one round trip (its two or three parts and the
//! per-node report counter in one pipeline).
//!
//! Complete windows (older than the settle time) never change again: queries cache them in
//! memory (bounded by `max_aggregates`), so the dashboard's 2-second poll reads only the newest
//! few windows from Redis.
//!
//! **Outage.** While Redis is unavailable, parts are added to a local in-memory store and
//! flushed to Redis when the link is back (nothing is lost within that store's caps), queries
//! answer from the cache plus that local store, and the ledger falls back to a local one (a
//! report resent to *another* node during the outage could then be counted twice).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{Map, Value as Json};
use sha2::Digest;
use shoal_pingback::agg::Aggregate;
use shoal_pingback::store::{
    Claim, ClaimRequest, Dims, KeyFilter, Ledger, MemoryLedger, MemoryStore, Query, QueryResult, Store,
    StoreError, StoreStats, OTHER,
};
use shoal_proto::pingback::{GroupKey, MAX_PERIOD_MS, TIME_SLACK_MS};

use crate::keys::Keys;
use crate::link::{Link, LinkError};

/// Index shards per window.
pub const SHARDS: u64 = 8;
/// Width of the ledger's seen-mask (Lua numbers are doubles: 48 bits stay exact).
pub const LEDGER_WINDOW: u64 = 48;

const ADD_SCRIPT: &str = r"
local idx, main, by_stream, full = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local max = tonumber(ARGV[4])
local n = redis.call('SCARD', idx)
local target, member, folded = main, ARGV[1], 0
if n >= max and redis.call('SISMEMBER', idx, ARGV[1]) == 0 then
  folded = 1
  if n < max + math.floor(max / 4) or redis.call('SISMEMBER', idx, ARGV[2]) == 1 then
    target, member = by_stream, ARGV[2]
  else
    target, member = full, ARGV[3]
  end
end
redis.call('SADD', idx, member)
for i = 6, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', target, ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', target, ARGV[5])
redis.call('PEXPIRE', idx, ARGV[5])
return folded
";

const CLAIM_SCRIPT: &str = r"
local k = KEYS[1]
local seq, period, has_startup, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local W = tonumber(ARGV[7])
local h = redis.call('HMGET', k, 'f', 'm', 'k', 'c', 's')
local first = tonumber(h[1]) or now
local maxs = tonumber(h[2]) or 0
local mask = tonumber(h[3]) or 0
local cov = tonumber(h[4]) or 0
local st = tonumber(h[5]) or 0
local newmax, newmask
if seq > maxs then
  local shift = seq - maxs
  if shift >= W then newmask = 1 else newmask = (mask * 2 ^ shift) % 2 ^ W + 1 end
  newmax = seq
else
  local d = maxs - seq
  if d >= W or math.floor(mask / 2 ^ d) % 2 == 1 then
    redis.call('PEXPIRE', k, ARGV[5])
    return 'dup'
  end
  newmax, newmask = maxs, mask + 2 ^ d
end
local covered = cov + period
if covered > (now - first) + tonumber(ARGV[6]) then return 'implausible' end
local startup = 0
if has_startup == 1 and st == 0 then startup = 1 end
local function i(x) return string.format('%.0f', x) end
redis.call('HSET', k, 'f', i(first), 'm', i(newmax), 'k', i(newmask), 'c', i(covered), 's', i(math.max(st, startup)))
redis.call('PEXPIRE', k, ARGV[5])
if startup == 1 then return 'new_startup' end
return 'new'
";

/// Runs a script with `EVAL` (Redis caches compiled scripts by body, so this costs a hash
/// lookup, not a compile, after the first call; no NOSCRIPT handling after a restart).
fn eval(script: &str) -> redis::Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(script);
    c
}

fn unavailable(e: LinkError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// `["stream","rendition","locality","platform","group"]`.
fn encode_key(k: &GroupKey) -> String {
    serde_json::to_string(&[&k.stream, &k.rendition, &k.locality, &k.platform, &k.group])
        .expect("strings serialize")
}

fn decode_key(s: &str) -> Option<GroupKey> {
    let [stream, rendition, locality, platform, group]: [String; 5] = serde_json::from_str(s).ok()?;
    if [&stream, &rendition, &locality, &platform, &group].iter().any(|f| f.len() > 128) {
        return None;
    }
    Some(GroupKey { stream, rendition, locality, platform, group })
}

fn shard_of(member: &str) -> u64 {
    let d = sha2::Sha256::digest(member.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("32 bytes")) % SHARDS
}

/// The aggregate as hash fields (only the non-zero ones).
fn to_fields(a: &Aggregate) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(Json::Object(m)) = serde_json::to_value(a) else { return out };
    for (k, v) in m {
        match v {
            Json::Number(n) if n.as_f64().is_some_and(|f| f != 0.0) => out.push((k, n.to_string())),
            Json::Object(h) => {
                if let Some(Json::Array(buckets)) = h.get("buckets") {
                    for b in buckets {
                        if let Some([Json::Number(i), Json::Number(c)]) = b.as_array().map(Vec::as_slice) {
                            out.push((format!("{k}.{i}"), c.to_string()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Hash fields back into an aggregate (unknown fields ignored, histograms rebuilt).
fn from_fields(fields: &HashMap<String, String>) -> Aggregate {
    let mut m = Map::new();
    let mut hists: BTreeMap<String, BTreeMap<u8, u32>> = BTreeMap::new();
    for (k, v) in fields {
        let Ok(x) = v.parse::<f64>() else { continue };
        if !x.is_finite() {
            continue;
        }
        match k.split_once('.') {
            Some((h, b)) => {
                if let Ok(b) = b.parse::<u8>() {
                    *hists.entry(h.to_owned()).or_default().entry(b).or_default() +=
                        x.max(0.0).min(u32::MAX as f64) as u32;
                }
            }
            None if k == "reports" => {
                m.insert(k.clone(), Json::from(x.max(0.0) as u64));
            }
            None => {
                m.insert(k.clone(), Json::from(x));
            }
        }
    }
    for (h, b) in hists {
        let buckets: Vec<Json> =
            b.into_iter().map(|(i, c)| Json::from(vec![Json::from(i), Json::from(c)])).collect();
        m.insert(h, serde_json::json!({ "buckets": buckets }));
    }
    let defaults = serde_json::to_value(Aggregate::default()).expect("plain data");
    let mut full = match defaults {
        Json::Object(d) => d,
        _ => Map::new(),
    };
    for (k, v) in m {
        if full.contains_key(&k) {
            full.insert(k, v);
        }
    }
    serde_json::from_value(Json::Object(full)).unwrap_or_default()
}

fn folded(k: &GroupKey, keep_stream: bool) -> GroupKey {
    GroupKey {
        stream: if keep_stream { k.stream.clone() } else { OTHER.into() },
        rendition: OTHER.into(),
        locality: OTHER.into(),
        platform: OTHER.into(),
        group: k.group.clone(),
    }
}

type WindowData = HashMap<GroupKey, Aggregate>;

/// Complete windows read from Redis, kept in memory.
#[derive(Default)]
struct Cache {
    windows: BTreeMap<u64, Arc<WindowData>>,
    aggregates: usize,
}

/// Windows in Redis. See the module documentation.
pub struct RedisStore {
    link: Link,
    keys: Keys,
    node: String,
    window_ms: u64,
    retention_ms: u64,
    settle_ms: u64,
    max_keys: usize,
    max_aggregates: usize,
    cache: Mutex<Cache>,
    /// The last read of windows still open (shown, with what was counted here, while Redis is
    /// unavailable).
    last_open: Mutex<BTreeMap<u64, Arc<WindowData>>>,
    /// Parts not yet in Redis (outage).
    pending: Mutex<Arc<MemoryStore>>,
    /// What a fresh `pending` buffer is made from (the whole window's key cap, not a shard's).
    buffer_cfg: shoal_pingback::PingbackConfig,
    keys_folded: AtomicU64,
    parts_too_old: AtomicU64,
    /// Held for writing while a flush moves parts from `pending` to Redis, and for reading by
    /// every query: a query must see each part exactly once, either in Redis or in `pending`,
    /// never in the gap between the swap and the write.
    flushing: tokio::sync::RwLock<()>,
    /// Reports are merged here and written every this many ms (0: each report at once).
    batch_ms: AtomicU64,
}

impl RedisStore {
    /// `window_ms`, `retention_ms`, `settle_ms`, `max_keys_per_window`, `max_aggregates` as
    /// in `[pingback]`.
    pub fn new(link: Link, keys: Keys, node: String, cfg: &shoal_pingback::PingbackConfig) -> RedisStore {
        let retention_ms = cfg.retention_s.saturating_mul(1000);
        RedisStore {
            link,
            keys,
            node,
            window_ms: cfg.window_ms().max(1),
            retention_ms,
            settle_ms: cfg.settle_ms(),
            // The cap is enforced per shard of a window (a window's keys spread over SHARDS
            // index sets), so a window folds at about the configured total.
            max_keys: cfg.max_keys_per_window.div_ceil(SHARDS as usize).max(1),
            max_aggregates: cfg.max_aggregates.max(16),
            cache: Mutex::new(Cache::default()),
            last_open: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(Arc::new(Self::buffer(cfg))),
            buffer_cfg: cfg.clone(),
            keys_folded: AtomicU64::new(0),
            parts_too_old: AtomicU64::new(0),
            flushing: tokio::sync::RwLock::new(()),
            batch_ms: AtomicU64::new(0),
        }
    }

    /// Merge reports in memory and write the merged parts every `every` instead of each report
    /// at once: Redis then works per (window, key) and not per report — at 100 000 reports/s a
    /// node writes a few hundred parts a second instead of 100 000 scripts. Figures reach the
    /// other nodes up to `every` later (well inside the settle time). Needs a tokio runtime;
    /// the flushing task ends with the store.
    pub fn batch(self: &Arc<Self>, every: std::time::Duration) {
        let ms = (every.as_millis() as u64).clamp(10, 5_000);
        self.batch_ms.store(ms, Relaxed);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                store.flush_pending(crate::now_ms()).await;
            }
        });
    }

    fn buffer(cfg: &shoal_pingback::PingbackConfig) -> MemoryStore {
        MemoryStore::new(
            cfg.retention_s.saturating_mul(1000),
            cfg.max_keys_per_window,
            cfg.max_aggregates / 4,
        )
    }

    fn pending(&self) -> Arc<MemoryStore> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reports each pingback node counted in the window starting at `window_ms`.
    pub async fn reports_by_node(&self, window_ms: u64) -> Result<BTreeMap<String, u64>, StoreError> {
        let m: HashMap<String, u64> = self
            .link
            .query(redis::cmd("HGETALL").arg(self.keys.pb_nodes(window_ms)))
            .await
            .map_err(unavailable)?;
        Ok(m.into_iter().collect())
    }

    /// Merged parts waiting for Redis. Read from the buffer itself, not a counter kept beside
    /// it: a counter reset by a flush while a report lands in the fresh buffer would hide that
    /// report from queries and from the next flush.
    pub fn pending_parts(&self) -> u64 {
        self.pending().stats().aggregates as u64
    }

    fn tag(&self, window: u64, member: &str) -> String {
        format!("{{w{window}.{}}}", shard_of(member))
    }

    /// Pipeline the script calls for `parts`, plus the per-node report counter.
    fn add_pipe(&self, parts: &[(u64, GroupKey, Aggregate)]) -> redis::Pipeline {
        let mut p = redis::pipe();
        let p_ = self.keys.prefix();
        // Reports per window (a part carries the reports it merged; one report counts once).
        let mut report_windows: Vec<(u64, u64)> = Vec::new();
        for (w, key, a) in parts {
            let member = encode_key(key);
            // Fold targets share the main key's hash tag so the script touches one slot.
            let tag = self.tag(*w, &member);
            let by_stream = encode_key(&folded(key, true));
            let full = encode_key(&folded(key, false));
            let mut c = eval(ADD_SCRIPT);
            c.arg(4)
                .arg(format!("{p_}:pb:{tag}:i"))
                .arg(format!("{p_}:pb:{tag}:k:{member}"))
                .arg(format!("{p_}:pb:{tag}:k:{by_stream}"))
                .arg(format!("{p_}:pb:{tag}:k:{full}"))
                .arg(&member)
                .arg(&by_stream)
                .arg(&full)
                .arg(self.max_keys)
                .arg(self.retention_ms);
            for (f, v) in to_fields(a) {
                c.arg(f).arg(v);
            }
            p.add_command(c);
            if a.reports > 0 {
                match report_windows.iter_mut().find(|(rw, _)| rw == w) {
                    Some((_, n)) => *n += a.reports,
                    None => report_windows.push((*w, a.reports)),
                }
            }
        }
        for (w, n) in report_windows {
            let k = self.keys.pb_nodes(w);
            p.cmd("HINCRBY").arg(&k).arg(&self.node).arg(n).ignore();
            p.cmd("PEXPIRE").arg(&k).arg(self.retention_ms).ignore();
        }
        p
    }

    async fn write(&self, parts: &[(u64, GroupKey, Aggregate)]) -> Result<(), LinkError> {
        if parts.is_empty() {
            return Ok(());
        }
        let p = self.add_pipe(parts);
        let folded: Vec<i64> = self.link.pipe(&p).await?;
        let n = folded.iter().filter(|f| **f > 0).count() as u64;
        self.keys_folded.fetch_add(n, Relaxed);
        Ok(())
    }

    /// Move what the outage left in the local store to Redis.
    pub async fn flush_pending(&self, now_ms: u64) {
        if self.pending_parts() == 0 || !self.link.healthy() {
            return;
        }
        let _g = self.flushing.write().await;
        let old = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *p, Arc::new(Self::buffer(&self.buffer_cfg)))
        };
        let q = Query {
            from_ms: now_ms.saturating_sub(self.retention_ms),
            to_ms: now_ms + self.window_ms,
            step_ms: self.window_ms,
            filter: KeyFilter::default(),
            by: Dims { stream: true, rendition: true, locality: true, platform: true, group: true },
        };
        let Ok(all) = old.query(&q).await else { return };
        let parts: Vec<(u64, GroupKey, Aggregate)> = all
            .into_iter()
            .flat_map(|(k, steps)| steps.into_iter().map(move |(w, a)| (w, k.clone(), a)))
            .collect();
        let n = parts.len();
        for chunk in parts.chunks(64) {
            if self.write(chunk).await.is_err() {
                // Still down: keep it for the next try.
                let _ = self.pending().add(now_ms, chunk.to_vec()).await;
            }
        }
        if self.pending_parts() == 0 && self.batch_ms.load(Relaxed) == 0 {
            tracing::info!(parts = n, "pingback: parts kept during the Redis outage are in Redis now");
        }
    }

    fn complete_before(&self, now_ms: u64) -> u64 {
        let settled = now_ms.saturating_sub(self.settle_ms);
        settled - settled % self.window_ms
    }

    /// Every key of the windows `ws` (all of them complete: read whole, then cached).
    async fn read_windows(&self, ws: &[u64]) -> Result<Vec<(u64, WindowData)>, LinkError> {
        let p_ = self.keys.prefix();
        let mut p = redis::pipe();
        for w in ws {
            for s in 0..SHARDS {
                p.cmd("SMEMBERS").arg(format!("{p_}:pb:{{w{w}.{s}}}:i"));
            }
        }
        let members: Vec<Vec<String>> = self.link.pipe(&p).await?;
        // (window, shard, member): a folded key lives in the shard of the key it replaced,
        // so the hash is found through the index it is listed in, not its own hash.
        let mut wanted: Vec<(u64, u64, String)> = Vec::new();
        for (i, ms) in members.into_iter().enumerate() {
            let w = ws[i / SHARDS as usize];
            let shard = i as u64 % SHARDS;
            wanted.extend(ms.into_iter().take(4 * self.max_keys + 8).map(|m| (w, shard, m)));
        }
        let mut out: BTreeMap<u64, WindowData> = ws.iter().map(|w| (*w, WindowData::new())).collect();
        for chunk in wanted.chunks(512) {
            let mut p = redis::pipe();
            for (w, shard, m) in chunk {
                p.cmd("HGETALL").arg(format!("{p_}:pb:{{w{w}.{shard}}}:k:{m}"));
            }
            let hashes: Vec<HashMap<String, String>> = self.link.pipe(&p).await?;
            for ((w, _, m), h) in chunk.iter().zip(hashes) {
                if let Some(k) = decode_key(m) {
                    if !h.is_empty() {
                        out.entry(*w).or_default().entry(k).or_default().merge(&from_fields(&h));
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    fn cache_windows(&self, data: &[(u64, WindowData)]) {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for (w, d) in data {
            if let Some(old) = c.windows.insert(*w, Arc::new(d.clone())) {
                c.aggregates -= old.len();
            }
            c.aggregates += d.len();
        }
        while c.aggregates > self.max_aggregates {
            let Some((_, d)) = c.windows.pop_first() else { break };
            c.aggregates -= d.len();
        }
    }
}

fn merge_into(out: &mut QueryResult, q: &Query, w: u64, data: &WindowData) {
    let step = q.step_ms.max(1);
    let slot = w - w % step;
    for (k, a) in data {
        if q.filter.matches(k) {
            out.entry(q.by.project(k)).or_default().entry(slot).or_default().merge(a);
        }
    }
}

impl Store for RedisStore {
    fn add(
        &self,
        now_ms: u64,
        parts: Vec<(u64, GroupKey, Aggregate)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let oldest = now_ms.saturating_sub(self.retention_ms);
            let (parts, old): (Vec<_>, Vec<_>) = parts.into_iter().partition(|(w, _, _)| *w >= oldest);
            self.parts_too_old.fetch_add(old.len() as u64, Relaxed);
            if self.batch_ms.load(Relaxed) > 0 {
                // Merged here; the batching task writes them.
                return self.pending().add(now_ms, parts).await;
            }
            self.flush_pending(now_ms).await;
            match self.write(&parts).await {
                Ok(()) => Ok(()),
                Err(LinkError::Unavailable(_)) => {
                    // Keep serving: counted locally, written to Redis when it is back.
                    self.pending().add(now_ms, parts).await
                }
                Err(e @ LinkError::Redis(_)) => Err(unavailable(e)),
            }
        })
    }

    fn query<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<QueryResult, StoreError>> {
        Box::pin(async move {
            let _no_flush = self.flushing.read().await;
            let w = self.window_ms;
            let now = crate::now_ms();
            let first = q.from_ms.div_ceil(w) * w;
            let last = q.to_ms.max(q.from_ms);
            let n = last.saturating_sub(first).div_ceil(w);
            if n > 100_000 {
                return Err(StoreError::Unavailable("query spans too many windows".into()));
            }
            let complete_before = self.complete_before(now);
            let oldest = now.saturating_sub(self.retention_ms);
            let mut out = QueryResult::new();
            let mut missing_complete = Vec::new();
            let mut open = Vec::new();
            {
                let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                let mut win = first;
                while win < last {
                    if win + w < oldest {
                        // Past the retention: gone in Redis too.
                    } else if let Some(d) = c.windows.get(&win) {
                        merge_into(&mut out, q, win, d);
                    } else if win + w <= complete_before {
                        missing_complete.push(win);
                    } else {
                        open.push(win);
                    }
                    win += w;
                }
            }
            let fetched = async {
                let mut got = Vec::new();
                for chunk in missing_complete.chunks(64) {
                    let data = self.read_windows(chunk).await?;
                    self.cache_windows(&data);
                    got.extend(data);
                }
                let open_data = self.read_windows(&open).await?;
                {
                    let mut lo = self.last_open.lock().unwrap_or_else(|p| p.into_inner());
                    for (win, d) in &open_data {
                        lo.insert(*win, Arc::new(d.clone()));
                    }
                    while lo.len() > 16 {
                        lo.pop_first();
                    }
                }
                got.extend(open_data);
                Ok::<_, LinkError>(got)
            }
            .await;
            match fetched {
                Ok(data) => {
                    for (win, d) in &data {
                        merge_into(&mut out, q, *win, d);
                    }
                }
                Err(LinkError::Redis(e)) => return Err(StoreError::Unavailable(e)),
                // Redis down: what is cached, the last read of the open windows, and what was
                // counted here meanwhile.
                Err(LinkError::Unavailable(_)) => {
                    let lo = self.last_open.lock().unwrap_or_else(|p| p.into_inner());
                    for win in &open {
                        if let Some(d) = lo.get(win) {
                            merge_into(&mut out, q, *win, d);
                        }
                    }
                }
            }
            if self.pending_parts() > 0 {
                let local = self.pending().query(q).await?;
                for (k, steps) in local {
                    let e = out.entry(k).or_default();
                    for (s, a) in steps {
                        e.entry(s).or_default().merge(&a);
                    }
                }
            }
            Ok(out)
        })
    }

    fn prune(&self, now_ms: u64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let oldest = now_ms.saturating_sub(self.retention_ms);
            {
                let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                while let Some((&w, _)) = c.windows.first_key_value() {
                    if w >= oldest {
                        break;
                    }
                    if let Some(d) = c.windows.remove(&w) {
                        c.aggregates -= d.len();
                    }
                }
            }
            self.pending().prune(now_ms).await;
            self.flush_pending(now_ms).await;
        })
    }

    fn stats(&self) -> StoreStats {
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let local = self.pending().stats();
        StoreStats {
            windows: c.windows.len(),
            aggregates: c.aggregates + local.aggregates,
            oldest_window_ms: c.windows.first_key_value().map(|(w, _)| *w),
            keys_folded: self.keys_folded.load(Relaxed) + local.keys_folded,
            windows_evicted: local.windows_evicted,
            parts_too_old: self.parts_too_old.load(Relaxed) + local.parts_too_old,
        }
    }
}

/// The duplicate ledger in Redis: one small hash per session, updated atomically by a Lua
/// script (first seen, highest sequence number, a 48-bit seen mask, covered time, startup
/// counted), expiring `session_ttl_s` after its last report. Falls back to a local ledger
/// while Redis is unavailable.
pub struct RedisLedger {
    link: Link,
    keys: Keys,
    ttl_ms: u64,
    local: MemoryLedger,
    /// Sessions this node claimed recently (for the dashboard's "sessions tracked").
    seen: Mutex<(HashMap<String, u64>, VecDeque<String>)>,
    max_sessions: usize,
}

impl RedisLedger {
    pub fn new(link: Link, keys: Keys, cfg: &shoal_pingback::PingbackConfig) -> RedisLedger {
        let ttl_ms = cfg.session_ttl_s.saturating_mul(1000);
        RedisLedger {
            link,
            keys,
            ttl_ms,
            local: MemoryLedger::new(ttl_ms, cfg.max_sessions),
            seen: Mutex::new((HashMap::new(), VecDeque::new())),
            max_sessions: cfg.max_sessions.max(16),
        }
    }

    fn note(&self, session: &str, now_ms: u64) {
        let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        if map.insert(session.to_owned(), now_ms).is_none() {
            order.push_back(session.to_owned());
            while order.len() > self.max_sessions {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }
}

impl Ledger for RedisLedger {
    fn claim<'a>(&'a self, c: ClaimRequest<'a>) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            if !shoal_proto::ids::valid_name(c.session_id) && c.session_id.len() > 128 {
                return Ok(Claim::Implausible);
            }
            let mut cmd = eval(CLAIM_SCRIPT);
            cmd.arg(1)
                .arg(self.keys.pb_session(c.session_id))
                .arg(c.seq)
                .arg(c.period_ms)
                .arg(u8::from(c.has_startup))
                .arg(c.now_ms)
                .arg(self.ttl_ms)
                .arg(MAX_PERIOD_MS + TIME_SLACK_MS)
                .arg(LEDGER_WINDOW);
            let r: Result<String, _> = self.link.query(&cmd).await;
            let claim = match r {
                Ok(s) => match s.as_str() {
                    "dup" => Claim::Duplicate,
                    "implausible" => Claim::Implausible,
                    "new_startup" => Claim::New { startup: true },
                    _ => Claim::New { startup: false },
                },
                Err(LinkError::Unavailable(_)) => return self.local.claim(c).await,
                Err(e @ LinkError::Redis(_)) => return Err(unavailable(e)),
            };
            self.note(c.session_id, c.now_ms);
            Ok(claim)
        })
    }

    fn sweep(&self, now_ms: u64) -> BoxFuture<'_, ()> {
        {
            let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let (map, order) = &mut *g;
            let ttl = self.ttl_ms;
            map.retain(|_, t| now_ms.saturating_sub(*t) < ttl);
            order.retain(|s| map.contains_key(s));
        }
        self.local.sweep(now_ms)
    }

    fn sessions(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).0.len() + self.local.sessions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_fields_round_trip() {
        let mut a = Aggregate { http_bytes: 1234.5, reports: 3, stalls: 1.0, ..Default::default() };
        a.startup.record(700);
        a.startup.record(710);
        a.latency.record(6_000);
        let fields: HashMap<String, String> = to_fields(&a).into_iter().collect();
        assert!(fields.contains_key("http_bytes") && !fields.contains_key("p2p_up_bytes"), "{fields:?}");
        assert!(fields.keys().any(|k| k.starts_with("startup.")));
        assert_eq!(from_fields(&fields), a);
        // Fields from a newer node that this one does not know are ignored.
        let mut more = fields.clone();
        more.insert("future_field".into(), "1".into());
        more.insert("http_bytes".into(), "not a number".into());
        let b = from_fields(&more);
        assert_eq!(b.http_bytes, 0.0);
        assert_eq!(b.reports, 3);
    }

    #[test]
    fn keys_encode_and_shard() {
        let k = GroupKey {
            stream: "demo".into(),
            rendition: "720p".into(),
            locality: "isp:a".into(),
            platform: "web".into(),
            group: "p2p".into(),
        };
        let e = encode_key(&k);
        assert_eq!(decode_key(&e), Some(k));
        assert_eq!(decode_key("[1,2]"), None);
        assert!(shard_of(&e) < SHARDS);
    }
}
