//! Jobs, Executions and Schedules (`run.nimbus.dev/v1`): Cloud Run's limits for tasks (task
//! count 1..10,000, `maxRetries` 0..10, timeout up to 168 h: Cloud Run's Job reference,
//! <https://cloud.google.com/run/docs/reference/rest/v1/namespaces.jobs>), a revision's rules
//! for the task's pod spec (minus what only serving needs), and cron syntax, time zones,
//! concurrency policies and targets for schedules (CronJob's,
//! <https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/>).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Errors, validate_keys, validate_revision_spec, validate_runtime_annotation};
use crate::jobs::*;
use crate::names::check_dns_label;

/// The longest Execution name: its task attempts are named `<execution>-<index>-<attempt>`
/// (instance ids, log files, batch Jobs and pod labels on a cluster), which must fit in a
/// 63-character label.
pub const MAX_EXECUTION_NAME: usize = 63 - "-9999-10".len();
/// A Job's executions are `<job>-<5 random characters>` (`nimbus job run`).
pub const MAX_JOB_NAME: usize = MAX_EXECUTION_NAME - "-xxxxx".len();
/// A Schedule's executions are `<schedule>-<unix seconds>`.
pub const MAX_SCHEDULE_NAME: usize = MAX_EXECUTION_NAME - "-1234567890".len();

/// `metadata.name` at most `max` long, saying why.
fn check_name_length(v: &mut Errors, name: Option<&str>, max: usize, why: &str) {
    if let Some(name) = name
        && name.len() > max
    {
        v.add(
            "metadata.name",
            format!(
                "{name:?} is {} characters long; at most {max} are allowed, because {why} must fit in 63",
                name.len()
            ),
        );
    }
}

pub(super) fn validate_job(v: &mut Errors, job: &Job) {
    check_name_length(
        v,
        job.metadata.name.as_deref(),
        MAX_JOB_NAME,
        "its task attempts are named <job>-<5 characters>-<index>-<attempt>",
    );
    let template = &job.spec.template;
    let meta = template_meta(template.metadata.as_ref());
    validate_keys(v, "spec.template.metadata", &meta);
    validate_runtime_annotation(v, "spec.template.metadata.annotations", &meta);
    if template.spec.cancelled.is_some() {
        v.add(
            "spec.template.spec.cancelled",
            "only an Execution can be cancelled (`nimbus job cancel EXECUTION`); remove it from the Job",
        );
    }
    validate_execution_spec(v, "spec.template.spec", &template.spec, &meta);
}

pub(super) fn validate_execution(v: &mut Errors, execution: &Execution) {
    check_name_length(
        v,
        execution.metadata.name.as_deref(),
        MAX_EXECUTION_NAME,
        "its task attempts are named <execution>-<index>-<attempt>",
    );
    validate_runtime_annotation(v, "metadata.annotations", &execution.metadata);
    validate_execution_spec(v, "spec", &execution.spec, &execution.metadata);
}

/// A template's labels and annotations as the `ObjectMeta` the revision rules read.
pub fn template_meta(meta: Option<&TemplateMeta>) -> ObjectMeta {
    ObjectMeta {
        labels: meta.and_then(|m| m.labels.clone()),
        annotations: meta.and_then(|m| m.annotations.clone()),
        ..Default::default()
    }
}

fn validate_execution_spec(v: &mut Errors, path: &str, spec: &ExecutionSpec, meta: &ObjectMeta) {
    if let Some(n) = spec.task_count
        && !(1..=MAX_TASK_COUNT).contains(&n)
    {
        v.add(
            format!("{path}.taskCount"),
            format!("{n} is out of range; allowed 1 to {MAX_TASK_COUNT}"),
        );
    }
    if let Some(n) = spec.parallelism
        && !(0..=MAX_TASK_COUNT).contains(&n)
    {
        v.add(
            format!("{path}.parallelism"),
            format!("{n} is out of range; allowed 0 (all tasks at once) to {MAX_TASK_COUNT}"),
        );
    }
    let task = &spec.template.spec;
    let task_path = format!("{path}.template.spec");
    if let Some(n) = task.max_retries
        && !(0..=MAX_MAX_RETRIES).contains(&n)
    {
        v.add(
            format!("{task_path}.maxRetries"),
            format!("{n} is out of range; allowed 0 to {MAX_MAX_RETRIES}"),
        );
    }
    if let Some(n) = task.timeout_seconds
        && !(1..=MAX_TASK_TIMEOUT_SECONDS).contains(&n)
    {
        v.add(
            format!("{task_path}.timeoutSeconds"),
            format!(
                "{n} is out of range; allowed 1 to {MAX_TASK_TIMEOUT_SECONDS} seconds (168 hours)"
            ),
        );
    }
    let serving_only = [
        (
            "containerConcurrency",
            task.pod.container_concurrency.is_some(),
        ),
        (
            "responseStartTimeoutSeconds",
            task.pod.response_start_timeout_seconds.is_some(),
        ),
        (
            "idleTimeoutSeconds",
            task.pod.idle_timeout_seconds.is_some(),
        ),
    ];
    for (field, set) in serving_only {
        if set {
            v.add(
                format!("{task_path}.{field}"),
                "is a setting for serving requests; a task serves none, so remove it",
            );
        }
    }
    validate_revision_spec(v, &task_path, &task.pod, meta);
    for (i, c) in task.pod.containers.iter().enumerate() {
        let probes = [
            ("readinessProbe", c.readiness_probe.is_some()),
            ("livenessProbe", c.liveness_probe.is_some()),
            ("startupProbe", c.startup_probe.is_some()),
        ];
        for (field, set) in probes {
            if set {
                v.add(
                    format!("{task_path}.containers[{i}].{field}"),
                    "tasks are not probed: a task succeeds by exiting with status 0 within timeoutSeconds; remove it",
                );
            }
        }
    }
}

