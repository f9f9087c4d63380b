//! The Schedule reconciler, after Kubernetes' CronJob controller: at each cron time (in the
//! schedule's time zone) start an Execution of the Job, or send a CloudEvent (PingSource's
//! `dev.knative.sources.ping`) to the [`EventSink`]. A run missed while the server was down
//! starts late only if it is at most `startingDeadlineSeconds` late (no limit when unset), and
//! only the latest missed run starts. `Forbid` skips a run while one is still active;
//! `Replace` deletes the active ones first. Finished executions beyond the history limits are
//! deleted, oldest first.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nimbus_api::jobs::*;
use nimbus_api::{ConditionStatus, Execution, Kind, Object, Schedule};

use crate::context::Context;
use crate::error::ControllerError;
use crate::resources::{Action, ResourceError, update_status};
use crate::status::cond;

/// Missed runs counted at most (a CronJob's controller gives up counting at 100).
const MAX_MISSED: usize = 100;

/// A scheduled CloudEvent, ready to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledDelivery {
    /// A Service of the schedule's namespace (`uri`: then a path on it), or an `http://` URL
    /// (`uri` alone), as Knative resolves a `Destination`.
    pub service: Option<String>,
    pub uri: Option<String>,
    /// CloudEvents attributes: `id` (the schedule's uid and the time), `source`
    /// (`/apis/v1/namespaces/NS/schedules/NAME`), `type` and `time`.
    pub id: String,
    pub source: String,
    pub type_: String,
    pub time: String,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Where scheduled events go (the async invocation queue: stored, then delivered with
/// retries). Returns an id of the stored delivery, or why it was not taken.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    async fn send(&self, namespace: &str, event: ScheduledDelivery) -> Result<String, String>;
}

pub(crate) async fn reconcile(ctx: &Context, s: Schedule) -> Result<Action, ControllerError> {
    let namespace = s
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = s.metadata.name.clone().unwrap_or_default();
    let spec = &s.spec;
    let status = s.status.clone().unwrap_or_default();
    let executions = owned_executions(ctx, &namespace, &name).await?;
    let active: Vec<&Execution> = executions.iter().filter(|e| !finished(e)).collect();
    prune_history(ctx, spec, &executions).await?;
    let last = |outcome, ran, next| Written { outcome, ran, next };
    let (cron, tz) = match (
        nimbus_api::cron::parse(&spec.schedule),
        nimbus_api::cron::time_zone(spec.time_zone.as_deref().unwrap_or("UTC")),
    ) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(e), _) | (_, Err(e)) => {
            let outcome = Outcome::not_ready("InvalidSchedule", &e);
            write(ctx, &s, &executions, last(outcome, None, None)).await?;
            return Ok(Action::await_change());
        }
    };
    let now = chrono_now(ctx);
    let since = status
        .last_schedule_time
        .as_deref()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .or_else(|| {
            let created = s.metadata.creation_timestamp.as_ref()?;
            created.0.to_string().parse::<DateTime<Utc>>().ok()
        })
        .unwrap_or(now);
    let next = nimbus_api::cron::next_after(&cron, tz, now);
    if spec.suspend == Some(true) {
        let outcome = Outcome::ready("Suspended", "runs are suspended (spec.suspend)");
        write(ctx, &s, &executions, last(outcome, None, None)).await?;
        return Ok(Action::await_change());
    }
    let (missed, count) = nimbus_api::cron::missed(&cron, tz, since, now, MAX_MISSED);
    let mut ran = None;
    let mut started = false;
    let mut outcome = Outcome::ready("Scheduled", "");
    if let Some(at) = missed {
        let late = (now - at).num_seconds();
        let too_late = spec.starting_deadline_seconds.is_some_and(|d| late > d);
        if too_late {
            tracing::info!(schedule = %name, %at, "missed run is past startingDeadlineSeconds; skipped");
            outcome = Outcome::ready(
                "MissedRun",
                &format!(
                    "the run at {at} was missed ({count} missed) and is more than \
                     startingDeadlineSeconds late; the next runs on time"
                ),
            );
            ran = Some(at);
        } else {
            match fire(ctx, &s, &namespace, &name, at, &active).await {
                Ok(Fired::Started(what)) => {
                    outcome = Outcome::ready("Scheduled", &what);
                    ran = Some(at);
                    started = true;
                }
                Ok(Fired::Forbidden) => {
                    outcome = Outcome::ready(
                        "RunSkipped",
                        &format!(
                            "the run at {at} waits: concurrencyPolicy Forbid and an execution is still active"
                        ),
                    );
                }
                Err(message) => {
                    outcome = Outcome::not_ready("RunFailed", &message);
                    ran = Some(at);
                }
            }
        }
    }
    // A run that started (or replaced others) changed the executions; list them again.
    let executions = match started {
        true => owned_executions(ctx, &namespace, &name).await?,
        false => executions,
    };
    write(ctx, &s, &executions, last(outcome, ran, next)).await?;
    Ok(match next {
        Some(next) => {
            let wait = (next - chrono_now(ctx)).to_std().unwrap_or_default();
            Action::requeue(wait + Duration::from_millis(5))
        }
        None => Action::await_change(),
    })
}

