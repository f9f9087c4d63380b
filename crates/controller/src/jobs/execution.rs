//! The Execution reconciler: hands an execution that is not finished to the [`Executor`]
//! (resuming from its status after a restart), cancels it when `spec.cancelled` is set, and
//! stops it when it is deleted.
//!
//! [`Executor`]: super::Executor

use nimbus_api::jobs::*;
use nimbus_api::{ConditionStatus, Execution, Kind, Object, Revision};
use nimbus_runtime::InstanceSpec;

use super::executor::Plan;
use crate::context::Context;
use crate::error::ControllerError;
use crate::resources::{Action, update_status};
use crate::status::cond;

pub(crate) async fn reconcile(ctx: &Context, e: Execution) -> Result<Action, ControllerError> {
    let namespace = e
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = e.metadata.name.clone().unwrap_or_default();
    let uid = e.metadata.uid.clone().unwrap_or_default();
    if e.metadata.deletion_timestamp.is_some() {
        ctx.executor.forget(&namespace, &name);
        return Ok(Action::await_change());
    }
    let status = e.status.clone().unwrap_or_default();
    if status.is_finished() {
        return Ok(Action::await_change());
    }
    if ctx.executor.is_running(&namespace, &name, &uid) {
        if e.spec.is_cancelled() {
            ctx.executor.cancel(&namespace, &name);
        }
        return Ok(Action::await_change());
    }
    let rev = as_revision(&e);
    let runtime = match crate::revision::runtime_for(ctx, &rev) {
        Ok(runtime) => runtime,
        Err((reason, message)) => {
            let failed = cond(
                CONDITION_COMPLETED,
                ConditionStatus::False,
                reason,
                &message,
            );
            let now = ctx.now();
            update_status(&*ctx.resources, Kind::Execution, &namespace, &name, |o| {
                if let Object::Execution(x) = o {
                    let st = x.status.get_or_insert_default();
                    nimbus_api::conditions::set_condition(&mut st.conditions, failed.clone(), &now);
                    st.completion_time.get_or_insert_with(|| now.clone());
                }
            })
            .await?;
            return Ok(Action::await_change());
        }
    };
    let class = nimbus_api::runtime::runtime_choice(rev.metadata.annotations.as_ref(), &rev.spec)
        .backend
        .as_str()
        .to_string();
    let plan = plan(
        &e,
        &namespace,
        &name,
        &uid,
        task_spec(&rev, &class),
        &ctx.now(),
    );
    ctx.executor
        .start(plan, runtime, ctx.resources.clone(), ctx.clock.clone());
    if e.spec.is_cancelled() {
        ctx.executor.cancel(&namespace, &name);
    }
    Ok(Action::await_change())
}

/// The execution is gone: stop what still runs of it.
pub(crate) fn forget(ctx: &Context, namespace: &str, name: &str) -> Action {
    ctx.executor.forget(namespace, name);
    Action::await_change()
}

/// The execution as the revision its tasks are instances of: its name, labels and
/// annotations, the task's pod spec (what both modes turn into an instance or a pod).
pub fn as_revision(e: &Execution) -> Revision {
    let mut spec = e.spec.template.spec.pod.clone();
    spec.timeout_seconds = None;
    Revision {
        metadata: nimbus_api::ObjectMeta {
            name: e.metadata.name.clone(),
            namespace: e.metadata.namespace.clone(),
            labels: e.metadata.labels.clone(),
            annotations: e.metadata.annotations.clone(),
            ..Default::default()
        },
        spec,
        ..Default::default()
    }
}

/// What a runtime runs for each task: the revision's instance spec without Knative's serving
/// contract (`K_SERVICE`, ... are for services; tasks get Cloud Run's task variables).
fn task_spec(rev: &Revision, class: &str) -> InstanceSpec {
    let mut spec = crate::instance::instance_spec(rev, class);
    spec.env
        .retain(|(k, _)| !matches!(k.as_str(), "K_SERVICE" | "K_CONFIGURATION" | "K_REVISION"));
    spec.request_timeout = None;
    spec.container_concurrency = 0;
    spec
}

