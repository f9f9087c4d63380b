//! The routing table: path → handler. Every handler lives in the module named after what it shows.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::respond::{Body, text};
use crate::{App, control, facts, introspect, upgrade};

/// Answer one request.
pub(crate) async fn route(app: &App, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (_, "/") => facts::text(app, &request),
        (_, "/json") => facts::json(app, &request),
        (_, "/env") => introspect::env(),
        (_, "/cwd") => introspect::cwd(),
        (_, "/argv") => introspect::argv(),
        (_, "/stdin") => introspect::stdin().await,
        (_, "/sleep") => control::sleep(request.uri()).await,
        (_, "/stream") => control::stream(request.uri()),
        (_, "/exit") => control::exit(request.uri()),
        (_, "/overlap") => control::overlap(app, request.uri()).await,
        (_, p) if p.starts_with("/status/") => control::status(&p["/status/".len()..]),
        (&Method::POST, "/echo") => upgrade::echo_body(request),
        (_, "/echo") => text(StatusCode::METHOD_NOT_ALLOWED, "POST a body to /echo\n"),
        (_, "/ws") => upgrade::echo_upgrade(request),
        _ => text(StatusCode::NOT_FOUND, format!("no such path: {path}\n")),
    }
}
