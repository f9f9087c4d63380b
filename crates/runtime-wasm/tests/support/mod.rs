//! Helpers for the Wasm runtime tests: a runtime with short limits, specs, components (WAT
//! fixtures compiled here, and the Rust example built for wasm32-wasip2 by the testkit when the
//! target is installed), event-driven waiting with deadlines, requests sent to an instance as the router sends them,
//! and a loopback HTTP server for outbound requests.

#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use nimbus_runtime::env::{ConfigSource, SourceKind, Values};
use nimbus_runtime::{
    BoxError, Endpoint, InstanceSpec, LocalHandle, Protocol, RevisionKey, RevisionRuntimeStatus,
    Runtime, Transport,
};
use nimbus_runtime_wasm::{WasmRuntime, WasmRuntimeConfig};

/// How long any test waits for something that should happen quickly (compiling included).
pub const PATIENCE: Duration = Duration::from_secs(120);
/// The request timeout of test runtimes.
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// The default memory limit of test runtimes.
pub const MEMORY: usize = 32 << 20;
/// The pool's per-instance memory maximum in test runtimes.
pub const POOL_MEMORY: usize = 64 << 20;
/// The body limit of test runtimes.
pub const MAX_BODY: u64 = 1024;

/// A runtime with short limits, caching compiled components under `data_dir`.
pub fn runtime(data_dir: &Path) -> Arc<WasmRuntime> {
    runtime_with(data_dir, |_| {})
}

pub fn runtime_with(
    data_dir: &Path,
    adjust: impl FnOnce(&mut WasmRuntimeConfig),
) -> Arc<WasmRuntime> {
    let mut config = WasmRuntimeConfig {
        data_dir: Some(data_dir.to_owned()),
        request_timeout: TIMEOUT,
        memory_limit_bytes: MEMORY,
        max_memory_bytes: POOL_MEMORY,
        max_body_bytes: MAX_BODY,
        max_instances: 50,
        inherit_stdio: false,
        ..WasmRuntimeConfig::default()
    };
    adjust(&mut config);
    WasmRuntime::new(config).expect("engine")
}

/// A `wasm` spec whose image is `image`.
pub fn spec(revision: &str, image: &str) -> InstanceSpec {
    InstanceSpec {
        revision: RevisionKey::new("default", revision),
        runtime_class: "wasm".into(),
        image: Some(image.to_owned()),
        command: vec![],
        args: vec![],
        // The runtime contract, as the controller builds it.
        env: vec![
            ("K_SERVICE".into(), "svc".into()),
            ("K_CONFIGURATION".into(), "cfg".into()),
            ("K_REVISION".into(), revision.into()),
        ],
        working_dir: None,
        protocol: Protocol::Http1,
        startup_timeout: PATIENCE,
        socket_activation: false,
        ..Default::default()
    }
}

/// Compile the WAT fixture `name` (without `.wat`) into `dir`; returns the `.wasm` path.
pub fn wat_fixture(dir: &Path, name: &str) -> String {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.wat"));
    let binary = wat::parse_file(&source).unwrap_or_else(|e| panic!("{name}.wat: {e}"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, binary).unwrap();
    path.to_string_lossy().into_owned()
}

/// The example component `examples/hello-wasm`, built once per test binary (by
/// [`nimbus_testkit::build_hello_wasm`], into the target directory the `nimbus` tests share);
/// `None` (after printing why) when the wasm32-wasip2 target is not installed.
pub fn hello_wasm() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hello-wasm");
            nimbus_testkit::build_hello_wasm(&target_dir)
        })
        .as_deref()
}

/// The task example (`examples/task`, a WASI command with `fn main`) built for wasm32-wasip2
/// once per test binary; `None` (after printing why) when the target is not installed.
pub fn task_wasm() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // Checks that the target is installed (and skips or fails as the testkit says).
            hello_wasm()?;
            let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("task-wasm");
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--target", "wasm32-wasip2"])
                .args(["-p", "nimbus-example-task", "--manifest-path"])
                .arg(&workspace)
                .arg("--target-dir")
                .arg(&target_dir)
                .status()
                .expect("running cargo");
            assert!(status.success(), "building examples/task failed");
            Some(target_dir.join("wasm32-wasip2/debug/nimbus-example-task.wasm"))
        })
        .as_deref()
}

