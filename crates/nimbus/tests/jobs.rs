//! Jobs and schedules end to end (issue #14, Cloud Run jobs' model) with the real binary and
//! host-process tasks: `nimbus job run` creates an Execution whose tasks run with their index,
//! count and attempt in the environment, at most `parallelism` at once, a failed attempt
//! retried up to `maxRetries`, a task stopped at its timeout, an execution cancelled, an
//! execution interrupted by `kill -9` of the server finished after the restart, and
//! Schedules that start executions (with `Forbid` and history limits) or send CloudEvents.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use nimbus_testkit::Nimbus;
use nimbus_testkit::api::wait_until;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

/// A Job of host-process tasks running `script` under `/bin/sh -c`.
fn job(
    name: &str,
    tasks: u32,
    parallelism: u32,
    retries: u32,
    timeout: u32,
    script: &str,
) -> String {
    let script = script.replace('\'', "''");
    format!(
        r#"apiVersion: run.nimbus.dev/v1
kind: Job
metadata:
  name: {name}
spec:
  template:
    metadata:
      annotations:
        nimbus.dev/runtime: process
    spec:
      taskCount: {tasks}
      parallelism: {parallelism}
      template:
        spec:
          maxRetries: {retries}
          timeoutSeconds: {timeout}
          containers:
          - command: ["/bin/sh", "-c", '{script}']
"#
    )
}

async fn execution(nimbus: &Nimbus, name: &str) -> Value {
    nimbus.must("executions", name).await
}

/// Wait until the execution's Completed condition is True or False.
async fn completed(nimbus: &Nimbus, name: &str) -> Value {
    wait_until(
        "the execution completes",
        Duration::from_secs(90),
        async || {
            let e = execution(nimbus, name).await;
            let done = e["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Completed" && c["status"] != "Unknown");
            if done { Ok(e) } else { Err(e.to_string()) }
        },
    )
    .await
}

