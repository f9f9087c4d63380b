//! A small client of the Nimbus API (Kubernetes-style REST), with errors taken from the server's
//! `Status` objects. Server and credentials are found as kubectl would (see `kubeconfig.rs`):
//! Nimbus's embedded API is reached over plain HTTP with its bearer token; a Kubernetes
//! cluster's (Kubernetes mode) through kube-rs, with the kubeconfig context as it is. Both
//! serve the same paths, so every command works in both modes.

use anyhow::{Context as _, bail};
use http::{Method, StatusCode};
use nimbus_api::{Kind, Object};
use serde_json::Value;

use crate::ClientOpts;
use crate::kubeconfig;

pub struct Client {
    transport: Transport,
    pub namespace: String,
}

#[derive(Clone)]
enum Transport {
    /// Nimbus's embedded API: plain HTTP, a bearer token.
    Http { http: reqwest::Client, base: String },
    /// A Kubernetes API server named by a kubeconfig context.
    Kube {
        client: kube::Client,
        server: String,
    },
}

impl Client {
    /// The same connection and server, for another namespace.
    pub fn with_namespace(&self, namespace: &str) -> Self {
        Self {
            transport: self.transport.clone(),
            namespace: namespace.to_string(),
        }
    }

    pub async fn new(opts: &ClientOpts) -> anyhow::Result<Self> {
        let creds = kubeconfig::resolve(&kubeconfig::Sources {
            server: opts.server.clone(),
            token: opts.token.clone(),
            kubeconfig: opts.kubeconfig.clone(),
            kubeconfig_env: std::env::var("KUBECONFIG").ok(),
            home: std::env::var_os("HOME").map(Into::into),
            context: opts.context.clone(),
            data_dir: opts.data_dir.clone(),
        })?;
        let transport = match creds.kube {
            true => Transport::Kube {
                client: nimbus_kube::kubeconfig::client(
                    opts.kubeconfig.as_deref(),
                    opts.context.as_deref(),
                )
                .await?,
                server: creds.server,
            },
            false => Transport::Http {
                http: http_client(creds.token.as_deref())?,
                base: creds.server,
            },
        };
        Ok(Self {
            transport,
            namespace: opts.namespace.clone(),
        })
    }

