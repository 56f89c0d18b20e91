//! One swarm's members, bucketed by locality, and neighbour selection over a bounded sample.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::peer::PeerInfo;
use crate::rng::SplitMix64;
use crate::score::{score_with_load, SelectionConfig};

/// Departures remembered per swarm (for telling "left just now" from "never was here").
const MAX_DEPARTED: usize = 1024;

/// The swarm is at its member limit; the newcomer was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwarmFull;

/// A member chosen by [`Swarm::select`], best first.
#[derive(Debug)]
pub struct Selected<'a, T> {
    pub peer_id: &'a str,
    pub info: &'a PeerInfo,
    pub route: &'a T,
    pub score: u32,
}

struct Member<T> {
    id: Box<str>,
    info: PeerInfo,
    last_seen_ms: u64,
    /// Times returned as a candidate since the member's own last announce: connections it
    /// will probably have but has not reported yet. Spreads a flash crowd over many uploaders.
    proposed: u32,
    /// Position of this member's index inside its locality bucket.
    bucket_slot: u32,
    route: T,
}

impl<T> Member<T> {
    fn load(&self) -> u32 {
        self.info.connections.saturating_add(self.proposed / 2)
    }
}

/// The members of one swarm. `T` is whatever the caller needs to reach a member (the tracker
/// keeps the connection's outbound queue there, the simulator a node index).
///
/// Costs: upsert, touch and remove are O(1); [`Swarm::select`] scores at most
/// `sample_size` members whatever the swarm size; [`Swarm::expire`] is O(members) and meant to
/// run once per sweep period, not per announce.
pub struct Swarm<T> {
    members: Vec<Member<T>>,
    index: HashMap<Box<str>, u32>,
    /// Locality label → indices into `members`.
    buckets: HashMap<Arc<str>, Vec<u32>>,
    departed: VecDeque<(Box<str>, u64)>,
    rng: SplitMix64,
    max_members: usize,
}

