//! Per-revision request statistics, counted on the data path and read by the autoscaler.
//!
//! Counting a request that finds capacity is two relaxed atomic operations; waiting and cold
//! starts add a few more on the slow path. Nothing here locks, allocates or computes rates —
//! readers sample the counters and do their own maths.
//!
//! Beside the autoscaler's counters each revision keeps what `/metrics` shows about its data
//! path: responses by status class, the latency to the response head (queue wait included),
//! the queue waits and the cold-start waits, each a fixed-bucket [`Histogram`] recorded with
//! relaxed atomics. Recording a finished request adds one clock read, one bucket scan over
//! 16 integers and three relaxed `fetch_add`s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nimbus_metrics::{
    COLD_START_BUCKETS, CodeCounters, Histogram, HistogramSnapshot, LATENCY_BUCKETS,
};

/// Live counters for one revision. Shared (`Arc`) between the routing table and every request
/// in flight, and kept across reprogramming of the routes as long as some route names the
/// revision.
#[derive(Debug)]
pub struct RevisionStats {
    in_flight: AtomicU64,
    requests: AtomicU64,
    /// Also the bound of the revision's wait queue (see [`RevisionStats::enqueue`]).
    queued: AtomicU64,
    cold_starts: AtomicU64,
    cold_start_wait_micros: AtomicU64,
    codes: CodeCounters,
    latency: Histogram,
    queue_wait: Histogram,
    cold_start: Histogram,
}

impl Default for RevisionStats {
    fn default() -> Self {
        Self {
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            cold_starts: AtomicU64::new(0),
            cold_start_wait_micros: AtomicU64::new(0),
            codes: CodeCounters::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
            queue_wait: Histogram::new(LATENCY_BUCKETS),
            cold_start: Histogram::new(COLD_START_BUCKETS),
        }
    }
}

/// What `/metrics` shows of one revision's data path (read at scrape time).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataPathSnapshot {
    /// Answered requests per status class, `1xx` first (the router's own error answers
    /// included).
    pub codes: [u64; 5],
    /// From a request's arrival to its response head (or error), queue wait included.
    pub latency: HistogramSnapshot,
    /// Each wait in the revision's queue for an instance with room.
    pub queue_wait: HistogramSnapshot,
    /// The whole wait of each request that came in while the revision had no ready instance.
    pub cold_start: HistogramSnapshot,
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

    /// The status classes and histograms, for `/metrics`.
    pub fn data_path(&self) -> DataPathSnapshot {
        DataPathSnapshot {
            codes: self.codes.snapshot(),
            latency: self.latency.snapshot(),
            queue_wait: self.queue_wait.snapshot(),
            cold_start: self.cold_start.snapshot(),
        }
    }

    /// Records a request answered with `status` after `took` (arrival to response head).
    pub(crate) fn record_answer(&self, status: u16, took: Duration) {
        self.codes.record(status);
        self.latency.record(took);
    }

    /// Records one wait in the revision's queue.
    pub(crate) fn record_queue_wait(&self, waited: Duration) {
        self.queue_wait.record(waited);
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
        self.cold_start.record(waited);
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
        assert_eq!(stats.data_path().cold_start.count, 2);
    }

    #[test]
    fn answers_count_by_class_and_time() {
        let stats = RevisionStats::default();
        stats.record_answer(200, Duration::from_millis(2));
        stats.record_answer(503, Duration::from_secs(1));
        stats.record_queue_wait(Duration::from_millis(30));
        let dp = stats.data_path();
        assert_eq!(dp.codes, [0, 1, 0, 0, 1]);
        assert_eq!((dp.latency.count, dp.queue_wait.count), (2, 1));
        assert!((dp.latency.sum - 1.002).abs() < 1e-9);
    }
}
