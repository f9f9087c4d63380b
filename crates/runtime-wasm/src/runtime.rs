//! [`WasmRuntime`]: the [`Runtime`] implementation. The first `set_desired` of a revision
//! works out its limits (failing it at once, before any compile, when they cannot be met) and
//! starts loading its component on a blocking thread; instances are started and stopped
//! synchronously once it is loaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_trait::async_trait;
use nimbus_runtime::{
    EndpointRegistry, InstanceSpec, RevisionKey, RevisionRuntimeStatus, Runtime, RuntimeError,
    RuntimeEvent, TaskOutcome, TaskRun,
};
use tokio::sync::broadcast;
use wasmtime::component::Linker;

use crate::compile::{self, Source};
use crate::config::WasmRuntimeConfig;
use crate::engine::{self, EpochTicker};
use crate::error::LoadError;
use crate::handler::App;
use crate::host::Host;
use crate::image::{component_path, read_component};
use crate::limits::Limits;
use crate::state::{Component, RevisionState, Shared};

/// Serves `wasi:http` components: instances the router calls in-process, one component
/// instantiation per request.
pub struct WasmRuntime {
    shared: Arc<Shared>,
}

/// The engine could not be set up (for example: the pooling allocator could not reserve its
/// address space), or the configuration contradicts itself.
#[derive(Debug, thiserror::Error)]
pub enum WasmRuntimeError {
    #[error("invalid wasm runtime configuration: {0}")]
    Config(String),
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(String),
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(#[from] std::io::Error),
}

/// How revisions' components were obtained since the runtime started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompileStats {
    /// Components compiled from their `.wasm` file.
    pub compiled: u64,
    /// Components loaded from the precompiled cache.
    pub cache_hits: u64,
}

impl WasmRuntime {
    /// A runtime publishing into its own endpoint registry.
    pub fn new(config: WasmRuntimeConfig) -> Result<Arc<Self>, WasmRuntimeError> {
        Self::with_registry(config, EndpointRegistry::new())
    }

    /// A runtime publishing into `registry`, shared with other runtimes so that one router
    /// sees every revision's endpoints.
    pub fn with_registry(
        config: WasmRuntimeConfig,
        registry: EndpointRegistry,
    ) -> Result<Arc<Self>, WasmRuntimeError> {
        config.check().map_err(WasmRuntimeError::Config)?;
        let engine =
            engine::engine(&config).map_err(|e| WasmRuntimeError::Engine(format!("{e:#}")))?;
        let linker =
            engine::linker(&engine).map_err(|e| WasmRuntimeError::Engine(format!("{e:#}")))?;
        let ticker = EpochTicker::spawn(engine, config.epoch_tick)?;
        let shared = Shared::new(Arc::new(config), linker, registry, ticker);
        Ok(Arc::new(Self {
            shared: Arc::new(shared),
        }))
    }

    /// Where precompiled components are cached (`None` without a data directory).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        let data_dir = self.shared.config.data_dir.as_deref()?;
        Some(compile::cache_dir(self.shared.linker.engine(), data_dir))
    }

    /// Where instances read the values of their Secret and ConfigMap references and volumes
    /// when they start. Set once; a second call is ignored and returns `false`.
    pub fn set_config_source(&self, source: Arc<dyn nimbus_runtime::env::ConfigSource>) -> bool {
        self.shared.config_source.set(source).is_ok()
    }

    pub fn compile_stats(&self) -> CompileStats {
        let stats = &self.shared.stats;
        CompileStats {
            compiled: stats.compiled.load(Ordering::Relaxed),
            cache_hits: stats.cached.load(Ordering::Relaxed),
        }
    }
}

#[async_trait]
impl Runtime for WasmRuntime {
    async fn set_desired(&self, spec: &InstanceSpec, replicas: u32) -> Result<(), RuntimeError> {
        let config = &self.shared.config;
        let to_load = self
            .shared
            .upsert(spec, |revision, created| {
                revision.desired = replicas;
                let limits = created.then(|| prepare(revision, config)).flatten();
                reconcile(&self.shared, revision);
                limits
            })
            .ok_or(RuntimeError::ShuttingDown)?;
        if let Some(limits) = to_load {
            spawn_load(Arc::clone(&self.shared), spec.clone(), limits);
        }
        Ok(())
    }

    /// A revision whose component is loading or loaded starts and stops instances without
    /// I/O; an unknown one needs `set_desired` (its component is loaded in the background).
    /// So does one whose instances read Secrets or ConfigMaps when they start (I/O).
    fn set_desired_now(&self, spec: &InstanceSpec, replicas: u32) -> bool {
        self.shared
            .update(&spec.revision, |revision| {
                if revision.starts_with_io() {
                    return false;
                }
                revision.desired = replicas;
                reconcile(&self.shared, revision);
                true
            })
            .unwrap_or(false)
    }

