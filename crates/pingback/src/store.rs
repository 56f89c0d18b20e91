//! Where windows and the duplicate ledger live: the [`Store`] and [`Ledger`] traits, and their
//! in-memory implementations ([`MemoryStore`], [`MemoryLedger`]).
//!
//! The traits are what a cluster of pingback nodes needs to share (issue #10): a Redis store
//! keeps each window's aggregate of a key as one hash (every field added with `HINCRBYFLOAT`,
//! histogram buckets as fields, the key expiring with the retention), and the ledger as one
//! small hash per session (`max_seq`, the 64-bit seen mask and the covered time, updated by a
//! Lua script so a claim is atomic). Their methods are async for that reason; the in-memory
//! versions answer at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use shoal_proto::pingback::{GroupKey, MAX_PERIOD_MS, TIME_SLACK_MS};

use crate::agg::Aggregate;

/// Label of folded keys (too many distinct keys in a window).
pub const OTHER: &str = "_other";
/// Label of a dimension merged away in a query answer.
pub const ALL: &str = "*";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Which keys a query looks at (`None` = any value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFilter {
    pub stream: Option<String>,
    pub rendition: Option<String>,
    pub locality: Option<String>,
    pub platform: Option<String>,
    pub group: Option<String>,
}

impl KeyFilter {
    pub fn matches(&self, k: &GroupKey) -> bool {
        let ok = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
        ok(&self.stream, &k.stream)
            && ok(&self.rendition, &k.rendition)
            && ok(&self.locality, &k.locality)
            && ok(&self.platform, &k.platform)
            && ok(&self.group, &k.group)
    }
}

/// Which dimensions a query answer keeps apart (the others are merged, shown as `*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dims {
    pub stream: bool,
    pub rendition: bool,
    pub locality: bool,
    pub platform: bool,
    pub group: bool,
}

impl Dims {
    /// `stream,group` → those two kept. Unknown names are an error.
    pub fn parse(s: &str) -> Result<Dims, String> {
        let mut d = Dims::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "stream" => d.stream = true,
                "rendition" => d.rendition = true,
                "locality" => d.locality = true,
                "platform" => d.platform = true,
                "group" => d.group = true,
                other => {
                    return Err(format!(
                        "unknown dimension {other:?} (stream, rendition, locality, platform, group)"
                    ))
                }
            }
        }
        Ok(d)
    }

    pub fn project(&self, k: &GroupKey) -> GroupKey {
        let keep = |on: bool, v: &str| if on { v.to_owned() } else { ALL.to_owned() };
        GroupKey {
            stream: keep(self.stream, &k.stream),
            rendition: keep(self.rendition, &k.rendition),
            locality: keep(self.locality, &k.locality),
            platform: keep(self.platform, &k.platform),
            group: keep(self.group, &k.group),
        }
    }
}

/// Windows in `[from_ms, to_ms)`, filtered, projected on `by`, merged into steps of `step_ms`
/// (aligned to the epoch; a multiple of the window length).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub from_ms: u64,
    pub to_ms: u64,
    pub step_ms: u64,
    pub filter: KeyFilter,
    pub by: Dims,
}

/// Projected key → step start → merged aggregate.
pub type QueryResult = BTreeMap<GroupKey, BTreeMap<u64, Aggregate>>;

/// Counts that show the store's memory bounds at work.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub windows: usize,
    pub aggregates: usize,
    pub oldest_window_ms: Option<u64>,
    /// Keys folded into `_other` because a window had too many.
    pub keys_folded: u64,
    /// Windows dropped before their retention because of `max_aggregates`.
    pub windows_evicted: u64,
    /// Parts refused because their window is older than the retention.
    pub parts_too_old: u64,
}

/// Aggregated windows. Every node adds to the same windows; adding is commutative.
pub trait Store: Send + Sync + 'static {
    /// Add report parts: `(window start, key, aggregate)`. `now_ms` decides what is too old.
    fn add(
        &self,
        now_ms: u64,
        parts: Vec<(u64, GroupKey, Aggregate)>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    fn query<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<QueryResult, StoreError>>;
    /// Drop what is past its retention or over the caps.
    fn prune(&self, now_ms: u64) -> BoxFuture<'_, ()>;
    fn stats(&self) -> StoreStats;
}

/// A report's claim on its `(session, seq)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimRequest<'a> {
    pub session_id: &'a str,
    pub seq: u64,
    pub period_ms: u64,
    pub has_startup: bool,
    pub now_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// First time: count it. `startup`: this report's startup time is the session's first.
    New { startup: bool },
    /// Counted before (or older than the last 64 sequence numbers): do not count.
    Duplicate,
    /// The session claims more time than has passed since it first reported.
    Implausible,
    /// The ledger is full of live sessions.
    Overloaded,
}

