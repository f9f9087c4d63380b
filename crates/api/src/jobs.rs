//! `run.nimbus.dev/v1`: work that runs to completion, in Cloud Run jobs' model.
//!
//! - **Job**: a template, never run by itself: how many tasks an execution runs
//!   (`taskCount`), how many at once (`parallelism`), and each task's containers, retries
//!   (`maxRetries`) and time limit (`timeoutSeconds`). The field layout is Cloud Run's
//!   (`spec.template.spec.template.spec`), so a Cloud Run job's YAML needs only its
//!   `apiVersion` changed.
//! - **Execution**: one run of a Job (`nimbus job run`, or a Schedule), created with a copy of
//!   the Job's template, so editing the Job never changes a run in progress; its status holds
//!   every task's state, attempts and exit code.
//! - **Schedule**: a cron expression (with a time zone) that starts a Job's execution, or sends
//!   a CloudEvent to a Service as Knative's PingSource does, with CronJob's concurrency policy
//!   and missed-run rule (`startingDeadlineSeconds`).
//!
//! Every task gets `CLOUD_RUN_TASK_INDEX`, `CLOUD_RUN_TASK_COUNT`, `CLOUD_RUN_TASK_ATTEMPT`,
//! `CLOUD_RUN_JOB`, `CLOUD_RUN_EXECUTION` and Kubernetes' `JOB_COMPLETION_INDEX`.
//!
//! Sources of the names and defaults: Cloud Run's Job and Execution resources
//! (<https://cloud.google.com/run/docs/reference/rest/v1/namespaces.jobs>,
//! `ExecutionSpec.taskCount`/`parallelism`, `TaskSpec.maxRetries` default 3,
//! `timeoutSeconds` default 600) and its task environment
//! (<https://cloud.google.com/run/docs/container-contract#jobs-env-vars>); Kubernetes' CronJob
//! for the schedule's fields and defaults (`concurrencyPolicy` Allow,
//! `successfulJobsHistoryLimit` 3, `failedJobsHistoryLimit` 1, `startingDeadlineSeconds`,
//! `timeZone`: <https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/>) and
//! Knative's PingSource for the event (`schedule`, `timezone`, `contentType`, `data`,
//! `dataBase64`, `sink`; type `dev.knative.sources.ping`:
//! <https://knative.dev/docs/eventing/sources/ping-source/>).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;
use crate::serving::RevisionSpec;
use crate::sources::Destination;

/// `run.nimbus.dev`
pub const GROUP: &str = "run.nimbus.dev";
/// `run.nimbus.dev/v1`
pub const API_VERSION: &str = "run.nimbus.dev/v1";

/// Label on an Execution: the Job it runs.
pub const LABEL_JOB: &str = "run.nimbus.dev/job";
/// Label on an Execution: the Schedule that started it.
pub const LABEL_SCHEDULE: &str = "run.nimbus.dev/schedule";
/// Annotation on an Execution started by a Schedule: the time it was scheduled for (RFC 3339).
pub const ANNOTATION_SCHEDULED_AT: &str = "run.nimbus.dev/scheduled-at";

/// Cloud Run's defaults and limits.
pub const DEFAULT_TASK_COUNT: i64 = 1;
pub const MAX_TASK_COUNT: i64 = 10_000;
pub const DEFAULT_MAX_RETRIES: i64 = 3;
pub const MAX_MAX_RETRIES: i64 = 10;
pub const DEFAULT_TASK_TIMEOUT_SECONDS: i64 = 600;
/// 168 hours, Cloud Run's longest task.
pub const MAX_TASK_TIMEOUT_SECONDS: i64 = 168 * 3600;
/// CronJob's history defaults.
pub const DEFAULT_SUCCESSFUL_HISTORY: i64 = 3;
pub const DEFAULT_FAILED_HISTORY: i64 = 1;

/// The task environment (Cloud Run's names, and the Kubernetes indexed Job's).
pub const ENV_TASK_INDEX: &str = "CLOUD_RUN_TASK_INDEX";
pub const ENV_TASK_COUNT: &str = "CLOUD_RUN_TASK_COUNT";
pub const ENV_TASK_ATTEMPT: &str = "CLOUD_RUN_TASK_ATTEMPT";
pub const ENV_JOB: &str = "CLOUD_RUN_JOB";
pub const ENV_EXECUTION: &str = "CLOUD_RUN_EXECUTION";
pub const ENV_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";

