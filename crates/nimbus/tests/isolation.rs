//! Limits, probes and restarts for host processes, end to end with the real binary and the
//! `nimbus-test-app` program: a memory hog is OOM-killed and the revision says so, a fork bomb
//! hits the pids limit, a failing liveness probe restarts the instance, and a readiness probe
//! gates traffic. Tests that need cgroups skip (saying why) where they are unavailable, except
//! in CI.

use std::path::Path;
use std::time::{Duration, Instant};

use nimbus_testkit::{Nimbus, RouterClient, condition, image::test_app_binary, manifest};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

/// A process service running the test app with minScale 1, plus `extra` container fields and
/// `annotations`.
fn service(name: &str, annotations: &[(&str, &str)], extra: &str) -> String {
    let mut all = vec![("autoscaling.knative.dev/min-scale", "1")];
    all.extend_from_slice(annotations);
    let app = test_app_binary();
    let container = format!("command: [\"{}\"]\n{extra}", app.display());
    manifest::service(name, &all, "runtimeClassName: process", &container)
}

/// Whether limits can be enforced here; prints why not (and fails in CI).
fn cgroups_available() -> bool {
    let v1 = Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.subtree_control").exists();
    let root = nimbus_testkit::image::is_root();
    if (v1 || v2) && root {
        return true;
    }
    nimbus_testkit::skip(&format!(
        "cgroup limits need root and a cgroup filesystem (root: {root}, v1: {v1}, v2: {v2})"
    ));
    false
}

async fn start(yaml: &str, name: &str) -> (Nimbus, RouterClient) {
    Nimbus::start_serving(Path::new(BIN), &[], yaml, name, Duration::from_secs(60))
        .await
        .unwrap()
}

/// Poll the first revision's Ready condition until `want(status, reason)` holds.
async fn wait_ready_condition(
    nimbus: &Nimbus,
    name: &str,
    timeout: Duration,
    want: impl Fn(&str, &str) -> bool,
) -> (String, String, String) {
    let deadline = Instant::now() + timeout;
    let path = format!("/apis/serving.knative.dev/v1/namespaces/default/revisions/{name}-00001");
    loop {
        let rev = nimbus.api_get(&path).await.unwrap().unwrap_or_default();
        let c = condition(&rev["status"], "Ready");
        if want(&c.0, &c.1) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached; last: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_oom_killed_and_the_revision_says_so() {
    if !cgroups_available() {
        return;
    }
    let yaml = service("hog", &[], "resources: {limits: {memory: 32Mi}}");
    let (nimbus, client) = start(&yaml, "hog").await;
    // A bystander service shares the machine, and must not notice.
    assert!(
        nimbus
            .apply(&service("bystander", &[], ""))
            .status
            .success()
    );
    nimbus
        .wait_service_ready("bystander", Duration::from_secs(60))
        .await
        .unwrap();
    let host = "hog.default.localhost";
    let reply = client.get(host, "/alloc?mb=200").await;
    assert!(
        reply.as_ref().map_or(true, |r| r.status >= 500),
        "allocating 200 MiB under a 32 MiB limit must fail: {reply:?}"
    );
    let (_, reason, message) =
        wait_ready_condition(&nimbus, "hog", Duration::from_secs(20), |_, r| {
            r == "OOMKilled"
        })
        .await;
    assert_eq!(reason, "OOMKilled");
    assert!(message.contains("memory limit"), "{message}");
    let bystander = client
        .get("bystander.default.localhost", "/")
        .await
        .unwrap();
    assert_eq!(bystander.status, 200, "other services are unaffected");
    // It is restarted and serves again.
    let reply = client
        .get_until(host, "/", Duration::from_secs(30), |r| r.status == 200)
        .await
        .unwrap();
    assert!(reply.body.contains("hello from test-app"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_stops_at_the_pids_limit() {
    if !cgroups_available() {
        return;
    }
    let yaml = service("forks", &[("nimbus.dev/pids-limit", "40")], "");
    let (_nimbus, client) = start(&yaml, "forks").await;
    let host = "forks.default.localhost";
    let reply = client.get(host, "/forkbomb").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let spawned: u64 = reply
        .body
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no count in {:?}", reply.body));
    assert!(
        spawned < 40,
        "the pids limit must stop the bomb, spawned {spawned}"
    );
    let reply = client.get(host, "/").await.unwrap();
    assert_eq!(reply.status, 200, "the instance survives its own fork bomb");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_liveness_probe_restarts_the_instance() {
    let yaml = service(
        "live",
        &[],
        "livenessProbe: {httpGet: {path: /healthz}, periodSeconds: 1, failureThreshold: 2}",
    );
    let (_nimbus, client) = start(&yaml, "live").await;
    let host = "live.default.localhost";
    assert_eq!(client.get(host, "/healthz").await.unwrap().status, 200);
    assert_eq!(client.get(host, "/healthz/fail").await.unwrap().status, 200);
    assert_eq!(client.get(host, "/healthz").await.unwrap().status, 500);
    // Only a new process answers 200 again: the failure flag lives in the old one.
    let reply = client
        .get_until(host, "/healthz", Duration::from_secs(30), |r| {
            r.status == 200
        })
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_readiness_probe_gates_traffic() {
    let yaml = service(
        "gated",
        &[],
        "env: [{name: READY_DELAY_MS, value: \"1500\"}]\nreadinessProbe: {httpGet: {path: /ready}}",
    );
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let applied = Instant::now();
    assert!(nimbus.apply(&yaml).status.success());
    nimbus
        .wait_service_ready("gated", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        applied.elapsed() >= Duration::from_millis(1500),
        "ready after {:?}, before the app's /ready passed",
        applied.elapsed()
    );
    let client = RouterClient::new(&nimbus.http_addr);
    let reply = client
        .get("gated.default.localhost", "/ready")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "traffic only reaches a ready instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_exec_startup_probe_is_the_revisions_reason() {
    let yaml = service(
        "slowstart",
        &[],
        "startupProbe: {exec: {command: [/bin/sh, -c, \"echo not yet; exit 1\"]}, periodSeconds: 1, failureThreshold: 2}",
    );
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    assert!(nimbus.apply(&yaml).status.success());
    let (_, _, message) =
        wait_ready_condition(&nimbus, "slowstart", Duration::from_secs(30), |_, r| {
            r == "StartupProbeFailed"
        })
        .await;
    assert!(
        message.contains("startup probe failed 2 times"),
        "{message}"
    );
}
