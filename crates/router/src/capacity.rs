//! Instance capacity of one revision: an in-flight counter per ready instance, the
//! `containerConcurrency` limit, and the pick of the least-loaded instance with room.
//!
//! Each revision's [`Capacity`] lives in the routing table and survives table rebuilds. It keeps
//! a cached list of [`Slot`]s (one per ready endpoint, holding its in-flight counter) that is
//! refreshed whenever the registry publishes a new endpoint list for the revision; a slot whose
//! endpoint left the registry while requests were still in flight is kept (draining) until
//! the next refresh finds it idle, so its counter stays visible to the runtime's drain.
//!
//! Each slot also holds its instance's pool of idle HTTP/1.1 connections (`pool.rs`), so the
//! proxy phase reaches them through the lease without a lookup.
//!
//! Taking capacity is lock-free: one registry load, one cache load, a scan of the ready slots
//! and one compare-and-swap. Only a refresh locks (once per registry change). This module
//! never waits and never performs I/O; the activator (`activator.rs`) waits on top of it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::{ArcSwap, Guard};
use nimbus_runtime::{Endpoint, RevisionEndpoints, RevisionKey};
use tokio::sync::Notify;

use crate::pool::{Http1Pool, PoolSettings};
use crate::stats::{InFlight, RevisionStats};

/// The capacity state of one revision.
#[derive(Debug)]
pub(crate) struct Capacity {
    /// Which revision this is (its instances' slots share it).
    revision: Arc<RevisionKey>,
    pub stats: Arc<RevisionStats>,
    waiters: Arc<Waiters>,
    instances: ArcSwap<Instances>,
    refresh: Mutex<()>,
    /// Where the next scan starts, so ties between equally loaded instances go round-robin.
    next: AtomicUsize,
}

/// What requests waiting for this revision wait on.
#[derive(Debug)]
pub(crate) struct Waiters {
    /// Its `queued` counter tells a releasing request whether anybody waits.
    stats: Arc<RevisionStats>,
    /// Signalled (one waiter at a time) whenever an instance finishes a request.
    pub freed: Notify,
}

/// The slots for one published endpoint list.
#[derive(Debug, Default)]
struct Instances {
    /// The registry entry these slots were built from (`None`: the revision had no entry).
    source: Option<Arc<RevisionEndpoints>>,
    ready: Vec<Arc<Slot>>,
    /// Endpoints gone from the registry that still had requests in flight at the refresh.
    draining: Vec<Arc<Slot>>,
}

/// One instance, the requests it is serving and its idle keep-alive connections.
#[derive(Debug)]
struct Slot {
    revision: Arc<RevisionKey>,
    endpoint: Endpoint,
    in_flight: AtomicUsize,
    waiters: Arc<Waiters>,
    /// Made on first use (instances reached over h2c never need one).
    pool: OnceLock<Arc<Http1Pool>>,
}

/// One request's claim on one instance: counted in the instance's in-flight until dropped.
#[derive(Debug)]
pub(crate) struct Lease(Arc<Slot>);

/// Everything a request holds while its response is being sent: the revision's in-flight count
/// and the instance's. Dropped when the response body ends or the upgraded connection closes.
#[derive(Debug)]
pub(crate) struct Permit {
    _request: InFlight,
    instance: Lease,
}

/// The outcome of trying to take capacity.
#[derive(Debug)]
pub(crate) enum Acquire {
    /// An instance with room was claimed.
    Leased(Lease),
    /// Instances are ready but all are at their `containerConcurrency` limit.
    Busy,
    /// No (eligible) instance is ready.
    NoneReady,
    /// No instance is ready because the revision's latest start failed (the runtime's message).
    Failed(String),
}

// === impl Capacity ===

impl Capacity {
    pub fn new(revision: RevisionKey, stats: Arc<RevisionStats>) -> Self {
        let waiters = Arc::new(Waiters {
            stats: Arc::clone(&stats),
            freed: Notify::new(),
        });
        Self {
            revision: Arc::new(revision),
            stats,
            waiters,
            instances: ArcSwap::default(),
            refresh: Mutex::default(),
            next: AtomicUsize::new(0),
        }
    }

    /// What waiting requests of this revision wait on.
    pub fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    /// Claims the least-loaded instance of `current` (the registry's entry for the revision)
    /// with fewer than `limit` requests in flight (`0` = unlimited), skipping `exclude`.
    pub fn try_acquire(
        &self,
        current: Option<Arc<RevisionEndpoints>>,
        limit: u32,
        exclude: Option<&Endpoint>,
    ) -> Acquire {
        let instances = self.instances_for(current);
        let eligible = |slot: &&Arc<Slot>| exclude.is_none_or(|ex| slot.endpoint != *ex);
        if !instances.ready.iter().any(|s| eligible(&s)) {
            return match instances.source.as_ref().and_then(|s| s.failure.as_ref()) {
                Some(failure) if instances.ready.is_empty() => Acquire::Failed(failure.clone()),
                _ => Acquire::NoneReady,
            };
        }
        let limit = limit_of(limit);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Each failed claim means another request took that room, so this loop makes progress.
        loop {
            let Some(slot) = least_loaded(&instances.ready, start, limit, &eligible) else {
                return Acquire::Busy;
            };
            if slot.try_claim(limit) {
                return Acquire::Leased(Lease(Arc::clone(slot)));
            }
        }
    }

