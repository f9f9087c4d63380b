//! Cold starts from instance stubs: a spare cgroup's stub waits inside it and becomes the
//! instance with one `execve` (same pid, group, output pipes and cgroup). Exec failures read as
//! before, a dead stub falls back to the ordinary start, and no stub outlives its revision or
//! runtime. Every test needs cgroups (stubs live in spare cgroups) and skips without them.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nimbus_runtime::Runtime;
use support::*;

macro_rules! require_cgroups {
    () => {
        if !cgroups_available() {
            nimbus_testkit::skip("instance stubs need cgroups (root and a cgroup filesystem)");
            return;
        }
    };
}

/// The cgroup of `pid` in the pids hierarchy (v1) or the unified one.
fn cgroup_of(pid: i32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains(":pids:") || l.starts_with("0::"));
    line.and_then(|l| l.splitn(3, ':').nth(2))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_cold_start_execs_the_stub_waiting_in_the_spare_cgroup() {
    require_cgroups!();
    let runtime = runtime();
    let mut spec = python_server("stubbed-00001");
    spec.env.extend([("GREETING".into(), "hi".into())]);
    spec.working_dir = Some(std::env::temp_dir());
    runtime.set_desired(&spec, 0).await.unwrap();
    let stub = wait_stub(&spec.revision).await;
    let cgroup = cgroup_of(stub);
    assert!(cgroup.contains("/default/stubbed-00001-"), "{cgroup}");
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let addr = addrs(&runtime, &spec.revision)[0];
    let pid: i32 = get(addr, "/pid").await.parse().unwrap();
    assert_eq!(pid, stub, "the instance is the stub, executed");
    assert_eq!(cgroup_of(pid), cgroup, "in the spare cgroup from the start");
    let contract: serde_json::Value = serde_json::from_str(&get(addr, "/contract").await).unwrap();
    assert_eq!(contract["env"]["PORT"], addr.port().to_string());
    assert_eq!(contract["env"]["K_REVISION"], "stubbed-00001");
    assert_eq!(contract["env"]["GREETING"], "hi");
    assert_eq!(contract["stdin_bytes"], 0);
    let cwd = std::env::temp_dir().canonicalize().unwrap();
    assert_eq!(contract["cwd"], cwd.to_string_lossy().as_ref());
    // Taken, so a new spare (with a new stub) is made in the background.
    let next = wait_stub(&spec.revision).await;
    assert_ne!(next, stub);
    runtime.shutdown().await;
}

