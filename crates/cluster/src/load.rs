//! Load figures for the registry: this process's share of the machine's CPU, and per-second
//! rates of counters.

use std::time::Instant;

/// CPU time of this process (utime + stime) from `/proc/self/stat`, in clock ticks.
fn process_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after its closing paren are fixed.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the paren: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Share of all cores this process used between two calls (0..=1).
pub struct CpuSampler {
    last: Option<(Instant, u64)>,
    hz: f64,
    cores: f64,
}

impl Default for CpuSampler {
    fn default() -> Self {
        CpuSampler {
            last: None,
            hz: clock_ticks_per_s(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        }
    }
}

impl CpuSampler {
    pub fn sample(&mut self) -> f64 {
        let now = Instant::now();
        let Some(ticks) = process_ticks() else { return 0.0 };
        let share = match self.last {
            Some((t, prev)) => {
                let wall = now.duration_since(t).as_secs_f64();
                if wall <= 0.0 {
                    0.0
                } else {
                    (ticks.saturating_sub(prev) as f64 / self.hz / wall / self.cores).clamp(0.0, 1.0)
                }
            }
            None => 0.0,
        };
        self.last = Some((now, ticks));
        share
    }
}

/// Per-second rate of a monotonic counter between two calls.
#[derive(Default)]
pub struct Rate {
    last: Option<(Instant, u64)>,
}

impl Rate {
    pub fn update(&mut self, count: u64) -> f64 {
        let now = Instant::now();
        let r = match self.last {
            Some((t, prev)) => {
                let s = now.duration_since(t).as_secs_f64();
                if s > 0.0 {
                    count.saturating_sub(prev) as f64 / s
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, count));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_share_of_a_busy_loop() {
        let mut s = CpuSampler::default();
        assert_eq!(s.sample(), 0.0, "first sample has nothing to compare with");
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let share = s.sample();
        assert!(share > 0.1 / s.cores && share <= 1.0, "{share}");
        let mut r = Rate::default();
        assert_eq!(r.update(10), 0.0);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let v = r.update(20);
        assert!((50.0..=110.0).contains(&v), "{v}");
    }
}
