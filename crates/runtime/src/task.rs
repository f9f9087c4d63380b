//! Run-to-completion work (a Job's tasks): one instance of a spec, started once, never probed
//! or restarted, stopped when its time is up or it is cancelled. Retries are the caller's
//! (each retry is a new [`TaskRun`] with its own id and attempt number).

use std::time::Duration;

/// One attempt of one task.
#[derive(Clone, Debug)]
pub struct TaskRun {
    /// Unique among live instances (`<execution>-<index>-<attempt>`): the instance id, and the
    /// name of its log file under the spec's revision (the execution).
    pub id: String,
    /// Added after the spec's environment (the task index, count and attempt).
    pub env: Vec<(String, String)>,
    /// Stopped (SIGTERM, then SIGKILL after the grace period) and failed after this long.
    pub timeout: Duration,
    /// Becomes `true` to stop the attempt (it then ends as cancelled).
    pub cancel: tokio::sync::watch::Receiver<bool>,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOutcome {
    pub end: TaskEnd,
    /// Its exit status when it exited (a signal `n` shows as `128 + n`, as shells and
    /// Kubernetes report it).
    pub exit_code: Option<i32>,
    /// What the user should read: the cause, and the last lines of its output.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEnd {
    /// Exited with status 0.
    Succeeded,
    /// Exited otherwise, or was killed (`reason`: `Error`, `OOMKilled`, ...).
    Failed { reason: String },
    /// Ran longer than its timeout (`DeadlineExceeded`).
    TimedOut,
    /// Stopped by [`TaskRun::cancel`].
    Cancelled,
    /// Never ran (`reason`: `CommandNotFound`, `ImagePullFailed`, ...).
    NotStarted { reason: String },
}

impl TaskOutcome {
    pub fn succeeded(&self) -> bool {
        self.end == TaskEnd::Succeeded
    }

    /// The reason a task status shows (`Completed`, `Error`, `DeadlineExceeded`, ...).
    pub fn reason(&self) -> &str {
        match &self.end {
            TaskEnd::Succeeded => "Completed",
            TaskEnd::Failed { reason } | TaskEnd::NotStarted { reason } => reason,
            TaskEnd::TimedOut => "DeadlineExceeded",
            TaskEnd::Cancelled => "Cancelled",
        }
    }

    /// A runtime that cannot run tasks.
    pub fn unsupported(runtime: &str) -> Self {
        Self {
            end: TaskEnd::NotStarted {
                reason: "Unsupported".into(),
            },
            exit_code: None,
            message: format!("{runtime} cannot run tasks to completion"),
        }
    }

    /// The outcome of an exit status (`Some(code)`), or of death by signal `n` (128 + n).
    pub fn exited(code: i32, message: String) -> Self {
        let end = match code {
            0 => TaskEnd::Succeeded,
            _ => TaskEnd::Failed {
                reason: "Error".into(),
            },
        };
        Self {
            end,
            exit_code: Some(code),
            message,
        }
    }
}

/// Resolves once `cancel` is `true`, or its sender is gone (nobody waits for the outcome any
/// more). Cancel-safe.
pub async fn cancelled(cancel: &mut tokio::sync::watch::Receiver<bool>) {
    while !*cancel.borrow_and_update() {
        if cancel.changed().await.is_err() {
            return;
        }
    }
}

/// How long a cancelled or timed-out attempt gets between SIGTERM and SIGKILL by default.
pub const DEFAULT_TASK_GRACE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(TaskOutcome::exited(0, String::new()).reason(), "Completed");
        let failed = TaskOutcome::exited(3, String::new());
        assert!(!failed.succeeded());
        assert_eq!((failed.reason(), failed.exit_code), ("Error", Some(3)));
        assert_eq!(TaskOutcome::unsupported("x").reason(), "Unsupported");
    }
}
