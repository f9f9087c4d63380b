//! The server's Kubernetes-style API as tests use it: objects by resource (`services`,
//! `revisions`, `podautoscalers`, `ingresses`, ...) and name, written with PUT, POST, merge
//! patch and DELETE, and waits on them with deadlines.
//!
//! ```text
//! pub fn path(resource: &str, name: Option<&str>) -> String  // /apis/<group>/<version>/namespaces/default/<resource>[/<name>]
//! impl Nimbus {
//!     async fn object(&self, resource, name) -> Option<Value>    // None on 404
//!     async fn names(&self, resource) -> Vec<String>             // sorted
//!     async fn send(&self, method, path, body) -> (u16, Value)   // any status; Status bodies too
//!     async fn merge_patch(&self, resource, name, patch) -> (u16, Value)
//!     async fn deploy(&self, service: &Value) -> Value          // apply, wait Ready at its generation
//!     async fn deploy_expecting(&self, service, latest_ready) -> Value  // ... and check it; the status
//!     async fn watch(&self, resource) -> Watch                  // every event from now on
//! }
//! pub async fn wait_until(what, timeout, check) -> T           // poll every 25 ms until Ok
//! ```

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Nimbus;

/// The API group/version serving `resource` (a plural, as in URLs).
fn group_version(resource: &str) -> &'static str {
    match resource {
        "ingresses" => "networking.internal.knative.dev/v1alpha1",
        _ => nimbus_api::Kind::parse(resource)
            .map_or("serving.knative.dev/v1", nimbus_api::Kind::api_version),
    }
}

/// The URL path of `resource` in namespace `default` (the collection without a name).
pub fn path(resource: &str, name: Option<&str>) -> String {
    let base = format!(
        "/apis/{}/namespaces/default/{resource}",
        group_version(resource)
    );
    match name {
        Some(name) => format!("{base}/{name}"),
        None => base,
    }
}

impl Nimbus {
    /// One object as JSON; `None` when it does not exist.
    pub async fn object(&self, resource: &str, name: &str) -> Option<Value> {
        self.api_get(&path(resource, Some(name)))
            .await
            .unwrap_or_else(|e| panic!("GET {resource}/{name}: {e}"))
    }

    /// One object that must exist.
    pub async fn must(&self, resource: &str, name: &str) -> Value {
        self.object(resource, name)
            .await
            .unwrap_or_else(|| panic!("{resource}/{name} does not exist"))
    }

    /// The names of the objects of `resource` in namespace `default`, sorted.
    pub async fn names(&self, resource: &str) -> Vec<String> {
        let list = self
            .api_get(&path(resource, None))
            .await
            .unwrap_or_else(|e| panic!("listing {resource}: {e}"))
            .unwrap_or_else(|| panic!("listing {resource}: 404"));
        let mut names: Vec<String> = list["items"]
            .as_array()
            .unwrap_or_else(|| panic!("listing {resource}: no items in {list}"))
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    /// Send `body` (JSON, or a merge patch for PATCH) with `method` to `path`; returns the
    /// status code and the JSON answer (a Kubernetes `Status` on errors; `Null` if not JSON).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .api_client()
            .request(method.clone(), format!("{}{path}", self.api_url()));
        if let Some(body) = body {
            let content_type = match method {
                reqwest::Method::PATCH => "application/merge-patch+json",
                _ => "application/json",
            };
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A JSON merge patch of one object.
    pub async fn merge_patch(&self, resource: &str, name: &str, patch: &Value) -> (u16, Value) {
        let path = path(resource, Some(name));
        self.send(reqwest::Method::PATCH, &path, Some(patch)).await
    }

    /// `nimbus apply` a Service (JSON is YAML) and wait until it is Ready at its new
    /// generation (60 s); returns the Service.
    pub async fn deploy(&self, service: &Value) -> Value {
        self.apply_ok(&service.to_string());
        let name = service["metadata"]["name"]
            .as_str()
            .expect("a named Service");
        self.wait_service_ready(name, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Nimbus::deploy`], then check that `latest_ready` is the latest ready revision;
    /// returns the Service's status.
    pub async fn deploy_expecting(&self, service: &Value, latest_ready: &str) -> Value {
        let status = self.deploy(service).await["status"].clone();
        assert_eq!(
            status["latestReadyRevisionName"], latest_ready,
            "{status:#}"
        );
        status
    }

    /// DELETE one object; returns the status code.
    pub async fn delete(&self, resource: &str, name: &str) -> u16 {
        let path = path(resource, Some(name));
        self.send(reqwest::Method::DELETE, &path, None).await.0
    }
}

/// A watch stream on one resource in namespace `default`: its events (`ADDED` for each
/// existing object first, then every change), in order, as they arrive. The stream is read in
/// the background until the `Watch` is dropped.
pub struct Watch {
    events: tokio::sync::mpsc::UnboundedReceiver<WatchEvent>,
    reader: tokio::task::JoinHandle<()>,
}

/// One event of a [`Watch`].
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: String,
    pub object: Value,
}

impl Nimbus {
    /// Start watching `resource`; returns once the server answered the watch request.
    pub async fn watch(&self, resource: &str) -> Watch {
        let url = format!("{}{}?watch=true", self.api_url(), path(resource, None));
        let mut resp = self
            .api_client()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("watching {resource}: {e}"));
        assert!(
            resp.status().is_success(),
            "watching {resource}: {}",
            resp.status()
        );
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buffer = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    if let Ok(mut event) = serde_json::from_slice::<Value>(&line) {
                        let kind = event["type"].as_str().unwrap_or_default().to_string();
                        let object = event["object"].take();
                        let _ = tx.send(WatchEvent { kind, object });
                    }
                }
            }
        });
        Watch { events, reader }
    }
}

impl Watch {
    /// The next event, waiting up to `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<WatchEvent> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// The objects of every event received so far, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        std::iter::from_fn(|| self.events.try_recv().ok())
            .map(|e| e.object)
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Poll `check` every 25 ms until it returns `Ok`; after `timeout`, panic with `what` and the
/// last `Err` (which should describe what was seen).
pub async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {timeout:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_group_of_each_resource() {
        assert_eq!(
            path("revisions", Some("a-00001")),
            "/apis/serving.knative.dev/v1/namespaces/default/revisions/a-00001"
        );
        assert_eq!(
            path("podautoscalers", None),
            "/apis/autoscaling.internal.knative.dev/v1alpha1/namespaces/default/podautoscalers"
        );
        assert_eq!(
            path("ingresses", Some("a")),
            "/apis/networking.internal.knative.dev/v1alpha1/namespaces/default/ingresses/a"
        );
    }

    #[tokio::test]
    async fn wait_until_returns_the_first_ok() {
        let mut n = 0;
        let got = wait_until("counting", Duration::from_secs(5), async || {
            n += 1;
            if n >= 3 { Ok(n) } else { Err(format!("{n}")) }
        })
        .await;
        assert_eq!(got, 3);
    }
}
