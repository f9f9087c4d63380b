//! Asynchronous invocation wired into the server (see `nimbus-invocations`): the queue in
//! `<data-dir>/invocations.db`, Services resolved from the store, the router's
//! `Prefer: respond-async` requests stored as invocations, and attempts delivered through the
//! router in-process (`Router::handle`), so a revision at zero scales up for queued work as
//! for any request, or over HTTP to URL destinations.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt as _;
use nimbus_api::invocation::AsyncPolicy;
use nimbus_api::{Kind, Object};
use nimbus_invocations::model::MAX_STORED_RESPONSE;
use nimbus_invocations::{
    AcceptError, Deliver, Dispatcher, DispatcherConfig, Invocations, NoResponse, Queue,
    ResolveError, Services, StoredRequest, StoredResponse, Target,
};
use nimbus_router::{Deferred, Deferrer, Refusal, Router};
use nimbus_store::Store;

/// How long a URL destination may take to answer.
const URL_TIMEOUT: Duration = Duration::from_secs(30);

/// Open the queue, start its dispatcher and take the router's deferred requests. Also returns
/// the delivery (the router in-process, URLs over HTTP), which event sources share.
pub fn start(
    data_dir: &Path,
    store: Arc<Store>,
    router: Router,
    domain: &str,
) -> anyhow::Result<(Arc<Invocations>, Arc<dyn Deliver>)> {
    let path = data_dir.join("invocations.db");
    let queue = Arc::new(
        Queue::open(&path)
            .with_context(|| format!("opening the invocation queue {}", path.display()))?,
    );
    let services: Arc<dyn Services> = Arc::new(StoreServices {
        store,
        domain: domain.to_owned(),
    });
    let deliver: Arc<dyn Deliver> = Arc::new(Delivery {
        router: router.clone(),
        services: Arc::clone(&services),
        http: url_client()?,
    });
    let dispatcher = Dispatcher::start(queue, deliver.clone(), DispatcherConfig::default());
    let invocations = Arc::new(Invocations::new(dispatcher, services));
    router.set_deferrer(Arc::new(QueueDeferrer(Arc::clone(&invocations))));
    Ok((invocations, deliver))
}

/// Services as the store has them: the host of their URL, and their `nimbus.dev/async-*`
/// annotations.
struct StoreServices {
    store: Arc<Store>,
    domain: String,
}

impl Services for StoreServices {
    fn resolve(&self, namespace: &str, name: &str) -> Result<(String, AsyncPolicy), ResolveError> {
        let found = self
            .store
            .get(Kind::Service, namespace, name)
            .map_err(|e| {
                ResolveError::Unavailable(format!("service {namespace}/{name} cannot be read: {e}"))
            })?;
        let Some(Object::Service(service)) = found else {
            return Err(ResolveError::NotFound(format!(
                "service \"{name}\" not found in namespace \"{namespace}\"; `nimbus get services` lists them"
            )));
        };
        // Validation refused bad annotations; should one slip through, Lambda's defaults.
        let policy = AsyncPolicy::from_annotations(service.metadata.annotations.as_ref(), "")
            .unwrap_or_default();
        let host = nimbus_api::names::route_host(name, namespace, &self.domain);
        Ok((host, policy))
    }
}

/// The router's `Prefer: respond-async` requests, stored as invocations of the Route's
/// Service.
struct QueueDeferrer(Arc<Invocations>);

#[async_trait]
impl Deferrer for QueueDeferrer {
    async fn defer(&self, request: Deferred) -> Result<String, Refusal> {
        let stored = StoredRequest {
            method: request.method,
            target: request.target,
            headers: request.headers,
            size: request.body.len(),
            body: request.body,
        };
        let accepted = self
            .0
            .accept(
                &request.namespace,
                &request.route,
                Some(&request.host),
                stored,
            )
            .await;
        match accepted {
            Ok(invocation) => Ok(invocation.id),
            Err(e @ AcceptError::Full { .. }) => Err(Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: e.to_string(),
            }),
            Err(e @ AcceptError::TooLarge { .. }) => Err(Refusal {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: e.to_string(),
            }),
            Err(AcceptError::Unknown(_)) => Err(Refusal {
                status: StatusCode::NOT_FOUND,
                message: format!("no service for host {:?}", request.host),
            }),
            Err(e) => {
                // The client learns only that it was not stored; the log says why.
                tracing::error!(host = %request.host, "cannot store an asynchronous request: {e}");
                Err(Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "the request could not be stored; retry later".into(),
                })
            }
        }
    }
}

/// Attempts: Services through the router in-process, URLs over HTTP.
struct Delivery {
    router: Router,
    services: Arc<dyn Services>,
    http: reqwest::Client,
}

/// The client address attempts come from (the server itself).
const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

