//! Where event number `i` sits in time, and when the emulated service lets it be seen.
//!
//! Owns the pure index <-> time mapping of the emulated Audit Log: occurrence time,
//! timestamp precision, equal-timestamp runs, byte-identical duplicates and the
//! ingestion delay. Everything is a function of `(seed, i)`, so nothing about the
//! backlog is ever held in memory, and occurrence time is monotonic non-decreasing in
//! `i`, so a time range maps to an index range by binary search.
//! It does not know what an event contains (see `events`) nor what a query asks for.

/// Nanoseconds per second.
pub(crate) const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_MILLI: i64 = 1_000_000;

/// A 64-bit finalizer (SplitMix64): cheap and good enough to derive independent
/// pseudo-random values from `(seed, salt, i)`.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A pseudo-random value that depends only on `(seed, salt, i)`.
#[inline]
pub(crate) fn hash3(seed: u64, salt: u64, i: u64) -> u64 {
    mix64(seed ^ mix64(i.wrapping_add(salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))))
}

/// A tiny sequential generator (SplitMix64) for the content of one event.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(state: u64) -> Self {
        Rng(state)
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A value in `0..n` (`n > 0`). The modulo bias is irrelevant for test data.
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent / 100`.
    #[inline]
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    #[inline]
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// One string of a non-empty list (spelled out so the element type need not be
    /// inferred from the call site).
    #[inline]
    pub(crate) fn pick_str<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

// Salts that keep the independent per-index decisions uncorrelated.
const SALT_JITTER: u64 = 1;
const SALT_PRECISION: u64 = 2;
const SALT_TIE: u64 = 3;
const SALT_DUP: u64 = 4;
const SALT_DELAY: u64 = 5;
const SALT_LATE: u64 = 6;

/// How many fractional digits a timestamp prints with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precision {
    Millis,
    Micros,
    Nanos,
}

impl Precision {
    fn quantum(self) -> i64 {
        match self {
            Precision::Millis => NANOS_PER_MILLI,
            Precision::Micros => 1_000,
            Precision::Nanos => 1,
        }
    }
}

/// The time layout of the emulated log: a backlog spread over `span` before `start`,
/// then a live stream at a fixed rate from `start`.
#[derive(Debug, Clone)]
pub(crate) struct Timeline {
    seed: u64,
    /// The emulator's start time, ns since the Unix epoch.
    start_ns: i64,
    backlog: u64,
    span_ns: i64,
    /// Live events per 1000 s (integer, so grid positions are exact); 0 = no live stream.
    rate_milli: u128,
    lag_ns: i64,
    /// Events per million that arrive `late_by_ns` after their normal delay (a tenant
    /// whose ingestion is slower than its stated lag).
    late_per_million: u64,
    late_by_ns: i64,
}

/// One in this many events repeats its predecessor byte for byte.
const DUPLICATE_ONE_IN: u64 = 5_000;
/// Percent of events that reuse their predecessor's timestamp.
const TIE_PERCENT: u64 = 3;

impl Timeline {
    pub(crate) fn new(
        seed: u64,
        start_ns: i64,
        backlog: u64,
        span_ns: i64,
        rate: f64,
        lag_ns: i64,
    ) -> Self {
        let rate_milli = if rate.is_finite() && rate > 0.0 {
            // At least one event per 1000 s; at most 10^9 events/s (1 per ns).
            (rate * 1000.0).round().clamp(1.0, 1e12) as u128
        } else {
            0
        };
        Timeline {
            seed,
            start_ns,
            backlog,
            span_ns: span_ns.max(0),
            rate_milli,
            lag_ns: lag_ns.max(0),
            late_per_million: 0,
            late_by_ns: 0,
        }
    }

    /// Makes `fraction` of the events (chosen by index, deterministically) show up
    /// `late_by_ns` later than the lag would have them.
    pub(crate) fn with_late(mut self, fraction: f64, late_by_ns: i64) -> Self {
        let f = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.late_per_million = (f * 1e6).round() as u64;
        self.late_by_ns = late_by_ns.max(0);
        self
    }

    pub(crate) fn start_ns(&self) -> i64 {
        self.start_ns
    }

    /// The longest delay any event has: everything that occurred this long ago is
    /// visible (the lag, plus the late events' extra delay).
    pub(crate) fn lag_ns(&self) -> i64 {
        if self.late_per_million > 0 {
            self.lag_ns.saturating_add(self.late_by_ns)
        } else {
            self.lag_ns
        }
    }

    /// True when event `i` (its original, for a duplicate) arrives late.
    pub(crate) fn is_late(&self, i: u64) -> bool {
        self.late_per_million > 0
            && hash3(self.seed, SALT_LATE, self.source(i)) % 1_000_000 < self.late_per_million
    }

    /// One past the last index that exists. Without a live stream that is the backlog;
    /// with one the log is endless, and this is merely a bound no query reaches.
    pub(crate) fn end(&self) -> u64 {
        if self.rate_milli == 0 {
            self.backlog
        } else {
            u64::MAX / 4
        }
    }

    /// The evenly spaced grid position of `i`, plus a jitter smaller than the spacing.
    /// Invariant: strictly increasing in `i` whenever the spacing is >= 1 ns, and
    /// non-decreasing always: `floor((i+1)s) >= floor(i s) + floor(s) > floor(i s) + jitter`.
    fn grid(&self, i: u64) -> i64 {
        let (base, step) = if i < self.backlog {
            let span = self.span_ns as u128;
            let n = self.backlog as u128;
            let off = (i as u128 * span) / n;
            (self.start_ns - self.span_ns + off as i64, (span / n) as i64)
        } else {
            let k = (i - self.backlog) as u128;
            let off = (k * 1_000_000_000_000u128) / self.rate_milli.max(1);
            let off = i64::try_from(off).unwrap_or(i64::MAX);
            let step = (1_000_000_000_000u128 / self.rate_milli.max(1)) as i64;
            (self.start_ns.saturating_add(off), step)
        };
        if step > 1 {
            base.saturating_add((hash3(self.seed, SALT_JITTER, i) % step as u64) as i64)
        } else {
            base
        }
    }

    /// The precision is chosen per millisecond bucket, not per event: truncating every
    /// event of one bucket to the same quantum keeps the sequence monotonic, and a
    /// millisecond-precision bucket at a high rate yields runs of equal timestamps.
    fn quantize(&self, g: i64) -> (i64, Precision) {
        let bucket = g.div_euclid(NANOS_PER_MILLI);
        let p = match hash3(self.seed, SALT_PRECISION, bucket as u64) % 10 {
            0..=3 => Precision::Millis,
            4..=7 => Precision::Micros,
            _ => Precision::Nanos,
        };
        let q = p.quantum();
        (g.div_euclid(q) * q, p)
    }

    /// True when event `i` is a byte-for-byte copy of event `i - 1`. Never two in a row,
    /// so a copy's source is always an original.
    pub(crate) fn is_duplicate(&self, i: u64) -> bool {
        let hit = |j: u64| j > 0 && hash3(self.seed, SALT_DUP, j) % DUPLICATE_ONE_IN == 0;
        hit(i) && !hit(i - 1)
    }

    /// The index whose content and time event `i` shows (itself, or its predecessor
    /// when `i` is a duplicate).
    #[inline]
    pub(crate) fn source(&self, i: u64) -> u64 {
        if self.is_duplicate(i) {
            i - 1
        } else {
            i
        }
    }

    /// Occurrence time (ns since the epoch) and printed precision of event `i`.
    /// A tie takes the quantized grid time of `i - 1`; that is >= the time of `i - 1`
    /// (which is itself at most `grid(i - 1)`) and <= `grid(i)`, so order holds.
    pub(crate) fn occurred(&self, i: u64) -> (i64, Precision) {
        let s = self.source(i);
        let j = if s > 0 && s != self.backlog && hash3(self.seed, SALT_TIE, s) % 100 < TIE_PERCENT {
            s - 1
        } else {
            s
        };
        self.quantize(self.grid(j))
    }

    #[inline]
    pub(crate) fn occurred_ns(&self, i: u64) -> i64 {
        if i >= self.end() {
            return i64::MAX;
        }
        self.occurred(i).0
    }

    /// How long after occurring event `i` shows up in searches: mostly quickly, some
    /// near the full lag (`docs/api.md`: "up to about five minutes", at type-dependent
    /// intervals). A duplicate is ingested with its original.
    pub(crate) fn delay_ns(&self, i: u64) -> i64 {
        let late = if self.is_late(i) { self.late_by_ns } else { 0 };
        self.lag_delay_ns(i).saturating_add(late)
    }

    fn lag_delay_ns(&self, i: u64) -> i64 {
        if self.lag_ns == 0 {
            return 0;
        }
        let h = hash3(self.seed, SALT_DELAY, self.source(i));
        let lag = self.lag_ns as u64;
        let d = if h % 10 < 7 {
            (h >> 8) % (lag / 10 + 1)
        } else {
            (h >> 8) % (lag + 1)
        };
        d as i64
    }

    /// True when a search made at `now_ns` can return event `i`.
    #[inline]
    pub(crate) fn visible(&self, i: u64, now_ns: i64) -> bool {
        self.occurred_ns(i).saturating_add(self.delay_ns(i)) <= now_ns
    }

    /// The smallest index `i` for which `pred(occurred(i))` holds, where `pred` is
    /// monotonic (false ... false true ... true); `end()` when there is none.
    fn partition(&self, pred: impl Fn(i64) -> bool) -> u64 {
        let end = self.end();
        // Exponential probe first: the live stream is endless, and most searches ask
        // about times near the start, so a full-width binary search would be wasteful.
        let mut hi = self.backlog.max(1).min(end);
        while hi < end && !pred(self.occurred_ns(hi)) {
            hi = hi.saturating_mul(2).min(end);
        }
        let mut lo = 0u64;
        // Invariant: every index < lo fails pred; hi == end or pred(hi).
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.occurred_ns(mid)) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// The first index that occurred at or after `t_ns`.
    pub(crate) fn first_at_or_after(&self, t_ns: i64) -> u64 {
        self.partition(|t| t >= t_ns)
    }

    /// The first index that occurred strictly after `t_ns`.
    pub(crate) fn first_after(&self, t_ns: i64) -> u64 {
        if t_ns == i64::MAX {
            return self.end();
        }
        self.partition(|t| t > t_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000 * NANOS_PER_SEC;

    fn timeline(rate: f64) -> Timeline {
        Timeline::new(
            7,
            T0,
            50_000,
            3_600 * NANOS_PER_SEC,
            rate,
            300 * NANOS_PER_SEC,
        )
    }

    #[test]
    fn occurrence_is_monotonic_across_backlog_and_live() {
        for rate in [0.0, 1.0, 2_000.0, 5_000_000.0] {
            let tl = timeline(rate);
            let mut prev = i64::MIN;
            for i in 0..120_000u64.min(tl.end()) {
                let t = tl.occurred_ns(i);
                assert!(t >= prev, "rate {rate}: event {i} at {t} before {prev}");
                prev = t;
            }
        }
    }

    #[test]
    fn backlog_lies_before_start_and_live_after() {
        let tl = timeline(10.0);
        assert!(tl.occurred_ns(0) >= T0 - 3_600 * NANOS_PER_SEC);
        assert!(tl.occurred_ns(49_999) < T0);
        assert!(tl.occurred_ns(50_000) >= T0);
        // 10 events/s: event 50_000 + 100 is ~10 s after the start.
        let t = tl.occurred_ns(50_100);
        assert!((t - T0 - 10 * NANOS_PER_SEC).abs() < NANOS_PER_SEC, "{t}");
        assert_eq!(timeline(0.0).end(), 50_000);
    }

    #[test]
    fn ties_duplicates_and_all_precisions_occur() {
        let tl = timeline(1.0);
        let (mut ties, mut dups) = (0, 0);
        let mut seen = [false; 3];
        for i in 1..50_000u64 {
            if tl.occurred_ns(i) == tl.occurred_ns(i - 1) {
                ties += 1;
            }
            if tl.is_duplicate(i) {
                dups += 1;
                assert!(!tl.is_duplicate(i - 1));
                assert_eq!(tl.source(i), i - 1);
            }
            let (t, p) = tl.occurred(i);
            seen[p as usize] = true;
            assert_eq!(t % p.quantum(), 0);
        }
        assert!(ties > 500, "{ties} ties");
        assert!((2..=40).contains(&dups), "{dups} duplicates");
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn binary_search_matches_a_linear_scan() {
        let tl = timeline(3.0);
        for probe in [0u64, 1, 17, 49_999, 50_000, 50_001, 60_123] {
            let t = tl.occurred_ns(probe);
            let first = tl.first_at_or_after(t);
            assert!(tl.occurred_ns(first) >= t);
            assert!(first == 0 || tl.occurred_ns(first - 1) < t);
            let after = tl.first_after(t);
            assert!(tl.occurred_ns(after) > t);
            assert!(tl.occurred_ns(after - 1) <= t);
        }
        assert_eq!(tl.first_at_or_after(i64::MIN), 0);
        assert_eq!(timeline(0.0).first_after(i64::MAX - 1), 50_000);
    }

    #[test]
    fn delay_is_bounded_by_the_lag() {
        let tl = timeline(1.0);
        let mut late = 0;
        for i in 0..10_000 {
            let d = tl.delay_ns(i);
            assert!((0..=300 * NANOS_PER_SEC).contains(&d));
            if d > 60 * NANOS_PER_SEC {
                late += 1;
            }
        }
        assert!(late > 100, "some events arrive late: {late}");
    }

    #[test]
    fn late_events_are_a_deterministic_fraction_delayed_past_the_lag() {
        let lag = 300 * NANOS_PER_SEC;
        let late_by = 600 * NANOS_PER_SEC;
        let tl = timeline(1.0).with_late(0.1, late_by);
        assert_eq!(
            tl.lag_ns(),
            lag + late_by,
            "the longest delay bounds visibility"
        );
        let again = timeline(1.0).with_late(0.1, late_by);
        let mut late = 0;
        for i in 0..20_000 {
            let d = tl.delay_ns(i);
            assert_eq!(d, again.delay_ns(i), "deterministic per index");
            if tl.is_late(i) {
                late += 1;
                assert!(d >= late_by && d <= lag + late_by, "{d}");
                assert!(!tl.visible(i, tl.occurred_ns(i) + lag));
                assert!(tl.visible(i, tl.occurred_ns(i) + lag + late_by));
            } else {
                assert!(d <= lag);
            }
        }
        assert!((1_700..2_300).contains(&late), "about 10%: {late}");
        assert_eq!(timeline(1.0).with_late(0.0, late_by).lag_ns(), lag);
    }
}
