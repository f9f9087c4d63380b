//! Usage on the API port (behind its bearer token), for `nimbus usage` and the web console:
//!
//! `GET /apis/usage.nimbus.dev/v1alpha1/usage?namespace=NS&service=SVC&since=24h&until=...&prices=PRESET`
//!
//! `since`/`until`: RFC 3339 or a duration before now (defaults: `24h` and now); `namespace`
//! and `service`: filters (default: all); `prices`: a preset (`cloud-run`, `lambda`; default:
//! the server's table, `nimbus serve --prices`). The answer:
//!
//! ```json
//! {"since": "...", "until": "...", "prices": {"name": "cloud-run", "currency": "USD", ...},
//!  "rows": [{"namespace", "service", "revision", "requests", "instanceSeconds",
//!            "vcpuSecondsAllocated", "vcpuSecondsUsed", "gibSecondsAllocated",
//!            "gibSecondsUsed", "coldStarts", "cost"}],
//!  "total": {"requests", ..., "cost"}}
//! ```
//!
//! Bad parameters are a `400` Kubernetes `Status` naming the parameter.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Figures, PriceTable, Row, Usage, UsageError, Window, parse_instant};

/// The path of the usage resource.
pub const PATH: &str = "/apis/usage.nimbus.dev/v1alpha1/usage";

/// The route above, to be put behind the API's authentication.
pub fn routes(usage: Arc<Usage>) -> Router {
    Router::new().route(PATH, get(read)).with_state(usage)
}

/// The query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    pub namespace: Option<String>,
    pub service: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub prices: Option<String>,
}

async fn read(
    State(usage): State<Arc<Usage>>,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(&e.body_text()),
    };
    let answer = tokio::task::spawn_blocking(move || answer(&usage, &query, Utc::now())).await;
    match answer {
        Ok(Ok(body)) => Json(body).into_response(),
        Ok(Err(UsageError::Db { .. } | UsageError::Prices { .. })) | Err(_) => {
            status(StatusCode::INTERNAL_SERVER_ERROR, "usage could not be read")
        }
        Ok(Err(e)) => bad_request(&e.to_string()),
    }
}

/// The JSON answer to `query` at `now`.
pub fn answer(usage: &Usage, query: &UsageQuery, now: DateTime<Utc>) -> Result<Value, UsageError> {
    let since = parse_instant(query.since.as_deref().unwrap_or("24h"), now, "since")?;
    let until = match query.until.as_deref() {
        Some(u) => parse_instant(u, now, "until")?,
        None => now,
    };
    let window = Window::new(since, until)?;
    let prices = match query.prices.as_deref() {
        None | Some("") => usage.prices().clone(),
        Some(name) => PriceTable::preset(name).ok_or_else(|| UsageError::BadQuery {
            field: "prices",
            message: format!(
                "{name:?} is not a preset; give one of {} (or price a file's table client-side)",
                crate::prices::PRESETS.join(", ")
            ),
        })?,
    };
    let rows = usage.query(window, query.namespace.as_deref(), query.service.as_deref())?;
    Ok(render(window, &prices, &rows))
}

/// The answer's JSON for `rows` priced with `prices`.
pub fn render(window: Window, prices: &PriceTable, rows: &[Row]) -> Value {
    let total = Figures::total(rows.iter().map(|r| &r.figures));
    let priced = |v: Value, f: &Figures| {
        let mut v = v;
        v["cost"] = json!(prices.cost(f));
        v
    };
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| priced(serde_json::to_value(r).unwrap_or_default(), &r.figures))
        .collect();
    json!({
        "since": window.since.to_rfc3339_opts(SecondsFormat::Secs, true),
        "until": window.until.to_rfc3339_opts(SecondsFormat::Secs, true),
        "prices": prices,
        "rows": rows,
        "total": priced(serde_json::to_value(total).unwrap_or_default(), &total),
    })
}

fn bad_request(message: &str) -> Response {
    status(StatusCode::BAD_REQUEST, message)
}

fn status(code: StatusCode, message: &str) -> Response {
    let reason = match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        _ => "InternalError",
    };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RevisionId, UsageDb};
    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    fn usage(dir: &std::path::Path) -> Arc<Usage> {
        let usage = Usage::new(
            UsageDb::open(&dir.join("usage.db")).unwrap(),
            PriceTable::cloud_run(),
        );
        let minute = Utc::now().timestamp() / 60;
        let row = Row {
            id: RevisionId {
                namespace: "default".into(),
                service: "hello".into(),
                revision: "hello-00001".into(),
            },
            figures: Figures {
                requests: 1_000_000,
                instance_seconds: 100.0,
                vcpu_seconds_allocated: 100.0,
                gib_seconds_allocated: 50.0,
                ..Figures::default()
            },
        };
        usage.db().add(&[(minute, row)]).unwrap();
        usage
    }

    async fn get(app: Router, uri: &str) -> (StatusCode, Value) {
        let response = app
            .oneshot(axum::http::Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let code = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn rows_and_total_are_priced() {
        let dir = tempfile::tempdir().unwrap();
        let app = routes(usage(dir.path()));
        let (code, body) = get(app.clone(), &format!("{PATH}?service=hello&since=1h")).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let row = &body["rows"][0];
        assert_eq!(row["revision"], "hello-00001");
        assert_eq!(row["requests"], 1_000_000);
        let cost = 100.0 * 0.000024 + 50.0 * 0.0000025 + 0.40;
        assert!((row["cost"].as_f64().unwrap() - cost).abs() < 1e-9, "{row}");
        assert_eq!(body["total"]["requests"], 1_000_000);
        assert_eq!(body["prices"]["name"], "cloud-run");
        let (_, lambda) = get(app.clone(), &format!("{PATH}?prices=lambda")).await;
        assert_eq!(lambda["prices"]["name"], "lambda");
        let (_, none) = get(app, &format!("{PATH}?service=other")).await;
        assert_eq!(none["rows"], json!([]));
    }

    #[tokio::test]
    async fn bad_parameters_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let app = routes(usage(dir.path()));
        let (code, body) = get(app.clone(), &format!("{PATH}?since=soon")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(
            body["message"].as_str().unwrap().starts_with("since:"),
            "{body}"
        );
        let (code, body) = get(app.clone(), &format!("{PATH}?prices=azure")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(
            body["message"].as_str().unwrap().contains("cloud-run"),
            "{body}"
        );
        let (code, _) = get(app, &format!("{PATH}?bogus=1")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
    }
}
