//! Helpers for the process-runtime tests: specs, a fast runtime, event-driven waiting with
//! deadlines, a tiny HTTP client, a load probe the test controls and process-liveness checks.

#![allow(dead_code)] // each test file uses a different subset

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_runtime::{
    Endpoint, InstanceSpec, LoadProbe, Protocol, RevisionEndpoints, RevisionKey,
    RevisionRuntimeStatus, Runtime,
};
use nimbus_runtime_process::{ProcessRuntime, ProcessRuntimeConfig, RestartBackoff, StubCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long any test waits for something that should happen quickly.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// This crate's stub binary (cargo builds it for the integration tests).
pub fn stub_command() -> StubCommand {
    StubCommand {
        program: PathBuf::from(env!("CARGO_BIN_EXE_nimbus-instance-stub")),
        args: vec![],
    }
}

/// A runtime with short grace and back-off so tests run fast, starting instances from stubs
/// as `nimbus serve` does.
pub fn runtime() -> Arc<ProcessRuntime> {
    runtime_with(|_| {})
}

pub fn runtime_with(adjust: impl FnOnce(&mut ProcessRuntimeConfig)) -> Arc<ProcessRuntime> {
    let mut config = ProcessRuntimeConfig {
        stop_grace: Duration::from_secs(2),
        restart_backoff: RestartBackoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            reset_after: Duration::from_secs(60),
        },
        instance_stub: Some(stub_command()),
        ..ProcessRuntimeConfig::default()
    };
    adjust(&mut config);
    ProcessRuntime::new(config)
}

/// A spec running `command`, with the runtime contract's env of service `svc`, configuration
/// `cfg`.
pub fn spec(revision: &str, command: &[&str]) -> InstanceSpec {
    InstanceSpec {
        revision: RevisionKey::new("default", revision),
        runtime_class: "process".into(),
        image: None,
        command: command.iter().map(|s| (*s).to_owned()).collect(),
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

/// The contract-checking Python server (binds `$PORT` itself).
pub fn python_server(revision: &str) -> InstanceSpec {
    spec(revision, &["python3", &fixture("contract_server.py")])
}

/// A socket-activated Python server; with `gate`, it accepts only once that file exists.
pub fn activated_server(revision: &str, gate: Option<&Path>) -> InstanceSpec {
    let mut spec = spec(revision, &["python3", &fixture("activated_server.py")]);
    spec.socket_activation = true;
    if let Some(gate) = gate {
        spec.env
            .extend([("GATE".into(), gate.to_string_lossy().into_owned())]);
    }
    spec
}

/// A server with `/sleep?ms=N`: the sample function.
pub fn sleepy_server(revision: &str) -> InstanceSpec {
    spec(revision, &[hello_binary().to_str().unwrap()])
}

pub use nimbus_testkit::image::hello_binary;

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    path.to_string_lossy().into_owned()
}

/// Wait until the revision's status satisfies `done` (see `nimbus_testkit::runtime`).
pub async fn wait_until(
    runtime: &ProcessRuntime,
    revision: &RevisionKey,
    what: &str,
    done: impl Fn(&RevisionRuntimeStatus) -> bool,
) -> RevisionRuntimeStatus {
    nimbus_testkit::runtime::wait_until(runtime, revision, what, PATIENCE, done).await
}

pub async fn wait_ready(
    runtime: &ProcessRuntime,
    revision: &RevisionKey,
    n: u32,
) -> RevisionRuntimeStatus {
    nimbus_testkit::runtime::wait_ready(runtime, revision, n, PATIENCE).await
}

/// Wait until the phase is `Failed`; returns `(reason, message)`.
pub async fn wait_failed(runtime: &ProcessRuntime, revision: &RevisionKey) -> (String, String) {
    nimbus_testkit::runtime::wait_failed(runtime, revision, PATIENCE).await
}

/// The ready endpoints' addresses.
pub fn addrs(runtime: &ProcessRuntime, revision: &RevisionKey) -> Vec<SocketAddr> {
    let endpoints = runtime.endpoints().get(revision);
    endpoints
        .map(|e| e.ready.iter().map(|e| e.addr().unwrap()).collect())
        .unwrap_or_default()
}

/// The published failure of a revision, if any.
pub fn published_failure(runtime: &ProcessRuntime, revision: &RevisionKey) -> Option<String> {
    runtime.endpoints().get(revision)?.failure.clone()
}

/// The published endpoints.
pub fn endpoints(runtime: &ProcessRuntime, revision: &RevisionKey) -> Vec<Endpoint> {
    let endpoints = runtime.endpoints().get(revision);
    endpoints.map(|e| e.ready.clone()).unwrap_or_default()
}

/// A load probe whose in-flight counts the test sets (as the router would count requests).
#[derive(Default)]
pub struct FakeProbe {
    in_flight: Mutex<HashMap<String, usize>>,
}

impl FakeProbe {
    pub fn set(&self, endpoint: &Endpoint, in_flight: usize) {
        let mut map = self.in_flight.lock().unwrap();
        map.insert(endpoint.id.clone(), in_flight);
    }
}

impl LoadProbe for FakeProbe {
    fn in_flight(&self, endpoint: &Endpoint) -> usize {
        let map = self.in_flight.lock().unwrap();
        map.get(&endpoint.id).copied().unwrap_or(0)
    }
}

/// Wait (event-driven, with a deadline) until the revision's published endpoints satisfy `done`.
pub async fn wait_published(
    runtime: &ProcessRuntime,
    revision: &RevisionKey,
    what: &str,
    done: impl Fn(&RevisionEndpoints) -> bool,
) -> RevisionEndpoints {
    let deadline = Instant::now() + PATIENCE;
    let registry = runtime.endpoints();
    let mut changes = registry.watch();
    loop {
        let published = registry
            .get(revision)
            .map(|e| (*e).clone())
            .unwrap_or_default();
        if done(&published) {
            return published;
        }
        let next = tokio::time::timeout_at(deadline, changes.changed()).await;
        assert!(
            next.is_ok(),
            "timed out waiting for {what}; last: {published:?}"
        );
    }
}

/// Pids of live processes whose environment names this revision (`K_REVISION`).
pub fn instance_pids(revision: &RevisionKey) -> Vec<i32> {
    let marker = format!("K_REVISION={}", revision.name).into_bytes();
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok());
    pids.filter(|pid| {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        environ.split(|&b| b == 0).any(|var| var == marker) && alive(*pid)
    })
    .collect()
}