    /// Requests in flight to `endpoint` (0 when this revision does not know it).
    pub fn in_flight(&self, endpoint: &Endpoint) -> usize {
        let instances = self.instances.load();
        instances
            .ready
            .iter()
            .chain(&instances.draining)
            .filter(|s| s.endpoint == *endpoint)
            .map(|s| s.in_flight.load(Ordering::SeqCst))
            .sum()
    }

    /// The slots for `current`, rebuilt (under the refresh lock) when the registry changed.
    fn instances_for(&self, current: Option<Arc<RevisionEndpoints>>) -> Guard<Arc<Instances>> {
        let cached = self.instances.load();
        if same_source(&cached.source, &current) {
            return cached;
        }
        drop(cached);
        let _refreshing = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = self.instances.load_full();
        if same_source(&cached.source, &current) {
            return Guard::from_inner(cached);
        }
        let next = Arc::new(cached.refreshed(current, &self.revision, &self.waiters));
        self.instances.store(Arc::clone(&next));
        Guard::from_inner(next)
    }
}

fn limit_of(container_concurrency: u32) -> usize {
    match container_concurrency {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

fn same_source(a: &Option<Arc<RevisionEndpoints>>, b: &Option<Arc<RevisionEndpoints>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The eligible slot with the fewest requests in flight and room below `limit`, scanning from
/// `start` so that ties go round-robin.
fn least_loaded<'s>(
    ready: &'s [Arc<Slot>],
    start: usize,
    limit: usize,
    eligible: &impl Fn(&&Arc<Slot>) -> bool,
) -> Option<&'s Arc<Slot>> {
    let n = ready.len();
    let mut best: Option<(&Arc<Slot>, usize)> = None;
    for i in 0..n {
        let slot = &ready[(start.wrapping_add(i)) % n];
        if !eligible(&slot) {
            continue;
        }
        let load = slot.in_flight.load(Ordering::SeqCst);
        if load < limit && best.is_none_or(|(_, b)| load < b) {
            best = Some((slot, load));
        }
    }
    best.map(|(slot, _)| slot)
}

// === impl Instances ===

impl Instances {
    /// Slots for `current`, reusing (with their counters) those of endpoints still present and
    /// keeping the busy ones of endpoints that left.
    fn refreshed(
        &self,
        current: Option<Arc<RevisionEndpoints>>,
        revision: &Arc<RevisionKey>,
        waiters: &Arc<Waiters>,
    ) -> Self {
        let mut old: HashMap<&Endpoint, &Arc<Slot>> = self
            .ready
            .iter()
            .chain(&self.draining)
            .map(|s| (&s.endpoint, s))
            .collect();
        let ready: Vec<Arc<Slot>> = current
            .iter()
            .flat_map(|c| &c.ready)
            .map(|endpoint| match old.remove(endpoint) {
                Some(slot) => Arc::clone(slot),
                None => Arc::new(Slot::new(revision, endpoint.clone(), waiters)),
            })
            .collect();
        let draining = old
            .into_values()
            .filter(|s| s.in_flight.load(Ordering::SeqCst) > 0)
            .cloned()
            .collect();
        Self {
            source: current,
            ready,
            draining,
        }
    }
}

// === impl Slot ===

impl Slot {
    fn new(revision: &Arc<RevisionKey>, endpoint: Endpoint, waiters: &Arc<Waiters>) -> Self {
        Self {
            revision: Arc::clone(revision),
            in_flight: AtomicUsize::new(0),
            waiters: Arc::clone(waiters),
            pool: OnceLock::new(),
            endpoint,
        }
    }

    /// Counts one more request unless `limit` are already in flight.
    fn try_claim(&self, limit: usize) -> bool {
        if limit == usize::MAX {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }
}

// === impl Lease ===

impl Lease {
    /// The instance this lease is on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.0.endpoint
    }

    /// The keep-alive HTTP/1.1 connections to the instance at `addr` (its endpoint's address),
    /// kept as `settings` say.
    pub fn pool(&self, addr: SocketAddr, settings: PoolSettings) -> &Arc<Http1Pool> {
        self.0
            .pool
            .get_or_init(|| Arc::new(Http1Pool::new(addr, settings)))
    }

    /// Bundles the lease with the request's revision-level in-flight guard.
    pub fn into_permit(self, request: InFlight) -> Permit {
        Permit {
            _request: request,
            instance: self,
        }
    }
}

// === impl Permit ===

impl Permit {
    /// The instance serving the request.
    pub fn endpoint(&self) -> &Endpoint {
        self.instance.endpoint()
    }

    /// The revision the instance belongs to.
    pub fn revision(&self) -> &RevisionKey {
        &self.instance.0.revision
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        // SeqCst on both sides: either a waiter that just enqueued sees the freed room when it
        // looks, or this load sees the waiter and wakes one.
        if self.0.waiters.stats.queued() > 0 {
            self.0.waiters.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_runtime::Protocol;

    fn ep(port: u16) -> Endpoint {
        Endpoint::tcp(
            format!("i{port}"),
            ([127, 0, 0, 1], port).into(),
            Protocol::Http1,
        )
    }

    fn ready(ports: &[u16]) -> Option<Arc<RevisionEndpoints>> {
        Some(Arc::new(RevisionEndpoints {
            ready: ports.iter().map(|p| ep(*p)).collect(),
            failure: None,
        }))
    }

    fn capacity() -> Capacity {
        Capacity::new(RevisionKey::new("default", "r-1"), Arc::default())
    }

    #[track_caller]
    fn leased(outcome: Acquire) -> Lease {
        match outcome {
            Acquire::Leased(lease) => lease,
            other => panic!("expected a lease, got {other:?}"),
        }
    }

    fn port(lease: &Lease) -> u16 {
        lease.endpoint().addr().unwrap().port()
    }

    #[test]
    fn idle_instances_are_picked_round_robin() {
        let cap = capacity();
        let current = ready(&[1, 2, 3]);
        let picked: Vec<u16> = (0..6)
            .map(|_| port(&leased(cap.try_acquire(current.clone(), 0, None))))
            .collect();
        assert_eq!(picked, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn the_least_loaded_instance_wins_over_round_robin() {
        let cap = capacity();
        let current = ready(&[1, 2]);
        let _a = leased(cap.try_acquire(current.clone(), 0, None));
        let b = leased(cap.try_acquire(current.clone(), 0, None));
        let _c = leased(cap.try_acquire(current.clone(), 0, None));
        assert_eq!((cap.in_flight(&ep(1)), cap.in_flight(&ep(2))), (2, 1));
        drop(b);
        let d = leased(cap.try_acquire(current.clone(), 0, None));
        let e = leased(cap.try_acquire(current.clone(), 0, None));
        assert_eq!((port(&d), port(&e)), (2, 2));
    }

    #[test]
    fn container_concurrency_is_a_hard_limit() {
        let cap = capacity();
        let current = ready(&[1, 2]);
        let a = leased(cap.try_acquire(current.clone(), 1, None));
        let b = leased(cap.try_acquire(current.clone(), 1, None));
        assert_ne!(port(&a), port(&b));
        assert!(matches!(
            cap.try_acquire(current.clone(), 1, None),
            Acquire::Busy
        ));
        let freed = port(&a);
        drop(a);
        assert_eq!(port(&leased(cap.try_acquire(current, 1, None))), freed);
    }

    #[test]
    fn excluded_instances_are_skipped() {
        let cap = capacity();
        let current = ready(&[1, 2]);
        for _ in 0..4 {
            let lease = leased(cap.try_acquire(current.clone(), 0, Some(&ep(1))));
            assert_eq!(port(&lease), 2);
        }
        let only_dead = ready(&[1]);
        assert!(matches!(
            cap.try_acquire(only_dead, 0, Some(&ep(1))),
            Acquire::NoneReady
        ));
    }

    #[test]
    fn no_instance_is_none_ready_or_the_failure() {
        let cap = capacity();
        assert!(matches!(cap.try_acquire(None, 0, None), Acquire::NoneReady));
        let failed = Some(Arc::new(RevisionEndpoints {
            ready: vec![],
            failure: Some("exit status 3".into()),
        }));
        match cap.try_acquire(failed, 0, None) {
            Acquire::Failed(message) => assert_eq!(message, "exit status 3"),
            other => panic!("expected the failure, got {other:?}"),
        }
    }

    #[test]
    fn counters_survive_refreshes_and_busy_leavers_keep_draining() {
        let cap = capacity();
        let lease = leased(cap.try_acquire(ready(&[1]), 1, None));
        // A new list that still has endpoint 1: its counter (and so its limit) carries over.
        assert!(matches!(
            cap.try_acquire(ready(&[1]), 1, None),
            Acquire::Busy
        ));
        // Endpoint 1 leaves while busy: still counted, so a drain can wait for it.
        let _other = leased(cap.try_acquire(ready(&[2]), 1, None));
        assert_eq!(cap.in_flight(&ep(1)), 1);
        // ... and comes back before finishing: its limit still holds.
        let both = ready(&[1, 2]);
        assert!(matches!(cap.try_acquire(both, 1, None), Acquire::Busy));
        drop(lease);
        assert_eq!(cap.in_flight(&ep(1)), 0);
        // Once idle and gone, it is forgotten.
        let _ = cap.try_acquire(ready(&[2]), 1, None);
        assert!(cap.instances.load().draining.is_empty());
    }

    #[tokio::test]
    async fn releasing_wakes_a_waiter() {
        let cap = capacity();
        let lease = leased(cap.try_acquire(ready(&[1]), 1, None));
        let _queued = cap.stats.enqueue(10).unwrap();
        let freed = cap.waiters().freed.notified();
        drop(lease);
        tokio::time::timeout(std::time::Duration::from_secs(5), freed)
            .await
            .expect("the release must notify");
    }
}
