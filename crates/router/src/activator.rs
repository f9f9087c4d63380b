//! The activator: the "wait for capacity" phase. A request that finds no instance with room
//! (the revision is at zero, or every instance is at its `containerConcurrency`) asks the
//! [`Activator`] for more instances and waits in the revision's bounded queue until an instance
//! has room, the revision's start fails, or its wait limit passes.
//!
//! Waiting costs no task and no allocation beyond the request's own future: a waiter sleeps on
//! the revision's `Notify` (signalled when one of its instances finishes a request), on the
//! endpoint registry's watch (signalled when any revision's endpoints change) and on its
//! deadline, then looks again. This module never starts instances itself.

use std::pin::pin;
use std::time::Duration;

use http::HeaderValue;
use nimbus_runtime::{Endpoint, RevisionKey};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::capacity::{Acquire, Lease};
use crate::error::ProxyError;
use crate::router::Inner;
use crate::table::Target;

/// The response header telling how long a request waited for its revision's first instance
/// (scale from zero), in milliseconds with three decimals, e.g. `x-nimbus-cold-start: 2.134`.
/// Absent when the request did not wait for a cold start.
pub const COLD_START_HEADER: &str = "x-nimbus-cold-start";

/// Asks for more instances of a revision. The autoscaler implements it; the router calls it
/// for every request that has to wait: when the revision has no ready instance (scale from
/// zero) and when every instance is at its `containerConcurrency` limit (a burst). It is also
/// called when the revision's latest start failed (the request then fails at once with the
/// failure), so the autoscaler may try again.
///
/// Called on the request path, possibly thousands of times a second during a burst: it must
/// return at once (record the demand, wake a loop) and never block or wait.
pub trait Activator: Send + Sync + 'static {
    /// A request for `revision` is waiting for capacity.
    fn activate(&self, revision: &RevisionKey);
}

impl<F> Activator for F
where
    F: Fn(&RevisionKey) + Send + Sync + 'static,
{
    fn activate(&self, revision: &RevisionKey) {
        self(revision)
    }
}

/// What one request's waiting amounted to, across its attempts.
#[derive(Debug, Default)]
pub(crate) struct Waited {
    /// The revision had no ready instance at some point while the request waited.
    pub cold: bool,
    pub total: Duration,
}

// === impl Waited ===

impl Waited {
    /// The [`COLD_START_HEADER`] value, when this was a cold start.
    pub fn cold_start_header(&self) -> Option<HeaderValue> {
        let millis = self.total.as_secs_f64() * 1000.0;
        self.cold
            .then(|| HeaderValue::try_from(format!("{millis:.3}")).ok())
            .flatten()
    }
}

// === impl Inner (the wait-for-capacity phase) ===

impl Inner {
    /// Phase 3+4 — wait for capacity and pick instance: claims the least-loaded ready
    /// instance of the target's revision with room (never `exclude`), waiting if there is none
    /// — at most until `end`, when the whole request must be over (its `timeoutSeconds` counts
    /// the wait, as Knative's activator does).
    pub(crate) async fn wait_for_capacity(
        &self,
        target: &Target,
        exclude: Option<&Endpoint>,
        end: Instant,
        waited: &mut Waited,
    ) -> Result<Lease, ProxyError> {
        let current = self.endpoints.get(&target.revision);
        let limit = target.container_concurrency;
        match target.capacity.try_acquire(current, limit, exclude) {
            Acquire::Leased(lease) => Ok(lease),
            outcome => {
                // At zero now, even if the activation below starts an instance before the
                // wait loop first looks (an in-process runtime scales on this thread).
                waited.cold |= matches!(outcome, Acquire::NoneReady) && exclude.is_none();
                self.queue(target, exclude, end, waited).await
            }
        }
    }

