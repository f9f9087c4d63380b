//! A Job's task on a cluster: each attempt is a `batch/v1` Job of one pod
//! (`restartPolicy: Never`, `backoffLimit: 0`, `activeDeadlineSeconds` = the task's timeout),
//! named `<execution>-<index>-<attempt>`, owned by the Execution (deleting it deletes its
//! attempts) and labelled with it, built from the Execution's pod spec as a revision's pods are
//! (every PodSpec field passes through) plus the task's environment. Retries, parallelism and
//! the Execution's status stay the controller's, the same in both modes. Its output is the
//! pod's log (`kubectl logs job/<execution>-<index>-<attempt>`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{EnvVar, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use nimbus_api::jobs::LABEL_JOB;
use nimbus_api::{Execution, Kind, Object};
use nimbus_runtime::{InstanceSpec, TaskEnd, TaskOutcome, TaskRun};

use crate::resources::{api_resource, from_dynamic};

/// Label on a task's batch Job and pod: the Execution.
pub const LABEL_EXECUTION: &str = "run.nimbus.dev/execution";
/// How often a running attempt's Job is looked at.
const POLL: Duration = Duration::from_secs(1);
/// Past the task's deadline, how long the Job may take to say so before it is stopped here.
const DEADLINE_SLACK: Duration = Duration::from_secs(30);
/// Pod waiting reasons that mean the task can never start.
const NEVER_STARTS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
];

pub(crate) async fn run(client: kube::Client, spec: &InstanceSpec, task: TaskRun) -> TaskOutcome {
    let TaskRun {
        id,
        env,
        timeout,
        mut cancel,
    } = task;
    let ns = spec.revision.namespace.clone();
    let execution = match read_execution(&client, &ns, &spec.revision.name).await {
        Ok(e) => e,
        Err(message) => return not_started("ExecutionNotFound", message),
    };
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job = batch_job(&execution, &id, env, timeout);
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => {}
        // Made by this attempt before a restart: follow it.
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return not_started("JobCreateFailed", format!("creating Job {id}: {e}")),
    }
    let deadline = tokio::time::Instant::now() + timeout + DEADLINE_SLACK;
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = nimbus_runtime::cancelled(&mut cancel) => {
                stop(&jobs, &id).await;
                return ended(TaskEnd::Cancelled, None, format!("task {id} was cancelled"));
            }
        }
        if tokio::time::Instant::now() > deadline {
            stop(&jobs, &id).await;
            return ended(
                TaskEnd::TimedOut,
                None,
                format!(
                    "task {id} ran longer than its timeout of {}s",
                    timeout.as_secs()
                ),
            );
        }
        let job = match jobs.get_opt(&id).await {
            Ok(Some(job)) => job,
            Ok(None) => return not_started("JobDeleted", format!("the Job {id} was deleted")),
            Err(e) => {
                tracing::debug!(task = %id, "cannot read the task's Job: {e}");
                continue;
            }
        };
        let pod = task_pod(&client, &ns, &id).await;
        if let Some(outcome) = outcome(&id, &job, pod.as_ref()) {
            if matches!(outcome.end, TaskEnd::NotStarted { .. }) {
                stop(&jobs, &id).await;
            }
            return outcome;
        }
    }
}

async fn read_execution(client: &kube::Client, ns: &str, name: &str) -> Result<Execution, String> {
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &api_resource(Kind::Execution));
    let found = api
        .get(name)
        .await
        .map_err(|e| format!("execution {ns}/{name}: {e}"))?;
    match from_dynamic(Kind::Execution, found) {
        Ok(Object::Execution(e)) => Ok(e),
        Ok(_) => Err(format!("{ns}/{name} is not an Execution")),
        Err(e) => Err(format!("execution {ns}/{name}: {e}")),
    }
}

/// The batch Job of one attempt.
pub fn batch_job(
    execution: &Execution,
    id: &str,
    env: Vec<(String, String)>,
    timeout: Duration,
) -> Job {
    let rev = nimbus_controller::task_revision(execution);
    let mut pod = crate::workload::pod_spec(&rev);
    pod.restart_policy = Some("Never".into());
    pod.termination_grace_period_seconds = None;
    for c in &mut pod.containers {
        c.ports = None;
        c.readiness_probe = None;
        c.liveness_probe = None;
        c.startup_probe = None;
        let vars = c.env.get_or_insert_default();
        vars.retain(|e| {
            !matches!(
                e.name.as_str(),
                "PORT" | "K_SERVICE" | "K_CONFIGURATION" | "K_REVISION"
            )
        });
        vars.extend(env.iter().map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            ..Default::default()
        }));
    }
    let exec_name = execution.metadata.name.clone().unwrap_or_default();
    let mut labels = BTreeMap::from([(LABEL_EXECUTION.to_string(), exec_name.clone())]);
    if let Some(job) = execution
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_JOB))
    {
        labels.insert(LABEL_JOB.into(), job.clone());
    }
    let owner = OwnerReference {
        api_version: Kind::Execution.api_version().into(),
        kind: Kind::Execution.as_str().into(),
        name: exec_name,
        uid: execution.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Job {
        metadata: ObjectMeta {
            name: Some(id.to_string()),
            namespace: execution.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(timeout.as_secs().max(1) as i64),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The attempt's pod, if the Job made one yet.
async fn task_pod(client: &kube::Client, ns: &str, job: &str) -> Option<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    pods.list(&params).await.ok()?.items.into_iter().next()
}

/// How the attempt ended, once it has: from the Job's conditions and the pod's container.
pub fn outcome(id: &str, job: &Job, pod: Option<&Pod>) -> Option<TaskOutcome> {
    let container = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first());
    let state = container.and_then(|c| c.state.as_ref());
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref())
        && let Some(reason) = waiting
            .reason
            .as_deref()
            .filter(|r| NEVER_STARTS.contains(r))
    {
        let message = waiting.message.clone().unwrap_or_default();
        return Some(not_started(
            reason,
            format!("task {id}: {reason}: {message}"),
        ));
    }
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let holds = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    let terminated = state.and_then(|s| s.terminated.as_ref());
    let logs = format!(
        "(its output: kubectl logs -n {} job/{id})",
        job.metadata.namespace.as_deref().unwrap_or("default")
    );
    if holds("Complete").is_some() {
        return Some(TaskOutcome::exited(
            0,
            format!("task {id} succeeded {logs}"),
        ));
    }
    let failed = holds("Failed")?;
    if failed.reason.as_deref() == Some("DeadlineExceeded") {
        return Some(ended(
            TaskEnd::TimedOut,
            None,
            format!("task {id} ran longer than its timeout and was stopped {logs}"),
        ));
    }
    Some(match terminated {
        Some(t) if t.reason.as_deref() == Some("OOMKilled") => ended(
            TaskEnd::Failed {
                reason: "OOMKilled".into(),
            },
            Some(t.exit_code),
            format!("task {id} was killed for exceeding its memory limit {logs}"),
        ),
        Some(t) => TaskOutcome::exited(
            t.exit_code,
            format!("task {id} exited with code {} {logs}", t.exit_code),
        ),
        None => ended(
            TaskEnd::Failed {
                reason: failed.reason.clone().unwrap_or_else(|| "Error".into()),
            },
            None,
            format!(
                "task {id} failed: {}",
                failed.message.as_deref().unwrap_or("")
            ),
        ),
    })
}

