//! The tracker backplane: one swarm's members spread over several tracker nodes (failover,
//! a returning node, overflow past a node's connection limit) still form one swarm.
//!
//! Each node subscribes to the pub/sub channel of every swarm it has members of
//! (`{p}:sw:{stream}:{rendition}`) and to its own (`{p}:to:{node}`). On a swarm channel:
//!
//! - `hello` (a node starts serving the swarm, or reconnected to Redis): every other node of
//!   the swarm answers with a `snap`shot of its local members;
//! - `ann` (a member announced on a node): the others mirror it
//!   ([`shoal_tracker::Tracker::remote_upsert`]), so their ranking sees the whole swarm;
//! - `left` (a member left its node), `bye` (a node stopped serving the swarm).
//!
//! A node publishes `ann`/`left` only while it knows another node serves the swarm, so a
//! swarm on one node costs Redis nothing per announce. Mirrored members expire like local
//! ones (the peer timeout) and are dropped at once when their node leaves the registry. A
//! `signal` to a mirrored member is published on its node's channel and delivered there to the
//! member's WebSocket.
//!
//! Nothing here blocks the tracker: the [`Relay`] calls only queue (bounded, dropped and
//! counted when full), one task publishes in pipelined batches, and while Redis is down the
//! queue is drained and dropped — every node keeps serving its own members.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_proto::tracker::{valid_locality, Nat, SwarmId};
use shoal_tracker::{PeerInfo, Relay, Tracker};
use tokio::sync::{mpsc, watch};

use crate::keys::Keys;
use crate::link::{Handler, Link};
use crate::now_ms;
use crate::registry::{NodeEvent, Registry};

/// Members per snapshot message.
const SNAP_CHUNK: usize = 200;
/// Most members answered in snapshots for one swarm (the tracker's own cap per swarm).
const MAX_SNAP: usize = 20_000;
/// Messages per pipelined batch.
const BATCH: usize = 256;

/// A member's announce as mirrored across nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Info {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    l: String,
    #[serde(default)]
    nat: Nat,
    #[serde(default)]
    s: u64,
    #[serde(default)]
    b: u32,
    #[serde(default)]
    u: u32,
    #[serde(default)]
    c: u32,
}

impl Info {
    fn of(i: &PeerInfo) -> Info {
        Info {
            l: i.locality.to_string(),
            nat: i.nat,
            s: i.seq,
            b: i.buffer_ms,
            u: i.upload_kbps,
            c: i.connections,
        }
    }

