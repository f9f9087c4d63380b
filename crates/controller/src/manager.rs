//! The manager: lists every object once, then watches from that list's resourceVersion (a
//! watch that falls behind resumes from the last event it saw; one whose history is gone lists
//! again), turns each change into the keys it concerns, and runs several workers over a work
//! queue that never reconciles one object twice at once.
//!
//! A reconcile returns an [`Action`] (reconcile again after a while, or wait for a change) or
//! an error whose kind decides the retry: a conflict is retried at once from fresh reads, an
//! unavailable API with exponential backoff. A periodic resync lists everything again and, in
//! embedded mode, sweeps for objects whose owner is gone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use nimbus_api::constants::{LABEL_CONFIGURATION, LABEL_REVISION, LABEL_ROUTE, LABEL_SERVICE};
use nimbus_api::{Kind, Object};
use tokio::sync::mpsc;

use crate::context::Context;
use crate::error::ControllerError;
use crate::queue::WorkQueue;
use crate::resources::{Action, Change, ResourceError, Retry};
use crate::telemetry::{ControllerMetrics, ReconcileTimes};
use crate::{configuration, gc, ingress, jobs, podautoscaler, revision, route, service};

/// Identifies one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn of(obj: &Object) -> Self {
        Self::new(obj.kind(), obj.namespace(), obj.name())
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A conflict is retried at once, but not in a tight loop.
const CONFLICT_DELAY: Duration = Duration::from_millis(5);
/// Retry of an error that cannot succeed until something else changes.
const SLOW_RETRY: Duration = Duration::from_secs(60);

/// Runs the reconcilers.
#[derive(Clone)]
pub struct Controller {
    ctx: Arc<Context>,
    queue: Arc<WorkQueue>,
    failures: Arc<Mutex<HashMap<ObjectKey, u32>>>,
    times: Arc<ReconcileTimes>,
}

impl Controller {
    pub fn new(ctx: Context) -> Self {
        Self {
            ctx: Arc::new(ctx),
            queue: Arc::new(WorkQueue::default()),
            failures: Arc::default(),
            times: Arc::default(),
        }
    }

