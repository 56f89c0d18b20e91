//! An hls.js-like live player at its defaults: it starts `liveSyncDurationCount` (3) target
//! durations behind the live edge, refreshes the live playlist about every target duration
//! (with a random phase per viewer), requests each segment as soon as it is listed (one at a
//! time, up to `maxBufferLength` ahead), appends whole segments, plays, stalls when the buffer
//! runs dry and resumes once a rebuffer threshold is buffered again. Times in microseconds.

#[derive(Clone, Debug, Default)]
pub struct Player {
    /// Newest segment of the last playlist load.
    pub listed_newest: Option<u64>,
    /// The segment requested now, or to request next.
    pub next_req: Option<u64>,
    pub in_flight: bool,
    /// After a failed segment, do not ask again before this.
    pub retry_at: u64,
    /// First frame shown.
    pub started_us: Option<u64>,
    pub first_seq: u64,
    /// Media time buffered and played, from the start of `first_seq`.
    pub buffer_end_us: u64,
    pub playhead_us: u64,
    pub last_us: u64,
    pub playing: bool,
    pub stalls: u32,
    pub stall_us: u64,
    pub stalled_since: Option<u64>,
    pub play_us: u64,
    /// Generation of the "buffer runs dry" timer.
    pub empty_gen: u32,
    pub failures: u32,
}

/// What happened when time moved on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    Nothing,
    /// The buffer ran dry at this time.
    Stalled(u64),
}

impl Player {
    pub fn ahead_us(&self) -> u64 {
        self.buffer_end_us.saturating_sub(self.playhead_us)
    }

    /// Move the playhead to `now`.
    pub fn advance(&mut self, now: u64) -> Advance {
        let dt = now.saturating_sub(self.last_us);
        self.last_us = now.max(self.last_us);
        if !self.playing || self.started_us.is_none() {
            return Advance::Nothing;
        }
        let ahead = self.ahead_us();
        if dt >= ahead {
            self.playhead_us = self.buffer_end_us;
            self.play_us += ahead;
            self.playing = false;
            self.stalls += 1;
            let at = now - (dt - ahead);
            self.stalled_since = Some(at);
            Advance::Stalled(at)
        } else {
            self.playhead_us += dt;
            self.play_us += dt;
            Advance::Nothing
        }
    }

    /// The next segment to ask for, if one should be asked for now.
    pub fn want(&self, now: u64, live_sync: u32, max_buffer_us: u64) -> Option<u64> {
        if self.in_flight || now < self.retry_at {
            return None;
        }
        let newest = self.listed_newest?;
        let next = self.next_req.unwrap_or_else(|| newest.saturating_sub(live_sync.saturating_sub(1) as u64));
        if next > newest || self.ahead_us() >= max_buffer_us {
            return None;
        }
        Some(next)
    }

    /// A segment was appended. Returns the start-up time if this was the first frame, and the
    /// stall time that ended if playback resumed.
    pub fn appended(&mut self, now: u64, seq: u64, seg_us: u64, joined_us: u64, resume_us: u64) -> Appended {
        self.advance(now);
        self.in_flight = false;
        self.next_req = Some(seq + 1);
        self.buffer_end_us += seg_us;
        let mut out = Appended::default();
        if self.started_us.is_none() {
            self.started_us = Some(now);
            self.first_seq = seq;
            self.playing = true;
            self.last_us = now;
            out.startup_us = Some(now - joined_us);
        } else if !self.playing && self.ahead_us() >= resume_us.max(1) {
            self.playing = true;
            if let Some(s) = self.stalled_since.take() {
                let d = now - s;
                self.stall_us += d;
                out.stall_ended_us = Some(d);
            }
        }
        out
    }

    /// Close the books at `now` (the viewer leaves or the run ends).
    pub fn finish(&mut self, now: u64) {
        self.advance(now);
        if let Some(s) = self.stalled_since.take() {
            self.stall_us += now.saturating_sub(s);
        }
    }

    /// Media position of the playhead: (segment, offset within it).
    pub fn position(&self, seg_us: u64) -> Option<(u64, u64)> {
        self.started_us?;
        let k = self.playhead_us / seg_us;
        Some((self.first_seq + k, self.playhead_us - k * seg_us))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    pub startup_us: Option<u64>,
    pub stall_ended_us: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 2_000_000;

    #[test]
    fn starts_behind_the_edge_plays_stalls_and_resumes() {
        let mut p = Player { listed_newest: Some(110), ..Player::default() };
        assert_eq!(p.want(0, 3, 30_000_000), Some(108), "three target durations behind");
        p.in_flight = true;
        p.next_req = Some(108);
        let a = p.appended(500_000, 108, SEG, 0, 0);
        assert_eq!(a.startup_us, Some(500_000));
        assert!(p.playing);
        // Nothing more arrives: the buffer runs dry 2 s later.
        assert_eq!(p.advance(1_500_000), Advance::Nothing);
        assert_eq!(p.advance(3_000_000), Advance::Stalled(2_500_000));
        assert_eq!(p.stalls, 1);
        p.in_flight = true;
        let a = p.appended(3_100_000, 109, SEG, 0, 0);
        assert_eq!(a.stall_ended_us, Some(600_000));
        assert!(p.playing);
        assert_eq!(p.position(SEG), Some((109, 0)));
        p.finish(4_100_000);
        assert_eq!(p.play_us, 2_000_000 + 1_000_000);
        assert_eq!(p.stall_us, 600_000);
    }

    #[test]
    fn buffer_limit_and_listing_gate_requests() {
        let mut p = Player { listed_newest: Some(10), next_req: Some(11), ..Player::default() };
        assert_eq!(p.want(0, 3, 30_000_000), None, "not listed yet");
        p.listed_newest = Some(11);
        assert_eq!(p.want(0, 3, 30_000_000), Some(11));
        p.buffer_end_us = 30_000_000;
        assert_eq!(p.want(0, 3, 30_000_000), None, "buffer full");
    }
}
