//! Socket activation: the endpoint is published as soon as the process exists, connections wait
//! in the kernel's backlog until the program accepts, and programs that never take the socket are
//! reported as failed and unpublished.

mod support;

use nimbus_runtime::Runtime;
use support::*;

#[tokio::test]
async fn published_before_accepting_and_the_first_request_still_succeeds() {
    let runtime = runtime();
    let gate = tempfile::tempdir().unwrap();
    let open = gate.path().join("open");
    let mut spec = activated_server("activated-00001", Some(&open));
    spec.args = vec!["one two".into()];
    runtime.set_desired(&spec, 1).await.unwrap();
    let status = wait_ready(&runtime, &spec.revision, 1).await;
    assert!(
        !status.ever_ready,
        "published, not proven: the program cannot accept before the gate opens"
    );
    let addr = addrs(&runtime, &spec.revision)[0];
    // The kernel completes the connection although nothing in the program accepts yet.
    let queued = tokio::net::TcpStream::connect(addr).await.unwrap();
    std::fs::write(&open, "").unwrap();
    let answer: serde_json::Value =
        serde_json::from_str(&get_over(queued, "/activation").await).unwrap();
    let env = &answer["env"];
    assert_eq!(env["LISTEN_FDS"], "1");
    assert_eq!(env["LISTEN_PID"], answer["pid"].to_string());
    assert_eq!(env["PORT"], addr.port().to_string());
    assert_eq!(env["K_REVISION"], "activated-00001");
    assert_eq!(answer["socket_port"], addr.port());
    assert_eq!(
        answer["argv"],
        serde_json::json!([fixture("activated_server.py"), "one two"])
    );
    wait_until(&runtime, &spec.revision, "accept confirmed", |s| {
        s.ever_ready
    })
    .await;
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_program_that_exits_at_once_fails_and_is_unpublished() {
    let runtime = runtime();
    let mut spec = spec(
        "quitter-00001",
        &["sh", "-c", "echo no socket for me; exit 3"],
    );
    spec.socket_activation = true;
    runtime.set_desired(&spec, 1).await.unwrap();
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "ExitCode3");
    assert!(
        message.starts_with("process exited with code 3 before listening on port ")
            && message.ends_with("no socket for me"),
        "{message}"
    );
    let published = wait_published(&runtime, &spec.revision, "the failure", |e| {
        e.failure.is_some()
    })
    .await;
    assert!(published.ready.is_empty());
    let failure = published.failure.unwrap();
    assert!(
        failure.starts_with("ExitCode3: process exited with code 3"),
        "{failure}"
    );
    assert!(!runtime.status(&spec.revision).unwrap().ever_ready);
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_missing_command_is_reported_as_such() {
    let runtime = runtime();
    let mut spec = spec("missing-activated-00001", &["no-such-server-anywhere"]);
    spec.socket_activation = true;
    runtime.set_desired(&spec, 1).await.unwrap();
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "CommandNotFound");
    assert!(message.contains("no-such-server-anywhere"), "{message}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn the_sample_function_serves_its_first_request_from_the_backlog() {
    let hello = hello_binary();
    let runtime = runtime();
    let mut spec = spec("hello-activated-00001", &[hello.to_str().unwrap()]);
    spec.socket_activation = true;
    // Still sleeping when the endpoint appears; the request waits in the backlog.
    spec.env.extend([("STARTUP_DELAY_MS".into(), "200".into())]);
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let body = get(addrs(&runtime, &spec.revision)[0], "/").await;
    assert!(body.starts_with("Hello World!\n"), "{body}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn shutdown_leaves_no_activated_process_behind() {
    let runtime = runtime();
    let spec = activated_server("activated-many-00001", None);
    runtime.set_desired(&spec, 2).await.unwrap();
    wait_ready(&runtime, &spec.revision, 2).await;
    let mut pids = Vec::new();
    for addr in addrs(&runtime, &spec.revision) {
        pids.push(get(addr, "/pid").await.parse::<i32>().unwrap());
    }
    runtime.shutdown().await;
    for pid in pids {
        assert!(!alive(pid), "{pid} survived shutdown");
    }
}
