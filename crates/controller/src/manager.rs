//! The manager: a de-duplicating work queue fed by store changes, runtime events and a periodic
//! resync, drained by one worker that calls the reconcilers. One worker keeps reconciles of
//! related objects ordered, which is plenty for one machine.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use nimbus_api::constants::{LABEL_CONFIGURATION, LABEL_SERVICE};
use nimbus_api::{Kind, Object};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::context::Context;
use crate::error::ControllerError;
use crate::{configuration, revision, route, service};

/// Identifies one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// The owning object named by the standard labels (Revision → Configuration, Configuration
    /// and Route → Service), carried so a deletion can still wake its owner.
    pub owner: Option<String>,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            owner: None,
        }
    }

    pub fn of(obj: &Object) -> Self {
        let label = match obj.kind() {
            Kind::Revision => Some(LABEL_CONFIGURATION),
            Kind::Configuration | Kind::Route => Some(LABEL_SERVICE),
            Kind::Service => None,
        };
        let owner = label.and_then(|l| obj.metadata().labels.as_ref()?.get(l).cloned());
        Self {
            owner,
            ..Self::new(obj.kind(), obj.namespace(), obj.name())
        }
    }

    fn plain(&self) -> Self {
        Self {
            owner: None,
            ..self.clone()
        }
    }
}

/// How often everything is reconciled even without events.
const RESYNC: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs the reconcilers.
#[derive(Clone)]
pub struct Controller {
    ctx: Arc<Context>,
}

#[derive(Default)]
struct Queue {
    order: VecDeque<ObjectKey>,
    pending: HashSet<ObjectKey>,
}

impl Queue {
    fn push(&mut self, key: ObjectKey) {
        let key = key.plain();
        if self.pending.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    fn pop(&mut self) -> Option<ObjectKey> {
        let key = self.order.pop_front()?;
        self.pending.remove(&key);
        Some(key)
    }
}

impl Controller {
    pub fn new(ctx: Context) -> Self {
        Self { ctx: Arc::new(ctx) }
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Reconcile one object (or clean up after it if it no longer exists).
    pub async fn reconcile(&self, key: &ObjectKey) -> Result<(), ControllerError> {
        let ctx = &*self.ctx;
        let obj = ctx
            .resources
            .get(key.kind, &key.namespace, &key.name)
            .await?;
        match (key.kind, obj) {
            (Kind::Service, Some(Object::Service(s))) => service::reconcile(ctx, s).await,
            (Kind::Service, _) => service::cleanup(ctx, &key.namespace, &key.name).await,
            (Kind::Configuration, Some(Object::Configuration(c))) => {
                configuration::reconcile(ctx, c).await
            }
            (Kind::Configuration, _) => {
                configuration::cleanup(ctx, &key.namespace, &key.name).await
            }
            (Kind::Revision, Some(Object::Revision(r))) => revision::reconcile(ctx, r).await,
            (Kind::Revision, _) => revision::cleanup(ctx, &key.namespace, &key.name).await,
            (Kind::Route, Some(Object::Route(r))) => route::reconcile(ctx, r).await,
            (Kind::Route, _) => route::cleanup(ctx, &key.namespace, &key.name).await,
        }
    }

    /// Reconcile until the queue is empty (tests and start-up use this to converge).
    pub async fn settle(&self, max_rounds: usize) -> Result<(), ControllerError> {
        let mut queue = Queue::default();
        self.enqueue_all(&mut queue).await?;
        let mut rounds = 0;
        while let Some(key) = queue.pop() {
            rounds += 1;
            if rounds > max_rounds {
                break;
            }
            let before = ctx_version(&self.ctx).await;
            self.reconcile(&key).await?;
            if ctx_version(&self.ctx).await != before {
                self.enqueue_all(&mut queue).await?;
            }
        }
        Ok(())
    }

    /// Run until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut changes = self.ctx.resources.watch();
        let (runtime_tx, mut runtime_rx) = mpsc::unbounded_channel();
        self.forward_runtime_events(runtime_tx.clone());
        let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<ObjectKey>();
        let mut queue = Queue::default();
        let mut failures: HashMap<ObjectKey, u32> = HashMap::new();
        let mut resync = tokio::time::interval_at(Instant::now(), RESYNC);
        tokio::pin!(shutdown);
        loop {
            if let Some(key) = queue.pop() {
                self.work(key, &mut failures, &retry_tx).await;
                // Take in new events between items so bursts coalesce.
                while let Ok(k) = runtime_rx.try_recv() {
                    queue.push(k);
                }
                continue;
            }
            tokio::select! {
                _ = &mut shutdown => return,
                Some(key) = changes.next() => self.enqueue_related(&mut queue, key).await,
                Some(key) = runtime_rx.recv() => queue.push(key),
                Some(key) = retry_rx.recv() => queue.push(key),
                _ = resync.tick() => {
                    if let Err(e) = self.enqueue_all(&mut queue).await {
                        tracing::warn!(error = %e, "resync failed");
                    }
                }
            }
        }
    }

