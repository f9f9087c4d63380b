//! Job tasks on the Wasm runtime: the task example (`examples/task`, a `fn main` program built
//! for wasm32-wasip2) run to completion as a WASI command: success with its env and args in its
//! log, exit codes, timeout, cancellation, volumes, and the components that cannot be tasks.
//! Skipped, with the reason printed, when the wasm32-wasip2 target is not installed (failing
//! under CI).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nimbus_runtime::env::SourceKind;
use nimbus_runtime::volumes::{Volume, VolumeMount};
use nimbus_runtime::{InstanceSpec, RevisionKey, Runtime, TaskEnd, TaskOutcome, TaskRun};
use support::*;
use tokio::sync::watch;

/// The task example's image, or return early (skipping the test) when it cannot be built.
macro_rules! task_or_skip {
    () => {
        match task_wasm() {
            Some(path) => path.to_string_lossy().into_owned(),
            None => return,
        }
    };
}

/// A task spec: the execution `exec-1` of namespace `default` is its revision key.
fn task_spec(image: &str, env: &[(&str, &str)]) -> InstanceSpec {
    let mut spec = spec("exec-1", image);
    spec.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    spec
}

/// Attempt `id` with task index 0 of 2, its first attempt, `timeout`, cancelled through the
/// returned sender.
fn attempt(id: &str, timeout: Duration) -> (TaskRun, watch::Sender<bool>) {
    let (cancel, cancelled) = watch::channel(false);
    let env = [
        ("CLOUD_RUN_TASK_INDEX", "0"),
        ("CLOUD_RUN_TASK_COUNT", "2"),
        ("CLOUD_RUN_TASK_ATTEMPT", "1"),
    ];
    let task = TaskRun {
        id: id.to_owned(),
        env: env.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
        timeout,
        cancel: cancelled,
    };
    (task, cancel)
}

async fn run(runtime: &dyn Runtime, spec: &InstanceSpec, id: &str) -> TaskOutcome {
    let (task, _cancel) = attempt(id, PATIENCE);
    runtime.run_task(spec, task).await
}

/// The text of every line of the task `id`'s log file.
fn log_lines(data_dir: &std::path::Path, id: &str) -> Vec<String> {
    let dir = data_dir.join("logs/default/exec-1");
    let lines = nimbus_logs::read_revision(&dir, None, None).unwrap();
    lines
        .into_iter()
        .filter(|l| l.instance == id)
        .map(|l| l.text)
        .collect()
}

#[tokio::test]
async fn a_command_runs_to_success_with_its_env_and_args_in_its_log() {
    let image = task_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let mut spec = task_spec(&format!("file://{image}"), &[]);
    spec.command = vec!["--mode".into()];
    spec.args = vec!["full".into()];
    let outcome = run(&*runtime, &spec, "exec-1-0-1").await;
    assert_eq!(outcome.end, TaskEnd::Succeeded, "{}", outcome.message);
    assert_eq!(outcome.exit_code, Some(0));
    assert!(
        outcome
            .message
            .starts_with("task exec-1-0-1 exited with code 0; last output:\n")
    );
    let lines = log_lines(dir.path(), "exec-1-0-1");
    assert_eq!(
        lines,
        [
            "task index=0 count=2 attempt=1",
            r#"args=["--mode", "full"]"#
        ]
    );
    // The second run of the same component comes from the compile cache.
    let again = run(&*runtime, &spec, "exec-1-1-1").await;
    assert!(again.succeeded(), "{}", again.message);
    assert_eq!(runtime.compile_stats().cache_hits, 1);
    runtime.shutdown().await;
}

/// A guest's exit code reaches the task: `exit-with-code(3)` is exit code 3.
#[tokio::test]
async fn an_exit_code_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let image = wat_fixture(dir.path(), "exit_command");
    let outcome = run(&*runtime, &task_spec(&image, &[]), "exec-1-0-1").await;
    assert_eq!(
        (outcome.reason(), outcome.exit_code),
        ("Error", Some(3)),
        "{outcome:?}"
    );
    assert_eq!(
        outcome.message,
        "task exec-1-0-1 exited with code 3; no output"
    );
}

/// Rust's `std::process::exit(3)` on wasm32-wasip2 (Rust 1.95's wasi-libc) calls WASI 0.2's
/// `exit(err)`, which carries no number: the task fails with exit code 1, its output saying
/// more.
#[tokio::test]
async fn a_std_exit_code_fails_the_task_with_its_last_output() {
    let image = task_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = task_spec(&image, &[("EXIT_CODE", "3")]);
    let outcome = run(&*runtime, &spec, "exec-1-0-1").await;
    assert_eq!(
        (outcome.reason(), outcome.exit_code),
        ("Error", Some(1)),
        "{outcome:?}"
    );
    assert_eq!(
        outcome.message,
        "task exec-1-0-1 exited with code 1; last output:\ntask index=0 count=2 attempt=1\n\
         args=[]\nexiting with code 3"
    );
}

