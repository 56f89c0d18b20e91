//! The network model, flow level, one 16 kB DataChannel message at a time.
//!
//! - **Uplink.** Each viewer's uplink sends messages one at a time at its capacity, in the
//!   order the engine wrote them (the engine itself interleaves the peers it serves, one
//!   chunk each in turn, within a window of about 300 ms of upload). A message's departure is
//!   known when it is written, so the uplink needs no event of its own. The bytes still queued
//!   on a connection are reported back to the engine as the DataChannel's `bufferedAmount`
//!   when they fall to [`BUFFER_LOW`] (the browser's "buffered amount low" event) and when the
//!   queue empties. A message stays queued until the path's bottleneck takes it — the
//!   sender's uplink, or the receiver's downlink when that is busier — as congestion control
//!   would keep it, so a fast sender cannot pour unlimited data into a slow downlink. Small messages (requests, haves, pings) do not wait behind other
//!   connections' data; on their own connection they arrive in order after its data.
//! - **Path.** A message arrives one-way latency after it left (per pair, from locality
//!   groups: same group close, different groups far), plus jitter and, when lost, a
//!   retransmission timeout. Channels are reliable and ordered: a message never overtakes the
//!   one before it on its connection.
//! - **Downlink.** Each viewer's downlink receives one message at a time at its capacity, each
//!   when it gets there (the first free interval at or after its arrival: see [`Downlink`]).
//!   CDN transfers go through it too. Flows are not shared fairly beyond that: a CDN piece
//!   waits behind the peer data that reached the downlink first (bounded by the senders'
//!   windows), which makes a downlink barely above the bitrate look worse than it is.
//! - **CDN.** A transfer's first byte arrives one round trip plus the server's first-byte time
//!   after the request; then it streams in 64 kB pieces at min(per-flow rate, capacity ÷
//!   active transfers), re-evaluated at every piece.
//! - **Connectivity.** Two viewers connect unless one is firewalled (UDP blocked, no TURN),
//!   both have endpoint-dependent (symmetric) NATs, or an EIM–symmetric pair draws failure;
//!   an attempt that fails does so after the connect timeout; one that works takes the setup
//!   time plus four round trips (ICE checks, DTLS, SCTP).

use std::collections::VecDeque;

use shoal_proto::wire::{Message, DATA_HEADER};

use crate::rng::{hash64, unit_of};
use crate::scenario::Network;

/// Messages at most this big (everything but chunks and entries) do not wait behind other
/// connections' data on the uplink.
pub const SMALL: u64 = 1_200;
/// `bufferedAmountLowThreshold` of every DataChannel: below it the engine is told the queue
/// drained (three 16 kB chunks).
pub const BUFFER_LOW: u64 = 48 * 1024;
/// CDN transfers stream in pieces of this many bytes (4 chunks; chunk-aligned when the
/// transfer starts at a chunk boundary, which the engine's Range requests always do).
pub const PIECE: usize = 64_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    Open,
    Eim,
    Symmetric,
    Firewalled,
}

impl NatKind {
    /// What the viewer reports to the tracker (STUN cannot classify a firewalled client).
    pub fn reported(self) -> shoal_proto::tracker::Nat {
        use shoal_proto::tracker::Nat;
        match self {
            NatKind::Open => Nat::Open,
            NatKind::Eim => Nat::Eim,
            NatKind::Symmetric => Nat::Symmetric,
            NatKind::Firewalled => Nat::Unknown,
        }
    }
}

/// Whether viewers `a` and `b` can open a direct connection.
pub fn can_connect(net: &Network, seed: u64, a: (u32, NatKind), b: (u32, NatKind)) -> bool {
    use NatKind::*;
    match (a.1, b.1) {
        (Firewalled, _) | (_, Firewalled) => false,
        (Symmetric, Symmetric) => false,
        (Eim, Symmetric) | (Symmetric, Eim) => {
            let (x, y) = (a.0.min(b.0) as u64, a.0.max(b.0) as u64);
            unit_of(hash64(&[seed, 0x4e41_5400, x, y])) >= net.nat.eim_symmetric_fail
        }
        _ => true,
    }
}

