//! The Job reconciler: a Job runs nothing itself; its status says it is usable and which
//! executions it has (`executionCount`, the latest with its completion time).

use nimbus_api::jobs::*;
use nimbus_api::{ConditionStatus, Job, Kind, Object};

use crate::context::Context;
use crate::error::ControllerError;
use crate::resources::{Action, update_status};
use crate::status::{cond, is_controlled_by};

pub(crate) async fn reconcile(ctx: &Context, job: Job) -> Result<Action, ControllerError> {
    let namespace = job
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = job.metadata.name.clone().unwrap_or_default();
    let listed = ctx
        .resources
        .list(Kind::Execution, Some(&namespace), &[(LABEL_JOB, &name)])
        .await?;
    let executions: Vec<nimbus_api::Execution> = listed
        .items
        .into_iter()
        .filter_map(|o| match o {
            Object::Execution(e) if is_controlled_by(&e.metadata, &job.metadata) => Some(e),
            _ => None,
        })
        .collect();
    let created = |e: &nimbus_api::Execution| {
        e.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default()
    };
    let latest = executions
        .iter()
        .max_by_key(|e| (created(e), e.metadata.name.clone()))
        .map(|e| ExecutionReference {
            name: e.metadata.name.clone().unwrap_or_default(),
            creation_timestamp: Some(created(e)).filter(|t| !t.is_empty()),
            completion_timestamp: e.status.as_ref().and_then(|s| s.completion_time.clone()),
        });
    let count = executions.len() as i64;
    let now = ctx.now();
    let generation = job.metadata.generation;
    update_status(&*ctx.resources, Kind::Job, &namespace, &name, |o| {
        if let Object::Job(j) = o {
            let st = j.status.get_or_insert_default();
            st.observed_generation = generation;
            st.execution_count = Some(count);
            st.latest_created_execution = latest.clone();
            nimbus_api::conditions::set_condition(
                &mut st.conditions,
                cond(CONDITION_READY, ConditionStatus::True, "", ""),
                &now,
            );
        }
    })
    .await?;
    Ok(Action::await_change())
}

/// A new Execution of `job`: the job's template, labelled with the job and owned by it.
pub fn new_execution(
    job: &Job,
    name: Option<String>,
    generate_name: Option<String>,
    extra_labels: &[(&str, &str)],
    extra_annotations: &[(&str, &str)],
) -> nimbus_api::Execution {
    let template = &job.spec.template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(
        LABEL_JOB.into(),
        job.metadata.name.clone().unwrap_or_default(),
    );
    for (k, v) in extra_labels {
        labels.insert((*k).into(), (*v).into());
    }
    let mut annotations = meta.annotations.unwrap_or_default();
    for (k, v) in extra_annotations {
        annotations.insert((*k).into(), (*v).into());
    }
    nimbus_api::Execution {
        api_version: API_VERSION.into(),
        kind: nimbus_api::Execution::KIND.into(),
        metadata: nimbus_api::ObjectMeta {
            name,
            generate_name,
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            owner_references: Some(vec![crate::status::owner_ref(Kind::Job, &job.metadata)]),
            ..Default::default()
        },
        spec: ExecutionSpec {
            cancelled: None,
            ..template.spec.clone()
        },
        status: None,
    }
}
