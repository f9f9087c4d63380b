//! The revision's request timeouts end to end: the real binary serves `nimbus-test-app` as a
//! host process whose manifest sets `timeoutSeconds`, `responseStartTimeoutSeconds` and
//! `idleTimeoutSeconds`, and each limit ends a request the way Knative defines it — a 504 when
//! the response has not started, a cut (no clean end of body) when it is still streaming.

use std::path::Path;
use std::time::{Duration, Instant};

use nimbus_testkit::{Nimbus, image::test_app_binary, manifest};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const HOST: &str = "slow.default.localhost";

/// The test app with one instance kept up, a 5 s request timeout, 1 s to start a response and
/// at most 2 s without a byte.
fn service() -> String {
    let container = format!("command: [\"{}\"]", test_app_binary().display());
    let spec = "runtimeClassName: process\ntimeoutSeconds: 5\nresponseStartTimeoutSeconds: 1\nidleTimeoutSeconds: 2";
    let annotations = [("autoscaling.knative.dev/min-scale", "1")];
    manifest::service("slow", &annotations, spec, &container)
}

/// Polls the service's logs until a line contains `text`.
async fn wait_for_log(nimbus: &Nimbus, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = nimbus.cli_ok(&["logs", "slow"]);
        if logs.contains(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the logs:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifests_timeouts_end_slow_requests() {
    let timeout = Duration::from_secs(60);
    let (nimbus, client) = Nimbus::start_serving(Path::new(BIN), &[], &service(), "slow", timeout)
        .await
        .unwrap();

    // 3 s of streaming, longer than idleTimeoutSeconds but in shorter gaps, done within
    // timeoutSeconds: the whole body.
    let whole = client
        .get_streamed(HOST, "/stream?chunks=15&every_ms=200")
        .await
        .unwrap();
    assert_eq!((whole.status, &whole.end), (200, &Ok(())), "{whole:?}");
    assert_eq!(whole.body.lines().count(), 15, "{whole:?}");

    // Still streaming at timeoutSeconds: cut, and the instance sees its connection closed.
    let started = Instant::now();
    let cut = client
        .get_streamed(HOST, "/stream?chunks=1000&every_ms=200")
        .await
        .unwrap();
    assert_eq!(cut.status, 200, "{cut:?}");
    assert!(cut.end.is_err(), "the body ended cleanly: {cut:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "cut early: {cut:?}"
    );
    assert!(cut.body.starts_with("chunk 0\nchunk 1\n"), "{cut:?}");
    wait_for_log(&nimbus, "stream: stopped after").await;

    // Headers later than responseStartTimeoutSeconds: 504, naming the limit.
    let late = client.get(HOST, "/slow-headers?ms=3000").await.unwrap();
    assert_eq!(late.status, 504, "{late:?}");
    assert!(
        late.body.contains("responseStartTimeoutSeconds"),
        "{late:?}"
    );

    // Silent for longer than idleTimeoutSeconds after the headers: cut.
    let idle = client
        .get_streamed(HOST, "/stream?chunks=2&every_ms=3000")
        .await
        .unwrap();
    assert_eq!(idle.status, 200, "{idle:?}");
    assert!(idle.end.is_err(), "the body ended cleanly: {idle:?}");
    assert_eq!(idle.body, "", "{idle:?}");
}
