//! The runtime's shared bookkeeping: per revision, its spec, desired count and instance slots.
//!
//! Every change goes through [`Shared::update`], which afterwards publishes the revision's ready
//! endpoints — or, when it has none because its instances failed, that failure — (only when they
//! changed) and sends a [`RuntimeEvent`] (only when the status changed).
//! The lock is a plain mutex held for bookkeeping only, never across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use nimbus_runtime::{
    Endpoint, EndpointRegistry, InstanceSpec, LoadProbe, RevisionEndpoints, RevisionKey,
    RevisionRuntimeStatus, RuntimeEvent,
};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use nimbus_cgroup::Cgroups;

use crate::cgroup_pool::{CgroupPool, SpareLimits};
use crate::config::ProcessRuntimeConfig;
use crate::failure::Failure;
use crate::launcher::Launcher;
use crate::meter::Meter;
use crate::ports::PortAllocator;
use crate::status::{self, Candidate, Observed, Readiness};

/// Buffered events per subscriber before it lags.
const EVENT_BUFFER: usize = 1024;

/// State shared by the runtime handle and every instance supervisor.
pub(crate) struct Shared {
    pub config: ProcessRuntimeConfig,
    pub ports: Arc<PortAllocator>,
    pub registry: EndpointRegistry,
    pub events: broadcast::Sender<RuntimeEvent>,
    /// Requests in flight per endpoint, from the router; set once, after construction.
    pub load_probe: OnceLock<Arc<dyn LoadProbe>>,
    /// Where Secret and ConfigMap values are read at each start; set once, after construction.
    pub config_source: OnceLock<Arc<dyn nimbus_runtime::env::ConfigSource>>,
    /// Where OOM kills, liveness failures and restarts are reported; set once.
    pub notices: OnceLock<Arc<dyn nimbus_runtime::InstanceNotices>>,
    /// How instances are started (host process, container).
    pub launcher: Arc<dyn Launcher>,
    /// Distinguishes this runtime's cgroups and scratch directories from other runtimes'.
    pub tag: String,
    /// Where instance limits are enforced; `None` when cgroups are unavailable or disabled.
    pub cgroups: Option<Arc<CgroupPool>>,
    revisions: Mutex<Revisions>,
}

/// The revisions, and whether the runtime was shut down (then nothing new may start).
#[derive(Default)]
struct Revisions {
    map: HashMap<RevisionKey, RevisionState>,
    closed: bool,
}

/// One revision's instances.
pub(crate) struct RevisionState {
    pub spec: Arc<InstanceSpec>,
    pub desired: u32,
    /// Live instances (starting, ready, or waiting to restart) by ordinal.
    pub instances: BTreeMap<u64, Slot>,
    /// Supervisors of instances being stopped, awaited by `remove` and `shutdown`.
    pub stopping: Vec<JoinHandle<()>>,
    pub next_ordinal: u64,
    pub ever_ready: bool,
    /// The latest failure since an instance was last ready.
    pub last_failure: Option<Failure>,
    /// Restarts, OOM kills and cold-start phases, for `/metrics`.
    pub meter: Meter,
}

/// One live instance: its published endpoint (when ready) and its supervisor.
pub(crate) struct Slot {
    pub endpoint: Option<Endpoint>,
    /// Its latest attempt failed and it has not been ready since (it may be retrying).
    pub failed: bool,
    /// Dropping or sending on this tells the supervisor to stop.
    pub stop: oneshot::Sender<()>,
    pub task: JoinHandle<()>,
    /// Reads its current attempt's cgroup accounting (none before it starts or without cgroups).
    pub usage: Option<nimbus_cgroup::UsageReader>,
}

impl RevisionState {
    pub fn new(spec: InstanceSpec) -> Self {
        Self {
            spec: Arc::new(spec),
            desired: 0,
            instances: BTreeMap::new(),
            stopping: Vec::new(),
            next_ordinal: 1,
            ever_ready: false,
            last_failure: None,
            meter: Meter::default(),
        }
    }

    pub fn readiness(&self) -> Vec<(u64, Readiness)> {
        let of = |slot: &Slot| {
            if slot.endpoint.is_some() {
                Readiness::Ready
            } else {
                Readiness::NotReady
            }
        };
        self.instances
            .iter()
            .map(|(ordinal, slot)| (*ordinal, of(slot)))
            .collect()
    }

    pub fn status(&self) -> RevisionRuntimeStatus {
        let instances: Vec<Readiness> = self.readiness().into_iter().map(|(_, r)| r).collect();
        status::status(&Observed {
            desired: self.desired,
            instances: &instances,
            ever_ready: self.ever_ready,
            last_failure: self.last_failure.as_ref(),
        })
    }

    /// The instances as a scale-down sees them; `in_flight` by endpoint id.
    pub fn candidates(&self, in_flight: &HashMap<String, usize>) -> Vec<Candidate> {
        let load = |slot: &Slot| slot.endpoint.as_ref().and_then(|e| in_flight.get(&e.id));
        self.readiness()
            .into_iter()
            .zip(self.instances.values())
            .map(|((ordinal, readiness), slot)| Candidate {
                ordinal,
                readiness,
                in_flight: load(slot).copied().unwrap_or(0),
            })
            .collect()
    }

