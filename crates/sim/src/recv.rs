//! Which chunks a viewer has received with the origin's bytes, per segment (the invariant
//! checker's record: a viewer may only send what it has).
//!
//! A map `segment key → bitset` that costs one cache line per lookup: a direct-mapped table of
//! [`SLOTS`] segments with up to [`INLINE_CHUNKS`] chunks each (a viewer's live window fits),
//! and a hash map for whatever does not (a colliding segment, a segment of more chunks). With
//! ten thousand viewers every lookup misses the cache; a hash map of heap vectors cost three.
//! Behaves exactly like the map it replaces, `len` included.

use crate::fxhash::FxHashMap;

const SLOTS: usize = 64;
const WORDS: usize = 2;
pub const INLINE_CHUNKS: usize = WORDS * 64;
const EMPTY: u64 = u64::MAX;

#[derive(Default)]
pub struct RecvLog {
    /// `(key, bits)`, `key == EMPTY` when free; allocated on first use.
    slots: Vec<(u64, [u64; WORDS])>,
    spill: FxHashMap<u64, Vec<u64>>,
    /// Segments recorded (slots in use plus spilled).
    in_slots: usize,
}

fn slot_of(key: u64) -> usize {
    ((key ^ (key >> 48).wrapping_mul(0x9e37)) as usize) % SLOTS
}

impl RecvLog {
    /// Number of segments with a record.
    pub fn len(&self) -> usize {
        self.in_slots + self.spill.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record chunks `first..first + count` of segment `key`.
    pub fn mark(&mut self, key: u64, first: usize, count: usize) {
        if self.slots.is_empty() {
            self.slots = vec![(EMPTY, [0; WORDS]); SLOTS];
        }
        let s = slot_of(key);
        let end = first + count;
        let slot_key = self.slots[s].0;
        if slot_key == key {
            if end <= INLINE_CHUNKS {
                set_bits(&mut self.slots[s].1, first, end);
                return;
            }
            // Grows beyond the slot: move the record to the map.
            let bits = self.slots[s].1.to_vec();
            self.slots[s] = (EMPTY, [0; WORDS]);
            self.in_slots -= 1;
            self.spill.insert(key, bits);
        } else if slot_key == EMPTY && end <= INLINE_CHUNKS && !self.spill.contains_key(&key) {
            self.slots[s].0 = key;
            self.in_slots += 1;
            set_bits(&mut self.slots[s].1, first, end);
            return;
        }
        let bits = self.spill.entry(key).or_default();
        for i in first..end {
            let w = i / 64;
            if bits.len() <= w {
                bits.resize(w + 1, 0);
            }
            bits[w] |= 1 << (i % 64);
        }
    }

    /// Whether chunk `chunk` of segment `key` was recorded.
    pub fn has(&self, key: u64, chunk: usize) -> bool {
        if let Some(&(k, bits)) = self.slots.get(slot_of(key)) {
            if k == key {
                return chunk < INLINE_CHUNKS && bits[chunk / 64] & (1 << (chunk % 64)) != 0;
            }
        }
        self.spill.get(&key).and_then(|b| b.get(chunk / 64)).is_some_and(|w| w & (1 << (chunk % 64)) != 0)
    }

    /// Keep only the segments whose key `keep` approves.
    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        for slot in self.slots.iter_mut() {
            if slot.0 != EMPTY && !keep(slot.0) {
                *slot = (EMPTY, [0; WORDS]);
                self.in_slots -= 1;
            }
        }
        self.spill.retain(|&k, _| keep(k));
    }
}

fn set_bits(bits: &mut [u64; WORDS], first: usize, end: usize) {
    for i in first..end {
        bits[i / 64] |= 1 << (i % 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Same answers and the same `len` as the map of bitsets it replaces.
    #[test]
    fn behaves_like_a_map_of_bitsets() {
        let mut log = RecvLog::default();
        let mut map: FxHashMap<u64, Vec<u64>> = FxHashMap::default();
        let mut rng = Rng::new(9);
        for step in 0..200_000u64 {
            let rend = rng.below(3);
            let seq = step / 500 + rng.below(80);
            let key = rend << 48 | seq;
            match rng.below(10) {
                0..=4 => {
                    let first = if rng.chance(0.05) { rng.below(300) } else { rng.below(120) } as usize;
                    let count = 1 + rng.below(8) as usize;
                    log.mark(key, first, count);
                    let bits = map.entry(key).or_default();
                    for i in first..first + count {
                        if bits.len() <= i / 64 {
                            bits.resize(i / 64 + 1, 0);
                        }
                        bits[i / 64] |= 1 << (i % 64);
                    }
                }
                5..=8 => {
                    let chunk = rng.below(320) as usize;
                    let want = map
                        .get(&key)
                        .and_then(|b| b.get(chunk / 64))
                        .is_some_and(|w| w & (1 << (chunk % 64)) != 0);
                    assert_eq!(log.has(key, chunk), want, "step {step}");
                }
                _ => {
                    let cutoff = (step / 500).saturating_sub(10);
                    log.retain(|k| k & 0xffff_ffff_ffff >= cutoff);
                    map.retain(|&k, _| k & 0xffff_ffff_ffff >= cutoff);
                }
            }
            assert_eq!(log.len(), map.len(), "step {step}");
        }
    }
}
