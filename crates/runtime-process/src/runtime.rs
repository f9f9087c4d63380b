//! [`ProcessRuntime`]: the [`Runtime`] implementation. Reconciles each revision's instance slots
//! to the desired count (starting supervisors, stopping the least busy surplus) and answers
//! status queries. Stopping itself (drain, SIGTERM, SIGKILL) happens in the supervisors, in the
//! background; only `remove` and `shutdown` wait for it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use nimbus_runtime::{
    EndpointRegistry, InstanceSpec, LoadProbe, RevisionKey, RevisionRuntimeStatus, Runtime,
    RuntimeError, RuntimeEvent,
};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use nimbus_cgroup::Cgroups;

use crate::config::ProcessRuntimeConfig;
use crate::host::HostLauncher;
use crate::launcher::Launcher;
use crate::state::{RevisionState, Shared, Slot};
use crate::status;
use crate::supervisor::Supervisor;

/// Runs each revision instance as a local process group, listening on a loopback port.
///
/// Dropping the runtime kills every instance's process group at once (SIGKILL); call
/// [`Runtime::shutdown`] first for a graceful stop.
pub struct ProcessRuntime {
    shared: Arc<Shared>,
}

/// [`ProcessRuntime::set_load_probe`] was called a second time; the first probe stays.
#[derive(Debug, thiserror::Error)]
#[error("the process runtime already has a load probe")]
pub struct LoadProbeAlreadySet;

impl ProcessRuntime {
    /// A runtime of host processes (`runtimeClassName: process`), with cgroups detected under
    /// [`ProcessRuntimeConfig::cgroup_parent`]; when they are unavailable this says so (a
    /// warning) and instances run without limits.
    pub fn new(config: ProcessRuntimeConfig) -> Arc<Self> {
        let cgroups = config.cgroup_parent.as_deref().and_then(|parent| {
            Cgroups::detect(parent)
                .inspect_err(|e| tracing::warn!("instances run without resource limits: {e}"))
                .ok()
        });
        Self::with_launcher(
            config,
            Arc::new(HostLauncher::default()),
            EndpointRegistry::new(),
            cgroups,
        )
    }