/// `Allow`, `Forbid`, `Replace`.
pub const CONCURRENCY_POLICIES: [&str; 3] = ["Allow", "Forbid", "Replace"];

pub(super) fn validate_schedule(v: &mut Errors, schedule: &Schedule) {
    let spec = &schedule.spec;
    if spec.job_ref.is_some() {
        check_name_length(
            v,
            schedule.metadata.name.as_deref(),
            MAX_SCHEDULE_NAME,
            "the task attempts of its runs are named <schedule>-<unix time>-<index>-<attempt>",
        );
    }
    if let Err(e) = crate::cron::parse(&spec.schedule) {
        v.add("spec.schedule", e);
    }
    if let Some(tz) = &spec.time_zone
        && let Err(e) = crate::cron::time_zone(tz)
    {
        v.add("spec.timeZone", e);
    }
    if let Some(policy) = &spec.concurrency_policy
        && !CONCURRENCY_POLICIES.contains(&policy.as_str())
    {
        v.add(
            "spec.concurrencyPolicy",
            format!("{policy:?} is not a policy; use \"Allow\", \"Forbid\" or \"Replace\""),
        );
    }
    for (field, value) in [
        ("startingDeadlineSeconds", spec.starting_deadline_seconds),
        (
            "successfulExecutionsHistoryLimit",
            spec.successful_executions_history_limit,
        ),
        (
            "failedExecutionsHistoryLimit",
            spec.failed_executions_history_limit,
        ),
    ] {
        if let Some(n) = value
            && n < 0
        {
            v.add(format!("spec.{field}"), format!("{n} may not be negative"));
        }
    }
    match (&spec.job_ref, &spec.event) {
        (Some(job), None) => {
            if let Err(e) = check_dns_label(&job.name) {
                v.add("spec.jobRef.name", e);
            }
        }
        (None, Some(event)) => validate_event(v, event),
        (Some(_), Some(_)) => v.add(
            "spec",
            "has both jobRef and event; a schedule either runs a Job or sends an event",
        ),
        (None, None) => v.add(
            "spec",
            "names nothing to do; set jobRef (a Job to run) or event (a CloudEvent to send)",
        ),
    }
}

fn validate_event(v: &mut Errors, event: &ScheduledEvent) {
    crate::sources::validate_destination(&mut v.0, "spec.event.sink", &event.sink, true);
    if event
        .sink
        .ref_
        .as_ref()
        .is_some_and(|r| r.namespace.is_some())
    {
        v.add(
            "spec.event.sink.ref.namespace",
            "must be left out: a schedule sends events to Services of its own namespace",
        );
    }
    if event.data.is_some() && event.data_base64.is_some() {
        v.add(
            "spec.event",
            "has both data and dataBase64; give one of them",
        );
    }
    if let Some(b64) = &event.data_base64 {
        use base64::Engine as _;
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode(b64) {
            v.add("spec.event.dataBase64", format!("is not base64: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::object::Object;

    fn errors(yaml: serde_json::Value) -> Vec<String> {
        let kind = match yaml["kind"].as_str() {
            Some("Schedule") => crate::Kind::Schedule,
            Some("Execution") => crate::Kind::Execution,
            _ => crate::Kind::Job,
        };
        let obj = Object::from_json(kind, yaml).unwrap();
        crate::validate::validate(&obj)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn job(name: &str, task: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"taskCount": 2, "template": {"spec": task}}}}})
    }

    #[test]
    fn task_specs_refuse_serving_fields_and_probes() {
        let task = serde_json::json!({
            "containerConcurrency": 1,
            "containers": [{"image": "x", "readinessProbe": {"tcpSocket": {"port": 8080}}}]
        });
        let e = errors(job("report", task)).join("\n");
        assert!(
            e.contains("spec.template.spec.template.spec.containerConcurrency"),
            "{e}"
        );
        assert!(e.contains("containers[0].readinessProbe"), "{e}");
        let ok = serde_json::json!({"maxRetries": 2, "containers": [{"image": "x"}]});
        assert_eq!(errors(job("report", ok)), Vec::<String>::new());
    }

    #[test]
    fn limits_and_names_are_checked() {
        let task = serde_json::json!({"maxRetries": 11, "timeoutSeconds": 0, "containers": [{"image": "x"}]});
        let e = errors(job(&"j".repeat(50), task)).join("\n");
        assert!(e.contains("maxRetries: 11 is out of range"), "{e}");
        assert!(e.contains("timeoutSeconds: 0 is out of range"), "{e}");
        assert!(e.contains("at most 49 are allowed"), "{e}");
    }

    #[test]
    fn schedules_need_one_target_a_cron_and_a_zone() {
        let e = errors(serde_json::json!({"kind": "Schedule", "metadata": {"name": "s"},
            "spec": {"schedule": "every day", "timeZone": "Mars/Base", "concurrencyPolicy": "Sometimes"}}))
        .join("\n");
        for part in [
            "spec.schedule",
            "spec.timeZone",
            "spec.concurrencyPolicy",
            "names nothing to do",
        ] {
            assert!(e.contains(part), "{part} in {e}");
        }
        let e = errors(serde_json::json!({"kind": "Schedule", "metadata": {"name": "s"},
            "spec": {"schedule": "@hourly", "event": {"sink": {"uri": "https://x"}, "data": "a", "dataBase64": "YQ=="}}}))
        .join("\n");
        assert!(e.contains("https sinks are not supported"), "{e}");
        assert!(e.contains("both data and dataBase64"), "{e}");
    }
}
