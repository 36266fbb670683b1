//! The collector's self-enforced CPU and memory budget.
//!
//! Once per tick the collector measures its own CPU (getrusage, all threads) and
//! resident set (/proc/self/statm) and feeds them to [`Controller`]. When either is
//! over budget the controller lowers the sampling level `keep` (out of
//! [`SAMPLE_ALL`]); the level is written into the BPF program's `sample_keep`
//! global, and the kernel side stops copying payloads of sockets whose
//! [`sock_bucket`] is not below it. The decision is per socket, so a sampled
//! connection is seen whole and an unsampled one not at all. Userspace applies the
//! same test to records already queued and forgets the state of connections that
//! became unsampled. Every skipped syscall, record, connection and pending request
//! is counted (stats `drops`). When usage is back under budget the level rises again.

/// `sample_keep` meaning "every socket" (must match TD_SAMPLE_ALL in tapdeck.h).
pub const SAMPLE_ALL: u32 = 1024;

/// The sampling bucket of a socket, 0..SAMPLE_ALL: the top 10 bits of a
/// multiplicative hash of its kernel address. Must match td_sock_bucket() in
/// tapdeck.bpf.c.
pub fn sock_bucket(sock: u64) -> u32 {
    ((sock >> 6).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as u32
}

/// Whether `sock` is traced at sampling level `keep`.
pub fn sampled(sock: u64, keep: u32) -> bool {
    keep >= SAMPLE_ALL || sock_bucket(sock) < keep
}

/// Default `--max-cpu`: 10 % of one core. The collector's userspace share only (the
/// BPF programs run in the traced processes and are not counted here). On a 4-core
/// gateway that is 2.5 % of the node, inside the 3 % throughput budget of DESIGN.md
/// with room left for the in-kernel part; on smaller nodes lower it.
pub const DEFAULT_MAX_CPU_PCT: f64 = 10.0;
/// Default `--max-rss`: DESIGN.md's collector budget.
pub const DEFAULT_MAX_RSS_MB: u64 = 50;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Percent of one core.
    pub max_cpu_pct: f64,
    pub max_rss_bytes: u64,
}

/// Why the level is below SAMPLE_ALL, as reported in `stats.budget.over`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Cpu,
    Rss,
}

