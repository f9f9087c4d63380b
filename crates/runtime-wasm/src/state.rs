//! The runtime's bookkeeping: per revision, its spec, desired count, component (loading,
//! loaded or failed) and running instances.
//!
//! Every change goes through [`Shared::update`] or [`Shared::upsert`], which afterwards
//! publish the revision's endpoints (only when they changed) and send a [`RuntimeEvent`] (only
//! when the status changed). The lock is held for bookkeeping only (short and synchronous:
//! starting an instance is an allocation), never across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use nimbus_runtime::env::CONFIG_ERROR_REASON;
use nimbus_runtime::{
    Endpoint, EndpointRegistry, InstanceSpec, LocalHandle, RevisionEndpoints, RevisionKey,
    RevisionPhase, RevisionRuntimeStatus, RuntimeEvent,
};
use tokio::sync::broadcast;
use wasmtime::component::Linker;

use crate::config::WasmRuntimeConfig;
use crate::engine::EpochTicker;
use crate::handler::App;
use crate::host::Host;
use crate::instance::{Instance, Started};
use crate::output::RevisionLogs;

/// How long a status change waits before it is announced (see [`Shared::announce`]).
const ANNOUNCE_DELAY: std::time::Duration = std::time::Duration::from_millis(2);

/// Buffered events per subscriber before it lags.
const EVENT_BUFFER: usize = 1024;

/// State shared by the runtime handle and its compile tasks.
pub(crate) struct Shared {
    pub config: Arc<WasmRuntimeConfig>,
    pub linker: Linker<Host>,
    pub registry: EndpointRegistry,
    pub events: broadcast::Sender<RuntimeEvent>,
    pub stats: CompileCounters,
    /// Instance starts so far (each start's directory is named after it).
    pub starts: AtomicU64,
    /// Where Secret and ConfigMap values are read when an instance starts; set once.
    pub config_source: std::sync::OnceLock<Arc<dyn nimbus_runtime::env::ConfigSource>>,
    revisions: Mutex<Revisions>,
    _ticker: EpochTicker,
}

/// Loads that compiled vs. reused the disk cache.
#[derive(Default)]
pub(crate) struct CompileCounters {
    pub compiled: AtomicU64,
    pub cached: AtomicU64,
}

#[derive(Default)]
struct Revisions {
    map: HashMap<RevisionKey, RevisionState>,
    closed: bool,
}

/// Where a revision's component stands.
pub(crate) enum Component {
    Loading,
    Loaded(Arc<App>),
    /// `(reason, message)`.
    Failed(String, String),
}

/// One revision.
pub(crate) struct RevisionState {
    pub spec: Arc<InstanceSpec>,
    pub desired: u32,
    pub component: Component,
    /// Running instances by ordinal (each is ready from the start).
    pub instances: BTreeMap<u64, LocalHandle>,
    pub next_ordinal: u64,
    pub ever_ready: bool,
    /// Where its instances' output goes; `None` without a data directory.
    pub logs: Option<Arc<RevisionLogs>>,
    /// Why the last instance could not start (a Secret or ConfigMap it needs is missing):
    /// the revision is failed with it until an instance starts.
    pub config_error: Option<String>,
    /// A later attempt to start the missing instances is scheduled.
    pub retry_pending: bool,
}

impl RevisionState {
    fn new(spec: &InstanceSpec, config: &WasmRuntimeConfig) -> Self {
        let logs = config
            .data_dir
            .as_deref()
            .map(|dir| RevisionLogs::new(dir, &spec.revision));
        Self {
            spec: Arc::new(spec.clone()),
            desired: 0,
            component: Component::Loading,
            instances: BTreeMap::new(),
            next_ordinal: 1,
            ever_ready: false,
            logs,
            config_error: None,
            retry_pending: false,
        }
    }

    /// The id of the instance `ordinal`: its endpoint id and log file name.
    fn instance_id(&self, ordinal: u64) -> String {
        format!("{}-{ordinal}", self.spec.revision.name)
    }

    /// `Ready` while an instance runs, or when the component is loaded and none is wanted
    /// (scaling from zero is an allocation away); `Failed` when the component cannot be
    /// served; otherwise `Starting`.
    pub fn status(&self) -> RevisionRuntimeStatus {
        let ready = u32::try_from(self.instances.len()).unwrap_or(u32::MAX);
        let phase = match &self.component {
            _ if ready > 0 => RevisionPhase::Ready,
            Component::Failed(reason, message) => RevisionPhase::Failed {
                reason: reason.clone(),
                message: message.clone(),
            },
            _ if self.config_error.is_some() && self.desired > 0 => RevisionPhase::Failed {
                reason: CONFIG_ERROR_REASON.to_owned(),
                message: self.config_error.clone().unwrap_or_default(),
            },
            Component::Loaded(_) if self.desired == 0 => RevisionPhase::Ready,
            _ => RevisionPhase::Starting,
        };
        RevisionRuntimeStatus {
            phase,
            desired: self.desired,
            actual: ready,
            ready,
            ever_ready: self.ever_ready,
        }
    }

    pub fn endpoints(&self) -> RevisionEndpoints {
        let ready = self
            .instances
            .iter()
            .map(|(&ordinal, instance)| {
                Endpoint::in_process(self.instance_id(ordinal), instance.clone())
            })
            .collect();
        let failure = match &self.component {
            Component::Failed(reason, message) => Some(format!("{reason}: {message}")),
            _ => None,
        };
        RevisionEndpoints { ready, failure }
    }

