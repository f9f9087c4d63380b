//! Per-second buckets of what a revision was asked to do, and the window averages the decider
//! reads from them.
//!
//! This module owns the only state that grows with traffic, so it also owns the memory bound:
//! it never holds more than the stable window plus [`SLACK`] seconds of buckets, however long
//! the revision runs and however samples arrive (late, early, overlapping, huge). It never reads
//! a clock; every method is told the time.

use std::collections::VecDeque;
use std::time::Duration;

/// Seconds kept beyond the stable window: the second in progress and one more for samples that
/// arrive slightly out of order.
pub(crate) const SLACK: usize = 2;

/// Largest value a sample may carry; larger (or infinite) values are clamped so sums over an
/// hour of buckets stay finite. No real revision comes near it.
pub(crate) const MAX_SAMPLE_VALUE: f64 = 1e12;

/// One second of observations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Bucket {
    /// In-flight requests integrated over the part of the second the samples covered
    /// (concurrency-seconds). Summing buckets and dividing by seconds gives average concurrency.
    pub(crate) concurrency: f64,
    /// Requests started within the second.
    pub(crate) requests: f64,
}

/// When the data seen by one window began, so that a window that has not filled yet is averaged
/// over the seconds it has rather than diluted by seconds before the first sample (Knative's
/// partial-window rule). A gap of a whole window without samples starts the count afresh.
#[derive(Clone, Debug)]
struct Span {
    secs: u64,
    since: Option<u64>,
    last: u64,
}

/// A ring of per-second [`Bucket`]s with the stable and panic window averages over it.
#[derive(Clone, Debug)]
pub(crate) struct Buckets {
    capacity: usize,
    first: u64,
    buckets: VecDeque<Bucket>,
    stable: Span,
    panic: Span,
}

/// The two observed values of one signal at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Observed {
    pub(crate) stable: f64,
    pub(crate) panic: f64,
}

// === impl Span ===

impl Span {
    fn new(secs: u64) -> Self {
        Self {
            secs,
            since: None,
            last: 0,
        }
    }

    fn saw(&mut self, sec: u64) {
        match self.since {
            Some(since) if sec < since => self.since = Some(sec),
            Some(_) if sec.saturating_sub(self.last) >= self.secs => self.since = Some(sec),
            Some(_) => {}
            None => self.since = Some(sec),
        }
        self.last = self.last.max(sec);
    }

    /// The whole seconds `[from, end)` this window averages over at `end`.
    fn range(&self, end: u64) -> Option<(u64, u64)> {
        let from = end.saturating_sub(self.secs).max(self.since?);
        (from < end).then_some((from, end))
    }
}

// === impl Buckets ===

impl Buckets {
    /// Buckets for a stable window of `stable_secs` and a panic window of `panic_secs` whole
    /// seconds (both at least 1; the panic window at most the stable one).
    pub(crate) fn new(stable_secs: u64, panic_secs: u64) -> Self {
        Self {
            capacity: usize::try_from(stable_secs).unwrap_or(usize::MAX) + SLACK,
            first: 0,
            buckets: VecDeque::new(),
            stable: Span::new(stable_secs),
            panic: Span::new(panic_secs),
        }
    }

    /// How many seconds of buckets are held.
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Spread one sample that ended at `end` and covered `period` over the seconds it covered:
    /// concurrency by the time it overlaps each second, requests in proportion to that time. A
    /// zero-length sample adds its requests to the second containing `end` and no concurrency.
    /// Parts older than the oldest held second are dropped. Values must already be clean
    /// (finite, ≥ 0, ≤ [`MAX_SAMPLE_VALUE`]).
    pub(crate) fn record(
        &mut self,
        end: Duration,
        concurrency: f64,
        requests: f64,
        period: Duration,
    ) {
        if period.is_zero() {
            self.add(
                end.as_secs(),
                Bucket {
                    concurrency: 0.0,
                    requests,
                },
            );
            return;
        }
        let horizon = Duration::from_secs(end.as_secs().saturating_sub(self.capacity as u64));
        let period_secs = period.as_secs_f64();
        let mut t = end.saturating_sub(period).max(horizon);
        while t < end {
            let sec = t.as_secs();
            let next = Duration::from_secs(sec.saturating_add(1)).min(end);
            if next <= t {
                break;
            }
            let overlap = (next - t).as_secs_f64();
            let share = (overlap / period_secs).min(1.0);
            self.add(
                sec,
                Bucket {
                    concurrency: concurrency * overlap,
                    requests: requests * share,
                },
            );
            t = next;
        }
    }

    /// Stable and panic averages of one signal over the whole seconds before `now`.
    pub(crate) fn observe(&self, now: Duration, signal: fn(&Bucket) -> f64) -> Observed {
        let end = now.as_secs();
        Observed {
            stable: self.average(self.stable.range(end), signal),
            panic: self.average(self.panic.range(end), signal),
        }
    }

    fn average(&self, range: Option<(u64, u64)>, signal: fn(&Bucket) -> f64) -> f64 {
        let Some((from, end)) = range else {
            return 0.0;
        };
        let sum: f64 = (from..end).filter_map(|s| self.get(s)).map(signal).sum();
        sum / (end - from) as f64
    }