    /// Forgets the revision, then deletes its logs (like a pod's, they go with it). Requests
    /// still running finish; what they print from now on is dropped.
    async fn remove(&self, revision: &RevisionKey) {
        for removed in self.shared.take(Some(revision)) {
            if let Some(logs) = &removed.logs {
                logs.remove();
            }
        }
    }

    fn status(&self, revision: &RevisionKey) -> Option<RevisionRuntimeStatus> {
        self.shared.status(revision)
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.shared.events.subscribe()
    }

    fn endpoints(&self) -> EndpointRegistry {
        self.shared.registry.clone()
    }

    async fn shutdown(&self) {
        self.shared.take(None);
    }

    /// Runs the task's WASI command component to completion (see `task.rs`).
    async fn run_task(&self, spec: &InstanceSpec, task: TaskRun) -> TaskOutcome {
        crate::task::run(Arc::clone(&self.shared), spec, task).await
    }
}

/// A new revision's limits; when they cannot be met the revision is failed at once and
/// `None` returned (nothing is loaded).
fn prepare(revision: &mut RevisionState, config: &WasmRuntimeConfig) -> Option<Limits> {
    match Limits::for_revision(&revision.spec, config) {
        Ok(limits) => Some(limits),
        Err(e) => {
            revision.component = failed(&revision.spec.revision, &e);
            None
        }
    }
}

/// How long a revision whose instance could not read its Secrets or ConfigMaps waits before
/// trying again (they may be created meanwhile).
const CONFIG_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// [`RevisionState::reconcile`], scheduling another attempt when an instance could not start.
fn reconcile(shared: &Arc<Shared>, revision: &mut RevisionState) {
    if !revision.reconcile(shared) || revision.retry_pending {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    revision.retry_pending = true;
    let (shared, key) = (Arc::clone(shared), revision.spec.revision.clone());
    runtime.spawn(async move {
        tokio::time::sleep(CONFIG_RETRY).await;
        let again = Arc::clone(&shared);
        shared.update(&key, |revision| {
            revision.retry_pending = false;
            reconcile(&again, revision);
        });
    });
}

fn failed(key: &RevisionKey, e: &LoadError) -> Component {
    tracing::warn!(revision = %key, reason = e.reason(), error = %e, "cannot serve the component");
    Component::Failed(e.reason().to_owned(), format!("revision {key}: {e}"))
}

/// Load the revision's component off the async threads, then start its wanted instances.
fn spawn_load(shared: Arc<Shared>, spec: InstanceSpec, limits: Limits) {
    tokio::spawn(async move {
        let key = spec.revision.clone();
        let loader = Arc::clone(&shared);
        let loaded = tokio::task::spawn_blocking(move || load(&loader, &spec, limits))
            .await
            .unwrap_or(Err(LoadError::Interrupted));
        let component = match loaded {
            Ok(app) => Component::Loaded(Arc::new(app)),
            Err(e) => failed(&key, &e),
        };
        shared.update(&key, |revision| {
            revision.component = component;
            reconcile(&shared, revision);
        });
    });
}

fn load(shared: &Shared, spec: &InstanceSpec, limits: Limits) -> Result<App, LoadError> {
    let pre = read_and_prepare(shared, spec, compile::load)?;
    Ok(App {
        pre,
        limits,
        config: Arc::clone(&shared.config),
    })
}

/// How a component's bytes become what runs: [`compile::load`] (a revision's proxy) or
/// [`compile::load_command`] (a task's command).
pub(crate) type Prepare<T> =
    fn(&Linker<Host>, &Path, &[u8], Option<&Path>) -> Result<(T, Source), LoadError>;

/// Read `spec`'s component and `prepare` it through the compile cache, counting compiles and
/// cache hits. Blocking: run it off the async threads.
pub(crate) fn read_and_prepare<T>(
    shared: &Shared,
    spec: &InstanceSpec,
    prepare: Prepare<T>,
) -> Result<T, LoadError> {
    let started = Instant::now();
    let path = component_path(spec.image.as_deref())?;
    let bytes = read_component(
        &path,
        shared.config.component_dirs.as_deref(),
        shared.config.max_component_bytes,
    )?;
    let cache = shared
        .config
        .data_dir
        .as_deref()
        .map(|dir| compile::cache_dir(shared.linker.engine(), dir));
    let (prepared, source) = prepare(&shared.linker, &path, &bytes, cache.as_deref())?;
    let counter = match source {
        Source::Compiled => &shared.stats.compiled,
        Source::Cached => &shared.stats.cached,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::info!(revision = %spec.revision, path = %path.display(), ?source, elapsed = ?started.elapsed(), "component loaded");
    Ok(prepared)
}