    /// Start instances up to `desired` (when loaded) and take out the surplus, newest first.
    /// A surplus instance drains by itself: requests already routed to it finish. Each new
    /// instance reads its Secret and ConfigMap values now (from `shared`'s source); returns
    /// `true` when one could not, to be tried again later.
    pub fn reconcile(&mut self, shared: &Shared) -> bool {
        let mut failed = false;
        if let Component::Loaded(app) = &self.component {
            let source = shared.config_source.get().map(|s| &**s);
            while self.instances.len() < self.desired as usize {
                let ordinal = self.next_ordinal;
                let id = self.instance_id(ordinal);
                let log = self.logs.as_ref().map(|logs| logs.instance(id.clone()));
                let (revision, registry) = (&self.spec.revision, &shared.registry);
                registry.note_start(revision, nimbus_runtime::Milestone::Scheduled);
                // Its own directory per start: a revision deleted and made again reuses ids,
                // and an old instance's last request may still hold its directory.
                let start = shared
                    .starts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let dir =
                    shared.instance_dir(&self.spec.revision.namespace, &format!("{id}.{start}"));
                let started = match Started::new(&self.spec, source, dir, log) {
                    Ok(started) => started,
                    Err(e) => {
                        tracing::warn!(instance = %id, "cannot start a wasm instance: {e}");
                        self.config_error = Some(e.message);
                        failed = true;
                        break;
                    }
                };
                self.config_error = None;
                self.instances
                    .insert(ordinal, Instance::start(Arc::clone(app), started));
                registry.note_start(revision, nimbus_runtime::Milestone::Launched);
                self.next_ordinal += 1;
                self.ever_ready = true;
                tracing::debug!(instance = %id, "wasm instance started");
            }
        }
        while self.instances.len() > self.desired as usize {
            self.instances.pop_last();
        }
        failed
    }

    /// Whether starting an instance reads the store or writes files (its spec references
    /// Secrets or ConfigMaps), which a router thread should not wait for.
    pub fn starts_with_io(&self) -> bool {
        !self.spec.env_refs.is_empty() || !self.spec.volume_mounts.is_empty()
    }
}

impl Shared {
    pub fn new(
        config: Arc<WasmRuntimeConfig>,
        linker: Linker<Host>,
        registry: EndpointRegistry,
        ticker: EpochTicker,
    ) -> Self {
        Self {
            config,
            linker,
            registry,
            events: broadcast::channel(EVENT_BUFFER).0,
            stats: CompileCounters::default(),
            starts: AtomicU64::new(0),
            config_source: std::sync::OnceLock::new(),
            revisions: Mutex::default(),
            _ticker: ticker,
        }
    }

    /// Where instance `id`'s volumes are written: under the data directory like other
    /// runtimes' instances, else in a directory of this process under the temporary one.
    pub fn instance_dir(&self, namespace: &str, id: &str) -> std::path::PathBuf {
        let base = match &self.config.data_dir {
            Some(dir) => dir.join("instances"),
            None => std::env::temp_dir().join(format!("nimbus-wasm-{}", std::process::id())),
        };
        base.join(namespace).join(id)
    }

    fn lock(&self) -> MutexGuard<'_, Revisions> {
        // Taken on router threads too (scale from zero): a panic elsewhere must not spread.
        self.revisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn status(&self, key: &RevisionKey) -> Option<RevisionRuntimeStatus> {
        self.lock().map.get(key).map(RevisionState::status)
    }

    /// Apply `change` to the revision (created from `spec` if unknown; `created` tells), then
    /// publish. `None` once the runtime is shut down.
    pub fn upsert<R>(
        &self,
        spec: &InstanceSpec,
        change: impl FnOnce(&mut RevisionState, bool) -> R,
    ) -> Option<R> {
        let mut revisions = self.lock();
        if revisions.closed {
            return None;
        }
        let created = !revisions.map.contains_key(&spec.revision);
        let revision = revisions
            .map
            .entry(spec.revision.clone())
            .or_insert_with(|| RevisionState::new(spec, &self.config));
        Some(self.publish_after(&spec.revision, revision, |r| change(r, created), created))
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
    /// their endpoints; returns what was forgotten (dropped by the caller, outside the lock).
    pub fn take(&self, key: Option<&RevisionKey>) -> Vec<RevisionState> {
        let mut revisions = self.lock();
        let keys: Vec<RevisionKey> = match key {
            Some(key) => revisions
                .map
                .get_key_value(key)
                .map(|(k, _)| k.clone())
                .into_iter()
                .collect(),
            None => {
                revisions.closed = true;
                revisions.map.keys().cloned().collect()
            }
        };
        let mut taken = Vec::new();
        for key in keys {
            if let Some(revision) = revisions.map.remove(&key) {
                self.registry.set(&key, RevisionEndpoints::default());
                self.registry.forget_starts(&key);
                let _ = self.events.send(RuntimeEvent { revision: key });
                taken.push(revision);
            }
        }
        taken
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
            self.announce(key);
        }
        result
    }

    /// Tells subscribers that the revision's status changed. Inside a Tokio runtime the event
    /// leaves [`ANNOUNCE_DELAY`] later, from a timer of the current runtime: a scale from zero
    /// applied on a router thread (`set_desired_now`) then wakes no other thread before that
    /// request is answered (waking an idle thread costs up to a few hundred microseconds
    /// on a VM). The controller gathers events over 20 ms anyway.
    fn announce(&self, key: &RevisionKey) {
        let event = RuntimeEvent {
            revision: key.clone(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let events = self.events.clone();
                runtime.spawn(async move {
                    tokio::time::sleep(ANNOUNCE_DELAY).await;
                    let _ = events.send(event);
                });
            }
            Err(_) => {
                let _ = self.events.send(event);
            }
        }
    }
}