#[tokio::test]
async fn a_spinning_task_times_out_without_blocking_the_executor() {
    let image = task_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = task_spec(&image, &[("SPIN", "1")]);
    // Compile first, so that the timeout measures the run.
    assert!(
        run(&*runtime, &task_spec(&image, &[]), "warm")
            .await
            .succeeded()
    );
    let (task, _cancel) = attempt("exec-1-0-1", Duration::from_secs(1));
    let started = Instant::now();
    let running = tokio::spawn({
        let runtime = Arc::clone(&runtime);
        async move { runtime.run_task(&spec, task).await }
    });
    // The guest yields every epoch tick: this (current-thread) test runtime still runs timers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(started.elapsed() < Duration::from_millis(900));
    let outcome = running.await.unwrap();
    assert_eq!(outcome.end, TaskEnd::TimedOut, "{}", outcome.message);
    assert_eq!(outcome.reason(), "DeadlineExceeded");
    assert!(
        outcome
            .message
            .starts_with("task exec-1-0-1 ran longer than its timeout of 1s"),
        "{}",
        outcome.message
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_spinning_task_is_cancelled() {
    let image = task_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = task_spec(&image, &[("SPIN", "1")]);
    assert!(
        run(&*runtime, &task_spec(&image, &[]), "warm")
            .await
            .succeeded()
    );
    let (task, cancel) = attempt("exec-1-0-1", PATIENCE);
    let running = tokio::spawn({
        let runtime = Arc::clone(&runtime);
        async move { runtime.run_task(&spec, task).await }
    });
    let deadline = Instant::now() + PATIENCE;
    while log_lines(dir.path(), "exec-1-0-1").len() < 2 {
        assert!(Instant::now() < deadline, "the task printed nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.send(true).unwrap();
    let outcome = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("cancelled in time")
        .unwrap();
    assert_eq!(outcome.end, TaskEnd::Cancelled, "{}", outcome.message);
    assert!(
        outcome.message.contains("task index=0"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_task_reads_its_volumes_and_its_resolved_env() {
    let image = task_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let objects = Arc::new(Objects::default());
    runtime.set_config_source(objects.clone());
    let mut spec = task_spec(&image, &[("READ_FILE", "/etc/cfg/job.toml")]);
    spec.volumes.push(Volume {
        name: "cfg".into(),
        source: SourceKind::ConfigMap,
        object: "cfg".into(),
        items: None,
        default_mode: 0o644,
        optional: false,
    });
    spec.volume_mounts.push(VolumeMount {
        volume: "cfg".into(),
        mount_path: "/etc/cfg".into(),
        sub_path: None,
    });
    let missing = run(&*runtime, &spec, "exec-1-0-1").await;
    assert_eq!(
        missing.end,
        TaskEnd::NotStarted {
            reason: "CreateContainerConfigError".into()
        },
        "{}",
        missing.message
    );
    objects.set(SourceKind::ConfigMap, "cfg", "job.toml", "batch = 10");
    let outcome = run(&*runtime, &spec, "exec-1-0-2").await;
    assert!(outcome.succeeded(), "{}", outcome.message);
    assert!(
        log_lines(dir.path(), "exec-1-0-2").contains(&"file /etc/cfg/job.toml: batch = 10".into())
    );
    let instances = dir.path().join("instances/default");
    let left = std::fs::read_dir(&instances).map_or(0, |d| d.count());
    assert_eq!(left, 0, "a finished task's volumes are removed");
}

#[tokio::test]
async fn an_http_component_is_not_a_task() {
    let Some(hello) = hello_wasm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = task_spec(&hello.to_string_lossy(), &[]);
    let outcome = run(&*runtime, &spec, "exec-1-0-1").await;
    assert_eq!(
        outcome.end,
        TaskEnd::NotStarted {
            reason: "WrongWorld".into()
        }
    );
    assert!(
        outcome.message.contains("a task needs a command component")
            && outcome.message.contains("fn main")
            && outcome.message.contains("wasm32-wasip2"),
        "{}",
        outcome.message
    );
}

/// A command component as a revision still fails as before: it serves no HTTP.
#[tokio::test]
async fn a_command_component_cannot_serve() {
    let image = task_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = spec("cmd-00001", &image);
    runtime.set_desired(&spec, 1).await.unwrap();
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "WrongWorld");
    assert!(message.contains("wasi:http/proxy"), "{message}");
}

#[tokio::test]
async fn a_missing_component_never_starts() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let image = dir.path().join("absent.wasm");
    let spec = task_spec(&image.to_string_lossy(), &[]);
    let outcome = run(&*runtime, &spec, "exec-1-0-1").await;
    assert_eq!(
        outcome.end,
        TaskEnd::NotStarted {
            reason: "ImageNotFound".into()
        }
    );
    assert!(
        outcome.message.contains("absent.wasm"),
        "{}",
        outcome.message
    );
    assert_eq!(spec.revision, RevisionKey::new("default", "exec-1"));
}

/// A trap fails the task with reason `Trap` and the trap in its message.
#[tokio::test]
async fn a_trap_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let image = wat_fixture(dir.path(), "trap_command");
    let outcome = run(&*runtime, &task_spec(&image, &[]), "exec-1-0-1").await;
    assert_eq!(
        outcome.end,
        TaskEnd::Failed {
            reason: "Trap".into()
        },
        "{}",
        outcome.message
    );
    assert!(
        outcome.message.contains("unreachable"),
        "{}",
        outcome.message
    );
}