/// One-way latency between two viewers, microseconds.
pub fn latency_us(net: &Network, seed: u64, a: (u32, u16), b: (u32, u16)) -> u64 {
    let (x, y) = (a.0.min(b.0) as u64, a.0.max(b.0) as u64);
    let u = unit_of(hash64(&[seed, 0x4c41_5400, x, y]));
    let [lo, hi] = if a.1 == b.1 { net.same_locality_ms } else { net.other_locality_ms };
    ((lo + (hi - lo) * u) * 1_000.0) as u64
}

/// Bytes a message takes on the wire (its encoded size, estimated without encoding).
pub fn wire_size(msg: &Message) -> u64 {
    match msg {
        Message::Data { payload, .. } => (DATA_HEADER + payload.len()) as u64,
        Message::Entry(e) => 120 + e.uri.len() as u64 + 32 * e.chunk_hashes.len() as u64,
        Message::Hello(h) => {
            40 + h.peer_id.len() as u64 + h.stream.len() as u64 + 16 * h.renditions.len() as u64
        }
        Message::Have { rendition, .. } => 16 + rendition.len() as u64,
        Message::HaveMap { rendition, .. } => 20 + rendition.len() as u64,
        Message::Request { rendition, .. } => 24 + rendition.len() as u64,
        Message::Bye { text, .. } => 3 + text.len() as u64,
        _ => 9,
    }
}

/// Microseconds to move `bytes` at `bps`.
pub fn tx_us(bytes: u64, bps: u64) -> u64 {
    (bytes * 8 * 1_000_000).div_ceil(bps.max(1)).max(1)
}

/// One direction of a connection.
#[derive(Default)]
pub struct Dir {
    /// Written by the engine and not yet sent: (departure time µs, bytes).
    pub pending: VecDeque<(u64, u64)>,
    /// When the next buffer report is due (0: none), and its generation.
    pub report_at: u64,
    pub report_gen: u32,
    /// Sent, not yet arrived: (arrival time µs, message).
    pub flight: VecDeque<(u64, Message)>,
    pub last_arrival: u64,
    /// Requests the receiver of the data (the other end) made on this direction's reverse:
    /// `(req_id, rendition, seq)`, so a data message can be tied to its segment.
    pub reqs: VecDeque<(u32, u16, u64)>,
}

impl Dir {
    pub fn req_segment(&self, req_id: u32) -> Option<(u16, u64)> {
        self.reqs.iter().rev().find(|r| r.0 == req_id).map(|r| (r.1, r.2))
    }

    pub fn note_request(&mut self, req_id: u32, rend: u16, seq: u64) {
        if self.reqs.len() >= 128 {
            self.reqs.pop_front();
        }
        self.reqs.push_back((req_id, rend, seq));
    }
}

/// A connection between viewers `a` and `b` (direction 0 is a → b).
pub struct Conn {
    pub a: u32,
    pub b: u32,
    /// The handle each end uses for the other.
    pub ha: u64,
    pub hb: u64,
    pub open: bool,
    pub lat_us: u64,
    pub dirs: [Dir; 2],
}

impl Conn {
    pub fn sender(&self, dir: usize) -> u32 {
        if dir == 0 {
            self.a
        } else {
            self.b
        }
    }

    pub fn receiver(&self, dir: usize) -> u32 {
        if dir == 0 {
            self.b
        } else {
            self.a
        }
    }

    /// The handle the receiver of `dir` knows the sender by.
    pub fn receiver_handle(&self, dir: usize) -> u64 {
        if dir == 0 {
            self.hb
        } else {
            self.ha
        }
    }

