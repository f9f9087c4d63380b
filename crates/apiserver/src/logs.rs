//! The `log` subresource of services and revisions, shaped like Kubernetes' pod log:
//! `GET {API_PREFIX}/namespaces/{ns}/services/{name}/log` and `.../revisions/{name}/log`, and
//! of executions (`/apis/run.nimbus.dev/v1/namespaces/{ns}/executions/{name}/log`).
//!
//! Query parameters: `follow=true` (keep the response open and stream new lines, chunked, until
//! the client goes away), `sinceSeconds=N` or `sinceTime=<RFC 3339>` (at most one),
//! `tailLines=N`, `timestamps=true`, and for services `revision=R` (one revision instead of all
//! of the service's). A service's logs are those of the revisions labelled
//! `serving.knative.dev/service=<name>`, merged by time; while following, revisions created
//! later join in.
//!
//! The answer is `text/plain`, one line per log line, stdout and stderr alike:
//! `<instance> <text>`, or with `timestamps=true` `<instance> <RFC 3339 time> <text>`.
//! A missing service or revision is a 404 `Status`, as every other error. Files are read by
//! `nimbus-logs`; this module only picks directories and renders lines.

use std::convert::Infallible;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::Bytes;
use nimbus_api::Kind;
use nimbus_api::constants::LABEL_SERVICE;
use nimbus_logs::{LogLine, Timestamp};
use nimbus_store::{Store, StoreError};
use serde::Deserialize;

use crate::params::is_true;
use crate::state::ApiState;
use crate::status::ApiError;

/// The query parameters of a log request, as given.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogParams {
    follow: Option<String>,
    since_seconds: Option<String>,
    since_time: Option<String>,
    tail_lines: Option<String>,
    timestamps: Option<String>,
    revision: Option<String>,
}

/// What a log request asks for, checked.
#[derive(Debug, PartialEq, Eq)]
struct LogQuery {
    follow: bool,
    since: Option<Timestamp>,
    tail: Option<usize>,
    timestamps: bool,
}

/// Whose logs: fixed revisions, or whatever revisions a service has at each look.
#[derive(Clone)]
enum Revisions {
    Named(Vec<String>),
    OfService { store: Arc<Store>, service: String },
}

/// GET `/namespaces/{ns}/services/{name}/log`.
pub async fn service_log(
    State(state): State<ApiState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(params): Query<LogParams>,
) -> Result<Response, ApiError> {
    let query = LogQuery::parse(&params, Timestamp::now())?;
    state.store.must_get(Kind::Service, &namespace, &name)?;
    let revisions = match params.revision {
        Some(revision) => Revisions::Named(vec![revision_of(&state, &namespace, &name, revision)?]),
        None => Revisions::OfService {
            store: state.store.clone(),
            service: name,
        },
    };
    respond(&state, namespace, revisions, query).await
}

/// GET `/namespaces/{ns}/revisions/{name}/log`.
pub async fn revision_log(
    State(state): State<ApiState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(params): Query<LogParams>,
) -> Result<Response, ApiError> {
    let query = LogQuery::parse(&params, Timestamp::now())?;
    state.store.must_get(Kind::Revision, &namespace, &name)?;
    respond(&state, namespace, Revisions::Named(vec![name]), query).await
}

/// GET `/apis/run.nimbus.dev/v1/namespaces/{ns}/executions/{name}/log`: every task attempt's
/// output (each line starts with `<execution>-<task index>-<attempt>`).
pub async fn execution_log(
    State(state): State<ApiState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(params): Query<LogParams>,
) -> Result<Response, ApiError> {
    let query = LogQuery::parse(&params, Timestamp::now())?;
    state.store.must_get(Kind::Execution, &namespace, &name)?;
    respond(&state, namespace, Revisions::Named(vec![name]), query).await
}

/// `revision`, checked to exist and to belong to `service`.
fn revision_of(
    state: &ApiState,
    namespace: &str,
    service: &str,
    revision: String,
) -> Result<String, ApiError> {
    let obj = state.store.must_get(Kind::Revision, namespace, &revision)?;
    let owner = obj
        .metadata()
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SERVICE));
    if owner.is_none_or(|owner| owner != service) {
        return Err(ApiError::BadRequest(format!(
            "revision \"{revision}\" does not belong to service \"{service}\""
        )));
    }
    Ok(revision)
}

