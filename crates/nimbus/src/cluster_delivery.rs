//! Events in Kubernetes mode: the operator delivers event sources' messages and schedules'
//! CloudEvents over HTTP through the routers (as an in-cluster client of a Knative Service
//! would, so a Service at zero is activated like for any request), and to URL sinks
//! directly. There is no invocation store on a cluster: an event is retried under Knative's
//! delivery rules, then sent to its `deadLetterSink`, or dropped with an error line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use nimbus_api::sources::DeliverySpec;
use nimbus_controller::{EventSink, ScheduledDelivery};
use nimbus_invocations::{Deliver, NoResponse, StoredResponse, Target};
use nimbus_kube::peers::Peers;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::invocations::{deliver_url, scheduled_request};

/// How long the routers' addresses are reused before they are listed again.
const ROUTERS_TTL: Duration = Duration::from_secs(5);

/// Delivery through the routers' data-plane port (`Host` set to the Service's route host).
pub struct RouterDelivery {
    client: kube::Client,
    routers: Peers,
    known: Mutex<Option<(Instant, Vec<String>)>>,
    next: AtomicUsize,
    http: reqwest::Client,
}

impl RouterDelivery {
    pub fn new(client: kube::Client, routers: Peers) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            client,
            routers,
            known: Mutex::new(None),
            next: AtomicUsize::new(0),
            http: crate::invocations::url_client()?,
        }))
    }

    /// A router's base URL, taking turns among the ready ones.
    async fn router(&self) -> Option<String> {
        let mut known = self.known.lock().await;
        let fresh = known
            .as_ref()
            .is_some_and(|(at, urls)| at.elapsed() < ROUTERS_TTL && !urls.is_empty());
        if !fresh {
            *known = Some((Instant::now(), self.routers.urls(&self.client).await));
        }
        let urls = &known.as_ref()?.1;
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        urls.get(i % urls.len().max(1)).cloned()
    }
}

#[async_trait]
impl Deliver for RouterDelivery {
    async fn deliver(
        &self,
        _namespace: &str,
        target: &Target,
        request: http::Request<Bytes>,
    ) -> Result<StoredResponse, NoResponse> {
        match target {
            Target::Service { host, .. } => {
                let Some(router) = self.router().await else {
                    // Like a full platform: wait and try again without using an attempt.
                    return Err(NoResponse {
                        message: "no router is ready".into(),
                        throttled: true,
                        retry_after: Some(Duration::from_secs(1)),
                    });
                };
                let path = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                let mut request = request;
                let value = http::HeaderValue::from_str(host)
                    .map_err(|e| NoResponse::failed(e.to_string()))?;
                request.headers_mut().insert(http::header::HOST, value);
                deliver_url(&self.http, &format!("{router}{path}"), request).await
            }
            Target::Url { url } => deliver_url(&self.http, url, request).await,
        }
    }
}

/// Schedules' CloudEvents on a cluster: sent at once in the background under Knative's
/// default delivery (3 retries, exponential back-off from 1 s), then dropped with an error
/// line. The id is the event's `ce-id`.
pub struct ClusterEvents {
    pub deliver: Arc<dyn Deliver>,
    pub domain: String,
}

#[async_trait]
impl EventSink for ClusterEvents {
    async fn send(&self, namespace: &str, event: ScheduledDelivery) -> Result<String, String> {
        let target = match (&event.service, &event.uri) {
            (Some(service), _) => Target::Service {
                name: service.clone(),
                host: nimbus_api::names::route_host(service, namespace, &self.domain),
            },
            (None, Some(uri)) => Target::Url { url: uri.clone() },
            (None, None) => return Err("the event names no sink".into()),
        };
        let stored = scheduled_request(&event);
        let id = event.id.clone();
        let deliver = Arc::clone(&self.deliver);
        let namespace = namespace.to_owned();
        tokio::spawn(async move {
            let retry = DeliverySpec::retry(None);
            let to = nimbus_sources::deliver::To {
                deliver: deliver.as_ref(),
                namespace: &namespace,
                target: &target,
                retry: &retry,
            };
            let request = || stored.to_http(|_| true);
            if let (Err(why), _) = nimbus_sources::deliver::send(to, &event.id, request).await {
                tracing::error!(
                    namespace,
                    event = event.id,
                    source = event.source,
                    "dropping a scheduled event: {why}"
                );
            }
        });
        Ok(id)
    }
}
