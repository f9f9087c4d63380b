//! Stopping: shutdown leaves no processes, SIGTERM is followed by SIGKILL after the grace
//! period, whole process groups die, dropping the runtime kills everything.

mod support;

use std::time::Duration;

use nimbus_runtime::{Runtime, RuntimeError};
use support::*;
use tokio::time::Instant;

/// A server whose shell parent also started a background helper in the same process group;
/// the helper's pid is its first output line.
fn server_with_helper(revision: &str, ignore_term: bool) -> nimbus_runtime::InstanceSpec {
    let trap = if ignore_term { "trap '' TERM; " } else { "" };
    let script = format!("{trap}sleep 1000 & echo helper $!; exec python3 \"$0\"");
    let mut spec = spec(revision, &["sh", "-c", &script]);
    spec.args = vec![fixture("contract_server.py")];
    spec
}

async fn pids(
    runtime: &nimbus_runtime_process::ProcessRuntime,
    spec: &nimbus_runtime::InstanceSpec,
) -> Vec<i32> {
    let mut pids = Vec::new();
    for addr in addrs(runtime, &spec.revision) {
        pids.push(get(addr, "/pid").await.parse().unwrap());
    }
    pids
}

#[tokio::test]
async fn shutdown_leaves_no_process_behind() {
    let runtime = runtime();
    let a = server_with_helper("a-00001", false);
    let b = python_server("b-00001");
    runtime.set_desired(&a, 2).await.unwrap();
    runtime.set_desired(&b, 1).await.unwrap();
    wait_ready(&runtime, &a.revision, 2).await;
    wait_ready(&runtime, &b.revision, 1).await;
    let mut all = pids(&runtime, &a).await;
    all.extend(pids(&runtime, &b).await);
    runtime.shutdown().await;
    for pid in all {
        assert!(!alive(pid), "{pid} survived shutdown");
    }
    assert!(runtime.status(&a.revision).is_none());
    let error = runtime.set_desired(&a, 1).await.unwrap_err();
    assert!(matches!(error, RuntimeError::ShuttingDown), "{error}");
}

#[tokio::test]
async fn the_whole_process_group_is_stopped() {
    let runtime = runtime();
    let spec = server_with_helper("group-00001", false);
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let helper = helper_pid(&runtime, &spec).await;
    assert!(alive(helper));
    runtime.remove(&spec.revision).await;
    wait_gone(helper).await;
}

/// The helper pid, read from the instance log kept in the data dir would need one; instead the
/// helper is found as the server's sibling in its process group.
async fn helper_pid(
    runtime: &nimbus_runtime_process::ProcessRuntime,
    spec: &nimbus_runtime::InstanceSpec,
) -> i32 {
    let server = pids(runtime, spec).await[0];
    let group = process_group(server);
    let siblings = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok());
    let mut helpers = siblings.filter(|&pid: &i32| pid != server && process_group(pid) == group);
    helpers
        .next()
        .expect("the background helper runs in the instance's group")
}

fn process_group(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    fields.get(2).and_then(|g| g.parse().ok()).unwrap_or(-1)
}

#[tokio::test]
async fn sigterm_is_followed_by_sigkill_after_the_grace_period() {
    let grace = Duration::from_millis(400);
    let runtime = runtime_with(|c| c.stop_grace = grace);
    let spec = server_with_helper("stubborn-00001", true);
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let server = pids(&runtime, &spec).await[0];
    let began = Instant::now();
    runtime.remove(&spec.revision).await;
    assert!(
        began.elapsed() >= grace,
        "SIGTERM was ignored, so only SIGKILL after {grace:?} ends it"
    );
    assert!(!alive(server));
}

#[tokio::test]
async fn dropping_the_runtime_kills_instances() {
    let runtime = runtime();
    let spec = python_server("drop-00001");
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let pid = pids(&runtime, &spec).await[0];
    drop(runtime);
    wait_gone(pid).await;
}
