//! Helpers for the Wasm runtime tests: a runtime with short limits, specs, components (WAT
//! fixtures compiled here, and the Rust example built for wasm32-wasip2 by the testkit when the
//! target is installed), event-driven waiting with deadlines and a small HTTP client.

#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use nimbus_runtime::{InstanceSpec, Protocol, RevisionKey, RevisionRuntimeStatus, Runtime};
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
    let labels = BTreeMap::from([
        ("serving.knative.dev/service".to_owned(), "svc".to_owned()),
        (
            "serving.knative.dev/configuration".to_owned(),
            "cfg".to_owned(),
        ),
    ]);
    InstanceSpec {
        revision: RevisionKey::new("default", revision),
        runtime_class: "wasm".into(),
        image: Some(image.to_owned()),
        command: vec![],
        args: vec![],
        env: vec![],
        working_dir: None,
        protocol: Protocol::Http1,
        startup_timeout: PATIENCE,
        socket_activation: false,
        labels,
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

/// Deploy `spec` with one instance and return its address.
pub async fn serve_one(runtime: &WasmRuntime, spec: &InstanceSpec) -> SocketAddr {
    runtime.set_desired(spec, 1).await.unwrap();
    wait_ready(runtime, &spec.revision, 1).await;
    addrs(runtime, &spec.revision)[0]
}

/// The ready endpoints' addresses.
pub fn addrs(runtime: &WasmRuntime, revision: &RevisionKey) -> Vec<SocketAddr> {
    let endpoints = runtime.endpoints().get(revision);
    endpoints
        .map(|e| e.ready.iter().map(|e| e.addr).collect())
        .unwrap_or_default()
}

/// `GET path`; returns status and body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    send(addr, http::Method::GET, path, Body::Empty).await
}

/// A request body: none, a fixed one (with `Content-Length`), or a streamed one (chunked).
pub enum Body {
    Empty,
    Fixed(Vec<u8>),
    Chunked(Vec<u8>),
}

/// One request on a fresh connection; returns status and body.
pub async fn send(addr: SocketAddr, method: http::Method, path: &str, body: Body) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let body = match body {
        Body::Empty => Full::new(Bytes::new()).boxed(),
        Body::Fixed(bytes) => Full::new(Bytes::from(bytes)).boxed(),
        Body::Chunked(bytes) => {
            let frames = bytes
                .chunks(100)
                .map(|c| {
                    Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                        Bytes::copy_from_slice(c),
                    ))
                })
                .collect::<Vec<_>>();
            http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed()
        }
    };
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test")
        .body(body)
        .unwrap();
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