/// The run of `e`, from its status: a task that was running when the last run stopped (the
/// server went down) has used an attempt, and runs again if it has retries left.
fn plan(
    e: &Execution,
    namespace: &str,
    name: &str,
    uid: &str,
    spec: InstanceSpec,
    now: &str,
) -> Plan {
    let count = e.spec.task_count().max(1) as usize;
    let max_retries = e.spec.max_retries();
    let status = e.status.clone().unwrap_or_default();
    let mut retried = status.retried_count;
    let mut tasks = status.tasks;
    if tasks.len() != count {
        tasks = (0..count)
            .map(|i| TaskStatus {
                index: i as i64,
                state: TASK_PENDING.into(),
                ..Default::default()
            })
            .collect();
    }
    for t in tasks.iter_mut().filter(|t| t.state == TASK_RUNNING) {
        t.reason = Some("Interrupted".into());
        t.message = Some("the server stopped while this attempt ran".into());
        if t.attempts <= max_retries {
            t.state = TASK_PENDING.into();
            retried += 1;
        } else {
            t.state = TASK_FAILED.into();
            t.completion_time = Some(now.to_string());
        }
    }
    let job = e
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_JOB))
        .cloned()
        .unwrap_or_default();
    Plan {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        job,
        spec,
        task_count: count,
        parallelism: e.spec.parallelism().max(1) as usize,
        max_retries,
        timeout: std::time::Duration::from_secs(e.spec.timeout_seconds().max(1) as u64),
        tasks,
        start_time: status.start_time,
        retried,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(tasks: Vec<TaskStatus>) -> Execution {
        let mut e = Execution::default();
        e.spec.task_count = Some(tasks.len().max(2) as i64);
        e.spec.template.spec.max_retries = Some(1);
        e.status = Some(ExecutionStatus {
            tasks,
            ..Default::default()
        });
        e
    }

    fn task(index: i64, state: &str, attempts: i64) -> TaskStatus {
        TaskStatus {
            index,
            state: state.into(),
            attempts,
            ..Default::default()
        }
    }

    #[test]
    fn a_resumed_run_keeps_finished_tasks_and_retries_interrupted_ones() {
        let e = execution(vec![
            task(0, TASK_SUCCEEDED, 1),
            task(1, TASK_RUNNING, 1),
            task(2, TASK_RUNNING, 2),
        ]);
        let p = plan(&e, "default", "x", "u", InstanceSpec::default(), "now");
        let states: Vec<&str> = p.tasks.iter().map(|t| t.state.as_str()).collect();
        assert_eq!(states, [TASK_SUCCEEDED, TASK_PENDING, TASK_FAILED]);
        assert_eq!(p.retried, 1);
        assert_eq!(p.tasks[2].reason.as_deref(), Some("Interrupted"));
    }

    #[test]
    fn a_fresh_run_has_every_task_pending() {
        let mut e = execution(vec![]);
        e.spec.task_count = Some(3);
        e.spec.parallelism = Some(0);
        let p = plan(&e, "default", "x", "u", InstanceSpec::default(), "now");
        assert_eq!(p.tasks.len(), 3);
        assert_eq!(p.parallelism, 3);
        assert!(p.tasks.iter().all(|t| t.state == TASK_PENDING));
    }

    #[test]
    fn tasks_get_no_serving_contract() {
        let mut e = Execution::default();
        e.metadata.name = Some("run-1".into());
        e.spec.template.spec.pod.containers = vec![Default::default()];
        let spec = task_spec(&as_revision(&e), "process");
        assert!(
            spec.env.iter().all(|(k, _)| !k.starts_with("K_")),
            "{:?}",
            spec.env
        );
        assert_eq!(spec.revision.name, "run-1");
    }
}