/// Per-session duplicate detection (a sliding window of the last 64 sequence numbers, like
/// IPsec anti-replay) and plausibility (covered time against wall time).
pub trait Ledger: Send + Sync + 'static {
    fn claim<'a>(&'a self, c: ClaimRequest<'a>) -> BoxFuture<'a, Result<Claim, StoreError>>;
    /// Forget sessions silent for the TTL.
    fn sweep(&self, now_ms: u64) -> BoxFuture<'_, ()>;
    fn sessions(&self) -> usize;
}

// ---------------------------------------------------------------------------------- memory

#[derive(Default)]
struct Windows {
    windows: BTreeMap<u64, HashMap<Arc<GroupKey>, Aggregate>>,
    aggregates: usize,
    interner: HashMap<GroupKey, Arc<GroupKey>>,
    keys_folded: u64,
    windows_evicted: u64,
    parts_too_old: u64,
}

/// Windows in memory: bounded by `retention_ms`, `max_keys_per_window` (beyond it keys fold
/// into `_other`, at most 1.25 × the cap + 3 keys per window) and `max_aggregates`.
pub struct MemoryStore {
    inner: Mutex<Windows>,
    retention_ms: u64,
    max_keys: usize,
    max_aggregates: usize,
}

impl MemoryStore {
    pub fn new(retention_ms: u64, max_keys_per_window: usize, max_aggregates: usize) -> Self {
        MemoryStore {
            inner: Mutex::new(Windows::default()),
            retention_ms,
            max_keys: max_keys_per_window.max(1),
            max_aggregates: max_aggregates.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        // A panic while holding the lock leaves sums that are still sums: keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
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

impl Windows {
    fn intern(&mut self, k: GroupKey) -> Arc<GroupKey> {
        if let Some(a) = self.interner.get(&k) {
            return a.clone();
        }
        let a = Arc::new(k.clone());
        self.interner.insert(k, a.clone());
        a
    }

    fn add_part(&mut self, w: u64, key: GroupKey, part: &Aggregate, max_keys: usize) {
        let len = self.windows.get(&w).map_or(0, |m| m.len());
        let present = |s: &Self, k: &GroupKey| {
            s.interner.get(k).is_some_and(|a| s.windows.get(&w).is_some_and(|m| m.contains_key(a)))
        };
        let key = if len < max_keys || present(self, &key) {
            key
        } else {
            self.keys_folded += 1;
            let by_stream = folded(&key, true);
            if len < max_keys + max_keys / 4 || present(self, &by_stream) {
                by_stream
            } else {
                folded(&key, false)
            }
        };
        let key = self.intern(key);
        let window = self.windows.entry(w).or_default();
        match window.get_mut(&key) {
            Some(a) => a.merge(part),
            None => {
                window.insert(key, part.clone());
                self.aggregates += 1;
            }
        }
    }
}

impl Store for MemoryStore {
    fn add(
        &self,
        now_ms: u64,
        parts: Vec<(u64, GroupKey, Aggregate)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let oldest = now_ms.saturating_sub(self.retention_ms);
        let mut s = self.lock();
        for (w, key, part) in parts {
            if w < oldest {
                s.parts_too_old += 1;
                continue;
            }
            s.add_part(w, key, &part, self.max_keys);
        }
        drop(s);
        Box::pin(async { Ok(()) })
    }

    fn query<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<QueryResult, StoreError>> {
        let step = q.step_ms.max(1);
        let mut out = QueryResult::new();
        {
            let s = self.lock();
            for (&w, keys) in s.windows.range(q.from_ms..q.to_ms.max(q.from_ms)) {
                let slot = w - w % step;
                for (k, a) in keys {
                    if q.filter.matches(k) {
                        out.entry(q.by.project(k)).or_default().entry(slot).or_default().merge(a);
                    }
                }
            }
        }
        Box::pin(async move { Ok(out) })
    }

    fn prune(&self, now_ms: u64) -> BoxFuture<'_, ()> {
        let oldest = now_ms.saturating_sub(self.retention_ms);
        let mut s = self.lock();
        let mut changed = false;
        while let Some((&w, _)) = s.windows.first_key_value() {
            let over_cap = s.aggregates > self.max_aggregates;
            if w >= oldest && !over_cap {
                break;
            }
            if let Some(m) = s.windows.remove(&w) {
                s.aggregates -= m.len();
            }
            if w >= oldest {
                s.windows_evicted += 1;
            }
            changed = true;
        }
        if changed {
            s.interner.retain(|_, a| Arc::strong_count(a) > 1);
        }
        drop(s);
        Box::pin(async {})
    }

    fn stats(&self) -> StoreStats {
        let s = self.lock();
        StoreStats {
            windows: s.windows.len(),
            aggregates: s.aggregates,
            oldest_window_ms: s.windows.first_key_value().map(|(w, _)| *w),
            keys_folded: s.keys_folded,
            windows_evicted: s.windows_evicted,
            parts_too_old: s.parts_too_old,
        }
    }
}

#[derive(Clone, Debug)]
struct SessionEntry {
    first_seen_ms: u64,
    last_seen_ms: u64,
    max_seq: u64,
    /// Bit i set: `max_seq - i` was counted.
    mask: u64,
    covered_ms: u64,
    startup_counted: bool,
}

/// The ledger in memory, bounded by `max_sessions`; sessions silent for `ttl_ms` are forgotten.
pub struct MemoryLedger {
    sessions: Mutex<HashMap<String, SessionEntry>>,
    ttl_ms: u64,
    max_sessions: usize,
}

impl MemoryLedger {
    pub fn new(ttl_ms: u64, max_sessions: usize) -> Self {
        MemoryLedger { sessions: Mutex::new(HashMap::new()), ttl_ms, max_sessions: max_sessions.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim_now(&self, c: &ClaimRequest<'_>) -> Claim {
        let mut map = self.lock();
        if !map.contains_key(c.session_id) && map.len() >= self.max_sessions {
            let ttl = self.ttl_ms;
            map.retain(|_, e| c.now_ms.saturating_sub(e.last_seen_ms) < ttl);
            if map.len() >= self.max_sessions {
                return Claim::Overloaded;
            }
        }
        let e = map.entry(c.session_id.to_owned()).or_insert(SessionEntry {
            first_seen_ms: c.now_ms,
            last_seen_ms: c.now_ms,
            max_seq: 0,
            mask: 0,
            covered_ms: 0,
            startup_counted: false,
        });
        // Duplicate?
        let (max_seq, mask) = if c.seq > e.max_seq {
            let shift = c.seq - e.max_seq;
            (c.seq, if shift >= 64 { 1 } else { (e.mask << shift) | 1 })
        } else {
            let d = e.max_seq - c.seq;
            if d >= 64 || e.mask & (1 << d) != 0 {
                e.last_seen_ms = c.now_ms;
                return Claim::Duplicate;
            }
            (e.max_seq, e.mask | (1 << d))
        };
        // Plausible? A session cannot cover more time than has passed since it first reported,
        // plus one longest period (its first report) and timer slack.
        let covered = e.covered_ms.saturating_add(c.period_ms);
        let allowed = c.now_ms.saturating_sub(e.first_seen_ms) + MAX_PERIOD_MS + TIME_SLACK_MS;
        if covered > allowed {
            return Claim::Implausible;
        }
        e.max_seq = max_seq;
        e.mask = mask;
        e.covered_ms = covered;
        e.last_seen_ms = c.now_ms;
        let startup = c.has_startup && !e.startup_counted;
        e.startup_counted |= startup;
        Claim::New { startup }
    }
}

impl Ledger for MemoryLedger {
    fn claim<'a>(&'a self, c: ClaimRequest<'a>) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let r = self.claim_now(&c);
        Box::pin(async move { Ok(r) })
    }

    fn sweep(&self, now_ms: u64) -> BoxFuture<'_, ()> {
        let ttl = self.ttl_ms;
        self.lock().retain(|_, e| now_ms.saturating_sub(e.last_seen_ms) < ttl);
        Box::pin(async {})
    }

    fn sessions(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn key(stream: &str, platform: &str) -> GroupKey {
        GroupKey {
            stream: stream.into(),
            rendition: "720p".into(),
            locality: String::new(),
            platform: platform.into(),
            group: "p2p".into(),
        }
    }

    fn part(http: f64) -> Aggregate {
        Aggregate { http_bytes: http, session_ms: 1_000.0, ..Default::default() }
    }

    #[test]
    fn query_filters_projects_and_merges_steps() {
        let s = MemoryStore::new(3_600_000, 100, 10_000);
        let parts = vec![
            (10_000, key("a", "web"), part(1.0)),
            (10_000, key("a", "linux"), part(2.0)),
            (20_000, key("a", "web"), part(4.0)),
            (20_000, key("b", "web"), part(8.0)),
        ];
        block_on(s.add(30_000, parts)).expect("add");
        let q = Query {
            from_ms: 0,
            to_ms: 30_000,
            step_ms: 10_000,
            filter: KeyFilter { stream: Some("a".into()), ..Default::default() },
            by: Dims::parse("stream").expect("dims"),
        };
        let r = block_on(s.query(&q)).expect("query");
        assert_eq!(r.len(), 1);
        let (k, steps) = r.iter().next().expect("one series");
        assert_eq!((k.stream.as_str(), k.platform.as_str()), ("a", ALL));
        assert_eq!(steps.get(&10_000).map(|a| a.http_bytes), Some(3.0));
        assert_eq!(steps.get(&20_000).map(|a| a.http_bytes), Some(4.0));
        let q = Query { step_ms: 60_000, filter: KeyFilter::default(), by: Dims::default(), ..q };
        let r = block_on(s.query(&q)).expect("query");
        assert_eq!(r.values().next().and_then(|m| m.get(&0)).map(|a| a.http_bytes), Some(15.0));
        assert!(Dims::parse("stream,nope").is_err());
    }

    #[test]
    fn keys_fold_and_memory_stays_bounded() {
        let s = MemoryStore::new(100_000, 8, 40);
        // 50 platforms in one window: 8 kept, then folded per stream, then wholly.
        let parts: Vec<_> =
            (0..50).map(|i| (0, key(&format!("s{}", i % 20), &format!("p{i}")), part(1.0))).collect();
        block_on(s.add(1_000, parts)).expect("add");
        let st = s.stats();
        assert!(st.aggregates <= 8 + 2 + 3, "{st:?}");
        assert!(st.keys_folded >= 40, "{st:?}");
        let q =
            Query { from_ms: 0, to_ms: 10, step_ms: 10, filter: KeyFilter::default(), by: Dims::default() };
        let total: f64 = block_on(s.query(&q))
            .expect("query")
            .values()
            .flat_map(|m| m.values())
            .map(|a| a.http_bytes)
            .sum();
        assert_eq!(total, 50.0, "folding loses no bytes");
        // Many windows: the aggregate cap evicts the oldest windows; retention drops old ones.
        for w in 1..30u64 {
            let parts = (0..5).map(|i| (w * 1000, key("a", &format!("p{i}")), part(1.0))).collect();
            block_on(s.add(w * 1000, parts)).expect("add");
            block_on(s.prune(w * 1000));
            assert!(s.stats().aggregates <= 40, "{:?}", s.stats());
        }
        assert!(s.stats().windows_evicted > 0);
        block_on(s.prune(1_000_000));
        assert_eq!(s.stats().windows, 0);
        block_on(s.add(1_000_000, vec![(0, key("a", "web"), part(1.0))])).expect("add");
        assert_eq!(s.stats().parts_too_old, 1);
    }

    #[test]
    fn ledger_counts_each_seq_once() {
        let l = MemoryLedger::new(60_000, 3);
        let c = |seq, now_ms, session_id| ClaimRequest {
            session_id,
            seq,
            period_ms: 10_000,
            has_startup: true,
            now_ms,
        };
        assert_eq!(block_on(l.claim(c(1, 10_000, "a"))).expect("claim"), Claim::New { startup: true });
        assert_eq!(block_on(l.claim(c(1, 10_500, "a"))).expect("claim"), Claim::Duplicate);
        assert_eq!(block_on(l.claim(c(3, 30_000, "a"))).expect("claim"), Claim::New { startup: false });
        assert_eq!(
            block_on(l.claim(c(2, 30_100, "a"))).expect("claim"),
            Claim::New { startup: false },
            "late, not seen"
        );
        assert_eq!(block_on(l.claim(c(2, 30_200, "a"))).expect("claim"), Claim::Duplicate);
        assert_eq!(block_on(l.claim(c(100, 40_000, "a"))).expect("claim"), Claim::New { startup: false });
        assert_eq!(block_on(l.claim(c(3, 40_000, "a"))).expect("claim"), Claim::Duplicate, "too old to tell");
        // Capacity: a, b, c live; d is refused until they expire.
        block_on(l.claim(c(1, 40_000, "b"))).expect("claim");
        block_on(l.claim(c(1, 40_000, "c"))).expect("claim");
        assert_eq!(block_on(l.claim(c(1, 40_000, "d"))).expect("claim"), Claim::Overloaded);
        assert_eq!(block_on(l.claim(c(1, 200_000, "d"))).expect("claim"), Claim::New { startup: true });
        assert_eq!(l.sessions(), 1, "the silent ones were swept");
    }

    #[test]
    fn ledger_refuses_more_time_than_has_passed() {
        let l = MemoryLedger::new(600_000, 10);
        let c = |seq, now_ms| ClaimRequest {
            session_id: "x",
            seq,
            period_ms: MAX_PERIOD_MS,
            has_startup: false,
            now_ms,
        };
        assert_eq!(block_on(l.claim(c(1, 0))).expect("claim"), Claim::New { startup: false });
        assert_eq!(block_on(l.claim(c(2, 1_000))).expect("claim"), Claim::Implausible);
        assert_eq!(block_on(l.claim(c(2, MAX_PERIOD_MS))).expect("claim"), Claim::New { startup: false });
        // The refused claim did not mark seq 2 as seen before; it is counted once now.
        assert_eq!(block_on(l.claim(c(2, MAX_PERIOD_MS))).expect("claim"), Claim::Duplicate);
    }
}
