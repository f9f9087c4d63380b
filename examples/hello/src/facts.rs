//! `/` and `/json`: who answered (greeting, revision, service) and what was asked (method, path,
//! version, host, headers). The `x-revision` response header names the answering revision.

use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::json;

use crate::App;
use crate::respond::{self, Body};

/// Facts about one request, as the server saw it.
struct Facts {
    greeting: String,
    revision: String,
    service: String,
    method: String,
    path: String,
    version: String,
    host: String,
    headers: Vec<(String, String)>,
}

impl Facts {
    fn of<B>(app: &App, request: &Request<B>) -> Self {
        let settings = &app.inner.settings;
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let host = host.or(request.uri().authority().map(|a| a.as_str()));
        Self {
            greeting: format!("Hello {}!", settings.target),
            revision: settings.revision.clone(),
            service: settings.service.clone(),
            method: request.method().to_string(),
            path: request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            version: format!("{:?}", request.version()),
            host: host.unwrap_or_default().to_owned(),
            headers: request
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        }
    }

    fn to_text(&self) -> String {
        let mut out = format!(
            "{}\nrevision: {}\nservice: {}\nmethod: {}\npath: {}\nversion: {}\nhost: {}\n",
            self.greeting,
            self.revision,
            self.service,
            self.method,
            self.path,
            self.version,
            self.host
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\n"));
        }
        out
    }

    fn to_json(&self) -> serde_json::Value {
        let headers: serde_json::Map<_, _> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({
            "greeting": self.greeting, "revision": self.revision, "service": self.service,
            "method": self.method, "path": self.path, "version": self.version,
            "host": self.host, "headers": headers,
        })
    }
}

/// `GET /`: the greeting and request facts as text.
pub(crate) fn text<B>(app: &App, request: &Request<B>) -> Response<Body> {
    let facts = Facts::of(app, request);
    with_revision(app, respond::text(StatusCode::OK, facts.to_text()))
}

/// `GET /json`: the same facts as a JSON object.
pub(crate) fn json<B>(app: &App, request: &Request<B>) -> Response<Body> {
    with_revision(app, respond::json(&Facts::of(app, request).to_json()))
}

fn with_revision(app: &App, mut response: Response<Body>) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(&app.inner.settings.revision) {
        response.headers_mut().insert("x-revision", value);
    }
    response
}