    async fn work(
        &self,
        key: ObjectKey,
        failures: &mut HashMap<ObjectKey, u32>,
        retry: &mpsc::UnboundedSender<ObjectKey>,
    ) {
        match self.reconcile(&key).await {
            Ok(()) => {
                failures.remove(&key);
            }
            Err(e) => {
                let n = failures.entry(key.clone()).or_insert(0);
                *n += 1;
                let delay = backoff(*n);
                tracing::warn!(kind = %key.kind, namespace = %key.namespace, name = %key.name, error = %e, retry_in = ?delay, "reconcile failed");
                let retry = retry.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = retry.send(key);
                });
            }
        }
    }

    /// Forwards runtime events as revision keys, gathered over [`RUNTIME_EVENT_BATCH`]: the
    /// status write a scale from zero causes then never competes for a CPU with the request
    /// that caused it, and a burst of instance changes costs one reconcile per revision.
    fn forward_runtime_events(&self, tx: mpsc::UnboundedSender<ObjectKey>) {
        for runtime in self.ctx.runtimes.values() {
            let mut rx = runtime.subscribe();
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(batch) = runtime_event_batch(&mut rx).await {
                    for revision in batch {
                        let key =
                            ObjectKey::new(Kind::Revision, &revision.namespace, &revision.name);
                        if tx.send(key).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }

    /// A change to `key` may change what its owner and the objects that refer to it should be.
    async fn enqueue_related(&self, queue: &mut Queue, key: ObjectKey) {
        let ns = key.namespace.clone();
        match (key.kind, &key.owner) {
            (Kind::Revision, Some(cfg)) => {
                queue.push(ObjectKey::new(Kind::Configuration, &ns, cfg))
            }
            (Kind::Configuration | Kind::Route, Some(svc)) => {
                queue.push(ObjectKey::new(Kind::Service, &ns, svc))
            }
            _ => {}
        }
        let dependents = match key.kind {
            Kind::Configuration | Kind::Revision => Some(Kind::Route),
            Kind::Route => Some(Kind::Revision),
            Kind::Service => None,
        };
        queue.push(key);
        if let Some(kind) = dependents
            && let Ok(objs) = self.ctx.resources.list(kind, Some(&ns)).await
        {
            for o in objs {
                queue.push(ObjectKey::of(&o));
            }
        }
    }

    async fn enqueue_all(&self, queue: &mut Queue) -> Result<(), ControllerError> {
        for kind in [
            Kind::Service,
            Kind::Configuration,
            Kind::Revision,
            Kind::Route,
        ] {
            for o in self.ctx.resources.list(kind, None).await? {
                queue.push(ObjectKey::of(&o));
            }
        }
        Ok(())
    }
}

/// A cheap fingerprint of the whole store's state, used by [`Controller::settle`].
async fn ctx_version(ctx: &Context) -> Vec<String> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        if let Ok(objs) = ctx.resources.list(kind, None).await {
            out.extend(
                objs.iter()
                    .map(|o| o.metadata().resource_version.clone().unwrap_or_default()),
            );
        }
    }
    out
}

/// How long runtime events are gathered before their revisions are reconciled.
const RUNTIME_EVENT_BATCH: Duration = Duration::from_millis(20);

/// The revisions named by the next runtime event and by those that follow it within
/// [`RUNTIME_EVENT_BATCH`]; `None` once the runtime is gone. A lagging receiver only missed
/// keys, which the periodic resync covers.
async fn runtime_event_batch(
    rx: &mut tokio::sync::broadcast::Receiver<nimbus_runtime::RuntimeEvent>,
) -> Option<HashSet<nimbus_runtime::RevisionKey>> {
    use tokio::sync::broadcast::error::RecvError;
    let first = loop {
        match rx.recv().await {
            Ok(event) => break event.revision,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    };
    let mut batch = HashSet::from([first]);
    let gathered = async {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    batch.insert(event.revision);
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
        let first = runtime_event_batch(&mut rx).await.unwrap();
        let names = |batch: HashSet<RevisionKey>| {
            let mut names: Vec<String> = batch.into_iter().map(|k| k.name).collect();
            names.sort();
            names
        };
        assert_eq!(names(first), ["a", "b", "c"]);
        let second = runtime_event_batch(&mut rx).await.unwrap();
        assert_eq!(names(second), ["d"]);
        sender.await.unwrap();
        assert!(runtime_event_batch(&mut rx).await.is_none(), "runtime gone");
    }
}
