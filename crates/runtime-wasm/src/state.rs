//! The runtime's bookkeeping: per revision, its spec, desired count, component (loading,
//! loaded or failed) and running instances.
//!
//! Every change goes through [`Shared::update`] or [`Shared::upsert`], which afterwards
//! publish the revision's endpoints (only when they changed) and send a [`RuntimeEvent`] (only
//! when the status changed). The lock is held for bookkeeping and listener binds only (both
//! synchronous and short), never across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use nimbus_runtime::{
    Endpoint, EndpointRegistry, InstanceSpec, Protocol, RevisionEndpoints, RevisionKey,
    RevisionPhase, RevisionRuntimeStatus, RuntimeEvent,
};
use tokio::sync::broadcast;
use wasmtime::component::Linker;

use crate::config::WasmRuntimeConfig;
use crate::engine::EpochTicker;
use crate::handler::App;
use crate::host::Host;
use crate::server::Server;

/// Buffered events per subscriber before it lags.
const EVENT_BUFFER: usize = 1024;

/// State shared by the runtime handle and its compile tasks.
pub(crate) struct Shared {
    pub config: Arc<WasmRuntimeConfig>,
    pub linker: Linker<Host>,
    pub registry: EndpointRegistry,
    pub events: broadcast::Sender<RuntimeEvent>,
    pub stats: CompileCounters,
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
    /// Running instances by ordinal (each is ready: it listens).
    pub instances: BTreeMap<u64, Server>,
    pub next_ordinal: u64,
    pub ever_ready: bool,
    /// The latest listener bind failure, cleared by the next successful bind.
    pub bind_failure: Option<String>,
}

impl RevisionState {
    fn new(spec: &InstanceSpec) -> Self {
        Self {
            spec: Arc::new(spec.clone()),
            desired: 0,
            component: Component::Loading,
            instances: BTreeMap::new(),
            next_ordinal: 1,
            ever_ready: false,
            bind_failure: None,
        }
    }

    /// `Ready` while an instance listens, or when the component is loaded and none is wanted
    /// (scaling from zero is a bind away); `Failed` when the component cannot be served;
    /// otherwise `Starting`.
    pub fn status(&self) -> RevisionRuntimeStatus {
        let ready = u32::try_from(self.instances.len()).unwrap_or(u32::MAX);
        let phase = match (&self.component, &self.bind_failure) {
            _ if ready > 0 => RevisionPhase::Ready,
            (Component::Failed(reason, message), _) => RevisionPhase::Failed {
                reason: reason.clone(),
                message: message.clone(),
            },
            (Component::Loaded(_), Some(message)) => RevisionPhase::Failed {
                reason: "ListenFailed".to_owned(),
                message: message.clone(),
            },
            (Component::Loaded(_), None) if self.desired == 0 => RevisionPhase::Ready,
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
        let name = &self.spec.revision.name;
        let ready = self
            .instances
            .iter()
            .map(|(ordinal, server)| Endpoint {
                id: format!("{name}-{ordinal}"),
                addr: server.addr,
                protocol: Protocol::Http1,
            })
            .collect();
        let failure = match &self.component {
            Component::Failed(reason, message) => Some(format!("{reason}: {message}")),
            _ => None,
        };
        RevisionEndpoints { ready, failure }
    }

    /// Start instances up to `desired` (when loaded) and take out the surplus, newest first.
    /// Returns the surplus, to be stopped once their endpoints are unpublished.
    pub fn reconcile(&mut self) -> Vec<Server> {
        if let Component::Loaded(app) = &self.component {
            let app = Arc::clone(app);
            while self.instances.len() < self.desired as usize {
                match Server::start(Arc::clone(&app)) {
                    Ok(server) => {
                        let (name, ordinal) = (&self.spec.revision.name, self.next_ordinal);
                        tracing::info!(instance = %format!("{name}-{ordinal}"), addr = %server.addr, "wasm instance listening");
                        self.instances.insert(self.next_ordinal, server);
                        self.next_ordinal += 1;
                        self.ever_ready = true;
                        self.bind_failure = None;
                    }
                    Err(e) => {
                        self.bind_failure = Some(format!("cannot listen on 127.0.0.1: {e}"));
                        break;
                    }
                }
            }
        }
        let mut surplus = Vec::new();
        while self.instances.len() > self.desired as usize {
            surplus.extend(self.instances.pop_last().map(|(_, server)| server));
        }
        surplus
    }

    /// Take every instance out.
    pub fn take_all(&mut self) -> Vec<Server> {
        std::mem::take(&mut self.instances).into_values().collect()
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
            revisions: Mutex::default(),
            _ticker: ticker,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Revisions> {
        self.revisions.lock().expect("wasm runtime state poisoned")
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
            .or_insert_with(|| RevisionState::new(spec));
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
    /// their endpoints. Returns their instances so the caller can stop them outside the lock.
    pub fn take(&self, key: Option<&RevisionKey>) -> Vec<Server> {
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
        let mut servers = Vec::new();
        for key in keys {
            if let Some(mut revision) = revisions.map.remove(&key) {
                servers.extend(revision.take_all());
                self.registry.set(&key, RevisionEndpoints::default());
                let _ = self.events.send(RuntimeEvent { revision: key });
            }
        }
        servers
    }

    /// Abort every instance at once (the runtime is dropped without a shutdown).
    pub fn abort_all(&self) {
        for revision in self.lock().map.values() {
            revision.instances.values().for_each(Server::abort);
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