    /// The ready endpoints; when there are none and every instance's latest attempt failed
    /// (so none is about to become ready), the latest failure as `<Reason>: <message>`.
    pub fn endpoints(&self) -> RevisionEndpoints {
        let ready: Vec<Endpoint> = self
            .instances
            .values()
            .filter_map(|s| s.endpoint.clone())
            .collect();
        let failing = ready.is_empty()
            && !self.instances.is_empty()
            && self.instances.values().all(|s| s.failed);
        let failure = failing
            .then(|| self.last_failure.as_ref().map(Failure::summary))
            .flatten();
        RevisionEndpoints { ready, failure }
    }

    /// Take every instance out and return their supervisors, ready to be awaited. Dropping the
    /// slots' stop senders tells the supervisors to stop.
    pub fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        let mut tasks = std::mem::take(&mut self.stopping);
        tasks.extend(
            std::mem::take(&mut self.instances)
                .into_values()
                .map(|slot| slot.task),
        );
        tasks
    }
}

impl Shared {
    pub fn new(
        config: ProcessRuntimeConfig,
        launcher: Arc<dyn Launcher>,
        cgroups: Option<Cgroups>,
        registry: EndpointRegistry,
    ) -> Self {
        static RUNTIMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = RUNTIMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id());
        let stub = (!launcher.joins_cgroup_itself())
            .then(|| config.instance_stub.clone())
            .flatten();
        let limits = SpareLimits::default();
        let cgroups = cgroups
            .map(|c| CgroupPool::new(c, tag.clone(), config.default_pids_limit, stub, limits));
        Self {
            tag,
            launcher,
            cgroups,
            config,
            ports: Arc::default(),
            registry,
            events: broadcast::channel(EVENT_BUFFER).0,
            load_probe: OnceLock::new(),
            config_source: OnceLock::new(),
            notices: OnceLock::new(),
            revisions: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Revisions> {
        self.revisions.lock().expect("runtime state poisoned")
    }

    /// Bookkeeping that changes nothing published (metrics): `change` under the lock, no
    /// endpoint or status event afterwards.
    pub fn record<R>(
        &self,
        key: &RevisionKey,
        change: impl FnOnce(&mut RevisionState) -> R,
    ) -> Option<R> {
        self.lock().map.get_mut(key).map(change)
    }

    pub fn status(&self, key: &RevisionKey) -> Option<RevisionRuntimeStatus> {
        self.lock().map.get(key).map(RevisionState::status)
    }

    /// Apply `change` to the revision (created from `spec` if unknown), then publish. `None`
    /// once the runtime is shut down.
    pub fn upsert<R>(
        &self,
        spec: &InstanceSpec,
        change: impl FnOnce(&mut RevisionState) -> R,
    ) -> Option<R> {
        let mut revisions = self.lock();
        if revisions.closed {
            return None;
        }
        let created = !revisions.map.contains_key(&spec.revision);
        let revision = revisions
            .map
            .entry(spec.revision.clone())
            .or_insert_with(|| RevisionState::new(spec.clone()));
        Some(self.publish_after(&spec.revision, revision, change, created))
    }

    /// Apply `change` to a known revision, then publish. `None` if the revision is unknown.
    pub fn update<R>(
        &self,
        key: &RevisionKey,
        change: impl FnOnce(&mut RevisionState) -> R,
    ) -> Option<R> {
        let mut revisions = self.lock();
        let revision = revisions.map.get_mut(key)?;
        Some(self.publish_after(key, revision, change, false))
    }

    /// Forget one revision, or all of them and refuse new ones (`None`: shutdown), clearing
    /// their endpoints. Returns them so the caller can stop their instances outside the lock.
    pub fn take(&self, key: Option<&RevisionKey>) -> Vec<(RevisionKey, RevisionState)> {
        let mut revisions = self.lock();
        let keys: Vec<RevisionKey> = match key {
            Some(key) => revisions
                .map
                .contains_key(key)
                .then(|| key.clone())
                .into_iter()
                .collect(),
            None => {
                revisions.closed = true;
                revisions.map.keys().cloned().collect()
            }
        };
        let taken: Vec<_> = keys
            .into_iter()
            .filter_map(|k| revisions.map.remove_entry(&k))
            .collect();
        for (key, _) in &taken {
            self.registry.set(key, RevisionEndpoints::default());
            self.registry.forget_starts(key);
            let _ = self.events.send(RuntimeEvent {
                revision: key.clone(),
            });
        }
        taken
    }

    /// Abort every supervisor at once (their processes are killed as they are dropped).
    pub fn abort_all(&self) {
        for revision in self.lock().map.values_mut() {
            revision.stop_all().iter().for_each(JoinHandle::abort);
        }
    }

    fn publish_after<R>(
        &self,
        key: &RevisionKey,
        revision: &mut RevisionState,
        change: impl FnOnce(&mut RevisionState) -> R,
        created: bool,
    ) -> R {
        let (status, endpoints) = (revision.status(), revision.endpoints());
        let result = change(revision);
        if revision.endpoints() != endpoints {
            self.registry.set(key, revision.endpoints());
        }
        if created || revision.status() != status {
            let _ = self.events.send(RuntimeEvent {
                revision: key.clone(),
            });
        }
        result
    }
}
