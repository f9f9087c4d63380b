//! Runs Executions: their tasks in order of index, at most `parallelism` at once, each attempt
//! with its time limit, a failed attempt retried until `maxRetries` is spent; cancellation
//! stops the running attempts and leaves the pending ones. The state of every task is written
//! into the Execution's status as it changes (gathered for [`STATUS_PACE`]), so the status is
//! what a restart resumes from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_api::jobs::*;
use nimbus_api::{ConditionStatus, Kind, Object};
use nimbus_runtime::{InstanceSpec, Runtime, TaskEnd, TaskOutcome, TaskRun};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::context::{Clock, rfc3339};
use crate::resources::{Resources, update_status};
use crate::status::cond;

/// Task state changes are gathered this long before the status is written.
const STATUS_PACE: Duration = Duration::from_millis(100);
/// The longest message kept per task (the last output lines are in it).
const MAX_TASK_MESSAGE: usize = 2048;

/// The executions running in this process.
#[derive(Default)]
pub struct Executor {
    runs: Mutex<HashMap<(String, String), Run>>,
}

struct Run {
    uid: String,
    cancel: watch::Sender<bool>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

/// What one execution runs.
pub(crate) struct Plan {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub job: String,
    pub spec: InstanceSpec,
    pub task_count: usize,
    pub parallelism: usize,
    pub max_retries: i64,
    pub timeout: Duration,
    /// Each task's state to start from (a fresh run: all pending).
    pub tasks: Vec<TaskStatus>,
    pub start_time: Option<String>,
    pub retried: i64,
}

impl Executor {
    /// Whether this execution (this uid) is being run now.
    pub(crate) fn is_running(&self, namespace: &str, name: &str, uid: &str) -> bool {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.get(&(namespace.to_string(), name.to_string()))
            .is_some_and(|r| r.uid == uid && !r.done.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Start running `plan` (replacing a finished run of the same name).
    pub(crate) fn start(
        &self,
        plan: Plan,
        runtime: Arc<dyn Runtime>,
        resources: Arc<dyn Resources>,
        clock: Arc<dyn Clock>,
    ) {
        let (cancel, cancelled) = watch::channel(false);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let key = (plan.namespace.clone(), plan.name.clone());
        let run = Run {
            uid: plan.uid.clone(),
            cancel,
            done: Arc::clone(&done),
        };
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, run);
        tokio::spawn(async move {
            run_execution(plan, runtime, resources, clock, cancelled).await;
            done.store(true, std::sync::atomic::Ordering::Release);
        });
    }

    /// Stop the execution's running tasks; pending ones never start.
    pub(crate) fn cancel(&self, namespace: &str, name: &str) {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(run) = runs.get(&(namespace.to_string(), name.to_string())) {
            let _ = run.cancel.send(true);
        }
    }

    /// The execution is gone: stop it and forget it.
    pub(crate) fn forget(&self, namespace: &str, name: &str) {
        let removed = self
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_string(), name.to_string()));
        if let Some(run) = removed {
            let _ = run.cancel.send(true);
        }
    }
}

/// The environment of one attempt (Cloud Run's names, and the indexed Job's).
pub(crate) fn task_env(plan: &Plan, index: usize, attempt: i64) -> Vec<(String, String)> {
    vec![
        (ENV_TASK_INDEX.into(), index.to_string()),
        (ENV_TASK_COUNT.into(), plan.task_count.to_string()),
        (ENV_TASK_ATTEMPT.into(), attempt.to_string()),
        (ENV_JOB.into(), plan.job.clone()),
        (ENV_EXECUTION.into(), plan.name.clone()),
        (ENV_COMPLETION_INDEX.into(), index.to_string()),
    ]
}

/// The in-memory state of a run and how it becomes the status.
struct State {
    tasks: Vec<TaskStatus>,
    retried: i64,
    start_time: Option<String>,
    cancelled: bool,
}

impl State {
    fn count(&self, state: &str) -> i64 {
        self.tasks.iter().filter(|t| t.state == state).count() as i64
    }

    fn next_pending(&self) -> Option<usize> {
        self.tasks.iter().position(|t| t.state == TASK_PENDING)
    }

    fn finished(&self) -> bool {
        self.tasks.iter().all(TaskStatus::is_finished)
    }