enum Fired {
    Started(String),
    Forbidden,
}

/// Start the run scheduled at `at`.
async fn fire(
    ctx: &Context,
    s: &Schedule,
    namespace: &str,
    name: &str,
    at: DateTime<Utc>,
    active: &[&Execution],
) -> Result<Fired, String> {
    if let Some(event) = &s.spec.event {
        return send_event(ctx, s, namespace, name, at, event)
            .await
            .map(Fired::Started);
    }
    let Some(job_ref) = &s.spec.job_ref else {
        return Err("names neither a job nor an event".into());
    };
    match s.spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => return Ok(Fired::Forbidden),
        Some("Replace") => {
            for e in active {
                let (ename, uid) = (
                    e.metadata.name.clone().unwrap_or_default(),
                    e.metadata.uid.clone(),
                );
                match ctx
                    .resources
                    .delete(Kind::Execution, namespace, &ename, uid.as_deref())
                    .await
                {
                    Ok(_) | Err(ResourceError::NotFound { .. }) => {}
                    Err(e) => return Err(format!("cannot replace execution {ename}: {e}")),
                }
            }
        }
        _ => {}
    }
    let job = match ctx.resources.get(Kind::Job, namespace, &job_ref.name).await {
        Ok(Some(Object::Job(job))) => job,
        Ok(_) => {
            return Err(format!(
                "job \"{}\" not found in namespace \"{namespace}\"; create it, or change spec.jobRef",
                job_ref.name
            ));
        }
        Err(e) => return Err(format!("cannot read job {}: {e}", job_ref.name)),
    };
    // One name per scheduled time, so a repeated reconcile cannot start it twice.
    let exec_name = format!("{name}-{}", at.timestamp());
    let at_text = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let execution = super::job::new_execution(
        &job,
        Some(exec_name.clone()),
        None,
        &[(LABEL_SCHEDULE, name)],
        &[(ANNOTATION_SCHEDULED_AT, &at_text)],
    );
    match ctx.resources.create(Object::Execution(execution)).await {
        Ok(_) | Err(ResourceError::AlreadyExists { .. }) => Ok(Fired::Started(format!(
            "started execution {exec_name} for {at_text}"
        ))),
        Err(e) => Err(format!(
            "cannot start an execution of job {}: {e}",
            job_ref.name
        )),
    }
}

async fn send_event(
    ctx: &Context,
    s: &Schedule,
    namespace: &str,
    name: &str,
    at: DateTime<Utc>,
    event: &ScheduledEvent,
) -> Result<String, String> {
    let Some(sink) = &ctx.event_sink else {
        return Err("this Nimbus cannot deliver events (no event sink)".into());
    };
    let data = match (&event.data, &event.data_base64) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(b64)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("spec.event.dataBase64 is not base64: {e}"))?
        }
        (None, None) => Vec::new(),
    };
    let time = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let delivery = ScheduledDelivery {
        service: event.sink.ref_.as_ref().map(|r| r.name.clone()),
        uri: event.sink.uri.clone(),
        id: format!(
            "{}-{}",
            s.metadata.uid.as_deref().unwrap_or(name),
            at.timestamp()
        ),
        source: format!("/apis/v1/namespaces/{namespace}/schedules/{name}"),
        type_: "dev.knative.sources.ping".into(),
        time: time.clone(),
        content_type: event.content_type.clone(),
        data,
    };
    let id = sink.send(namespace, delivery).await?;
    Ok(format!("sent the event for {time} (invocation {id})"))
}