    /// The work queue's depth and the reconcile durations so far, for `/metrics`.
    pub fn metrics(&self) -> ControllerMetrics {
        ControllerMetrics {
            queue_depth: self.queue.len(),
            reconcile: self.times.snapshot(),
        }
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Reconcile one object (or clean up after it if it no longer exists), timed.
    pub async fn reconcile(&self, key: &ObjectKey) -> Result<Action, ControllerError> {
        let began = std::time::Instant::now();
        let result = self.reconcile_untimed(key).await;
        self.times.record(key.kind, began.elapsed());
        result
    }

    async fn reconcile_untimed(&self, key: &ObjectKey) -> Result<Action, ControllerError> {
        let ctx = &*self.ctx;
        let obj = ctx
            .resources
            .get(key.kind, &key.namespace, &key.name)
            .await?;
        match (key.kind, obj) {
            (Kind::Service, Some(Object::Service(s))) => service::reconcile(ctx, s).await,
            (Kind::Configuration, Some(Object::Configuration(c))) => {
                configuration::reconcile(ctx, c).await
            }
            (Kind::Revision, Some(Object::Revision(r))) => revision::reconcile(ctx, r).await,
            (Kind::Revision, _) => revision::forget(ctx, &key.namespace, &key.name).await,
            (Kind::Route, Some(Object::Route(r))) => route::reconcile(ctx, r).await,
            (Kind::Route, _) => {
                ctx.tracker.forget(key);
                Ok(Action::await_change())
            }
            (Kind::Job, Some(Object::Job(j))) => jobs::job::reconcile(ctx, j).await,
            (Kind::Execution, Some(Object::Execution(e))) => {
                jobs::execution::reconcile(ctx, e).await
            }
            (Kind::Execution, _) => Ok(jobs::execution::forget(ctx, &key.namespace, &key.name)),
            (Kind::Schedule, Some(Object::Schedule(s))) => jobs::schedule::reconcile(ctx, s).await,
            (Kind::PodAutoscaler, obj) => podautoscaler::reconcile(ctx, key, obj).await,
            (Kind::Ingress, obj) => ingress::reconcile(ctx, key, obj).await,
            // Services and Configurations that are gone leave nothing to clean up here: their
            // children go with them through owner references.
            _ => Ok(Action::await_change()),
        }
    }

    /// Reconcile everything, then whatever that changes, until nothing is left to do (tests
    /// use this to converge). Fails when `max_rounds` reconciles were not enough: a reconcile
    /// that keeps changing what it reads is a bug.
    pub async fn settle(&self, max_rounds: usize) -> Result<(), ControllerError> {
        let listed = self.enqueue_all().await?;
        if self.ctx.config.garbage_collector {
            gc::sweep(&self.ctx).await?;
        }
        let mut changes = self.ctx.resources.watch(&self.ctx.config.kinds, listed);
        let mut rounds = 0;
        loop {
            while let Some(Some(change)) = changes.next().now_or_never() {
                self.on_change(change?, true).await?;
            }
            while let Some(rev) = self.ctx.removals.try_next_done() {
                self.queue
                    .add(ObjectKey::new(Kind::Revision, &rev.namespace, &rev.name));
            }
            let Some(key) = self.queue.try_get() else {
                if self.ctx.removals.any_running() {
                    if let Some(rev) = self.ctx.removals.next_done().await {
                        self.queue
                            .add(ObjectKey::new(Kind::Revision, &rev.namespace, &rev.name));
                    }
                    continue;
                }
                return Ok(());
            };
            rounds += 1;
            if rounds > max_rounds {
                self.queue.done(&key);
                return Err(ControllerError::NotSettled {
                    rounds: max_rounds,
                    queued: key.to_string(),
                });
            }
            let result = self.reconcile(&key).await;
            self.queue.done(&key);
            match result {
                Err(e) if e.retry() == Retry::Immediately => self.queue.add(key),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
    }

    /// Run until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        self.forward_runtime_events(events_tx.clone());
        self.forward_scaler_events(events_tx);
        for _ in 0..self.ctx.config.workers.max(1) {
            tokio::spawn(self.clone().work());
        }
        let mut resync = tokio::time::interval(self.ctx.config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        'list: loop {
            let listed = loop {
                match self.enqueue_all().await {
                    Ok(rv) => break rv,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list objects; retrying");
                        tokio::select! {
                            _ = &mut shutdown => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            };
            self.sweep_garbage();
            let mut changes = self.ctx.resources.watch(&self.ctx.config.kinds, listed);
            resync.reset();
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    change = changes.next() => match change {
                        Some(Ok(change)) => {
                            if let Err(e) = self.on_change(change, false).await {
                                tracing::warn!(error = %e, "cannot follow a change");
                            }
                        }
                        Some(Err(e)) => {
                            tracing::info!(error = %e, "watch ended; listing again");
                            continue 'list;
                        }
                        None => continue 'list,
                    },
                    Some(key) = events.recv() => self.add(key),
                    Some(rev) = self.ctx.removals.next_done() => {
                        self.queue.add(ObjectKey::new(Kind::Revision, &rev.namespace, &rev.name));
                    }
                    _ = resync.tick() => continue 'list,
                }
            }
        }
    }

    /// One worker: take a key, reconcile it, schedule what the result asks for.
    async fn work(self) {
        loop {
            let key = self.queue.get().await;
            let result = self.reconcile(&key).await;
            self.queue.done(&key);
            self.after(key, result);
        }
    }

    fn after(&self, key: ObjectKey, result: Result<Action, ControllerError>) {
        let delay = match result {
            Ok(action) => {
                self.lock_failures().remove(&key);
                action.requeue_after
            }
            Err(e) => {
                let n = {
                    let mut failures = self.lock_failures();
                    let n = failures.entry(key.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                let delay = match e.retry() {
                    Retry::Immediately => CONFLICT_DELAY,
                    Retry::Backoff => backoff(n),
                    Retry::Slowly => SLOW_RETRY,
                };
                let level_warn = !matches!(e.retry(), Retry::Immediately) || n > 3;
                if level_warn {
                    tracing::warn!(object = %key, error = %e, retry_in = ?delay, "reconcile failed");
                } else {
                    tracing::debug!(object = %key, error = %e, "reconcile raced another write; again");
                }
                Some(delay)
            }
        };
        if let Some(delay) = delay {
            let queue = self.queue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                queue.add(key);
            });
        }
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, u32>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue the objects a change concerns; a deletion also starts collecting what the deleted
    /// object owned (`inline`: before returning, else in a task of its own).
    async fn on_change(&self, change: Change, inline: bool) -> Result<(), ControllerError> {
        for key in keys_for(&self.ctx, &change.object) {
            self.add(key);
        }
        if !(change.deleted && self.ctx.config.garbage_collector) {
            return Ok(());
        }
        if inline {
            return gc::collect_dependents(&self.ctx, &change.object).await;
        }
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = gc::collect_dependents(&ctx, &change.object).await {
                tracing::warn!(object = %ObjectKey::of(&change.object), error = %e, "cannot collect what it owned");
            }
        });
        Ok(())
    }

    /// Queue `key` if this controller reconciles its kind.
    fn add(&self, key: ObjectKey) {
        if self.ctx.config.kinds.contains(&key.kind) {
            self.queue.add(key);
        }
    }

    /// Queue every object; returns the resourceVersion to watch from.
    async fn enqueue_all(&self) -> Result<u64, ResourceError> {
        let mut version = u64::MAX;
        for kind in self.ctx.config.kinds.clone() {
            let listed = self.ctx.resources.list(kind, None, &[]).await?;
            version = version.min(listed.resource_version);
            for o in &listed.items {
                self.queue.add(ObjectKey::of(o));
            }
        }
        // Ingresses deleted while nobody watched are still programmed: look at them again.
        if let Some(sink) = &self.ctx.ingress {
            for (namespace, name) in sink.programmed() {
                self.queue
                    .add(ObjectKey::new(Kind::Ingress, &namespace, &name));
            }
        }
        Ok(if version == u64::MAX { 0 } else { version })
    }

    /// Delete objects whose owner no longer exists (after a restart, or a watch that had to
    /// list again: deletions may have been missed).
    fn sweep_garbage(&self) {
        if !self.ctx.config.garbage_collector {
            return;
        }
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = gc::sweep(&ctx).await {
                tracing::warn!(error = %e, "garbage collection sweep failed");
            }
        });
    }

    /// Runtime events name revisions: their Revision and PodAutoscaler are reconciled,
    /// gathered over [`RUNTIME_EVENT_BATCH`] so the status writes a scale from zero causes run
    /// after the request that caused it, and a burst of instance changes costs one reconcile.
    fn forward_runtime_events(&self, tx: mpsc::UnboundedSender<ObjectKey>) {
        for runtime in self.ctx.runtimes.values() {
            let rx = runtime.subscribe();
            spawn_batched(rx, tx.clone(), |e: nimbus_runtime::RuntimeEvent| e.revision);
        }
    }

    /// The scaler's decisions are persisted in PodAutoscaler status.
    fn forward_scaler_events(&self, tx: mpsc::UnboundedSender<ObjectKey>) {
        spawn_batched(self.ctx.scaler.subscribe(), tx, |k| k);
    }
}