    /// The Completed condition once every task is done, else Unknown (running).
    fn completed(&self) -> nimbus_api::Condition {
        let total = self.tasks.len();
        let failed: Vec<&TaskStatus> = self
            .tasks
            .iter()
            .filter(|t| t.state == TASK_FAILED)
            .collect();
        if !self.finished() {
            let running = self.count(TASK_RUNNING);
            let done = self.count(TASK_SUCCEEDED);
            return cond(
                CONDITION_COMPLETED,
                ConditionStatus::Unknown,
                "Running",
                &format!("{running} running, {done} of {total} succeeded"),
            );
        }
        if self.cancelled || self.count(TASK_CANCELLED) > 0 {
            return cond(
                CONDITION_COMPLETED,
                ConditionStatus::False,
                "Cancelled",
                &format!(
                    "the execution was cancelled; {} of {total} tasks had succeeded",
                    self.count(TASK_SUCCEEDED)
                ),
            );
        }
        match failed.first() {
            None => cond(
                CONDITION_COMPLETED,
                ConditionStatus::True,
                "Succeeded",
                &format!("all {total} tasks succeeded"),
            ),
            Some(first) => cond(
                CONDITION_COMPLETED,
                ConditionStatus::False,
                "TasksFailed",
                &format!(
                    "{} of {total} tasks failed after their retries; task {} ({}): {}",
                    failed.len(),
                    first.index,
                    first.reason.as_deref().unwrap_or("Error"),
                    first.message.as_deref().unwrap_or("")
                ),
            ),
        }
    }

    fn apply(&self, status: &mut ExecutionStatus, now: &str, generation: Option<i64>) {
        status.observed_generation = generation;
        status.tasks = self.tasks.clone();
        status.running_count = self.count(TASK_RUNNING);
        status.succeeded_count = self.count(TASK_SUCCEEDED);
        status.failed_count = self.count(TASK_FAILED);
        status.cancelled_count = self.count(TASK_CANCELLED);
        status.retried_count = self.retried;
        status.start_time = self.start_time.clone();
        let started = self.start_time.is_some();
        if started {
            nimbus_api::conditions::set_condition(
                &mut status.conditions,
                cond(CONDITION_STARTED, ConditionStatus::True, "Started", ""),
                now,
            );
        }
        let completed = self.completed();
        let finished = completed.status != ConditionStatus::Unknown;
        nimbus_api::conditions::set_condition(&mut status.conditions, completed, now);
        if finished && status.completion_time.is_none() {
            status.completion_time = Some(now.to_string());
        }
    }
}

async fn run_execution(
    plan: Plan,
    runtime: Arc<dyn Runtime>,
    resources: Arc<dyn Resources>,
    clock: Arc<dyn Clock>,
    mut cancelled: watch::Receiver<bool>,
) {
    let now = || rfc3339(&*clock);
    let mut state = State {
        tasks: plan.tasks.clone(),
        retried: plan.retried,
        start_time: plan.start_time.clone(),
        cancelled: false,
    };
    let spec = Arc::new(plan.spec.clone());
    let mut running: JoinSet<(usize, TaskOutcome)> = JoinSet::new();
    let mut dirty = true;
    loop {
        if !state.cancelled && *cancelled.borrow() {
            state.cancelled = true;
            for t in state.tasks.iter_mut().filter(|t| t.state == TASK_PENDING) {
                t.state = TASK_CANCELLED.into();
                t.reason = Some("Cancelled".into());
                t.completion_time = Some(now());
            }
            dirty = true;
        }
        while !state.cancelled && running.len() < plan.parallelism {
            let Some(index) = state.next_pending() else {
                break;
            };
            let task = &mut state.tasks[index];
            let attempt = task.attempts;
            task.attempts += 1;
            task.state = TASK_RUNNING.into();
            task.start_time = Some(now());
            task.completion_time = None;
            state.start_time.get_or_insert_with(now);
            let run = TaskRun {
                id: format!("{}-{index}-{attempt}", plan.name),
                env: task_env(&plan, index, attempt),
                timeout: plan.timeout,
                cancel: cancelled.clone(),
            };
            let (runtime, spec) = (Arc::clone(&runtime), Arc::clone(&spec));
            running.spawn(async move { (index, runtime.run_task(&spec, run).await) });
            dirty = true;
        }
        if dirty {
            write_status(&*resources, &plan, &state, &now()).await;
            dirty = false;
        }
        if state.finished() && running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next(), if !running.is_empty() => {
                if let Some(Ok((index, outcome))) = joined {
                    finish_attempt(&mut state, index, outcome, plan.max_retries, &now());
                    dirty = true;
                }
                // Gather the attempts that end close together into one write.
                let pace = tokio::time::sleep(STATUS_PACE);
                tokio::pin!(pace);
                loop {
                    tokio::select! {
                        () = &mut pace => break,
                        joined = running.join_next(), if !running.is_empty() => {
                            if let Some(Ok((index, outcome))) = joined {
                                finish_attempt(&mut state, index, outcome, plan.max_retries, &now());
                            }
                        }
                    }
                }
            }
            changed = cancelled.changed(), if !state.cancelled => {
                if changed.is_err() {
                    // The executor forgot it (deleted): stop without writing.
                    running.shutdown().await;
                    return;
                }
            }
        }
    }
    write_status(&*resources, &plan, &state, &now()).await;
    // Spare cgroups, loaded components: nothing of the execution is kept.
    runtime.remove(&spec.revision).await;
}

