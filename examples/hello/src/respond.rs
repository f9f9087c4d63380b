//! Response building blocks: the one body type every handler returns, and small constructors.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// The body of every response: a full buffer, a stream, or the request body echoed back.
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// A complete body from bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A `text/plain` response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", full(body))
}

/// An `application/json` response.
pub(crate) fn json(value: &serde_json::Value) -> Response<Body> {
    with_type(StatusCode::OK, "application/json", full(value.to_string()))
}

/// A response with the given status, content type and body.
pub(crate) fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: Body,
) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The value of query parameter `name` (no percent-decoding: every parameter here is a number).
pub(crate) fn query_param<'a>(uri: &'a http::Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// Query parameter `name` parsed as a number, or `default` when absent or malformed.
pub(crate) fn query_number(uri: &http::Uri, name: &str, default: u64) -> u64 {
    query_param(uri, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lookup() {
        let uri: http::Uri = "/sleep?x=1&ms=25&flag".parse().unwrap();
        assert_eq!(query_param(&uri, "ms"), Some("25"));
        assert_eq!(query_param(&uri, "flag"), Some(""));
        assert_eq!(query_param(&uri, "nope"), None);
        assert_eq!(query_number(&uri, "ms", 7), 25);
        assert_eq!(query_number(&uri, "x", 7), 1);
        assert_eq!(query_number(&uri, "flag", 7), 7);
    }
}
