//! Byte echo in both shapes: `/echo` streams a POSTed body straight back as it arrives, and `/ws`
//! upgrades the connection (HTTP/1.1 `Upgrade: echo`) and echoes raw bytes until the client closes.
//! Both prove the platform neither buffers bodies nor breaks upgrades.

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::respond::{Body, full, text};

/// The only upgrade protocol `/ws` speaks.
const PROTOCOL: &str = "echo";

/// `POST /echo`: the request body, streamed back frame by frame.
pub(crate) fn echo_body(request: Request<Incoming>) -> Response<Body> {
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let mut response = Response::new(request.into_body().boxed());
    if let Some(value) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// `/ws` with `Upgrade: echo`: switch protocols and echo bytes; anything else gets 426.
pub(crate) fn echo_upgrade(mut request: Request<Incoming>) -> Response<Body> {
    if !asks_for_echo(&request) {
        let mut response = text(StatusCode::UPGRADE_REQUIRED, "send Upgrade: echo\n");
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
        return response;
    }
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }
    });
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response
}

fn asks_for_echo<B>(request: &Request<B>) -> bool {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok());
    upgrade.is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case(PROTOCOL))
    })
}