    /// `/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>]` (`/api/v1/...` for the
    /// core kinds).
    fn path(&self, kind: Kind, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut path = match kind.is_core() {
            true => format!("/api/{}", kind.api_version()),
            false => format!("/apis/{}", kind.api_version()),
        };
        if let Some(ns) = namespace {
            path.push_str(&format!("/namespaces/{ns}"));
        }
        path.push('/');
        path.push_str(kind.plural());
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    pub async fn get(&self, kind: Kind, name: &str) -> anyhow::Result<Option<Object>> {
        let path = self.path(kind, Some(&self.namespace), Some(name));
        match self.call(Method::GET, &path, None).await {
            Err(e) if status_of(&e) == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
            Ok(value) => Ok(Some(Object::from_json(kind, value)?)),
        }
    }

    pub async fn list(&self, kind: Kind, all_namespaces: bool) -> anyhow::Result<Vec<Object>> {
        let ns = (!all_namespaces).then_some(self.namespace.as_str());
        let value = self
            .call(Method::GET, &self.path(kind, ns, None), None)
            .await?;
        let items = value
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        items
            .into_iter()
            .map(|v| Ok(Object::from_json(kind, v)?))
            .collect()
    }

    pub async fn create(&self, obj: &Object) -> anyhow::Result<Object> {
        let mut obj = obj.clone();
        obj.set_type_meta();
        let path = self.path(obj.kind(), Some(obj.namespace()), None);
        let value = self.call(Method::POST, &path, Some(obj.to_json())).await?;
        Ok(Object::from_json(obj.kind(), value)?)
    }

    pub async fn replace(&self, obj: &Object) -> anyhow::Result<Object> {
        let mut obj = obj.clone();
        obj.set_type_meta();
        let path = self.path(obj.kind(), Some(obj.namespace()), Some(obj.name()));
        let value = self.call(Method::PUT, &path, Some(obj.to_json())).await?;
        Ok(Object::from_json(obj.kind(), value)?)
    }

    pub async fn delete(&self, kind: Kind, name: &str) -> anyhow::Result<()> {
        let path = self.path(kind, Some(&self.namespace), Some(name));
        self.call(Method::DELETE, &path, None).await.map(|_| ())
    }

    /// GET the `sub` subresource (e.g. `log`) of a named object with `query`, for a streamed
    /// answer: the response is returned unread once its status says success. Nimbus's
    /// embedded API only (a cluster's pods have `kubectl logs`).
    pub async fn get_stream(
        &self,
        kind: Kind,
        name: &str,
        sub: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<reqwest::Response> {
        let Transport::Http { http, base } = &self.transport else {
            if kind == Kind::Execution {
                bail!(
                    "in Kubernetes mode an execution's output is its pods' logs: use kubectl logs -n {} -l run.nimbus.dev/execution={name} --prefix",
                    self.namespace
                );
            }
            bail!(
                "in Kubernetes mode a revision's output is its pods' logs: use kubectl logs -l serving.knative.dev/service={name}"
            );
        };
        let url = format!(
            "{base}{}/{sub}",
            self.path(kind, Some(&self.namespace), Some(name))
        );
        let mut url = reqwest::Url::parse(&url).with_context(|| format!("bad API URL {url}"))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let resp = http
            .get(url)
            .send()
            .await
            .with_context(|| unreachable_api(base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Err(answer(status, body, base).unwrap_err())
    }

    /// One request to any API path (resources outside the kinds, e.g. invocations); the
    /// answer's JSON, or the server's `Status` as an error.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.call(method, path, body).await
    }

    /// One request; the answer's JSON, or the server's `Status` as an [`ApiStatus`] error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, text, server) = match &self.transport {
            Transport::Http { http, base } => {
                let mut req = http.request(method, format!("{base}{path}"));
                if let Some(body) = &body {
                    req = req.json(body);
                }
                let resp = req.send().await.with_context(|| unreachable_api(base))?;
                let status = resp.status();
                let text = resp.text().await.context("reading the API response")?;
                (status, text, base)
            }
            Transport::Kube { client, server } => {
                let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
                let req = http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(kube::client::Body::from(bytes))
                    .context("building the request")?;
                let resp = client
                    .send(req)
                    .await
                    .with_context(|| format!("cannot reach the Kubernetes API at {server}"))?;
                let status = resp.status();
                let bytes = http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .context("reading the API response")?
                    .to_bytes();
                (status, String::from_utf8_lossy(&bytes).into_owned(), server)
            }
        };
        answer(status, text, server)
    }
}

fn http_client(token: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the API token is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .user_agent(concat!("nimbus/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

fn unreachable_api(base: &str) -> String {
    format!(
        "cannot reach the Nimbus API at {base}; is `nimbus serve` running? (set --server or NIMBUS_SERVER)"
    )
}

/// The JSON of a successful answer, or the server's error.
fn answer(status: StatusCode, body: String, server: &str) -> anyhow::Result<Value> {
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    if status == StatusCode::UNAUTHORIZED {
        bail!(
            "the API at {server} refused the request (401 Unauthorized): give a token with \
             --token/NIMBUS_TOKEN, a kubeconfig from `nimbus kubeconfig` (--kubeconfig, KUBECONFIG), \
             or --data-dir pointing at the server's data directory"
        );
    }
    if !status.is_success() {
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string);
        return Err(ApiStatus {
            code: status,
            message: message.unwrap_or_else(|| format!("the API answered {status}: {value}")),
        }
        .into());
    }
    Ok(value)
}

/// An error answer of the API: its HTTP status and the `Status` message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiStatus {
    pub code: StatusCode,
    pub message: String,
}

fn status_of(e: &anyhow::Error) -> Option<StatusCode> {
    e.downcast_ref::<ApiStatus>().map(|s| s.code)
}

/// Whether `e` is the API's 409: another write came between a read and this write.
pub fn is_conflict(e: &anyhow::Error) -> bool {
    status_of(e) == Some(StatusCode::CONFLICT)
}

/// `service.serving.knative.dev/hello`, `podautoscaler.autoscaling.internal.knative.dev/hello`,
/// `secret/db`
pub fn display_name(kind: Kind, name: &str) -> String {
    if kind.is_core() {
        return format!("{}/{name}", kind.as_str().to_ascii_lowercase());
    }
    format!(
        "{}.{}/{name}",
        kind.as_str().to_ascii_lowercase(),
        kind.group()
    )
}