impl Over {
    pub fn name(self) -> &'static str {
        match self {
            Over::Cpu => "cpu",
            Over::Rss => "rss",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Controller {
    limits: Limits,
    keep: u32,
    over: Option<Over>,
    last_cpu_pct: f64,
    last_rss: u64,
}

impl Controller {
    pub fn new(limits: Limits) -> Self {
        Self { limits, keep: SAMPLE_ALL, over: None, last_cpu_pct: 0.0, last_rss: 0 }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn keep(&self) -> u32 {
        self.keep
    }

    /// What pushed the level down last, while it is still below SAMPLE_ALL.
    pub fn over(&self) -> Option<Over> {
        self.over
    }

    pub fn last_cpu_pct(&self) -> f64 {
        self.last_cpu_pct
    }

    /// One measurement: CPU used over the last interval (percent of one core) and
    /// the resident set now. Returns the new sampling level.
    ///
    /// Over the memory budget the level halves each tick (memory does not fall by
    /// itself, so this must converge even when usage lags). Over the CPU budget it
    /// scales by budget/usage with a 10 % margin (CPU use follows the traced volume
    /// almost linearly). Comfortably under both (CPU < 70 %, RSS < 90 % of budget),
    /// it rises back to SAMPLE_ALL: doubling while CPU is under 35 % of the budget,
    /// by a quarter above that, at least 16 steps a tick.
    pub fn update(&mut self, cpu_pct: f64, rss_bytes: u64) -> u32 {
        self.last_cpu_pct = cpu_pct;
        self.last_rss = rss_bytes;
        let l = self.limits;
        if rss_bytes > l.max_rss_bytes {
            self.keep /= 2;
            self.over = Some(Over::Rss);
        } else if cpu_pct > l.max_cpu_pct {
            let scaled = (self.keep as f64 * (l.max_cpu_pct / cpu_pct) * 0.9).floor() as u32;
            self.keep = scaled.min(self.keep.saturating_sub(1));
            self.over = Some(Over::Cpu);
        } else if cpu_pct < 0.7 * l.max_cpu_pct && (rss_bytes as f64) < 0.9 * l.max_rss_bytes as f64 {
            if self.keep < SAMPLE_ALL {
                // Doubling from under 35 % of the budget, or +25 % from under 70 %, stays
                // under it when CPU follows the level linearly: no overshoot, no swing.
                let up = if cpu_pct < 0.35 * l.max_cpu_pct { self.keep } else { self.keep / 4 };
                self.keep = (self.keep + up.max(16)).min(SAMPLE_ALL);
            }
            if self.keep == SAMPLE_ALL {
                self.over = None;
            }
        }
        self.keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn ctl() -> Controller {
        Controller::new(Limits { max_cpu_pct: 10.0, max_rss_bytes: 50 * MB })
    }

    #[test]
    fn under_budget_keeps_everything() {
        let mut c = ctl();
        for _ in 0..10 {
            assert_eq!(c.update(3.0, 20 * MB), SAMPLE_ALL);
        }
        assert_eq!(c.over(), None);
    }

    #[test]
    fn cpu_over_budget_scales_down_in_proportion() {
        let mut c = ctl();
        let k = c.update(40.0, 20 * MB);
        // 1024 * 10/40 * 0.9 = 230
        assert_eq!(k, 230);
        assert_eq!(c.over(), Some(Over::Cpu));
        // Still over: keeps going down, never up.
        let k2 = c.update(11.0, 20 * MB);
        assert!(k2 < k, "{k2} < {k}");
        // Just above the budget still lowers the level by at least one step.
        let k3 = c.update(10.01, 20 * MB);
        assert!(k3 < k2);
    }

    #[test]
    fn rss_over_budget_halves_down_to_nothing() {
        let mut c = ctl();
        let mut last = SAMPLE_ALL;
        for _ in 0..11 {
            let k = c.update(1.0, 60 * MB);
            assert!(k < last || k == 0);
            last = k;
        }
        assert_eq!(last, 0, "a budget that cannot be met sheds everything");
        assert_eq!(c.over(), Some(Over::Rss));
    }

    #[test]
    fn recovers_when_back_under_budget() {
        let mut c = ctl();
        for _ in 0..11 {
            c.update(1.0, 60 * MB);
        }
        assert_eq!(c.keep(), 0);
        let mut ticks = 0;
        while c.keep() < SAMPLE_ALL {
            let before = c.keep();
            c.update(2.0, 30 * MB);
            assert!(c.keep() > before);
            ticks += 1;
        }
        // 0 → 16 → 32 → … → 1024 when idle: seconds, not minutes.
        assert_eq!(ticks, 7);
        assert_eq!(c.over(), None);
    }

    #[test]
    fn rising_does_not_overshoot_when_cpu_follows_the_level() {
        // A load that costs 40 % of a core when fully traced, on a 10 % budget.
        let mut c = ctl();
        let cost = |keep: u32| 40.0 * keep as f64 / SAMPLE_ALL as f64;
        let mut cpu = cost(SAMPLE_ALL);
        let mut over_ticks = 0;
        for tick in 0..60 {
            let k = c.update(cpu, 20 * MB);
            cpu = cost(k);
            if tick > 3 && cpu > 10.0 {
                over_ticks += 1;
            }
        }
        assert_eq!(over_ticks, 0, "settles under the budget");
        assert!(cpu > 5.0, "and does not shed far more than needed: {cpu}");
    }

    #[test]
    fn between_the_marks_holds_steady() {
        let mut c = ctl();
        c.update(20.0, 20 * MB);
        let k = c.keep();
        // 8 % of a 10 % budget: not over, not comfortably under either.
        assert_eq!(c.update(8.0, 20 * MB), k);
        assert_eq!(c.over(), Some(Over::Cpu));
    }

    #[test]
    fn buckets_spread_and_sampling_is_monotone() {
        let mut hist = [0u32; 8];
        // Socket addresses are slab objects a few KB apart.
        for i in 0..8192u64 {
            let b = sock_bucket(0xffff_8880_1000_0000 + i * 2304);
            assert!(b < SAMPLE_ALL);
            hist[(b / 128) as usize] += 1;
        }
        for h in hist {
            assert!((768..=1280).contains(&h), "{hist:?}");
        }
        let s = 0xffff_8880_1234_5600u64;
        assert!(sampled(s, SAMPLE_ALL));
        assert!(!sampled(s, 0));
        let b = sock_bucket(s);
        assert!(sampled(s, b + 1) && !sampled(s, b));
    }
}