async fn stop(jobs: &Api<Job>, id: &str) {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    if let Err(e) = jobs.delete(id, &params).await {
        tracing::debug!(task = %id, "cannot delete the task's Job: {e}");
    }
}

fn ended(end: TaskEnd, exit_code: Option<i32>, message: String) -> TaskOutcome {
    TaskOutcome {
        end,
        exit_code,
        message,
    }
}

fn not_started(reason: &str, message: String) -> TaskOutcome {
    ended(
        TaskEnd::NotStarted {
            reason: reason.into(),
        },
        None,
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn execution() -> Execution {
        serde_json::from_value(json!({
            "metadata": {"name": "report-abc", "namespace": "ns", "uid": "u1",
                         "labels": {"run.nimbus.dev/job": "report"}},
            "spec": {"taskCount": 2, "template": {"spec": {
                "containers": [{"name": "c", "image": "img", "args": ["task"],
                                "env": [{"name": "A", "value": "1"}]}],
                "nodeSelector": {"disk": "ssd"}
            }}}
        }))
        .unwrap()
    }

    #[test]
    fn an_attempt_is_a_batch_job_of_one_pod_owned_by_its_execution() {
        let env = vec![("CLOUD_RUN_TASK_INDEX".to_string(), "1".to_string())];
        let job = batch_job(&execution(), "report-abc-1-0", env, Duration::from_secs(90));
        let value = serde_json::to_value(&job).unwrap();
        let spec = &value["spec"];
        assert_eq!(spec["backoffLimit"], 0);
        assert_eq!(spec["activeDeadlineSeconds"], 90);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(
            pod["nodeSelector"]["disk"], "ssd",
            "PodSpec fields pass through"
        );
        let c = &pod["containers"][0];
        assert!(c.get("ports").is_none() && c.get("readinessProbe").is_none());
        let names: Vec<&str> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["A", "CLOUD_RUN_TASK_INDEX"], "no serving contract");
        assert_eq!(value["metadata"]["ownerReferences"][0]["kind"], "Execution");
        assert_eq!(value["metadata"]["labels"][LABEL_EXECUTION], "report-abc");
        assert_eq!(value["metadata"]["labels"][LABEL_JOB], "report");
    }

    fn job_with(condition: &str, reason: &str) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "t", "namespace": "ns"},
            "status": {"conditions": [{"type": condition, "status": "True", "reason": reason}]}
        }))
        .unwrap()
    }

    fn pod_with(state: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "status": {"containerStatuses": [{"name": "c", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0, "state": state}]}
        }))
        .unwrap()
    }

    #[test]
    fn outcomes_come_from_the_job_and_its_pod() {
        let running: Job = serde_json::from_value(json!({"status": {"active": 1}})).unwrap();
        assert_eq!(outcome("t", &running, None), None);
        let done = outcome("t", &job_with("Complete", ""), None).unwrap();
        assert!(done.succeeded());
        let exited = pod_with(json!({"terminated": {"exitCode": 3, "reason": "Error"}}));
        let failed = outcome(
            "t",
            &job_with("Failed", "BackoffLimitExceeded"),
            Some(&exited),
        )
        .unwrap();
        assert_eq!((failed.reason(), failed.exit_code), ("Error", Some(3)));
        let late = outcome("t", &job_with("Failed", "DeadlineExceeded"), None).unwrap();
        assert_eq!(late.end, TaskEnd::TimedOut);
        let oom = pod_with(json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}));
        let killed = outcome("t", &job_with("Failed", "BackoffLimitExceeded"), Some(&oom)).unwrap();
        assert_eq!(killed.reason(), "OOMKilled");
        let pulling = pod_with(json!({"waiting": {"reason": "ImagePullBackOff", "message": "no"}}));
        let never = outcome("t", &running, Some(&pulling)).unwrap();
        assert_eq!(never.reason(), "ImagePullBackOff");
    }
}