impl<T> Swarm<T> {
    /// `seed` makes selection deterministic (tie-breaks and sampling).
    pub fn new(max_members: usize, seed: u64) -> Self {
        Self {
            members: Vec::new(),
            index: HashMap::new(),
            buckets: HashMap::new(),
            departed: VecDeque::new(),
            rng: SplitMix64::new(seed),
            max_members,
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, peer_id: &str) -> bool {
        self.index.contains_key(peer_id)
    }

    pub fn get(&self, peer_id: &str) -> Option<(&PeerInfo, &T)> {
        let m = &self.members[*self.index.get(peer_id)? as usize];
        Some((&m.info, &m.route))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &PeerInfo, &T)> {
        self.members.iter().map(|m| (&*m.id, &m.info, &m.route))
    }

    /// Insert or refresh a member (an announce). Returns the route the member had before, if
    /// it was already a member. A refresh resets the member's proposal count: its announce
    /// reports its real connections.
    pub fn upsert(
        &mut self,
        peer_id: &str,
        info: PeerInfo,
        route: T,
        now_ms: u64,
    ) -> Result<Option<T>, SwarmFull> {
        if let Some(&pos) = self.index.get(peer_id) {
            let pos = pos as usize;
            if self.members[pos].info.locality != info.locality {
                self.unlink_bucket(pos);
                self.members[pos].info.locality = info.locality.clone();
                self.link_bucket(pos);
            }
            let m = &mut self.members[pos];
            m.info = info;
            m.last_seen_ms = now_ms;
            m.proposed = 0;
            return Ok(Some(std::mem::replace(&mut m.route, route)));
        }
        if self.members.len() >= self.max_members {
            return Err(SwarmFull);
        }
        let pos = self.members.len();
        self.members.push(Member {
            id: peer_id.into(),
            info,
            last_seen_ms: now_ms,
            proposed: 0,
            bucket_slot: 0,
            route,
        });
        self.index.insert(peer_id.into(), pos as u32);
        self.link_bucket(pos);
        Ok(None)
    }

    /// Heartbeat without new information. Returns whether `peer_id` is a member.
    pub fn touch(&mut self, peer_id: &str, now_ms: u64) -> bool {
        match self.index.get(peer_id) {
            Some(&pos) => {
                self.members[pos as usize].last_seen_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// Remove a member and remember its departure. Returns its route.
    pub fn remove(&mut self, peer_id: &str, now_ms: u64) -> Option<T> {
        self.remove_if(peer_id, now_ms, |_| true)
    }

    /// Remove `peer_id` only if `keep_route` approves its current route (a connection removes
    /// its membership only while the membership is still its own).
    pub fn remove_if(&mut self, peer_id: &str, now_ms: u64, approve: impl FnOnce(&T) -> bool) -> Option<T> {
        let pos = *self.index.get(peer_id)? as usize;
        if !approve(&self.members[pos].route) {
            return None;
        }
        let m = self.remove_at(pos);
        self.note_departure(m.id, now_ms);
        Some(m.route)
    }

    /// Whether `peer_id` left (or expired) within the last `grace_ms`.
    pub fn recently_departed(&self, peer_id: &str, now_ms: u64, grace_ms: u64) -> bool {
        self.departed
            .iter()
            .rev()
            .take_while(|(_, at)| now_ms.saturating_sub(*at) <= grace_ms)
            .any(|(id, _)| &**id == peer_id)
    }

    /// Remove members not seen for more than `ttl_ms`; their ids and routes go to `removed`.
    pub fn expire(&mut self, now_ms: u64, ttl_ms: u64, removed: &mut Vec<(Box<str>, T)>) {
        let mut i = 0;
        while i < self.members.len() {
            if now_ms.saturating_sub(self.members[i].last_seen_ms) > ttl_ms {
                let m = self.remove_at(i);
                self.note_departure(m.id.clone(), now_ms);
                removed.push((m.id, m.route));
            } else {
                i += 1;
            }
        }
    }

    /// Up to `want` members for `asker`, best first: never the asker itself, nobody in
    /// `exclude` (sorted, as from [`sort_exclude`]), and no pair the score function refuses.
    /// Members returned count as proposed until their next announce.
    pub fn select(
        &mut self,
        cfg: &SelectionConfig,
        asker_id: &str,
        asker: &PeerInfo,
        exclude: &[&str],
        want: usize,
    ) -> Vec<Selected<'_, T>> {
        if want == 0 || self.members.is_empty() {
            return Vec::new();
        }
        let sample = self.sample(cfg.sample_size.max(want), &asker.locality);
        let mut scored: Vec<(u32, u32, u32)> = Vec::with_capacity(sample.len());
        for idx in sample {
            let m = &self.members[idx as usize];
            if &*m.id == asker_id || exclude.binary_search(&&*m.id).is_ok() {
                continue;
            }
            if let Some(s) = score_with_load(cfg, asker, &m.info, m.load()) {
                // Random tie-break so equal candidates share the load.
                scored.push((s, self.rng.next_u64() as u32, idx));
            }
        }
        let by_best = |a: &(u32, u32, u32), b: &(u32, u32, u32)| b.0.cmp(&a.0).then(b.1.cmp(&a.1));
        if scored.len() > want {
            scored.select_nth_unstable_by(want - 1, by_best);
            scored.truncate(want);
        }
        scored.sort_unstable_by(by_best);
        for &(_, _, idx) in &scored {
            let m = &mut self.members[idx as usize];
            m.proposed = m.proposed.saturating_add(1);
        }
        scored
            .into_iter()
            .map(|(score, _, idx)| {
                let m = &self.members[idx as usize];
                Selected { peer_id: &m.id, info: &m.info, route: &m.route, score }
            })
            .collect()
    }

    /// Member indices to score: everyone in a small swarm; otherwise up to `n` drawn at
    /// random, half from the asker's locality bucket when it has one.
    fn sample(&mut self, n: usize, locality: &Arc<str>) -> Vec<u32> {
        let total = self.members.len();
        if total <= n {
            return (0..total as u32).collect();
        }
        let mut picks = Vec::with_capacity(n);
        if !locality.is_empty() {
            if let Some(bucket) = self.buckets.get(locality) {
                let k = n / 2;
                if bucket.len() <= k {
                    picks.extend_from_slice(bucket);
                } else {
                    for _ in 0..k {
                        picks.push(bucket[self.rng.below(bucket.len())]);
                    }
                }
            }
        }
        while picks.len() < n {
            picks.push(self.rng.below(total) as u32);
        }
        picks.sort_unstable();
        picks.dedup();
        picks
    }

    fn note_departure(&mut self, id: Box<str>, now_ms: u64) {
        if self.departed.len() >= MAX_DEPARTED {
            self.departed.pop_front();
        }
        self.departed.push_back((id, now_ms));
    }

    fn link_bucket(&mut self, pos: usize) {
        let bucket = self.buckets.entry(self.members[pos].info.locality.clone()).or_default();
        self.members[pos].bucket_slot = bucket.len() as u32;
        bucket.push(pos as u32);
    }

    fn unlink_bucket(&mut self, pos: usize) {
        let m = &self.members[pos];
        let slot = m.bucket_slot as usize;
        let Some(bucket) = self.buckets.get_mut(&m.info.locality) else {
            debug_assert!(false, "every member is in its locality bucket");
            return;
        };
        bucket.swap_remove(slot);
        if let Some(&moved) = bucket.get(slot) {
            self.members[moved as usize].bucket_slot = slot as u32;
        } else if bucket.is_empty() {
            let key = m.info.locality.clone();
            self.buckets.remove(&key);
        }
    }

    fn remove_at(&mut self, pos: usize) -> Member<T> {
        self.unlink_bucket(pos);
        let m = self.members.swap_remove(pos);
        self.index.remove(&m.id);
        if let Some(moved) = self.members.get(pos) {
            // The former last member now lives at `pos`: repoint its index and bucket entry.
            if let Some(i) = self.index.get_mut(&moved.id) {
                *i = pos as u32;
            }
            if let Some(bucket) = self.buckets.get_mut(&moved.info.locality) {
                bucket[moved.bucket_slot as usize] = pos as u32;
            }
        }
        m
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        assert_eq!(self.index.len(), self.members.len());
        let bucketed: usize = self.buckets.values().map(Vec::len).sum();
        assert_eq!(bucketed, self.members.len());
        for (i, m) in self.members.iter().enumerate() {
            assert_eq!(self.index.get(&m.id).copied(), Some(i as u32), "index of {}", m.id);
            let b = &self.buckets[&m.info.locality];
            assert_eq!(b[m.bucket_slot as usize], i as u32, "bucket entry of {}", m.id);
        }
        assert!(self.buckets.values().all(|b| !b.is_empty()));
    }
}

/// Sort and dedup an exclusion list for [`Swarm::select`].
pub fn sort_exclude<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = ids.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::tracker::Nat;

    fn info(locality: &str, seq: u64) -> PeerInfo {
        PeerInfo {
            locality: Arc::from(locality),
            nat: Nat::Eim,
            seq,
            buffer_ms: 0,
            upload_kbps: 2_000,
            connections: 0,
        }
    }

    #[test]
    fn membership_survives_churn() {
        let mut s: Swarm<u32> = Swarm::new(10_000, 1);
        let mut rng = SplitMix64::new(9);
        let localities = ["", "a", "b", "c"];
        for step in 0..20_000u64 {
            let id = format!("p{}", rng.below(500));
            match rng.below(4) {
                0 => {
                    s.remove(&id, step);
                }
                _ => {
                    let loc = localities[rng.below(localities.len())];
                    s.upsert(&id, info(loc, step), 0, step).expect("below the cap");
                }
            }
            if step % 997 == 0 {
                s.check_invariants();
            }
        }
        s.check_invariants();
        let mut removed = Vec::new();
        s.expire(u64::MAX, 0, &mut removed);
        assert!(s.is_empty());
        assert!(s.buckets.is_empty(), "no empty buckets left behind");
        assert!(!removed.is_empty());
    }

    #[test]
    fn select_ranks_and_excludes() {
        let cfg = SelectionConfig::default();
        let mut s: Swarm<()> = Swarm::new(100, 1);
        s.upsert("far", info("b", 100), (), 0).expect("room");
        s.upsert("near", info("a", 100), (), 0).expect("room");
        s.upsert("connected", info("a", 100), (), 0).expect("room");
        s.upsert("me", info("a", 100), (), 0).expect("room");
        let me = info("a", 100);
        let exclude = sort_exclude(["connected"]);
        let got: Vec<&str> = s.select(&cfg, "me", &me, &exclude, 8).iter().map(|c| c.peer_id).collect();
        assert_eq!(got, ["near", "far"]);
        let one: Vec<&str> = s.select(&cfg, "me", &me, &exclude, 1).iter().map(|c| c.peer_id).collect();
        assert_eq!(one, ["near"]);
    }

    #[test]
    fn proposals_spread_a_flash_crowd() {
        let cfg = SelectionConfig { max_degree: 4, ..SelectionConfig::default() };
        let mut s: Swarm<()> = Swarm::new(100, 1);
        s.upsert("best", PeerInfo { upload_kbps: 50_000, ..info("a", 1) }, (), 0).expect("room");
        for i in 0..5 {
            // Weak uploaders: `best` outscores them until the degree cap excludes it.
            s.upsert(&format!("u{i}"), PeerInfo { upload_kbps: 400, ..info("a", 1) }, (), 0).expect("room");
        }
        let me = info("a", 1);
        let mut best_count = 0;
        for _ in 0..20 {
            let got = s.select(&cfg, "newcomer", &me, &[], 1);
            if got.first().map(|c| c.peer_id) == Some("best") {
                best_count += 1;
            }
        }
        // `best` stops being proposed once proposals reach the degree cap (2 × 4 / 2 = 8).
        assert_eq!(best_count, 8);
        s.upsert("best", PeerInfo { upload_kbps: 50_000, ..info("a", 1) }, (), 1).expect("room");
        let got = s.select(&cfg, "newcomer", &me, &[], 1);
        assert_eq!(got[0].peer_id, "best", "its own announce resets the count");
    }

    #[test]
    fn large_swarm_sample_prefers_own_locality() {
        let cfg = SelectionConfig::default();
        let mut s: Swarm<()> = Swarm::new(200_000, 3);
        for i in 0..100_000 {
            let loc = if i % 1000 == 0 { "rare" } else { "common" };
            s.upsert(&format!("p{i}"), info(loc, 10), (), 0).expect("room");
        }
        let me = info("rare", 10);
        let got = s.select(&cfg, "me", &me, &[], 8);
        assert_eq!(got.len(), 8);
        assert!(
            got.iter().all(|c| &*c.info.locality == "rare"),
            "100 of 100 000 members share the asker's locality; sampling the bucket finds them"
        );
    }

    #[test]
    fn departures_are_remembered_for_the_grace_period() {
        let mut s: Swarm<()> = Swarm::new(10, 1);
        s.upsert("x", info("", 1), (), 0).expect("room");
        assert!(!s.recently_departed("x", 0, 100));
        s.remove("x", 50);
        assert!(s.recently_departed("x", 100, 100));
        assert!(!s.recently_departed("x", 151, 100));
        assert!(!s.recently_departed("never", 60, 100));
    }

    #[test]
    fn cap_and_route_replacement() {
        let mut s: Swarm<u8> = Swarm::new(1, 1);
        assert_eq!(s.upsert("a", info("", 1), 1, 0), Ok(None));
        assert_eq!(s.upsert("b", info("", 1), 2, 0), Err(SwarmFull));
        assert_eq!(s.upsert("a", info("", 2), 3, 0), Ok(Some(1)));
        assert_eq!(s.remove_if("a", 1, |r| *r == 1), None, "not the current route");
        assert_eq!(s.remove_if("a", 1, |r| *r == 3), Some(3));
    }

    #[test]
    fn expiry_uses_last_seen() {
        let mut s: Swarm<()> = Swarm::new(10, 1);
        s.upsert("old", info("", 1), (), 0).expect("room");
        s.upsert("fresh", info("", 1), (), 0).expect("room");
        assert!(s.touch("fresh", 900));
        assert!(!s.touch("ghost", 900));
        let mut removed = Vec::new();
        s.expire(1_000, 500, &mut removed);
        assert_eq!(removed.len(), 1);
        assert_eq!(&*removed[0].0, "old");
        assert!(s.contains("fresh"));
        assert!(s.recently_departed("old", 1_000, 10));
    }
}