    pub fn sender_handle(&self, dir: usize) -> u64 {
        if dir == 0 {
            self.ha
        } else {
            self.hb
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_rules() {
        let net = Network::default();
        use NatKind::*;
        assert!(!can_connect(&net, 1, (1, Firewalled), (2, Open)));
        assert!(!can_connect(&net, 1, (1, Symmetric), (2, Symmetric)));
        assert!(can_connect(&net, 1, (1, Symmetric), (2, Open)));
        assert!(can_connect(&net, 1, (1, Eim), (2, Eim)));
        let fails = (0..10_000u32).filter(|&i| !can_connect(&net, 1, (i, Eim), (i + 1, Symmetric))).count();
        assert!((4_500..5_500).contains(&fails), "{fails}");
        assert_eq!(
            can_connect(&net, 1, (7, Eim), (9, Symmetric)),
            can_connect(&net, 1, (9, Symmetric), (7, Eim)),
            "symmetric in its arguments"
        );
    }

    #[test]
    fn latency_depends_on_locality_and_is_symmetric() {
        let net = Network::default();
        for i in 0..100 {
            let same = latency_us(&net, 3, (i, 0), (i + 5, 0));
            let other = latency_us(&net, 3, (i, 0), (i + 5, 1));
            assert!((5_000..=20_000).contains(&same));
            assert!((25_000..=60_000).contains(&other));
            assert_eq!(same, latency_us(&net, 3, (i + 5, 0), (i, 0)));
        }
        assert_eq!(tx_us(16_000, 8_000_000), 16_000);
    }
}

/// A viewer's downlink: the times it is busy receiving, so a message occupies it when it
/// actually gets there. Messages are written (and so reserved) before they arrive — a slow
/// sender's chunk may leave its uplink a second after it was written — so a single
/// "free from" mark would make everything written later, a fast neighbour's chunk or a CDN
/// piece, queue behind a reservation that lies in the future, leaving the link idle until then.
/// Each reservation takes the first gap long enough at or after its own arrival instead.
#[derive(Default)]
pub struct Downlink {
    /// Busy intervals `[start, end)`, sorted, disjoint, none ending before the last prune.
    busy: VecDeque<(u64, u64)>,
}

impl Downlink {
    /// Reserve `dur` µs starting no earlier than `at`; returns when the reception ends.
    pub fn reserve(&mut self, now: u64, at: u64, dur: u64) -> u64 {
        while self.busy.front().is_some_and(|b| b.1 <= now) {
            self.busy.pop_front();
        }
        let mut start = at;
        let mut i = 0;
        while i < self.busy.len() {
            let (s, e) = self.busy[i];
            if start + dur <= s {
                break;
            }
            if e > start {
                start = e;
            }
            i += 1;
        }
        let end = start + dur;
        // Merge with touching neighbours so back-to-back receptions stay one interval.
        let touches_prev = i > 0 && self.busy[i - 1].1 == start;
        let touches_next = i < self.busy.len() && self.busy[i].0 == end;
        match (touches_prev, touches_next) {
            (true, true) => {
                let next_end = self.busy[i].1;
                self.busy[i - 1].1 = next_end;
                self.busy.remove(i);
            }
            (true, false) => self.busy[i - 1].1 = end,
            (false, true) => self.busy[i].0 = start,
            (false, false) => self.busy.insert(i, (start, end)),
        }
        end
    }
}

#[cfg(test)]
mod downlink_tests {
    use super::Downlink;

    #[test]
    fn a_later_reservation_does_not_block_an_earlier_arrival() {
        let mut d = Downlink::default();
        // A slow sender's chunk arrives at 1 s.
        assert_eq!(d.reserve(0, 1_000_000, 5_000), 1_005_000);
        // A CDN piece arriving now is received now, not after it.
        assert_eq!(d.reserve(0, 10_000, 5_000), 15_000);
        // One that would overlap the first waits for it.
        assert_eq!(d.reserve(0, 998_000, 5_000), 1_010_000);
        // A gap before an existing reception is used; touching receptions merge.
        assert_eq!(d.reserve(0, 0, 10_000), 10_000);
        assert_eq!(d.busy.len(), 2, "{:?}", d.busy);
    }
}