/// The executions this schedule started (labelled with it and not owned by anyone else).
async fn owned_executions(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Vec<Execution>, ControllerError> {
    let listed = ctx
        .resources
        .list(Kind::Execution, Some(namespace), &[(LABEL_SCHEDULE, name)])
        .await?;
    Ok(listed
        .items
        .into_iter()
        .filter_map(|o| match o {
            Object::Execution(e) => Some(e),
            _ => None,
        })
        .collect())
}

fn finished(e: &Execution) -> bool {
    e.status.as_ref().is_some_and(ExecutionStatus::is_finished)
}

fn succeeded(e: &Execution) -> bool {
    e.status
        .as_ref()
        .and_then(|s| s.completed())
        .is_some_and(|c| c.status == ConditionStatus::True)
}

/// Delete finished executions beyond the history limits, oldest first.
async fn prune_history(
    ctx: &Context,
    spec: &ScheduleSpec,
    executions: &[Execution],
) -> Result<(), ControllerError> {
    let limits = [
        (
            true,
            spec.successful_executions_history_limit
                .unwrap_or(DEFAULT_SUCCESSFUL_HISTORY),
        ),
        (
            false,
            spec.failed_executions_history_limit
                .unwrap_or(DEFAULT_FAILED_HISTORY),
        ),
    ];
    for (ok, limit) in limits {
        let mut done: Vec<&Execution> = executions
            .iter()
            .filter(|e| finished(e) && succeeded(e) == ok)
            .collect();
        done.sort_by_key(|e| e.status.as_ref().and_then(|s| s.completion_time.clone()));
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        for e in &done[..excess] {
            let name = e.metadata.name.clone().unwrap_or_default();
            let ns = e
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            match ctx
                .resources
                .delete(Kind::Execution, &ns, &name, e.metadata.uid.as_deref())
                .await
            {
                Ok(_) | Err(ResourceError::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(())
}

struct Outcome {
    status: ConditionStatus,
    reason: String,
    message: String,
}

impl Outcome {
    fn ready(reason: &str, message: &str) -> Self {
        Self {
            status: ConditionStatus::True,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn not_ready(reason: &str, message: &str) -> Self {
        Self {
            status: ConditionStatus::False,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What a reconcile writes into the status besides what the executions say.
struct Written {
    outcome: Outcome,
    /// The scheduled time just handled (run, or skipped for being too late).
    ran: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
}

/// The status from the schedule's executions (active ones, the last success) and `written`.
async fn write(
    ctx: &Context,
    s: &Schedule,
    executions: &[Execution],
    written: Written,
) -> Result<(), ControllerError> {
    let namespace = s.metadata.namespace.as_deref().unwrap_or("default");
    let name = s.metadata.name.as_deref().unwrap_or_default();
    let now = ctx.now();
    let generation = s.metadata.generation;
    let active: Vec<String> = executions
        .iter()
        .filter(|e| !finished(e))
        .filter_map(|e| e.metadata.name.clone())
        .collect();
    let last_successful = executions
        .iter()
        .filter(|e| succeeded(e))
        .filter_map(|e| e.status.as_ref().and_then(|s| s.completion_time.clone()))
        .max();
    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let next = written.next.map(rfc3339);
    let ran = written.ran.map(rfc3339);
    let outcome = written.outcome;
    let ready = cond(
        CONDITION_READY,
        outcome.status,
        &outcome.reason,
        &outcome.message,
    );
    update_status(&*ctx.resources, Kind::Schedule, namespace, name, |o| {
        if let Object::Schedule(x) = o {
            let st = x.status.get_or_insert_default();
            st.observed_generation = generation;
            st.active = active.clone();
            st.next_schedule_time = next.clone();
            if ran.is_some() {
                st.last_schedule_time = ran.clone();
            }
            if last_successful.is_some() {
                st.last_successful_time = last_successful.clone();
            }
            nimbus_api::conditions::set_condition(&mut st.conditions, ready.clone(), &now);
        }
    })
    .await?;
    Ok(())
}

fn chrono_now(ctx: &Context) -> DateTime<Utc> {
    let t = ctx.clock.now();
    DateTime::<Utc>::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}
