//! Helpers for the process-runtime tests: specs, a fast runtime, event-driven waiting with
//! deadlines, a tiny HTTP client and process-liveness checks.

#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nimbus_runtime::{
    InstanceSpec, Protocol, RevisionKey, RevisionPhase, RevisionRuntimeStatus, Runtime,
};
use nimbus_runtime_process::{ProcessRuntime, ProcessRuntimeConfig, RestartBackoff};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long any test waits for something that should happen quickly.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A runtime with short grace and back-off so tests run fast.
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
        ..ProcessRuntimeConfig::default()
    };
    adjust(&mut config);
    ProcessRuntime::new(config)
}

/// A spec running `command`, with service/configuration labels.
pub fn spec(revision: &str, command: &[&str]) -> InstanceSpec {
    let labels = BTreeMap::from([
        ("serving.knative.dev/service".to_owned(), "svc".to_owned()),
        (
            "serving.knative.dev/configuration".to_owned(),
            "cfg".to_owned(),
        ),
    ]);
    InstanceSpec {
        revision: RevisionKey::new("default", revision),
        runtime_class: "process".into(),
        image: None,
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        args: vec![],
        env: vec![],
        working_dir: None,
        protocol: Protocol::Http1,
        startup_timeout: PATIENCE,
        socket_activation: false,
        labels,
    }
}

/// The contract-checking Python server (binds `$PORT` itself).
pub fn python_server(revision: &str) -> InstanceSpec {
    spec(revision, &["python3", &fixture("contract_server.py")])
}

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    path.to_string_lossy().into_owned()
}

/// Wait (event-driven, with a deadline) until the revision's status satisfies `done`.
pub async fn wait_until(
    runtime: &ProcessRuntime,
    revision: &RevisionKey,
    what: &str,
    done: impl Fn(&RevisionRuntimeStatus) -> bool,
) -> RevisionRuntimeStatus {
    let deadline = Instant::now() + PATIENCE;
    let mut events = runtime.subscribe();
    loop {
        let status = runtime.status(revision);
        if let Some(status) = status.as_ref().filter(|s| done(s)) {
            return status.clone();
        }
        let next = tokio::time::timeout_at(deadline, events.recv()).await;
        assert!(
            next.is_ok(),
            "timed out waiting for {what}; last status: {status:?}"
        );
    }
}

pub async fn wait_ready(
    runtime: &ProcessRuntime,
    revision: &RevisionKey,
    n: u32,
) -> RevisionRuntimeStatus {
    wait_until(runtime, revision, &format!("{n} ready"), |s| s.ready == n).await
}

/// Wait until the phase is `Failed`; returns `(reason, message)`.
pub async fn wait_failed(runtime: &ProcessRuntime, revision: &RevisionKey) -> (String, String) {
    let status = wait_until(runtime, revision, "failure", |s| {
        matches!(s.phase, RevisionPhase::Failed { .. })
    })
    .await;
    match status.phase {
        RevisionPhase::Failed { reason, message } => (reason, message),
        _ => unreachable!(),
    }
}

/// The ready endpoints' addresses.
pub fn addrs(runtime: &ProcessRuntime, revision: &RevisionKey) -> Vec<SocketAddr> {
    let endpoints = runtime.endpoints().get(revision);
    endpoints
        .map(|e| e.ready.iter().map(|e| e.addr).collect())
        .unwrap_or_default()
}

/// `GET path` with HTTP/1.0; returns the body (panics unless the status is 200).
pub async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
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