    /// A runtime whose instances `launcher` starts (e.g. containers); everything else —
    /// ports, limits, probes, restarts, draining, logs — is the same as for host processes.
    /// Instances get their cgroups under `cgroups` (detected once by the caller, who may share
    /// them between runtimes; `None` runs without limits) and their ready endpoints are
    /// published into `registry` (shared with other runtimes, so one router sees them all).
    pub fn with_launcher(
        config: ProcessRuntimeConfig,
        launcher: Arc<dyn Launcher>,
        registry: EndpointRegistry,
        cgroups: Option<Cgroups>,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared: Arc::new(Shared::new(config, launcher, cgroups, registry)),
        })
    }

    /// Tell the runtime how many requests are in flight per endpoint (the router knows; it is
    /// created after the runtime, hence a setter). With a probe, a scale-down stops the least
    /// busy instances and, after unpublishing one, waits until it has no request in flight (at
    /// most [`ProcessRuntimeConfig::drain_timeout`]) before SIGTERM. Without one, instances are
    /// signalled as soon as they are unpublished. `in_flight` is called from async tasks and
    /// must be cheap and non-blocking.
    pub fn set_load_probe(&self, probe: Arc<dyn LoadProbe>) -> Result<(), LoadProbeAlreadySet> {
        self.shared
            .load_probe
            .set(probe)
            .map_err(|_| LoadProbeAlreadySet)
    }

    /// Where instances read the values of their Secret and ConfigMap references when they
    /// start (without one, an instance with references fails to start). Set once; a second
    /// call is ignored and returns `false`.
    pub fn set_config_source(&self, source: Arc<dyn nimbus_runtime::env::ConfigSource>) -> bool {
        self.shared.config_source.set(source).is_ok()
    }

    /// Report instances' OOM kills, liveness failures and restarts to `notices` (Kubernetes
    /// Events in the binary). Set once; a second call is ignored and returns `false`.
    pub fn set_notices(&self, notices: Arc<dyn nimbus_runtime::InstanceNotices>) -> bool {
        self.shared.notices.set(notices).is_ok()
    }

    /// Requests in flight per published endpoint id of `revision` (empty without a probe).
    /// Asked before taking the state lock, so the probe never runs under it.
    fn in_flight(&self, revision: &RevisionKey) -> HashMap<String, usize> {
        let probe = self.shared.load_probe.get();
        let endpoints = self.shared.registry.get(revision);
        let (Some(probe), Some(endpoints)) = (probe, endpoints) else {
            return HashMap::new();
        };
        let load = |e: &nimbus_runtime::Endpoint| (e.id.clone(), probe.in_flight(e));
        endpoints.ready.iter().map(load).collect()
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    async fn set_desired(&self, spec: &InstanceSpec, replicas: u32) -> Result<(), RuntimeError> {
        self.shared
            .launcher
            .validate(spec)
            .map_err(|message| RuntimeError::InvalidSpec {
                revision: spec.revision.clone(),
                message,
            })?;
        let shared = Arc::clone(&self.shared);
        let in_flight = self.in_flight(&spec.revision);
        let changed = self.shared.upsert(spec, |revision| {
            revision.desired = replicas;
            let surplus = reconcile(&shared, revision, &in_flight);
            (surplus, Arc::clone(&revision.spec))
        });
        let (surplus, spec) = changed.ok_or(RuntimeError::ShuttingDown)?;
        // The surplus's endpoints are unpublished by now; only then are they told to stop.
        surplus.into_iter().for_each(begin_stop);
        // A cold start later should find its cgroup made.
        if let Some(pool) = &self.shared.cgroups {
            pool.prewarm(&spec);
        }
        Ok(())
    }

    /// Stops the instances, then deletes the revision's logs (like a pod's, they go with it).
    async fn remove(&self, revision: &RevisionKey) {
        if let Some(pool) = &self.shared.cgroups {
            pool.forget(revision);
        }
        let taken = self.shared.take(Some(revision));
        let known = !taken.is_empty();
        stop_and_wait(taken).await;
        if let (true, Some(dir)) = (known, &self.shared.config.data_dir) {
            let logs = nimbus_logs::revision_dir(
                &nimbus_logs::logs_root(dir),
                &revision.namespace,
                &revision.name,
            );
            if let Err(e) = std::fs::remove_dir_all(&logs)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %logs.display(), "cannot remove a deleted revision's logs: {e}");
            }
        }
    }

    async fn run_task(
        &self,
        spec: &InstanceSpec,
        task: nimbus_runtime::TaskRun,
    ) -> nimbus_runtime::TaskOutcome {
        if let Err(message) = self.shared.launcher.validate(spec) {
            return nimbus_runtime::TaskOutcome {
                end: nimbus_runtime::TaskEnd::NotStarted {
                    reason: "InvalidSpec".into(),
                },
                exit_code: None,
                message,
            };
        }
        crate::task::run(Arc::clone(&self.shared), spec, task).await
    }

    fn status(&self, revision: &RevisionKey) -> Option<RevisionRuntimeStatus> {
        self.shared.status(revision)
    }

    fn metrics(&self, revision: &RevisionKey) -> Option<nimbus_runtime::RevisionMetrics> {
        self.shared.metrics(revision)
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.shared.events.subscribe()
    }

    fn endpoints(&self) -> EndpointRegistry {
        self.shared.registry.clone()
    }

    async fn shutdown(&self) {
        stop_and_wait(self.shared.take(None)).await;
        if let Some(pool) = &self.shared.cgroups {
            pool.forget_all();
        }
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        self.shared.abort_all();
    }
}

/// Start missing instances and take surplus ones (the least busy per `in_flight`) out of the
/// revision (their supervisors move to `stopping`). Returns the surplus's stop senders, to be
/// used once their endpoints are gone.
fn reconcile(
    shared: &Arc<Shared>,
    revision: &mut RevisionState,
    in_flight: &HashMap<String, usize>,
) -> Vec<oneshot::Sender<()>> {
    revision.stopping.retain(|task| !task.is_finished());
    let (live, desired) = (revision.instances.len(), revision.desired as usize);
    for _ in live..desired {
        start_instance(shared, revision);
    }
    let candidates = revision.candidates(in_flight);
    let surplus = status::victims(&candidates, live.saturating_sub(desired));
    let mut stops = Vec::with_capacity(surplus.len());
    for slot in surplus
        .into_iter()
        .filter_map(|ordinal| revision.instances.remove(&ordinal))
    {
        revision.stopping.push(slot.task);
        stops.push(slot.stop);
    }
    stops
}

fn start_instance(shared: &Arc<Shared>, revision: &mut RevisionState) {
    let ordinal = revision.next_ordinal;
    revision.next_ordinal += 1;
    let milestone = nimbus_runtime::Milestone::Scheduled;
    shared
        .registry
        .note_start(&revision.spec.revision, milestone);
    let (stop, task) = Supervisor::spawn(Arc::clone(shared), Arc::clone(&revision.spec), ordinal);
    revision.instances.insert(
        ordinal,
        Slot {
            endpoint: None,
            failed: false,
            stop,
            task,
            usage: None,
        },
    );
}

/// Tell an unpublished instance to stop. Its supervisor drains it first (waits for its in-flight
/// requests to finish), in the background.
fn begin_stop(stop: oneshot::Sender<()>) {
    let _ = stop.send(());
}

/// Stop every instance of the taken revisions and wait until their processes are gone.
async fn stop_and_wait(taken: Vec<(RevisionKey, RevisionState)>) {
    let tasks: Vec<JoinHandle<()>> = taken
        .into_iter()
        .flat_map(|(_, mut revision)| revision.stop_all())
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}
