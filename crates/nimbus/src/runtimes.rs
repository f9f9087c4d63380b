//! The instance runtimes of `nimbus serve`, one per backend (`nimbus.dev/runtime`), all publishing into one
//! endpoint registry so one router sees them all: `process` (host processes), `oci` (images
//! under runc; the default, as in Knative) and `wasm` (components under wasmtime). The process
//! and OCI runtimes share the supervisor — limits, probes, restarts, logs — and differ only in
//! their launcher.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use nimbus_api::runtime::Backend;
use nimbus_cgroup::Cgroups;
use nimbus_image::Progress;
use nimbus_runtime::{EndpointRegistry, LoadProbe, Runtime};
use nimbus_runtime_container::{NetworkConfig, OciConfig, OciLauncher, UserNamespaces};
use nimbus_runtime_process::{HostLauncher, ProcessRuntime, ProcessRuntimeConfig, StubCommand};
use nimbus_runtime_wasm::{WasmRuntime, WasmRuntimeConfig};

/// Every runtime of the server.
pub struct Runtimes {
    pub process: Arc<ProcessRuntime>,
    pub oci: Arc<ProcessRuntime>,
    pub wasm: Arc<WasmRuntime>,
    pub registry: EndpointRegistry,
    /// The server's cgroups, shared by the process and OCI runtimes (`None`: no limits).
    pub cgroups: Option<Cgroups>,
    /// The OCI runtime's launcher (reports images pulled).
    oci_launcher: Arc<OciLauncher>,
}

impl Runtimes {
    /// `wasm_dirs`: the only directories Wasm components are read from (absolute);
    /// `process_user`: the uid and gid host processes run as by default (a root server only);
    /// `container_network`: the bridge containers get their own network on (`None`: the host's);
    /// `container_userns`: containers' user namespaces (`None`: the host's ids), refused here
    /// when the host cannot give them.
    pub fn start(
        data_dir: &Path,
        insecure_registries: Vec<String>,
        wasm_dirs: Vec<PathBuf>,
        process_user: (u32, u32),
        container_network: Option<NetworkConfig>,
        container_userns: Option<UserNamespaces>,
    ) -> anyhow::Result<Self> {
        let registry = EndpointRegistry::new();
        let cgroups = crate::limits::detect(data_dir);
        let config = ProcessRuntimeConfig {
            data_dir: Some(data_dir.to_path_buf()),
            // Host instances are executed by stubs that waited in their cgroups: this binary
            // re-executed (see `main`). The OCI runtime's instances are joined by runc instead.
            instance_stub: Some(StubCommand::this_executable()),
            ..Default::default()
        };
        let process = ProcessRuntime::with_launcher(
            config.clone(),
            Arc::new(if nix::unistd::geteuid().is_root() {
                HostLauncher::with_default_user(process_user.0, process_user.1)
            } else {
                HostLauncher::default()
            }),
            registry.clone(),
            cgroups.clone(),
        );
        let store = crate::cmd_image::open_store(data_dir, insecure_registries)?;
        let mut oci_config = OciConfig::new(data_dir.join("runc"));
        oci_config.pull_progress = Arc::new(LogProgress);
        oci_config.network = container_network;
        oci_config.user_namespaces = container_userns;
        let oci_launcher = Arc::new(OciLauncher::new(Arc::new(store), oci_config));
        oci_launcher
            .check()
            .context("--container-user-namespaces")?;
        let oci = ProcessRuntime::with_launcher(
            config,
            oci_launcher.clone(),
            registry.clone(),
            cgroups.clone(),
        );
        let wasm = WasmRuntime::with_registry(
            WasmRuntimeConfig {
                data_dir: Some(data_dir.to_path_buf()),
                component_dirs: Some(wasm_dirs),
                ..Default::default()
            },
            registry.clone(),
        )
        .context("starting the wasm runtime")?;
        Ok(Self {
            process,
            oci,
            wasm,
            registry,
            cgroups,
            oci_launcher,
        })
    }

    /// By backend, for the controller.
    pub fn by_backend(&self) -> HashMap<Backend, Arc<dyn Runtime>> {
        [
            (Backend::Process, self.process.clone() as Arc<dyn Runtime>),
            (Backend::Oci, self.oci.clone() as Arc<dyn Runtime>),
            (Backend::Wasm, self.wasm.clone() as Arc<dyn Runtime>),
        ]
        .into()
    }

    /// Where every runtime reads Secret and ConfigMap values when an instance starts.
    pub fn set_config_source(&self, source: Arc<dyn nimbus_runtime::env::ConfigSource>) {
        let _ = self.process.set_config_source(Arc::clone(&source));
        let _ = self.oci.set_config_source(Arc::clone(&source));
        let _ = self.wasm.set_config_source(source);
    }

    /// Scale-downs wait for the router to finish an instance's in-flight requests.
    pub fn set_load_probe(&self, probe: Arc<dyn LoadProbe>) {
        let _ = self.process.set_load_probe(Arc::clone(&probe));
        let _ = self.oci.set_load_probe(probe);
    }

    /// Instances' OOM kills, liveness failures and restarts become Events (host processes and
    /// containers; a Wasm instance lives per request and has none of these).
    pub fn set_notices(&self, notices: Arc<dyn nimbus_runtime::InstanceNotices>) {
        let _ = self.process.set_notices(Arc::clone(&notices));
        let _ = self.oci.set_notices(Arc::clone(&notices));
        let _ = self.oci_launcher.set_notices(notices);
    }

    /// Stop every instance of every runtime, gracefully, then remove the server's cgroups.
    pub async fn shutdown(&self) {
        tokio::join!(
            self.process.shutdown(),
            self.oci.shutdown(),
            self.wasm.shutdown()
        );
        if let Some(cgroups) = &self.cgroups {
            crate::limits::remove_parent(cgroups);
        }
    }
}

/// Image pulls the server starts, in its log.
struct LogProgress;

impl Progress for LogProgress {
    fn layer(&self, digest: &str, done: u64, total: Option<u64>) {
        if total == Some(done) {
            tracing::info!(%digest, bytes = done, "layer fetched");
        }
    }

    fn message(&self, text: &str) {
        tracing::info!("image: {text}");
    }
}