async fn respond(
    state: &ApiState,
    namespace: String,
    revisions: Revisions,
    query: LogQuery,
) -> Result<Response, ApiError> {
    let Some(root) = state.logs_root.clone() else {
        return Err(ApiError::NotFound {
            message: "this API server keeps no instance logs".into(),
            details: None,
        });
    };
    let dirs = move || revisions.dirs(&root, &namespace);
    let timestamps = query.timestamps;
    let body = if query.follow {
        let every = nimbus_logs::DEFAULT_POLL;
        let rx = nimbus_logs::follow(dirs, query.since, query.tail, every);
        let lines = futures::stream::unfold(rx, move |mut rx| async move {
            let line = rx.recv().await?;
            Some((
                Ok::<_, Infallible>(Bytes::from(render(&line, timestamps))),
                rx,
            ))
        });
        Body::from_stream(lines)
    } else {
        let read = move || nimbus_logs::read_dirs(&dirs(), query.since, query.tail);
        let lines = tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| ApiError::Internal(format!("reading logs: {e}")))?
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let text: String = lines.iter().map(|l| render(l, timestamps)).collect();
        Body::from(text)
    };
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `<instance> [<time> ]<text>\n`.
fn render(line: &LogLine, timestamps: bool) -> String {
    match timestamps {
        true => format!("{} {:.9} {}\n", line.instance, line.time, line.text),
        false => format!("{} {}\n", line.instance, line.text),
    }
}

// === impl LogQuery ===

impl LogQuery {
    fn parse(params: &LogParams, now: Timestamp) -> Result<Self, ApiError> {
        let flag = |v: &Option<String>| v.as_deref().is_some_and(is_true);
        let since = match (&params.since_seconds, &params.since_time) {
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "at most one of sinceTime or sinceSeconds may be specified".into(),
                ));
            }
            (Some(secs), None) => Some(seconds_before(now, secs)?),
            (None, Some(time)) => Some(time.parse().map_err(|e| {
                ApiError::BadRequest(format!("sinceTime {time:?} is not an RFC 3339 time: {e}"))
            })?),
            (None, None) => None,
        };
        let tail = params
            .tail_lines
            .as_deref()
            .map(|n| {
                n.parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "tailLines {n:?} must be a number of lines (0 or more)"
                    ))
                })
            })
            .transpose()?;
        Ok(Self {
            follow: flag(&params.follow),
            since,
            tail,
            timestamps: flag(&params.timestamps),
        })
    }
}

fn seconds_before(now: Timestamp, secs: &str) -> Result<Timestamp, ApiError> {
    let n: i64 = secs.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
        ApiError::BadRequest(format!("sinceSeconds {secs:?} must be greater than 0"))
    })?;
    let nanos = now.as_nanosecond() - i128::from(n) * 1_000_000_000;
    Ok(Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::MIN))
}

// === impl Revisions ===

impl Revisions {
    /// The log directories now. A failing store read while following yields none this time.
    fn dirs(&self, root: &FsPath, namespace: &str) -> Vec<PathBuf> {
        let names = match self {
            Self::Named(names) => names.clone(),
            Self::OfService { store, service } => revisions_of(store, namespace, service)
                .unwrap_or_else(|e| {
                    tracing::warn!(namespace, service, "listing revisions for logs: {e}");
                    Vec::new()
                }),
        };
        names
            .iter()
            .map(|rev| nimbus_logs::revision_dir(root, namespace, rev))
            .collect()
    }
}

/// The names of the revisions labelled as `service`'s.
fn revisions_of(store: &Store, namespace: &str, service: &str) -> Result<Vec<String>, StoreError> {
    let list = store.list(Kind::Revision, Some(namespace))?;
    let owned = list.items.into_iter().filter(|rev| {
        let labels = rev.metadata().labels.as_ref();
        labels
            .and_then(|l| l.get(LABEL_SERVICE))
            .is_some_and(|s| s == service)
    });
    Ok(owned.map(|rev| rev.name().to_string()).collect())
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