#[async_trait]
impl Deliver for Delivery {
    async fn deliver(
        &self,
        namespace: &str,
        target: &Target,
        request: http::Request<Bytes>,
    ) -> Result<StoredResponse, NoResponse> {
        match target {
            Target::Service { name, host } => {
                let host = match host.is_empty() {
                    true => {
                        let resolved = self.services.resolve(namespace, name);
                        resolved.map_err(|e| NoResponse::failed(e.to_string()))?.0
                    }
                    false => host.clone(),
                };
                let mut request = request.map(nimbus_router::Body::from);
                let value = http::HeaderValue::from_str(&host)
                    .map_err(|e| NoResponse::failed(e.to_string()))?;
                request.headers_mut().insert(http::header::HOST, value);
                match self.router.try_handle(request, LOCAL).await {
                    Ok(response) => read_response(response).await,
                    Err(e) => Err(NoResponse {
                        message: e.to_string(),
                        // The platform had no room: the function never saw the request.
                        throttled: e.side() == nimbus_router::Side::Nimbus,
                        retry_after: e.retry_after(),
                    }),
                }
            }
            Target::Url { url } => deliver_url(&self.http, url, request).await,
        }
    }
}

/// POST (or whatever `request` says) to a URL over HTTP: its response, the body kept up to
/// [`MAX_STORED_RESPONSE`] bytes. Shared by both modes' deliveries.
pub async fn deliver_url(
    http: &reqwest::Client,
    url: &str,
    request: http::Request<Bytes>,
) -> Result<StoredResponse, NoResponse> {
    let (parts, body) = request.into_parts();
    let mut req = http.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        req = req.header(name, value);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| NoResponse::failed(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let headers = header_pairs(resp.headers());
    // Read at most what is kept (and a byte more, to know it was cut).
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| NoResponse::failed(format!("{url}: {e}")))?
    {
        let room = MAX_STORED_RESPONSE - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(StoredResponse {
        status,
        headers,
        body,
        truncated,
    })
}

/// An HTTP client for URL destinations: a timeout, and redirects not followed (a destination
/// answers for itself; Nimbus does not follow it elsewhere).
pub fn url_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(URL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client of URL destinations")
}

/// A response with its body read (kept up to [`MAX_STORED_RESPONSE`] bytes, the rest read
/// and dropped); a body cut before its end is a failed attempt.
async fn read_response(
    response: http::Response<nimbus_router::Body>,
) -> Result<StoredResponse, NoResponse> {
    let (parts, mut body) = response.into_parts();
    let mut kept = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| NoResponse::failed(format!("the response was cut: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let room = MAX_STORED_RESPONSE - kept.len();
            truncated |= data.len() > room;
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(StoredResponse {
        status: parts.status.as_u16(),
        headers: header_pairs(&parts.headers),
        body: kept,
        truncated,
    })
}

fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Schedules' events, stored as invocations (so they are retried like any asynchronous
/// call): a CloudEvent in HTTP binary mode, POSTed to the Service or URL.
pub struct ScheduledEvents(pub Arc<Invocations>);

#[async_trait]
impl nimbus_controller::EventSink for ScheduledEvents {
    async fn send(
        &self,
        namespace: &str,
        event: nimbus_controller::ScheduledDelivery,
    ) -> Result<String, String> {
        let request = scheduled_request(&event);
        let stored = match (&event.service, &event.uri) {
            (Some(service), _) => self.0.accept(namespace, service, None, request).await,
            (None, Some(uri)) => self.0.accept_url(namespace, uri, request).await,
            (None, None) => return Err("the event names no sink".into()),
        };
        stored.map(|i| i.id).map_err(|e| e.to_string())
    }
}

/// A schedule's CloudEvent as the request to send (HTTP binary mode: `ce-` headers, the data
/// as the body), to the Service's path (its `uri`) or to `/` of a URL.
pub fn scheduled_request(event: &nimbus_controller::ScheduledDelivery) -> StoredRequest {
    let mut headers = vec![
        ("ce-specversion".to_owned(), "1.0".to_owned()),
        ("ce-id".to_owned(), event.id.clone()),
        ("ce-source".to_owned(), event.source.clone()),
        ("ce-type".to_owned(), event.type_.clone()),
        ("ce-time".to_owned(), event.time.clone()),
    ];
    if let Some(content_type) = &event.content_type {
        headers.push(("content-type".to_owned(), content_type.clone()));
    }
    let path = match (&event.service, &event.uri) {
        (Some(_), Some(path)) => path.clone(),
        _ => "/".to_owned(),
    };
    StoredRequest {
        method: "POST".into(),
        target: path,
        headers,
        size: event.data.len(),
        body: Bytes::from(event.data.clone()),
    }
}