#[tokio::test]
async fn socket_activation_hands_the_socket_to_the_stub() {
    require_cgroups!();
    let runtime = runtime();
    let spec = activated_server("stubbed-activated-00001", None);
    let stub = start_from_stub(&runtime, &spec).await;
    wait_ready(&runtime, &spec.revision, 1).await;
    let addr = addrs(&runtime, &spec.revision)[0];
    assert_eq!(get(addr, "/pid").await.parse::<i32>().unwrap(), stub);
    assert!(cgroup_of(stub).contains("/default/stubbed-activated-00001-"));
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_missing_command_fails_through_the_stub_as_before() {
    require_cgroups!();
    let runtime = runtime();
    let spec = spec("stubbed-missing-00001", &["/nonexistent/bin/server"]);
    let stub = start_from_stub(&runtime, &spec).await;
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "CommandNotFound");
    assert!(
        message.contains("\"/nonexistent/bin/server\" not found"),
        "{message}"
    );
    assert!(message.contains("No such file or directory"), "{message}");
    wait_gone(stub).await;
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_program_that_may_not_be_executed_is_start_failed() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("server");
    std::fs::write(&program, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).unwrap();
    let runtime = runtime();
    let spec = spec("stubbed-noexec-00001", &[program.to_str().unwrap()]);
    start_from_stub(&runtime, &spec).await;
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "StartFailed");
    assert!(message.contains("could not be started"), "{message}");
    assert!(message.contains("Permission denied"), "{message}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_dead_stub_falls_back_to_joining_the_cgroup_at_start() {
    require_cgroups!();
    let runtime = runtime();
    let spec = python_server("stub-died-00001");
    runtime.set_desired(&spec, 0).await.unwrap();
    let stub = wait_stub(&spec.revision).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(stub), nix::sys::signal::SIGKILL).unwrap();
    wait_gone(stub).await;
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let addr = addrs(&runtime, &spec.revision)[0];
    let pid: i32 = get(addr, "/pid").await.parse().unwrap();
    assert_ne!(pid, stub);
    assert!(
        cgroup_of(pid).contains("/default/stub-died-00001-"),
        "still limited"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_stub_started_instance_is_stopped_with_its_whole_group() {
    require_cgroups!();
    let grace = Duration::from_millis(300);
    let runtime = runtime_with(|c| c.stop_grace = grace);
    // Ignores SIGTERM and leaves a helper in its group: SIGKILL after the grace ends both.
    let script = "trap '' TERM; sleep 1000 & echo helper $!; exec python3 \"$0\"";
    let mut spec = spec("stubbed-group-00001", &["sh", "-c", script]);
    spec.args = vec![fixture("contract_server.py")];
    let stub = start_from_stub(&runtime, &spec).await;
    wait_ready(&runtime, &spec.revision, 1).await;
    let helpers: Vec<i32> = instance_pids(&spec.revision)
        .into_iter()
        .filter(|&pid| pid != stub)
        .collect();
    assert!(!helpers.is_empty(), "the helper runs");
    let began = tokio::time::Instant::now();
    runtime.remove(&spec.revision).await;
    assert!(
        began.elapsed() >= grace,
        "SIGTERM was ignored until SIGKILL"
    );
    assert!(!alive(stub));
    for helper in helpers {
        wait_gone(helper).await;
    }
}

#[tokio::test]
async fn no_stub_outlives_scale_to_zero_remove_shutdown_or_drop() {
    require_cgroups!();
    let runtime = runtime();
    let a = python_server("stub-leak-a-00001");
    let b = python_server("stub-leak-b-00001");
    // Scaling to zero keeps the spare's stub: the next cold start takes it.
    start_from_stub(&runtime, &a).await;
    wait_ready(&runtime, &a.revision, 1).await;
    let refilled = wait_stub(&a.revision).await;
    runtime.set_desired(&a, 0).await.unwrap();
    wait_until(&runtime, &a.revision, "no instance", |s| s.actual == 0).await;
    assert_eq!(stub_pids(&a.revision), [refilled]);
    // Removing the revision kills it.
    runtime.remove(&a.revision).await;
    wait_gone(refilled).await;
    // Shutdown kills every stub (that no refill makes another afterwards is a unit test of the
    // pool, with paused time).
    let b_stub = start_from_stub(&runtime, &b).await;
    wait_ready(&runtime, &b.revision, 1).await;
    let b_refilled = wait_stub(&b.revision).await;
    runtime.shutdown().await;
    wait_gone(b_refilled).await;
    assert!(!alive(b_stub));
    // Dropping a runtime kills its stubs.
    let other = support::runtime();
    let c = python_server("stub-leak-c-00001");
    other.set_desired(&c, 0).await.unwrap();
    let c_stub = wait_stub(&c.revision).await;
    drop(other);
    wait_gone(c_stub).await;
}

#[tokio::test]
async fn without_stubs_a_socket_activated_instance_still_joins_its_cgroup() {
    require_cgroups!();
    // The activation hook ends in its own `execve`: the join must come before it.
    let runtime = runtime_with(|c| c.instance_stub = None);
    let spec = activated_server("unstubbed-activated-00001", None);
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let addr = addrs(&runtime, &spec.revision)[0];
    let pid: i32 = get(addr, "/pid").await.parse().unwrap();
    let cgroup = cgroup_of(pid);
    assert!(
        cgroup.contains("/default/unstubbed-activated-00001-"),
        "{cgroup}"
    );
    assert!(stub_pids(&spec.revision).is_empty());
    runtime.shutdown().await;
}