/// `GET path` with HTTP/1.0; returns the body (panics unless the status is 200).
pub async fn get(addr: SocketAddr, path: &str) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    get_over(stream, path).await
}

/// `GET path` over a connection made earlier.
pub async fn get_over(mut stream: tokio::net::TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
    assert!(head.contains(" 200 "), "{head}");
    body.to_owned()
}

/// Whether a process with this pid exists (a zombie counts as gone: it no longer runs).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Wait (polling, with a deadline) until the process is gone.
pub async fn wait_gone(pid: i32) {
    let deadline = Instant::now() + PATIENCE;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still alive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether this host lets the runtime make cgroups (root and a cgroup filesystem); stubs exist
/// only then.
pub fn cgroups_available() -> bool {
    let v1 = Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.subtree_control").exists();
    // /proc/self belongs to the effective user.
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    root && (v1 || v2)
}

/// Pids of live stubs waiting for `revision` (their last argument is `<namespace>/<name>`).
pub fn stub_pids(revision: &RevisionKey) -> Vec<i32> {
    let label = revision.to_string().into_bytes();
    let stub = env!("CARGO_BIN_EXE_nimbus-instance-stub").as_bytes();
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok());
    pids.filter(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        args.first() == Some(&stub) && args.last() == Some(&&label[..]) && alive(*pid)
    })
    .collect()
}

/// Wait (polling, with a deadline) until exactly one stub waits for `revision`; its pid.
pub async fn wait_stub(revision: &RevisionKey) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let [pid] = stub_pids(revision)[..] {
            return pid;
        }
        assert!(Instant::now() < deadline, "no stub for {revision}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Make `spec`'s revision known at zero instances, wait for its spare's stub, then ask for one
/// instance: the cold start takes the stub. Returns the stub's pid.
pub async fn start_from_stub(runtime: &ProcessRuntime, spec: &InstanceSpec) -> i32 {
    runtime.set_desired(spec, 0).await.unwrap();
    let stub = wait_stub(&spec.revision).await;
    runtime.set_desired(spec, 1).await.unwrap();
    stub
}
