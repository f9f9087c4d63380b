//! The scale-down delay (`autoscaling.knative.dev/scale-down-delay`): the highest
//! recommendation of the last `delay`, so a dip shorter than the delay never removes instances.
//!
//! Held per whole second as a decreasing sequence, so it keeps at most one entry per second of
//! the delay however often the decider runs. Never reads a clock.

use std::collections::VecDeque;
use std::time::Duration;

/// Running maximum of recommendations over the last `secs` whole seconds.
#[derive(Clone, Debug)]
pub(crate) struct MaxWindow {
    secs: u64,
    /// `(second, value)`, seconds strictly increasing, values strictly decreasing.
    entries: VecDeque<(u64, u32)>,
}

impl MaxWindow {
    /// A window of `delay`, rounded up to whole seconds; zero keeps nothing.
    pub(crate) fn new(delay: Duration) -> Self {
        Self {
            secs: ceil_secs(delay),
            entries: VecDeque::new(),
        }
    }

    /// Record `value` at `now` and return the highest value recorded in the `secs` seconds up
    /// to and including `now`'s second. A `now` older than the newest record counts as the
    /// newest record's second.
    pub(crate) fn apply(&mut self, now: Duration, value: u32) -> u32 {
        if self.secs == 0 {
            return value;
        }
        let newest = self.entries.back().map_or(0, |&(s, _)| s);
        let sec = now.as_secs().max(newest);
        while self.entries.back().is_some_and(|&(_, v)| v <= value) {
            self.entries.pop_back();
        }
        if self.entries.back().is_none_or(|&(s, _)| s < sec) {
            self.entries.push_back((sec, value));
        }
        while self
            .entries
            .front()
            .is_some_and(|&(s, _)| s.saturating_add(self.secs) <= sec)
        {
            self.entries.pop_front();
        }
        self.entries.front().map_or(value, |&(_, v)| v)
    }

    /// How many entries are held (at most the delay in whole seconds).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// `d` in whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn zero_delay_passes_through() {
        let mut w = MaxWindow::new(Duration::ZERO);
        assert_eq!(w.apply(at(1), 5), 5);
        assert_eq!(w.apply(at(2), 1), 1);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn holds_the_peak_for_the_delay() {
        let mut w = MaxWindow::new(at(10));
        assert_eq!(w.apply(at(100), 8), 8);
        assert_eq!(w.apply(at(102), 3), 8);
        assert_eq!(w.apply(at(109), 2), 8);
        assert_eq!(w.apply(at(110), 2), 3);
        assert_eq!(w.apply(at(112), 2), 2);
        assert_eq!(w.apply(at(113), 9), 9);
    }

    #[test]
    fn late_calls_count_as_the_newest_second() {
        let mut w = MaxWindow::new(at(5));
        w.apply(at(50), 4);
        assert_eq!(w.apply(at(10), 7), 7);
        assert_eq!(w.apply(at(54), 1), 7);
        assert_eq!(w.apply(at(55), 1), 1);
    }

    #[test]
    fn memory_is_one_entry_per_second_at_most() {
        let mut w = MaxWindow::new(at(3));
        for i in 0..1_000u64 {
            w.apply(Duration::from_millis(i * 250), (1_000 - i) as u32);
            assert!(w.len() <= 3);
        }
    }

    #[test]
    fn ceil_secs_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(ceil_secs(at(7)), 7);
        assert_eq!(ceil_secs(Duration::MAX), u64::MAX);
    }
}