/// The conditions: a Job is `Ready` when its template is usable; an Execution is `Completed`
/// (`True`: every task succeeded; `False`: a task failed for good, or it was cancelled);
/// `Started` once its first task started.
pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_COMPLETED: &str = "Completed";
pub const CONDITION_STARTED: &str = "Started";

/// A task's state in [`TaskStatus::state`].
pub const TASK_PENDING: &str = "Pending";
pub const TASK_RUNNING: &str = "Running";
pub const TASK_SUCCEEDED: &str = "Succeeded";
pub const TASK_FAILED: &str = "Failed";
pub const TASK_CANCELLED: &str = "Cancelled";

/// A job: the template of its executions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schemars", schemars(rename = "dev.nimbus.run.v1.Job"))]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: JobSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schemars", schemars(rename = "dev.nimbus.run.v1.JobSpec"))]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// What each execution is created from.
    #[serde(default)]
    pub template: ExecutionTemplateSpec,
}

/// An execution's metadata (labels, annotations such as `nimbus.dev/runtime`) and spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.ExecutionTemplateSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionTemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMeta>,
    #[serde(default)]
    pub spec: ExecutionSpec,
}

/// The metadata a template may carry (Cloud Run's: labels and annotations).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.TemplateMeta")
)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.ExecutionSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSpec {
    /// Tasks to run (default 1, at most 10,000); each gets its index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_count: Option<i64>,
    /// Tasks running at once (default and 0: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i64>,
    /// Each task's containers and limits.
    #[serde(default)]
    pub template: TaskTemplateSpec,
    /// Set on an Execution to stop it: running tasks are stopped, pending ones never start
    /// (`nimbus job cancel`). Not allowed in a Job's template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.TaskTemplateSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct TaskTemplateSpec {
    #[serde(default)]
    pub spec: TaskSpec,
}

/// One task: a pod spec (one container, as a revision's) plus retries and a time limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schemars", schemars(rename = "dev.nimbus.run.v1.TaskSpec"))]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Retries of a failed task before the execution fails (default 3, at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i64>,
    /// How long one attempt may run before it is stopped and counted as failed (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// The containers and the rest of the pod spec, as in a Revision (its request-serving
    /// fields, such as `containerConcurrency`, are refused here).
    #[serde(flatten)]
    pub pod: RevisionSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schemars", schemars(rename = "dev.nimbus.run.v1.JobStatus"))]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Executions created so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_created_execution: Option<ExecutionReference>,
}

/// Which execution, when it was created and when it completed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.ExecutionReference")
)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionReference {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<String>,
}

/// One run of a Job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schemars", schemars(rename = "dev.nimbus.run.v1.Execution"))]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ExecutionSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ExecutionStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.ExecutionStatus")
)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    #[serde(default)]
    pub running_count: i64,
    #[serde(default)]
    pub succeeded_count: i64,
    #[serde(default)]
    pub failed_count: i64,
    #[serde(default)]
    pub cancelled_count: i64,
    /// Attempts that were retried.
    #[serde(default)]
    pub retried_count: i64,
    /// Every task, by index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskStatus>,
}

