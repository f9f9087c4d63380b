//! Instances that fail: exit at once, cannot start, never listen, crash after becoming ready;
//! and how the failure is published to the router (and cleared).

mod support;

use std::time::Duration;

use nimbus_runtime::{RevisionPhase, Runtime};
use support::*;

#[tokio::test]
async fn exit_before_listening_reports_code_port_and_output() {
    let runtime = runtime();
    let spec = spec(
        "early-00001",
        &[
            "sh",
            "-c",
            "echo starting up; echo cannot open db >&2; exit 3",
        ],
    );
    runtime.set_desired(&spec, 1).await.unwrap();
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "ExitCode3");
    assert!(
        message.starts_with("process exited with code 3 before listening on port "),
        "{message}"
    );
    assert!(
        message.contains("starting up") && message.contains("cannot open db"),
        "{message}"
    );
    let status = runtime.status(&spec.revision).unwrap();
    assert!(!status.ever_ready);
    assert!(addrs(&runtime, &spec.revision).is_empty());
    runtime.shutdown().await;
}

#[tokio::test]
async fn missing_command_is_reported() {
    let runtime = runtime();
    let spec = spec("missing-00001", &["/nonexistent/bin/server"]);
    runtime.set_desired(&spec, 1).await.unwrap();
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "CommandNotFound");
    assert!(message.contains("/nonexistent/bin/server"), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn missing_working_dir_is_reported() {
    let runtime = runtime();
    let mut spec = spec("nodir-00001", &["true"]);
    spec.working_dir = Some("/nonexistent/dir".into());
    runtime.set_desired(&spec, 1).await.unwrap();
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "StartFailed");
    assert!(message.contains("/nonexistent/dir"), "{message}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn never_listening_fails_after_the_startup_timeout_and_is_stopped() {
    let runtime = runtime();
    let mut spec = spec(
        "silent-00001",
        &["sh", "-c", "echo pid $$; exec sleep 1000"],
    );
    spec.startup_timeout = Duration::from_millis(300);
    runtime.set_desired(&spec, 1).await.unwrap();
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "StartupTimeout");
    assert!(
        message.contains("default/silent-00001") && message.contains("port"),
        "{message}"
    );
    let pid: i32 = message
        .rsplit("pid ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(pid).await;
    runtime.shutdown().await;
}

#[tokio::test]
async fn crash_after_ready_unpublishes_and_restarts() {
    let runtime = runtime();
    let spec = python_server("crash-00001");
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let first = addrs(&runtime, &spec.revision)[0];
    let mut events = runtime.subscribe();
    get(first, "/exit?code=1").await;
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert!(
        reason == "ExitCode1" || reason == "CrashLoopBackOff",
        "{reason}"
    );
    assert!(
        message.contains("exited with code 1") && message.contains("exiting with 1 on request"),
        "{message}"
    );
    assert!(
        addrs(&runtime, &spec.revision).is_empty(),
        "a crashed instance is unpublished at once"
    );
    let status = wait_ready(&runtime, &spec.revision, 1).await;
    assert_eq!(status.phase, RevisionPhase::Ready);
    assert_eq!(status.actual, 1);
    let second = addrs(&runtime, &spec.revision)[0];
    assert_ne!(first, second, "the restarted instance has a fresh port");
    assert!(events.try_recv().is_ok(), "status changes were announced");
    runtime.shutdown().await;
}

#[tokio::test]
async fn crash_loop_reports_back_off() {
    let runtime = runtime_with(|c| {
        c.restart_backoff.initial = Duration::from_secs(30);
        c.restart_backoff.max = Duration::from_secs(60);
    });
    let spec = python_server("loop-00001");
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    get(addrs(&runtime, &spec.revision)[0], "/exit?code=2").await;
    let status = wait_until(&runtime, &spec.revision, "back-off", |s| {
        matches!(&s.phase, RevisionPhase::Failed { reason, .. } if reason == "CrashLoopBackOff")
    })
    .await;
    let RevisionPhase::Failed { message, .. } = status.phase else {
        unreachable!()
    };
    assert!(
        message.contains("(ExitCode2); restarting in 30s"),
        "{message}"
    );
    assert_eq!(
        (status.actual, status.ready, status.ever_ready),
        (1, 0, true)
    );
    let failure = published_failure(&runtime, &spec.revision).unwrap();
    assert!(failure.starts_with("CrashLoopBackOff: "), "{failure}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn failure_is_published_until_scaled_to_zero_or_removed() {
    let runtime = runtime();
    let spec = spec("published-00001", &["sh", "-c", "echo bad config; exit 3"]);
    runtime.set_desired(&spec, 1).await.unwrap();
    let published = wait_published(&runtime, &spec.revision, "the failure", |e| {
        e.failure.is_some()
    })
    .await;
    assert!(published.ready.is_empty());
    let failure = published.failure.unwrap();
    assert!(
        failure.starts_with("ExitCode3: process exited with code 3 before listening on port ")
            && failure.ends_with("bad config"),
        "{failure}"
    );
    runtime.set_desired(&spec, 0).await.unwrap();
    assert_eq!(
        published_failure(&runtime, &spec.revision),
        None,
        "scaled to zero"
    );
    runtime.set_desired(&spec, 1).await.unwrap();
    assert_eq!(
        published_failure(&runtime, &spec.revision),
        None,
        "a fresh attempt has not failed yet"
    );
    wait_published(&runtime, &spec.revision, "the failure again", |e| {
        e.failure.is_some()
    })
    .await;
    runtime.remove(&spec.revision).await;
    assert!(
        runtime.endpoints().get(&spec.revision).is_none(),
        "no stale failure"
    );
}

#[tokio::test]
async fn failure_is_cleared_when_an_instance_becomes_ready() {
    let runtime = runtime_with(|c| c.restart_backoff.initial = Duration::from_millis(300));
    let marks = tempfile::tempdir().unwrap();
    let script = "if [ -e \"$MARK\" ]; then exec python3 \"$0\"; fi; touch \"$MARK\"; exit 4";
    let mut spec = spec("second-try-00001", &["sh", "-c", script]);
    spec.args = vec![fixture("contract_server.py")];
    let mark = marks.path().join("tried").to_string_lossy().into_owned();
    spec.env.extend([("MARK".into(), mark)]);
    runtime.set_desired(&spec, 1).await.unwrap();
    let published = wait_published(&runtime, &spec.revision, "the failure", |e| {
        e.failure.is_some()
    })
    .await;
    assert!(published.failure.unwrap().starts_with("ExitCode4: "));
    let published = wait_published(&runtime, &spec.revision, "a ready instance", |e| {
        !e.ready.is_empty()
    })
    .await;
    assert_eq!(published.failure, None);
    runtime.shutdown().await;
}

#[tokio::test]
async fn start_failures_are_published_too() {
    let runtime = runtime();
    let spec = spec("not-found-00001", &["/nonexistent/bin/server"]);
    runtime.set_desired(&spec, 1).await.unwrap();
    let published = wait_published(&runtime, &spec.revision, "the failure", |e| {
        e.failure.is_some()
    })
    .await;
    let failure = published.failure.unwrap();
    assert!(failure.starts_with("CommandNotFound: "), "{failure}");
    runtime.shutdown().await;
}
