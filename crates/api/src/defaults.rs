//! Knative's defaulting: values filled in before validation and storage, so what users read back
//! is what runs (`timeoutSeconds: 300`, `latestRevision: true`, the container name, ...).

use k8s_openapi::ByteString;

use crate::constants::DEFAULT_TIMEOUT_SECONDS;
use crate::core::{SECRET_TYPE_OPAQUE, Secret};
use crate::object::Object;
use crate::serving::{RevisionSpec, TrafficTarget};

/// Name given to the single container when the manifest leaves it out (Knative's default).
pub const DEFAULT_CONTAINER_NAME: &str = "user-container";

/// Apply defaults in place.
pub fn apply_defaults(obj: &mut Object) {
    match obj {
        Object::Service(s) => {
            default_revision_spec(&mut s.spec.template.spec);
            if s.spec.traffic.is_empty() {
                s.spec.traffic.push(TrafficTarget {
                    latest_revision: Some(true),
                    percent: Some(100),
                    ..Default::default()
                });
            }
            default_traffic(&mut s.spec.traffic);
        }
        Object::Configuration(c) => default_revision_spec(&mut c.spec.template.spec),
        Object::Revision(r) => default_revision_spec(&mut r.spec),
        Object::Route(r) => default_traffic(&mut r.spec.traffic),
        Object::Secret(s) => default_secret(s),
        Object::ScaledObject(so) => crate::keda::default_scaled_object(so),
        Object::TriggerAuthentication(_) => {}
        Object::PodAutoscaler(_) | Object::Ingress(_) | Object::ConfigMap(_) => {}
        Object::Event(_) => {}
        Object::Job(j) => default_execution_spec(&mut j.spec.template.spec),
        Object::Execution(e) => default_execution_spec(&mut e.spec),
        Object::Schedule(s) => default_schedule(&mut s.spec),
        Object::RedisStreamSource(_)
        | Object::RabbitmqSource(_)
        | Object::RedisListSource(_)
        | Object::NatsJetStreamSource(_) => {}
    }
}

/// Cloud Run's defaults, written out: one task, all at once, three retries, ten minutes.
fn default_execution_spec(spec: &mut crate::jobs::ExecutionSpec) {
    use crate::jobs::*;
    spec.task_count.get_or_insert(DEFAULT_TASK_COUNT);
    let task = &mut spec.template.spec;
    task.max_retries.get_or_insert(DEFAULT_MAX_RETRIES);
    task.timeout_seconds
        .get_or_insert(DEFAULT_TASK_TIMEOUT_SECONDS);
    name_single_container(&mut task.pod);
}

/// A CronJob's defaults: `Allow`, not suspended, history of 3 successful and 1 failed run.
fn default_schedule(spec: &mut crate::jobs::ScheduleSpec) {
    use crate::jobs::*;
    spec.concurrency_policy
        .get_or_insert_with(|| "Allow".to_string());
    spec.suspend.get_or_insert(false);
    spec.successful_executions_history_limit
        .get_or_insert(DEFAULT_SUCCESSFUL_HISTORY);
    spec.failed_executions_history_limit
        .get_or_insert(DEFAULT_FAILED_HISTORY);
    if let Some(event) = &mut spec.event
        && event.data.is_some()
    {
        event
            .content_type
            .get_or_insert_with(|| "application/json".to_string());
    }
}

/// Kubernetes' rules: `stringData` is merged into `data` (winning over it) and never stored;
/// `type` is `Opaque` unless given.
fn default_secret(s: &mut Secret) {
    for (key, value) in std::mem::take(&mut s.string_data) {
        s.data.insert(key, ByteString(value.into_bytes()));
    }
    if s.type_.as_deref().is_none_or(str::is_empty) {
        s.type_ = Some(SECRET_TYPE_OPAQUE.to_string());
    }
}

fn default_revision_spec(spec: &mut RevisionSpec) {
    spec.timeout_seconds.get_or_insert(DEFAULT_TIMEOUT_SECONDS);
    if spec.timeout_seconds == Some(0) {
        spec.timeout_seconds = Some(DEFAULT_TIMEOUT_SECONDS);
    }
    spec.container_concurrency.get_or_insert(0);
    name_single_container(spec);
}

fn name_single_container(spec: &mut RevisionSpec) {
    if let [c] = spec.containers.as_mut_slice()
        && c.name.is_empty()
    {
        c.name = DEFAULT_CONTAINER_NAME.to_string();
    }
}

fn default_traffic(traffic: &mut [TrafficTarget]) {
    for t in traffic {
        if t.revision_name.is_none() && t.latest_revision.is_none() {
            t.latest_revision = Some(true);
        }
        if t.revision_name.is_some() && t.latest_revision.is_none() {
            t.latest_revision = Some(false);
        }
    }
}