/// One task of an execution.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.TaskStatus")
)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    pub index: i64,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Cancelled`.
    pub state: String,
    /// Attempts started so far (the running or last one is `attempts - 1` in
    /// `CLOUD_RUN_TASK_ATTEMPT`).
    #[serde(default)]
    pub attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Why the last attempt ended (`Error`, `DeadlineExceeded`, `OOMKilled`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl TaskStatus {
    /// Whether the task will not run again.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.state.as_str(),
            TASK_SUCCEEDED | TASK_FAILED | TASK_CANCELLED
        )
    }
}

impl ExecutionSpec {
    pub fn task_count(&self) -> i64 {
        self.task_count.unwrap_or(DEFAULT_TASK_COUNT)
    }

    /// Tasks that may run at once (0 and unset: all).
    pub fn parallelism(&self) -> i64 {
        match self.parallelism.unwrap_or(0) {
            0 => self.task_count(),
            n => n.min(self.task_count()),
        }
    }

    pub fn max_retries(&self) -> i64 {
        self.template
            .spec
            .max_retries
            .unwrap_or(DEFAULT_MAX_RETRIES)
    }

    pub fn timeout_seconds(&self) -> i64 {
        self.template
            .spec
            .timeout_seconds
            .unwrap_or(DEFAULT_TASK_TIMEOUT_SECONDS)
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled == Some(true)
    }
}

impl ExecutionStatus {
    /// The `Completed` condition, if it has one.
    pub fn completed(&self) -> Option<&Condition> {
        crate::conditions::get_condition(&self.conditions, CONDITION_COMPLETED)
    }

    /// Whether the execution is over (succeeded, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.completed()
            .is_some_and(|c| c.status != crate::ConditionStatus::Unknown)
    }
}

/// A cron schedule that starts a Job or sends an event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schemars", schemars(rename = "dev.nimbus.run.v1.Schedule"))]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ScheduleSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ScheduleStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.ScheduleSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Cron syntax, as a CronJob's (five fields, or `@hourly`, `@daily`, ...); a sixth
    /// leading field gives seconds (a Nimbus extension).
    #[serde(default)]
    pub schedule: String,
    /// An IANA time zone (`Europe/Berlin`); default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// `Allow` (default), `Forbid` (skip a run while the last still runs) or `Replace`
    /// (cancel it and start the new one). Applies to job runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<String>,
    /// A run missed (the server was down) still starts if it is at most this late; unset: no
    /// limit. Only the latest missed run starts, as a CronJob's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_executions_history_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_executions_history_limit: Option<i64>,
    /// The Job to run (one of `jobRef` and `event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_ref: Option<JobReference>,
    /// The CloudEvent to send (PingSource's fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<ScheduledEvent>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.JobReference")
)]
#[serde(rename_all = "camelCase")]
pub struct JobReference {
    pub name: String,
}

/// A PingSource's event: `dev.knative.sources.ping` with this data, to a sink.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.ScheduledEvent")
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledEvent {
    /// Knative's `Destination`: a Service (`ref`, with `uri` a path on it) or an `http://` URL.
    #[serde(default)]
    pub sink: Destination,
    /// The data's media type (default `application/json` when `data` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The event's data as text (one of `data` and `dataBase64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.run.v1.ScheduleStatus")
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The time the last run was scheduled for (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<String>,
    /// The next time it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    /// Executions still running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
}

impl Job {
    pub const KIND: &'static str = "Job";
    pub const PLURAL: &'static str = "jobs";
}

impl Execution {
    pub const KIND: &'static str = "Execution";
    pub const PLURAL: &'static str = "executions";
}

impl Schedule {
    pub const KIND: &'static str = "Schedule";
    pub const PLURAL: &'static str = "schedules";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_run_layout_round_trips() {
        let yaml = serde_json::json!({
            "apiVersion": API_VERSION, "kind": "Job",
            "metadata": {"name": "report"},
            "spec": {"template": {
                "metadata": {"annotations": {"nimbus.dev/runtime": "process"}},
                "spec": {"taskCount": 4, "parallelism": 2, "template": {"spec": {
                    "maxRetries": 1, "timeoutSeconds": 30,
                    "containers": [{"name": "task", "image": "x", "command": ["/bin/true"]}]
                }}}
            }}
        });
        let job: Job = serde_json::from_value(yaml.clone()).unwrap();
        let spec = &job.spec.template.spec;
        assert_eq!(
            (spec.task_count(), spec.parallelism(), spec.max_retries()),
            (4, 2, 1)
        );
        assert_eq!(spec.timeout_seconds(), 30);
        assert_eq!(spec.template.spec.pod.containers.len(), 1);
        assert_eq!(spec.template.spec.pod.timeout_seconds, None);
        assert_eq!(serde_json::to_value(&job).unwrap(), yaml);
    }

    #[test]
    fn parallelism_zero_means_all_tasks() {
        let spec = ExecutionSpec {
            task_count: Some(5),
            parallelism: Some(0),
            ..Default::default()
        };
        assert_eq!(spec.parallelism(), 5);
        let spec = ExecutionSpec {
            task_count: Some(2),
            parallelism: Some(9),
            ..Default::default()
        };
        assert_eq!(spec.parallelism(), 2);
    }
}