    fn get(&self, sec: u64) -> Option<&Bucket> {
        let index = usize::try_from(sec.checked_sub(self.first)?).ok()?;
        self.buckets.get(index)
    }

    fn add(&mut self, sec: u64, value: Bucket) {
        // The last representable second has no end; ignoring it keeps the ring arithmetic exact.
        if sec == u64::MAX {
            return;
        }
        let Some(index) = self.slot(sec) else {
            return;
        };
        let bucket = &mut self.buckets[index];
        bucket.concurrency += value.concurrency;
        bucket.requests += value.requests;
        self.stable.saw(sec);
        self.panic.saw(sec);
    }

    /// The index of `sec`'s bucket, making room for it (and dropping the oldest) if it is newer
    /// than any held; `None` if it is older than the oldest held.
    fn slot(&mut self, sec: u64) -> Option<usize> {
        let end = self.first.saturating_add(self.buckets.len() as u64);
        if self.buckets.is_empty() || sec.saturating_sub(end) >= self.capacity as u64 {
            self.buckets.clear();
            self.first = sec;
            self.buckets.push_back(Bucket::default());
            return Some(0);
        }
        if sec < self.first {
            return None;
        }
        for _ in end..=sec {
            self.buckets.push_back(Bucket::default());
        }
        while self.buckets.len() > self.capacity {
            self.buckets.pop_front();
            self.first += 1;
        }
        usize::try_from(sec - self.first).ok()
    }
}

/// A sample value made safe to sum: NaN, negative and infinite become 0, huge is clamped.
pub(crate) fn clean(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value.min(MAX_SAMPLE_VALUE)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn concurrency(b: &Bucket) -> f64 {
        b.concurrency
    }

    fn requests(b: &Bucket) -> f64 {
        b.requests
    }

    #[test]
    fn a_sample_is_spread_over_the_seconds_it_covers() {
        let mut b = Buckets::new(60, 6);
        // 10 in flight for 2.5 s ending at 12.5 s, 5 requests.
        b.record(
            Duration::from_millis(12_500),
            10.0,
            5.0,
            Duration::from_millis(2_500),
        );
        assert_eq!(b.get(10).unwrap().concurrency, 10.0);
        assert_eq!(b.get(11).unwrap().concurrency, 10.0);
        assert_eq!(b.get(12).unwrap().concurrency, 5.0);
        assert_eq!(b.get(10).unwrap().requests, 2.0);
        assert_eq!(b.get(12).unwrap().requests, 1.0);
    }

    #[test]
    fn partial_window_averages_over_the_seconds_it_has() {
        let mut b = Buckets::new(60, 6);
        b.record(secs(101), 30.0, 0.0, secs(1));
        b.record(secs(102), 60.0, 0.0, secs(1));
        let o = b.observe(secs(102), concurrency);
        assert_eq!((o.stable, o.panic), (45.0, 45.0));
        // Seconds after the last sample count as zero.
        let o = b.observe(secs(104), concurrency);
        assert_eq!((o.stable, o.panic), (22.5, 22.5));
        // The panic window has moved past the data; the stable one has not.
        let o = b.observe(secs(109), concurrency);
        assert_eq!((o.stable, o.panic), (10.0, 0.0));
    }

    #[test]
    fn a_full_window_gap_restarts_the_partial_window() {
        let mut b = Buckets::new(10, 2);
        b.record(secs(1), 100.0, 0.0, secs(1));
        b.record(secs(21), 40.0, 0.0, secs(1));
        assert_eq!(b.observe(secs(21), concurrency).stable, 40.0);
    }

    #[test]
    fn zero_length_samples_carry_requests_only() {
        let mut b = Buckets::new(10, 2);
        b.record(Duration::from_millis(3_500), 9.0, 4.0, Duration::ZERO);
        assert_eq!(
            *b.get(3).unwrap(),
            Bucket {
                concurrency: 0.0,
                requests: 4.0
            }
        );
        assert_eq!(b.observe(secs(4), requests).stable, 4.0);
    }

    #[test]
    fn old_samples_are_dropped_and_memory_is_bounded() {
        let mut b = Buckets::new(10, 2);
        b.record(secs(1_000), 1.0, 1.0, secs(1));
        b.record(secs(10), 1.0, 1.0, secs(1));
        assert_eq!(b.len(), 1);
        b.record(secs(2_000), 1.0, 1.0, secs(1_000_000));
        assert_eq!(b.len(), 10 + SLACK);
        b.record(Duration::MAX, 1.0, 1.0, Duration::MAX);
        assert!(b.len() <= 10 + SLACK);
    }

    #[test]
    fn clean_makes_values_summable() {
        assert_eq!(clean(f64::NAN), 0.0);
        assert_eq!(clean(-3.0), 0.0);
        assert_eq!(clean(f64::INFINITY), 0.0);
        assert_eq!(clean(1e300), MAX_SAMPLE_VALUE);
        assert_eq!(clean(2.5), 2.5);
    }
}
