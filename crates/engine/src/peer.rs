//! A connected peer as this client sees it.

use std::collections::BTreeMap;

use shoal_proto::wire::HaveState;

use crate::estimate::Ewma;
use crate::io::{Millis, PeerHandle};
use crate::segment::SegKey;

/// What a peer said it holds or receives, for its recent segments: one slot per sequence
/// number modulo [`HAVE_SLOTS`] (a newer segment takes an old one's slot), so a lookup, done
/// many times per step, is one comparison.
#[derive(Clone, Debug)]
pub struct Haves {
    slots: Box<[Option<(SegKey, HaveState)>; HAVE_SLOTS]>,
    len: usize,
}

/// Segments a peer's announcements are remembered for (more than any cache holds).
pub const HAVE_SLOTS: usize = 32;

impl Default for Haves {
    fn default() -> Self {
        Haves { slots: Box::new([None; HAVE_SLOTS]), len: 0 }
    }
}

impl Haves {
    fn slot(key: &SegKey) -> usize {
        (key.1 as usize).wrapping_add(key.0 as usize * 17) % HAVE_SLOTS
    }

    pub fn get(&self, key: &SegKey) -> Option<&HaveState> {
        match &self.slots[Self::slot(key)] {
            Some((k, s)) if k == key => Some(s),
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &SegKey) -> bool {
        self.get(key).is_some()
    }

    pub fn insert(&mut self, key: SegKey, state: HaveState) {
        let slot = &mut self.slots[Self::slot(&key)];
        if slot.is_none() {
            self.len += 1;
        }
        *slot = Some((key, state));
    }

    pub fn remove(&mut self, key: &SegKey) {
        let slot = &mut self.slots[Self::slot(key)];
        if slot.as_ref().is_some_and(|(k, _)| k == key) {
            *slot = None;
            self.len -= 1;
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&SegKey, &HaveState) -> bool) {
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|(k, s)| !keep(k, s)) {
                *slot = None;
                self.len -= 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

/// A request from this peer that this client serves (or will serve when the segment arrives).
#[derive(Clone, Debug)]
pub struct Upload {
    pub req_id: u32,
    pub key: SegKey,
    /// Next chunk to send and the end of the requested range (clamped to the segment).
    pub next: u32,
    pub end: u32,
    pub send_entry: bool,
    pub started: Millis,
    /// Waiting for a segment this client does not hold yet; dropped with `Absent` after this.
    pub parked_until: Option<Millis>,
}

pub struct Peer {
    pub handle: PeerHandle,
    pub ready: bool,
    pub id: String,
    pub version: u16,
    pub uploads_enabled: bool,
    pub upload_kbps: u32,
    /// Rendition the peer last showed interest in (hello, have, request).
    pub rendition: Option<u16>,
    pub connected_at: Millis,
    pub last_heard: Millis,
    /// Bytes in the DataChannel's send buffer as last reported, plus what was written since.
    pub buffered: u64,
    pub haves: Haves,
    pub uploads: Vec<Upload>,
    /// Requests this client has outstanding at the peer (ordered: it is iterated).
    pub requests: BTreeMap<u32, SegKey>,
    /// Bytes per millisecond this peer delivered to us.
    pub rate: Ewma,
    pub failures: u32,
    pub busy_until: Millis,
    pub next_ping: Millis,
    pub ping: Option<(u32, Millis)>,
    pub rtt_ms: Option<u64>,
    /// When this peer first asked for each recent segment (upload order).
    pub asked: Vec<(SegKey, Millis)>,
}

impl Peer {
    pub fn new(handle: PeerHandle, now: Millis, ping_interval: Millis) -> Self {
        Peer {
            handle,
            ready: false,
            id: String::new(),
            version: 0,
            uploads_enabled: false,
            upload_kbps: 0,
            rendition: None,
            connected_at: now,
            last_heard: now,
            buffered: 0,
            haves: Haves::default(),
            uploads: Vec::new(),
            requests: BTreeMap::new(),
            rate: Ewma::new(100.0),
            failures: 0,
            busy_until: 0,
            next_ping: now + ping_interval,
            ping: None,
            rtt_ms: None,
            asked: Vec::new(),
        }
    }

    /// When the peer first asked for `key` (recorded now if this is the first time).
    pub fn first_asked(&mut self, key: SegKey, now: Millis) -> Millis {
        if let Some(&(_, t)) = self.asked.iter().find(|a| a.0 == key) {
            return t;
        }
        if self.asked.len() >= 16 {
            if let Some(i) = self.asked.iter().enumerate().min_by_key(|(_, a)| a.0 .1).map(|(i, _)| i) {
                self.asked.swap_remove(i);
            }
        }
        self.asked.push((key, now));
        now
    }

    pub fn active_uploads(&self) -> usize {
        self.uploads.iter().filter(|u| u.parked_until.is_none()).count()
    }

    pub fn parked_uploads(&self) -> usize {
        self.uploads.iter().filter(|u| u.parked_until.is_some()).count()
    }
}
