//! The controller's own figures for `/metrics`: how long reconciles take, per kind, and how
//! many objects wait in the work queue. Recorded with relaxed atomics around each reconcile;
//! read at scrape time.

use std::time::Duration;

use nimbus_api::Kind;
use nimbus_metrics::{Histogram, HistogramSnapshot, SLOW_BUCKETS};

/// Reconcile durations, one histogram per kind (the kinds fixed at start: no lookup into a
/// growing map, no lock).
#[derive(Debug)]
pub(crate) struct ReconcileTimes(Vec<(Kind, Histogram)>);

/// The controller's figures at one moment.
#[derive(Clone, Debug, Default)]
pub struct ControllerMetrics {
    /// Objects waiting in the work queue (not counting those being reconciled).
    pub queue_depth: usize,
    /// Reconcile durations (successful or not) of each kind reconciled at least once.
    pub reconcile: Vec<(Kind, HistogramSnapshot)>,
}

// === impl ReconcileTimes ===

impl Default for ReconcileTimes {
    fn default() -> Self {
        let all = Kind::ALL.iter().map(|&k| (k, Histogram::new(SLOW_BUCKETS)));
        Self(all.collect())
    }
}

impl ReconcileTimes {
    pub fn record(&self, kind: Kind, took: Duration) {
        if let Some((_, h)) = self.0.iter().find(|(k, _)| *k == kind) {
            h.record(took);
        }
    }

    pub fn snapshot(&self) -> Vec<(Kind, HistogramSnapshot)> {
        let all = self.0.iter().map(|(k, h)| (*k, h.snapshot()));
        all.filter(|(_, s)| s.count > 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reconciled_kinds_are_shown() {
        let times = ReconcileTimes::default();
        times.record(Kind::Route, Duration::from_millis(2));
        times.record(Kind::Route, Duration::from_millis(4));
        let snap = times.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!((snap[0].0, snap[0].1.count), (Kind::Route, 2));
    }
}
