//! Tasks (a Job's run-to-completion work) on host processes and containers: the same steps as
//! an instance's attempt — prepare, cgroup with limits, launch, logs, release — without probes,
//! publishing or restarts; the attempt ends when the program exits, its time is up, or it is
//! cancelled.

use std::process::ExitStatus;
use std::sync::Arc;

use nimbus_runtime::{InstanceSpec, TaskEnd, TaskOutcome, TaskRun};

use crate::failure::Failure;
use crate::output::OutputTail;
use crate::state::Shared;
use crate::supervisor::Supervisor;

/// How an attempt's wait ended.
enum Ended {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
}

pub(crate) async fn run(shared: Arc<Shared>, spec: &InstanceSpec, task: TaskRun) -> TaskOutcome {
    let TaskRun {
        id,
        env,
        timeout,
        mut cancel,
    } = task;
    let mut spec = spec.clone();
    spec.env.extend(env);
    let spec = Arc::new(spec);
    let supervisor = Supervisor::for_task(shared, Arc::clone(&spec), id);
    let cancelled = nimbus_runtime::cancelled(&mut cancel);
    tokio::pin!(cancelled);
    let prepared = tokio::select! {
        biased;
        () = &mut cancelled => return cancelled_before_start(),
        prepared = supervisor.shared.launcher.prepare(&spec) => prepared,
    };
    if let Err(error) = prepared {
        return not_started(error.reason, error.message);
    }
    let tail = OutputTail::new(supervisor.shared.config.output_lines);
    let mut instance = match supervisor.launch(&tail).await {
        Ok(instance) => instance,
        Err(error) => return not_started(error.reason(), error.to_string()),
    };
    let ended = tokio::select! {
        status = instance.process.wait() => Ended::Exited(status),
        () = tokio::time::sleep(timeout) => Ended::TimedOut,
        () = &mut cancelled => Ended::Cancelled,
    };
    if !matches!(ended, Ended::Exited(_)) {
        let grace = spec
            .termination_grace
            .unwrap_or(supervisor.shared.config.stop_grace);
        instance.process.stop(grace).await;
    }
    let oom = instance.cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0);
    supervisor.release(instance).await;
    let output = tail.lines();
    let last = |what: String| match output.is_empty() {
        true => format!("{what}; no output"),
        false => format!("{what}; last output:\n{}", output.join("\n")),
    };
    match ended {
        Ended::Exited(_) if oom => {
            let failure = Failure::oom_killed(&supervisor.id, spec.resources.memory_limit, &output);
            TaskOutcome {
                end: TaskEnd::Failed {
                    reason: failure.reason,
                },
                exit_code: Some(137),
                message: failure.message,
            }
        }
        Ended::Exited(status) => {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            let what = match status.code() {
                Some(c) => format!("task {} exited with code {c}", supervisor.id),
                None => format!(
                    "task {} was killed by signal {}",
                    supervisor.id,
                    status.signal().unwrap_or(0)
                ),
            };
            TaskOutcome::exited(code, last(what))
        }
        Ended::TimedOut => TaskOutcome {
            end: TaskEnd::TimedOut,
            exit_code: None,
            message: last(format!(
                "task {} ran longer than its timeout of {}s and was stopped",
                supervisor.id,
                timeout.as_secs()
            )),
        },
        Ended::Cancelled => TaskOutcome {
            end: TaskEnd::Cancelled,
            exit_code: None,
            message: last(format!("task {} was cancelled", supervisor.id)),
        },
    }
}

fn not_started(reason: String, message: String) -> TaskOutcome {
    TaskOutcome {
        end: TaskEnd::NotStarted { reason },
        exit_code: None,
        message,
    }
}

fn cancelled_before_start() -> TaskOutcome {
    TaskOutcome {
        end: TaskEnd::Cancelled,
        exit_code: None,
        message: "cancelled before it started".into(),
    }
}
