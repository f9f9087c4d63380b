//! One instance of a revision: a [`LocalService`] the router calls in-process, whose every
//! request runs in a fresh component instance. An instance holds its revision's loaded
//! [`App`], its log (opened on the first line the guest prints, see `output.rs`) and what it
//! read when it started ([`Started`]): its environment with Secret and ConfigMap references
//! resolved, and its volumes written out. Without references or volumes, starting one is an
//! allocation: scaling from zero costs microseconds, and the request that woke the revision
//! runs on the router thread that accepted it, with no socket between them.
//!
//! As on Kubernetes, a new instance reads the current values of its Secrets and ConfigMaps and
//! a running one keeps those it started with.
//!
//! Stopping an instance only unpublishes it: requests already routed to it hold the `App` and
//! its [`Started`] and finish (bounded by the revision's request timeout), which is the drain;
//! the volumes' files are removed when the last of them is done.
//!
//! An instance takes every request it is sent: `containerConcurrency` is the router's to
//! enforce (it sends an instance no more than that many at once), and the pooling allocator
//! bounds component instances across the runtime (503 beyond it).

use std::path::PathBuf;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt as _;
use nimbus_runtime::env::{ConfigError, ConfigSource};
use nimbus_runtime::volumes::Bind;
use nimbus_runtime::{BoxError, InstanceSpec, LocalBody, LocalHandle, LocalResponse, LocalService};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::handler::App;
use crate::output::InstanceLog;

/// A running instance of a revision.
pub(crate) struct Instance {
    app: Arc<App>,
    started: Arc<Started>,
}

impl Instance {
    /// A new instance of `app`, as the handle the router calls.
    pub fn start(app: Arc<App>, started: Started) -> LocalHandle {
        LocalHandle::new(Arc::new(Self {
            app,
            started: Arc::new(started),
        }))
    }
}

impl LocalService for Instance {
    fn call(&self, request: Request<LocalBody>) -> LocalResponse {
        let app = Arc::clone(&self.app);
        let started = Arc::clone(&self.started);
        Box::pin(async move { into_local(app.handle(request, started).await) })
    }
}

fn into_local(response: Response<HyperOutgoingBody>) -> Response<LocalBody> {
    response.map(|body| body.map_err(BoxError::from).boxed_unsync())
}

/// What one instance read when it started, shared by its requests.
pub(crate) struct Started {
    /// The component's environment: the spec's env with references resolved, which holds the
    /// runtime contract (`K_SERVICE`, `K_CONFIGURATION`, `K_REVISION`). No `PORT`: a component
    /// has no port.
    pub env: Vec<(String, String)>,
    /// Directories preopened read-only for every request: each volume's at its mount path.
    pub preopens: Vec<Bind>,
    /// `wasi:cli/environment`'s arguments: empty for a revision's instances (an HTTP
    /// component has no command line), `argv` for a task (see `task.rs`).
    pub args: Vec<String>,
    /// Where its requests' stdout and stderr go; `None` without a data directory.
    pub log: Option<Arc<InstanceLog>>,
    /// The instance's directory, holding its volumes; removed with the last request.
    dir: Option<PathBuf>,
}

impl Started {
    /// Read `spec`'s references from `source` now and write its volumes into `dir` (the
    /// instance's own directory, made here when it has volumes).
    pub fn new(
        spec: &InstanceSpec,
        source: Option<&dyn ConfigSource>,
        dir: PathBuf,
        log: Option<Arc<InstanceLog>>,
    ) -> Result<Self, ConfigError> {
        let env = nimbus_runtime::env::resolve(spec, source)?;
        if spec.volume_mounts.is_empty() {
            return Ok(Self {
                env,
                preopens: Vec::new(),
                args: Vec::new(),
                log,
                dir: None,
            });
        }
        let mut started = Self {
            env,
            preopens: Vec::new(),
            args: Vec::new(),
            log,
            dir: Some(dir.clone()),
        };
        // From here on, dropping `started` removes what was written.
        let volumes = dir.join("volumes");
        started.preopens = nimbus_runtime::volumes::materialize(spec, source, &volumes)?;
        if let Some(file) = started.preopens.iter().find(|b| !b.host.is_dir()) {
            return Err(ConfigError {
                message: format!(
                    "volume mount {} is a file (a subPath naming a key): a Wasm component can \
                     be given directories only; mount the volume without subPath (use items \
                     to choose its files)",
                    file.path.display()
                ),
            });
        }
        Ok(started)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir
            && let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %dir.display(), "cannot remove a Wasm instance's volumes: {e}");
        }
    }
}