fn condition<'a>(e: &'a Value, type_: &str) -> &'a Value {
    e["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn run(nimbus: &Nimbus, job: &str) -> String {
    nimbus.cli_ok(&["job", "run", job]).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_with_their_index_in_parallel_and_are_retried() {
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display();
    // Every attempt records itself; task 2 fails its first attempt; each task takes a moment,
    // so two run at once and never more.
    let script = format!(
        "echo start $CLOUD_RUN_TASK_INDEX $(date +%s%N) >> {dir}/events; \
         echo task $CLOUD_RUN_TASK_INDEX of $CLOUD_RUN_TASK_COUNT attempt $CLOUD_RUN_TASK_ATTEMPT \
         index $JOB_COMPLETION_INDEX job $CLOUD_RUN_JOB; sleep 0.3; \
         echo end $CLOUD_RUN_TASK_INDEX $(date +%s%N) >> {dir}/events; \
         if [ $CLOUD_RUN_TASK_INDEX = 2 ] && [ $CLOUD_RUN_TASK_ATTEMPT = 0 ]; then echo failing >&2; exit 3; fi"
    );
    nimbus.apply_ok(&job("report", 4, 2, 1, 60, &script));
    let name = nimbus
        .cli_ok(&["job", "run", "report", "--wait"])
        .trim()
        .to_string();
    assert!(name.starts_with("report-"), "{name}");
    let e = execution(&nimbus, &name).await;
    let st = &e["status"];
    assert_eq!(condition(&e, "Completed")["status"], "True", "{e}");
    assert_eq!(
        (st["succeededCount"].as_i64(), st["retriedCount"].as_i64()),
        (Some(4), Some(1))
    );
    let tasks = st["tasks"].as_array().unwrap();
    assert_eq!(tasks[2]["attempts"], 2, "{e}");
    assert_eq!(tasks[0]["attempts"], 1);
    assert!(
        tasks
            .iter()
            .all(|t| t["state"] == "Succeeded" && t["exitCode"] == 0)
    );

    // At most two at once: replay the start/end events.
    let events = std::fs::read_to_string(out.path().join("events")).unwrap();
    let mut timeline: Vec<(u128, i32)> = events
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[2].parse().unwrap(), if f[0] == "start" { 1 } else { -1 })
        })
        .collect();
    timeline.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, d) in timeline {
        now += d;
        peak = peak.max(now);
    }
    assert_eq!(peak, 2, "{events}");

    // Each attempt's output, by task.
    let logs = nimbus.cli_ok(&["job", "logs", &name, "--task", "2"]);
    assert!(
        logs.contains(&format!("{name}-2-0")) && logs.contains("failing"),
        "{logs}"
    );
    assert!(
        logs.contains("task 2 of 4 attempt 1 index 2 job report"),
        "{logs}"
    );
    assert!(!logs.contains("task 1 "), "{logs}");
    let table = nimbus.cli_ok(&["job", "tasks", &name]);
    assert!(table.contains("Succeeded"), "{table}");
    let executions = nimbus.cli_ok(&["job", "executions", "report"]);
    assert!(
        executions.contains(&name) && executions.contains("Succeeded"),
        "{executions}"
    );

    // The Job says which execution came last; kubectl sees the same columns.
    let j = wait_until(
        "the job's status names it",
        Duration::from_secs(10),
        async || {
            let j = nimbus.must("jobs", "report").await;
            match j["status"]["latestCreatedExecution"]["name"] == name.as_str() {
                true => Ok(j),
                false => Err(j.to_string()),
            }
        },
    )
    .await;
    assert_eq!(j["status"]["executionCount"], 1);

    // kubectl: discovery, Knative-style tables, explain.
    if nimbus_testkit::kube::have_kubectl() {
        let table = nimbus.kubectl_ok(&["get", "executions"], None);
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "JOB",
                "TASKS",
                "RUNNING",
                "SUCCEEDED",
                "FAILED",
                "COMPLETED",
                "REASON"
            ],
            "{table}"
        );
        assert!(
            nimbus_testkit::row(&table, &name).contains(&"Succeeded"),
            "{table}"
        );
        let jobs = nimbus.kubectl_ok(&["get", "jobs.run.nimbus.dev"], None);
        assert!(
            nimbus_testkit::row(&jobs, "report").contains(&"True"),
            "{jobs}"
        );
        let explain = nimbus.kubectl_ok(&["explain", "executions.spec.template.spec"], None);
        assert!(
            explain.contains("maxRetries") && explain.contains("timeoutSeconds"),
            "{explain}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_timeouts_and_cancellation_end_an_execution() {
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    // Fails for good after its retry, with its exit code.
    nimbus.apply_ok(&job("broken", 1, 1, 1, 60, "echo oops; exit 5"));
    let out = nimbus.cli(&["job", "run", "broken", "--wait"]);
    assert!(
        !out.status.success(),
        "a failed execution must fail `job run --wait`"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TasksFailed"), "{stderr}");
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let e = execution(&nimbus, &name).await;
    assert_eq!(condition(&e, "Completed")["status"], "False");
    let task = &e["status"]["tasks"][0];
    assert_eq!(
        (task["state"].as_str(), task["exitCode"].as_i64()),
        (Some("Failed"), Some(5))
    );
    assert_eq!(task["attempts"], 2);
    assert!(task["message"].as_str().unwrap().contains("oops"), "{task}");

    // Stopped at its timeout.
    nimbus.apply_ok(&job("slow", 1, 1, 0, 1, "sleep 30"));
    let name = run(&nimbus, "slow");
    let e = completed(&nimbus, &name).await;
    assert_eq!(e["status"]["tasks"][0]["reason"], "DeadlineExceeded", "{e}");

    // Cancelled: the running tasks stop, the pending one never starts.
    nimbus.apply_ok(&job("long", 3, 2, 0, 600, "sleep 30"));
    let name = run(&nimbus, "long");
    wait_until("two tasks run", Duration::from_secs(30), async || {
        let e = execution(&nimbus, &name).await;
        match e["status"]["runningCount"].as_i64() {
            Some(2) => Ok(()),
            _ => Err(e.to_string()),
        }
    })
    .await;
    nimbus.cli_ok(&["job", "cancel", &name]);
    let e = completed(&nimbus, &name).await;
    assert_eq!(condition(&e, "Completed")["reason"], "Cancelled", "{e}");
    let states: Vec<&str> = e["status"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["Cancelled"; 3]);
    assert_eq!(
        e["status"]["tasks"][2]["attempts"], 0,
        "the third never started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_interrupted_by_a_crash_finishes_after_the_restart() {
    let mut nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display();
    // The first attempt of each task waits long enough to be killed with the server.
    let script = format!(
        "echo $CLOUD_RUN_TASK_INDEX-$CLOUD_RUN_TASK_ATTEMPT >> {dir}/attempts; \
         if [ $CLOUD_RUN_TASK_ATTEMPT = 0 ]; then sleep 60; fi"
    );
    nimbus.apply_ok(&job("batch", 2, 2, 2, 600, &script));
    let name = run(&nimbus, "batch");
    // Both first attempts have begun (the file says so, not only the status).
    let attempts_file = out.path().join("attempts");
    wait_until("both tasks run", Duration::from_secs(30), async || {
        let seen = std::fs::read_to_string(&attempts_file).unwrap_or_default();
        match seen.lines().count() {
            2 => Ok(()),
            _ => Err(seen),
        }
    })
    .await;
    nimbus.kill();
    nimbus.restart().expect("restart");
    let e = completed(&nimbus, &name).await;
    assert_eq!(condition(&e, "Completed")["status"], "True", "{e}");
    assert_eq!(e["status"]["retriedCount"], 2, "{e}");
    let attempts: BTreeSet<String> = std::fs::read_to_string(out.path().join("attempts"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        attempts,
        BTreeSet::from(["0-0", "0-1", "1-0", "1-1"].map(String::from))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_start_executions_and_send_cloudevents() {
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    // A receiver of scheduled events (the sink's URI).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buf = vec![0; 8192];
                let mut got = Vec::new();
                while !String::from_utf8_lossy(&got).contains("{\"hello\"") {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send(String::from_utf8_lossy(&got).to_lowercase());
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    nimbus.apply_ok(&format!(
        r#"apiVersion: run.nimbus.dev/v1
kind: Schedule
metadata:
  name: ping
spec:
  schedule: "*/1 * * * * *"
  timeZone: Europe/Berlin
  event:
    sink:
      uri: http://127.0.0.1:{port}/
    data: '{{"hello": "world"}}'
"#
    ));
    let request = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a scheduled event arrives")
        .unwrap();
    for header in [
        "ce-specversion: 1.0",
        "ce-type: dev.knative.sources.ping",
        "ce-source: /apis/v1/namespaces/default/schedules/ping",
        "content-type: application/json",
    ] {
        assert!(request.contains(header), "{header} in {request}");
    }
    assert!(request.starts_with("post / "), "{request}");
    nimbus.delete("schedules", "ping").await;

    // Every second, a run of the job; Forbid while one runs (each takes 1.5 s); only the
    // last two successful executions are kept.
    nimbus.apply_ok(&job("tick", 1, 1, 0, 60, "sleep 1.5"));
    nimbus.apply_ok(
        r#"apiVersion: run.nimbus.dev/v1
kind: Schedule
metadata:
  name: every-second
spec:
  schedule: "* * * * * *"
  concurrencyPolicy: Forbid
  successfulExecutionsHistoryLimit: 2
  jobRef:
    name: tick
"#,
    );
    let s = wait_until(
        "three runs succeeded",
        Duration::from_secs(60),
        async || {
            let s = nimbus.must("schedules", "every-second").await;
            let executions = nimbus.names("executions").await;
            let runs: Vec<&String> = executions
                .iter()
                .filter(|n| n.starts_with("every-second-"))
                .collect();
            // Never two at once.
            let active = s["status"]["active"].as_array().map_or(0, Vec::len);
            assert!(active <= 1, "Forbid: {s}");
            let succeeded = s["status"]["lastSuccessfulTime"].is_string();
            match (succeeded, runs.len()) {
                (true, 2..=3) => Ok(s),
                _ => Err(format!("{s} {executions:?}")),
            }
        },
    )
    .await;
    assert_eq!(condition(&s, "Ready")["status"], "True", "{s}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let executions = nimbus.names("executions").await;
    let runs = executions
        .iter()
        .filter(|n| n.starts_with("every-second-"))
        .count();
    assert!(
        runs <= 3,
        "history is pruned to 2 (+ the active one): {executions:?}"
    );
    let table = nimbus.cli_ok(&["get", "schedules"]);
    assert!(
        table.contains("every-second") && table.contains("* * * * * *"),
        "{table}"
    );
}