    /// The slow path: a place in the revision's queue, an activation, and the wait: at most
    /// `max_activation_wait` in all (across a retry's second wait) and never past `end`.
    async fn queue(
        &self,
        target: &Target,
        exclude: Option<&Endpoint>,
        end: Instant,
        waited: &mut Waited,
    ) -> Result<Lease, ProxyError> {
        let limit = self.config.max_queued_per_revision;
        let Some(_queued) = target.capacity.stats.enqueue(limit) else {
            return Err(ProxyError::QueueFull {
                revision: target.revision.clone(),
                limit,
            });
        };
        // Subscribe before looking, so no endpoint or route change between the two is missed.
        let changes = self.endpoints.watch();
        let routes = self.routes.subscribe();
        let started = Instant::now();
        self.activate(&target.revision);
        let max_wait = self.config.max_activation_wait;
        let budget = target.timeouts.total.min(max_wait);
        let deadline = end.min(started + max_wait.saturating_sub(waited.total));
        let result = self
            .wait_loop(target, exclude, (changes, routes), deadline, waited)
            .await;
        let this_wait = started.elapsed();
        target.capacity.stats.record_queue_wait(this_wait);
        waited.total += this_wait;
        result.map_err(|failure| wait_error(target, budget, failure))
    }

    /// Looks for capacity every time something may have freed some, until the deadline, or
    /// until no route sends traffic to the revision any more (a deleted service's request must
    /// not wait for instances that will never start).
    ///
    /// A waiter excluding an instance (a retry after it refused a connection) may take the
    /// wake-up for room freed on that very instance; as it refused connections nobody loses
    /// usable room, and the next release or endpoint change wakes a waiter again.
    async fn wait_loop(
        &self,
        target: &Target,
        exclude: Option<&Endpoint>,
        (mut changes, mut routes): (watch::Receiver<u64>, watch::Receiver<u64>),
        deadline: Instant,
        waited: &mut Waited,
    ) -> Result<Lease, WaitFailure> {
        let mut expired = pin!(tokio::time::sleep_until(deadline));
        loop {
            // Registered before looking, so a release between the look and the wait wakes us.
            let mut freed = pin!(target.capacity.waiters().freed.notified());
            freed.as_mut().enable();
            let current = self.endpoints.get(&target.revision);
            let limit = target.container_concurrency;
            let at_zero = match target.capacity.try_acquire(current, limit, exclude) {
                Acquire::Leased(lease) => return Ok(lease),
                Acquire::Failed(message) => return Err(WaitFailure::Failed(message)),
                Acquire::NoneReady => true,
                Acquire::Busy => false,
            };
            waited.cold |= at_zero && exclude.is_none();
            // Looked at after subscribing, so a route removed before the subscription (after the
            // request found its target) is seen here, and one removed later wakes the wait.
            if self.table.load().stats(&target.revision).is_none() {
                return Err(WaitFailure::Unrouted);
            }
            tokio::select! {
                () = &mut freed => {}
                () = endpoints_changed(&mut changes) => {}
                () = endpoints_changed(&mut routes) => {}
                () = &mut expired => return Err(WaitFailure::Expired { at_zero }),
            }
        }
    }

    fn activate(&self, revision: &RevisionKey) {
        if let Some(activator) = self.activator.load().as_deref() {
            activator.activate(revision);
        }
    }
}

/// Why a wait ended without an instance.
enum WaitFailure {
    /// The runtime reported the revision's start as failed.
    Failed(String),
    /// The deadline passed; `at_zero` if the revision had no ready instance at the last look.
    Expired { at_zero: bool },
    /// No route sends traffic to the revision any more.
    Unrouted,
}

fn wait_error(target: &Target, budget: Duration, failure: WaitFailure) -> ProxyError {
    let revision = target.revision.clone();
    match failure {
        WaitFailure::Failed(message) => ProxyError::RevisionFailed { revision, message },
        WaitFailure::Unrouted => ProxyError::Unrouted { revision },
        WaitFailure::Expired { at_zero: true } => ProxyError::NotReady {
            revision,
            waited: budget,
        },
        WaitFailure::Expired { at_zero: false } => ProxyError::AtCapacity {
            revision,
            waited: budget,
        },
    }
}

/// Resolves when the registry (or the route table) changes. The router holds both senders, so
/// the channels cannot close while requests wait; if one ever did, only other wake-ups remain.
async fn endpoints_changed(changes: &mut watch::Receiver<u64>) {
    if changes.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_start_header_has_three_decimals() {
        let waited = Waited {
            cold: true,
            total: Duration::from_micros(2134),
        };
        assert_eq!(waited.cold_start_header().unwrap(), "2.134");
        let warm = Waited {
            cold: false,
            total: Duration::from_millis(5),
        };
        assert!(warm.cold_start_header().is_none());
    }
}