/// Record how an attempt ended: succeeded, retried (back to pending), or failed for good.
fn finish_attempt(
    state: &mut State,
    index: usize,
    outcome: TaskOutcome,
    max_retries: i64,
    now: &str,
) {
    let task = &mut state.tasks[index];
    task.exit_code = outcome.exit_code;
    task.reason = Some(outcome.reason().to_string());
    task.message = Some(truncate(&outcome.message));
    match outcome.end {
        TaskEnd::Succeeded => {
            task.state = TASK_SUCCEEDED.into();
            task.completion_time = Some(now.into());
        }
        TaskEnd::Cancelled => {
            task.state = TASK_CANCELLED.into();
            task.completion_time = Some(now.into());
        }
        _ if task.attempts <= max_retries && !state.cancelled => {
            task.state = TASK_PENDING.into();
            state.retried += 1;
        }
        _ => {
            task.state = TASK_FAILED.into();
            task.completion_time = Some(now.into());
        }
    }
}

fn truncate(message: &str) -> String {
    if message.len() <= MAX_TASK_MESSAGE {
        return message.to_string();
    }
    // Keep the end: the last output lines say most.
    let mut start = message.len() - MAX_TASK_MESSAGE;
    while !message.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &message[start..])
}

async fn write_status(resources: &dyn Resources, plan: &Plan, state: &State, now: &str) {
    let written = update_status(
        resources,
        Kind::Execution,
        &plan.namespace,
        &plan.name,
        |o| {
            if let Object::Execution(e) = o
                && e.metadata.uid.as_deref() == Some(plan.uid.as_str())
            {
                let generation = e.metadata.generation;
                state.apply(e.status.get_or_insert_default(), now, generation);
            }
        },
    )
    .await;
    if let Err(e) = written {
        tracing::warn!(execution = %plan.name, "cannot write an execution's status: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: usize) -> State {
        State {
            tasks: (0..n)
                .map(|i| TaskStatus {
                    index: i as i64,
                    state: TASK_PENDING.into(),
                    ..Default::default()
                })
                .collect(),
            retried: 0,
            start_time: None,
            cancelled: false,
        }
    }

    #[test]
    fn a_failed_attempt_is_retried_until_the_retries_are_spent() {
        let mut s = state(1);
        let fail = || TaskOutcome::exited(2, "boom".into());
        for attempt in 1..=3 {
            s.tasks[0].attempts = attempt;
            finish_attempt(&mut s, 0, fail(), 2, "t");
            let want = if attempt <= 2 {
                TASK_PENDING
            } else {
                TASK_FAILED
            };
            assert_eq!(s.tasks[0].state, want, "attempt {attempt}");
        }
        assert_eq!(s.retried, 2);
        assert_eq!(s.tasks[0].exit_code, Some(2));
        let c = s.completed();
        assert_eq!(c.status, ConditionStatus::False);
        assert_eq!(c.reason.as_deref(), Some("TasksFailed"));
        assert!(c.message.unwrap().contains("task 0 (Error): boom"));
    }

    #[test]
    fn all_succeeded_completes_true_and_cancel_completes_false() {
        let mut s = state(2);
        for i in 0..2 {
            s.tasks[i].attempts = 1;
            finish_attempt(&mut s, i, TaskOutcome::exited(0, String::new()), 3, "t");
        }
        assert_eq!(s.completed().status, ConditionStatus::True);
        let mut s = state(2);
        s.tasks[0].attempts = 1;
        finish_attempt(&mut s, 0, TaskOutcome::exited(0, String::new()), 3, "t");
        s.cancelled = true;
        s.tasks[1].attempts = 1;
        let cancelled = TaskOutcome {
            end: TaskEnd::Cancelled,
            exit_code: None,
            message: String::new(),
        };
        finish_attempt(&mut s, 1, cancelled, 3, "t");
        assert_eq!(s.completed().reason.as_deref(), Some("Cancelled"));
    }

    #[test]
    fn long_messages_keep_their_end() {
        let long = format!("{}END", "é".repeat(3000));
        let t = truncate(&long);
        assert!(t.ends_with("END") && t.len() <= MAX_TASK_MESSAGE + 4);
    }
}