/// Wait until the revision's status satisfies `done` (see `nimbus_testkit::runtime`).
pub async fn wait_until(
    runtime: &WasmRuntime,
    revision: &RevisionKey,
    what: &str,
    done: impl Fn(&RevisionRuntimeStatus) -> bool,
) -> RevisionRuntimeStatus {
    nimbus_testkit::runtime::wait_until(runtime, revision, what, PATIENCE, done).await
}

pub async fn wait_ready(
    runtime: &WasmRuntime,
    revision: &RevisionKey,
    n: u32,
) -> RevisionRuntimeStatus {
    nimbus_testkit::runtime::wait_ready(runtime, revision, n, PATIENCE).await
}

/// Wait until the phase is `Failed`; returns `(reason, message)`.
pub async fn wait_failed(runtime: &WasmRuntime, revision: &RevisionKey) -> (String, String) {
    nimbus_testkit::runtime::wait_failed(runtime, revision, PATIENCE).await
}

/// Deploy `spec` with one instance and return it.
pub async fn serve_one(runtime: &WasmRuntime, spec: &InstanceSpec) -> LocalHandle {
    runtime.set_desired(spec, 1).await.unwrap();
    wait_ready(runtime, &spec.revision, 1).await;
    instances(runtime, &spec.revision).remove(0)
}

/// The ready instances (each an in-process endpoint).
pub fn instances(runtime: &WasmRuntime, revision: &RevisionKey) -> Vec<LocalHandle> {
    let endpoints = runtime.endpoints().get(revision);
    endpoints
        .map(|e| e.ready.iter().map(in_process).collect())
        .unwrap_or_default()
}

/// The handle of an in-process endpoint.
pub fn in_process(endpoint: &Endpoint) -> LocalHandle {
    match &endpoint.transport {
        Transport::InProcess(handle) => handle.clone(),
        other => panic!("a wasm instance is in-process, not {other:?}"),
    }
}

/// `GET path`; returns status and body.
pub async fn get(instance: &LocalHandle, path: &str) -> (u16, String) {
    send(instance, http::Method::GET, path, Body::Empty).await
}

/// A request body: none, a fixed one (with `Content-Length`), or a streamed one (chunked).
pub enum Body {
    Empty,
    Fixed(Vec<u8>),
    Chunked(Vec<u8>),
}

/// One request, as the router sends it; returns status and body.
pub async fn send(
    instance: &LocalHandle,
    method: http::Method,
    path: &str,
    body: Body,
) -> (u16, String) {
    let (length, body) = match body {
        Body::Empty => (
            Some(0),
            Full::new(Bytes::new()).map_err(Into::into).boxed_unsync(),
        ),
        Body::Fixed(bytes) => (
            Some(bytes.len()),
            Full::new(Bytes::from(bytes))
                .map_err(Into::into)
                .boxed_unsync(),
        ),
        Body::Chunked(bytes) => {
            let frames = bytes
                .chunks(100)
                .map(|c| Ok::<_, BoxError>(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
                .collect::<Vec<_>>();
            let stream = http_body_util::StreamBody::new(futures::stream::iter(frames));
            (None, stream.boxed_unsync())
        }
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test");
    if let Some(length) = length {
        request = request.header("content-length", length);
    }
    let response = instance.call(request.body(body).unwrap()).await;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A plain HTTP server on loopback answering every request `200 ok`: a target for the
/// component's outbound requests.
pub async fn http_target() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    addr
}

/// Secrets and ConfigMaps that tests change between instance starts.
#[derive(Default)]
pub struct Objects(std::sync::Mutex<std::collections::BTreeMap<(SourceKind, String), Values>>);

impl Objects {
    pub fn set(&self, kind: SourceKind, name: &str, key: &str, value: &str) {
        let mut objects = self.0.lock().unwrap();
        let object = objects.entry((kind, name.to_owned())).or_default();
        object.insert(key.to_owned(), value.as_bytes().to_vec());
    }
}

impl ConfigSource for Objects {
    fn values(
        &self,
        _namespace: &str,
        source: SourceKind,
        name: &str,
    ) -> Result<Option<Values>, String> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(&(source, name.to_owned()))
            .cloned())
    }
}
