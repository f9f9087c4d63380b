//! Per-revision request statistics, counted on the data path and read by the autoscaler.
//!
//! Counting a request that finds capacity is two relaxed atomic operations; waiting and cold
//! starts add a few more on the slow path. Nothing here locks, allocates or computes rates —
//! readers sample the counters and do their own maths.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Live counters for one revision. Shared (`Arc`) between the routing table and every request
/// in flight, and kept across reprogramming of the routes as long as some route names the
/// revision.
#[derive(Debug, Default)]
pub struct RevisionStats {
    in_flight: AtomicU64,
    requests: AtomicU64,
    /// Also the bound of the revision's wait queue (see [`RevisionStats::enqueue`]).
    queued: AtomicU64,
    cold_starts: AtomicU64,
    cold_start_wait_micros: AtomicU64,
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
    /// Requests waiting right now for an instance with free capacity (a subset of `in_flight`).
    pub queued: u64,
    /// Requests that waited for the revision to get its first ready instance and then got one
    /// (monotonic).
    pub cold_starts: u64,
    /// The total time those requests waited, in microseconds (monotonic; divide by
    /// `cold_starts` for the mean).
    pub cold_start_wait_micros: u64,
}

/// Counts one request as in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<RevisionStats>);

/// Counts one request as queued until dropped.
#[derive(Debug)]
pub(crate) struct Queued<'a>(&'a RevisionStats);

// === impl RevisionStats ===

impl RevisionStats {
    /// Requests currently in flight (concurrency), including queued ones.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests seen since the router started.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests waiting for capacity right now.
    pub fn queued(&self) -> u64 {
        // SeqCst pairs with `enqueue`: a released instance must see a waiter that is about to
        // look for capacity (see `capacity::Lease`'s drop).
        self.queued.load(Ordering::SeqCst)
    }

    /// Every counter at once.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            in_flight: self.in_flight(),
            requests: self.requests(),
            queued: self.queued(),
            cold_starts: self.cold_starts.load(Ordering::Relaxed),
            cold_start_wait_micros: self.cold_start_wait_micros.load(Ordering::Relaxed),
        }
    }

    /// Counts a new request; it stays in flight until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Counts a request as queued while the guard lives, unless `limit` requests already are.
    pub(crate) fn enqueue(&self, limit: usize) -> Option<Queued<'_>> {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < limit).then_some(q + 1)
            })
            .ok()
            .map(|_| Queued(self))
    }

    /// Records a request that waited `waited` for the revision's first instance.
    pub(crate) fn record_cold_start(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.cold_starts.fetch_add(1, Ordering::Relaxed);
        self.cold_start_wait_micros
            .fetch_add(micros, Ordering::Relaxed);
    }
}

// === impl InFlight ===

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Queued ===

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
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
        assert_eq!((stats.in_flight(), stats.requests()), (2, 2));
        drop(a);
        drop(b);
        assert_eq!((stats.in_flight(), stats.requests()), (0, 2));
    }

    #[test]
    fn queue_is_bounded_and_guards_release_their_place() {
        let stats = RevisionStats::default();
        let a = stats.enqueue(2).expect("room for the first");
        let _b = stats.enqueue(2).expect("room for the second");
        assert!(stats.enqueue(2).is_none(), "the third must be refused");
        assert_eq!(stats.queued(), 2);
        drop(a);
        assert!(stats.enqueue(2).is_some());
        assert!(stats.enqueue(0).is_none());
    }

    #[test]
    fn cold_starts_add_up() {
        let stats = RevisionStats::default();
        stats.record_cold_start(Duration::from_micros(1500));
        stats.record_cold_start(Duration::from_millis(2));
        let snap = stats.snapshot();
        assert_eq!((snap.cold_starts, snap.cold_start_wait_micros), (2, 3500));
    }
}