/// Forward each batch of revision keys from `rx` as Revision and PodAutoscaler keys.
fn spawn_batched<E: Clone + Send + 'static>(
    mut rx: tokio::sync::broadcast::Receiver<E>,
    tx: mpsc::UnboundedSender<ObjectKey>,
    revision_of: fn(E) -> nimbus_runtime::RevisionKey,
) {
    tokio::spawn(async move {
        while let Some(batch) = event_batch(&mut rx, revision_of).await {
            for rev in batch {
                for kind in [Kind::Revision, Kind::PodAutoscaler] {
                    if tx
                        .send(ObjectKey::new(kind, &rev.namespace, &rev.name))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
}

/// The objects to reconcile when `obj` changed: itself, its owner (whose status reflects
/// it), the objects that read it (tracked), and for a Revision its PodAutoscaler.
pub(crate) fn keys_for(ctx: &Context, obj: &Object) -> Vec<ObjectKey> {
    let ns = obj.namespace();
    let label = |k: &str| {
        obj.metadata()
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .cloned()
    };
    let mut keys = vec![ObjectKey::of(obj)];
    let owner = match obj.kind() {
        Kind::Configuration | Kind::Route => label(LABEL_SERVICE).map(|s| (Kind::Service, s)),
        Kind::Revision => label(LABEL_CONFIGURATION).map(|c| (Kind::Configuration, c)),
        Kind::PodAutoscaler => Some((
            Kind::Revision,
            label(LABEL_REVISION).unwrap_or_else(|| obj.name().to_string()),
        )),
        Kind::Ingress => label(LABEL_ROUTE).map(|r| (Kind::Route, r)),
        Kind::Execution => label(nimbus_api::jobs::LABEL_JOB).map(|j| (Kind::Job, j)),
        Kind::Service | Kind::Secret | Kind::ConfigMap | Kind::Job | Kind::Schedule => None,
        Kind::ScaledObject | Kind::TriggerAuthentication | Kind::Event => None,
        // Event sources are run by `nimbus-sources`, not reconciled here.
        Kind::RedisStreamSource
        | Kind::RabbitmqSource
        | Kind::RedisListSource
        | Kind::NatsJetStreamSource => None,
    };
    if let Some((kind, name)) = owner {
        keys.push(ObjectKey::new(kind, ns, &name));
    }
    if obj.kind() == Kind::Revision {
        keys.push(ObjectKey::new(Kind::PodAutoscaler, ns, obj.name()));
    }
    keys.extend(ctx.tracker.observers(&ObjectKey::of(obj)));
    keys
}

/// How long runtime and scaler events are gathered before their revisions are reconciled.
const RUNTIME_EVENT_BATCH: Duration = Duration::from_millis(20);

/// The revisions named by the next event and by those that follow it within
/// [`RUNTIME_EVENT_BATCH`]; `None` once the sender is gone. A lagging receiver only missed
/// keys, which the resync covers.
async fn event_batch<E: Clone>(
    rx: &mut tokio::sync::broadcast::Receiver<E>,
    revision_of: fn(E) -> nimbus_runtime::RevisionKey,
) -> Option<std::collections::HashSet<nimbus_runtime::RevisionKey>> {
    use tokio::sync::broadcast::error::RecvError;
    let first = loop {
        match rx.recv().await {
            Ok(event) => break revision_of(event),
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    };
    let mut batch = std::collections::HashSet::from([first]);
    let gathered = async {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    batch.insert(revision_of(event));
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            }
        }
    };
    let _ = tokio::time::timeout(RUNTIME_EVENT_BATCH, gathered).await;
    Some(batch)
}

fn backoff(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << failures.min(10));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_runtime::{RevisionKey, RuntimeEvent};
    use std::collections::HashSet;

    fn event(name: &str) -> RuntimeEvent {
        RuntimeEvent {
            revision: RevisionKey::new("default", name),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runtime_events_are_gathered_per_revision_for_a_moment() {
        let (tx, mut rx) = tokio::sync::broadcast::channel(16);
        for name in ["a", "b", "a"] {
            tx.send(event(name)).unwrap();
        }
        let sender = tokio::spawn(async move {
            tokio::time::sleep(RUNTIME_EVENT_BATCH / 2).await;
            tx.send(event("c")).unwrap();
            tokio::time::sleep(RUNTIME_EVENT_BATCH * 2).await;
            tx.send(event("d")).unwrap();
        });
        let of = |e: RuntimeEvent| e.revision;
        let first = event_batch(&mut rx, of).await.unwrap();
        let names = |batch: HashSet<RevisionKey>| {
            let mut names: Vec<String> = batch.into_iter().map(|k| k.name).collect();
            names.sort();
            names
        };
        assert_eq!(names(first), ["a", "b", "c"]);
        let second = event_batch(&mut rx, of).await.unwrap();
        assert_eq!(names(second), ["d"]);
        sender.await.unwrap();
        assert!(event_batch(&mut rx, of).await.is_none(), "runtime gone");
    }
}
