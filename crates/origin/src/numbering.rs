//! The origin's own sequence numbers and program-date-times for segments that come from
//! elsewhere (ingest, relay).
//!
//! `origin_seq = upstream_seq + offset`, one offset per stream so renditions stay aligned.
//! When an upstream restarts (its numbers go back), the first rendition to notice moves the
//! stream to a new epoch with a larger offset, so numbers continue after everything already
//! published, and marks a discontinuity; the other renditions adopt that epoch when their own
//! numbers go back. Program-date-times are shared per sequence number across renditions.

use std::collections::BTreeMap;

/// Remembered program-date-times per stream (only the newest are needed).
const PDT_MEMORY: usize = 64;

#[derive(Debug, Default)]
pub struct StreamNumbering {
    offset: u64,
    epoch: u64,
    max_origin: Option<u64>,
    pdt: BTreeMap<u64, u64>,
}

#[derive(Debug, Default, Clone)]
pub struct RenditionNumbering {
    last_upstream: Option<u64>,
    epoch: u64,
    /// End of the last published segment: (origin seq, pdt + duration).
    last_end: Option<(u64, u64)>,
}

impl RenditionNumbering {
    pub fn last_upstream(&self) -> Option<u64> {
        self.last_upstream
    }
}

/// Where a new upstream segment lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    pub seq: u64,
    pub discontinuity: bool,
}

impl StreamNumbering {
    pub fn new(initial_offset: u64) -> Self {
        StreamNumbering { offset: initial_offset, ..Default::default() }
    }

    /// Is `upstream_seq` new for this rendition (not already taken)?
    pub fn is_new(r: &RenditionNumbering, upstream_seq: u64) -> bool {
        r.last_upstream.is_none_or(|l| upstream_seq > l)
    }

    /// Number a segment. `restart` says the caller saw the upstream start over (its numbers
    /// went back, or a fresh playlist), which is the only case that changes the offset.
    pub fn assign(&mut self, r: &mut RenditionNumbering, upstream_seq: u64, restart: bool) -> Assigned {
        let mut discontinuity = false;
        if restart {
            if r.epoch < self.epoch {
                r.epoch = self.epoch;
            } else {
                let next = self.max_origin.map_or(0, |m| m + 1);
                self.offset = next.saturating_sub(upstream_seq).max(self.offset);
                self.epoch += 1;
                r.epoch = self.epoch;
            }
            discontinuity = r.last_upstream.is_some();
        }
        let seq = upstream_seq.saturating_add(self.offset);
        r.last_upstream = Some(upstream_seq);
        self.max_origin = Some(self.max_origin.map_or(seq, |m| m.max(seq)));
        Assigned { seq, discontinuity }
    }

    /// Program-date-time of origin segment `seq`: the upstream's if it gave one, else the one
    /// another rendition already used for `seq`, else the end of this rendition's previous
    /// segment when contiguous, else `fallback_ms`.
    pub fn pdt(
        &mut self,
        r: &mut RenditionNumbering,
        seq: u64,
        upstream_pdt: Option<u64>,
        duration_ms: u32,
        fallback_ms: u64,
    ) -> u64 {
        let pdt = upstream_pdt
            .or_else(|| self.pdt.get(&seq).copied())
            .or_else(|| r.last_end.filter(|(s, _)| s + 1 == seq).map(|(_, end)| end))
            .unwrap_or(fallback_ms);
        self.pdt.entry(seq).or_insert(pdt);
        while self.pdt.len() > PDT_MEMORY {
            self.pdt.pop_first();
        }
        r.last_end = Some((seq, pdt + u64::from(duration_ms)));
        pdt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuous_restart_and_alignment() {
        let mut s = StreamNumbering::new(1000);
        let (mut a, mut b) = (RenditionNumbering::default(), RenditionNumbering::default());
        assert_eq!(s.assign(&mut a, 0, false), Assigned { seq: 1000, discontinuity: false });
        assert_eq!(s.assign(&mut b, 0, false), Assigned { seq: 1000, discontinuity: false });
        assert_eq!(s.assign(&mut a, 1, false).seq, 1001);
        assert_eq!(s.assign(&mut b, 1, false).seq, 1001);
        assert!(!StreamNumbering::is_new(&a, 1) && StreamNumbering::is_new(&a, 2));
        // Upstream restarts at 0: a notices first, b adopts the same epoch.
        assert_eq!(s.assign(&mut a, 0, true), Assigned { seq: 1002, discontinuity: true });
        assert_eq!(s.assign(&mut b, 0, true), Assigned { seq: 1002, discontinuity: true });
        assert_eq!(s.assign(&mut a, 1, false).seq, 1003);
        assert_eq!(s.assign(&mut b, 1, false).seq, 1003);
    }

    #[test]
    fn pdt_is_shared_and_contiguous() {
        let mut s = StreamNumbering::new(0);
        let (mut a, mut b) = (RenditionNumbering::default(), RenditionNumbering::default());
        assert_eq!(s.pdt(&mut a, 5, None, 2000, 10_000), 10_000);
        assert_eq!(s.pdt(&mut a, 6, None, 2000, 99_999), 12_000, "contiguous: previous end");
        assert_eq!(s.pdt(&mut b, 6, None, 2000, 55_555), 12_000, "shared with the other rendition");
        assert_eq!(s.pdt(&mut b, 7, Some(77_000), 2000, 0), 77_000, "upstream wins");
    }
}