    fn to_peer(&self) -> Option<PeerInfo> {
        if !self.l.is_empty() && !valid_locality(&self.l) {
            return None;
        }
        Some(PeerInfo {
            locality: Arc::from(self.l.as_str()),
            nat: self.nat,
            seq: self.s,
            buffer_ms: self.b,
            upload_kbps: self.u,
            connections: self.c,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum SwarmMsg {
    Hello { n: String },
    Ann { n: String, p: String, i: Info },
    Snap { n: String, m: Vec<(String, Info)> },
    Left { n: String, p: String },
    Bye { n: String },
}

impl SwarmMsg {
    fn node(&self) -> &str {
        match self {
            SwarmMsg::Hello { n }
            | SwarmMsg::Ann { n, .. }
            | SwarmMsg::Snap { n, .. }
            | SwarmMsg::Left { n, .. }
            | SwarmMsg::Bye { n } => n,
        }
    }
}

/// A signal frame for a member of the receiving node.
#[derive(Debug, Serialize, Deserialize)]
struct Sig {
    s: String,
    r: String,
    to: String,
    f: String,
}

enum Out {
    Publish(String, Vec<u8>),
    Subscribe(SwarmId),
    Unsubscribe(SwarmId),
}

#[derive(Default)]
struct SwarmState {
    /// Other nodes serving this swarm, and when we last heard from each.
    others: HashMap<String, u64>,
    since_ms: u64,
}

/// Counters of the backplane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackplaneStats {
    pub swarms: u64,
    pub spread_swarms: u64,
    pub published: u64,
    /// Dropped because the queue was full or Redis was down.
    pub dropped: u64,
    pub received: u64,
    pub mirrored: u64,
    pub signals_out: u64,
    pub signals_in: u64,
    /// Relayed signals whose target was no longer connected here.
    pub signals_undelivered: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    mirrored: AtomicU64,
    signals_out: AtomicU64,
    signals_in: AtomicU64,
    signals_undelivered: AtomicU64,
}

struct Inner {
    node: String,
    keys: Keys,
    link: Link,
    tracker: OnceLock<Tracker>,
    out: mpsc::Sender<Out>,
    swarms: Mutex<HashMap<SwarmId, SwarmState>>,
    /// Live tracker nodes (from the registry).
    live: RwLock<HashSet<String>>,
    /// How long a silent node still counts as serving a swarm.
    peer_timeout_ms: u64,
    /// This node's tracker URL and the assignment TTL (see [`Backplane::claim_assignments`]).
    claim: OnceLock<(String, u64)>,
    /// The stored assignment (raw JSON list) of each stream with members here, as last read.
    assigned: Mutex<HashMap<String, String>>,
    c: Counters,
}

/// The tracker's [`Relay`] over Redis. Build it, give it to `Tracker::with_relay`, then
/// [`Backplane::attach`] the tracker.
#[derive(Clone)]
pub struct Backplane(Arc<Inner>);

impl Backplane {
    /// `publish_queue`: most messages waiting to be published. Needs a tokio runtime; tasks
    /// end when `stop` turns true.
    pub fn new(
        node: String,
        keys: Keys,
        link: Link,
        peer_timeout: Duration,
        publish_queue: usize,
        stop: watch::Receiver<bool>,
    ) -> (Backplane, BackplaneTasks) {
        let (out, rx) = mpsc::channel(publish_queue);
        let bp = Backplane(Arc::new(Inner {
            node,
            keys,
            link,
            tracker: OnceLock::new(),
            out,
            swarms: Mutex::new(HashMap::new()),
            live: RwLock::new(HashSet::new()),
            peer_timeout_ms: peer_timeout.as_millis() as u64,
            claim: OnceLock::new(),
            assigned: Mutex::new(HashMap::new()),
            c: Counters::default(),
        }));
        (bp.clone(), BackplaneTasks { bp, rx, stop })
    }

    pub fn node(&self) -> &str {
        &self.0.node
    }

    /// The tracker whose members this backplane mirrors (once).
    pub fn attach(&self, tracker: Tracker) {
        let _ = self.0.tracker.set(tracker);
    }

    /// After every reconnection to Redis, restore the tracker assignment of each stream with
    /// members here (`SET NX`: an assignment Redis still holds wins): the list last read from
    /// Redis (re-read every few seconds), else this node alone. A restarted Redis forgot every
    /// assignment; without this the next join would rank afresh and could send new viewers to
    /// another node than the one the swarm's viewers are on, and order the standbys unlike the
    /// lists those viewers hold.
    pub fn claim_assignments(&self, tracker_url: String, assignment_ttl: Duration) {
        let _ = self.0.claim.set((tracker_url, assignment_ttl.as_millis() as u64));
    }

    /// Follow the registry: live tracker nodes, and members of nodes that left dropped at once.
    pub fn follow(&self, registry: &Registry) {
        let this = self.clone();
        registry.on_event(Arc::new(move |e| {
            if let NodeEvent::Left { id, .. } = e {
                this.node_left(id);
            }
        }));
        let this = self.clone();
        let reg = registry.clone();
        let mut w = registry.watch();
        tokio::spawn(async move {
            loop {
                let ids: HashSet<String> = reg.view().with_role("tracker").map(|n| n.id.clone()).collect();
                *this.0.live.write().unwrap_or_else(|p| p.into_inner()) = ids;
                if w.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    pub fn stats(&self) -> BackplaneStats {
        let (swarms, spread) = {
            let s = self.0.swarms.lock().unwrap_or_else(|p| p.into_inner());
            (s.len() as u64, s.values().filter(|v| !v.others.is_empty()).count() as u64)
        };
        let c = &self.0.c;
        BackplaneStats {
            swarms,
            spread_swarms: spread,
            published: c.published.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            received: c.received.load(Relaxed),
            mirrored: c.mirrored.load(Relaxed),
            signals_out: c.signals_out.load(Relaxed),
            signals_in: c.signals_in.load(Relaxed),
            signals_undelivered: c.signals_undelivered.load(Relaxed),
        }
    }

    /// Other nodes known to serve `swarm`.
    pub fn others(&self, swarm: &SwarmId) -> Vec<String> {
        let s = self.0.swarms.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> =
            s.get(swarm).map(|st| st.others.keys().cloned().collect()).unwrap_or_default();
        v.sort();
        v
    }

    fn node_left(&self, id: &str) {
        {
            let mut s = self.0.swarms.lock().unwrap_or_else(|p| p.into_inner());
            for st in s.values_mut() {
                st.others.remove(id);
            }
        }
        self.0.live.write().unwrap_or_else(|p| p.into_inner()).remove(id);
        if let Some(t) = self.0.tracker.get() {
            let n = t.remote_drop(Some(id), None);
            if n > 0 {
                tracing::info!(node = %id, members = n, "cluster: dropped the members of a node that left");
            }
        }
    }

    fn queue(&self, o: Out) -> bool {
        match self.0.out.try_send(o) {
            Ok(()) => true,
            Err(_) => {
                self.0.c.dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }

    fn publish(&self, channel: String, msg: &impl Serialize) -> bool {
        let bytes = serde_json::to_vec(msg).expect("backplane messages are plain data");
        self.queue(Out::Publish(channel, bytes))
    }

    fn snapshot(&self, swarm: &SwarmId) {
        let Some(t) = self.0.tracker.get() else { return };
        let members = t.local_members(swarm);
        let channel = self.0.keys.swarm_channel(swarm);
        for chunk in members.chunks(SNAP_CHUNK).take(MAX_SNAP / SNAP_CHUNK) {
            let m = chunk.iter().map(|(p, i)| (p.clone(), Info::of(i))).collect();
            self.publish(channel.clone(), &SwarmMsg::Snap { n: self.0.node.clone(), m });
        }
    }

    fn on_swarm_message(&self, channel: &str, payload: &[u8]) {
        let Some(swarm) = self.0.keys.swarm_of_channel(channel) else { return };
        let Ok(msg) = serde_json::from_slice::<SwarmMsg>(payload) else {
            tracing::debug!(%channel, "unreadable backplane message ignored");
            return;
        };
        let from = msg.node().to_owned();
        if from == self.0.node || !shoal_proto::ids::valid_name(&from) {
            return;
        }
        self.0.c.received.fetch_add(1, Relaxed);
        let now = now_ms();
        {
            let mut s = self.0.swarms.lock().unwrap_or_else(|p| p.into_inner());
            // Only swarms served here (a late message after we stopped is ignored).
            let Some(st) = s.get_mut(&swarm) else { return };
            match &msg {
                SwarmMsg::Bye { .. } => {
                    st.others.remove(&from);
                }
                _ => {
                    st.others.insert(from.clone(), now);
                }
            }
        }
        let Some(t) = self.0.tracker.get() else { return };
        match msg {
            SwarmMsg::Hello { .. } => self.snapshot(&swarm),
            SwarmMsg::Ann { p, i, .. } => {
                if let Some(info) = i.to_peer() {
                    if t.remote_upsert(&swarm, &p, &from, info) {
                        self.0.c.mirrored.fetch_add(1, Relaxed);
                    }
                }
            }
            SwarmMsg::Snap { m, .. } => {
                for (p, i) in m.into_iter().take(SNAP_CHUNK) {
                    if let Some(info) = i.to_peer() {
                        if t.remote_upsert(&swarm, &p, &from, info) {
                            self.0.c.mirrored.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
            SwarmMsg::Left { p, .. } => {
                t.remote_remove(&swarm, &p, &from);
            }
            SwarmMsg::Bye { .. } => {
                t.remote_drop(Some(&from), Some(&swarm));
            }
        }
    }

    fn on_node_message(&self, payload: &[u8]) {
        let Ok(sig) = serde_json::from_slice::<Sig>(payload) else { return };
        self.0.c.signals_in.fetch_add(1, Relaxed);
        let swarm = SwarmId::new(sig.s, sig.r);
        let Some(t) = self.0.tracker.get() else { return };
        if !swarm.is_valid() || !t.deliver_signal(&swarm, &sig.to, &sig.f) {
            self.0.c.signals_undelivered.fetch_add(1, Relaxed);
        }
    }

    fn handler(&self, node_channel: bool) -> Handler {
        let this = self.clone();
        if node_channel {
            Arc::new(move |_, payload| this.on_node_message(payload))
        } else {
            Arc::new(move |channel, payload| this.on_swarm_message(channel, payload))
        }
    }
}

impl Relay for Backplane {
    fn forward_signal(&self, _swarm: &SwarmId, _to: &str, _frame: &str) -> bool {
        // A target unknown here is unknown: every member of another node we could reach was
        // mirrored into the swarm (forward_to).
        false
    }

    fn forward_to(&self, node: &str, swarm: &SwarmId, to: &str, frame: &str) -> bool {
        if !self.0.live.read().unwrap_or_else(|p| p.into_inner()).contains(node) {
            return false;
        }
        let sig = Sig {
            s: swarm.stream.clone(),
            r: swarm.rendition.clone(),
            to: to.to_owned(),
            f: frame.to_owned(),
        };
        let ok = self.publish(self.0.keys.node_channel(node), &sig);
        if ok {
            self.0.c.signals_out.fetch_add(1, Relaxed);
        }
        ok
    }

    fn member_announced(&self, swarm: &SwarmId, peer_id: &str, info: &PeerInfo) {
        let spread = {
            let mut s = self.0.swarms.lock().unwrap_or_else(|p| p.into_inner());
            match s.get(swarm) {
                Some(st) => !st.others.is_empty(),
                None => {
                    s.insert(swarm.clone(), SwarmState { others: HashMap::new(), since_ms: now_ms() });
                    drop(s);
                    self.queue(Out::Subscribe(swarm.clone()));
                    false
                }
            }
        };
        if spread {
            let msg = SwarmMsg::Ann { n: self.0.node.clone(), p: peer_id.to_owned(), i: Info::of(info) };
            self.publish(self.0.keys.swarm_channel(swarm), &msg);
        }
    }

    fn member_left(&self, swarm: &SwarmId, peer_id: &str) {
        let spread = {
            let s = self.0.swarms.lock().unwrap_or_else(|p| p.into_inner());
            s.get(swarm).is_some_and(|st| !st.others.is_empty())
        };
        if spread {
            let msg = SwarmMsg::Left { n: self.0.node.clone(), p: peer_id.to_owned() };
            self.publish(self.0.keys.swarm_channel(swarm), &msg);
        }
    }
}

/// The backplane's background work; [`BackplaneTasks::spawn`] it once.
pub struct BackplaneTasks {
    bp: Backplane,
    rx: mpsc::Receiver<Out>,
    stop: watch::Receiver<bool>,
}

impl BackplaneTasks {
    pub fn spawn(self) {
        let BackplaneTasks { bp, rx, stop } = self;
        tokio::spawn(publisher(bp.clone(), rx, stop.clone()));
        tokio::spawn(maintain(bp, stop));
    }
}

async fn publisher(bp: Backplane, mut rx: mpsc::Receiver<Out>, mut stop: watch::Receiver<bool>) {
    let link = bp.0.link.clone();
    link.subscribe(bp.0.keys.node_channel(&bp.0.node), bp.handler(true)).await;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            o = rx.recv() => o,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        let mut n = 0u64;
        for o in batch.drain(..) {
            match o {
                Out::Publish(channel, bytes) => {
                    pipe.cmd("PUBLISH").arg(channel).arg(bytes).ignore();
                    n += 1;
                }
                Out::Subscribe(swarm) => {
                    flush(&bp, &link, &mut pipe, &mut n).await;
                    // Registered even while Redis is down: subscribed at the next reconnection.
                    link.subscribe(bp.0.keys.swarm_channel(&swarm), bp.handler(false)).await;
                    let hello = SwarmMsg::Hello { n: bp.0.node.clone() };
                    let bytes = serde_json::to_vec(&hello).expect("plain data");
                    pipe.cmd("PUBLISH").arg(bp.0.keys.swarm_channel(&swarm)).arg(bytes).ignore();
                    n += 1;
                }
                Out::Unsubscribe(swarm) => {
                    flush(&bp, &link, &mut pipe, &mut n).await;
                    link.unsubscribe(&bp.0.keys.swarm_channel(&swarm)).await;
                }
            }
        }
        flush(&bp, &link, &mut pipe, &mut n).await;
    }
    link.unsubscribe(&bp.0.keys.node_channel(&bp.0.node)).await;
}

async fn flush(bp: &Backplane, link: &Link, pipe: &mut redis::Pipeline, n: &mut u64) {
    if *n == 0 {
        return;
    }
    match link.pipe::<()>(pipe).await {
        Ok(()) => {
            bp.0.c.published.fetch_add(*n, Relaxed);
        }
        Err(_) => {
            bp.0.c.dropped.fetch_add(*n, Relaxed);
        }
    }
    *pipe = redis::pipe();
    *n = 0;
}

/// Every second: stop serving swarms with no local member left, forget silent nodes; after
/// every reconnection to Redis: say hello again on every swarm (a restarted Redis forgot who
/// serves what; the answers rebuild it).
async fn maintain(bp: Backplane, mut stop: watch::Receiver<bool>) {
    let mut generation = bp.0.link.generation();
    let mut ticks: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hello = tokio::select! {
            _ = tick.tick() => false,
            r = generation.changed() => r.is_ok(),
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(t) = bp.0.tracker.get() else { continue };
        let now = now_ms();
        let mut idle = Vec::new();
        let mut all = Vec::new();
        {
            let mut s = bp.0.swarms.lock().unwrap_or_else(|p| p.into_inner());
            for (id, st) in s.iter_mut() {
                st.others.retain(|_, heard| now.saturating_sub(*heard) <= bp.0.peer_timeout_ms);
                if now.saturating_sub(st.since_ms) >= 2_000 {
                    all.push(id.clone());
                }
            }
        }
        // Lock order: the tracker calls the relay with a shard lock held, so the tracker is
        // never asked anything while `swarms` is locked.
        let empty: Vec<SwarmId> = all.iter().filter(|id| t.member_counts(id).0 == 0).cloned().collect();
        {
            let mut s = bp.0.swarms.lock().unwrap_or_else(|p| p.into_inner());
            for id in empty {
                if let Some(st) = s.remove(&id) {
                    idle.push((id, !st.others.is_empty()));
                }
            }
        }
        for (id, spread) in idle {
            if spread {
                bp.publish(bp.0.keys.swarm_channel(&id), &SwarmMsg::Bye { n: bp.0.node.clone() });
            }
            bp.queue(Out::Unsubscribe(id.clone()));
            t.remote_drop(None, Some(&id));
        }
        ticks += 1;
        if bp.0.claim.get().is_none() || !(hello || ticks.is_multiple_of(ASSIGN_READ_TICKS)) {
            if hello {
                say_hello(&bp);
            }
            continue;
        }
        let ids: Vec<SwarmId> =
            bp.0.swarms.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        let mut seen = HashSet::new();
        let mut streams: Vec<String> = Vec::new();
        for id in &ids {
            if streams.len() < MAX_ASSIGN_STREAMS && t.member_counts(id).0 > 0 && seen.insert(&id.stream) {
                streams.push(id.stream.clone());
            }
        }
        if hello {
            say_hello(&bp);
            restore_assignments(&bp, &streams).await;
        } else {
            remember_assignments(&bp, streams).await;
        }
    }
}

/// Re-read the stored assignments every this many maintenance ticks (seconds).
const ASSIGN_READ_TICKS: u64 = 5;
/// Most streams whose assignment one node remembers and restores.
const MAX_ASSIGN_STREAMS: usize = 10_000;

fn say_hello(bp: &Backplane) {
    let ids: Vec<SwarmId> = bp.0.swarms.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
    for id in ids {
        bp.publish(bp.0.keys.swarm_channel(&id), &SwarmMsg::Hello { n: bp.0.node.clone() });
    }
}

async fn remember_assignments(bp: &Backplane, streams: Vec<String>) {
    if streams.is_empty() {
        bp.0.assigned.lock().unwrap_or_else(|p| p.into_inner()).clear();
        return;
    }
    let mut p = redis::pipe();
    for s in &streams {
        p.cmd("GET").arg(bp.0.keys.assign(s));
    }
    let Ok(got) = bp.0.link.pipe::<Vec<Option<String>>>(&p).await else { return };
    let mut a = bp.0.assigned.lock().unwrap_or_else(|p| p.into_inner());
    a.clear();
    for (s, v) in streams.into_iter().zip(got) {
        // Only what the directory could have written (a JSON list of URLs, bounded).
        if let Some(v) = v.filter(|v| v.len() <= 8 * 1024 && serde_json::from_str::<Vec<String>>(v).is_ok()) {
            a.insert(s, v);
        }
    }
}

async fn restore_assignments(bp: &Backplane, streams: &[String]) {
    let Some((url, ttl)) = bp.0.claim.get() else { return };
    if streams.is_empty() {
        return;
    }
    let alone = serde_json::to_string(&[url]).expect("a list of strings serializes");
    let mut p = redis::pipe();
    {
        let a = bp.0.assigned.lock().unwrap_or_else(|p| p.into_inner());
        for s in streams {
            let list = a.get(s).unwrap_or(&alone);
            p.cmd("SET").arg(bp.0.keys.assign(s)).arg(list).arg("NX").arg("PX").arg(*ttl).ignore();
        }
    }
    match bp.0.link.pipe::<()>(&p).await {
        Ok(()) => tracing::info!(
            streams = streams.len(),
            "cluster: restored the assignment of the streams served here"
        ),
        Err(e) => tracing::debug!("cluster: restoring assignments: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_compact_and_checked() {
        let m = SwarmMsg::Ann {
            n: "n1".into(),
            p: "p1".into(),
            i: Info { l: "isp-a".into(), nat: Nat::Eim, s: 5, b: 0, u: 3000, c: 2 },
        };
        let s = serde_json::to_string(&m).expect("json");
        assert_eq!(
            s,
            r#"{"t":"ann","n":"n1","p":"p1","i":{"l":"isp-a","nat":"eim","s":5,"b":0,"u":3000,"c":2}}"#
        );
        let back: SwarmMsg = serde_json::from_str(&s).expect("parse");
        assert_eq!(back.node(), "n1");
        let bad = Info { l: "BAD LABEL".into(), nat: Nat::Open, s: 0, b: 0, u: 0, c: 0 };
        assert!(bad.to_peer().is_none());
        assert!(serde_json::from_str::<SwarmMsg>(r#"{"t":"nope","n":"x"}"#).is_err());
    }
}
