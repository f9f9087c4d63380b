//! Starting, serving, scaling and removing instances, with real processes.

mod support;

use nimbus_runtime::{RevisionPhase, Runtime, RuntimeError};
use support::*;

#[tokio::test]
async fn started_instance_is_published_and_answers() {
    let runtime = runtime();
    let spec = python_server("ready-00001");
    runtime.set_desired(&spec, 1).await.unwrap();
    let status = wait_ready(&runtime, &spec.revision, 1).await;
    assert_eq!(status.phase, RevisionPhase::Ready);
    assert_eq!(
        (status.desired, status.actual, status.ever_ready),
        (1, 1, true)
    );
    let endpoints = runtime.endpoints().get(&spec.revision).unwrap();
    assert_eq!(endpoints.ready.len(), 1);
    assert_eq!(endpoints.ready[0].id, "ready-00001-1");
    assert!(endpoints.ready[0].addr().unwrap().ip().is_loopback());
    let pid = get(endpoints.ready[0].addr().unwrap(), "/pid").await;
    assert!(pid.parse::<i32>().is_ok(), "{pid}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn environment_working_dir_and_stdin_follow_the_contract() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = python_server("contract-00001");
    spec.args = vec!["extra".into(), "two words".into()];
    spec.env.extend([
        ("GREETING".into(), "first".into()),
        ("GREETING".into(), "second".into()),
    ]);
    spec.working_dir = Some(dir.path().to_owned());
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let addr = addrs(&runtime, &spec.revision)[0];
    let contract: serde_json::Value = serde_json::from_str(&get(addr, "/contract").await).unwrap();
    let env = &contract["env"];
    assert_eq!(env["PORT"], addr.port().to_string());
    assert_eq!(env["K_SERVICE"], "svc");
    assert_eq!(env["K_CONFIGURATION"], "cfg");
    assert_eq!(env["K_REVISION"], "contract-00001");
    assert_eq!(env["GREETING"], "second", "later env entries win");
    assert_eq!(
        contract["argv"],
        serde_json::json!([fixture("contract_server.py"), "extra", "two words"])
    );
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(contract["cwd"], cwd.to_string_lossy().as_ref());
    assert_eq!(contract["stdin_bytes"], 0);
    runtime.shutdown().await;
}

#[tokio::test]
async fn argv_is_command_then_args_exactly() {
    // The output lines of a failed instance show its argv.
    let runtime = runtime();
    let mut spec = spec("argv-00001", &["sh", "-c"]);
    spec.args = vec![
        "printf '<%s>\\n' \"$0\" \"$@\"; exit 9".into(),
        "zero".into(),
        "one two".into(),
    ];
    runtime.set_desired(&spec, 1).await.unwrap();
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "ExitCode9");
    assert!(
        message.ends_with("last output:\n<zero>\n<one two>"),
        "{message}"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn set_desired_is_idempotent() {
    let runtime = runtime();
    let spec = python_server("idem-00001");
    for _ in 0..3 {
        runtime.set_desired(&spec, 1).await.unwrap();
    }
    wait_ready(&runtime, &spec.revision, 1).await;
    runtime.set_desired(&spec, 1).await.unwrap();
    let status = runtime.status(&spec.revision).unwrap();
    assert_eq!((status.actual, status.ready), (1, 1));
    assert_eq!(
        runtime.endpoints().get(&spec.revision).unwrap().ready[0].id,
        "idem-00001-1"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn scale_two_to_zero_unpublishes_first_then_stops() {
    let runtime = runtime();
    let spec = python_server("scale-00001");
    runtime.set_desired(&spec, 2).await.unwrap();
    wait_ready(&runtime, &spec.revision, 2).await;
    let mut pids = Vec::new();
    for addr in addrs(&runtime, &spec.revision) {
        pids.push(get(addr, "/pid").await.parse::<i32>().unwrap());
    }
    runtime.set_desired(&spec, 0).await.unwrap();
    assert!(
        addrs(&runtime, &spec.revision).is_empty(),
        "endpoints go before the processes"
    );
    let status = runtime.status(&spec.revision).unwrap();
    assert_eq!((status.desired, status.actual, status.ready), (0, 0, 0));
    assert_eq!(
        status.phase,
        RevisionPhase::Ready,
        "scaled to zero after being ready"
    );
    for pid in pids {
        wait_gone(pid).await;
    }
}

#[tokio::test]
async fn remove_forgets_the_revision() {
    let runtime = runtime();
    let spec = python_server("remove-00001");
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let pid: i32 = get(addrs(&runtime, &spec.revision)[0], "/pid")
        .await
        .parse()
        .unwrap();
    runtime.remove(&spec.revision).await;
    assert!(runtime.status(&spec.revision).is_none());
    assert!(runtime.endpoints().get(&spec.revision).is_none());
    assert!(!alive(pid), "remove waits until the process is gone");
}

#[tokio::test]
async fn empty_command_is_an_invalid_spec() {
    let runtime = runtime();
    let spec = spec("empty-00001", &[]);
    let error = runtime.set_desired(&spec, 1).await.unwrap_err();
    assert!(matches!(error, RuntimeError::InvalidSpec { .. }), "{error}");
}

#[tokio::test]
async fn output_goes_to_a_log_file_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_with(|c| c.data_dir = Some(dir.path().to_owned()));
    let spec = python_server("logs-00001");
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    runtime.shutdown().await;
    let log = dir.path().join("logs/default/logs-00001/logs-00001-1.log");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("contract server starting"), "{text}");
}

#[tokio::test]
async fn runs_the_sample_function() {
    let hello = hello_binary();
    let runtime = runtime();
    let spec = spec("hello-00001", &[hello.to_str().unwrap()]);
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let body = get(addrs(&runtime, &spec.revision)[0], "/").await;
    assert!(
        body.starts_with("Hello World!\nrevision: hello-00001\nservice: svc\n"),
        "{body}"
    );
    runtime.shutdown().await;
}
