//! A small client of the Nimbus API (Kubernetes-style REST), with errors taken from the server's
//! `Status` objects. Server and bearer token are found as kubectl would (see `kubeconfig.rs`).

use anyhow::{Context as _, bail};
use nimbus_api::{Kind, Object};
use serde_json::Value;

use crate::ClientOpts;
use crate::kubeconfig;

pub struct Client {
    http: reqwest::Client,
    base: String,
    pub namespace: String,
}

impl Client {
    /// The same connection pool and server, for another namespace.
    pub fn with_namespace(&self, namespace: &str) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            namespace: namespace.to_string(),
        }
    }

    pub fn new(opts: &ClientOpts) -> anyhow::Result<Self> {
        let creds = kubeconfig::resolve(&kubeconfig::Sources {
            server: opts.server.clone(),
            token: opts.token.clone(),
            kubeconfig: opts.kubeconfig.clone(),
            kubeconfig_env: std::env::var("KUBECONFIG").ok(),
            home: std::env::var_os("HOME").map(Into::into),
            context: opts.context.clone(),
            data_dir: opts.data_dir.clone(),
        })?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &creds.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the API token is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("nimbus/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: creds.server,
            namespace: opts.namespace.clone(),
        })
    }

    fn url(&self, kind: Kind, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut url = format!("{}/apis/{}", self.base, nimbus_api::API_VERSION);
        if let Some(ns) = namespace {
            url.push_str(&format!("/namespaces/{ns}"));
        }
        url.push('/');
        url.push_str(kind.plural());
        if let Some(name) = name {
            url.push('/');
            url.push_str(name);
        }
        url
    }

    pub async fn get(&self, kind: Kind, name: &str) -> anyhow::Result<Option<Object>> {
        let resp = self
            .send(
                self.http
                    .get(self.url(kind, Some(&self.namespace), Some(name))),
            )
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let value = self.json(resp).await?;
        Ok(Some(Object::from_json(kind, value)?))
    }

    pub async fn list(&self, kind: Kind, all_namespaces: bool) -> anyhow::Result<Vec<Object>> {
        let ns = (!all_namespaces).then_some(self.namespace.as_str());
        let resp = self.send(self.http.get(self.url(kind, ns, None))).await?;
        let value = self.json(resp).await?;
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
        let req = self
            .http
            .post(self.url(obj.kind(), Some(obj.namespace()), None))
            .json(&obj);
        let value = self.json(self.send(req).await?).await?;
        Ok(Object::from_json(obj.kind(), value)?)
    }

    pub async fn replace(&self, obj: &Object) -> anyhow::Result<Object> {
        let mut obj = obj.clone();
        obj.set_type_meta();
        let req = self
            .http
            .put(self.url(obj.kind(), Some(obj.namespace()), Some(obj.name())))
            .json(&obj);
        let value = self.json(self.send(req).await?).await?;
        Ok(Object::from_json(obj.kind(), value)?)
    }

    pub async fn delete(&self, kind: Kind, name: &str) -> anyhow::Result<()> {
        let resp = self
            .send(
                self.http
                    .delete(self.url(kind, Some(&self.namespace), Some(name))),
            )
            .await?;
        self.json(resp).await.map(|_| ())
    }

    /// GET the `sub` subresource (e.g. `log`) of a named object with `query`, for a streamed
    /// answer: the response is returned unread once its status says success.
    pub async fn get_stream(
        &self,
        kind: Kind,
        name: &str,
        sub: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!(
            "{}/{sub}",
            self.url(kind, Some(&self.namespace), Some(name))
        );
        let mut url = reqwest::Url::parse(&url).with_context(|| format!("bad API URL {url}"))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let resp = self.send(self.http.get(url)).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        self.json(resp).await?; // fails with the server's message
        bail!("the API answered with an error")
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        req.send().await.with_context(|| {
            format!(
                "cannot reach the Nimbus API at {}; is `nimbus serve` running? (set --server or NIMBUS_SERVER)",
                self.base
            )
        })
    }

    async fn json(&self, resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let body = resp.text().await.context("reading the API response")?;
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "the Nimbus API at {} refused the request (401 Unauthorized): give a token with \
                 --token/NIMBUS_TOKEN, a kubeconfig from `nimbus kubeconfig` (--kubeconfig, KUBECONFIG), \
                 or --data-dir pointing at the server's data directory",
                self.base
            );
        }
        if !status.is_success() {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string);
            bail!(
                "{}",
                message.unwrap_or_else(|| format!("the API answered {status}: {value}"))
            );
        }
        Ok(value)
    }
}

/// `service.serving.knative.dev/hello`
pub fn display_name(kind: Kind, name: &str) -> String {
    format!(
        "{}.{}/{name}",
        kind.as_str().to_ascii_lowercase(),
        nimbus_api::GROUP
    )
}
