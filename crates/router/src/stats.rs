//! Per-revision request statistics, counted on the data path and read by the autoscaler.
//!
//! Counting is two relaxed atomic operations per request; nothing here locks, allocates or
//! computes rates — readers sample the counters and do their own maths.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters for one revision. Shared (`Arc`) between the routing table and every request
/// in flight, and kept across reprogramming of the routes as long as some route names the
/// revision.
#[derive(Debug, Default)]
pub struct RevisionStats {
    in_flight: AtomicU64,
    requests: AtomicU64,
}

/// A point-in-time copy of [`RevisionStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests routed to the revision and not finished yet (including ones waiting for an
    /// instance).
    pub in_flight: u64,
    /// Requests routed to the revision since the router started (monotonic; diff two samples
    /// for a rate).
    pub requests: u64,
}

/// Counts one request as in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<RevisionStats>);

// === impl RevisionStats ===

impl RevisionStats {
    /// Requests currently in flight (concurrency).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests seen since the router started.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Both counters at once.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            in_flight: self.in_flight(),
            requests: self.requests(),
        }
    }

    /// Counts a new request; it stays in flight until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

// === impl InFlight ===

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_in_flight_until_dropped() {
        let stats = Arc::new(RevisionStats::default());
        let a = stats.start();
        let b = stats.start();
        assert_eq!(
            stats.snapshot(),
            StatsSnapshot {
                in_flight: 2,
                requests: 2
            }
        );
        drop(a);
        drop(b);
        assert_eq!(
            stats.snapshot(),
            StatsSnapshot {
                in_flight: 0,
                requests: 2
            }
        );
    }
}
